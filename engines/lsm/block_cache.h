// BlockCache: checked data blocks of tables, shared by every reader of one engine.
//
// A table keeps its cached blocks in slots of its own (BlockCache::Slots, one per data block),
// so a hit is an array index and an uncontended lock, with no hash table to walk (a sharded hash
// map with an LRU list cost more per hit than the block search itself: docs/decisions.md,
// "Measured small choices"). The cache accounts
// the bytes of every filled slot and, past its capacity, evicts with the CLOCK algorithm: the
// hand skips (and clears) a block read since it last passed, and empties the first one that
// was not. Slots of a table that has been dropped are forgotten when the hand reaches them.
//
// Thread safety: every method may be called from any thread. Lookup takes one of the table's
// striped slot locks; Insert takes the cache's mutex too (only after a block was read from its
// file). Lock order: the cache's mutex, then a stripe.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace kvfs::engines::lsm {

class BlockCache {
 public:
  using Block = std::shared_ptr<const std::string>;

  // The slots of one table's data blocks. Owned by the table (a shared_ptr the cache only
  // watches), so a dropped table's blocks go with it.
  class Slots {
   public:
    explicit Slots(size_t n) : blocks_(new Block[n]), referenced_(new std::atomic<uint8_t>[n]) {
      for (size_t i = 0; i < n; ++i) referenced_[i].store(0, std::memory_order_relaxed);
    }
    Slots(const Slots&) = delete;
    Slots& operator=(const Slots&) = delete;

    // Block i if cached, else null.
    Block Lookup(size_t i) const {
      Block b;
      {
        std::lock_guard<std::mutex> lock(StripeOf(i));
        b = blocks_[i];
      }
      if (b != nullptr && referenced_[i].load(std::memory_order_relaxed) == 0) {
        referenced_[i].store(1, std::memory_order_relaxed);
      }
      return b;
    }

   private:
    friend class BlockCache;
    // Slot i is guarded by stripe i % kStripes: a lock per slot would cost more memory than
    // the contention it saves (std::atomic<std::shared_ptr> would do, but ThreadSanitizer
    // cannot see libstdc++'s lock inside it).
    static constexpr size_t kStripes = 8;
    std::mutex& StripeOf(size_t i) const { return stripes_[i % kStripes]; }

    mutable std::mutex stripes_[kStripes];
    std::unique_ptr<Block[]> blocks_;  // guarded by StripeOf(index)
    mutable std::unique_ptr<std::atomic<uint8_t>[]> referenced_;
  };

  explicit BlockCache(uint64_t capacity) : capacity_(capacity) {}
  BlockCache(const BlockCache&) = delete;
  BlockCache& operator=(const BlockCache&) = delete;

  // Puts `block` into slot i of `slots`, unless a concurrent reader already did, then evicts
  // until the cached bytes fit the capacity. A capacity of 0 caches nothing.
  void Insert(const std::shared_ptr<Slots>& slots, size_t i, Block block) {
    if (capacity_ == 0) return;
    const uint64_t bytes = block->size();
    {
      std::lock_guard<std::mutex> lock(slots->StripeOf(i));
      if (slots->blocks_[i] != nullptr) return;  // a concurrent reader put it there
      slots->blocks_[i] = std::move(block);
    }
    slots->referenced_[i].store(1, std::memory_order_relaxed);  // not the next one evicted
    std::lock_guard<std::mutex> lock(mu_);
    ring_.push_back(Entry{slots, static_cast<uint32_t>(i), bytes});
    bytes_ += bytes;
    // Each pass of the hand clears every bit it skips, so this ends within two turns.
    while (bytes_ > capacity_ && !ring_.empty()) {
      if (hand_ >= ring_.size()) hand_ = 0;
      Entry& e = ring_[hand_];
      const std::shared_ptr<Slots> owner = e.slots.lock();
      if (owner != nullptr && owner->referenced_[e.index].exchange(0) != 0) {
        ++hand_;  // a second chance
        continue;
      }
      if (owner != nullptr) {
        Block evicted;  // freed after the stripe is released
        std::lock_guard<std::mutex> stripe(owner->StripeOf(e.index));
        evicted = std::move(owner->blocks_[e.index]);
      }
      bytes_ -= e.bytes;
      e = std::move(ring_.back());  // the hand now points at the moved entry
      ring_.pop_back();
    }
  }

  uint64_t bytes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return bytes_;
  }

 private:
  struct Entry {
    std::weak_ptr<Slots> slots;
    uint32_t index;
    uint64_t bytes;
  };

  const uint64_t capacity_;
  mutable std::mutex mu_;
  std::vector<Entry> ring_;  // guarded by mu_: one entry per filled slot
  size_t hand_ = 0;          // guarded by mu_
  uint64_t bytes_ = 0;       // guarded by mu_
};

}  // namespace kvfs::engines::lsm
