// LsmEngine: the Engine behind OpenLsm (lsm.h has the contract, FORMAT.md the files). Private
// to engines/lsm/: lsm_engine.cc holds open, recovery, reads and writes; flush.cc the memtable
// flush and MANIFEST updates; compaction.cc compaction picking, merging and blob GC.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "engines/engine_counters.h"
#include "engines/lsm/block_cache.h"
#include "engines/lsm/lsm.h"
#include "engines/lsm/memtable.h"
#include "engines/lsm/version.h"
#include "engines/store_failure.h"
#include "sync/durable.h"
#include "sync/wal.h"

namespace kvfs::engines::lsm {

// What a reader needs, taken together under one lock so that a flush or compaction installing
// a new state never makes a reader miss data (it sees the memtable or the table, or both).
struct SuperVersion {
  std::shared_ptr<MemTable> mem;
  std::vector<std::shared_ptr<MemTable>> imms;  // newest first
  std::shared_ptr<const Version> version;
};

// One compaction: merge `runs` (newest first; each a sorted run of tables) into `output_level`.
struct CompactionJob {
  enum class Kind { kLevel, kTrivialMove, kFull, kBlobGc };
  Kind kind = Kind::kLevel;
  int level = 0;  // the (shallower) input level
  int output_level = 1;
  std::vector<std::vector<TablePtr>> runs;
  // Tombstones with no older data below the output level are dropped (never in a blob GC, which
  // must leave the tree's contents exactly as they were).
  bool drop_tombstones = true;
  // Blob files whose live values this job copies to a new blob file.
  std::set<uint64_t> relocate;
  // kBlobGc: each run is rewritten on its own (it stays in its level beside tables it may not
  // overlap with others'), and outputs are never split.
  bool per_run = false;
};

class LsmEngine final : public Engine {
 public:
  LsmEngine(sync::FileSystem* fs, std::string dir, const EngineOptions& options,
            LsmOptions lsm_options);
  ~LsmEngine() override { Close().PermitUnchecked(); }

  Status Open(LsmRecoveryReport* report);

  std::string_view name() const override { return "lsm"; }
  Result<std::string> Get(std::string_view key) override;
  Status Apply(const WriteBatch& batch) override;
  Status Scan(const ScanOptions& options, const ScanFn& fn) override;
  Status Sync(SyncKind kind) override;
  void DeferBatchSyncs() override;
  Status SyncBatchIfDue() override;
  Status Compact() override;
  EngineStats stats() const override;
  Status Close() override;

  LsmDebugStats debug_stats() const;

 private:
  Status CountError(Status s) const { return counters_.CountError(std::move(s)); }
  Status CheckWritable() const;
  Status FailedStatus() const { return failure_.Refusal(); }  // OK, or kFailed naming it
  void LatchFailure(const Status& s);
  // Latches `s` unless it is OK or ENOSPC (which leaves the store usable); returns it.
  Status Background(Status s);

  std::string TablePath(uint64_t n) const { return sync::JoinPath(dir_, TableFileName(n)); }
  std::string BlobPath(uint64_t n) const { return sync::JoinPath(dir_, BlobFileName(n)); }
  uint64_t NewFileNumber() { return next_file_number_.fetch_add(1); }

  // --- lsm_engine.cc: the write path.
  // Waits (or, without background work, flushes and compacts) until the memtable has room.
  Status MakeRoomForWrite(std::unique_lock<std::mutex>& lock);
  // Makes the active memtable immutable once no write is between its log append and its insert.
  void SwitchMemtable(std::unique_lock<std::mutex>& lock);  // requires state_mu_
  void InstallSuperVersion();                               // requires state_mu_
  std::shared_ptr<const SuperVersion> GetSuperVersion() const;
  std::shared_ptr<const Version> current() const;

  // --- flush.cc
  // Flushes the oldest immutable memtable. Requires flush_mu_.
  Status FlushOne();
  // Flushes until no immutable memtable is left (takes flush_mu_).
  Status FlushAll();
  // Writes a MANIFEST holding current() + edit and installs it (and drops `flushed` from the
  // immutable memtables) once it is durable. Dead blob files are returned for deletion. On
  // failure, *edit_files_unnamed says whether the old MANIFEST stands for certain, so that the
  // files the edit adds are named by no MANIFEST and may be removed; when it may have been
  // replaced, the store is failed and no file either MANIFEST names may be deleted.
  Status LogAndApply(const VersionEdit& edit, const MemTable* flushed,
                     std::vector<uint64_t>* dead_blobs, bool* edit_files_unnamed);
  // Finishes a new table file: the builder's bytes synced, closed, renamed into place.
  Status FinishTableFile(sync::WritableFile* file, const std::string& tmp, uint64_t number);
  Result<TablePtr> OpenTable(const TableMeta& meta);
  void RemoveObsolete(const std::vector<uint64_t>& tables, const std::vector<uint64_t>& blobs);

