// LSM: a log-structured merge-tree engine with key-value separation; kvfs's default engine.
//
// Layout of a data directory (FORMAT.md has every byte):
//   <dir>/LOCK              held (FileSystem::LockFile) while open; a second open: kBusy
//   <dir>/wal/              sync::Wal segments: every write batch is one record, appended
//                           (and, per sync mode, synced) before the batch is acknowledged
//   <dir>/NNNNNN.sst        sorted tables: CRC32C'd blocks, an index, a bloom filter, a footer
//   <dir>/NNNNNN.blob       values of at least `min_blob_size` bytes, referenced from tables
//   <dir>/MANIFEST          the live tables (with levels) and blob files, the log LSN L (every
//                           batch with LSN < L is in the tables) and the next file number;
//                           replaced atomically (temp file, fdatasync, rename, dir fsync)
//
// Writes: a batch goes to the log, then into the active memtable (a skiplist: one writer at a
// time, readers never lock). A full memtable becomes immutable and is flushed to a level-0
// table: table (and blob file) durable, then the MANIFEST durable, and only then the log is
// checkpointed and the memtable released. Leveled compaction (FORMAT.md says why) merges tables
// down the levels in the background; writers stall on a condition variable when immutable
// memtables or level-0 tables pile up, so memory stays bounded.
//
// Reads: Get and Scan take a reference to the current memtables and table set (a "super
// version") and never wait for a log sync, a flush or a compaction. Files a compaction made
// obsolete are deleted once the durable MANIFEST no longer names them; readers still holding
// them keep reading through their open handles.
//
// EngineOptions: sync_mode, batch_records, batch_interval and segment_size configure the log;
// the memtable size defaults to segment_size (capped at 4 MiB), and log segments are no bigger
// than a memtable, so a flush frees about one log segment and the log holds about two; cache_size
// is the block cache (block_cache.h); background_work starts the flush and compaction threads
// (without it a writer flushes a full memtable itself, and compacts when level 0 reaches its
// trigger; Compact() always works). read_only opens without creating, deleting or writing anything,
// and refuses writes with kNotSupported. Close flushes every memtable (a shutdown checkpoint), so
// the open after a clean close replays no log.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engines/engine.h"
#include "sync/wal_reader.h"

namespace kvfs::engines {

struct LsmOptions {
  // Bytes of memtable (arena) before it is flushed; 0: from EngineOptions::segment_size.
  uint64_t memtable_size = 0;
  // Immutable memtables waiting for their flush before writers stall.
  uint32_t max_immutable_memtables = 2;
  // Level-0 tables: a compaction is due at `l0_compaction_trigger`, writers are slowed by 1 ms
  // each from `l0_slowdown_trigger` and stopped (until a compaction finishes) at
  // `l0_stop_trigger`.
  uint32_t l0_compaction_trigger = 4;
  uint32_t l0_slowdown_trigger = 8;
  uint32_t l0_stop_trigger = 12;
  // Level 1 may hold this many bytes of tables, each deeper level `level_size_ratio` times more.
  uint64_t l1_target_bytes = uint64_t{10} << 20;
  uint32_t level_size_ratio = 10;
  // A compaction starts a new output table past this size.
  uint64_t target_file_size = uint64_t{2} << 20;
  // A level-0 compaction of at least this many input bytes runs as two merges at once, each
  // over half of level 1's key range (0: never).
  uint64_t subcompaction_min_bytes = uint64_t{8} << 20;
  // Uncompressed bytes per data block.
  uint32_t block_size = 4096;
  uint32_t bloom_bits_per_key = 10;
  // Values of at least this many bytes go to blob files at flush time (0 turns separation off).
  uint64_t min_blob_size = 4096;
  // A blob file whose dead bytes reach this fraction of its bytes is rewritten (its live values
  // copied to a new blob file by a compaction of the tables that reference it).
  double blob_gc_ratio = 0.5;
};

// What Open found in the LSM's own files, for tests; Engine::recovery() carries the same as
// named facts beside the log's report.
struct LsmRecoveryReport {
  uint64_t log_lsn = 0;  // replay started here
  uint64_t tables = 0;
  uint64_t blob_files = 0;
  uint64_t orphans_removed = 0;  // files no MANIFEST named, left by an interrupted flush/compaction

  // Adds these to `report` as facts.
  void Describe(RecoveryReport* report) const;
};

// What the engine has done since it was opened, for tests and benchmarks.
struct LsmDebugStats {
  uint64_t flushes = 0;
  uint64_t compactions = 0;
  uint64_t trivial_moves = 0;
  uint64_t seek_compactions = 0;    // level-0 compactions scans asked for (ChargeScanSeek)
  uint64_t split_compactions = 0;   // run as two merges at once (subcompaction_min_bytes)
  uint64_t blob_gcs = 0;            // compactions run to rewrite a blob file
  uint64_t blob_files_deleted = 0;  // blob files dropped once all their values were dead
  uint64_t stalls = 0;              // writer waits on a full set of memtables or level 0
  uint64_t slowdowns = 0;           // writer 1 ms delays
  uint64_t compaction_bytes_written = 0;
  uint64_t flush_bytes_written = 0;  // tables and blob files written by flushes
  // CPU time spent in compactions and in flushes (ThreadCpuTimer), without their disk waits.
  double compaction_cpu_seconds = 0;
  double flush_cpu_seconds = 0;
  std::vector<uint64_t> tables_per_level;
  uint64_t blob_files = 0;
  uint64_t immutable_memtables = 0;
};

// Opens (creating if missing) the LSM store in `dir`. `report` may be null.
Result<std::unique_ptr<Engine>> OpenLsmWith(sync::FileSystem* fs, const std::string& dir,
                                            const EngineOptions& options,
                                            const LsmOptions& lsm_options,
                                            LsmRecoveryReport* report = nullptr);

// OpenLsmWith default LsmOptions; the "lsm" entry of the engine registry.
Result<std::unique_ptr<Engine>> OpenLsm(sync::FileSystem* fs, const std::string& dir,
                                        const EngineOptions& options);

// The engine's LsmDebugStats; `engine` must have come from OpenLsm(With).
LsmDebugStats GetLsmDebugStats(const Engine& engine);

}  // namespace kvfs::engines
