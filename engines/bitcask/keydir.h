// The keydir: where the latest entry of every key is. Ordered, so prefix scans walk it, and
// hashed, so a point lookup costs a hash and a few cache misses instead of a pointer chase
// down a red-black tree (one dependent miss per level, and another per key comparison: a
// 16-byte key does not fit std::string's inline buffer).
#pragma once

#include <absl/container/flat_hash_map.h>
#include <xxhash.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>

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

// The ordered map, plus a hash index of iterators into it. std::map nodes never move, so the
// index's string_views (of the nodes' keys) and iterators stay valid until that node is
// erased, which goes through erase() here. Not copyable or movable, for the same reason. The
// index is an open-addressing table (absl's flat_hash_map: 24-byte slots, no allocation per
// key), so it adds about a sixth to the keydir's memory and nothing per insert but the slot.
class KeyDir {
 public:
  using Map = std::map<std::string, Location, std::less<>>;
  using iterator = Map::iterator;
  using const_iterator = Map::const_iterator;

  KeyDir() = default;
  KeyDir(const KeyDir&) = delete;
  KeyDir& operator=(const KeyDir&) = delete;

  bool empty() const { return map_.empty(); }
  size_t size() const { return map_.size(); }
  iterator begin() { return map_.begin(); }
  iterator end() { return map_.end(); }
  const_iterator end() const { return map_.end(); }

  iterator find(std::string_view key) {
    if (!indexed_) return map_.find(key);
    auto it = index_.find(key);
    return it == index_.end() ? map_.end() : it->second;
  }
  const_iterator find(std::string_view key) const {
    if (!indexed_) return map_.find(key);
    auto it = index_.find(key);
    return it == index_.end() ? map_.end() : const_iterator(it->second);
  }

  // Loading a store inserts every key once, mostly in order (merged files are sorted): the
  // index is built in one pass at the end, into a table sized for it, instead of growing and
  // rehashing a million times over. find() walks the map meanwhile.
  void BeginBulkLoad() {
    indexed_ = false;
    index_.clear();
  }
  void EndBulkLoad() {
    index_.reserve(map_.size());
    for (iterator it = map_.begin(); it != map_.end(); ++it) {
      index_.emplace(std::string_view(it->first), it);
    }
    indexed_ = true;
  }
  iterator lower_bound(std::string_view key) { return map_.lower_bound(key); }
  iterator upper_bound(std::string_view key) { return map_.upper_bound(key); }

  // For an insert or update of `key`: its entry and true if present, else a hint for insert()
  // and false. Appending past the last key needs no search, which makes loading a merged file
  // (sorted) and sequential fills linear.
  std::pair<iterator, bool> FindOrHint(std::string_view key) {
    if (map_.empty() || map_.rbegin()->first < key) return {map_.end(), false};
    if (indexed_) {
      auto found = index_.find(key);
      if (found != index_.end()) return {found->second, true};
    }
    iterator it = map_.lower_bound(key);
    return {it, it != map_.end() && it->first == key};
  }

  // Inserts a key not present; `hint` as for std::map::emplace_hint.
  iterator insert(iterator hint, std::string key, const Location& loc) {
    iterator it = map_.emplace_hint(hint, std::move(key), loc);
    if (indexed_) index_.emplace(std::string_view(it->first), it);
    return it;
  }
  void erase(iterator it) {
    if (indexed_) index_.erase(std::string_view(it->first));
    map_.erase(it);
  }

 private:
  struct Hash {
    size_t operator()(std::string_view s) const { return XXH3_64bits(s.data(), s.size()); }
  };
  Map map_;
  bool indexed_ = true;
  absl::flat_hash_map<std::string_view, iterator, Hash> index_;
};

inline bool IsValidKey(std::string_view key, size_t max_key_size = kMaxKeySize) {
  return !key.empty() && key.size() <= max_key_size;
}

}  // namespace kvfs::engines::bitcask
