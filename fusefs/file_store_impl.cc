// FileStore::Impl's bookkeeping: how a mutation reaches the engine, nodes and the id table of
// the ids the kernel holds, orphans, and subtree moves.
#include "fusefs/file_store_impl.h"

#include <algorithm>
#include <cerrno>
#include <mutex>
#include <thread>

namespace kvfs::fusefs {
namespace {

// Ids are handed out in blocks: the mark written with the first id of a block tells the next
// open where fresh ids start, so a create costs no extra key most of the time.
constexpr uint64_t kIdBlock = 1024;

}  // namespace

using internal::Errno;
using internal::Known;
using internal::Loaded;
using internal::NodeRecords;

namespace internal {

Status Errno(int err, std::string msg) {
  StatusCode code = StatusCode::kInvalidArgument;
  if (err == ENOENT) code = StatusCode::kNotFound;
  if (err == EEXIST) code = StatusCode::kAlreadyExists;
  if (err == ENOSPC) code = StatusCode::kNoSpace;
  if (err == EROFS) code = StatusCode::kFailed;
  if (err == EIO) code = StatusCode::kIOError;
  return Status(code, std::move(msg), err);
}

Attr AttrOf(const Node& n) {
  Attr a;
  a.id = n.id;
  a.type = n.type;
  a.mode = n.mode;
  a.uid = n.uid;
  a.gid = n.gid;
  a.size = n.type == NodeType::kDirectory ? 4096 : n.size;
  a.rdev = n.rdev;
  constexpr uint64_t kSectorsPerChunk = kChunkSize / 512;
  switch (n.type) {
    case NodeType::kDirectory:
      a.blocks = kSectorsPerChunk;
      break;
    case NodeType::kFile:
      a.blocks = n.data_inline ? (n.size > 0 ? kSectorsPerChunk : 0)
                               : (n.chunks == kUnknownChunks ? 0 : n.chunks * kSectorsPerChunk);
      break;
    case NodeType::kSymlink:  // ext4 keeps a target shorter than 60 bytes in the inode
      a.blocks = n.size < 60 ? 0 : kSectorsPerChunk;
      break;
    default:
      a.blocks = 0;
  }
  a.atime_ns = n.atime_ns;
  a.mtime_ns = n.mtime_ns;
  a.ctime_ns = n.ctime_ns;
  a.nlink = n.nlink;
  return a;
}

Attr AttrOf(const Loaded& l) {
  Attr a = AttrOf(l.node);
  if (l.orphan) a.nlink = 0;
  return a;
}

InodeLocks::Hold::Hold(InodeLocks* table, uint64_t id, bool exclusive)
    : table_(table), id_(id), exclusive_(exclusive) {
  {
    MutexLock lock(&table_->mu_);
    auto& entry = table_->locks_[id];
    if (entry == nullptr) entry = std::make_unique<Entry>();
    ++entry->users;
    mu_ = &entry->mu;  // stays put while users > 0: the map holds it by pointer
  }
  if (exclusive_) {
    mu_->lock();
  } else {
    mu_->lock_shared();
  }
}

InodeLocks::Hold::~Hold() {
  if (exclusive_) {
    mu_->unlock();
  } else {
    mu_->unlock_shared();
  }
  MutexLock lock(&table_->mu_);
  auto it = table_->locks_.find(id_);
  if (--it->second->users == 0) table_->locks_.erase(it);
}

size_t InodeLocks::size() {
  MutexLock lock(&mu_);
  return locks_.size();
}

}  // namespace internal

// ---------------------------------------------------------------------------------------------
// Batches and syncs

void FileStore::Impl::Count(uint64_t FileStoreStats::*field, uint64_t n) {
  MutexLock lock(&stats_mu);
  stats.*field += n;
}

Status FileStore::Impl::CheckWritable() const {
  if (options.read_only) return Errno(EROFS, "store opened read-only");
  if (failed.load())
    return Errno(EROFS, "an earlier sync failed: store is read-only until remount");
  return Status::OK();
}

// ApplyBatch is in file_store_events.cc: an events store's batches may carry stream changes.

Status FileStore::Impl::SyncIfOwed() {
  if (options.sync_every_mutation) return SyncEngine(engines::SyncKind::kData);
  return SyncIfBatchDue();
}

Status FileStore::Impl::SyncIfBatchDue() {
  if (options.read_only) return Status::OK();
  // What Apply would have done inline before it returned (a no-op unless a batch is full).
  Status s = engine->SyncBatchIfDue();
  return s.ok() ? s : SyncFailed(s);
}

Status FileStore::Impl::SyncEngine(engines::SyncKind kind) {
  if (options.read_only) return Status::OK();
  if (failed.load()) return Errno(EIO, "an earlier sync failed: store is read-only until remount");
  Status s = engine->Sync(kind);
  return s.ok() ? s : SyncFailed(s);
}

Status FileStore::Impl::SyncFailed(const Status& s) {
  // Never retried into a success: the log may have lost pages the kernel already dropped.
  failed = true;
  Count(&FileStoreStats::sync_errors);
  return Status(StatusCode::kIOError, "sync failed, store is now read-only: " + s.message(), EIO);
}

// ---------------------------------------------------------------------------------------------
// Nodes and the id table

uint64_t FileStore::Impl::AllocId(engines::WriteBatch* batch) {
  const uint64_t id = next_id++;
  if (next_id > id_mark) {
    id_mark = id + kIdBlock;
    batch->Put(kIdMarkKey, EncodeU64(id_mark));
  }
  return id;
}

Result<Node> FileStore::Impl::GetNode(const std::string& path) {
  const std::string key = NodeKey(path);
  KVFS_ASSIGN_OR_RETURN(std::string value, engine->Get(key));
  KVFS_ASSIGN_OR_RETURN(Node n, DecodeNode(value, key));
  KVFS_RETURN_IF_ERROR(FollowStub(key, &n));
  KVFS_RETURN_IF_ERROR(CountLinks(path, &n));
  return n;
}

Status FileStore::Impl::FollowStub(std::string_view key, Node* n) {
  if (!n->linked) return Status::OK();
  const NodeType type = n->type;
  auto shared = GetShared(n->id);
  if (!shared.ok()) {
    if (!shared.status().IsNotFound()) return shared.status();
    return Status::Corruption("name " + EscapeKey(key) + " points to file " +
                              std::to_string(n->id) + ", whose shared record is missing");
  }
  if (shared->type != type || shared->id != n->id) {
    return Status::Corruption("name " + EscapeKey(key) + " and the shared record of file " +
                              std::to_string(n->id) + " disagree on its type or id");
  }
  *n = std::move(*shared);
  return Status::OK();
}

Result<Node> FileStore::Impl::GetShared(uint64_t id) {
  const std::string key = SharedKey(id);
  KVFS_ASSIGN_OR_RETURN(std::string value, engine->Get(key));
  KVFS_ASSIGN_OR_RETURN(Node n, DecodeNode(value, key));
  if (n.linked) return Status::Corruption("shared record " + EscapeKey(key) + " is a stub");
  n.linked = true;  // lives at SharedKey(id)
  return n;
}

Status FileStore::Impl::CountLinks(const std::string& path, Node* n) {
  if (n->chunks == kUnknownChunks) {  // a version-1 chunked file: its chunk keys, counted
    KVFS_ASSIGN_OR_RETURN(auto keys, ChunkKeysFrom(n->id, 0));
    n->chunks = keys.size();
  }
  if (n->type != NodeType::kDirectory || n->nlink != 0) return Status::OK();
  KVFS_ASSIGN_OR_RETURN(uint32_t subdirs, internal::CountSubdirs(engine.get(), path));
  n->nlink = 2 + subdirs;
  return Status::OK();
}

Result<uint32_t> internal::CountSubdirs(engines::Engine* engine, const std::string& dir) {
  uint32_t subdirs = 0;
  Status bad;
  engines::ScanOptions so;
  so.prefix = ChildrenPrefix(dir);
  KVFS_RETURN_IF_ERROR(engine->Scan(so, [&](std::string_view key, std::string_view value) {
    auto child = DecodeNode(value, key);
    if (!child.ok()) {
      bad = child.status();
      return false;
    }
    if (child->type == NodeType::kDirectory) ++subdirs;
    return true;
  }));
  KVFS_RETURN_IF_ERROR(bad);
  return subdirs;
}

Result<Loaded> FileStore::Impl::Load(uint64_t id) {
  // The event view's reads have their own paths (event_view.h); everything else is a change.
  if (IsViewId(id)) return Errno(EROFS, "the event view is read-only");
  if (!move_error.ok()) return move_error;  // a half-moved tree: never shown
  Loaded l;
  if (id == kRootId) {
    KVFS_ASSIGN_OR_RETURN(l.node, GetNode(""));
    return l;
  }
  {
    MutexLock lock(&table_mu);
    auto it = known.find(id);
    if (it == known.end()) return Errno(ENOENT, "no node with id " + std::to_string(id));
    l.orphan = it->second.orphan;
    if (l.orphan) {
      l.node = it->second.node;
      return l;
    }
    l.path = it->second.path;
  }
  auto node = GetNode(l.path);
  if (node.ok() && node->id == id) {
    l.node = std::move(*node);
    return l;
  }
  // The name the table knows is gone or names another file, but a file with other names lives
  // on in its shared record.
  auto shared = GetShared(id);
  if (shared.ok()) {
    l.node = std::move(*shared);
    return l;
  }
  if (!shared.status().IsNotFound()) return shared.status();
  if (!node.ok()) return node.status();
  return Errno(ENOENT, "node " + l.path + " was replaced");
}

Result<Loaded> FileStore::Impl::LoadDir(uint64_t id) {
  KVFS_ASSIGN_OR_RETURN(Loaded l, Load(id));
  if (l.node.type != NodeType::kDirectory) return Errno(ENOTDIR, "not a directory: " + l.path);
  if (l.orphan) return Errno(ENOENT, "directory was removed");
  return l;
}

void FileStore::Impl::PutNode(const Loaded& l, engines::WriteBatch* batch) {
  if (l.orphan) {
    MutexLock lock(&table_mu);
    auto it = known.find(l.node.id);
    if (it != known.end()) it->second.node = l.node;
    return;
  }
  if (l.node.linked) {
    batch->Put(SharedKey(l.node.id), EncodeShared(l.node));
    return;
  }
  batch->Put(NodeKey(l.path), EncodeNode(l.node));
}

void FileStore::Impl::AddRef(uint64_t id, const std::string& path, uint64_t n) {
  if (id == kRootId) return;
  MutexLock lock(&table_mu);
  Known& k = known[id];
  k.path = path;
  k.nlookup += n;
}

void FileStore::Impl::Touch(Loaded* dir, int64_t now) {
  dir->node.mtime_ns = now;
  dir->node.ctime_ns = now;
}

void FileStore::Impl::RenameInTable(const std::string& from, const std::string& to,
                                    std::unordered_map<uint64_t, std::string>* moved) {
  MutexLock lock(&table_mu);
  for (auto& [id, k] : known) {
    if (k.orphan) continue;
    if (k.path == from ||
        (k.path.size() > from.size() && k.path.compare(0, from.size(), from) == 0 &&
         k.path[from.size()] == '/')) {
      (*moved)[id] = to + k.path.substr(from.size());
    }
  }
}

void FileStore::Impl::ApplyTableMoves(const std::unordered_map<uint64_t, std::string>& moved) {
  MutexLock lock(&table_mu);
  for (const auto& [id, path] : moved) {
    auto it = known.find(id);
    if (it != known.end()) it->second.path = path;
  }
}

Status FileStore::Impl::UpgradeLayout() {
  // Every node once (names and shared records): each directory's subdirectories counted by its
  // parent's path; those that need it rewritten below.
  std::unordered_map<std::string, uint32_t> subdirs;
  struct Record {
    std::string key;
    std::string path;  // node records only
    Node node;
  };
  std::vector<Record> rewrite;
  bool chunks_unknown = false;
  Status bad;
  for (const std::string_view prefix :
       {std::string_view("R"), std::string_view("M"), kSharedPrefix}) {
    engines::ScanOptions so;
    so.prefix = std::string(prefix);
    KVFS_RETURN_IF_ERROR(engine->Scan(so, [&](std::string_view key, std::string_view value) {
      if (prefix == "R" && key != "R") return true;
      auto node = DecodeNode(value, key);
      Result<std::string> path = prefix == kSharedPrefix ? std::string() : PathOfNodeKey(key);
      if (!node.ok() || !path.ok()) {
        bad = node.ok() ? path.status() : node.status();
        return false;
      }
      if (node->type == NodeType::kDirectory && prefix != kSharedPrefix && !path->empty()) {
        ++subdirs[std::string(ParentOf(*path))];
      }
      // A layout-1 directory (nlink 0) or chunked file (chunks unknown), or a set of xattrs.
      const bool dir = node->type == NodeType::kDirectory && node->nlink == 0;
      if (!dir && node->chunks != kUnknownChunks && node->inline_xattrs.empty()) return true;
      chunks_unknown = chunks_unknown || node->chunks == kUnknownChunks;
      rewrite.push_back({std::string(key), *path, std::move(*node)});
      return true;
    }));
    KVFS_RETURN_IF_ERROR(bad);
  }
  // Chunked files of layout 1: their chunk keys counted (st_blocks), one scan of all chunk keys.
  std::unordered_map<uint64_t, uint64_t> chunks;
  if (chunks_unknown) {
    engines::ScanOptions so;
    so.prefix = "D";
    so.keys_only = true;
    KVFS_RETURN_IF_ERROR(engine->Scan(so, [&](std::string_view key, std::string_view) {
      auto id = DecodeU64(key.substr(1, 8), key);
      if (!id.ok()) {
        bad = id.status();
        return false;
      }
      ++chunks[*id];
      return true;
    }));
    KVFS_RETURN_IF_ERROR(bad);
  }
  engines::WriteBatch batch;
  for (Record& r : rewrite) {
    if (r.node.type == NodeType::kDirectory && r.node.nlink == 0) {
      r.node.nlink = 2 + subdirs[r.path];
    }
    if (r.node.chunks == kUnknownChunks) r.node.chunks = chunks[r.node.id];
    internal::MoveInlineXattrs(&r.node, &batch);
    batch.Put(r.key, EncodeNode(r.node));
  }
  batch.Put(kVersionKey, kLayoutVersion);
  KVFS_RETURN_IF_ERROR(engine->Apply(batch));
  return engine->Sync(engines::SyncKind::kFull);
}

// ---------------------------------------------------------------------------------------------
// Orphans

Status FileStore::Impl::RemoveName(const std::string& path, Node* node, int64_t now,
                                   engines::WriteBatch* batch, bool* dropped) {
  *dropped = false;
  batch->Delete(NodeKey(path));
  node->ctime_ns = now;
  if (node->linked && node->nlink > 1) {
    --node->nlink;
    batch->Put(SharedKey(node->id), EncodeShared(*node));
    return Status::OK();
  }
  if (node->linked) {
    batch->Delete(SharedKey(node->id));
    node->linked = false;
    node->nlink = 1;
  }
  *dropped = true;
  return Drop(*node, batch);
}

Status FileStore::Impl::Drop(const Node& node, engines::WriteBatch* batch) {
  bool held = false;
  {
    MutexLock lock(&table_mu);
    auto it = known.find(node.id);
    if (it != known.end() && !it->second.orphan) {
      held = true;
      it->second.orphan = true;
      it->second.node = node;
    }
  }
  if (held) {
    // Its chunks and xattr keys stay until Forget; the record tells the next Open otherwise.
    if (internal::NeedsOrphanRecord(node)) PutOrphanRecord(node, batch);
    return Status::OK();
  }
  if (events != nullptr) {  // the stream goes in the same log record
    KVFS_RETURN_IF_ERROR(DropXattrs(node, batch));
    if (node.type == NodeType::kFile && !node.data_inline) batch->Delete(StreamDropKey(node.id));
    return Status::OK();
  }
  // Constant size whatever the file holds: its chunks and xattr keys are the reclaimer's.
  if (internal::NeedsOrphanRecord(node)) batch->Put(PurgeKey(node.id), EncodeU64(0));
  return Status::OK();
}

void FileStore::Impl::Undrop(uint64_t id) {
  MutexLock lock(&table_mu);
  auto it = known.find(id);
  if (it != known.end()) it->second.orphan = false;
}

Status FileStore::Impl::PurgeOrphan(const Node& node) {
  if (CheckWritable().ok() == false) return Status::OK();       // left for the next mount
  if (!internal::NeedsOrphanRecord(node)) return Status::OK();  // nothing outlived it
  engines::WriteBatch batch;
  if (events != nullptr) {
    KVFS_RETURN_IF_ERROR(DropXattrs(node, &batch));
    if (node.type == NodeType::kFile && !node.data_inline) batch.Delete(StreamDropKey(node.id));
  } else {
    batch.Put(PurgeKey(node.id), EncodeU64(0));  // the reclaimer's from here on
  }
  batch.Delete(OrphanKey(node.id));
  KVFS_RETURN_IF_ERROR(ApplyBatch(batch));
  if (events == nullptr) SetTruncatedFrom(node.id, std::nullopt);  // a removal's record now
  WakeReclaimer();
  return SyncIfBatchDue();  // our callers (Open, Forget) hold no lock
}

// ---------------------------------------------------------------------------------------------
// The reclaimer

void FileStore::Impl::StartReclaimer() {
  reclaimer = std::thread([this] { ReclaimerLoop(); });
}

void FileStore::Impl::StopReclaimer() {
  {
    std::lock_guard<std::mutex> lock(purge_mu);
    purge_stop = true;
  }
  purge_cv.notify_all();
  if (reclaimer.joinable()) reclaimer.join();
}

void FileStore::Impl::WakeReclaimer() {
  {
    std::lock_guard<std::mutex> lock(purge_mu);
    ++purge_wakes;
  }
  purge_cv.notify_all();
}

Status FileStore::Impl::WaitForPurges() {
  std::unique_lock<std::mutex> lock(purge_mu);
  if (!reclaimer.joinable()) return Status::OK();
  purge_cv.wait(lock, [&] { return purge_done == purge_wakes || purge_stop; });
  return purge_error;
}

void FileStore::Impl::ReclaimerLoop() {
  std::unique_lock<std::mutex> lock(purge_mu);
  for (;;) {
    purge_cv.wait(lock, [&] { return purge_stop || purge_done != purge_wakes; });
    if (purge_stop) return;
    const uint64_t seen = purge_wakes;
    lock.unlock();
    Status done = ReclaimAll();
    lock.lock();
    purge_done = seen;
    purge_error = done;
    purge_cv.notify_all();
  }
}

bool FileStore::Impl::Stopping() {
  std::lock_guard<std::mutex> lock(purge_mu);
  return purge_stop;
}

Status FileStore::Impl::ReclaimAll() {
  for (;;) {
    // A failed sync latched the store read-only: nothing more is written, nothing retried; the
    // records stay for the next mount.
    KVFS_RETURN_IF_ERROR(CheckWritable());
    std::vector<std::pair<uint64_t, PurgeRecord>> records;
    Status bad;
    engines::ScanOptions so;
    so.prefix = std::string(kPurgePrefix);
    KVFS_RETURN_IF_ERROR(engine->Scan(so, [&](std::string_view key, std::string_view value) {
      auto id = IdOfPurgeKey(key);
      auto record = id.ok() ? DecodePurgeRecord(value, key) : id.status();
      if (!record.ok()) {
        bad = record.status();
        return false;
      }
      records.emplace_back(*id, *record);
      return records.size() < kPurgeBatch;
    }));
    KVFS_RETURN_IF_ERROR(bad);
    if (records.empty()) return Status::OK();
    for (const auto& [id, record] : records) {
      if (Stopping()) return Status::OK();
      KVFS_RETURN_IF_ERROR(record.truncate ? ReclaimTruncated(id) : ReclaimId(id, record.first));
    }
  }
}

Status FileStore::Impl::ReclaimId(uint64_t id, uint64_t first) {
  // Each batch deletes at most kPurgeBatch keys: chunks first (from `first` on), then xattr
  // keys; the one that finds fewer left deletes the record too. Every batch is idempotent, so
  // after a crash the record is either still there (the next Open resumes) or all is gone.
  std::string after_chunk = first == 0 ? std::string() : ChunkKey(id, first - 1);
  std::string after_xattr;
  bool chunks_done = false;
  for (;;) {
    if (Stopping()) return Status::OK();
    KVFS_RETURN_IF_ERROR(CheckWritable());
    engines::WriteBatch batch;
    size_t n = 0;
    auto collect = [&](const std::string& prefix, std::string* after) {
      engines::ScanOptions so;
      so.prefix = prefix;
      so.start_after = *after;
      so.keys_only = true;
      return engine->Scan(so, [&](std::string_view key, std::string_view) {
        batch.Delete(key);
        *after = std::string(key);
        return ++n < kPurgeBatch;
      });
    };
    if (!chunks_done) {
      KVFS_RETURN_IF_ERROR(collect(ChunkPrefix(id), &after_chunk));
      chunks_done = n < kPurgeBatch;
    }
    if (first == 0 && chunks_done && n < kPurgeBatch) {  // a whole file: its xattrs too
      KVFS_RETURN_IF_ERROR(collect(XattrPrefix(id), &after_xattr));
    }
    const bool last = n < kPurgeBatch;
    if (last) batch.Delete(PurgeKey(id));
    KVFS_RETURN_IF_ERROR(ApplyBatch(batch));
    KVFS_RETURN_IF_ERROR(SyncIfBatchDue());  // no lock held here
    Count(&FileStoreStats::purged_keys, n);
    if (last) {
      SetTruncatedFrom(id, std::nullopt);  // a truncate's entry the removal's record replaced
      Count(&FileStoreStats::purges);
      return Status::OK();
    }
  }
}

namespace {

// Up to kPurgeBatch chunk keys of `id` from chunk `from` on and below `to`, deleted in `batch`;
// how many, and the chunk after the last.
struct ChunkSweep {
  size_t n = 0;
  uint64_t next = 0;
};

Result<ChunkSweep> SweepChunks(engines::Engine* engine, uint64_t id, uint64_t from, uint64_t to,
                               size_t max, engines::WriteBatch* batch) {
  ChunkSweep out;
  out.next = from;
  KVFS_RETURN_IF_ERROR(
      internal::ForChunksIn(engine, id, from, to, [&](std::string_view key, uint64_t chunk) {
        batch->Delete(key);
        out.next = chunk + 1;
        return ++out.n < max;
      }));
  return out;
}

}  // namespace

Status FileStore::Impl::ReclaimTruncated(uint64_t id) {
  // The record is the cursor: each batch deletes up to kPurgeBatch keys from its first chunk on
  // and moves it past them, or deletes it with the last. Under ns_mu shared and the id's inode
  // lock, as any writer of the file: a write putting chunks there, a second truncate and a
  // removal (which turns it into a removal's record) all change the record, and each batch
  // reads it again. A power cut between batches leaves a record that is right.
  for (;;) {
    if (Stopping()) return Status::OK();
    std::optional<uint64_t> removed;  // the record became a removal's, from this chunk on
    bool done = false;
    {
      ReaderMutexLock ns(&ns_mu);
      internal::InodeLocks::Hold inode(&inode_locks, id, /*exclusive=*/true);
      KVFS_RETURN_IF_ERROR(CheckWritable());
      const std::string key = PurgeKey(id);
      auto value = engine->Get(key);
      if (!value.ok()) {
        if (!value.status().IsNotFound()) return value.status();
        SetTruncatedFrom(id, std::nullopt);
        return Status::OK();
      }
      KVFS_ASSIGN_OR_RETURN(PurgeRecord record, DecodePurgeRecord(*value, key));
      if (!record.truncate) {
        removed = record.first;
      } else {
        engines::WriteBatch batch;
        KVFS_ASSIGN_OR_RETURN(ChunkSweep sweep, SweepChunks(engine.get(), id, record.first,
                                                            UINT64_MAX, kPurgeBatch, &batch));
        done = sweep.n < kPurgeBatch;
        if (done) {
          batch.Delete(key);
        } else {
          batch.Put(key, EncodePurgeRecord({sweep.next, /*truncate=*/true}));
        }
        KVFS_RETURN_IF_ERROR(ApplyBatch(batch));
        if (done) {
          SetTruncatedFrom(id, std::nullopt);
        } else {
          SetTruncatedFrom(id, sweep.next);
        }
        Count(&FileStoreStats::purged_keys, sweep.n);
        if (done) Count(&FileStoreStats::purges);
      }
    }
    KVFS_RETURN_IF_ERROR(SyncIfBatchDue());       // the locks are dropped
    if (removed) return ReclaimId(id, *removed);  // the id is gone: no lock needed
    if (done) return Status::OK();
  }
}

Status FileStore::Impl::PurgeTruncatedNow(uint64_t id, uint64_t from, uint64_t to) {
  for (;;) {
    KVFS_RETURN_IF_ERROR(CheckWritable());
    engines::WriteBatch batch;
    KVFS_ASSIGN_OR_RETURN(ChunkSweep sweep,
                          SweepChunks(engine.get(), id, from, to, kPurgeBatch, &batch));
    const bool done = sweep.n < kPurgeBatch;
    from = done ? to : sweep.next;
    batch.Put(PurgeKey(id), EncodePurgeRecord({from, /*truncate=*/true}));
    KVFS_RETURN_IF_ERROR(ApplyBatch(batch));
    SetTruncatedFrom(id, from);
    Count(&FileStoreStats::purged_keys, sweep.n);
    if (done) return Status::OK();
  }
}

// ---------------------------------------------------------------------------------------------
// Subtrees

Status FileStore::Impl::CollectSubtree(const std::string& path, NodeRecords* out, size_t max) {
  for (const std::string& prefix : {ChildrenPrefix(path), SubtreePrefix(path)}) {
    if (out->size() >= max) break;
    engines::ScanOptions so;
    so.prefix = prefix;
    KVFS_RETURN_IF_ERROR(engine->Scan(so, [&](std::string_view k, std::string_view v) {
      out->emplace_back(k, v);
      return out->size() < max;
    }));
  }
  return Status::OK();
}

namespace {

// The (source, destination) key bases of a move's current phase (layout.h, MoveRecord).
std::pair<std::string, std::string> MoveBases(const MoveRecord& m) {
  std::string from = SubtreeBase(m.from), to = SubtreeBase(m.to), stage(kStagingBase);
  if (!m.exchange) return {from, to};
  if (m.phase == 0) return {from, stage};
  if (m.phase == 1) return {to, from};
  return {stage, to};
}

}  // namespace

Status FileStore::Impl::FinishMove(MoveRecord m) {
  for (;;) {
    const std::pair<std::string, std::string> bases = MoveBases(m);
    const std::string& src = bases.first;
    const std::string& dst = bases.second;
    const bool last_phase = !m.exchange || m.phase == 2;
    // The source's children ("\0") then its deeper descendants ("/"), each scanned on from the
    // last key moved, so no batch scans again over the deletions of the ones before it.
    std::string after[2];
    int part = 0;
    for (;;) {
      engines::WriteBatch batch;
      size_t n = 0;
      while (part < 2 && n < kMoveBatch) {
        engines::ScanOptions so;
        so.prefix = src + (part == 0 ? '\0' : '/');
        so.start_after = after[part];
        bool full = false;
        KVFS_RETURN_IF_ERROR(engine->Scan(so, [&](std::string_view key, std::string_view value) {
          batch.Delete(key);
          batch.Put(dst + std::string(key.substr(src.size())), value);
          after[part] = std::string(key);
          full = ++n == kMoveBatch;
          return !full;
        }));
        if (!full) ++part;
      }
      const bool phase_done = part == 2;
      if (phase_done && last_phase) {
        batch.Delete(kMoveKey);
      } else if (phase_done) {
        MoveRecord next = m;
        ++next.phase;
        batch.Put(kMoveKey, EncodeMove(next));
      }
      if (!batch.empty()) KVFS_RETURN_IF_ERROR(ApplyBatch(batch));
      if (phase_done) break;
    }
    if (last_phase) return Status::OK();
    ++m.phase;
  }
}

Status FileStore::Impl::MoveSubtree(const NodeRecords& nodes, const std::string& from,
                                    const std::string& to, NodeRecords* puts,
                                    engines::WriteBatch* batch) {
  for (const auto& [key, value] : nodes) {
    KVFS_ASSIGN_OR_RETURN(std::string p, PathOfNodeKey(key));
    batch->Delete(key);
    puts->emplace_back(NodeKey(to + p.substr(from.size())), value);
  }
  return Status::OK();
}

}  // namespace kvfs::fusefs