  // --- compaction.cc
  std::optional<CompactionJob> PickCompaction(const Version& v);
  // Where RunJob splits `job` into two merges run at once, or "" to run it whole.
  std::string SubcompactionSplit(const CompactionJob& job) const;
  // A scan used up a level-0 table's allowed seeks (TableReader::ChargeScanSeek): compact
  // level 0 even below its trigger.
  void RequestL0SeekCompaction();
  std::optional<CompactionJob> PickBlobGc(const Version& v);
  Status RunJob(const CompactionJob& job);  // requires compaction_mu_
  Status RunFullCompaction();               // requires compaction_mu_
  // Runs due compactions and blob GCs until none is left. Requires compaction_mu_.
  Status CompactWhileDue(bool include_gc);
  void FlushLoop();
  void CompactionLoop();

  sync::FileSystem* const fs_;
  const std::string dir_;
  const std::string wal_dir_;
  const EngineOptions options_;
  const LsmOptions lopts_;
  const uint64_t memtable_size_;
  BlockCache cache_;
  std::unique_ptr<sync::FileLock> lock_;
  std::unique_ptr<sync::Wal> wal_;  // null when read_only
  std::atomic<uint64_t> next_file_number_{1};

  // Lock order: compaction_mu_ -> flush_mu_ -> manifest_mu_ -> state_mu_ -> sv_mu_; failure_'s
  // mutex and MemTable's mutex are leaves. Held across file I/O: compaction_mu_ (a whole
  // compaction), flush_mu_ (a whole flush), manifest_mu_ (one MANIFEST write). Never across a log
  // append.
  std::mutex compaction_mu_;
  std::mutex flush_mu_;
  std::mutex manifest_mu_;
  std::vector<std::string> compact_pointer_;  // guarded by compaction_mu_: per level, the last
                                              // key compacted (round robin through the keys)

  mutable std::mutex state_mu_;
  std::condition_variable state_cv_;  // memtable switches, installs, background work, stop
  std::shared_ptr<MemTable> mem_;     // guarded by state_mu_
  std::vector<std::shared_ptr<MemTable>> imms_;  // guarded by state_mu_, oldest first
  std::shared_ptr<const Version> version_;       // guarded by state_mu_ (+ manifest_mu_)
  // Writes between log append and memtable insert: incremented under state_mu_, decremented
  // without it (a write takes the lock once). A switch sets switching_ and then waits for 0;
  // a write that brings it to 0 and then sees switching_ wakes it (both seq_cst: one of the two
  // always sees the other's store).
  std::atomic<uint64_t> in_flight_{0};
  std::atomic<bool> switching_{false};  // written under state_mu_

  bool compaction_wanted_ = false;  // guarded by state_mu_
  bool stopping_ = false;           // guarded by state_mu_
  Status bg_no_space_;              // guarded by state_mu_: the last background ENOSPC, until
                                    // a flush succeeds (stalled writers get it)

  mutable std::mutex sv_mu_;
  std::shared_ptr<const SuperVersion> sv_;  // guarded by sv_mu_

  StoreFailure failure_{"lsm store " + dir_};

  std::thread flush_thread_;
  std::thread compaction_thread_;
  std::mutex close_mu_;
  bool closed_ = false;  // guarded by close_mu_

  mutable EngineCounters counters_;
  std::atomic<uint64_t> flushes_{0}, trivial_moves_{0}, blob_gcs_{0}, blob_files_deleted_{0},
      stalls_{0}, slowdowns_{0}, compaction_bytes_{0}, flush_bytes_{0}, compaction_cpu_ns_{0},
      flush_cpu_ns_{0}, seek_compactions_{0}, split_compactions_{0};
  std::atomic<bool> l0_seek_due_{false};
};

// Adds the calling thread's CPU time from construction to destruction to a counter: what a
// flush or compaction cost in CPU, apart from the time it waited for the disk.
class ThreadCpuTimer {
 public:
  explicit ThreadCpuTimer(std::atomic<uint64_t>* total) : total_(total), start_(Now()) {}
  ~ThreadCpuTimer() { total_->fetch_add(Now() - start_, std::memory_order_relaxed); }
  ThreadCpuTimer(const ThreadCpuTimer&) = delete;
  ThreadCpuTimer& operator=(const ThreadCpuTimer&) = delete;

 private:
  static uint64_t Now();
  std::atomic<uint64_t>* const total_;
  const uint64_t start_;
};

}  // namespace kvfs::engines::lsm
