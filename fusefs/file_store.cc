// FileStore's operations: opening a store, the namespace, file data, xattrs and statistics, each
// under the locks file_store_impl.h names. The helpers they share are FileStore::Impl's
// (file_store_impl.h).
#include "fusefs/file_store.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <unordered_map>

#include "fusefs/file_store_impl.h"
#include "fusefs/time_ns.h"

namespace kvfs::fusefs {

using internal::AttrOf;
using internal::Errno;
using internal::Loaded;
using internal::NewNode;
using internal::RemoveKind;

FileStore::FileStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
FileStore::~FileStore() = default;

engines::Engine* FileStore::engine() { return impl_->engine.get(); }
bool FileStore::failed() const { return impl_->failed.load(); }

Status PendingMoveStatus(const MoveRecord& m) {
  return Status(StatusCode::kFailed,
                std::string(m.exchange ? "an exchange of /" : "a rename of /") + m.from +
                    (m.exchange ? " and /" : " to /") + m.to +
                    " was cut short (key Y): the next writable open (a mount, kvfs put or kvfs "
                    "rm) finishes it; until then read-only tools refuse the store rather than "
                    "show the tree half-moved",
                EAGAIN);
}

int ErrnoOf(const Status& s) {
  if (s.ok()) return 0;
  return s.sys_errno() != 0 ? s.sys_errno() : EIO;
}

Result<std::unique_ptr<FileStore>> FileStore::Open(std::unique_ptr<engines::Engine> engine,
                                                   const FileStoreOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->engine = std::move(engine);
  impl->options = options;
  // A full batch's sync is ours to run, after our locks are dropped (SyncIfOwed).
  if (!options.read_only) impl->engine->DeferBatchSyncs();
  impl->OpenEvents();
  Impl& s = *impl;
  MutexLock ns(&s.ns_mu);  // nobody else has the store yet: for the analysis
  auto version = s.engine->Get(kVersionKey);
  if (!version.ok() && !version.status().IsNotFound()) return version.status();
  if (!version.ok()) {
    if (options.expect_tree) {
      return Status::Corruption(
          "its store marker says it holds a kvfs file tree, but its engine has none (key V is "
          "missing): its data files were lost or replaced (a removed log segment, say); `kvfs "
          "check` shows what is left");
    }
    // A fresh store: its root and version in one batch, durable before anyone uses it.
    if (options.read_only) return Status::NotFound("the store holds no kvfs file tree yet");
    const int64_t now = NowNs();
    Node root;
    root.type = NodeType::kDirectory;
    root.mode = 0755;
    root.uid = ::geteuid();
    root.gid = ::getegid();
    root.id = kRootId;
    root.nlink = 2;
    root.atime_ns = root.mtime_ns = root.ctime_ns = now;
    engines::WriteBatch batch;
    batch.Put(kVersionKey, kLayoutVersion);
    batch.Put(NodeKey(""), EncodeNode(root));
    batch.Put(kIdMarkKey, EncodeU64(kFirstFreeId));
    KVFS_RETURN_IF_ERROR(s.engine->Apply(batch));
    KVFS_RETURN_IF_ERROR(s.engine->Sync(engines::SyncKind::kFull));
    version = std::string(kLayoutVersion);
  }
  if (*version != kLayoutVersion && *version != kLayoutVersion2 && *version != kLayoutVersion1) {
    return Status::Corruption("key V: unknown file layout '" + EscapeKey(*version) +
                              "' (this kvfs reads '" + std::string(kLayoutVersion) + "', '" +
                              std::string(kLayoutVersion2) + "' and '" +
                              std::string(kLayoutVersion1) + "')");
  }
  if (*version != kLayoutVersion && !options.read_only) {
    // Directory link counts and chunk counts (layout 1), xattr keys (1 and 2): made once here,
    // then kept by every mutation.
    KVFS_RETURN_IF_ERROR(s.UpgradeLayout());
    version = std::string(kLayoutVersion);
  }
  // A directory rename a crash cut short: finished before anything else reads the tree, or,
  // read-only, refused rather than shown half-moved.
  auto pending = s.engine->Get(kMoveKey);
  if (!pending.ok() && !pending.status().IsNotFound()) return pending.status();
  if (pending.ok()) {
    KVFS_ASSIGN_OR_RETURN(MoveRecord m, DecodeMove(*pending));
    if (options.read_only) return PendingMoveStatus(m);
    KVFS_RETURN_IF_ERROR(s.FinishMove(m));
    KVFS_RETURN_IF_ERROR(s.engine->Sync(engines::SyncKind::kFull));
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
  // Truncates whose chunks are not reclaimed yet: those chunks read as holes meanwhile.
  KVFS_RETURN_IF_ERROR(s.LoadTruncated());

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
    // Purges a previous run left half-done, and those just handed over, go on in the background.
    s.StartReclaimer();
    s.WakeReclaimer();
  }
  return std::unique_ptr<FileStore>(new FileStore(std::move(impl)));
}

Result<Attr> FileStore::Lookup(uint64_t parent, std::string_view name) {
  Impl& s = *impl_;
  s.Count(&FileStoreStats::lookups);
  KVFS_RETURN_IF_ERROR(ValidateName(name));
  ReaderMutexLock ns(&s.ns_mu);
  if (s.IsReservedName(parent, name)) return s.view->LookupRoot();
  if (s.IsViewId(parent)) return s.view->Lookup(parent, name);
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
  if (s.IsViewId(id)) return s.view->Forget(id, nlookup);
  std::optional<Node> purge;
  {
    MutexLock lock(&s.table_mu);
    auto it = s.known.find(id);
    if (it == s.known.end()) return;
    it->second.nlookup -= std::min(nlookup, it->second.nlookup);
    if (it->second.nlookup > 0) return;
    if (it->second.orphan) purge = std::move(it->second.node);
    s.known.erase(it);
  }
  // Nobody can reach the orphan's id any more, but the reclaimer may be working through a
  // truncate record of it, which this rewrites: so the locks the reclaimer takes. A failure
  // leaves the orphan record, and the next Open finishes the job.
  if (purge) {
    ReaderMutexLock ns(&s.ns_mu);
    internal::InodeLocks::Hold inode(&s.inode_locks, id, /*exclusive=*/true);
    s.PurgeOrphan(*purge).PermitUnchecked();
  }
}

Result<Attr> FileStore::GetAttr(uint64_t id) {
  Impl& s = *impl_;
  s.Count(&FileStoreStats::getattrs);
  ReaderMutexLock ns(&s.ns_mu);
  if (s.IsViewId(id)) return s.view->GetAttr(id);
  KVFS_ASSIGN_OR_RETURN(Loaded l, s.Load(id));
  return AttrOf(l);
}

Result<Attr> FileStore::SetAttr(uint64_t id, const AttrChange& change) {
  Impl& s = *impl_;
  s.Count(&FileStoreStats::setattrs);
  Attr attr;
  {
    ReaderMutexLock ns(&s.ns_mu);
    internal::InodeLocks::Hold inode(&s.inode_locks, id, /*exclusive=*/true);
    KVFS_RETURN_IF_ERROR(s.CheckWritable());
    KVFS_ASSIGN_OR_RETURN(Loaded l, s.Load(id));
    Node& n = l.node;
    const int64_t now = NowNs();
    engines::WriteBatch batch;
    std::optional<uint64_t> trunc_after;
    if (change.size) {
      if (n.type == NodeType::kDirectory) return Errno(EISDIR, "cannot truncate a directory");
      if (n.type != NodeType::kFile)
        return Errno(EINVAL, "cannot truncate a symlink or special file");
      KVFS_RETURN_IF_ERROR(s.CheckResize(n, *change.size));
      KVFS_RETURN_IF_ERROR(s.Resize(&n, *change.size, &batch, &trunc_after));
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
    if (trunc_after) {
      s.SetTruncatedFrom(id, trunc_after);
      s.WakeReclaimer();  // the chunks a shrink dropped
    }
    attr = AttrOf(l);
  }
  KVFS_RETURN_IF_ERROR(s.SyncIfOwed());
  return attr;
}

Result<Attr> FileStore::Impl::MakeNode(uint64_t parent, std::string_view name, const NewNode& what,
                                       const Caller& caller) {
  Impl& s = *this;
  KVFS_RETURN_IF_ERROR(ValidateName(name));
  Attr attr;
  {
    MutexLock ns(&s.ns_mu);
    KVFS_RETURN_IF_ERROR(s.CheckWritable());
    if (s.IsReservedName(parent, name)) return Errno(EEXIST, "reserved for the event view");
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
    n.rdev = what.rdev;
    n.atime_ns = n.mtime_ns = n.ctime_ns = now;
    n.nlink = what.type == NodeType::kDirectory ? 2 : 1;
    batch.Put(NodeKey(path), EncodeNode(n));
    if (what.type == NodeType::kDirectory) ++dir.node.nlink;  // the new directory's ".."
    s.Touch(&dir, now);
    s.PutNode(dir, &batch);
    KVFS_RETURN_IF_ERROR(s.ApplyBatch(batch));
    s.AddRef(n.id, path);
    attr = AttrOf(n);
  }
  KVFS_RETURN_IF_ERROR(s.SyncIfOwed());
  return attr;
}

Result<Attr> FileStore::Create(uint64_t parent, std::string_view name, uint32_t mode,
                               const Caller& caller) {
  impl_->Count(&FileStoreStats::creates);
  return impl_->MakeNode(parent, name, {NodeType::kFile, mode, {}, 0}, caller);
}

Result<Attr> FileStore::Mkdir(uint64_t parent, std::string_view name, uint32_t mode,
                              const Caller& caller) {
  impl_->Count(&FileStoreStats::mkdirs);
  return impl_->MakeNode(parent, name, {NodeType::kDirectory, mode, {}, 0}, caller);
}

Result<Attr> FileStore::Symlink(uint64_t parent, std::string_view name, std::string_view target,
                                const Caller& caller) {
  impl_->Count(&FileStoreStats::symlinks);
  if (target.empty()) return Errno(ENOENT, "empty symlink target");
  if (target.size() > kMaxSymlinkLength) return Errno(ENAMETOOLONG, "symlink target too long");
  return impl_->MakeNode(parent, name, {NodeType::kSymlink, 0777, target, 0}, caller);
}

Result<Attr> FileStore::Mknod(uint64_t parent, std::string_view name, NodeType type, uint32_t mode,
                              uint64_t rdev, const Caller& caller) {
  if (type == NodeType::kFile) return Create(parent, name, mode, caller);
  if (!IsSpecial(type)) return Errno(EINVAL, "mknod of a directory or symlink");
  impl_->Count(&FileStoreStats::creates);
  const bool device = type == NodeType::kCharDevice || type == NodeType::kBlockDevice;
  return impl_->MakeNode(parent, name, {type, mode, {}, device ? rdev : 0}, caller);
}

Result<Attr> FileStore::Link(uint64_t id, uint64_t new_parent, std::string_view new_name) {
  Impl& s = *impl_;
  s.Count(&FileStoreStats::links);
  KVFS_RETURN_IF_ERROR(ValidateName(new_name));
  Attr attr;
  {
    MutexLock ns(&s.ns_mu);
    KVFS_RETURN_IF_ERROR(s.CheckWritable());
    if (s.IsReservedName(new_parent, new_name)) return Errno(EEXIST, "reserved for the event view");
    KVFS_ASSIGN_OR_RETURN(Loaded l, s.Load(id));
    if (l.orphan) return Errno(ENOENT, "the file has no name left");
    if (l.node.type == NodeType::kDirectory) return Errno(EPERM, "hard link to a directory");
    // As ext4 refuses link(2) to an append-only file: a stream has one name.
    if (s.events != nullptr && l.node.type == NodeType::kFile) {
      return Errno(EPERM, "an append-only stream cannot take a second name");
    }
    KVFS_ASSIGN_OR_RETURN(Loaded dir, s.LoadDir(new_parent));
    const std::string path = JoinPath(dir.path, new_name);
    if (path.size() > kMaxPathLength) return Errno(ENAMETOOLONG, "path too long: " + path);
    auto existing = s.engine->Get(NodeKey(path));
    if (existing.ok()) return Errno(EEXIST, "exists: " + path);
    if (!existing.status().IsNotFound()) return existing.status();
    if (l.node.nlink >= kMaxLinks) {
      return Errno(EMLINK, "already " + std::to_string(kMaxLinks) + " names");
    }
    const int64_t now = NowNs();
    engines::WriteBatch batch;
    Node& n = l.node;
    if (!n.linked) {
      // Its second name: the record becomes the shared record, the first name a stub to it.
      n.linked = true;
      batch.Put(NodeKey(l.path), EncodeLinkStub(n));
    }
    ++n.nlink;
    n.ctime_ns = now;
    batch.Put(SharedKey(n.id), EncodeShared(n));
    batch.Put(NodeKey(path), EncodeLinkStub(n));
    s.Touch(&dir, now);
    s.PutNode(dir, &batch);
    KVFS_RETURN_IF_ERROR(s.ApplyBatch(batch));
    s.AddRef(id, path);
    attr = AttrOf(n);
  }
  KVFS_RETURN_IF_ERROR(s.SyncIfOwed());
  return attr;
}

Result<std::string> FileStore::ReadLink(uint64_t id) {
  Impl& s = *impl_;
  ReaderMutexLock ns(&s.ns_mu);
  KVFS_ASSIGN_OR_RETURN(Loaded l, s.Load(id));
  if (l.node.type != NodeType::kSymlink) return Errno(EINVAL, "not a symlink");
  return l.node.inline_data;
}

Status FileStore::Impl::RemoveEntry(uint64_t parent, std::string_view name, RemoveKind kind) {
  Impl& s = *this;
  KVFS_RETURN_IF_ERROR(ValidateName(name));
  bool wake = false;
  {
    MutexLock ns(&s.ns_mu);
    KVFS_RETURN_IF_ERROR(s.CheckWritable());
    if (s.IsReservedName(parent, name)) return Errno(EPERM, "reserved for the event view");
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
    const int64_t now = NowNs();
    engines::WriteBatch batch;
    bool dropped = false;
    KVFS_RETURN_IF_ERROR(s.RemoveName(path, &*node, now, &batch, &dropped));
    if (is_dir) --dir.node.nlink;
    s.Touch(&dir, now);
    s.PutNode(dir, &batch);
    Status applied = s.ApplyBatch(batch);
    if (!applied.ok()) {
      if (dropped) s.Undrop(node->id);
      return applied;
    }
    wake = dropped;  // a purge record, if the file held keys
  }
  Status synced = s.SyncIfOwed();
  // After our sync: the reclaimer's first batch does not race this one's acknowledgement.
  if (wake && synced.ok()) s.WakeReclaimer();
  return synced;
}

Status FileStore::Unlink(uint64_t parent, std::string_view name) {
  impl_->Count(&FileStoreStats::unlinks);
  return impl_->RemoveEntry(parent, name, RemoveKind::kUnlink);
}

Status FileStore::Rmdir(uint64_t parent, std::string_view name) {
  impl_->Count(&FileStoreStats::rmdirs);
  return impl_->RemoveEntry(parent, name, RemoveKind::kRmdir);
}

namespace {

// A node renamed to `to` (its ctime changed): its record there, or for a file with several
// names a stub there and its shared record updated.
void PutMoved(const Node& n, const std::string& to, internal::NodeRecords* puts,
              engines::WriteBatch* batch) {
  if (n.linked) {
    puts->emplace_back(NodeKey(to), EncodeLinkStub(n));
    batch->Put(SharedKey(n.id), EncodeShared(n));
  } else {
    puts->emplace_back(NodeKey(to), EncodeNode(n));
  }
}

}  // namespace

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
    MutexLock ns(&s.ns_mu);
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
    // One file under both names (hard links): rename(2) does nothing.
    if (from == to || (dst_exists && src->id == dst->id)) {
      return (flags & kRenameNoReplace) ? Errno(EEXIST, "exists: " + to) : Status::OK();
    }
    KVFS_RETURN_IF_ERROR(s.CheckRename(*src, dst_exists ? &*dst : nullptr, new_parent, new_name));
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
    // The descendants: up to kMoveBatch nodes move in this batch; more, after it, in bounded
    // batches behind a move record written in it (FinishMove).
    std::optional<MoveRecord> big;
    auto too_big = [&](internal::NodeRecords* a, internal::NodeRecords* b, bool exchange) {
      if (a->size() + b->size() <= kMoveBatch) return;
      big = MoveRecord{exchange, 0, from, to};
      a->clear();
      b->clear();
    };
    if (flags & kRenameExchange) {
      if (!dst_exists) return Errno(ENOENT, "no such entry: " + to);
      if (dst_dir && inside(from, to)) return Errno(EINVAL, "cannot move " + to + " into itself");
      std::vector<std::pair<std::string, std::string>> src_tree, dst_tree;
      if (src_dir) KVFS_RETURN_IF_ERROR(s.CollectSubtree(from, &src_tree, kMoveBatch + 1));
      if (dst_dir) KVFS_RETURN_IF_ERROR(s.CollectSubtree(to, &dst_tree, kMoveBatch + 1));
      too_big(&src_tree, &dst_tree, /*exchange=*/true);
      KVFS_RETURN_IF_ERROR(s.MoveSubtree(src_tree, from, to, &puts, &batch));
      KVFS_RETURN_IF_ERROR(s.MoveSubtree(dst_tree, to, from, &puts, &batch));
      Node a = *src, b = *dst;
      a.ctime_ns = b.ctime_ns = now;
      PutMoved(a, to, &puts, &batch);
      PutMoved(b, from, &puts, &batch);
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
      std::vector<std::pair<std::string, std::string>> tree, none;
      if (src_dir) KVFS_RETURN_IF_ERROR(s.CollectSubtree(from, &tree, kMoveBatch + 1));
      too_big(&tree, &none, /*exchange=*/false);
      KVFS_RETURN_IF_ERROR(s.MoveSubtree(tree, from, to, &puts, &batch));
      batch.Delete(NodeKey(from));
      if (dst_exists) {
        bool gone = false;
        KVFS_RETURN_IF_ERROR(s.RemoveName(to, &*dst, now, &batch, &gone));
        if (gone) dropped = dst->id;
      }
      Node a = *src;
      a.ctime_ns = now;
      PutMoved(a, to, &puts, &batch);
      s.RenameInTable(from, to, &moved);
    }
    for (const auto& [k, v] : puts) batch.Put(k, v);
    if (big) batch.Put(kMoveKey, EncodeMove(*big));
    // The parents' times and link counts (a directory's ".." names its parent): a directory
    // moved from one to the other, and the empty directory a rename replaced, gone. When both
    // are one directory, one node.
    const int moved_to = src_dir ? 1 : 0;
    const int moved_back = (flags & kRenameExchange) && dst_dir ? 1 : 0;
    const int replaced = !(flags & kRenameExchange) && dst_dir ? 1 : 0;
    s.Touch(&from_dir, now);
    if (from_dir.node.id == to_dir.node.id) {
      from_dir.node.nlink -= replaced;
      s.PutNode(from_dir, &batch);
    } else {
      from_dir.node.nlink = from_dir.node.nlink - moved_to + moved_back;
      to_dir.node.nlink = to_dir.node.nlink + moved_to - moved_back - replaced;
      s.Touch(&to_dir, now);
      s.PutNode(from_dir, &batch);
      s.PutNode(to_dir, &batch);
    }
    Status applied = s.ApplyBatch(batch);
    if (!applied.ok()) {
      if (dropped) s.Undrop(*dropped);
      return applied;
    }
    if (dropped) s.WakeReclaimer();  // a purge record, if the replaced file held keys
    s.ApplyTableMoves(moved);
    if (big) {
      // Under the namespace lock throughout: nobody sees the tree half-moved. Should a batch
      // fail, the engine holds it so until a writable open finishes the move from the record;
      // meanwhile every operation answers EIO rather than show it.
      Status finished = s.FinishMove(*big);
      if (!finished.ok()) {
        s.move_error =
            Errno(EIO, "the rename of /" + from + " to /" + to + " stopped half-way (" +
                           finished.ToString() + "): mount the store again to finish it");
        return s.move_error;
      }
    }
  }
  return s.SyncIfOwed();
}

