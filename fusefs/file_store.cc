#include "fusefs/file_store.h"

#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <ctime>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>

namespace kvfs::fusefs {

namespace {

// Ids are handed out in blocks: the mark written with the first id of a block tells the next
// open where fresh ids start, so a create costs no extra key most of the time.
constexpr uint64_t kIdBlock = 1024;

int64_t NowNs() {
  timespec ts;
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

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
  a.atime_ns = n.atime_ns;
  a.mtime_ns = n.mtime_ns;
  a.ctime_ns = n.ctime_ns;
  a.nlink = 1;
  return a;
}

// The shared part of Create, Mkdir and Symlink.
struct NewNode {
  NodeType type;
  uint32_t mode;
  std::string_view target;  // symlinks
};

enum class RemoveKind { kUnlink, kRmdir };

uint64_t ChunkCount(uint64_t size) { return (size + kChunkSize - 1) / kChunkSize; }

}  // namespace

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
Attr AttrOf(const Loaded& l) {
  Attr a = AttrOf(l.node);
  if (l.orphan) a.nlink = 0;
  return a;
}

struct FileStore::Impl {
  std::unique_ptr<engines::Engine> engine;
  FileStoreOptions options;

  // Namespace and metadata mutations exclusive; reads shared.
  std::shared_mutex mu;
  // The id table; taken briefly, never while calling into the engine.
  mutable std::mutex table_mu;
  std::unordered_map<uint64_t, Known> known;

  uint64_t next_id = kFirstFreeId;  // guarded by mu (exclusive)
  uint64_t id_mark = 0;             // ids below it may be in use after a restart

  std::atomic<bool> failed{false};
  mutable std::mutex stats_mu;
  FileStoreStats stats;

  void Count(uint64_t FileStoreStats::*field, uint64_t n = 1) {
    std::lock_guard lock(stats_mu);
    stats.*field += n;
  }

  Status CheckWritable() const {
    if (options.read_only) return Errno(EROFS, "store opened read-only");
    if (failed.load())
      return Errno(EROFS, "an earlier sync failed: store is read-only until remount");
    return Status::OK();
  }

  // The engine's answer to a mutation, as the errno a caller should see.
  Status ApplyBatch(const engines::WriteBatch& batch) {
    Status s = engine->Apply(batch);
    if (s.ok()) return s;
    Count(&FileStoreStats::errors);
    if (s.IsFailed()) {
      failed = true;
      return Status(StatusCode::kFailed, s.message(), EROFS);
    }
    return s;
  }

  // After the store lock is released: `always` mode makes the mutation durable here, where
  // concurrent callers share one log sync.
  Status SyncIfAlways() {
    if (!options.sync_every_mutation) return Status::OK();
    return SyncEngine(engines::SyncKind::kData);
  }

  Status SyncEngine(engines::SyncKind kind) {
    if (options.read_only) return Status::OK();
    if (failed.load())
      return Errno(EIO, "an earlier sync failed: store is read-only until remount");
    Status s = engine->Sync(kind);
    if (s.ok()) return s;
    // Never retried into a success: the log may have lost pages the kernel already dropped.
    failed = true;
    Count(&FileStoreStats::sync_errors);
    return Status(StatusCode::kIOError, "sync failed, store is now read-only: " + s.message(), EIO);
  }

  uint64_t AllocId(engines::WriteBatch* batch) {
    const uint64_t id = next_id++;
    if (next_id > id_mark) {
      id_mark = id + kIdBlock;
      batch->Put(kIdMarkKey, EncodeU64(id_mark));
    }
    return id;
  }

  Result<Node> GetNode(const std::string& path) {
    const std::string key = NodeKey(path);
    KVFS_ASSIGN_OR_RETURN(std::string value, engine->Get(key));
    return DecodeNode(value, key);
  }

