// The LMDB adapter (Debian liblmdb-dev). Built only when CMake found LMDB.
//
// LMDB has one writer at a time (a write transaction holds the environment's writer mutex)
// and a durable commit syncs the data file and the meta page. Synced mode commits one
// transaction per write; buffered mode keeps one write transaction open and commits it every
// kBufferedOpsPerTxn operations and at Sync(), so a buffered fill pays one durable commit per
// 1,000 puts (LMDB's flags stay at their durable defaults: no MDB_NOSYNC).
#include <lmdb.h>

#include <mutex>

#include "tests/bench/bench_store.h"

namespace kvfs::bench {
namespace {

constexpr size_t kMapSize = size_t{8} << 30;
constexpr uint64_t kBufferedOpsPerTxn = 1000;

Status Error(int rc, std::string_view what) {
  if (rc == MDB_NOTFOUND) return Status::NotFound(std::string(what));
  return Status::IOError(std::string(what) + ": " + mdb_strerror(rc));
}

MDB_val V(std::string_view s) { return MDB_val{s.size(), const_cast<char*>(s.data())}; }
std::string_view SV(const MDB_val& v) { return {static_cast<const char*>(v.mv_data), v.mv_size}; }

class LmdbStore : public BenchStore {
 public:
  LmdbStore(MDB_env* env, MDB_dbi dbi, WriteMode mode)
      : env_(env), dbi_(dbi), buffered_(mode == WriteMode::kBuffered) {}
  ~LmdbStore() override {
    if (env_ != nullptr) {
      if (pending_ != nullptr) mdb_txn_abort(pending_);
      mdb_env_close(env_);
    }
  }

  Status Put(std::string_view key, std::string_view value) override {
    return Write([&](MDB_txn* txn) {
      MDB_val k = V(key), v = V(value);
      const int rc = mdb_put(txn, dbi_, &k, &v, 0);
      return rc == 0 ? Status::OK() : Error(rc, "lmdb put");
    });
  }
  Status Get(std::string_view key, std::string* value) override {
    return Read([&](MDB_txn* txn) {
      MDB_val k = V(key), v;
      const int rc = mdb_get(txn, dbi_, &k, &v);
      if (rc != 0) return Error(rc, "lmdb get");
      value->assign(SV(v));
      return Status::OK();
    });
  }
  Status Delete(std::string_view key) override {
    return Write([&](MDB_txn* txn) {
      MDB_val k = V(key);
      const int rc = mdb_del(txn, dbi_, &k, nullptr);
      return rc == 0 || rc == MDB_NOTFOUND ? Status::OK() : Error(rc, "lmdb delete");
    });
  }
  Status Apply(const std::vector<BatchOp>& ops) override {
    return Write(
        [&](MDB_txn* txn) {
          for (const BatchOp& op : ops) {
            MDB_val k = V(op.key), v = V(op.value);
            const int rc =
                op.is_delete ? mdb_del(txn, dbi_, &k, nullptr) : mdb_put(txn, dbi_, &k, &v, 0);
            if (rc != 0 && !(op.is_delete && rc == MDB_NOTFOUND)) return Error(rc, "lmdb batch");
          }
          return Status::OK();
        },
        ops.size());
  }
  Status Scan(std::string_view prefix, uint64_t* rows, uint64_t* bytes) override {
    return Read([&](MDB_txn* txn) {
      MDB_cursor* c = nullptr;
      int rc = mdb_cursor_open(txn, dbi_, &c);
      if (rc != 0) return Error(rc, "lmdb cursor");
      MDB_val k = V(prefix), v;
      rc = prefix.empty() ? mdb_cursor_get(c, &k, &v, MDB_FIRST)
                          : mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
      while (rc == 0 && SV(k).starts_with(prefix)) {
        ++*rows;
        *bytes += k.mv_size + v.mv_size;
        rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
      }
      mdb_cursor_close(c);
      return rc == 0 || rc == MDB_NOTFOUND ? Status::OK() : Error(rc, "lmdb scan");
    });
  }
  Status Sync() override {
    std::lock_guard lock(mu_);
    return CommitPending();
  }
  Status Close() override {
    Status s = Sync();
    mdb_env_close(env_);
    env_ = nullptr;
    return s;
  }