Status FileStore::ReadDir(uint64_t id, std::string_view after, bool plus,
                          const std::function<bool(const DirEntry&)>& fn) {
  Impl& s = *impl_;
  s.Count(&FileStoreStats::readdirs);
  ReaderMutexLock ns(&s.ns_mu);
  if (s.IsViewId(id)) return s.view->ReadDir(id, after, plus, fn);
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
    Status full = s.FollowStub(key, &*node);
    if (full.ok()) full = s.CountLinks(JoinPath(dir.path, e.name), &*node);
    if (!full.ok()) {
      inner = full;
      return false;
    }
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
  ReaderMutexLock ns(&s.ns_mu);
  internal::InodeLocks::Hold inode(&s.inode_locks, id, /*exclusive=*/false);
  if (s.IsViewId(id)) return s.view->Read(id, offset, size);
  KVFS_ASSIGN_OR_RETURN(Loaded l, s.Load(id));
  if (l.node.type == NodeType::kDirectory) return Errno(EISDIR, "is a directory");
  if (l.node.type != NodeType::kFile) return Errno(EINVAL, "not a regular file");
  auto data = s.ReadData(l.node, offset, size);
  if (data.ok()) {
    MutexLock stats_lock(&s.stats_mu);
    s.stats.reads++;
    s.stats.read_bytes += data->size();
  }
  return data;
}

