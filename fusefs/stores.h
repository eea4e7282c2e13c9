// Stores: opening the stores a config::Config names, for the daemon and the offline tools.
//
// Each store's data directory carries a marker file, KVFS_STORE, written durably on first use
// (sync::WriteFileAtomically after sync::CreateDirDurably), in TOML (toml11 writes and reads it):
//
//   engine = "bitcask"
//   layout = 1
//
// It records which engine owns the directory, so that opening it later with another engine
// (a changed config, a wrong `--engine`) is refused with a message naming the directory and
// both engines, before that engine touches a file. A directory without a marker (made by an
// older kvfs or by the engine directly) is taken to hold the configured engine; a writable open
// then adds the marker. The marker is written only once the store's file tree is durable, so it
// also promises a tree: a marked store whose engine has none lost its data files and is refused
// (FileStoreOptions::expect_tree), never started afresh.
//
// Older kvfs wrote the name unquoted (`engine = bitcask`), which is not TOML. Such a marker is
// recognised by its exact bytes, "engine = NAME\nlayout = 1\n" for a NAME of
// engines::EngineNames(), not parsed; it keeps opening and is left as it is. Anything else that
// is not TOML with a non-empty string `engine` and `layout = 1` is Corruption naming the file.
//
// Sync modes (config::SyncMode) map onto the engine and the FileStore so that each has one job:
// - always: the engine's log in mode `none`, FileStoreOptions::sync_every_mutation set: the
//   FileStore syncs after each mutation outside its lock, so concurrent writers share one log
//   sync (group commit);
// - batch:  the engine's log in mode `batch` (batch_records, batch_window_ms);
// - none:   the engine's log in mode `none` (a sync only on fsync, fdatasync, fsyncdir).
//
// Thread safety: OpenStores and CloseStores are called by one thread; the opened FileStores are
// thread-safe (file_store.h).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "fusefs/file_store.h"
#include "sync/file_system.h"
#include "sync/status.h"

namespace kvfs::fusefs {

inline constexpr const char* kStoreMarkerName = "KVFS_STORE";
inline constexpr int kStoreMarkerLayout = 1;

// One opened store: its configuration and its file tree.
struct Store {
  config::StoreConfig config;
  std::unique_ptr<FileStore> files;
  sync::FileSystem* fs = nullptr;  // what the store's files live on (statfs asks it)
};

struct OpenStoresOptions {
  // Offline read tools and read-only mounts (-o ro): the engine and the FileStore open
  // read-only, nothing is written to the store (not even the marker), background work is off.
  // A missing data directory is NotFound, except a remote engine's (etcd), whose directory
  // holds only its lock and is made as for a writable open: a read-only follower on another
  // host has none yet.
  bool read_only = false;
  // Background merges/compactions (off for offline tools, which exit soon).
  bool background_work = true;
  // Where the data directories are; null: the real disk (sync::DefaultFileSystem()). Tests of
  // power cuts through the mount put a FaultFileSystem here (daemon.h).
  sync::FileSystem* fs = nullptr;
};

// The marker's text for `engine`, as written now: engine = "NAME"\nlayout = 1\n.
std::string StoreMarkerText(const std::string& engine);

// Checks a store's directory before any engine opens a file in it; every open of a store (the
// daemon's, the offline tools', kvfs check's) calls this first. Two checks, in this order:
// - the directory and everything in it are private to this process's effective user
//   (sync/private_tree.h): a store readable or writable by group or others, or owned by another
//   user, is refused (InvalidArgument) naming the first such path, its mode or owner, and the
//   command that fixes it. Nothing is repaired here: as PostgreSQL does with its data
//   directory, the operator decides (README, "Security");
// - the marker against `engine`: OK when it matches or is absent; InvalidArgument naming the
//   directory and both engines when it names another; Corruption naming the file when it is
//   neither TOML nor an older marker (see the top of this header).
// Sets *present to whether a marker exists, and *promises_tree (if not null) to whether it
// promises a file tree (a TOML marker, written only once the tree was durable; an older
// kvfs's marker was written before it).
Status CheckStoreMarker(sync::FileSystem* fs, const std::string& data_dir,
                        const std::string& engine, bool* present, bool* promises_tree = nullptr);

// Opens one store: creates the data directory (unless read_only; 0700, as every directory kvfs
// creates, its missing parents included), checks it (CheckStoreMarker), opens the
// engine with the options `store` asks for, writes the marker if it was missing, and opens the
// FileStore on it. Errors name the store and its directory; a directory locked by another
// process (a mounted kvfs) is kBusy with the holder's pid, as the engine reports it.
Result<Store> OpenStore(const config::StoreConfig& store, const OpenStoresOptions& options);

// Opens every store of `config` in order. On the first failure, closes those already opened
// and returns that failure.
Result<std::vector<Store>> OpenStores(const config::Config& config,
                                      const OpenStoresOptions& options);

// Syncs and closes every store (each is attempted even if an earlier one fails); returns the
// first error, naming its store. Leaves `stores` empty.
Status CloseStores(std::vector<Store>* stores);

// "store lsm (engine lsm, sync batch) in /var/lib/kvfs/lsm": where a store's data lives.
std::string DescribeStore(const config::StoreConfig& store);

}  // namespace kvfs::fusefs
