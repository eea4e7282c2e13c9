// FileStore: one mounted store's directory tree, on top of one Engine (layout in layout.h).
//
// The FUSE glue (fuse_ops) and the offline tools (kvfs ls/get/put/rm) both talk to a FileStore;
// nothing else reads or writes the engine of a mounted store.
//
// Identity: every node has an immutable 64-bit id (the root is kRootId). The daemon hands ids to
// the kernel as inode numbers. A FileStore keeps an in-memory table id -> (path, lookup count)
// for the nodes the kernel holds; Lookup, Create, Mkdir, Symlink and ReadDir(plus) add a lookup
// reference, Forget drops them, exactly as FUSE counts them. Offline tools use Resolve, which
// adds none.
//
// Atomicity: every mutation is one engine batch (WriteBatch): after a crash it is there whole or
// not at all. A directory rename moving more than kMoveBatch nodes is several batches behind a
// move record (layout.h), all under the namespace lock; after a crash the next writable Open
// finishes it, so it too is seen whole or not at all. Changes of the namespace are serialised by a
// namespace lock (so a check such as "target is an empty directory" and the batch that relies on it
// cannot be interleaved); a change of one file's data or attributes holds that file's lock, so
// writes to different files run side by side (and share the log's syncs) while a file's own
// read-modify-write of its size and chunks is never interleaved. Reads and getattrs never wait for
// another file's writes, nor for a sync one of them runs; only a namespace change in progress holds
// them up (file_store_impl.h has the rules, the lock order and what may still wait inside an
// engine).
//
// Durability (DESIGN.md's table): SyncFile(datasync) -> engine Sync(kData), SyncFile(!datasync)
// and SyncDir -> Sync(kFull). Names and data share one log, so a file's fsync also makes its
// name durable. In `always` mode every mutation is synced before it returns; the sync runs with
// no lock held, so concurrent writers share one log sync (group commit).
// A failed sync returns EIO and the store turns read-only: every later mutation fails with
// EROFS until the store is reopened. Nothing is retried into a success.
//
// Hard links: a file with several names keeps its node in one shared record and each name is a
// stub to it (layout.h); the id table keeps one of its paths, and an id whose path has gone
// while other names remain is found through the shared record. nlink is 2 + subdirectories for
// a directory, the number of names for anything else, 0 for an orphan.
//
// Unlink/rename-over of a file the kernel still holds (lookup count > 0, e.g. open): the node
// disappears from the namespace but its data stays readable and writable through its id until
// Forget drops the last reference; an orphan record ("O" key) in the same batch makes the next
// Open delete the data and the xattr keys if the daemon dies first.
//
// Errors are Status with sys_errno() set to the errno FUSE should answer: ENOENT, EEXIST,
// ENOTDIR, EISDIR, ENOTEMPTY, ENAMETOOLONG, EINVAL, EFBIG, ENOSPC, EROFS, EIO, ENODATA, ERANGE,
// EXDEV (never produced here: stores are separate FileStores; the glue answers it).
//
// Thread safety: every method may be called from any thread at once, except Close.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engines/engine.h"
#include "fusefs/layout.h"
#include "sync/status.h"

