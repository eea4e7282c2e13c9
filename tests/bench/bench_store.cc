#include "tests/bench/bench_store.h"

#include <algorithm>

#include "engines/engine.h"

namespace kvfs::bench {

namespace {
uint64_t block_cache_bytes = 0;
}  // namespace

void SetBlockCacheBytes(uint64_t bytes) { block_cache_bytes = bytes; }
uint64_t BlockCacheBytes() { return block_cache_bytes; }

std::string LevelShape(const std::vector<uint64_t>& tables_per_level) {
  size_t levels = tables_per_level.size();
  while (levels > 1 && tables_per_level[levels - 1] == 0) --levels;
  std::string out;
  for (size_t l = 0; l < levels; ++l) {
    out += (l == 0 ? "L" : ", L") + std::to_string(l) + " " + std::to_string(tables_per_level[l]);
  }
  return out.empty() ? out : out + " tables";
}

StoreSpec DescribeStore(const std::string& name) {
  StoreSpec s;
  s.name = name;
  if (name.starts_with("kvfs:")) {
    s.library = "kvfs";
    s.engine = name.substr(5);
    s.version = "this tree";
    s.settings = KvfsSettings();
    const std::vector<std::string> known = engines::EngineNames();
    if (std::find(known.begin(), known.end(), s.engine) != known.end()) {
      s.available = true;
    } else {
      std::string list;
      for (const std::string& n : known) list += (list.empty() ? "" : ", ") + n;
      s.why_not = "unknown kvfs engine '" + s.engine + "' (registered: " + list + ")";
    }
    return s;
  }
  s.library = name;
  if (name == "leveldb") {
#ifdef KVFS_BENCH_HAVE_LEVELDB
    s.available = true;
    s.version = LevelDbVersion();
    s.settings = LevelDbSettings();
#else
    s.why_not = "built without LevelDB (install libleveldb-dev and re-run cmake)";
#endif
  } else if (name == "rocksdb") {
#ifdef KVFS_BENCH_HAVE_ROCKSDB
    s.available = true;
    s.version = RocksDbVersion();
    s.settings = RocksDbSettings();
#else
    s.why_not = "built without RocksDB (install librocksdb-dev and re-run cmake)";
#endif
  } else if (name == "lmdb") {
#ifdef KVFS_BENCH_HAVE_LMDB
    s.available = true;
    s.version = LmdbVersion();
    s.settings = LmdbSettings();
#else
    s.why_not = "built without LMDB (install liblmdb-dev and re-run cmake)";
#endif
  } else {
    s.why_not = "unknown store '" + name + "' (kvfs:ENGINE, leveldb, rocksdb or lmdb)";
  }
  return s;
}

std::vector<std::string> AllStoreNames() {
  std::vector<std::string> names;
  for (const std::string& e : engines::EngineNames()) names.push_back("kvfs:" + e);
#ifdef KVFS_BENCH_HAVE_LEVELDB
  names.push_back("leveldb");
#endif
#ifdef KVFS_BENCH_HAVE_ROCKSDB
  names.push_back("rocksdb");
#endif
#ifdef KVFS_BENCH_HAVE_LMDB
  names.push_back("lmdb");
#endif
  return names;
}

Result<std::unique_ptr<BenchStore>> OpenStore(const StoreSpec& spec, const std::string& dir,
                                              WriteMode mode) {
  if (!spec.available) return Status::InvalidArgument(spec.why_not);
  if (spec.library == "kvfs") return OpenKvfsStore(spec.engine, dir, mode);
#ifdef KVFS_BENCH_HAVE_LEVELDB
  if (spec.library == "leveldb") return OpenLevelDbStore(dir, mode);
#endif
#ifdef KVFS_BENCH_HAVE_ROCKSDB
  if (spec.library == "rocksdb") return OpenRocksDbStore(dir, mode);
#endif
#ifdef KVFS_BENCH_HAVE_LMDB
  if (spec.library == "lmdb") return OpenLmdbStore(dir, mode);
#endif
  return Status::InvalidArgument("no adapter for " + spec.name);
}

}  // namespace kvfs::bench