 private:
  template <typename Fn>
  Status Write(const Fn& fn, uint64_t ops = 1) {
    if (!buffered_) {
      MDB_txn* txn = nullptr;
      int rc = mdb_txn_begin(env_, nullptr, 0, &txn);
      if (rc != 0) return Error(rc, "lmdb begin");
      Status s = fn(txn);
      if (!s.ok()) {
        mdb_txn_abort(txn);
        return s;
      }
      rc = mdb_txn_commit(txn);
      return rc == 0 ? Status::OK() : Error(rc, "lmdb commit");
    }
    std::lock_guard lock(mu_);
    if (pending_ == nullptr) {
      const int rc = mdb_txn_begin(env_, nullptr, 0, &pending_);
      if (rc != 0) return Error(rc, "lmdb begin");
    }
    Status s = fn(pending_);
    if (!s.ok()) return s;
    pending_ops_ += ops;
    return pending_ops_ >= kBufferedOpsPerTxn ? CommitPending() : Status::OK();
  }

  template <typename Fn>
  Status Read(const Fn& fn) {
    if (buffered_) {
      std::lock_guard lock(mu_);
      if (pending_ != nullptr) return fn(pending_);  // sees its own uncommitted writes
    }
    MDB_txn* txn = nullptr;
    const int rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn);
    if (rc != 0) return Error(rc, "lmdb begin read");
    Status s = fn(txn);
    mdb_txn_abort(txn);
    return s;
  }

  Status CommitPending() {
    if (pending_ == nullptr) return Status::OK();
    const int rc = mdb_txn_commit(pending_);
    pending_ = nullptr;
    pending_ops_ = 0;
    return rc == 0 ? Status::OK() : Error(rc, "lmdb commit");
  }

  MDB_env* env_;
  MDB_dbi dbi_;
  const bool buffered_;
  std::mutex mu_;  // guards pending_ (buffered mode)
  MDB_txn* pending_ = nullptr;
  uint64_t pending_ops_ = 0;
};

}  // namespace

Result<std::unique_ptr<BenchStore>> OpenLmdbStore(const std::string& dir, WriteMode mode) {
  MDB_env* env = nullptr;
  int rc = mdb_env_create(&env);
  if (rc != 0) return Error(rc, "lmdb env create");
  MDB_txn* txn = nullptr;
  MDB_dbi dbi = 0;
  if ((rc = mdb_env_set_mapsize(env, kMapSize)) == 0 &&
      (rc = mdb_env_open(env, dir.c_str(), 0, 0644)) == 0 &&
      (rc = mdb_txn_begin(env, nullptr, 0, &txn)) == 0) {
    rc = mdb_dbi_open(txn, nullptr, 0, &dbi);
    if (rc == 0) {
      rc = mdb_txn_commit(txn);  // frees txn either way
    } else {
      mdb_txn_abort(txn);
    }
  }
  if (rc != 0) {
    mdb_env_close(env);
    return Error(rc, "lmdb open " + dir);
  }
  return std::unique_ptr<BenchStore>(new LmdbStore(env, dbi, mode));
}

std::string LmdbVersion() {
  int major = 0, minor = 0, patch = 0;
  mdb_version(&major, &minor, &patch);
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
}

std::string LmdbSettings() {
  return "default environment flags (durable commits: data and meta page synced; no "
         "MDB_NOSYNC/MDB_WRITEMAP), map size 8 GiB; buffered: one write transaction per 1,000 "
         "puts (so one durable commit per 1,000 writes, and at the end of a fill); synced: one "
         "transaction per write, writers serialized by LMDB's writer lock (no group commit); "
         "each get is a read-only transaction";
}

}  // namespace kvfs::bench