namespace kvfs::fusefs {

struct Attr {
  uint64_t id = 0;
  NodeType type = NodeType::kFile;
  uint32_t mode = 0;  // permission bits (07777)
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t size = 0;
  uint64_t rdev = 0;  // character and block devices
  // Space held, in 512-byte units (st_blocks): a file's chunks (holes hold none), an inline
  // file's or a directory's one block, as ext4 would count them.
  uint64_t blocks = 0;
  int64_t atime_ns = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  // Directories: 2 + subdirectories, as ext4 (find(1) skips a leaf directory's entries by it);
  // others: 1; an orphan (unlinked while held): 0.
  uint32_t nlink = 1;
};

// A file's xattrs as its node counts them.
struct XattrUsage {
  uint32_t count = 0;
  uint32_t name_bytes = 0;
  uint64_t value_bytes = 0;
  bool inline_set = false;  // held in the node itself (a layout-1 or -2 store opened read-only)
};

// Who asks: new nodes belong to uid and gid (or the parent's gid when the parent is setgid);
// umask is applied to the mode of new nodes.
struct Caller {
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint32_t umask = 0;
};

// SetAttr: only the fields present change; ctime always becomes now. mode keeps only 07777.
struct AttrChange {
  std::optional<uint32_t> mode;
  std::optional<uint32_t> uid;
  std::optional<uint32_t> gid;
  std::optional<uint64_t> size;     // truncate or extend (holes); files only (else EISDIR/EINVAL)
  std::optional<int64_t> atime_ns;  // kNow = current time
  std::optional<int64_t> mtime_ns;
  static constexpr int64_t kNow = INT64_MIN;
};

// fallocate(2)'s modes kvfs keeps: reserve (0, with or without KEEP_SIZE), punch a hole, zero a
// range.
struct Allocation {
  enum class Kind { kReserve, kPunchHole, kZeroRange };
  Kind kind = Kind::kReserve;
  bool keep_size = false;  // FALLOC_FL_KEEP_SIZE
  uint64_t offset = 0;
  uint64_t length = 0;
};

struct DirEntry {
  std::string name;
  Attr attr;
};

struct FileStoreOptions {
  // `always`: sync every mutation before it returns (the engine itself is opened in `none` or
  // `batch` mode by the caller; FileStore does the sync outside its lock for group commit).
  bool sync_every_mutation = false;
  bool read_only = false;  // offline read tools; every mutation fails with EROFS
  // The store's marker says it holds a file tree (stores.h writes the marker only once the
  // tree is durable): a missing tree is then Corruption (its data files were lost or replaced),
  // never a fresh empty store.
  bool expect_tree = false;
};

struct FileStoreStats {
  uint64_t lookups = 0, getattrs = 0, setattrs = 0, readdirs = 0;
  uint64_t creates = 0, mkdirs = 0, symlinks = 0, links = 0, unlinks = 0, rmdirs = 0, renames = 0;
  uint64_t reads = 0, read_bytes = 0, writes = 0, write_bytes = 0;
  uint64_t fsyncs = 0, fdatasyncs = 0, fsyncdirs = 0;
  uint64_t errors = 0;       // operations that failed other than ENOENT/EEXIST-style answers
  uint64_t sync_errors = 0;  // failed syncs (the store is read-only after the first)
  uint64_t known_nodes = 0;  // in the id table now
  uint64_t orphans = 0;      // unlinked but still held
  uint64_t purges = 0;       // purge records finished by the reclaimer (removals', truncates')
  uint64_t purged_keys = 0;  // chunk and xattr keys deleted for them (by a write into a
                             // truncated range too)
};

// What changed in a store that other processes write too (FileStore::WatchChanges), as a FUSE
// mount caches it: directory entries by (parent id, name), nodes by id.
struct TreeChanges {
  // Anything may have changed (the engine's feed missed changes): `names` and `nodes` then list
  // every name and node of the id table, which is all the kernel can hold.
  bool everything = false;
  struct Name {
    uint64_t parent = 0;
    std::string name;
  };
  // Entries added, removed or now naming another node.
  std::vector<Name> names;
  // A node's attributes changed, and with offset >= 0 its bytes [offset, offset + length)
  // (length 0: to the end of the file).
  struct Data {
    uint64_t id = 0;
    int64_t offset = -1;
    int64_t length = 0;
  };
  std::vector<Data> nodes;
  uint64_t revision = 0;  // the engine's (ChangeSet::revision)
};

class FileStore {
 public:
  // Takes the engine (already open). Creates the root and the layout version on a fresh store;
  // on an existing one checks the version (Corruption naming the key if unknown), hands the
  // data of orphans left by a previous run to the reclaimer (unless read_only), resumes the
  // purges a previous run left (its thread, started here), and restores the id mark. Reads
  // every purge record (Corruption naming a malformed one): a truncate's hides the chunks it
  // dropped, read-only too.
  static Result<std::unique_ptr<FileStore>> Open(std::unique_ptr<engines::Engine> engine,
                                                 const FileStoreOptions& options);
  ~FileStore();
  FileStore(const FileStore&) = delete;
  FileStore& operator=(const FileStore&) = delete;