Result<size_t> FileStore::Write(uint64_t id, uint64_t offset, std::string_view data) {
  Impl& s = *impl_;
  if (s.events != nullptr) return s.WriteEvent(id, offset, data);
  {
    ReaderMutexLock ns(&s.ns_mu);
    internal::InodeLocks::Hold inode(&s.inode_locks, id, /*exclusive=*/true);
    KVFS_RETURN_IF_ERROR(s.CheckWritable());
    KVFS_ASSIGN_OR_RETURN(Loaded l, s.Load(id));
    if (l.node.type == NodeType::kDirectory) return Errno(EISDIR, "is a directory");
    if (l.node.type != NodeType::kFile) return Errno(EINVAL, "not a regular file");
    engines::WriteBatch batch;
    std::optional<uint64_t> trunc_after;
    KVFS_RETURN_IF_ERROR(s.WriteData(&l.node, offset, data, &batch, &trunc_after));
    const int64_t now = NowNs();
    l.node.mtime_ns = l.node.ctime_ns = now;
    s.PutNode(l, &batch);
    if (l.orphan && !l.node.data_inline) {
      Node record = l.node;
      record.inline_data.clear();
      batch.Put(OrphanKey(l.node.id), EncodeNode(record));
    }
    if (!batch.empty()) KVFS_RETURN_IF_ERROR(s.ApplyBatch(batch));
    if (trunc_after) s.SetTruncatedFrom(id, trunc_after);
  }
  {
    MutexLock stats_lock(&s.stats_mu);
    s.stats.writes++;
    s.stats.write_bytes += data.size();
  }
  KVFS_RETURN_IF_ERROR(s.SyncIfOwed());
  return data.size();
}

