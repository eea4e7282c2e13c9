// Shared vocabulary of the LSM engine's files: value kinds, blob references, file names.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "engines/lsm/coding.h"
#include "engines/write_batch.h"  // IsValidKey

namespace kvfs::engines::lsm {

// What a key maps to in a memtable or table entry.
enum class ValueKind : uint8_t {
  kValue = 1,     // the value itself
  kDeletion = 2,  // a tombstone: hides older versions until it reaches the bottom
  kBlob = 3,      // an encoded BlobRef: the value is in a blob file
};

inline bool IsValidKind(uint8_t k) { return k >= 1 && k <= 3; }

// Where a separated value lives: the record at `offset` of blob file `file`, whose value is
// `size` bytes.
struct BlobRef {
  uint64_t file = 0;
  uint64_t offset = 0;
  uint64_t size = 0;
};

inline std::string EncodeBlobRef(const BlobRef& r) {
  std::string out;
  PutVarint64(&out, r.file);
  PutVarint64(&out, r.offset);
  PutVarint64(&out, r.size);
  return out;
}

inline std::optional<BlobRef> DecodeBlobRef(std::string_view in) {
  BlobRef r;
  if (!GetVarint64(&in, &r.file) || !GetVarint64(&in, &r.offset) || !GetVarint64(&in, &r.size) ||
      !in.empty()) {
    return std::nullopt;
  }
  return r;
}

inline constexpr int kNumLevels = 7;
inline constexpr char kManifestName[] = "MANIFEST";
inline constexpr char kTableSuffix[] = ".sst";
inline constexpr char kBlobSuffix[] = ".blob";
inline constexpr char kTempSuffix[] = ".tmp";

// "000042.sst", "000042.blob": the number in (at least) six decimal digits.
std::string TableFileName(uint64_t number);
std::string BlobFileName(uint64_t number);
// The number of a table or blob file name (exactly that form), or nullopt.
std::optional<uint64_t> ParseTableFileName(std::string_view name);
std::optional<uint64_t> ParseBlobFileName(std::string_view name);

}  // namespace kvfs::engines::lsm
