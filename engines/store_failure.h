// StoreFailure: the first fatal failure of an open store (a failed sync, a write that may have
// half landed, a batch the log holds but the tree could not apply), kept until the store closes.
// Every engine refuses writes the same way after one, with the same message and errno: a sync
// error is never retried into a success (DESIGN.md, the durability contract).
#pragma once

#include <atomic>
#include <string>

#include "sync/mutex.h"
#include "sync/status.h"
#include "sync/wal.h"

namespace kvfs::engines {

class StoreFailure {
 public:
  // `store` names the store in messages, e.g. "lsm store /var/lib/kvfs/lsm".
  explicit StoreFailure(std::string store) : store_(std::move(store)) {}

  // Keeps `s` unless a failure is kept already (the first cause is the one worth reporting).
  void Latch(const Status& s);
  // Whether a failure is kept; lock-free, for paths that check on every write.
  bool failed() const { return failed_.load(std::memory_order_acquire); }
  // The kept failure as it happened, or OK.
  Status cause() const;
  // OK, or kFailed naming the store and the kept failure, with its errno (EIO when it had none).
  Status Refusal() const;
  // OK, or why no write may be applied: the kept failure, then the log's health (a log whose
  // sync failed refuses every append until the process restarts).
  Status CheckWritable(const sync::Wal& wal) const;

 private:
  const std::string store_;
  mutable Mutex mu_;
  Status failure_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> failed_{false};
};

}  // namespace kvfs::engines