Status FileStore::Allocate(uint64_t id, const Allocation& a) {
  Impl& s = *impl_;
  if (a.length == 0) return Errno(EINVAL, "fallocate of 0 bytes");
  const uint64_t end = a.offset + a.length;
  if (end < a.offset || end > kMaxFileSize) {
    if (!a.keep_size) return Errno(EFBIG, "past the largest file size");
  }
  {
    ReaderMutexLock ns(&s.ns_mu);
    internal::InodeLocks::Hold inode(&s.inode_locks, id, /*exclusive=*/true);
    KVFS_RETURN_IF_ERROR(s.CheckWritable());
    KVFS_ASSIGN_OR_RETURN(Loaded l, s.Load(id));
    Node& n = l.node;
    if (n.type == NodeType::kDirectory) return Errno(EISDIR, "is a directory");
    if (n.type != NodeType::kFile) return Errno(ENODEV, "not a regular file");
    const int64_t now = NowNs();
    engines::WriteBatch batch;
    std::optional<uint64_t> trunc_after;
    if (a.kind != Allocation::Kind::kReserve && a.offset < n.size) {
      KVFS_RETURN_IF_ERROR(s.ZeroRange(&n, a.offset, std::min(end, n.size), &batch));
    }
    if (a.kind != Allocation::Kind::kPunchHole && !a.keep_size && end > n.size) {
      KVFS_RETURN_IF_ERROR(s.Resize(&n, std::min(end, kMaxFileSize), &batch, &trunc_after));
    }
    n.mtime_ns = n.ctime_ns = now;  // every mode, as ext4
    s.PutNode(l, &batch);
    if (l.orphan && !n.data_inline) {
      Node record = n;
      record.inline_data.clear();
      batch.Put(OrphanKey(n.id), EncodeNode(record));
    }
    if (!batch.empty()) KVFS_RETURN_IF_ERROR(s.ApplyBatch(batch));
    if (trunc_after) s.SetTruncatedFrom(id, trunc_after);
  }
  return s.SyncIfOwed();
}

