// The RocksDB adapter (Debian librocksdb-dev). Built only when CMake found RocksDB.
#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/version.h>
#include <rocksdb/write_batch.h>

#include "tests/bench/bench_store.h"

namespace kvfs::bench {
namespace {

rocksdb::Slice S(std::string_view s) { return rocksdb::Slice(s.data(), s.size()); }

Status Convert(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return Status::OK();
  if (s.IsNotFound()) return Status::NotFound(std::string(what));
  return Status::IOError(std::string(what) + ": " + s.ToString());
}

class RocksDbStore : public BenchStore {
 public:
  RocksDbStore(rocksdb::DB* db, WriteMode mode) : db_(db) {
    write_.sync = mode == WriteMode::kSyncEachWrite;
  }
  ~RocksDbStore() override { delete db_; }

  Status Put(std::string_view key, std::string_view value) override {
    return Convert(db_->Put(write_, S(key), S(value)), "rocksdb put");
  }
  Status Get(std::string_view key, std::string* value) override {
    return Convert(db_->Get(rocksdb::ReadOptions(), S(key), value), "rocksdb get");
  }
  Status Delete(std::string_view key) override {
    return Convert(db_->Delete(write_, S(key)), "rocksdb delete");
  }
  Status Apply(const std::vector<BatchOp>& ops) override {
    rocksdb::WriteBatch batch;
    for (const BatchOp& op : ops) {
      rocksdb::Status s =
          op.is_delete ? batch.Delete(S(op.key)) : batch.Put(S(op.key), S(op.value));
      if (!s.ok()) return Convert(s, "rocksdb batch");
    }
    return Convert(db_->Write(write_, &batch), "rocksdb write");
  }
  Status Scan(std::string_view prefix, uint64_t* rows, uint64_t* bytes) override {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
    for (it->Seek(S(prefix)); it->Valid() && it->key().starts_with(S(prefix)); it->Next()) {
      ++*rows;
      *bytes += it->key().size() + it->value().size();
    }
    return Convert(it->status(), "rocksdb scan");
  }
  Status Sync() override { return Convert(db_->SyncWAL(), "rocksdb sync"); }
  std::string Shape() override {
    std::vector<uint64_t> per_level;
    for (int level = 0; level < db_->NumberLevels(); ++level) {
      std::string n;
      if (!db_->GetProperty("rocksdb.num-files-at-level" + std::to_string(level), &n)) break;
      per_level.push_back(std::stoull(n));
    }
    return LevelShape(per_level);
  }
  Status Close() override {
    Status s = Sync();
    Status c = Convert(db_->Close(), "rocksdb close");
    delete db_;
    db_ = nullptr;
    return s.ok() ? c : s;
  }

 private:
  rocksdb::DB* db_;
  rocksdb::WriteOptions write_;
};

}  // namespace

Result<std::unique_ptr<BenchStore>> OpenRocksDbStore(const std::string& dir, WriteMode mode) {
  rocksdb::Options o;
  o.create_if_missing = true;
  o.compression = rocksdb::kNoCompression;
  o.bottommost_compression = rocksdb::kNoCompression;
  if (BlockCacheBytes() != 0) {
    rocksdb::BlockBasedTableOptions t;
    t.block_cache = rocksdb::NewLRUCache(BlockCacheBytes());
    o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(t));
  }
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(o, dir, &db);
  if (!s.ok()) return Status::IOError("rocksdb open " + dir + ": " + s.ToString());
  return std::unique_ptr<BenchStore>(new RocksDbStore(db, mode));
}

std::string RocksDbVersion() {
  return std::to_string(ROCKSDB_MAJOR) + "." + std::to_string(ROCKSDB_MINOR) + "." +
         std::to_string(ROCKSDB_PATCH);
}

std::string RocksDbSettings() {
  const std::string cache = BlockCacheBytes() != 0 ? std::to_string(BlockCacheBytes() >> 20) +
                                                         " MiB block cache (--cache-mb)"
                                                   : "8 MiB block cache";
  return "Options defaults (64 MiB write buffer, 2 background jobs, " + cache +
         ", 4 KiB blocks, no bloom filter) except compression and bottommost compression off; "
         "buffered: WriteOptions.sync=false (WAL on), then SyncWAL() at the end of a fill; "
         "synced: WriteOptions.sync=true on every write (group commit across writers)";
}

}  // namespace kvfs::bench
