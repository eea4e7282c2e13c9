// The LSM MANIFEST decoder (engines/lsm/manifest.h) on arbitrary bytes, and its round trip.
//
// - DecodeManifest returns; what it accepts re-encodes to bytes that decode to the same state
//   (varints may be written longer than needed, so the bytes themselves may differ);
// - a MANIFEST built from the input (level-0 tables, blob files they refer to) decodes to
//   itself.
// The input runs as is and again with its body CRC recomputed.
#include <fuzzer/FuzzedDataProvider.h>

#include "engines/lsm/manifest.h"
#include "tests/fuzz/fuzz_util.h"

namespace kvfs::fuzz {
namespace {

namespace lsm = engines::lsm;

bool Same(const lsm::ManifestData& a, const lsm::ManifestData& b) {
  if (a.log_lsn != b.log_lsn || a.next_file_number != b.next_file_number ||
      a.tables.size() != b.tables.size() || a.blobs.size() != b.blobs.size()) {
    return false;
  }
  for (size_t i = 0; i < a.tables.size(); ++i) {
    const lsm::TableMeta &x = a.tables[i], &y = b.tables[i];
    if (x.number != y.number || x.level != y.level || x.file_size != y.file_size ||
        x.entries != y.entries || x.smallest != y.smallest || x.largest != y.largest ||
        x.smallest_seq != y.smallest_seq || x.largest_seq != y.largest_seq ||
        x.blob_files != y.blob_files) {
      return false;
    }
  }
  for (size_t i = 0; i < a.blobs.size(); ++i) {
    const lsm::BlobMeta &x = a.blobs[i], &y = b.blobs[i];
    if (x.number != y.number || x.file_size != y.file_size || x.total_bytes != y.total_bytes ||
        x.garbage_bytes != y.garbage_bytes) {
      return false;
    }
  }
  return true;
}

void CheckDecode(std::string_view input) {
  auto m = lsm::DecodeManifest(input, "MANIFEST");
  if (!m.ok()) {
    FUZZ_CHECK(m.status().IsCorruption(), m.status().ToString());
    return;
  }
  auto again = lsm::DecodeManifest(lsm::EncodeManifest(*m), "again");
  FUZZ_CHECK(again.ok(),
             "accepted MANIFEST re-encodes to a refused one: " + again.status().ToString());
  FUZZ_CHECK(Same(*m, *again), "MANIFEST round trip");
}

std::string FixCrc(std::string_view bytes) {
  std::string s(bytes);
  if (s.size() < lsm::kManifestHeaderSize) return s;
  PutCrcAt(&s, 20, sync::crc32c::Value(s.data() + 24, s.size() - 24));
  return s;
}

void CheckBuilt(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  lsm::ManifestData m;
  m.log_lsn = in.ConsumeIntegral<uint64_t>();
  uint64_t number = in.ConsumeIntegralInRange<uint64_t>(1, 1000);
  const int blobs = in.ConsumeIntegralInRange(0, 4);
  for (int i = 0; i < blobs; ++i) {
    lsm::BlobMeta b;
    b.number = number++;
    b.total_bytes = in.ConsumeIntegralInRange<uint64_t>(0, 1 << 30);
    b.garbage_bytes = in.ConsumeIntegralInRange<uint64_t>(0, b.total_bytes);
    b.file_size = b.total_bytes + 24;
    m.blobs.push_back(b);
  }
  while (in.remaining_bytes() > 0 && m.tables.size() < 32) {
    lsm::TableMeta t;
    t.number = number++;
    t.level = 0;
    t.file_size = in.ConsumeIntegralInRange<uint64_t>(56, 1 << 30);
    t.entries = in.ConsumeIntegralInRange<uint64_t>(1, 1 << 20);
    t.smallest = in.ConsumeRandomLengthString(32);
    t.largest = in.ConsumeRandomLengthString(32);
    if (t.smallest.empty()) t.smallest = "a";
    if (t.largest < t.smallest) t.largest = t.smallest;
    t.smallest_seq = in.ConsumeIntegralInRange<uint64_t>(0, 1 << 20);
    t.largest_seq = t.smallest_seq + in.ConsumeIntegralInRange<uint64_t>(0, 1 << 20);
    if (!m.blobs.empty() && in.ConsumeBool()) t.blob_files.push_back(m.blobs.front().number);
    m.tables.push_back(std::move(t));
  }
  m.next_file_number = number;
  auto back = lsm::DecodeManifest(lsm::EncodeManifest(m), "built");
  if (!back.ok()) {
    // The decoder's rules are stricter than this builder knows (e.g. key validity); a refusal
    // must still be a clean Corruption.
    FUZZ_CHECK(back.status().IsCorruption(), back.status().ToString());
    return;
  }
  FUZZ_CHECK(Same(m, *back), "built MANIFEST round trip");
}

}  // namespace
}  // namespace kvfs::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kvfs::fuzz;
  const std::string_view input = AsView(data, size);
  CheckDecode(input);
  const std::string fixed = FixCrc(input);
  if (fixed != input) CheckDecode(fixed);
  CheckBuilt(data, size);
  return 0;
}