Result<uint64_t> FileStore::Seek(uint64_t id, uint64_t offset, bool data) {
  Impl& s = *impl_;
  ReaderMutexLock ns(&s.ns_mu);
  internal::InodeLocks::Hold inode(&s.inode_locks, id, /*exclusive=*/false);
  KVFS_ASSIGN_OR_RETURN(Loaded l, s.Load(id));
  const Node& n = l.node;
  if (n.type == NodeType::kDirectory) return Errno(EISDIR, "is a directory");
  if (n.type != NodeType::kFile) return Errno(EINVAL, "not a regular file");
  if (offset >= n.size) return Errno(ENXIO, "offset at or past the end of the file");
  const uint64_t count = (n.size + kChunkSize - 1) / kChunkSize;
  if (n.data_inline || n.chunks == count) return data ? offset : n.size;  // no holes
  // The chunk keys from the offset's chunk on, in order, until the answer is known.
  const uint64_t first = offset / kChunkSize;
  uint64_t expected = first;  // SEEK_HOLE: the next chunk that must be there for data to go on
  // Chunks at or past a pending truncate's first chunk are garbage: holes.
  const uint64_t garbage = s.TruncatedFrom(n.id).value_or(UINT64_MAX);
  std::optional<uint64_t> found;
  Status bad;
  engines::ScanOptions so;
  so.prefix = ChunkPrefix(n.id);
  so.keys_only = true;
  if (first > 0) so.start_after = ChunkKey(n.id, first - 1);
  KVFS_RETURN_IF_ERROR(s.engine->Scan(so, [&](std::string_view key, std::string_view) {
    auto chunk = DecodeU64(key.substr(so.prefix.size()), key);
    if (!chunk.ok()) {
      bad = chunk.status();
      return false;
    }
    if (*chunk >= garbage) return false;
    if (data) {
      found = *chunk;
      return false;
    }
    if (*chunk != expected) return false;  // a gap: the hole starts at `expected`
    ++expected;
    return true;
  }));
  KVFS_RETURN_IF_ERROR(bad);
  if (data) {
    if (!found || *found * kChunkSize >= n.size) return Errno(ENXIO, "no data after the offset");
    return std::max(offset, *found * kChunkSize);
  }
  return std::min(n.size, std::max(offset, expected * kChunkSize));
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
    MutexLock lock(&impl_->stats_mu);
    out = impl_->stats;
  }
  MutexLock lock(&impl_->table_mu);
  out.known_nodes = impl_->known.size();
  out.orphans = 0;
  for (const auto& [id, k] : impl_->known) out.orphans += k.orphan ? 1 : 0;
  return out;
}

Status FileStore::WaitForPurges() { return impl_->WaitForPurges(); }

Status FileStore::Close() {
  Impl& s = *impl_;
  s.StopReclaimer();
  Status synced = s.SyncEngine(engines::SyncKind::kFull);
  Status closed = s.engine->Close();
  KVFS_RETURN_IF_ERROR(synced);
  return closed;
}

}  // namespace kvfs::fusefs
