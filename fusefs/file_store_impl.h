// Private to the file layer (file_store*.cc): FileStore::Impl, the state behind a FileStore, and
// the helpers its operations share.
//
// - file_store.cc:        FileStore's operations (open, namespace, data, xattrs, stats);
// - file_store_impl.cc:   how a mutation reaches the engine (batches, syncs, the read-only latch),
//                         loading and storing nodes, the id table, orphans, subtree moves;
// - file_store_chunks.cc: a file's bytes, inline or in chunks (read, write, resize);
// - file_store_xattrs.cc: extended attributes, one key each.
//
// Locking (docs/DESIGN.md, "Locking in the file layer"). Node records are keyed by path, so
// whatever reads or writes a node by its path must keep that path from moving meanwhile:
//
//   ns_mu      the namespace lock. Exclusive: every change of a name (create, mkdir, symlink,
//              mknod, link, unlink, rmdir, rename: a big directory's from its first batch to
//              the last of its move, FinishMove), and with it the id allocator and the
//              parents' times and link counts. Shared: everything else that finds a node by
//              its id or name (lookup, getattr, readdir, read, write, setattr, fallocate, seek,
//              xattrs, an events store's appends).
//   inode lock one per id the store is working on (InodeLocks below; made on first use, freed
//              by the last user). Exclusive: a change of that node's record or data (write,
//              setattr with truncate, fallocate, xattr changes, an events store's append), so
//              the read-modify-write of its size, times, chunk count and chunks is never
//              interleaved, including through a second name (hard links share the id). Shared:
//              read and seek, which see the node and its chunks of one moment.
//   table_mu   the id table (`known`, an orphan's node); a leaf, never held into the engine.
//   stats_mu   the counters; a leaf.
//
// Order: ns_mu, then at most one inode lock, then table_mu or stats_mu. A namespace change takes
// no inode lock: holding ns_mu exclusively, it already excludes every holder of one. Getattr,
// lookup and readdir take no inode lock: a node is one engine record, read whole.
//
// No lock is held across a sync the file layer asks for (SyncFile, SyncDir, `always` mode's
// sync after a mutation, `batch` mode's sync of a full batch) or across a reply to the kernel
// (the glue replies after a call returns). Open tells the engine to leave a full batch's sync
// to us (engines::Engine::DeferBatchSyncs): every mutation calls SyncIfOwed once its locks are
// dropped, and it syncs there if the batch is full, before the reply, so batch mode's bound on
// what is acknowledged unsynced is kept. An engine's Apply may still wait inside (the log's
// rotation to its next segment, which seals the full one with a sync, once per segment; an LSM
// write stall): only the holders of the same file's lock, or of ns_mu exclusively, can be
// behind it; other files' reads, getattrs and writes are not.
//
// The reclaimer (one thread per writable store) deletes the keys a purge record names. A
// removal's record (the file is gone) it works through with no lock: ids are never reused, so
// nothing else reads or writes those keys. A truncate's record is of an id that may still be
// in use, and the record itself is the reclaimer's cursor (each batch moves its first chunk
// past the keys it deletes), which a write into the range or a second truncate also moves: so
// each of those batches is made under ns_mu shared and the id's inode lock exclusively, the
// record read again under them, as any writer of the file. Forget's purge of an orphan takes
// the same two (it rewrites the record), and a namespace change (ns_mu exclusive) excludes
// them all. purge_mu guards only the reclaimer's wake/stop state and trunc_mu the truncated
// table (leaves, never held into the engine).
//
// The analysis: clang's -Wthread-safety checks ns_mu, table_mu and stats_mu through the
// annotations below (sync/mutex.h); an inode lock is one of many made at run time, which the
// analysis cannot name: its rule is in each operation's body and in the tests.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "engines/engine.h"
#include "engines/events/events.h"
#include "engines/write_batch.h"
#include "fusefs/event_view.h"
#include "fusefs/file_store.h"
#include "fusefs/layout.h"
#include "sync/mutex.h"
#include "sync/status.h"

namespace kvfs::fusefs {
namespace internal {

// The inode locks: one std::shared_mutex per id in use, made by its first user and freed by its
// last, so a store with a million files holds locks only for the few being worked on.
class InodeLocks {
 public:
  class Hold {
   public:
    Hold(InodeLocks* table, uint64_t id, bool exclusive);
    ~Hold();
    Hold(const Hold&) = delete;
    Hold& operator=(const Hold&) = delete;

