// EngineCounters: the operation counters behind EngineStats that every engine keeps, updated
// without a lock (relaxed atomics: statistics, not synchronisation).
#pragma once

#include <atomic>
#include <cstdint>
#include <span>

#include "engines/engine.h"
#include "engines/write_batch.h"

namespace kvfs::engines {

struct EngineCounters {
  std::atomic<uint64_t> gets{0}, puts{0}, deletes{0}, batches{0}, scans{0}, bytes_written{0},
      bytes_read{0}, syncs{0}, compactions{0}, errors{0};

  static void Add(std::atomic<uint64_t>& counter, uint64_t n) {
    counter.fetch_add(n, std::memory_order_relaxed);
  }
  // Counts `s` as an error unless it is OK or kNotFound; returns it.
  Status CountError(Status s) {
    if (!s.ok() && !s.IsNotFound()) Add(errors, 1);
    return s;
  }
  // A batch's puts, deletes and key + value bytes, as the caller asked for them (taken before
  // an engine folds repeated keys), counted once the batch is applied.
  struct BatchTally {
    uint64_t puts = 0, deletes = 0, bytes = 0;
  };
  static BatchTally Tally(std::span<const BatchEntry> entries) {
    BatchTally t;
    for (const BatchEntry& e : entries) {
      ++(e.kind == EntryKind::kPut ? t.puts : t.deletes);
      t.bytes += e.key.size() + e.value.size();
    }
    return t;
  }
  void CountBatch(const BatchTally& t) {
    Add(puts, t.puts);
    Add(deletes, t.deletes);
    Add(batches, 1);
    Add(bytes_written, t.bytes);
  }
  // Every field of EngineStats these counters know (not live_keys, not wal).
  void Fill(EngineStats* s) const {
    s->gets = gets.load(std::memory_order_relaxed);
    s->puts = puts.load(std::memory_order_relaxed);
    s->deletes = deletes.load(std::memory_order_relaxed);
    s->batches = batches.load(std::memory_order_relaxed);
    s->scans = scans.load(std::memory_order_relaxed);
    s->bytes_written = bytes_written.load(std::memory_order_relaxed);
    s->bytes_read = bytes_read.load(std::memory_order_relaxed);
    s->syncs = syncs.load(std::memory_order_relaxed);
    s->compactions = compactions.load(std::memory_order_relaxed);
    s->errors = errors.load(std::memory_order_relaxed);
  }
};

}  // namespace kvfs::engines
