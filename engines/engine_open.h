// The steps every engine's open shares, in one place, so that each engine (and each engine to
// come) takes its data directory, its lock and its log the same way:
//
//   1. OpenDataDir: the data directory, created durably (or, read-only, required to exist), and
//      its LOCK file, held while the store is open (a second open gets kBusy naming the holder);
//   2. the engine reads its own files (MANIFEST, tables, merged files...);
//   3. OpenLog: the write-ahead log in <dir>/wal, replayed from the LSN the engine's files do
//      not cover, and opened for appends unless read-only; what it found goes into the
//      engine's RecoveryReport.
//
// Thread safety: called by the opening thread only.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "engines/engine.h"
#include "sync/file_system.h"
#include "sync/status.h"
#include "sync/wal.h"
#include "sync/wal_reader.h"

namespace kvfs::engines {

inline constexpr char kLockFileName[] = "LOCK";
inline constexpr char kWalDirName[] = "wal";

// Step 1. Read-only: kNotFound "no <engine> store in <dir>" if `dir` is missing, and nothing is
// created. The lock's errors (kBusy while another open holds it) name the store.
Result<std::unique_ptr<sync::FileLock>> OpenDataDir(sync::FileSystem* fs, const std::string& dir,
                                                    std::string_view engine, bool read_only);

// The log settings `options` ask for (sync mode, batching, segment size).
sync::WalOptions LogOptionsFor(const EngineOptions& options);

// Step 3. Replays every record of the log in `wal_dir` with LSN >= from_lsn through `replay`,
// then, unless read_only, opens the log for appends (Wal::Open). Read-only, the log is only
// read (nothing is written, not even the removal of a torn tail) and the result is null.
// `report->log` receives what the reader found.
// A salvage open (EngineOptions::salvage, read-only only) skips damage (sync::WalReadOptions).
Result<std::unique_ptr<sync::Wal>> OpenLog(sync::FileSystem* fs, const std::string& wal_dir,
                                           const sync::WalOptions& options,
                                           const EngineOptions& engine_options, uint64_t from_lsn,
                                           const sync::WalRecordFn& replay, RecoveryReport* report);

}  // namespace kvfs::engines
