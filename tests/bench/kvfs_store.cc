// The kvfs adapter: any registered engine, through the Engine interface and OpenEngine.
#include "engines/engine.h"
#include "engines/lsm/lsm.h"
#include "sync/posix_file_system.h"
#include "tests/bench/bench_store.h"

namespace kvfs::bench {
namespace {

class KvfsStore : public BenchStore {
 public:
  KvfsStore(std::unique_ptr<engines::Engine> engine, bool lsm)
      : engine_(std::move(engine)), lsm_(lsm) {}

  Status Put(std::string_view key, std::string_view value) override {
    return engine_->Put(key, value);
  }
  Status Get(std::string_view key, std::string* value) override {
    Result<std::string> r = engine_->Get(key);
    if (!r.ok()) return r.status();
    *value = std::move(*r);
    return Status::OK();
  }
  Status Delete(std::string_view key) override { return engine_->Delete(key); }
  Status Apply(const std::vector<BatchOp>& ops) override {
    engines::WriteBatch batch;
    for (const BatchOp& op : ops) {
      if (op.is_delete) {
        batch.Delete(op.key);
      } else {
        batch.Put(op.key, op.value);
      }
    }
    return engine_->Apply(batch);
  }
  Status Scan(std::string_view prefix, uint64_t* rows, uint64_t* bytes) override {
    engines::ScanOptions so;
    so.prefix = std::string(prefix);
    return engine_->Scan(so, [&](std::string_view k, std::string_view v) {
      ++*rows;
      *bytes += k.size() + v.size();
      return true;
    });
  }
  Status Sync() override { return engine_->Sync(engines::SyncKind::kData); }
  Status Close() override { return engine_->Close(); }
  std::string Shape() override {
    // Since the open: how far the log's group commit shared its syncs.
    const sync::WalStats w = engine_->stats().wal;
    std::string log;
    if (w.syncs != 0) {
      char buf[128];
      std::snprintf(buf, sizeof(buf), "log: %llu syncs, %.2f requests per sync (at most %llu)",
                    static_cast<unsigned long long>(w.syncs),
                    static_cast<double>(w.synced_requests) / static_cast<double>(w.syncs),
                    static_cast<unsigned long long>(w.max_group));
      log = buf;
    }
    if (!lsm_) return log;
    const engines::LsmDebugStats d = engines::GetLsmDebugStats(*engine_);
    std::string out = LevelShape(d.tables_per_level);
    if (d.immutable_memtables != 0)
      out += ", " + std::to_string(d.immutable_memtables) + " memtables to flush";
    // Since the open: how often writers waited for a flush or compaction.
    out += "; " + std::to_string(d.stalls) + " stalls, " + std::to_string(d.slowdowns) +
           " slowdowns, " + std::to_string(d.compactions) + " compactions (" +
           std::to_string(d.trivial_moves) + " moves, " + std::to_string(d.seek_compactions) +
           " for scans)";
    char cpu[96];
    std::snprintf(cpu, sizeof(cpu), ", %.1f ms CPU per MiB compacted",
                  d.compaction_bytes_written == 0
                      ? 0.0
                      : d.compaction_cpu_seconds * 1e3 / (d.compaction_bytes_written / 1048576.0));
    if (d.compaction_bytes_written != 0) out += cpu;
    if (!log.empty()) out += "; " + log;
    return out;
  }

 private:
  std::unique_ptr<engines::Engine> engine_;
  const bool lsm_;  // GetLsmDebugStats works only on the LSM engine
};

}  // namespace

Result<std::unique_ptr<BenchStore>> OpenKvfsStore(const std::string& engine, const std::string& dir,
                                                  WriteMode mode) {
  engines::EngineOptions o;  // defaults: 64 MiB segments, 64 MiB cache, background work on
  o.sync_mode = mode == WriteMode::kSyncEachWrite ? sync::SyncMode::kAlways : sync::SyncMode::kNone;
  if (BlockCacheBytes() != 0) o.cache_size = BlockCacheBytes();
  auto e = engines::OpenEngine(engine, sync::DefaultFileSystem(), dir, o);
  if (!e.ok()) return e.status();
  return std::unique_ptr<BenchStore>(new KvfsStore(std::move(*e), engine == "lsm"));
}

std::string KvfsSettings() {
  const std::string cache =
      BlockCacheBytes() != 0 ? std::to_string(BlockCacheBytes() >> 20) + " MiB cache (--cache-mb)"
                             : "64 MiB cache";
  return "EngineOptions defaults (64 MiB log segments, the LSM's no bigger than its 4 MiB "
         "memtable; " +
         cache +
         " where the engine has one, background merge/compaction on); buffered: sync mode none, "
         "Sync(kData) = fdatasync "
         "of the log at the end of a fill; synced: sync mode always (each write is in an "
         "fdatasync'ed log on return; concurrent writers share one fdatasync)";
}

}  // namespace kvfs::bench
