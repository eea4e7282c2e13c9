// The keydir: where the latest entry of every key is. Ordered, so prefix scans walk it.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "engines/write_batch.h"

namespace kvfs::engines::bitcask {

enum class FileKind : uint8_t { kWal, kMerged };

// Where the latest entry of a key is: one write-batch entry (header, key, value) in a log
// segment or a merged data file. Tombstones stay in the keydir until a merge, so that a
// concurrent Apply with a lower LSN that finishes later cannot resurrect the key.
struct Location {
  uint64_t lsn = 0;
  uint64_t file = 0;
  uint64_t offset = 0;  // of the entry
  uint32_t size = 0;    // of the entry
  FileKind kind = FileKind::kWal;
  bool tombstone = false;

  bool operator==(const Location&) const = default;
};

using KeyDir = std::map<std::string, Location, std::less<>>;

inline bool IsValidKey(std::string_view key) { return !key.empty() && key.size() <= kMaxKeySize; }

}  // namespace kvfs::engines::bitcask
