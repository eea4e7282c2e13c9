// Filesystem: the mounted view of the stores, the work behind every FUSE request.
//
// The work and the FUSE replies are kept apart: Filesystem's methods take plain arguments and
// return Status/Result (the reply errno is ErrnoOf(status)), so they are tested without a
// mount (tests/fusefs/fuse_ops_test.cc); fuse_ops.h's LowLevelOps() is the thin libfuse adapter
// that decodes each request, calls one method and replies exactly once, holding no lock.
//
// The tree (inode numbers: inode_map.h):
//   multi-store mode:   /            virtual, read-only: one directory per store
//                       /<store>/... the store's FileStore
//   single-store mode:  /...         the one store's FileStore (`--engine NAME`)
//   both:               /.kvfs/      control directory, hidden from readdir (reachable by
//                                    name, like ZFS's .zfs), read-only, the mounting user's
//                                    alone unless public_control: control_files.h; its config
//                                    never shows a secret (config::Secrets::kRedact)
// In single-store mode the name ".kvfs" at the root is reserved: creating, renaming onto or
// removing it fails (EEXIST / EPERM).
//
// Caching (all changes come through this kernel mount: the stores' data dirs are locked, so no
// other process can change them behind its back): entries, attributes and negative lookups
// are cached for FsOptions::timeout_s; file pages are kept across opens (keep_cache). An etcd
// store may be mounted by several daemons (one writer, read-only followers): there the
// engine's change feed drops what the kernel caches of every change (WatchStores, fed to
// libfuse's notify_inval_entry / notify_inval_inode by the daemon), so the caches stay on. The
// live control files (stats, metrics) are regenerated on each lookup and never cached.
//
// Opens: with FsOptions::no_open (the default) open(2) of a regular file answers ENOSYS, so
// the kernel stops sending OPEN and RELEASE for files (FUSE_NO_OPEN_SUPPORT): files need no
// per-open state here (a file unlinked while open lives on through its lookup count until
// FORGET), and each open/close saves a round trip. FLUSH answers ENOSYS for the same reason
// (every write reached the engine already). fsync and fsyncdir never answer ENOSYS. A mount
// that serves an events store turns no_open off (the kernel's choice is per connection): its
// stream files are opened with direct_io, so one write(2) arrives as one write, one event
// (event_view.h); the files of its other stores are opened with keep_cache as before.
//
// Events stores: append-only files and the ".events" view (event_view.h); the view's nodes
// are never cached (entries, attributes, negative lookups: an event appears with an append).
//
// Errors: every mutation refused by a read-only store (after a failed sync) is EROFS, by the
// FileStore. Hard links within a store; across stores EXDEV. Special files (FIFOs, devices,
// sockets) are nodes like any other; the kernel opens them itself and never sends their reads or
// writes here. Renames across stores or involving the virtual root or control directory: EXDEV.
//
// Thread safety: every method may be called from any thread at once (libfuse's multithreaded
// loop), except Shutdown, which runs once the loop has stopped.
#pragma once

#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "fusefs/control_files.h"
#include "fusefs/file_store.h"
#include "fusefs/handle_table.h"
#include "fusefs/inode_map.h"
#include "fusefs/stats_report.h"
#include "fusefs/stores.h"
#include "sync/status.h"

