#include "engines/engine_open.h"

#include "sync/durable.h"

namespace kvfs::engines {

Result<std::unique_ptr<sync::FileLock>> OpenDataDir(sync::FileSystem* fs, const std::string& dir,
                                                    std::string_view engine, bool read_only) {
  if (read_only) {
    KVFS_ASSIGN_OR_RETURN(bool exists, fs->Exists(dir));
    if (!exists) return Status::NotFound("no " + std::string(engine) + " store in " + dir);
  } else {
    KVFS_RETURN_IF_ERROR(sync::CreateDirDurably(fs, dir));
  }
  auto lock = fs->LockFile(sync::JoinPath(dir, kLockFileName));
  if (!lock.ok()) return lock.status().WithContext(std::string(engine) + " store " + dir);
  return lock;
}

sync::WalOptions LogOptionsFor(const EngineOptions& options) {
  sync::WalOptions wo;
  wo.segment_size = options.segment_size;
  wo.sync_mode = options.sync_mode;
  wo.batch_records = options.batch_records;
  wo.batch_interval = options.batch_interval;
  return wo;
}

Result<std::unique_ptr<sync::Wal>> OpenLog(sync::FileSystem* fs, const std::string& wal_dir,
                                           const sync::WalOptions& options,
                                           const EngineOptions& engine_options, uint64_t from_lsn,
                                           const sync::WalRecordFn& replay,
                                           RecoveryReport* report) {
  if (engine_options.salvage && !engine_options.read_only) {
    return Status::InvalidArgument("a salvage open must be read-only: " + wal_dir);
  }
  if (engine_options.read_only) {
    sync::WalReadOptions ro;
    ro.salvage = engine_options.salvage;
    KVFS_RETURN_IF_ERROR(sync::ReadWal(fs, wal_dir, from_lsn, replay, &report->log, ro));
    return std::unique_ptr<sync::Wal>();
  }
  return sync::Wal::Open(fs, wal_dir, options, from_lsn, replay, &report->log);
}

}  // namespace kvfs::engines
