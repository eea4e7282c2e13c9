// MemTable: the newest writes, in a skiplist, until they are flushed to a level-0 table.
//
// A memtable takes whole batches: AddBatch inserts every entry of one batch with the batch's
// LSN as sequence. Get never sees half a batch: writers bump a sequence lock around each batch,
// and a Get that overlapped one retries (after a few tries it takes the writers' mutex, so it
// cannot starve). Scans and flushes iterate without it; a scan is consistent per key only
// (engine.h).
//
// Thread safety: everything may be called from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engines/lsm/iterator.h"
#include "engines/lsm/skiplist.h"
#include "engines/write_batch.h"

namespace kvfs::engines::lsm {

class MemTable {
 public:
  MemTable() : list_(&arena_) {}
  MemTable(const MemTable&) = delete;
  MemTable& operator=(const MemTable&) = delete;

  // Inserts one batch's entries, all with sequence `seq`. Keys must be distinct (the engine
  // keeps only the last entry of each key of a batch), so no (key, seq) repeats.
  void AddBatch(uint64_t seq, std::span<const BatchEntry> entries);

  enum class Lookup { kNotFound, kFound, kDeleted };
  // The newest version of `key`: its value (into *value), a tombstone, or nothing.
  Lookup Get(std::string_view key, std::string* value) const;

  // Arena bytes: what the flush trigger compares against the memtable size.
  size_t ApproximateMemoryUsage() const { return arena_.MemoryUsage(); }
  uint64_t entries() const { return entries_.load(std::memory_order_relaxed); }
  bool empty() const { return entries() == 0; }

  // Every entry, every version (newest first per key).
  std::unique_ptr<InternalIterator> NewIterator() const;

  // Set once when the memtable becomes immutable: every batch with LSN < boundary is in this
  // memtable or an older one, every later one in a newer one.
  void set_boundary(uint64_t lsn) { boundary_ = lsn; }
  uint64_t boundary() const { return boundary_; }

 private:
  Lookup LookupLocked(std::string_view key, std::string* value) const;

  mutable std::mutex write_mu_;  // one writer at a time (skiplist, arena)
  Arena arena_;
  SkipList list_;
  std::atomic<uint64_t> seqlock_{0};  // odd while a batch is being inserted
  std::atomic<uint64_t> entries_{0};
  uint64_t boundary_ = 0;  // written before the memtable is published as immutable
};

}  // namespace kvfs::engines::lsm
