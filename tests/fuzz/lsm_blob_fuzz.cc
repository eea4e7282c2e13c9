// The LSM blob-file reader (engines/lsm/blob_file.h) on arbitrary blob files, and the
// writer/reader round trip.
//
// - BlobReader::Open on the input returns; Read with a reference to each record found by
//   walking the file returns that record's value exactly when its CRC32C holds (else
//   Corruption); Read with references cut from the input's last bytes never allocates past
//   the file, and what it returns is the bytes the reference names;
// - values written by BlobWriter read back through their references.
// The input runs as is and again with its header and record checksums recomputed.
#include <fuzzer/FuzzedDataProvider.h>

#include <string>
#include <vector>

#include "engines/lsm/blob_file.h"
#include "sync/fault_file_system.h"
#include "tests/fuzz/fuzz_util.h"

namespace kvfs::fuzz {
namespace {

namespace lsm = engines::lsm;
using sync::wal::DecodeFixed32;
using sync::wal::DecodeFixed64;

constexpr char kPath[] = "/000009.blob";

struct Found {
  std::string key;
  lsm::BlobRef ref;
  bool crc_ok;
};

// The records, walked from the header on as long as their sizes fit.
std::vector<Found> Walk(std::string_view s) {
  std::vector<Found> out;
  size_t off = lsm::kBlobHeaderSize;
  while (s.size() >= off && s.size() - off >= lsm::kBlobRecordHeaderSize) {
    const uint64_t k = DecodeFixed32(s.data() + off + 4), v = DecodeFixed32(s.data() + off + 8);
    const uint64_t size = lsm::BlobRecordSize(k, v);
    if (size > s.size() - off) break;
    const bool crc_ok =
        DecodeFixed32(s.data() + off) == sync::crc32c::Value(s.data() + off + 4, size - 4);
    out.push_back(Found{std::string(s.substr(off + 12, k)), lsm::BlobRef{9, off, v}, crc_ok});
    off += size;
  }
  return out;
}

std::string FixBlob(std::string_view bytes) {
  std::string s(bytes);
  if (s.size() < lsm::kBlobHeaderSize) return s;
  PutCrcAt(&s, 20, sync::crc32c::Value(s.data(), 20));
  for (const Found& f : Walk(s)) {
    const size_t size = lsm::BlobRecordSize(f.key.size(), f.ref.size);
    PutCrcAt(&s, f.ref.offset, sync::crc32c::Value(s.data() + f.ref.offset + 4, size - 4));
  }
  return s;
}

void CheckRead(std::string_view bytes) {
  sync::FaultFileSystem fs(1);
  WriteWholeFile(&fs, kPath, bytes);
  auto reader = lsm::BlobReader::Open(&fs, kPath, 9);
  if (!reader.ok()) {
    FUZZ_CHECK(reader.status().IsCorruption(), reader.status().ToString());
    return;
  }
  for (const Found& f : Walk(bytes)) {
    if (!engines::IsValidKey(f.key)) continue;
    auto v = (*reader)->Read(f.key, f.ref);
    FUZZ_CHECK(v.ok() == f.crc_ok, "Read of a walked record: " + v.status().ToString());
    if (v.ok()) {
      FUZZ_CHECK(*v == bytes.substr(f.ref.offset + 12 + f.key.size(), f.ref.size), "value");
    }
  }
  // A reference from the input's last 24 bytes, for a key cut from its first ones.
  if (bytes.size() >= 48) {
    const char* p = bytes.data() + bytes.size() - 24;
    const lsm::BlobRef ref{9, DecodeFixed64(p), DecodeFixed64(p + 8)};
    const std::string key(bytes.substr(24, 1 + DecodeFixed64(p + 16) % 16));
    auto v = (*reader)->Read(key, ref);
    if (v.ok()) {
      FUZZ_CHECK(ref.offset <= bytes.size() && ref.size <= bytes.size(), "ref out of the file");
      FUZZ_CHECK(*v == bytes.substr(ref.offset + 12 + key.size(), ref.size), "arbitrary ref");
    } else {
      FUZZ_CHECK(v.status().IsCorruption(), v.status().ToString());
    }
  }
}

void CheckRoundTrip(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  sync::FaultFileSystem fs(1);
  auto writer = lsm::BlobWriter::Create(&fs, kPath, 9);
  FUZZ_CHECK(writer.ok(), writer.status().ToString());
  std::vector<std::pair<std::string, std::string>> added;
  std::vector<lsm::BlobRef> refs;
  while (in.remaining_bytes() > 0 && added.size() < 64) {
    std::string key = in.ConsumeRandomLengthString(64);
    if (!engines::IsValidKey(key)) continue;
    std::string value = in.ConsumeRandomLengthString(2000);
    auto ref = (*writer)->Add(key, value);
    FUZZ_CHECK(ref.ok(), ref.status().ToString());
    refs.push_back(*ref);
    added.emplace_back(std::move(key), std::move(value));
  }
  Status s = (*writer)->Finish();
  FUZZ_CHECK(s.ok(), s.ToString());
  auto reader = lsm::BlobReader::Open(&fs, kPath, 9);
  FUZZ_CHECK(reader.ok(), reader.status().ToString());
  for (size_t i = 0; i < added.size(); ++i) {
    auto v = (*reader)->Read(added[i].first, refs[i]);
    FUZZ_CHECK(v.ok() && *v == added[i].second, "blob round trip: " + v.status().ToString());
  }
}

}  // namespace
}  // namespace kvfs::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kvfs::fuzz;
  const std::string_view input = AsView(data, size);
  CheckRead(input);
  const std::string fixed = FixBlob(input);
  if (fixed != input) CheckRead(fixed);
  CheckRoundTrip(data, size);
  return 0;
}
