// WriteBatch decoding (DecodeEntry, ForEachEntry) on arbitrary bytes, and the encoding's round
// trip on batches built from the input.
//
// - ForEachEntry on the input returns; every entry it delivers lies inside the input, starts
//   where the previous one ended, has a valid CRC32C, and re-encodes to exactly its own bytes;
//   DecodeEntry at that offset agrees.
//   The input runs as is and again with its entries' checksums recomputed (fuzz_util.h).
// - A batch built from the input (its bytes cut into keys and values) decodes to exactly the
//   operations added, in order.
#include <fuzzer/FuzzedDataProvider.h>

#include <string>
#include <vector>

#include "engines/write_batch.h"
#include "sync/crc32c.h"
#include "sync/wal_format.h"
#include "tests/fuzz/fuzz_util.h"

namespace kvfs::fuzz {
namespace {

using engines::BatchEntry;
using engines::EntryKind;

void CheckDecode(std::string_view input) {
  uint64_t expected_offset = 0;
  Status s = engines::ForEachEntry(input, "fuzz", [&](const BatchEntry& e) -> Status {
    FUZZ_CHECK(e.offset == expected_offset, "entries not contiguous");
    FUZZ_CHECK(e.size >= engines::kEntryHeaderSize && e.offset <= input.size() &&
                   e.size <= input.size() - e.offset,
               "entry outside the input");
    FUZZ_CHECK(e.kind == EntryKind::kPut || e.kind == EntryKind::kDelete, "kind");
    FUZZ_CHECK(e.size == engines::kEntryHeaderSize + e.key.size() + e.value.size(), "size");
    const std::string_view raw = input.substr(e.offset, e.size);
    FUZZ_CHECK(
        sync::wal::DecodeFixed32(raw.data()) == sync::crc32c::Value(raw.data() + 4, raw.size() - 4),
        "delivered an entry whose CRC does not match");
    std::string again;
    engines::EncodeEntry(&again, e.kind, e.key, e.value);
    FUZZ_CHECK(again == raw, "entry does not re-encode to its bytes");
    auto direct = engines::DecodeEntry(input.substr(e.offset), "fuzz");
    FUZZ_CHECK(
        direct.ok() && direct->key == e.key && direct->value == e.value && direct->size == e.size,
        "DecodeEntry disagrees with ForEachEntry");
    expected_offset = e.offset + e.size;
    return Status::OK();
  });
  if (s.ok()) FUZZ_CHECK(expected_offset == input.size(), "ForEachEntry stopped early");
  if (!s.ok()) FUZZ_CHECK(s.IsCorruption(), s.ToString());
}

void CheckRoundTrip(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  struct Op {
    EntryKind kind;
    std::string key, value;
  };
  std::vector<Op> ops;
  engines::WriteBatch batch;
  while (in.remaining_bytes() > 0 && ops.size() < 64) {
    Op op;
    op.kind = in.ConsumeBool() ? EntryKind::kPut : EntryKind::kDelete;
    op.key = in.ConsumeRandomLengthString(256);
    if (op.kind == EntryKind::kPut) {
      op.value = in.ConsumeRandomLengthString(1024);
      batch.Put(op.key, op.value);
    } else {
      batch.Delete(op.key);
    }
    ops.push_back(std::move(op));
  }
  FUZZ_CHECK(batch.count() == ops.size(), "count");
  size_t i = 0;
  Status s = engines::ForEachEntry(batch.encoded(), "batch", [&](const BatchEntry& e) -> Status {
    FUZZ_CHECK(i < ops.size(), "more entries than operations");
    FUZZ_CHECK(e.kind == ops[i].kind && e.key == ops[i].key && e.value == ops[i].value,
               "entry " + std::to_string(i) + " differs from what was added");
    ++i;
    return Status::OK();
  });
  FUZZ_CHECK(s.ok(), s.ToString());
  FUZZ_CHECK(i == ops.size(), "fewer entries than operations");
}

}  // namespace
}  // namespace kvfs::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input = kvfs::fuzz::AsView(data, size);
  kvfs::fuzz::CheckDecode(input);
  const std::string fixed = kvfs::fuzz::FixBatch(input);
  if (fixed != input) kvfs::fuzz::CheckDecode(fixed);
  kvfs::fuzz::CheckRoundTrip(data, size);
  return 0;
}
