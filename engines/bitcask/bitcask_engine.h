// BitcaskEngine: the Engine behind OpenBitcask (bitcask.h has the contract, FORMAT.md the
// files). Private to engines/bitcask/: bitcask.cc holds open, recovery, reads and writes;
// merge.cc the merge and the background thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "engines/bitcask/bitcask.h"
#include "engines/bitcask/files.h"
#include "engines/bitcask/keydir.h"
#include "engines/engine_counters.h"
#include "engines/engine_open.h"
#include "engines/store_failure.h"
#include "sync/wal.h"

namespace kvfs::engines::bitcask {

inline constexpr char kManifestName[] = "MANIFEST";
inline constexpr char kMergedDirName[] = "merged";
// Keys collected per shared-lock hold by Scan and Merge, so a long scan never blocks writers
// for long, and repointed per exclusive-lock hold by Merge.
inline constexpr size_t kChunk = 256;

class BitcaskEngine final : public Engine {
 public:
  BitcaskEngine(sync::FileSystem* fs, std::string dir, EngineOptions options,
                BitcaskOptions bitcask_options)
      : fs_(fs),
        dir_(std::move(dir)),
        wal_dir_(sync::JoinPath(dir_, kWalDirName)),
        merged_dir_(sync::JoinPath(dir_, kMergedDirName)),
        options_(std::move(options)),
        bopts_(bitcask_options),
        files_(fs, wal_dir_, merged_dir_) {}

  ~BitcaskEngine() override { Close().PermitUnchecked(); }

  Status Open(BitcaskRecoveryReport* report);

  std::string_view name() const override { return "bitcask"; }
  Result<std::string> Get(std::string_view key) override;
  Status Apply(const WriteBatch& batch) override;
  Status Scan(const ScanOptions& options, const ScanFn& fn) override;
  Status Sync(SyncKind kind) override;
  void DeferBatchSyncs() override;
  Status SyncBatchIfDue() override;
  Status Compact() override;
  EngineStats stats() const override;
  Status Close() override;

  BitcaskDebugStats debug_stats() const { return {merge_checks_.load(std::memory_order_relaxed)}; }

 private:
  struct SegmentInfo {
    uint64_t max_lsn = 0;
    uint64_t bytes = 0;  // entry bytes the keydir has seen in it
  };

  Status CountError(Status s) const { return counters_.CountError(std::move(s)); }
  Status CheckWritable() const;
  void LatchFailure(const Status& s);
  Status LoadMergedFile(uint64_t number, BitcaskRecoveryReport* report);
  // Requires keydir_mu_ exclusively (or Open, before any other thread exists).
  void Install(std::string_view key, const Location& loc);
  // The entry at `loc` in `file`, verified (CRC, key, kind, size), and its value.
  Result<std::string> ReadEntryBytes(std::string_view key, const Location& loc,
                                     const sync::RandomAccessFile& file);
  Result<std::string> ReadValue(std::string_view key, const Location& loc,
                                const sync::RandomAccessFile& file);
  std::optional<Location> Lookup(std::string_view key) const;
  Status Merge();
  Status MergeLocked();
  bool MergeDue() const;
  void BackgroundLoop();
  void EnterGate();
  void LeaveGate();

  sync::FileSystem* const fs_;
  const std::string dir_;
  const std::string wal_dir_;
  const std::string merged_dir_;
  const EngineOptions options_;
  const BitcaskOptions bopts_;
  std::unique_ptr<sync::FileLock> lock_;
  std::unique_ptr<sync::Wal> wal_;  // null when read_only
  FileCache files_;

  // Lock order: merge_mu_ -> gate_mu_ -> keydir_mu_ -> FileCache's mutex; failure_'s mutex
  // and bg_mu_ are leaves. Held across file I/O: merge_mu_ (by a merge, throughout), and
  // keydir_mu_ shared while a reader opens a file not yet in the cache (once per file). Never
  // across a log append or sync: reads do not wait for syncs, and the gate (gate_mu_) is only
  // held to count passes.
  std::mutex merge_mu_;  // one merge at a time; guards the merged_* fields below
  uint64_t merged_lsn_ = 0;
  uint64_t next_file_number_ = 1;
  std::vector<uint64_t> merged_files_;

  // The append gate: Apply holds a pass from before its log append until its keydir update,
  // so a merge that closes the gate and waits for the passes to drain knows that every log
  // record below the next LSN is in the keydir.
  std::mutex gate_mu_;
  std::condition_variable gate_cv_;
  uint64_t in_flight_ = 0;    // guarded by gate_mu_
  bool gate_closed_ = false;  // guarded by gate_mu_

  mutable std::shared_mutex keydir_mu_;
  KeyDir keydir_;                             // guarded by keydir_mu_
  std::map<uint64_t, SegmentInfo> segments_;  // guarded by keydir_mu_: log segments with
                                              // records at or past merged_lsn_
  uint64_t merged_bytes_ = 0;                 // guarded by keydir_mu_
  uint64_t live_bytes_ = 0;                   // guarded by keydir_mu_
  std::atomic<uint64_t> live_keys_{0};        // written under keydir_mu_

  StoreFailure failure_{"bitcask store " + dir_};  // a merge's write or sync failure

  std::mutex bg_mu_;
  std::condition_variable bg_cv_;
  bool bg_stop_ = false;  // guarded by bg_mu_
  std::thread bg_;

  std::mutex close_mu_;
  bool closed_ = false;  // guarded by close_mu_

  mutable EngineCounters counters_;
  std::atomic<uint64_t> merge_checks_{0};
};

}  // namespace kvfs::engines::bitcask
