// The LevelDB adapter (Debian libleveldb-dev). Built only when CMake found LevelDB.
#include <leveldb/cache.h>
#include <leveldb/db.h>
#include <leveldb/options.h>
#include <leveldb/write_batch.h>

#include "tests/bench/bench_store.h"

namespace kvfs::bench {
namespace {

leveldb::Slice S(std::string_view s) { return leveldb::Slice(s.data(), s.size()); }

Status Convert(const leveldb::Status& s, std::string_view what) {
  if (s.ok()) return Status::OK();
  if (s.IsNotFound()) return Status::NotFound(std::string(what));
  return Status::IOError(std::string(what) + ": " + s.ToString());
}

class LevelDbStore : public BenchStore {
 public:
  LevelDbStore(leveldb::DB* db, WriteMode mode, std::unique_ptr<leveldb::Cache> cache)
      : db_(db), cache_(std::move(cache)) {
    write_.sync = mode == WriteMode::kSyncEachWrite;
  }
  ~LevelDbStore() override { delete db_; }  // before cache_, which the DB uses

  Status Put(std::string_view key, std::string_view value) override {
    return Convert(db_->Put(write_, S(key), S(value)), "leveldb put");
  }
  Status Get(std::string_view key, std::string* value) override {
    return Convert(db_->Get(leveldb::ReadOptions(), S(key), value), "leveldb get");
  }
  Status Delete(std::string_view key) override {
    return Convert(db_->Delete(write_, S(key)), "leveldb delete");
  }
  Status Apply(const std::vector<BatchOp>& ops) override {
    leveldb::WriteBatch batch;
    for (const BatchOp& op : ops) {
      if (op.is_delete) {
        batch.Delete(S(op.key));
      } else {
        batch.Put(S(op.key), S(op.value));
      }
    }
    return Convert(db_->Write(write_, &batch), "leveldb write");
  }
  Status Scan(std::string_view prefix, uint64_t* rows, uint64_t* bytes) override {
    std::unique_ptr<leveldb::Iterator> it(db_->NewIterator(leveldb::ReadOptions()));
    for (it->Seek(S(prefix)); it->Valid() && it->key().starts_with(S(prefix)); it->Next()) {
      ++*rows;
      *bytes += it->key().size() + it->value().size();
    }
    return Convert(it->status(), "leveldb scan");
  }
  Status Sync() override {
    // An empty batch written with sync=true syncs the log, and with it every earlier write.
    leveldb::WriteOptions w;
    w.sync = true;
    leveldb::WriteBatch empty;
    return Convert(db_->Write(w, &empty), "leveldb sync");
  }
  std::string Shape() override {
    std::vector<uint64_t> per_level;
    for (int level = 0; level < 7; ++level) {
      std::string n;
      if (!db_->GetProperty("leveldb.num-files-at-level" + std::to_string(level), &n)) break;
      per_level.push_back(std::stoull(n));
    }
    return LevelShape(per_level);
  }
  Status Close() override {
    Status s = Sync();
    delete db_;
    db_ = nullptr;
    return s;
  }

 private:
  leveldb::DB* db_;
  std::unique_ptr<leveldb::Cache> cache_;  // null: LevelDB's own 8 MiB cache
  leveldb::WriteOptions write_;
};

}  // namespace

Result<std::unique_ptr<BenchStore>> OpenLevelDbStore(const std::string& dir, WriteMode mode) {
  leveldb::Options o;
  o.create_if_missing = true;
  o.compression = leveldb::kNoCompression;
  // Owned by the store: LevelDB does not delete a cache it was given.
  std::unique_ptr<leveldb::Cache> cache;
  if (BlockCacheBytes() != 0) {
    cache.reset(leveldb::NewLRUCache(BlockCacheBytes()));
    o.block_cache = cache.get();
  }
  leveldb::DB* db = nullptr;
  leveldb::Status s = leveldb::DB::Open(o, dir, &db);
  if (!s.ok()) return Status::IOError("leveldb open " + dir + ": " + s.ToString());
  return std::unique_ptr<BenchStore>(new LevelDbStore(db, mode, std::move(cache)));
}

std::string LevelDbVersion() {
  return std::to_string(leveldb::kMajorVersion) + "." + std::to_string(leveldb::kMinorVersion);
}

std::string LevelDbSettings() {
  const std::string cache = BlockCacheBytes() != 0 ? std::to_string(BlockCacheBytes() >> 20) +
                                                         " MiB block cache (--cache-mb)"
                                                   : "8 MiB block cache";
  return "Options defaults (4 MiB write buffer, " + cache +
         ", 4 KiB blocks, no bloom filter, tables read through mmap) except compression off; "
         "buffered: WriteOptions.sync=false, then one synced "
         "empty write at the end of a fill; synced: WriteOptions.sync=true on every write "
         "(LevelDB groups concurrent writers into one log sync)";
}

}  // namespace kvfs::bench
