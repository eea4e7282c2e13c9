// Bitcask: an append-only hash-index engine whose data files are write-ahead-log segments,
// with an ordered in-memory keydir, merges into hinted data files, and crash-safe recovery.
//
// Layout of a data directory (details in FORMAT.md):
//   <dir>/LOCK       held (FileSystem::LockFile) while the store is open; a second open: kBusy
//   <dir>/wal/       the active and recent data files: sync::Wal segments. Each write batch is
//                    one log record; the keydir points into it (segment, offset of one entry)
//   <dir>/merged/    merged data files NNNN.data and their hint files NNNN.hint
//   <dir>/MANIFEST   the live merged files and merged_lsn M: every log record with LSN < M is
//                    represented in them, so recovery replays the log from M only
//
// Reads: Get copies a key's location under a shared lock and preads one entry (its CRC32C and
// key checked) outside it; reads never wait on a log sync or on a merge.
//
// Merge (Compact, or the background thread): with appends paused only long enough to let the
// ones in flight reach the keydir, M = the log's next LSN; every live entry with LSN < M is
// copied into new merged files (temp name, fdatasync, rename, directory fsync), then the
// MANIFEST is replaced atomically, then the keydir is repointed, then the log is checkpointed at
// M and the old merged files are removed. A crash at any point leaves the old state or the new.
//
// EngineOptions: sync_mode, batch_records, batch_interval and segment_size configure the log;
// background_work starts the merge thread; cache_size is unused (values are read with pread
// and cached by the OS). A read_only open takes the lock too (so it fails with kBusy while
// the store is open elsewhere), creates and deletes nothing, and refuses writes and Compact
// with kNotSupported.
//
// This header adds, for tests and tools, what EngineOptions does not carry: hint use, merged
// file size, the background merge trigger, and a recovery report.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engines/engine.h"
#include "sync/wal_reader.h"

namespace kvfs::engines {

struct BitcaskOptions {
  // Recovery reads a merged file's keys from its hint file when that is valid; false forces a
  // scan of every merged data file (tests compare the two).
  bool use_hints = true;
  // A merge starts a new merged data file once the current one reaches this size.
  uint64_t merged_file_size = uint64_t{256} << 20;
  // The background merge (EngineOptions::background_work) runs when at least
  // `merge_min_sealed_segments` log segments are full (not the newest) and either dead bytes
  // (overwritten or deleted entries, tombstones) are at least `merge_garbage_ratio` of all data
  // bytes, or `merge_max_sealed_segments` segments are full (bounding the log replay at open).
  uint32_t merge_min_sealed_segments = 2;
  double merge_garbage_ratio = 0.5;
  uint32_t merge_max_sealed_segments = 16;
  // How often the background thread looks at the trigger (it is also woken on rotation).
  std::chrono::milliseconds merge_check_interval{1000};
  // The longest key Apply takes (and recovery accepts). An engine layered on Bitcask that
  // prefixes its callers' keys (engines/events) raises it by its prefix, so its callers still
  // get kMaxKeySize.
  size_t max_key_size = kMaxKeySize;
};

// What Open found in Bitcask's own files, for tests; Engine::recovery() carries the same as
// named facts beside the log's report.
struct BitcaskRecoveryReport {
  uint64_t merged_lsn = 0;
  uint64_t merged_files = 0;
  uint64_t hint_files_used = 0;
  // Hint files that were missing or invalid, each "<path>: <why>"; their data files were scanned.
  std::vector<std::string> hint_files_rejected;
  uint64_t keys_from_hints = 0;
  uint64_t entries_scanned = 0;         // records read from merged data files by scanning
  uint64_t leftover_files_removed = 0;  // in merged/, left by an interrupted merge

  // Adds these to `report` as facts (and each rejected hint file as a warning).
  void Describe(RecoveryReport* report) const;
};

// Opens (creating if missing) the Bitcask store in `dir`. `report` may be null.
Result<std::unique_ptr<Engine>> OpenBitcaskWith(sync::FileSystem* fs, const std::string& dir,
                                                const EngineOptions& options,
                                                const BitcaskOptions& bitcask_options,
                                                BitcaskRecoveryReport* report = nullptr);

// What the engine has done since it was opened, for tests.
struct BitcaskDebugStats {
  uint64_t merge_checks = 0;  // times the background thread looked at the merge trigger
};
// The engine's BitcaskDebugStats; `engine` must have come from OpenBitcask(With).
BitcaskDebugStats GetBitcaskDebugStats(const Engine& engine);

// OpenBitcaskWith default BitcaskOptions; the "bitcask" entry of the engine registry.
Result<std::unique_ptr<Engine>> OpenBitcask(sync::FileSystem* fs, const std::string& dir,
                                            const EngineOptions& options);

}  // namespace kvfs::engines
