// The LSM sorted-table reader (engines/lsm/table_reader.h) on arbitrary table files, and the
// builder/reader round trip.
//
// - TableReader::Open on the input returns; an opened table iterates in strictly ascending
//   key order (or stops with Corruption), and Get finds each iterated entry with the same
//   kind, LSN and payload, or nothing when its bloom filter says the key is absent;
// - a table built from the input (sorted keys and values cut from it, small blocks) reads back
//   exactly what was added, by iteration and by Get.
// The input runs as is and again with its footer and block checksums recomputed (following
// the footer and the index as far as they hold).
#include <fuzzer/FuzzedDataProvider.h>

#include <map>
#include <string>

#include "engines/lsm/bloom.h"
#include "engines/lsm/table_builder.h"
#include "engines/lsm/table_format.h"
#include "engines/lsm/table_reader.h"
#include "sync/fault_file_system.h"
#include "tests/fuzz/fuzz_util.h"

namespace kvfs::fuzz {
namespace {

namespace lsm = engines::lsm;

constexpr char kPath[] = "/t.sst";

// Recomputes the footer's CRC, then the trailers of the blocks the footer and index name.
std::string FixTable(std::string_view bytes) {
  std::string s(bytes);
  if (s.size() < lsm::kFooterSize) return s;
  const size_t footer = s.size() - lsm::kFooterSize;
  PutCrcAt(&s, footer + 44, sync::crc32c::Value(s.data() + footer, 44));
  auto f = lsm::DecodeFooter(std::string_view(s).substr(footer), s.size(), kPath);
  if (!f.ok()) return s;
  auto fix_block = [&](const lsm::BlockHandle& h) {
    if (h.offset > footer || h.size > footer - h.offset ||
        footer - h.offset - h.size < lsm::kBlockTrailerSize) {
      return false;
    }
    PutCrcAt(&s, h.offset + h.size, sync::crc32c::Value(s.data() + h.offset, h.size));
    return true;
  };
  fix_block(f->filter);
  if (!fix_block(f->index)) return s;
  const std::string index = s.substr(f->index.offset, f->index.size);
  const std::string path = kPath;
  lsm::BlockCursor cursor(index, &path, f->index.offset);
  while (cursor.Next()) {
    lsm::BlockHandle h;
    if (lsm::DecodeHandle(cursor.value(), &h)) fix_block(h);
  }
  return s;
}

void CheckRead(std::string_view bytes) {
  sync::FaultFileSystem fs(1);
  WriteWholeFile(&fs, kPath, bytes);
  auto table = lsm::TableReader::Open(&fs, kPath, 7, nullptr);
  if (!table.ok()) {
    FUZZ_CHECK(table.status().IsCorruption(), table.status().ToString());
    return;
  }
  auto it = (*table)->NewIterator();
  std::string prev;
  bool first = true;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    const std::string key(it->key());
    FUZZ_CHECK(first || prev < key, "table keys not strictly ascending");
    first = false;
    prev = key;
    const uint64_t hash = lsm::BloomHash(key);
    auto got = (*table)->Get(key, hash);
    FUZZ_CHECK(got.ok(), got.status().ToString());
    if (!got->has_value()) {
      // Only a filter that says "absent" may hide a key: a checksummed filter that lies cannot
      // be told from a true one without reading every block. The index can: a block whose
      // keys stray from its index range is refused when read (TableReader::CheckAgainstIndex).
      FUZZ_CHECK(!(*table)->MayContain(hash), "Get misses a key the table holds");
      continue;
    }
    FUZZ_CHECK(
        (*got)->kind == it->kind() && (*got)->seq == it->seq() && (*got)->payload == it->value(),
        "Get and the iterator disagree");
  }
  if (!it->status().ok()) FUZZ_CHECK(it->status().IsCorruption(), it->status().ToString());