  // --- namespace -------------------------------------------------------------------------
  // Each successful call below marked (+ref) adds one lookup reference to the returned node.
  Result<Attr> Lookup(uint64_t parent, std::string_view name);  // (+ref)
  void Forget(uint64_t id, uint64_t nlookup);
  Result<Attr> GetAttr(uint64_t id);
  Result<Attr> SetAttr(uint64_t id, const AttrChange& change);
  // EEXIST if the name exists (for O_EXCL and mkdir); create on an existing file is the
  // kernel's open path (it looks up first), so Create always means "new".
  Result<Attr> Create(uint64_t parent, std::string_view name, uint32_t mode,
                      const Caller& caller);  // (+ref)
  Result<Attr> Mkdir(uint64_t parent, std::string_view name, uint32_t mode,
                     const Caller& caller);  // (+ref)
  Result<Attr> Symlink(uint64_t parent, std::string_view name, std::string_view target,
                       const Caller& caller);  // (+ref)
  // A FIFO, character or block device (with `rdev`) or socket; kFile is Create. EINVAL for a
  // directory or symlink type.
  Result<Attr> Mknod(uint64_t parent, std::string_view name, NodeType type, uint32_t mode,
                     uint64_t rdev, const Caller& caller);  // (+ref)
  // A new name `new_name` in `new_parent` for file `id` (any type but a directory: EPERM), as
  // link(2): EEXIST, ENOENT for a file with no name left, EMLINK past kMaxLinks names. From its
  // second name on, a file's attributes and data live in one shared record and each name is a
  // stub to it (layout.h); its ctime changes, as ext4's. (+ref)
  Result<Attr> Link(uint64_t id, uint64_t new_parent, std::string_view new_name);
  Result<std::string> ReadLink(uint64_t id);
  Status Unlink(uint64_t parent, std::string_view name);  // EISDIR for a directory
  Status Rmdir(uint64_t parent, std::string_view name);   // ENOTDIR, ENOTEMPTY
  // flags: 0, kRenameNoReplace or kRenameExchange (as renameat2). Directories move with their
  // whole subtree; moving a directory into itself is EINVAL; replacing follows rename(2):
  // a directory only replaces an empty directory, a non-directory only a non-directory.
  static constexpr unsigned kRenameNoReplace = 1;
  static constexpr unsigned kRenameExchange = 2;
  Status Rename(uint64_t parent, std::string_view name, uint64_t new_parent,
                std::string_view new_name, unsigned flags);
  // Calls fn for the entries of directory `id` whose names sort after `after` ("" = from the
  // first), in name order, until fn returns false. fn returns true if it consumed the entry;
  // with `plus`, each consumed entry gains a lookup reference (readdirplus). Not "." or "..".
  Status ReadDir(uint64_t id, std::string_view after, bool plus,
                 const std::function<bool(const DirEntry&)>& fn);

