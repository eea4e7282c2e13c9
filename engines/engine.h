// Engine: the interface every kvfs storage engine implements, and the registry that opens one
// by name ("bitcask", later "lsm", ...).
//
// An engine stores byte-string keys and values in one data directory, doing all file I/O
// through a sync::FileSystem (so the fault-injecting one can cut the power under it) and
// logging every write through the shared write-ahead log (sync/wal.h) before acknowledging it.
//
// Durability, in the terms of the log's sync modes (EngineOptions::sync_mode):
// - Apply (and Put, Delete) returns once the batch is in the log: durable on return in
//   `always` mode; in `batch` and `none` modes it survives a process crash but needs a Sync
//   (or the batch timer) to survive a power cut.
// - Sync(kData) returns once every batch applied before the call is on stable storage
//   (fdatasync of the log). Sync(kFull) also syncs file metadata (fsync).
// - A batch is atomic: after any crash it is there whole or not at all, and readers never see
//   part of it.
// - Once a sync has failed, the engine refuses every write with kFailed (naming the original
//   error) until it is reopened; reads go on; nothing acknowledged before is lost.
//
// Errors are Status/Result, never exceptions. Get of a missing key is kNotFound.
//
// Opening: every engine takes its directory, lock and log the same way (engine_open.h) and
// reports what its recovery found in the same shape (recovery(), recovery_report.h).
//
// Thread safety: every method may be called from any number of threads at once, except Close
// (after which nothing may be called). Reads never wait for a log sync.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engines/recovery_report.h"
#include "engines/write_batch.h"
#include "sync/file_system.h"
#include "sync/status.h"
#include "sync/wal.h"

namespace kvfs::engines {

enum class SyncKind { kData, kFull };

struct EngineOptions {
  sync::SyncMode sync_mode = sync::SyncMode::kBatch;
  uint32_t batch_records = 1000;
  std::chrono::milliseconds batch_interval{10};
  uint64_t segment_size = uint64_t{64} << 20;  // log segments / data files
  uint64_t cache_size = uint64_t{64} << 20;    // read cache, where the engine has one
  // Background maintenance (merge, compaction). Tests turn it off and call Compact().
  bool background_work = true;
  // Open without writing anything (offline tools: ls, get, check). Writes fail.
  bool read_only = false;
  // With read_only, for `kvfs check --salvage` only: damage in the log does not stop the open;
  // each damaged stretch is skipped to the next record that verifies and named in the recovery
  // report (RecoveryReport::log.damage). The state is then what the surviving records make.
  bool salvage = false;
  // The store's engine options (the config's [store.options]), for an engine that takes some
  // (etcd: endpoints, prefix, timeout_ms; EngineOptionKeys()). An engine refuses a key it
  // does not take.
  std::map<std::string, std::string, std::less<>> settings;
};

struct ScanOptions {
  std::string prefix;       // only keys starting with this
  std::string start_after;  // only keys strictly greater than this ("" = from the start)
  bool keys_only = false;   // the callback's value is empty; no value is read
};

// Called with each key (and value) in ascending bytewise order; return false to stop early.
using ScanFn = std::function<bool(std::string_view key, std::string_view value)>;

// A change feed (Engine::SubscribeChanges), for an engine whose store other processes may write
// (etcd: several daemons on one cluster). One key's change, as committed.
struct KeyChange {
  std::string key;  // the store's key
  bool deleted = false;
  std::string value;                    // a put's new value
  std::optional<std::string> previous;  // the value it replaced, when the engine knows it
};

// What changed in the store: the changes of one or more committed batches (any writer's, this
// engine's own included), in commit order, each batch whole. Or `everything`: the feed missed
// changes (the history it reads from was compacted away), so anything may have changed up to
// `revision` and a subscriber must drop whatever it keeps of the store.
struct ChangeSet {
  bool everything = false;
  uint64_t revision = 0;  // the engine's revision of the last change (etcd's)
  std::vector<KeyChange> changes;
};
using ChangeFn = std::function<void(const ChangeSet&)>;

struct EngineStats {
  uint64_t gets = 0;
  uint64_t puts = 0;
  uint64_t deletes = 0;
  uint64_t batches = 0;
  uint64_t scans = 0;
  uint64_t bytes_written = 0;  // keys + values applied
  uint64_t bytes_read = 0;     // values returned
  uint64_t syncs = 0;          // Sync calls
  uint64_t compactions = 0;    // merges / compactions completed
  uint64_t live_keys = 0;
  uint64_t errors = 0;  // operations that returned an error other than NotFound
  sync::WalStats wal;
};

class Engine {
 public:
  Engine() = default;
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;
  virtual ~Engine() = default;

