// BenchStore: the few operations engine_bench drives, over a kvfs engine or a peer library
// (LevelDB, RocksDB, LMDB), so every store runs the same workload code.
//
// A store is opened in one of two write modes, fixed for its lifetime:
// - kBuffered: writes need not be durable on return; Sync() makes everything written so far
//   durable (the end of a fill).
// - kSyncEachWrite: every Put/Delete/Apply is on stable storage when it returns.
// What each mode means for each library is in its adapter's Describe(), printed with the
// results.
//
// Thread safety: in kSyncEachWrite mode, Put/Get/Delete/Apply may be called from many threads
// at once. In kBuffered mode the bench uses one thread (LMDB's open write transaction belongs
// to the thread that began it).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sync/status.h"

namespace kvfs::bench {

enum class WriteMode { kBuffered, kSyncEachWrite };

struct BatchOp {
  bool is_delete = false;
  std::string_view key;
  std::string_view value;
};

class BenchStore {
 public:
  BenchStore() = default;
  BenchStore(const BenchStore&) = delete;
  BenchStore& operator=(const BenchStore&) = delete;
  virtual ~BenchStore() = default;

  virtual Status Put(std::string_view key, std::string_view value) = 0;
  // Copies the value into *value; kNotFound if the key is missing.
  virtual Status Get(std::string_view key, std::string* value) = 0;
  // Deleting a missing key is not an error.
  virtual Status Delete(std::string_view key) = 0;
  // Applies every operation atomically, in order.
  virtual Status Apply(const std::vector<BatchOp>& ops) = 0;
  // Visits every key starting with `prefix` ("" = all) in order, with its value; adds the
  // number of rows to *rows and their key and value bytes to *bytes.
  virtual Status Scan(std::string_view prefix, uint64_t* rows, uint64_t* bytes) = 0;
  // Everything written so far is durable when this returns.
  virtual Status Sync() = 0;
  // Syncs and closes; nothing may be called afterwards.
  virtual Status Close() = 0;
  // The store's tree right now ("L0 3, L1 5, L2 48 tables"), for the progress lines: a read
  // or scan figure depends on how many tables it had to look through. "" where it has none.
  virtual std::string Shape() { return ""; }
};

// A store that engine_bench can run: "kvfs:NAME" (a registered kvfs engine), "leveldb",
// "rocksdb" or "lmdb".
struct StoreSpec {
  std::string name;     // as given on the command line
  std::string library;  // "kvfs", "leveldb", "rocksdb", "lmdb"
  std::string engine;   // the kvfs engine name, for "kvfs:NAME"
  bool available = false;
  std::string why_not;   // when not available
  std::string version;   // library version
  std::string settings;  // how the store is opened, per write mode, for the report
};

// --cache-mb: one block-cache size for every store that has one (kvfs's cache_size, LevelDB's
// and RocksDB's block cache; LMDB has none, the page cache serves it), 0 = each library's own
// default. Set once, before any store is described or opened.
void SetBlockCacheBytes(uint64_t bytes);
uint64_t BlockCacheBytes();

// "L0 3, L1 5, L2 48 tables" from tables per level, the empty deepest levels left out; a
// store's Shape().
std::string LevelShape(const std::vector<uint64_t>& tables_per_level);

// Parses and checks a store name; never fails (an unusable one has available == false).
StoreSpec DescribeStore(const std::string& name);
// Every store this binary can run: each registered kvfs engine, then each compiled-in peer.
std::vector<std::string> AllStoreNames();
// Opens (creating) the store in `dir`, which the caller made empty.
Result<std::unique_ptr<BenchStore>> OpenStore(const StoreSpec& spec, const std::string& dir,
                                              WriteMode mode);

// The adapters, one file each.
Result<std::unique_ptr<BenchStore>> OpenKvfsStore(const std::string& engine, const std::string& dir,
                                                  WriteMode mode);
std::string KvfsSettings();
#ifdef KVFS_BENCH_HAVE_LEVELDB
Result<std::unique_ptr<BenchStore>> OpenLevelDbStore(const std::string& dir, WriteMode mode);
std::string LevelDbVersion();
std::string LevelDbSettings();
#endif
#ifdef KVFS_BENCH_HAVE_ROCKSDB
Result<std::unique_ptr<BenchStore>> OpenRocksDbStore(const std::string& dir, WriteMode mode);
std::string RocksDbVersion();
std::string RocksDbSettings();
#endif
#ifdef KVFS_BENCH_HAVE_LMDB
Result<std::unique_ptr<BenchStore>> OpenLmdbStore(const std::string& dir, WriteMode mode);
std::string LmdbVersion();
std::string LmdbSettings();
#endif

}  // namespace kvfs::bench