  // --- data ------------------------------------------------------------------------------
  // Up to `size` bytes from `offset` (fewer at end of file; holes as zeros). EISDIR for a dir.
  Result<std::string> Read(uint64_t id, uint64_t offset, size_t size);
  // Writes `data` at `offset` (extending with a hole if beyond the end); returns bytes written.
  // EFBIG beyond kMaxFileSize.
  Result<size_t> Write(uint64_t id, uint64_t offset, std::string_view data);
  // fallocate(2) on a regular file (EISDIR, EINVAL for other types; EFBIG past kMaxFileSize):
  // kReserve only sets the size to offset+length if that is larger, unless keep_size: kvfs
  // holds no space ahead (the caller checks the disk has it); kPunchHole and kZeroRange make
  // the range read as zeros, dropping every chunk it covers whole and zeroing the rest of the
  // chunks it touches; kZeroRange also extends the size unless keep_size. One batch; ctime and
  // mtime change (every mode, as ext4's).
  Status Allocate(uint64_t id, const Allocation& a);
  // lseek(2)'s SEEK_DATA (`data`) and SEEK_HOLE: the first offset at or after `offset` that is
  // in data (a chunk held, or an inline file's bytes) or in a hole (the end of the file counts as
  // one). ENXIO at or past the end of the file, as ext4.
  Result<uint64_t> Seek(uint64_t id, uint64_t offset, bool data);
  Status SyncFile(uint64_t id, bool datasync);  // fsync / fdatasync
  Status SyncDir(uint64_t id);                  // fsync on a directory
  Status SyncAll();                             // syncfs, unmount

  // --- xattrs (one key each, layout.h; file_store_xattrs.cc) ------------------------------
  // A set or remove costs one Get and one batch whatever the file's other attributes; they
  // belong to the file (every name of it) and go with it. ERANGE for a name that is empty or
  // over kMaxXattrNameLength, as the kernel.
  Result<std::string> GetXattr(uint64_t id, std::string_view name);  // ENODATA if absent
  // flags: XATTR_CREATE (EEXIST if present), XATTR_REPLACE (ENODATA if absent), or 0. E2BIG for
  // a value over kMaxXattrValueLength; ENOSPC past the file's totals (kMaxXattrList,
  // kMaxXattrTotal). ctime changes, as on ext4.
  Status SetXattr(uint64_t id, std::string_view name, std::string_view value, int flags);
  Result<std::vector<std::string>> ListXattr(uint64_t id);  // in name order
  Status RemoveXattr(uint64_t id, std::string_view name);   // ENODATA if absent
  // What the node of `id` counts of its xattrs (kvfs check compares it with the keys).
  Result<XattrUsage> XattrUsageOf(uint64_t id);

  // --- several processes on one store (an engine with a change feed: etcd) -------------------
  // Calls `fn`, from the engine's feed thread, with what every change committed to the store
  // after it opened changed (another daemon's, and this store's own: whether skipping those is
  // safe cannot be told from here), after updating the id table of a read-only store (a
  // follower): a node another process moved is found at its new path. kNotSupported for an engine
  // without a feed (then nobody else writes the store: the data directory is locked). `fn` must not
  // call into this FileStore (it runs while the engine's feed waits) and must not block on a FUSE
  // request.
  Status WatchChanges(std::function<void(const TreeChanges&)> fn);

  // --- offline tools and introspection ----------------------------------------------------
  // The attributes of `path` ("" or "/" = root; "a/b", leading and trailing '/' ignored),
  // found by Lookup of each component: every node on the way gains a lookup reference (offline
  // tools are short-lived and never Forget). ENOTDIR if a component is not a directory.
  Result<Attr> Resolve(std::string_view path);
  FileStoreStats stats() const;
  engines::Engine* engine();
  bool failed() const;  // a sync failed; read-only until reopened
  // Waits until the reclaimer has run every pass asked for so far: the purges of every file
  // removed or truncated before the call, and those Open found left by a previous run. Returns the
  // last pass's error, if any (EROFS once the store is latched read-only), which leaves records for
  // the next open. OK at once in a read-only store. Tests and offline tools.
  Status WaitForPurges();
  // Stops the reclaimer (a purge left half-done resumes at the next open), syncs and closes the
  // engine. Nothing may be called afterwards.
  Status Close();

 private:
  struct Impl;
  explicit FileStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// What a read-only Open answers for a store whose directory rename a crash cut short (its move
// record, layout.h): kFailed, naming both paths; the next writable open finishes the rename.
Status PendingMoveStatus(const MoveRecord& m);

// The errno a FUSE reply should carry for `s` (EIO when s carries none).
int ErrnoOf(const Status& s);

}  // namespace kvfs::fusefs