namespace kvfs::fusefs {

struct FsOptions {
  bool single_store = false;     // one store at the root (`--engine NAME`)
  bool no_open = true;           // answer OPEN with ENOSYS (see the top of this header)
  bool writeback_cache = false;  // FUSE_CAP_WRITEBACK_CACHE (`-o kvfs_writeback`)
  // Extended attributes (`-o kvfs_noxattr` turns them off: every xattr call answers ENOSYS,
  // which the kernel remembers, so a write no longer costs a GETXATTR round trip for
  // security.capability before it; programs then see EOPNOTSUPP).
  bool xattrs = true;
  double timeout_s = 3600;  // entry, attribute and negative-lookup cache lifetime
  // /.kvfs readable by every user (`-o kvfs_public_control`); by default only by the mounting
  // user (control_files.h).
  bool public_control = false;
  std::string mountpoint;  // for /.kvfs/stats and /.kvfs/metrics only
};

// A reply to lookup, mkdir, mknod, symlink, create (fuse_entry_param without the FUSE type).
struct Entry {
  uint64_t ino = 0;
  struct stat attr = {};
  double entry_timeout = 0;
  double attr_timeout = 0;
};

// Per-opendir state: offsets handed to the kernel map to the name of the entry they follow, so
// a listing resumes after that name even when entries were added or removed meanwhile.
struct DirHandle {
  uint64_t ino = 0;
  std::mutex mu;
  std::map<off_t, std::string> names;  // guarded by mu: offset -> name of that entry
  off_t next_offset = 4;  // guarded by mu; offsets: 1 after ".", 2 after "..", entries 4, 5, ...
};

// Per-open state, for the virtual files and the files of an events store (others need none).
// A file opened with one is served with direct_io.
struct OpenFile {
  std::string snapshot;  // the virtual file's content as of open (events stores: unused)
};

// What the daemon does when another process changed something its kernel may cache (several
// daemons on one etcd store): drop the entry `name` of directory `parent`, or the attributes
// of `ino` and (offset >= 0) its cached bytes [offset, offset + length) (length 0: to the end).
// Called from an engine's feed thread, never from a request handler (libfuse's notify calls
// may deadlock there).
struct Invalidation {
  std::function<void(uint64_t parent, std::string_view name)> entry;
  std::function<void(uint64_t ino, int64_t offset, int64_t length)> inode;
};

class Filesystem {
 public:
  Filesystem(std::vector<Store> stores, config::Config config, FsOptions options);
  ~Filesystem();  // Shutdown() if not done
  Filesystem(const Filesystem&) = delete;
  Filesystem& operator=(const Filesystem&) = delete;

  const FsOptions& options() const { return options_; }
  const InodeMap& inodes() const { return inodes_; }
  size_t store_count() const { return stores_.size(); }
  FileStore* store(size_t i) { return stores_[i].files.get(); }

  // --- namespace (each Entry returned carries one lookup reference the kernel will forget) ---
  Result<Entry> Lookup(uint64_t parent, std::string_view name);
  void Forget(uint64_t ino, uint64_t nlookup);
  Result<struct stat> GetAttr(uint64_t ino);
  // How long the kernel may cache the attributes of `ino`: 0 for the live control files.
  double AttrTimeout(uint64_t ino) const;
  // How long the kernel may cache that `parent` has no such name: 0 in an event view, where
  // event N appears with the next append.
  double NegativeTimeout(uint64_t parent) const;
  // `to_set`: FUSE_SET_ATTR_* bits; the values come from `attr`.
  Result<struct stat> SetAttr(uint64_t ino, const struct stat& attr, int to_set);
  Result<std::string> ReadLink(uint64_t ino);
  // mknod(2): a regular file, FIFO, character or block device (`rdev` as the kernel encodes it,
  // kept and given back as it came) or socket, by the type bits of `mode`.
  Result<Entry> MakeNode(uint64_t parent, std::string_view name, mode_t mode, uint64_t rdev,
                         const Caller& caller);
  Result<Entry> Mkdir(uint64_t parent, std::string_view name, mode_t mode, const Caller& caller);
  Result<Entry> Symlink(uint64_t parent, std::string_view name, std::string_view target,
                        const Caller& caller);
  // open(O_CREAT): EEXIST only with O_EXCL in `flags`; an existing file is opened otherwise
  // (truncated with O_TRUNC).
  Result<Entry> Create(uint64_t parent, std::string_view name, mode_t mode, int flags,
                       const Caller& caller);
  // link(2): a new name for `ino` in `new_parent` (EXDEV across stores or into the virtual root).
  Result<Entry> Link(uint64_t ino, uint64_t new_parent, std::string_view new_name);
  Status Unlink(uint64_t parent, std::string_view name);
  Status Rmdir(uint64_t parent, std::string_view name);
  // flags: 0, RENAME_NOREPLACE, RENAME_EXCHANGE (EINVAL for others).
  Status Rename(uint64_t parent, std::string_view name, uint64_t new_parent,
                std::string_view new_name, unsigned flags);