   private:
    InodeLocks* const table_;
    const uint64_t id_;
    const bool exclusive_;
    std::shared_mutex* mu_ = nullptr;
  };
  // Ids with a lock now (tests).
  size_t size();

 private:
  struct Entry {
    std::shared_mutex mu;
    uint64_t users = 0;
  };
  Mutex mu_;
  std::unordered_map<uint64_t, std::unique_ptr<Entry>> locks_ ABSL_GUARDED_BY(mu_);
};

// A Status carrying `err` as the errno FUSE should answer, with the StatusCode closest to it.
Status Errno(int err, std::string msg);

Attr AttrOf(const Node& n);

// An id the kernel holds.
struct Known {
  std::string path;  // current path; meaningless once orphaned
  uint64_t nlookup = 0;
  bool orphan = false;  // unlinked or replaced while held: `node` is the authoritative copy
  Node node;
};

// A node as found: where it lives and what it is.
struct Loaded {
  std::string path;
  bool orphan = false;
  Node node;
};

// A loaded node's attributes: an orphan (unlinked while held) has no name left, so no link.
Attr AttrOf(const Loaded& l);

// The directories among the children of directory `dir`, by one scan of their nodes.
Result<uint32_t> CountSubdirs(engines::Engine* engine, const std::string& dir);

// The shared part of Create, Mkdir and Symlink.
struct NewNode {
  NodeType type;
  uint32_t mode;
  std::string_view target;  // symlinks
  uint64_t rdev = 0;        // devices
};

enum class RemoveKind { kUnlink, kRmdir };

// A version-1 or -2 node's xattr set (inline_xattrs) moves to its "X" keys in `batch`; the
// node's totals stay (DecodeNode counted them from the set). (file_store_xattrs.cc)
void MoveInlineXattrs(Node* n, engines::WriteBatch* batch);
// An orphan (unlinked while held) needs a record ("O" key) if something of it outlives its
// node in the engine: chunks or xattr keys. (file_store_xattrs.cc)
bool NeedsOrphanRecord(const Node& n);
// Visits file `id`'s chunk keys from chunk `from` on and below chunk `to`, in order, with each
// key and its chunk index, until `fn` returns false (one keys-only scan; a key whose index does
// not decode is Corruption naming it).
Status ForChunksIn(engines::Engine* engine, uint64_t id, uint64_t from, uint64_t to,
                   absl::FunctionRef<bool(std::string_view key, uint64_t chunk)> fn);

// (key, value) pairs of node records, as a subtree move collects them.
using NodeRecords = std::vector<std::pair<std::string, std::string>>;

}  // namespace internal

struct FileStore::Impl {
  std::unique_ptr<engines::Engine> engine;
  FileStoreOptions options;

  // The namespace lock and the inode locks (the header comment has the rules and the order).
  SharedMutex ns_mu;
  internal::InodeLocks inode_locks;
  // The id table; taken briefly, never while calling into the engine.
  mutable Mutex table_mu;
  std::unordered_map<uint64_t, internal::Known> known ABSL_GUARDED_BY(table_mu);

  uint64_t next_id ABSL_GUARDED_BY(ns_mu) = kFirstFreeId;
  uint64_t id_mark ABSL_GUARDED_BY(ns_mu) = 0;  // ids below it may be in use after a restart

  // An events store (engine "events"): files are append-only streams, and the view of their
  // events (event_view.h). Null for every other engine. Set by Open.
  engines::EventStore* events = nullptr;
  std::unique_ptr<EventView> view;

  std::atomic<bool> failed{false};
  mutable Mutex stats_mu;
  FileStoreStats stats ABSL_GUARDED_BY(stats_mu);

  // --- batches and syncs (file_store_impl.cc) ---
  void Count(uint64_t FileStoreStats::*field, uint64_t n = 1);
  Status CheckWritable() const;
  // The engine's answer to a mutation, as the errno a caller should see. In an events store
  // the batch may carry StreamDropKey deletions and `ops`: one log record for all of it.
  Status ApplyBatch(const engines::WriteBatch& batch, std::vector<engines::StreamOp> ops = {});
  // After every mutation, with no lock held and before it is acknowledged: `always` mode makes
  // the mutation durable here, where concurrent callers share one log sync; `batch` mode syncs
  // the log here if the batch is full (the engine's Apply leaves that to us, so no lock of ours
  // is ever held across a log sync: engines::Engine::DeferBatchSyncs).
  Status SyncIfOwed();
  // SyncIfOwed's `batch` part alone (the reclaimer's and an orphan purge's batches, which
  // `always` mode does not sync one by one either).
  Status SyncIfBatchDue();
  Status SyncEngine(engines::SyncKind kind);
  // A sync's failure `s`: fails the store for good; the errno to answer (EIO).
  Status SyncFailed(const Status& s);