  // The node `id` stands for. Caller holds mu (shared or exclusive).
  Result<Loaded> Load(uint64_t id) {
    Loaded l;
    if (id == kRootId) {
      KVFS_ASSIGN_OR_RETURN(l.node, GetNode(""));
      return l;
    }
    {
      std::lock_guard lock(table_mu);
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
    if (!node.ok()) return node.status();
    l.node = std::move(*node);
    if (l.node.id != id) return Errno(ENOENT, "node " + l.path + " was replaced");
    return l;
  }

  Result<Loaded> LoadDir(uint64_t id) {
    KVFS_ASSIGN_OR_RETURN(Loaded l, Load(id));
    if (l.node.type != NodeType::kDirectory) return Errno(ENOTDIR, "not a directory: " + l.path);
    if (l.orphan) return Errno(ENOENT, "directory was removed");
    return l;
  }

  // Stores a changed node where it lives: its key, or (orphans) the table and the orphan record.
  void PutNode(const Loaded& l, engines::WriteBatch* batch) {
    if (l.orphan) {
      std::lock_guard lock(table_mu);
      auto it = known.find(l.node.id);
      if (it != known.end()) it->second.node = l.node;
      return;
    }
    batch->Put(NodeKey(l.path), EncodeNode(l.node));
  }

  void AddRef(uint64_t id, const std::string& path, uint64_t n = 1) {
    if (id == kRootId) return;
    std::lock_guard lock(table_mu);
    Known& k = known[id];
    k.path = path;
    k.nlookup += n;
  }

  // Every chunk key of file `id` from chunk `first` on, found by a scan (sparse files have few).
  Result<std::vector<std::string>> ChunkKeysFrom(uint64_t id, uint64_t first) {
    std::vector<std::string> keys;
    engines::ScanOptions so;
    so.prefix = ChunkPrefix(id);
    so.keys_only = true;
    if (first > 0) so.start_after = ChunkKey(id, first - 1);
    KVFS_RETURN_IF_ERROR(engine->Scan(so, [&](std::string_view key, std::string_view) {
      keys.emplace_back(key);
      return true;
    }));
    return keys;
  }

  // A node leaves the namespace (unlink, rmdir, rename over it): if the kernel still holds it,
  // it lives on as an orphan until Forget; otherwise its data goes in the same batch.
  Status Drop(const Node& node, engines::WriteBatch* batch) {
    bool held = false;
    {
      std::lock_guard lock(table_mu);
      auto it = known.find(node.id);
      if (it != known.end() && !it->second.orphan) {
        held = true;
        it->second.orphan = true;
        it->second.node = node;
      }
    }
    if (node.type != NodeType::kFile || node.data_inline) return Status::OK();
    if (held) {
      Node record = node;
      record.inline_data.clear();
      batch->Put(OrphanKey(node.id), EncodeNode(record));
      return Status::OK();
    }
    KVFS_ASSIGN_OR_RETURN(auto keys, ChunkKeysFrom(node.id, 0));
    for (const auto& k : keys) batch->Delete(k);
    return Status::OK();
  }

  // Undoes Drop's table change when the batch that relied on it failed.
  void Undrop(uint64_t id) {
    std::lock_guard lock(table_mu);
    auto it = known.find(id);
    if (it != known.end()) it->second.orphan = false;
  }

  void Touch(Loaded* dir, int64_t now) {
    dir->node.mtime_ns = now;
    dir->node.ctime_ns = now;
  }

  // Bytes [offset, offset+n) of a file's data, holes as zeros. Caller holds mu.
  Result<std::string> ReadData(const Node& node, uint64_t offset, uint64_t n) {
    if (offset >= node.size) return std::string();
    n = std::min(n, node.size - offset);
    if (node.data_inline) return node.inline_data.substr(offset, n);
    std::string out(n, '\0');
    const uint64_t first = offset / kChunkSize;
    const uint64_t last = (offset + n - 1) / kChunkSize;
    if (last - first >= 2) {
      // Many chunks: one ordered scan over their keys instead of a lookup each.
      engines::ScanOptions so;
      so.prefix = ChunkPrefix(node.id);
      if (first > 0) so.start_after = ChunkKey(node.id, first - 1);
      Status bad;
      KVFS_RETURN_IF_ERROR(engine->Scan(so, [&](std::string_view key, std::string_view data) {
        auto chunk = DecodeU64(key.substr(so.prefix.size()), key);
        if (!chunk.ok()) {
          bad = chunk.status();
          return false;
        }
        if (*chunk > last) return false;
        const uint64_t start = *chunk * kChunkSize;  // file offset of the chunk's first byte
        const uint64_t from = std::max(start, offset);
        const uint64_t to = std::min(start + data.size(), offset + n);
        if (to > from)
          std::memcpy(out.data() + (from - offset), data.data() + (from - start), to - from);
        return true;
      }));
      KVFS_RETURN_IF_ERROR(bad);
      return out;
    }
    uint64_t pos = offset;
    while (pos < offset + n) {
      const uint64_t chunk = pos / kChunkSize;
      const uint64_t in_chunk = pos % kChunkSize;
      const uint64_t take = std::min(kChunkSize - in_chunk, offset + n - pos);
      auto data = engine->Get(ChunkKey(node.id, chunk));
      if (data.ok()) {
        if (data->size() > in_chunk) {
          const uint64_t have = std::min<uint64_t>(take, data->size() - in_chunk);
          std::memcpy(out.data() + (pos - offset), data->data() + in_chunk, have);
        }
      } else if (!data.status().IsNotFound()) {
        return data.status();
      }
      pos += take;
    }
    return out;
  }

  // Changes a file's size in `batch`, keeping the invariants: inline iff size <= kInlineMax
  // after a shrink, no chunk holds bytes at or past the size. Caller holds mu exclusive.
  Status Resize(Node* node, uint64_t new_size, engines::WriteBatch* batch) {
    if (new_size > kMaxFileSize)
      return Errno(EFBIG, "file size beyond " + std::to_string(kMaxFileSize));
    const uint64_t old_size = node->size;
    if (node->data_inline) {
      if (new_size <= kInlineMax) {
        node->inline_data.resize(new_size, '\0');
      } else {
        if (!node->inline_data.empty()) batch->Put(ChunkKey(node->id, 0), node->inline_data);
        node->inline_data.clear();
        node->data_inline = false;
      }
      node->size = new_size;
      return Status::OK();
    }
    if (new_size >= old_size) {
      node->size = new_size;  // a hole: missing bytes read as zeros
      return Status::OK();
    }
    if (new_size <= kInlineMax) {
      KVFS_ASSIGN_OR_RETURN(node->inline_data, ReadData(*node, 0, new_size));
      KVFS_ASSIGN_OR_RETURN(auto keys, ChunkKeysFrom(node->id, 0));
      for (const auto& k : keys) batch->Delete(k);
      node->data_inline = true;
      node->size = new_size;
      return Status::OK();
    }
    const uint64_t keep = ChunkCount(new_size);
    KVFS_ASSIGN_OR_RETURN(auto keys, ChunkKeysFrom(node->id, keep));
    for (const auto& k : keys) batch->Delete(k);
    if (new_size % kChunkSize != 0) {
      const std::string last = ChunkKey(node->id, keep - 1);
      auto data = engine->Get(last);
      if (data.ok() && data->size() > new_size % kChunkSize) {
        data->resize(new_size % kChunkSize);
        batch->Put(last, *data);
      } else if (!data.ok() && !data.status().IsNotFound()) {
        return data.status();
      }
    }
    node->size = new_size;
    return Status::OK();
  }

  // Writes `data` at `offset` into `node` and `batch`. Caller holds mu exclusive.
  Status WriteData(Node* node, uint64_t offset, std::string_view data, engines::WriteBatch* batch) {
    const uint64_t end = offset + data.size();
    if (end > kMaxFileSize || end < offset) {
      return Errno(EFBIG, "write past the largest file size " + std::to_string(kMaxFileSize));
    }
    if (node->data_inline && end <= kInlineMax) {
      if (node->inline_data.size() < end) node->inline_data.resize(end, '\0');
      node->inline_data.replace(offset, data.size(), data);
      node->size = node->inline_data.size();
      return Status::OK();
    }
    // Chunked from here on. A just-converted inline file's chunk 0 is in `pending`.
    std::string pending0;
    bool have_pending0 = false;
    if (node->data_inline) {
      pending0 = std::move(node->inline_data);
      have_pending0 = !pending0.empty();
      node->inline_data.clear();
      node->data_inline = false;
    }
    uint64_t pos = offset;
    while (pos < end) {
      const uint64_t chunk = pos / kChunkSize;
      const uint64_t in_chunk = pos % kChunkSize;
      const uint64_t take = std::min(kChunkSize - in_chunk, end - pos);
      std::string bytes;
      // A write covering the whole chunk needs no read of the old bytes.
      if (!(in_chunk == 0 && take == kChunkSize)) {
        if (chunk == 0 && have_pending0) {
          bytes = pending0;
        } else if (chunk * kChunkSize < node->size) {
          auto old = engine->Get(ChunkKey(node->id, chunk));
          if (old.ok()) {
            bytes = std::move(*old);
          } else if (!old.status().IsNotFound()) {
            return old.status();
          }
        }
      }
      if (bytes.size() < in_chunk + take) bytes.resize(in_chunk + take, '\0');
      bytes.replace(in_chunk, take, data.substr(pos - offset, take));
      batch->Put(ChunkKey(node->id, chunk), bytes);
      if (chunk == 0) have_pending0 = false;
      pos += take;
    }
    if (have_pending0) batch->Put(ChunkKey(node->id, 0), pending0);
    node->size = std::max(node->size, end);
    return Status::OK();
  }

  // Every node at or below `path` (which must be a directory), as (key, value).
  Status CollectSubtree(const std::string& path,
                        std::vector<std::pair<std::string, std::string>>* out) {
    for (const std::string& prefix : {ChildrenPrefix(path), SubtreePrefix(path)}) {
      engines::ScanOptions so;
      so.prefix = prefix;
      KVFS_RETURN_IF_ERROR(engine->Scan(so, [&](std::string_view k, std::string_view v) {
        out->emplace_back(k, v);
        return true;
      }));
    }
    return Status::OK();
  }

  // Moves the nodes below `from` (a directory) to below `to` in `batch`: deletes first, so an
  // exchange's puts land after both subtrees' deletes.
  Status MoveSubtree(const std::vector<std::pair<std::string, std::string>>& nodes,
                     const std::string& from, const std::string& to,
                     std::vector<std::pair<std::string, std::string>>* puts,
                     engines::WriteBatch* batch) {
    for (const auto& [key, value] : nodes) {
      KVFS_ASSIGN_OR_RETURN(std::string p, PathOfNodeKey(key));
      batch->Delete(key);
      puts->emplace_back(NodeKey(to + p.substr(from.size())), value);
    }
    return Status::OK();
  }

  // Table paths at or below `from` move to below `to`. Caller holds mu exclusive.
  void RenameInTable(const std::string& from, const std::string& to,
                     std::unordered_map<uint64_t, std::string>* moved) {
    std::lock_guard lock(table_mu);
    for (auto& [id, k] : known) {
      if (k.orphan) continue;
      if (k.path == from ||
          (k.path.size() > from.size() && k.path.compare(0, from.size(), from) == 0 &&
           k.path[from.size()] == '/')) {
        (*moved)[id] = to + k.path.substr(from.size());
      }
    }
  }

  void ApplyTableMoves(const std::unordered_map<uint64_t, std::string>& moved) {
    std::lock_guard lock(table_mu);
    for (const auto& [id, path] : moved) {
      auto it = known.find(id);
      if (it != known.end()) it->second.path = path;
    }
  }

  Result<Attr> MakeNode(uint64_t parent, std::string_view name, const NewNode& what,
                        const Caller& caller);
  Status RemoveEntry(uint64_t parent, std::string_view name, RemoveKind kind);

  Status PurgeOrphan(const Node& node) {
    if (CheckWritable().ok() == false) return Status::OK();  // left for the next mount
    engines::WriteBatch batch;
    if (node.type == NodeType::kFile && !node.data_inline) {
      KVFS_ASSIGN_OR_RETURN(auto keys, ChunkKeysFrom(node.id, 0));
      for (const auto& k : keys) batch.Delete(k);
      batch.Delete(OrphanKey(node.id));
    }
    if (batch.empty()) return Status::OK();
    return ApplyBatch(batch);
  }
};

FileStore::FileStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
FileStore::~FileStore() = default;

engines::Engine* FileStore::engine() { return impl_->engine.get(); }
bool FileStore::failed() const { return impl_->failed.load(); }

int ErrnoOf(const Status& s) {
  if (s.ok()) return 0;
  return s.sys_errno() != 0 ? s.sys_errno() : EIO;
}

Result<std::unique_ptr<FileStore>> FileStore::Open(std::unique_ptr<engines::Engine> engine,
                                                   const FileStoreOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->engine = std::move(engine);
  impl->options = options;
  Impl& s = *impl;
  auto version = s.engine->Get(kVersionKey);
  if (!version.ok() && !version.status().IsNotFound()) return version.status();
  if (!version.ok()) {
    // A fresh store: its root and version in one batch, durable before anyone uses it.
    if (options.read_only) return Status::NotFound("the store holds no kvfs file tree yet");
    const int64_t now = NowNs();
    Node root;
    root.type = NodeType::kDirectory;
    root.mode = 0755;
    root.uid = ::geteuid();
    root.gid = ::getegid();
    root.id = kRootId;
    root.atime_ns = root.mtime_ns = root.ctime_ns = now;
    engines::WriteBatch batch;
    batch.Put(kVersionKey, kLayoutVersion);
    batch.Put(NodeKey(""), EncodeNode(root));
    batch.Put(kIdMarkKey, EncodeU64(kFirstFreeId));
    KVFS_RETURN_IF_ERROR(s.engine->Apply(batch));
    KVFS_RETURN_IF_ERROR(s.engine->Sync(engines::SyncKind::kFull));
    version = std::string(kLayoutVersion);
  }
  if (*version != kLayoutVersion) {
    return Status::Corruption("key V: unknown file layout '" + EscapeKey(*version) +
                              "' (this kvfs reads '" + std::string(kLayoutVersion) + "')");
  }
  auto root = s.GetNode("");
  if (!root.ok()) {
    return Status::Corruption("the root directory's node (key R) is unreadable: " +
                              root.status().ToString());
  }
  KVFS_ASSIGN_OR_RETURN(std::string mark, s.engine->Get(kIdMarkKey));
  KVFS_ASSIGN_OR_RETURN(s.id_mark, DecodeU64(mark, kIdMarkKey));
  s.next_id = std::max(s.id_mark, kFirstFreeId);
  s.id_mark = s.next_id;  // the first create writes a new mark

  if (!options.read_only) {
    // Files unlinked while open when the last daemon stopped: their data goes now.
    std::vector<Node> orphans;
    engines::ScanOptions so;
    so.prefix = std::string(kOrphanPrefix);
    Status scan = s.engine->Scan(so, [&](std::string_view key, std::string_view value) {
      auto node = DecodeNode(value, key);
      if (node.ok()) orphans.push_back(std::move(*node));
      return true;
    });
    KVFS_RETURN_IF_ERROR(scan);
    for (const Node& n : orphans) KVFS_RETURN_IF_ERROR(s.PurgeOrphan(n));
  }
  return std::unique_ptr<FileStore>(new FileStore(std::move(impl)));
}

Result<Attr> FileStore::Lookup(uint64_t parent, std::string_view name) {
  Impl& s = *impl_;
  s.Count(&FileStoreStats::lookups);
  KVFS_RETURN_IF_ERROR(ValidateName(name));
  std::shared_lock lock(s.mu);
  KVFS_ASSIGN_OR_RETURN(Loaded dir, s.LoadDir(parent));
  const std::string path = JoinPath(dir.path, name);
  auto node = s.GetNode(path);
  if (!node.ok()) {
    if (node.status().IsNotFound()) return Errno(ENOENT, "no such entry: " + path);
    return node.status();
  }
  s.AddRef(node->id, path);
  return AttrOf(*node);
}

void FileStore::Forget(uint64_t id, uint64_t nlookup) {
  Impl& s = *impl_;
  std::optional<Node> purge;
  {
    std::lock_guard lock(s.table_mu);
    auto it = s.known.find(id);
    if (it == s.known.end()) return;
    it->second.nlookup -= std::min(nlookup, it->second.nlookup);
    if (it->second.nlookup > 0) return;
    if (it->second.orphan) purge = std::move(it->second.node);
    s.known.erase(it);
  }
  // Nobody can reach the orphan's id any more: its chunks go without the store lock. A failure
  // leaves the orphan record, and the next Open finishes the job.
  if (purge) s.PurgeOrphan(*purge).PermitUnchecked();
}

Result<Attr> FileStore::GetAttr(uint64_t id) {
  Impl& s = *impl_;
  s.Count(&FileStoreStats::getattrs);
  std::shared_lock lock(s.mu);
  KVFS_ASSIGN_OR_RETURN(Loaded l, s.Load(id));
  return AttrOf(l);
}

Result<Attr> FileStore::SetAttr(uint64_t id, const AttrChange& change) {
  Impl& s = *impl_;
  s.Count(&FileStoreStats::setattrs);
  Attr attr;
  {
    std::unique_lock lock(s.mu);
    KVFS_RETURN_IF_ERROR(s.CheckWritable());
    KVFS_ASSIGN_OR_RETURN(Loaded l, s.Load(id));
    Node& n = l.node;
    const int64_t now = NowNs();
    engines::WriteBatch batch;
    if (change.size) {
      if (n.type == NodeType::kDirectory) return Errno(EISDIR, "cannot truncate a directory");
      if (n.type != NodeType::kFile) return Errno(EINVAL, "cannot truncate a symlink");
      KVFS_RETURN_IF_ERROR(s.Resize(&n, *change.size, &batch));
      n.mtime_ns = now;
    }
    if (change.mode) n.mode = *change.mode & 07777;
    if (change.uid) n.uid = *change.uid;
    if (change.gid) n.gid = *change.gid;
    if (change.atime_ns) n.atime_ns = *change.atime_ns == AttrChange::kNow ? now : *change.atime_ns;
    if (change.mtime_ns) n.mtime_ns = *change.mtime_ns == AttrChange::kNow ? now : *change.mtime_ns;
    n.ctime_ns = now;
    s.PutNode(l, &batch);
    if (!batch.empty()) KVFS_RETURN_IF_ERROR(s.ApplyBatch(batch));
    attr = AttrOf(l);
  }
  KVFS_RETURN_IF_ERROR(s.SyncIfAlways());
  return attr;
}

Result<Attr> FileStore::Impl::MakeNode(uint64_t parent, std::string_view name, const NewNode& what,
                                       const Caller& caller) {
  Impl& s = *this;
  KVFS_RETURN_IF_ERROR(ValidateName(name));
  Attr attr;
  {
    std::unique_lock lock(s.mu);
    KVFS_RETURN_IF_ERROR(s.CheckWritable());
    KVFS_ASSIGN_OR_RETURN(Loaded dir, s.LoadDir(parent));
    const std::string path = JoinPath(dir.path, name);
    if (path.size() > kMaxPathLength) return Errno(ENAMETOOLONG, "path too long: " + path);
    auto existing = s.engine->Get(NodeKey(path));
    if (existing.ok()) return Errno(EEXIST, "exists: " + path);
    if (!existing.status().IsNotFound()) return existing.status();

    const int64_t now = NowNs();
    engines::WriteBatch batch;
    Node n;
    n.type = what.type;
    n.id = s.AllocId(&batch);
    n.mode = what.mode & ~caller.umask & 07777;
    n.uid = caller.uid;
    n.gid = caller.gid;
    // A setgid directory passes its group on, and to new directories its setgid bit too.
    if (dir.node.mode & 02000) {
      n.gid = dir.node.gid;
      if (what.type == NodeType::kDirectory) n.mode |= 02000;
    }
    if (what.type == NodeType::kSymlink) {
      n.mode = 0777;
      n.inline_data = std::string(what.target);
      n.size = what.target.size();
    }
    n.atime_ns = n.mtime_ns = n.ctime_ns = now;
    batch.Put(NodeKey(path), EncodeNode(n));
    s.Touch(&dir, now);
    s.PutNode(dir, &batch);
    KVFS_RETURN_IF_ERROR(s.ApplyBatch(batch));
    s.AddRef(n.id, path);
    attr = AttrOf(n);
  }
  KVFS_RETURN_IF_ERROR(s.SyncIfAlways());
  return attr;
}

Result<Attr> FileStore::Create(uint64_t parent, std::string_view name, uint32_t mode,
                               const Caller& caller) {
  impl_->Count(&FileStoreStats::creates);
  return impl_->MakeNode(parent, name, {NodeType::kFile, mode, {}}, caller);
}

Result<Attr> FileStore::Mkdir(uint64_t parent, std::string_view name, uint32_t mode,
                              const Caller& caller) {
  impl_->Count(&FileStoreStats::mkdirs);
  return impl_->MakeNode(parent, name, {NodeType::kDirectory, mode, {}}, caller);
}

Result<Attr> FileStore::Symlink(uint64_t parent, std::string_view name, std::string_view target,
                                const Caller& caller) {
  impl_->Count(&FileStoreStats::symlinks);
  if (target.empty()) return Errno(ENOENT, "empty symlink target");
  if (target.size() > kMaxSymlinkLength) return Errno(ENAMETOOLONG, "symlink target too long");
  return impl_->MakeNode(parent, name, {NodeType::kSymlink, 0777, target}, caller);
}

Result<std::string> FileStore::ReadLink(uint64_t id) {
  Impl& s = *impl_;
  std::shared_lock lock(s.mu);
  KVFS_ASSIGN_OR_RETURN(Loaded l, s.Load(id));
  if (l.node.type != NodeType::kSymlink) return Errno(EINVAL, "not a symlink");
  return l.node.inline_data;
}

Status FileStore::Impl::RemoveEntry(uint64_t parent, std::string_view name, RemoveKind kind) {
  Impl& s = *this;
  KVFS_RETURN_IF_ERROR(ValidateName(name));
  {
    std::unique_lock lock(s.mu);
    KVFS_RETURN_IF_ERROR(s.CheckWritable());
    KVFS_ASSIGN_OR_RETURN(Loaded dir, s.LoadDir(parent));
    const std::string path = JoinPath(dir.path, name);
    auto node = s.GetNode(path);
    if (!node.ok()) {
      if (node.status().IsNotFound()) return Errno(ENOENT, "no such entry: " + path);
      return node.status();
    }
    const bool is_dir = node->type == NodeType::kDirectory;
    if (kind == RemoveKind::kUnlink && is_dir) return Errno(EISDIR, "is a directory: " + path);
    if (kind == RemoveKind::kRmdir) {
      if (!is_dir) return Errno(ENOTDIR, "not a directory: " + path);
      bool empty = true;
      engines::ScanOptions so;
      so.prefix = ChildrenPrefix(path);
      so.keys_only = true;
      KVFS_RETURN_IF_ERROR(s.engine->Scan(so, [&](std::string_view, std::string_view) {
        empty = false;
        return false;
      }));
      if (!empty) return Errno(ENOTEMPTY, "directory not empty: " + path);
    }
    engines::WriteBatch batch;
    batch.Delete(NodeKey(path));
    KVFS_RETURN_IF_ERROR(s.Drop(*node, &batch));
    s.Touch(&dir, NowNs());
    s.PutNode(dir, &batch);
    Status applied = s.ApplyBatch(batch);
    if (!applied.ok()) {
      s.Undrop(node->id);
      return applied;
    }
  }
  return s.SyncIfAlways();
}

Status FileStore::Unlink(uint64_t parent, std::string_view name) {
  impl_->Count(&FileStoreStats::unlinks);
  return impl_->RemoveEntry(parent, name, RemoveKind::kUnlink);
}

Status FileStore::Rmdir(uint64_t parent, std::string_view name) {
  impl_->Count(&FileStoreStats::rmdirs);
  return impl_->RemoveEntry(parent, name, RemoveKind::kRmdir);
}

Status FileStore::Rename(uint64_t parent, std::string_view name, uint64_t new_parent,
                         std::string_view new_name, unsigned flags) {
  Impl& s = *impl_;
  s.Count(&FileStoreStats::renames);
  KVFS_RETURN_IF_ERROR(ValidateName(name));
  KVFS_RETURN_IF_ERROR(ValidateName(new_name));
  if ((flags & kRenameNoReplace) && (flags & kRenameExchange)) {
    return Errno(EINVAL, "RENAME_NOREPLACE and RENAME_EXCHANGE together");
  }
  if (flags & ~(kRenameNoReplace | kRenameExchange)) return Errno(EINVAL, "unknown rename flags");
  {
    std::unique_lock lock(s.mu);
    KVFS_RETURN_IF_ERROR(s.CheckWritable());
    KVFS_ASSIGN_OR_RETURN(Loaded from_dir, s.LoadDir(parent));
    KVFS_ASSIGN_OR_RETURN(Loaded to_dir, s.LoadDir(new_parent));
    const std::string from = JoinPath(from_dir.path, name);
    const std::string to = JoinPath(to_dir.path, new_name);
    auto src = s.GetNode(from);
    if (!src.ok()) {
      if (src.status().IsNotFound()) return Errno(ENOENT, "no such entry: " + from);
      return src.status();
    }
    auto dst = s.GetNode(to);
    if (!dst.ok() && !dst.status().IsNotFound()) return dst.status();
    const bool dst_exists = dst.ok();
    if (from == to) {
      return (flags & kRenameNoReplace) ? Errno(EEXIST, "exists: " + to) : Status::OK();
    }
    auto inside = [](const std::string& p, const std::string& dir) {
      return p.size() > dir.size() && p.compare(0, dir.size(), dir) == 0 && p[dir.size()] == '/';
    };
    const bool src_dir = src->type == NodeType::kDirectory;
    const bool dst_dir = dst_exists && dst->type == NodeType::kDirectory;
    if (src_dir && inside(to, from)) return Errno(EINVAL, "cannot move " + from + " into itself");
    if (to.size() > kMaxPathLength) return Errno(ENAMETOOLONG, "path too long: " + to);

    const int64_t now = NowNs();
    engines::WriteBatch batch;
    std::vector<std::pair<std::string, std::string>> puts;
    std::unordered_map<uint64_t, std::string> moved;
    std::optional<uint64_t> dropped;
    if (flags & kRenameExchange) {
      if (!dst_exists) return Errno(ENOENT, "no such entry: " + to);
      if (dst_dir && inside(from, to)) return Errno(EINVAL, "cannot move " + to + " into itself");
      std::vector<std::pair<std::string, std::string>> src_tree, dst_tree;
      if (src_dir) KVFS_RETURN_IF_ERROR(s.CollectSubtree(from, &src_tree));
      if (dst_dir) KVFS_RETURN_IF_ERROR(s.CollectSubtree(to, &dst_tree));
      KVFS_RETURN_IF_ERROR(s.MoveSubtree(src_tree, from, to, &puts, &batch));
      KVFS_RETURN_IF_ERROR(s.MoveSubtree(dst_tree, to, from, &puts, &batch));
      Node a = *src, b = *dst;
      a.ctime_ns = b.ctime_ns = now;
      puts.emplace_back(NodeKey(to), EncodeNode(a));
      puts.emplace_back(NodeKey(from), EncodeNode(b));
      std::unordered_map<uint64_t, std::string> moved_back;
      s.RenameInTable(from, to, &moved);
      s.RenameInTable(to, from, &moved_back);
      moved.merge(moved_back);
    } else {
      if (dst_exists) {
        if (flags & kRenameNoReplace) return Errno(EEXIST, "exists: " + to);
        if (src_dir && !dst_dir) return Errno(ENOTDIR, "not a directory: " + to);
        if (!src_dir && dst_dir) return Errno(EISDIR, "is a directory: " + to);
        if (dst_dir) {
          bool empty = true;
          engines::ScanOptions so;
          so.prefix = ChildrenPrefix(to);
          so.keys_only = true;
          KVFS_RETURN_IF_ERROR(s.engine->Scan(so, [&](std::string_view, std::string_view) {
            empty = false;
            return false;
          }));
          if (!empty) return Errno(ENOTEMPTY, "directory not empty: " + to);
        }
      }
      std::vector<std::pair<std::string, std::string>> tree;
      if (src_dir) KVFS_RETURN_IF_ERROR(s.CollectSubtree(from, &tree));
      KVFS_RETURN_IF_ERROR(s.MoveSubtree(tree, from, to, &puts, &batch));
      batch.Delete(NodeKey(from));
      if (dst_exists) {
        KVFS_RETURN_IF_ERROR(s.Drop(*dst, &batch));
        dropped = dst->id;
      }
      Node a = *src;
      a.ctime_ns = now;
      puts.emplace_back(NodeKey(to), EncodeNode(a));
      s.RenameInTable(from, to, &moved);
    }
    for (const auto& [k, v] : puts) batch.Put(k, v);
    // The parents' times; when both are one directory, one node.
    s.Touch(&from_dir, now);
    if (from_dir.node.id == to_dir.node.id) {
      s.PutNode(from_dir, &batch);
    } else {
      s.Touch(&to_dir, now);
      s.PutNode(from_dir, &batch);
      s.PutNode(to_dir, &batch);
    }
    Status applied = s.ApplyBatch(batch);
    if (!applied.ok()) {
      if (dropped) s.Undrop(*dropped);
      return applied;
    }
    s.ApplyTableMoves(moved);
  }
  return s.SyncIfAlways();
}

Status FileStore::ReadDir(uint64_t id, std::string_view after, bool plus,
                          const std::function<bool(const DirEntry&)>& fn) {
  Impl& s = *impl_;
  s.Count(&FileStoreStats::readdirs);
  std::shared_lock lock(s.mu);
  KVFS_ASSIGN_OR_RETURN(Loaded dir, s.LoadDir(id));
  engines::ScanOptions so;
  so.prefix = ChildrenPrefix(dir.path);
  if (!after.empty()) so.start_after = NodeKey(JoinPath(dir.path, after));
  Status inner;
  Status scan = s.engine->Scan(so, [&](std::string_view key, std::string_view value) {
    auto node = DecodeNode(value, key);
    if (!node.ok()) {
      inner = node.status();
      return false;
    }
    DirEntry e;
    const size_t nul = key.find('\0');
    e.name = std::string(key.substr(nul + 1));
    e.attr = AttrOf(*node);
    if (!fn(e)) return false;
    if (plus) s.AddRef(node->id, JoinPath(dir.path, e.name));
    return true;
  });
  KVFS_RETURN_IF_ERROR(scan);
  return inner;
}

Result<std::string> FileStore::Read(uint64_t id, uint64_t offset, size_t size) {
  Impl& s = *impl_;
  std::shared_lock lock(s.mu);
  KVFS_ASSIGN_OR_RETURN(Loaded l, s.Load(id));
  if (l.node.type == NodeType::kDirectory) return Errno(EISDIR, "is a directory");
  if (l.node.type != NodeType::kFile) return Errno(EINVAL, "not a regular file");
  auto data = s.ReadData(l.node, offset, size);
  if (data.ok()) {
    std::lock_guard stats_lock(s.stats_mu);
    s.stats.reads++;
    s.stats.read_bytes += data->size();
  }
  return data;
}

Result<size_t> FileStore::Write(uint64_t id, uint64_t offset, std::string_view data) {
  Impl& s = *impl_;
  {
    std::unique_lock lock(s.mu);
    KVFS_RETURN_IF_ERROR(s.CheckWritable());
    KVFS_ASSIGN_OR_RETURN(Loaded l, s.Load(id));
    if (l.node.type == NodeType::kDirectory) return Errno(EISDIR, "is a directory");
    if (l.node.type != NodeType::kFile) return Errno(EINVAL, "not a regular file");
    engines::WriteBatch batch;
    KVFS_RETURN_IF_ERROR(s.WriteData(&l.node, offset, data, &batch));
    const int64_t now = NowNs();
    l.node.mtime_ns = l.node.ctime_ns = now;
    s.PutNode(l, &batch);
    if (l.orphan && !l.node.data_inline) {
      Node record = l.node;
      record.inline_data.clear();
      batch.Put(OrphanKey(l.node.id), EncodeNode(record));
    }
    if (!batch.empty()) KVFS_RETURN_IF_ERROR(s.ApplyBatch(batch));
  }
  {
    std::lock_guard stats_lock(s.stats_mu);
    s.stats.writes++;
    s.stats.write_bytes += data.size();
  }
  KVFS_RETURN_IF_ERROR(s.SyncIfAlways());
  return data.size();
}

Status FileStore::SyncFile(uint64_t id, bool datasync) {
  Impl& s = *impl_;
  s.Count(datasync ? &FileStoreStats::fdatasyncs : &FileStoreStats::fsyncs);
  (void)id;  // one log holds every file: syncing it covers this one
  return s.SyncEngine(datasync ? engines::SyncKind::kData : engines::SyncKind::kFull);
}

Status FileStore::SyncDir(uint64_t id) {
  Impl& s = *impl_;
  s.Count(&FileStoreStats::fsyncdirs);
  (void)id;  // names live in the same log as everything else
  return s.SyncEngine(engines::SyncKind::kFull);
}

Status FileStore::SyncAll() { return impl_->SyncEngine(engines::SyncKind::kFull); }

Result<std::string> FileStore::GetXattr(uint64_t id, std::string_view name) {
  Impl& s = *impl_;
  std::shared_lock lock(s.mu);
  KVFS_ASSIGN_OR_RETURN(Loaded l, s.Load(id));
  auto it = l.node.xattrs.find(std::string(name));
  if (it == l.node.xattrs.end()) return Errno(ENODATA, "no attribute " + std::string(name));
  return it->second;
}

Status FileStore::SetXattr(uint64_t id, std::string_view name, std::string_view value, int flags) {
  Impl& s = *impl_;
  if (name.empty() || name.size() > kMaxXattrNameLength) {
    return Errno(ERANGE, "attribute name of " + std::to_string(name.size()) + " bytes");
  }
  if (value.size() > kMaxXattrValueLength) return Errno(E2BIG, "attribute value too large");
  {
    std::unique_lock lock(s.mu);
    KVFS_RETURN_IF_ERROR(s.CheckWritable());
    KVFS_ASSIGN_OR_RETURN(Loaded l, s.Load(id));
    auto& xattrs = l.node.xattrs;
    const std::string key(name);
    const bool present = xattrs.count(key) > 0;
    if ((flags & XATTR_CREATE) && present) return Errno(EEXIST, "attribute exists: " + key);
    if ((flags & XATTR_REPLACE) && !present) return Errno(ENODATA, "no attribute " + key);
    xattrs[key] = std::string(value);
    size_t total = 0;
    for (const auto& [n, v] : xattrs) total += n.size() + v.size();
    if (total > kMaxXattrTotal) return Errno(ENOSPC, "attributes of this node exceed 64 KiB");
    l.node.ctime_ns = NowNs();
    engines::WriteBatch batch;
    s.PutNode(l, &batch);
    if (!batch.empty()) KVFS_RETURN_IF_ERROR(s.ApplyBatch(batch));
  }
  return s.SyncIfAlways();
}

Result<std::vector<std::string>> FileStore::ListXattr(uint64_t id) {
  Impl& s = *impl_;
  std::shared_lock lock(s.mu);
  KVFS_ASSIGN_OR_RETURN(Loaded l, s.Load(id));
  std::vector<std::string> names;
  for (const auto& [n, v] : l.node.xattrs) names.push_back(n);
  return names;
}

Status FileStore::RemoveXattr(uint64_t id, std::string_view name) {
  Impl& s = *impl_;
  {
    std::unique_lock lock(s.mu);
    KVFS_RETURN_IF_ERROR(s.CheckWritable());
    KVFS_ASSIGN_OR_RETURN(Loaded l, s.Load(id));
    if (l.node.xattrs.erase(std::string(name)) == 0) {
      return Errno(ENODATA, "no attribute " + std::string(name));
    }
    l.node.ctime_ns = NowNs();
    engines::WriteBatch batch;
    s.PutNode(l, &batch);
    if (!batch.empty()) KVFS_RETURN_IF_ERROR(s.ApplyBatch(batch));
  }
  return s.SyncIfAlways();
}

Result<Attr> FileStore::Resolve(std::string_view path) {
  Attr attr;
  KVFS_ASSIGN_OR_RETURN(attr, GetAttr(kRootId));
  size_t pos = 0;
  while (pos < path.size()) {
    const size_t slash = path.find('/', pos);
    const size_t end = slash == std::string_view::npos ? path.size() : slash;
    const std::string_view name = path.substr(pos, end - pos);
    pos = end + 1;
    if (name.empty() || name == ".") continue;
    if (attr.type != NodeType::kDirectory) {
      return Errno(ENOTDIR, "not a directory on the way to " + std::string(path));
    }
    KVFS_ASSIGN_OR_RETURN(attr, Lookup(attr.id, name));
  }
  return attr;
}

FileStoreStats FileStore::stats() const {
  FileStoreStats out;
  {
    std::lock_guard lock(impl_->stats_mu);
    out = impl_->stats;
  }
  std::lock_guard lock(impl_->table_mu);
  out.known_nodes = impl_->known.size();
  out.orphans = 0;
  for (const auto& [id, k] : impl_->known) out.orphans += k.orphan ? 1 : 0;
  return out;
}

Status FileStore::Close() {
  Impl& s = *impl_;
  Status synced = s.SyncEngine(engines::SyncKind::kFull);
  Status closed = s.engine->Close();
  KVFS_RETURN_IF_ERROR(synced);
  return closed;
}

}  // namespace kvfs::fusefs