  // --- files ---
  // ENOSYS for store files in no_open mode (the kernel then stops sending opens); otherwise
  // OK. For a virtual file, *open_file receives its snapshot (served with direct_io).
  Status Open(uint64_t ino, int flags, std::unique_ptr<OpenFile>* open_file);
  // For an events store's file (fusefs/event_view.h): its per-open state (direct_io, so one
  // write(2) is one write here); null for any other file. Create's caller uses it too.
  std::unique_ptr<OpenFile> StreamOpenFile(uint64_t ino) const;
  // `open_file` may be null (no_open mode, or a store file).
  Result<std::string> Read(uint64_t ino, uint64_t offset, size_t size, const OpenFile* open_file);
  Result<size_t> Write(uint64_t ino, uint64_t offset, std::string_view data);
  // fallocate(2): mode 0 and FALLOC_FL_KEEP_SIZE (ENOSPC if the data directory's file system
  // has less free space than `length`; nothing is held ahead), FALLOC_FL_PUNCH_HOLE and
  // FALLOC_FL_ZERO_RANGE (FileStore::Allocate); other modes EOPNOTSUPP.
  Status Fallocate(uint64_t ino, int mode, uint64_t offset, uint64_t length);
  // lseek(2) with SEEK_DATA or SEEK_HOLE (the kernel answers the other whences itself).
  Result<uint64_t> Lseek(uint64_t ino, uint64_t offset, int whence);
  Status Fsync(uint64_t ino, bool datasync);
  Status FsyncDir(uint64_t ino);

  // --- directories ---
  Result<std::unique_ptr<DirHandle>> OpenDir(uint64_t ino);
  // Calls `add(name, entry, offset_after_it)` for the entries after `offset` ("." and ".."
  // first) until it returns false (the reply buffer is full). With `plus`, each entry `add`
  // accepts gains a lookup reference (except "." and "..", whose Entry has ino 0).
  using AddEntryFn = std::function<bool(std::string_view name, const Entry& entry, off_t next)>;
  Status ReadDir(DirHandle* dir, off_t offset, bool plus, const AddEntryFn& add);

  Result<struct statvfs> StatFs(uint64_t ino);

  // --- xattrs: user.* and trusted.* are kept; security.* and system.* are EOPNOTSUPP, as is a
  // name in no namespace; a namespace without a name ("user.") is EINVAL ---
  Result<std::string> GetXattr(uint64_t ino, std::string_view name);
  Result<std::string> ListXattr(uint64_t ino);  // names, each followed by '\0'
  Status SetXattr(uint64_t ino, std::string_view name, std::string_view value, int flags);
  Status RemoveXattr(uint64_t ino, std::string_view name);

  // --- several daemons on one store ---
  // Watches every store whose engine has a change feed (FileStore::WatchChanges), mapping its
  // changes to this mount's inode numbers and passing them to `inval`; returns how many stores
  // it watches. Until Shutdown.
  Result<size_t> WatchStores(Invalidation inval);

  // --- control files ---
  // The numbers /.kvfs/stats and /.kvfs/metrics show, as of now (no stores once shut down).
  StatsSnapshot CollectStats() const;

  HandleTable<DirHandle>& dir_handles() { return dir_handles_; }
  HandleTable<OpenFile>& open_files() { return open_files_; }

  // Syncs and closes every store, once; later calls return the first call's result. After it,
  // every operation on a store fails with EIO.
  Status Shutdown();

 private:
  struct Target;  // a decoded ino with its store
  Result<Target> Resolve(uint64_t ino) const;
  Result<Target> ResolveStoreDir(uint64_t parent, std::string_view name) const;
  Result<Entry> StoreEntry(size_t store, const Attr& attr) const;
  Result<Entry> VirtualEntry(uint64_t node);
  struct stat MountRootAttr() const;
  bool IsReservedName(uint64_t parent, std::string_view name) const;

  std::vector<Store> stores_;
  const config::Config config_;
  const FsOptions options_;
  const InodeMap inodes_;
  const int64_t started_ns_;
  const uint32_t uid_;
  const uint32_t gid_;
  ControlFiles control_;

  HandleTable<DirHandle> dir_handles_;
  HandleTable<OpenFile> open_files_;

  std::mutex shutdown_mu_;
  bool shut_down_ = false;  // guarded by shutdown_mu_
  Status shutdown_status_;  // guarded by shutdown_mu_
  std::atomic<bool> closed_{false};
};

}  // namespace kvfs::fusefs