  // A compaction's iterator (many blocks per read, checks made as it walks) must agree with the
  // cached one: the same entries when both succeed, kCorruption from both otherwise (the
  // sequential one may yield part of a damaged block before it reaches the check at its end).
  auto walk = [&](lsm::TableReader::ReadMode mode, std::string* rows) {
    auto w = (*table)->NewIterator(mode);
    for (w->SeekToFirst(); w->Valid(); w->Next()) {
      rows->append(w->key()).push_back('\0');
      rows->append(std::to_string(static_cast<int>(w->kind())) + "/" + std::to_string(w->seq()));
      rows->append(w->value()).push_back('\n');
    }
    return w->status();
  };
  std::string cached_rows, seq_rows;
  const Status cached = walk(lsm::TableReader::ReadMode::kCached, &cached_rows);
  const Status seq = walk(lsm::TableReader::ReadMode::kSequential, &seq_rows);
  if (!seq.ok()) FUZZ_CHECK(seq.IsCorruption(), seq.ToString());
  FUZZ_CHECK(seq.ok() == cached.ok(), "sequential and cached iterators disagree on damage: " +
                                          seq.ToString() + " / " + cached.ToString());
  if (seq.ok()) FUZZ_CHECK(seq_rows == cached_rows, "sequential and cached iterators differ");
}

void CheckRoundTrip(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  struct Value {
    lsm::ValueKind kind;
    uint64_t seq;
    std::string payload;
  };
  std::map<std::string, Value> entries;
  while (in.remaining_bytes() > 0 && entries.size() < 200) {
    std::string key = in.ConsumeRandomLengthString(64);
    if (!engines::IsValidKey(key)) continue;
    Value v;
    v.kind = static_cast<lsm::ValueKind>(in.ConsumeIntegralInRange<uint8_t>(1, 3));
    v.seq = in.ConsumeIntegral<uint64_t>();
    if (v.kind != lsm::ValueKind::kDeletion) v.payload = in.ConsumeRandomLengthString(200);
    entries[key] = std::move(v);
  }
  sync::FaultFileSystem fs(1);
  {
    auto file = fs.NewWritableFile(kPath, sync::CreateMode::kTruncate);
    FUZZ_CHECK(file.ok(), file.status().ToString());
    lsm::TableBuilder builder(file->get(), /*block_size=*/128, /*bloom_bits_per_key=*/10);
    for (const auto& [k, v] : entries) builder.Add(k, v.kind, v.seq, v.payload);
    Status s = builder.Finish();
    FUZZ_CHECK(s.ok(), s.ToString());
    FUZZ_CHECK((*file)->Close().ok(), "close");
  }
  auto table = lsm::TableReader::Open(&fs, kPath, 7, nullptr);
  FUZZ_CHECK(table.ok(), table.status().ToString());
  auto it = (*table)->NewIterator();
  auto want = entries.begin();
  for (it->SeekToFirst(); it->Valid(); it->Next(), ++want) {
    FUZZ_CHECK(want != entries.end(), "more entries than added");
    FUZZ_CHECK(it->key() == want->first && it->kind() == want->second.kind &&
                   it->seq() == want->second.seq && it->value() == want->second.payload,
               "iterated entry differs from what was added");
  }
  FUZZ_CHECK(it->status().ok(), it->status().ToString());
  FUZZ_CHECK(want == entries.end(), "fewer entries than added");
  for (const auto& [k, v] : entries) {
    auto got = (*table)->Get(k, lsm::BloomHash(k));
    FUZZ_CHECK(got.ok() && got->has_value() && (*got)->payload == v.payload, "Get of an added key");
  }
}

}  // namespace
}  // namespace kvfs::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kvfs::fuzz;
  const std::string_view input = AsView(data, size);
  CheckRead(input);
  const std::string fixed = FixTable(input);
  if (fixed != input) CheckRead(fixed);
  CheckRoundTrip(data, size);
  return 0;
}
