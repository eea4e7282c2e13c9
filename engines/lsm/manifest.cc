#include "engines/lsm/manifest.h"

#include <algorithm>
#include <cstring>
#include <set>

#include "engines/lsm/coding.h"
#include "engines/lsm/format.h"
#include "sync/crc32c.h"

namespace kvfs::engines::lsm {

std::string EncodeManifest(const ManifestData& m) {
  std::string body;
  PutVarint64(&body, m.log_lsn);
  PutVarint64(&body, m.next_file_number);
  PutVarint64(&body, m.tables.size());
  for (const TableMeta& t : m.tables) {
    PutVarint64(&body, t.number);
    PutVarint64(&body, static_cast<uint64_t>(t.level));
    PutVarint64(&body, t.file_size);
    PutVarint64(&body, t.entries);
    PutLengthPrefixed(&body, t.smallest);
    PutLengthPrefixed(&body, t.largest);
    PutVarint64(&body, t.smallest_seq);
    PutVarint64(&body, t.largest_seq);
    PutVarint64(&body, t.blob_files.size());
    for (uint64_t b : t.blob_files) PutVarint64(&body, b);
  }
  PutVarint64(&body, m.blobs.size());
  for (const BlobMeta& b : m.blobs) {
    PutVarint64(&body, b.number);
    PutVarint64(&body, b.file_size);
    PutVarint64(&body, b.total_bytes);
    PutVarint64(&body, b.garbage_bytes);
  }
  std::string out(kManifestMagic, sizeof(kManifestMagic));
  PutFixed32(&out, kManifestVersion);
  PutFixed64(&out, body.size());
  PutFixed32(&out, sync::crc32c::Value(body));
  out += body;
  return out;
}

Result<ManifestData> DecodeManifest(std::string_view bytes, const std::string& path) {
  std::string_view in;
  auto fail_at = [&](uint64_t offset, const std::string& why) {
    return Status::Corruption("MANIFEST " + path + " at offset " + std::to_string(offset) + ": " +
                              why);
  };
  auto fail = [&](const std::string& why) { return fail_at(bytes.size() - in.size(), why); };
  if (bytes.size() < kManifestHeaderSize) return fail_at(0, "header cut short");
  if (std::memcmp(bytes.data(), kManifestMagic, sizeof(kManifestMagic)) != 0) {
    return fail_at(0, "bad magic number (not a kvfs LSM MANIFEST)");
  }
  if (DecodeFixed32(bytes.data() + 8) != kManifestVersion) {
    return fail_at(8, "unknown format version " + std::to_string(DecodeFixed32(bytes.data() + 8)));
  }
  if (DecodeFixed64(bytes.data() + 12) != bytes.size() - kManifestHeaderSize) {
    return fail_at(12, "body length differs from the file's");
  }
  in = bytes.substr(kManifestHeaderSize);
  if (DecodeFixed32(bytes.data() + 20) != sync::crc32c::Value(in)) {
    return fail_at(20, "checksum mismatch");
  }

  ManifestData m;
  uint64_t count;
  if (!GetVarint64(&in, &m.log_lsn) || !GetVarint64(&in, &m.next_file_number) ||
      !GetVarint64(&in, &count)) {
    return fail("header fields cut short");
  }
  std::set<uint64_t> numbers;
  auto check_number = [&](uint64_t n) -> bool {
    return n > 0 && n < m.next_file_number && numbers.insert(n).second;
  };
  // Loops run while bytes remain, so a garbage count costs nothing before it fails.
  for (uint64_t i = 0; i < count; ++i) {
    TableMeta t;
    uint64_t level, nblobs;
    std::string_view smallest, largest;
    if (!GetVarint64(&in, &t.number) || !GetVarint64(&in, &level) ||
        !GetVarint64(&in, &t.file_size) || !GetVarint64(&in, &t.entries) ||
        !GetLengthPrefixed(&in, &smallest) || !GetLengthPrefixed(&in, &largest) ||
        !GetVarint64(&in, &t.smallest_seq) || !GetVarint64(&in, &t.largest_seq) ||
        !GetVarint64(&in, &nblobs)) {
      return fail("table entry " + std::to_string(i) + " cut short");
    }
    if (level >= kNumLevels) return fail("table level " + std::to_string(level) + " too deep");
    if (!check_number(t.number)) {
      return fail("table number " + std::to_string(t.number) + " invalid or repeated");
    }
    if (!IsValidKey(smallest) || !IsValidKey(largest) || largest < smallest ||
        t.smallest_seq > t.largest_seq || t.entries == 0) {
      return fail("table " + std::to_string(t.number) + " has an invalid key or LSN range");
    }
    t.level = static_cast<int>(level);
    t.smallest.assign(smallest);
    t.largest.assign(largest);
    for (uint64_t j = 0; j < nblobs; ++j) {
      uint64_t b;
      if (!GetVarint64(&in, &b)) return fail("table blob list cut short");
      if (!t.blob_files.empty() && b <= t.blob_files.back()) {
        return fail("table blob list not ascending");
      }
      t.blob_files.push_back(b);
    }
    m.tables.push_back(std::move(t));
  }
  if (!GetVarint64(&in, &count)) return fail("blob count cut short");
  std::set<uint64_t> blob_numbers;
  for (uint64_t i = 0; i < count; ++i) {
    BlobMeta b;
    if (!GetVarint64(&in, &b.number) || !GetVarint64(&in, &b.file_size) ||
        !GetVarint64(&in, &b.total_bytes) || !GetVarint64(&in, &b.garbage_bytes)) {
      return fail("blob entry " + std::to_string(i) + " cut short");
    }
    if (!check_number(b.number)) {
      return fail("blob file number " + std::to_string(b.number) + " invalid or repeated");
    }
    if (b.garbage_bytes > b.total_bytes || b.total_bytes > b.file_size) {
      return fail("blob file " + std::to_string(b.number) + " has impossible sizes");
    }
    blob_numbers.insert(b.number);
    m.blobs.push_back(b);
  }
  if (!in.empty()) return fail("trailing bytes");
  // Cross-checks: every blob reference resolves; levels >= 1 are sorted runs.
  for (const TableMeta& t : m.tables) {
    for (uint64_t b : t.blob_files) {
      if (blob_numbers.count(b) == 0) {
        return fail_at(kManifestHeaderSize, "table " + std::to_string(t.number) +
                                                " refers to unlisted blob file " +
                                                std::to_string(b));
      }
    }
  }
  for (int level = 1; level < kNumLevels; ++level) {
    std::vector<const TableMeta*> run;
    for (const TableMeta& t : m.tables) {
      if (t.level == level) run.push_back(&t);
    }
    std::sort(run.begin(), run.end(),
              [](const TableMeta* a, const TableMeta* b) { return a->smallest < b->smallest; });
    for (size_t i = 1; i < run.size(); ++i) {
      if (run[i]->smallest <= run[i - 1]->largest) {
        return fail_at(kManifestHeaderSize, "tables " + std::to_string(run[i - 1]->number) +
                                                " and " + std::to_string(run[i]->number) +
                                                " overlap in level " + std::to_string(level));
      }
    }
  }
  return m;
}

}  // namespace kvfs::engines::lsm
