// BtreeEngine: the Engine behind OpenBtree (btree.h has the contract, FORMAT.md the files and
// the concurrency rules). Private to engines/btree/.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "engines/btree/btree.h"
#include "engines/btree/pager.h"
#include "engines/btree/tree.h"
#include "engines/engine_counters.h"
#include "engines/engine_open.h"
#include "engines/store_failure.h"
#include "sync/mutex.h"
#include "sync/wal.h"

namespace kvfs::engines::btree {

// Entries read per shared hold of the tree lock by Scan; the callback runs with no lock held.
inline constexpr size_t kScanChunk = 128;

class BtreeEngine final : public Engine {
 public:
  BtreeEngine(sync::FileSystem* fs, std::string dir, EngineOptions options,
              BtreeOptions btree_options);
  ~BtreeEngine() override { Close().PermitUnchecked(); }

  Status Open(BtreeRecoveryReport* report);

  std::string_view name() const override { return "btree"; }
  Result<std::string> Get(std::string_view key) override;
  Status Apply(const WriteBatch& batch) override;
  Status Scan(const ScanOptions& options, const ScanFn& fn) override;
  Status Sync(SyncKind kind) override;
  void DeferBatchSyncs() override;
  Status SyncBatchIfDue() override;
  Status Compact() override;
  Status Verify() override;
  EngineStats stats() const override;
  Status Close() override;

 private:
  Status CountError(Status s) const { return counters_.CountError(std::move(s)); }
  Status CheckWritable() const;
  void LatchFailure(const Status& s);
  // Applies `entries` (the log's record `lsn`) to a Txn and installs it, then lets the batch
  // after it go (applied_lsn_).
  Status ApplyEntries(const std::vector<BatchEntry>& entries, uint64_t lsn)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  Status Checkpoint() ABSL_LOCKS_EXCLUDED(ckpt_mu_, write_mu_);
  Status CheckpointLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(ckpt_mu_) ABSL_LOCKS_EXCLUDED(write_mu_);
  bool CheckpointDue() const;
  void MaybeCheckpoint();
  void BackgroundLoop();

  sync::FileSystem* const fs_;
  const std::string dir_;
  const std::string wal_dir_;
  const EngineOptions options_;
  const BtreeOptions bopts_;
  uint64_t checkpoint_log_bytes_ = 0;
  std::unique_ptr<sync::FileLock> lock_;
  std::unique_ptr<sync::Wal> wal_;  // null when read_only
  std::unique_ptr<Pager> pager_;
  std::unique_ptr<Tree> tree_;

  // Lock order: ckpt_mu_ -> write_mu_ -> tree_mu_ -> the pager's mutex, and write_mu_ ->
  // seq_mu_; failure_'s mutex, bg_mu_ and close_mu_ are leaves. A batch is appended to the log with
  // no engine lock held (so appenders share writes and syncs), then waits on seq_mu_ for its
  // turn (applied_lsn_ + 1 == its LSN) and applies under write_mu_; tree_mu_ is held
  // exclusively only to install a batch's pages, shared by readers for one descent or one scan
  // chunk. No lock is held across a log sync except ckpt_mu_ (by a checkpoint, which readers
  // and writers never take).
  Mutex ckpt_mu_;  // one checkpoint at a time
  Mutex write_mu_;
  SharedMutex tree_mu_;
  Meta meta_ ABSL_GUARDED_BY(tree_mu_);  // the installed meta page, decoded
  Mutex seq_mu_;
  CondVar seq_cv_{&seq_mu_};
  uint64_t applied_lsn_ ABSL_GUARDED_BY(seq_mu_) = 0;  // the last batch installed (or skipped)
  std::atomic<uint64_t> log_bytes_since_checkpoint_{0};
  std::atomic<uint64_t> live_keys_{0};
  std::atomic<uint64_t> checkpoints_{0};

  StoreFailure failure_{"btree store " + dir_};

  Mutex bg_mu_;
  CondVar bg_cv_{&bg_mu_};
  bool bg_stop_ ABSL_GUARDED_BY(bg_mu_) = false;
  bool bg_wanted_ ABSL_GUARDED_BY(bg_mu_) = false;
  std::thread bg_;

  Mutex close_mu_;
  bool closed_ ABSL_GUARDED_BY(close_mu_) = false;

  mutable EngineCounters counters_;
};

}  // namespace kvfs::engines::btree