  virtual std::string_view name() const = 0;

  // The value of `key`, or kNotFound.
  virtual Result<std::string> Get(std::string_view key) = 0;
  // Applies every operation of `batch` atomically, in order.
  virtual Status Apply(const WriteBatch& batch) = 0;
  Status Put(std::string_view key, std::string_view value);
  // Deleting a missing key is not an error.
  Status Delete(std::string_view key);
  // Visits the live keys matching `options` in order. Consistent per key (each value is one
  // that was current during the scan), not a snapshot of the whole range.
  virtual Status Scan(const ScanOptions& options, const ScanFn& fn) = 0;
  virtual Status Sync(SyncKind kind) = 0;
  // `batch` mode, for a caller that holds locks of its own across Apply (the file layer): from
  // now on Apply never syncs a full batch inline (sync::Wal::DeferBatchSyncs); the caller calls
  // SyncBatchIfDue() after each Apply once it holds no lock, before acknowledging the write, so
  // what it acknowledges keeps `batch_records` as its bound and no lock of its waits for the
  // disk. Engines without a log of their own (etcd) do nothing in either.
  virtual void DeferBatchSyncs() {}
  virtual Status SyncBatchIfDue() { return Status::OK(); }
  // Runs a merge / compaction now and returns when it is durable.
  virtual Status Compact() = 0;
  virtual EngineStats stats() const = 0;
  // Checks what the engine keeps beyond what a full Scan reads (`kvfs check` calls it after its
  // scan): kCorruption naming the file, and the offset or page, of the first damage found. The
  // default has nothing more to check (a Scan reads and verifies all of Bitcask and the LSM).
  virtual Status Verify() { return Status::OK(); }
  // Syncs, stops background work, releases the directory lock.
  virtual Status Close() = 0;

  // Calls `fn` with every change committed to the store after this engine opened, by anyone,
  // from a thread of the engine's own, in commit order, none missed (or an `everything` set
  // where the engine cannot tell what it missed), until Close. `fn` must not call back into
  // the engine's Close. One subscriber per engine (a second call is kInvalidArgument). Engines
  // whose store only they write (every local engine) have no feed: kNotSupported.
  // (By value: an engine with a feed keeps `fn`; this one drops it.)
  virtual Status SubscribeChanges(ChangeFn fn) {  // NOLINT(performance-unnecessary-value-param)
    fn = nullptr;
    return Status::NotSupported(std::string(name()) + " engine has no change feed");
  }

  // What the open found and did: the log's recovery (records replayed, torn tail dropped and
  // where) and the engine's own files. Set by the open, unchanged afterwards.
  const RecoveryReport& recovery() const { return recovery_; }

 protected:
  RecoveryReport recovery_;
};

using EngineOpenFn = std::function<Result<std::unique_ptr<Engine>>(
    sync::FileSystem* fs, const std::string& dir, const EngineOptions& options)>;

// Every registered engine name, sorted: what a config may name.
std::vector<std::string> AllEngineNames();
// Whether `name`'s stores live elsewhere and need engine options to open (etcd: its cluster's
// endpoints), so that they cannot be opened from a directory alone.
bool IsRemoteEngine(std::string_view name);
// The registered engines that open from a directory alone, sorted: AllEngineNames() but the
// remote ones. The embedded default config has one store per engine of this list, and the
// local-disk test suites run over it; a remote engine's tests bring their own cluster.
std::vector<std::string> EngineNames();
// The engine option keys each engine takes ({"etcd": {"endpoints", ...}}), in the shape of
// config::EngineOptionKeys, for reading and validating configs.
std::map<std::string, std::vector<std::string>, std::less<>> EngineOptionKeys();
// Whether the file layer keeps the files of `name`'s stores append-only: "events", whose files
// are event streams (engines/events/events.h, fusefs/event_view.h).
bool IsAppendOnlyEngine(std::string_view name);
// The registered engines whose stores take every file operation (writes anywhere, truncates,
// renames): EngineNames() but the append-only ones. The Engine contract and crash suites run
// over EngineNames() (the local engines); the file-semantics suites (file store, fuse_ops, mount,
// mount crash) over these, and the append-only engines have file-semantics suites of their own
// (docs/decisions.md).
std::vector<std::string> FileEngineNames();
// Opens (creating if missing) the store in `dir` with engine `name`. kInvalidArgument naming
// the known engines if `name` is not one; kBusy if another process or object holds `dir`.
Result<std::unique_ptr<Engine>> OpenEngine(std::string_view name, sync::FileSystem* fs,
                                           const std::string& dir, const EngineOptions& options);

}  // namespace kvfs::engines
