// BlockCache: checked data blocks of tables, shared by all readers, evicted least recently used
// first once their bytes pass the capacity (EngineOptions::cache_size). Blocks are keyed by
// (table number, offset); table numbers are never reused while the engine is open.
//
// Thread safety: every method may be called from any thread (16 shards, one mutex each).
#pragma once

#include <array>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

namespace kvfs::engines::lsm {

class BlockCache {
 public:
  explicit BlockCache(uint64_t capacity) : shard_capacity_(capacity / kShards) {}
  BlockCache(const BlockCache&) = delete;
  BlockCache& operator=(const BlockCache&) = delete;

  using Block = std::shared_ptr<const std::string>;

  Block Lookup(uint64_t table, uint64_t offset) {
    Shard& s = ShardOf(table, offset);
    std::lock_guard<std::mutex> lock(s.mu);
    auto it = s.map.find(Key{table, offset});
    if (it == s.map.end()) return nullptr;
    s.lru.splice(s.lru.begin(), s.lru, it->second);
    return it->second->block;
  }

  void Insert(uint64_t table, uint64_t offset, Block block) {
    if (shard_capacity_ == 0) return;
    Shard& s = ShardOf(table, offset);
    std::lock_guard<std::mutex> lock(s.mu);
    const Key k{table, offset};
    if (s.map.count(k) != 0) return;
    s.bytes += block->size();
    s.lru.push_front(Entry{k, std::move(block)});
    s.map.emplace(k, s.lru.begin());
    while (s.bytes > shard_capacity_ && s.lru.size() > 1) {
      s.bytes -= s.lru.back().block->size();
      s.map.erase(s.lru.back().key);
      s.lru.pop_back();
    }
  }

 private:
  static constexpr size_t kShards = 16;
  struct Key {
    uint64_t table;
    uint64_t offset;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const {
      return static_cast<size_t>((k.table * 0x9e3779b97f4a7c15ull) ^ (k.offset >> 6));
    }
  };
  struct Entry {
    Key key;
    Block block;
  };
  struct Shard {
    std::mutex mu;
    std::list<Entry> lru;  // most recent first
    std::unordered_map<Key, std::list<Entry>::iterator, KeyHash> map;
    uint64_t bytes = 0;
  };
  Shard& ShardOf(uint64_t table, uint64_t offset) {
    return shards_[(table * 31 + (offset >> 12)) % kShards];
  }

  const uint64_t shard_capacity_;
  std::array<Shard, kShards> shards_;
};

}  // namespace kvfs::engines::lsm