  // --- nodes and the id table (file_store_impl.cc) ---
  uint64_t AllocId(engines::WriteBatch* batch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(ns_mu);
  // The node at `path`: through its stub, the shared record of a file with several names
  // (linked set); its link count counted if it is a version-1 directory's (CountLinks).
  Result<Node> GetNode(const std::string& path) ABSL_SHARED_LOCKS_REQUIRED(ns_mu);
  // The shared record of file `id` (linked set); NotFound if it has none.
  Result<Node> GetShared(uint64_t id);
  // If `n` (decoded from `key`) is a link stub, replaces it by its shared record; Corruption
  // if that is missing or disagrees.
  Status FollowStub(std::string_view key, Node* n);
  // A directory node read from a layout-1 store carries no link count (nlink 0): counts its
  // subdirectories; a chunked file's no chunk count: counts its chunk keys. Other nodes are
  // left as they are. Caller holds ns_mu.
  Status CountLinks(const std::string& path, Node* n);
  // A layout-1 or -2 store becomes layout 3: (from layout 1) every directory node rewritten with
  // its link count, every chunked file's with its chunk count; (both) every node holding its
  // xattrs moves them to "X" keys; and the version key, in one batch, synced. Caller holds no
  // lock (Open).
  Status UpgradeLayout();
  // The node `id` stands for.
  Result<internal::Loaded> Load(uint64_t id) ABSL_SHARED_LOCKS_REQUIRED(ns_mu);
  Result<internal::Loaded> LoadDir(uint64_t id) ABSL_SHARED_LOCKS_REQUIRED(ns_mu);
  // Stores a changed node where it lives: its key, or (orphans) the table and the orphan record.
  // Caller holds ns_mu, and the node's inode lock exclusively (or ns_mu exclusively).
  void PutNode(const internal::Loaded& l, engines::WriteBatch* batch)
      ABSL_SHARED_LOCKS_REQUIRED(ns_mu);
  void AddRef(uint64_t id, const std::string& path, uint64_t n = 1);
  void Touch(internal::Loaded* dir, int64_t now);
  // Table paths at or below `from` move to below `to`.
  void RenameInTable(const std::string& from, const std::string& to,
                     std::unordered_map<uint64_t, std::string>* moved)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(ns_mu);
  void ApplyTableMoves(const std::unordered_map<uint64_t, std::string>& moved)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(ns_mu);

  // --- orphans (file_store_impl.cc) ---
  // Name `path` of `node` (as GetNode gave it) goes, in `batch`: the name's record, and either
  // one link of the shared record (others remain: the file stays, its ctime `now`) or the node
  // itself (Drop; *dropped set, and the caller undoes Drop if the batch fails).
  Status RemoveName(const std::string& path, Node* node, int64_t now, engines::WriteBatch* batch,
                    bool* dropped) ABSL_EXCLUSIVE_LOCKS_REQUIRED(ns_mu);
  // A node leaves the namespace (unlink, rmdir, rename over it): if the kernel still holds it,
  // it lives on as an orphan until Forget; otherwise its data goes in the same batch.
  Status Drop(const Node& node, engines::WriteBatch* batch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(ns_mu);
  // Undoes Drop's table change when the batch that relied on it failed.
  void Undrop(uint64_t id);
  // Forget of an orphan, or an Open meeting an orphan record: the record becomes a purge
  // record in one batch (an events store drops the stream and xattrs at once instead).
  Status PurgeOrphan(const Node& node);

  // --- the reclaimer (file_store_impl.cc) ---
  // A file gone for good leaves a purge record ("P" <id>, layout.h), written in the batch that
  // removed it; this thread deletes the id's chunk and xattr keys in batches of at most
  // kPurgeBatch keys, the last one deleting the record. Woken after a batch that may have
  // written a record, and by Open for records a crash left; stopped by Close (or destruction).
  // Runs only in a writable store; stops without retrying once the store is latched read-only.
  static constexpr size_t kPurgeBatch = 1024;
  void StartReclaimer();
  void StopReclaimer();
  void WakeReclaimer();
  // Waits until every pass asked for so far (by WakeReclaimer) has run; the last one's error.
  Status WaitForPurges();
  void ReclaimerLoop();
  bool Stopping();
  Status ReclaimAll();
  Status ReclaimId(uint64_t id, uint64_t first);
  // A truncate's record ("P" <id>, kind T): batches made under ns_mu shared and the id's inode
  // lock, each reading the record again, deleting up to kPurgeBatch chunk keys from its first
  // chunk on and moving it past them (or deleting it).
  Status ReclaimTruncated(uint64_t id);
  // Within a write (caller holds ns_mu shared and the id's inode lock exclusively): chunk keys
  // of `id` in [from, to) deleted now, in batches of at most kPurgeBatch keys, each moving the
  // id's truncate record to start past what it deleted (at `to` once done).
  Status PurgeTruncatedNow(uint64_t id, uint64_t from, uint64_t to);

  // --- truncated files (file_store_chunks.cc) ---
  // The first chunk of each id with a truncate record (kind T, layout.h): chunk keys at or past
  // it are garbage and read as holes. Loaded by Open; an id's entry changes only under its inode
  // lock held exclusively (or ns_mu exclusively), after the batch that changed its record.
  Mutex trunc_mu;
  std::unordered_map<uint64_t, uint64_t> truncated ABSL_GUARDED_BY(trunc_mu);
  std::atomic<size_t> truncated_ids{0};  // truncated.size(): most stores have none
  std::optional<uint64_t> TruncatedFrom(uint64_t id);
  void SetTruncatedFrom(uint64_t id, std::optional<uint64_t> first);
  // Every purge record read (strictly: Corruption names a malformed one); the truncate records
  // fill `truncated`. Open.
  Status LoadTruncated();
  std::mutex purge_mu;
  std::condition_variable purge_cv;
  uint64_t purge_wakes = 0;  // guarded by purge_mu: wakes asked for
  uint64_t purge_done = 0;   // guarded by purge_mu: the wakes the last finished pass covered
  bool purge_stop = false;   // guarded by purge_mu
  Status purge_error;        // guarded by purge_mu: the last pass's
  std::thread reclaimer;
  // The change feed's callback (WatchChanges) runs while `open`; the destructor closes it, so a
  // feed still running (no Close) never sees the members below go.
  struct WatchGate {
    std::mutex mu;
    bool open = true;  // guarded by mu
  };
  std::shared_ptr<WatchGate> watch_gate = std::make_shared<WatchGate>();
  ~Impl() {
    StopReclaimer();
    std::lock_guard<std::mutex> lock(watch_gate->mu);
    watch_gate->open = false;
  }

  // --- subtrees (file_store_impl.cc) ---
  // The nodes below `path` (which must be a directory), as (key, value), in key order: all of
  // them, or the first `max` (a caller that only moves small subtrees in one batch asks for
  // kMoveBatch + 1 to learn whether this one is small).
  Status CollectSubtree(const std::string& path, internal::NodeRecords* out, size_t max = SIZE_MAX);
  // Moves the nodes below `from` (a directory) to below `to` in `batch`: deletes first, so an
  // exchange's puts land after both subtrees' deletes.
  Status MoveSubtree(const internal::NodeRecords& nodes, const std::string& from,
                     const std::string& to, internal::NodeRecords* puts,
                     engines::WriteBatch* batch);
  // A directory rename too big for one batch, after its first batch (the move record, the top
  // directories' own nodes, the parents): the descendants of each phase (layout.h, MoveRecord)
  // move in batches of at most kMoveBatch nodes, each deleting their old keys and putting the
  // new ones; a phase's last batch writes the next phase into the record, the last of all
  // deletes it. Every batch is idempotent and the record says what is left, so a move a crash
  // cut short resumes from the record (Open). Memory: one batch.
  Status FinishMove(MoveRecord m) ABSL_EXCLUSIVE_LOCKS_REQUIRED(ns_mu);
  // Set when a move's later batch failed: the engine holds a half-moved tree, which the next
  // writable open finishes from the record. Until then every Load answers this (EIO), so the
  // half-moved tree is never shown.
  Status move_error ABSL_GUARDED_BY(ns_mu);

  // --- file data (file_store_chunks.cc) ---
  // Every chunk key of file `id` from chunk `first` on, found by a scan (sparse files have few).
  Result<std::vector<std::string>> ChunkKeysFrom(uint64_t id, uint64_t first);
  // Bytes [offset, offset+n) of a file's data, holes as zeros (chunks at or past a pending
  // truncate's first chunk are holes). Caller holds ns_mu and the file's inode lock (shared or
  // exclusive).
  Result<std::string> ReadData(const Node& node, uint64_t offset, uint64_t n);
  // Changes a file's size in `batch`, keeping the invariants: inline iff size <= kInlineMax
  // after a shrink, no live chunk holds bytes at or past the size. A shrink deletes no chunk:
  // the chunks it drops go to a truncate record put in `batch` (constant size), whose first
  // chunk *trunc_after says, for SetTruncatedFrom once the batch is applied. The chunk count is
  // kept right: a dense file's by arithmetic, a sparse one's by counting the keys on the
  // smaller side of the cut (a keys-only scan). Caller holds ns_mu and the file's inode lock
  // exclusively.
  Status Resize(Node* node, uint64_t new_size, engines::WriteBatch* batch,
                std::optional<uint64_t>* trunc_after) ABSL_SHARED_LOCKS_REQUIRED(ns_mu);
  // The chunk keys of `id` in [from, to) (a keys-only scan).
  Result<uint64_t> CountChunks(uint64_t id, uint64_t from, uint64_t to);
  // Bytes [from, to) of a file (to <= its size) read as zeros: chunks covered whole (or up to
  // the end of the file) deleted, the others zeroed where the range touches them (chunks a
  // pending truncate dropped are holes already, left alone); inline data zeroed. Caller holds ns_mu
  // and the file's inode lock exclusively.
  Status ZeroRange(Node* node, uint64_t from, uint64_t to, engines::WriteBatch* batch)
      ABSL_SHARED_LOCKS_REQUIRED(ns_mu);
  // Writes `data` at `offset` into `node` and `batch`. A write putting chunks at or past the
  // file's truncate record's first chunk moves it past them in `batch` (*trunc_after, as
  // Resize); the garbage between the record's first chunk and the write's, if any, is deleted
  // first (PurgeTruncatedNow), so no old key is left below the record. Caller holds ns_mu and
  // the file's inode lock exclusively.
  Status WriteData(Node* node, uint64_t offset, std::string_view data, engines::WriteBatch* batch,
                   std::optional<uint64_t>* trunc_after) ABSL_SHARED_LOCKS_REQUIRED(ns_mu);

  // --- xattrs (file_store_xattrs.cc) ---
  // Every "X" key of `n` deleted in `batch` (one scan; none if it counts none).
  Status DropXattrs(const Node& n, engines::WriteBatch* batch);
  // The orphan record of orphan `n` as it now is: put if NeedsOrphanRecord, else deleted.
  void PutOrphanRecord(const Node& n, engines::WriteBatch* batch);
  // One xattr change of file `id` (setxattr, removexattr): under ns_mu (shared) and the file's
  // inode lock (exclusive), so the node's counts and its "X" keys change together, `change`
  // checks the request against the loaded node, updates its counts and adds the put or delete
  // of `key` to the batch; the node (new ctime) and an orphan's record go in the same batch.
  using XattrChange =
      absl::FunctionRef<Status(Node& node, const std::string& key, engines::WriteBatch* batch)>;
  Status ChangeXattr(uint64_t id, std::string_view name, XattrChange change);

  // --- events stores (file_store_events.cc) ---
  void OpenEvents();
  // ".events" at the root of an events store: reserved for the view.
  bool IsReservedName(uint64_t parent, std::string_view name) const {
    return view != nullptr && parent == kRootId && name == kEventViewName;
  }
  bool IsViewId(uint64_t id) const { return view != nullptr && EventView::IsViewId(id); }
  // FileStore::Write in an events store: one event appended at the end, or EPERM.
  Result<size_t> WriteEvent(uint64_t id, uint64_t offset, std::string_view data);
  // EPERM for what an append-only file refuses: a size change, a rename of a file or over one.
  Status CheckResize(const Node& node, uint64_t size) const;
  Status CheckRename(const Node& src, const Node* dst, uint64_t new_parent,
                     std::string_view new_name) const;

  // --- operation bodies shared by several FileStore methods (file_store.cc) ---
  Result<Attr> MakeNode(uint64_t parent, std::string_view name, const internal::NewNode& what,
                        const Caller& caller);
  Status RemoveEntry(uint64_t parent, std::string_view name, internal::RemoveKind kind);
};

}  // namespace kvfs::fusefs
