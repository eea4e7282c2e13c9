// Filesystem's work: each FUSE request decoded into plain arguments, answered with a Status.
#define FUSE_USE_VERSION 314
#include "fusefs/filesystem.h"

#include <fuse3/fuse_lowlevel.h>  // FUSE_SET_ATTR_*
#include <linux/falloc.h>         // FALLOC_FL_*
#include <linux/fs.h>             // RENAME_NOREPLACE, RENAME_EXCHANGE
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <utility>

#include "fusefs/event_view.h"
#include "fusefs/time_ns.h"
#include "sync/file_system.h"

namespace kvfs::fusefs {
namespace {

Status Err(int err, std::string msg) { return Status(StatusCode::kIOError, std::move(msg), err); }

mode_t TypeBits(NodeType type) {
  switch (type) {
    case NodeType::kFile:
      return S_IFREG;
    case NodeType::kDirectory:
      return S_IFDIR;
    case NodeType::kSymlink:
      return S_IFLNK;
    case NodeType::kFifo:
      return S_IFIFO;
    case NodeType::kCharDevice:
      return S_IFCHR;
    case NodeType::kBlockDevice:
      return S_IFBLK;
    case NodeType::kSocket:
      return S_IFSOCK;
  }
  return S_IFREG;
}

struct stat StatOf(const Attr& a, uint64_t ino) {
  struct stat st = {};
  st.st_ino = ino;
  st.st_mode = TypeBits(a.type) | (a.mode & 07777);
  st.st_nlink = a.nlink;
  st.st_uid = a.uid;
  st.st_gid = a.gid;
  st.st_size = static_cast<off_t>(a.size);
  st.st_rdev = static_cast<dev_t>(a.rdev);
  st.st_blksize = static_cast<blksize_t>(kPreferredIoSize);  // stdio and cp size their I/O by it
  st.st_blocks = static_cast<blkcnt_t>(a.blocks);
  st.st_atim = ToTimespec(a.atime_ns);
  st.st_mtim = ToTimespec(a.mtime_ns);
  st.st_ctim = ToTimespec(a.ctime_ns);
  return st;
}

}  // namespace

struct Filesystem::Target {
  InodeKind kind = InodeKind::kInvalid;
  size_t store = 0;
  uint64_t id = 0;
  FileStore* files = nullptr;  // kStore
};

namespace {

// A mount that serves an events store answers OPEN: its stream files are opened with
// direct_io, so that one write(2) reaches the daemon as one write (through the page cache the
// kernel splits a write at the first partial page it does not hold). The kernel's no_open is
// per connection: one ENOSYS and it never asks again, for any file.
FsOptions ForStores(FsOptions options, const std::vector<Store>& stores) {
  for (const Store& s : stores) {
    if (s.files != nullptr && engines::AsEventStore(s.files->engine()) != nullptr) {
      options.no_open = false;
    }
  }
  return options;
}

}  // namespace

Filesystem::Filesystem(std::vector<Store> stores, config::Config config, FsOptions options)
    : stores_(std::move(stores)),
      config_(std::move(config)),
      options_(ForStores(std::move(options), stores_)),
      inodes_(options_.single_store),
      started_ns_(NowNs()),
      uid_(::geteuid()),
      gid_(::getegid()),
      control_(
          config::ToToml(config_, config::Secrets::kRedact), [this] { return CollectStats(); },
          uid_, gid_, options_.public_control, started_ns_) {}

Filesystem::~Filesystem() { Shutdown().PermitUnchecked(); }

Result<size_t> Filesystem::WatchStores(Invalidation inval) {
  auto shared = std::make_shared<Invalidation>(std::move(inval));
  size_t watched = 0;
  for (size_t i = 0; i < stores_.size(); ++i) {
    const InodeMap map = inodes_;
    Status s = stores_[i].files->WatchChanges([shared, map, i](const TreeChanges& changes) {
      // Nodes first: once a name is seen gone, what its node held is dropped too.
      for (const TreeChanges::Data& d : changes.nodes) {
        const uint64_t ino = map.StoreIno(i, d.id);
        if (ino != 0) shared->inode(ino, d.offset, d.length);
      }
      for (const TreeChanges::Name& n : changes.names) {
        const uint64_t parent = map.StoreIno(i, n.parent);
        if (parent != 0) shared->entry(parent, n.name);
      }
    });
    if (s.code() == StatusCode::kNotSupported) continue;
    if (!s.ok()) return s.WithContext("store " + stores_[i].config.name);
    ++watched;
  }
  return watched;
}

Status Filesystem::Shutdown() {
  std::lock_guard lock(shutdown_mu_);
  if (shut_down_) return shutdown_status_;
  shut_down_ = true;
  closed_.store(true);
  shutdown_status_ = CloseStores(&stores_);
  return shutdown_status_;
}

Result<Filesystem::Target> Filesystem::Resolve(uint64_t ino) const {
  if (closed_.load(std::memory_order_relaxed)) return Err(EIO, "the stores are closed");
  const InodeRef r = inodes_.Decode(ino);
  Target t;
  t.kind = r.kind;
  t.id = r.id;
  switch (r.kind) {
    case InodeKind::kMountRoot:
      return t;
    case InodeKind::kVirtual:
      if (!ControlFiles::IsNode(r.id)) break;
      return t;
    case InodeKind::kStore:
      if (r.store >= stores_.size()) break;
      t.store = r.store;
      t.files = stores_[r.store].files.get();
      return t;
    case InodeKind::kInvalid:
      break;
  }
  return Err(ESTALE, "unknown inode " + std::to_string(ino));
}

bool Filesystem::IsReservedName(uint64_t parent, std::string_view name) const {
  return inodes_.single_store() && parent == kMountRootIno && name == kControlDirName;
}

Result<Entry> Filesystem::StoreEntry(size_t store, const Attr& attr) const {
  Entry e;
  e.ino = inodes_.StoreIno(store, attr.id);
  if (e.ino == 0) return Err(EOVERFLOW, "file id " + std::to_string(attr.id) + " too large");
  e.attr = StatOf(attr, e.ino);
  // An events store's view (event_view.h) changes with every append: never cached.
  const bool view = EventView::IsViewId(attr.id);
  e.entry_timeout = view ? 0 : options_.timeout_s;
  e.attr_timeout = view ? 0 : options_.timeout_s;
  return e;
}

struct stat Filesystem::MountRootAttr() const {
  struct stat st = {};
  st.st_ino = kMountRootIno;
  st.st_mode = S_IFDIR | 0755;
  st.st_nlink = 2 + stores_.size();  // each store is a subdirectory (/.kvfs is hidden)
  st.st_uid = uid_;
  st.st_gid = gid_;
  st.st_blksize = 4096;
  st.st_atim = st.st_mtim = st.st_ctim = ToTimespec(started_ns_);
  return st;
}

Result<Entry> Filesystem::VirtualEntry(uint64_t node) {
  Entry e;
  e.ino = InodeMap::VirtualIno(node);
  if (ControlFiles::IsLive(node)) {
    control_.Content(node, /*refresh=*/true);
    e.entry_timeout = 0;  // every path walk looks it up again: a fresh snapshot per open
    e.attr_timeout = 0;
  } else {
    e.entry_timeout = options_.timeout_s;
    e.attr_timeout = options_.timeout_s;
  }
  e.attr = control_.Attr(node);
  return e;
}

Result<Entry> Filesystem::Lookup(uint64_t parent, std::string_view name) {
  KVFS_ASSIGN_OR_RETURN(Target p, Resolve(parent));
  switch (p.kind) {
    case InodeKind::kMountRoot: {
      if (name == kControlDirName) return VirtualEntry(kControlDirNode);
      for (size_t i = 0; i < stores_.size(); ++i) {
        if (stores_[i].config.name != name) continue;
        KVFS_ASSIGN_OR_RETURN(Attr a, stores_[i].files->GetAttr(kRootId));
        return StoreEntry(i, a);
      }
      return Status::NotFound(std::string(name));
    }
    case InodeKind::kVirtual:
      if (p.id != kControlDirNode) return Err(ENOTDIR, "not a directory");
      if (const uint64_t node = ControlFiles::NodeNamed(name); node != 0) {
        return VirtualEntry(node);
      }
      return Status::NotFound(std::string(name));
    case InodeKind::kStore: {
      if (IsReservedName(parent, name)) return VirtualEntry(kControlDirNode);
      KVFS_ASSIGN_OR_RETURN(Attr a, p.files->Lookup(p.id, name));
      auto e = StoreEntry(p.store, a);
      if (!e.ok()) p.files->Forget(a.id, 1);
      return e;
    }
    case InodeKind::kInvalid:
      break;
  }
  return Err(ESTALE, "stale inode");
}

void Filesystem::Forget(uint64_t ino, uint64_t nlookup) {
  auto t = Resolve(ino);
  if (!t.ok() || t->kind != InodeKind::kStore) return;
  if (t->id == kRootId) return;  // store roots are pinned; their references are not counted
  t->files->Forget(t->id, nlookup);
}

Result<struct stat> Filesystem::GetAttr(uint64_t ino) {
  KVFS_ASSIGN_OR_RETURN(Target t, Resolve(ino));
  switch (t.kind) {
    case InodeKind::kMountRoot:
      return MountRootAttr();
    case InodeKind::kVirtual:
      return control_.Attr(t.id);
    case InodeKind::kStore: {
      KVFS_ASSIGN_OR_RETURN(Attr a, t.files->GetAttr(t.id));
      return StatOf(a, ino);
    }
    case InodeKind::kInvalid:
      break;
  }
  return Err(ESTALE, "stale inode");
}

double Filesystem::AttrTimeout(uint64_t ino) const {
  const InodeRef r = inodes_.Decode(ino);
  if (r.kind == InodeKind::kStore && EventView::IsViewId(r.id)) return 0;
  return r.kind == InodeKind::kVirtual && ControlFiles::IsLive(r.id) ? 0 : options_.timeout_s;
}

double Filesystem::NegativeTimeout(uint64_t parent) const {
  const InodeRef r = inodes_.Decode(parent);
  return r.kind == InodeKind::kStore && EventView::IsViewId(r.id) ? 0 : options_.timeout_s;
}

Result<struct stat> Filesystem::SetAttr(uint64_t ino, const struct stat& attr, int to_set) {
  KVFS_ASSIGN_OR_RETURN(Target t, Resolve(ino));
  if (t.kind != InodeKind::kStore) return Err(EPERM, "virtual node");
  AttrChange c;
  if (to_set & FUSE_SET_ATTR_MODE) c.mode = attr.st_mode & 07777;
  if (to_set & FUSE_SET_ATTR_UID) c.uid = attr.st_uid;
  if (to_set & FUSE_SET_ATTR_GID) c.gid = attr.st_gid;
  if (to_set & FUSE_SET_ATTR_SIZE) {
    if (attr.st_size < 0) return Err(EINVAL, "negative size");
    c.size = static_cast<uint64_t>(attr.st_size);
  }
  if (to_set & FUSE_SET_ATTR_ATIME_NOW) {
    c.atime_ns = AttrChange::kNow;
  } else if (to_set & FUSE_SET_ATTR_ATIME) {
    c.atime_ns = FromTimespec(attr.st_atim);
  }
  if (to_set & FUSE_SET_ATTR_MTIME_NOW) {
    c.mtime_ns = AttrChange::kNow;
  } else if (to_set & FUSE_SET_ATTR_MTIME) {
    c.mtime_ns = FromTimespec(attr.st_mtim);
  }
  KVFS_ASSIGN_OR_RETURN(Attr a, t.files->SetAttr(t.id, c));
  return StatOf(a, ino);
}

Result<std::string> Filesystem::ReadLink(uint64_t ino) {
  KVFS_ASSIGN_OR_RETURN(Target t, Resolve(ino));
  if (t.kind != InodeKind::kStore) return Err(EINVAL, "not a symlink");
  return t.files->ReadLink(t.id);
}

Result<Filesystem::Target> Filesystem::ResolveStoreDir(uint64_t parent,
                                                       std::string_view name) const {
  KVFS_ASSIGN_OR_RETURN(Target p, Resolve(parent));
  if (p.kind == InodeKind::kMountRoot) {
    for (const Store& s : stores_) {
      if (s.config.name == name) return Err(EEXIST, std::string(name) + " exists");
    }
    if (name == kControlDirName) return Err(EEXIST, std::string(name) + " exists");
    return Err(EPERM, "the mount's root holds only the configured stores");
  }
  if (p.kind != InodeKind::kStore) return Err(EPERM, "the control directory is read-only");
  if (IsReservedName(parent, name)) return Err(EEXIST, std::string(name) + " is reserved");
  return p;
}

Result<Entry> Filesystem::MakeNode(uint64_t parent, std::string_view name, mode_t mode,
                                   uint64_t rdev, const Caller& caller) {
  NodeType type;
  switch (mode & S_IFMT) {
    case 0:  // mknod(2): a regular file
    case S_IFREG:
      type = NodeType::kFile;
      break;
    case S_IFIFO:
      type = NodeType::kFifo;
      break;
    case S_IFCHR:
      type = NodeType::kCharDevice;
      break;
    case S_IFBLK:
      type = NodeType::kBlockDevice;
      break;
    case S_IFSOCK:
      type = NodeType::kSocket;
      break;
    default:  // the kernel answers these itself (EPERM for S_IFDIR, EINVAL for the rest)
      return Err(EINVAL, "mknod of file type " + std::to_string(mode & S_IFMT));
  }
  KVFS_ASSIGN_OR_RETURN(Target p, ResolveStoreDir(parent, name));
  KVFS_ASSIGN_OR_RETURN(Attr a, p.files->Mknod(p.id, name, type, mode & 07777, rdev, caller));
  return StoreEntry(p.store, a);
}

Result<Entry> Filesystem::Mkdir(uint64_t parent, std::string_view name, mode_t mode,
                                const Caller& caller) {
  KVFS_ASSIGN_OR_RETURN(Target p, ResolveStoreDir(parent, name));
  KVFS_ASSIGN_OR_RETURN(Attr a, p.files->Mkdir(p.id, name, mode & 07777, caller));
  return StoreEntry(p.store, a);
}

Result<Entry> Filesystem::Symlink(uint64_t parent, std::string_view name, std::string_view target,
                                  const Caller& caller) {
  KVFS_ASSIGN_OR_RETURN(Target p, ResolveStoreDir(parent, name));
  KVFS_ASSIGN_OR_RETURN(Attr a, p.files->Symlink(p.id, name, target, caller));
  return StoreEntry(p.store, a);
}

Result<Entry> Filesystem::Create(uint64_t parent, std::string_view name, mode_t mode, int flags,
                                 const Caller& caller) {
  KVFS_ASSIGN_OR_RETURN(Target p, ResolveStoreDir(parent, name));
  auto created = p.files->Create(p.id, name, mode & 07777, caller);
  if (created.ok()) return StoreEntry(p.store, *created);
  if (ErrnoOf(created.status()) != EEXIST || (flags & O_EXCL)) return created.status();
  // Created by someone else since the kernel's lookup: open it, as open(2) would.
  KVFS_ASSIGN_OR_RETURN(Attr a, p.files->Lookup(p.id, name));
  if (a.type == NodeType::kDirectory) {
    p.files->Forget(a.id, 1);
    return Err(EISDIR, std::string(name) + " is a directory");
  }
  if (flags & O_TRUNC) {
    AttrChange c;
    c.size = 0;
    auto truncated = p.files->SetAttr(a.id, c);
    if (!truncated.ok()) {
      p.files->Forget(a.id, 1);
      return truncated.status();
    }
    a = *truncated;
  }
  return StoreEntry(p.store, a);
}

Result<Entry> Filesystem::Link(uint64_t ino, uint64_t new_parent, std::string_view new_name) {
  KVFS_ASSIGN_OR_RETURN(Target t, Resolve(ino));
  if (t.kind != InodeKind::kStore) return Err(EPERM, "a virtual node");
  KVFS_ASSIGN_OR_RETURN(Target p, Resolve(new_parent));
  if (p.kind != InodeKind::kStore || p.store != t.store) {
    return Err(EXDEV, "a hard link across stores or into the mount's root");
  }
  KVFS_ASSIGN_OR_RETURN(Target checked, ResolveStoreDir(new_parent, new_name));
  KVFS_ASSIGN_OR_RETURN(Attr a, t.files->Link(t.id, checked.id, new_name));
  return StoreEntry(t.store, a);
}

Status Filesystem::Unlink(uint64_t parent, std::string_view name) {
  KVFS_ASSIGN_OR_RETURN(Target p, Resolve(parent));
  if (p.kind != InodeKind::kStore || IsReservedName(parent, name)) {
    return Err(EPERM, "virtual node");
  }
  return p.files->Unlink(p.id, name);
}

Status Filesystem::Rmdir(uint64_t parent, std::string_view name) {
  KVFS_ASSIGN_OR_RETURN(Target p, Resolve(parent));
  if (p.kind != InodeKind::kStore || IsReservedName(parent, name)) {
    return Err(p.kind == InodeKind::kMountRoot ? EBUSY : EPERM, "virtual node");
  }
  return p.files->Rmdir(p.id, name);
}

Status Filesystem::Rename(uint64_t parent, std::string_view name, uint64_t new_parent,
                          std::string_view new_name, unsigned flags) {
  unsigned fs_flags = 0;
  if (flags == RENAME_NOREPLACE) {
    fs_flags = FileStore::kRenameNoReplace;
  } else if (flags == RENAME_EXCHANGE) {
    fs_flags = FileStore::kRenameExchange;
  } else if (flags != 0) {
    return Err(EINVAL, "unsupported rename flags");
  }
  KVFS_ASSIGN_OR_RETURN(Target from, Resolve(parent));
  KVFS_ASSIGN_OR_RETURN(Target to, Resolve(new_parent));
  if (from.kind != InodeKind::kStore || to.kind != InodeKind::kStore || from.store != to.store) {
    return Err(EXDEV, "rename across stores or the control directory");
  }
  if (IsReservedName(parent, name) || IsReservedName(new_parent, new_name)) {
    return Err(EPERM, std::string(kControlDirName) + " is reserved");
  }
  return from.files->Rename(from.id, name, to.id, new_name, fs_flags);
}

Status Filesystem::Open(uint64_t ino, int flags, std::unique_ptr<OpenFile>* open_file) {
  KVFS_ASSIGN_OR_RETURN(Target t, Resolve(ino));
  if (t.kind == InodeKind::kVirtual) {
    if (t.id == kControlDirNode) return Err(EISDIR, "directory");
    if ((flags & O_ACCMODE) != O_RDONLY) return Err(EACCES, "read-only virtual file");
    auto f = std::make_unique<OpenFile>();
    f->snapshot = control_.Content(t.id, /*refresh=*/true);
    *open_file = std::move(f);
    return Status::OK();
  }
  if (t.kind != InodeKind::kStore) return Err(EISDIR, "directory");
  if (options_.no_open) return Err(ENOSYS, "no open needed");
  if (EventView::IsViewId(t.id) && (flags & O_ACCMODE) != O_RDONLY) {
    return Err(EROFS, "the event view is read-only");
  }
  *open_file = StreamOpenFile(ino);
  return Status::OK();
}

std::unique_ptr<OpenFile> Filesystem::StreamOpenFile(uint64_t ino) const {
  auto t = Resolve(ino);
  if (!t.ok() || t->kind != InodeKind::kStore || EventView::IsViewId(t->id) ||
      engines::AsEventStore(t->files->engine()) == nullptr) {
    return nullptr;
  }
  return std::make_unique<OpenFile>();  // no snapshot: served with direct_io, read from the store
}

Result<std::string> Filesystem::Read(uint64_t ino, uint64_t offset, size_t size,
                                     const OpenFile* open_file) {
  KVFS_ASSIGN_OR_RETURN(Target t, Resolve(ino));
  if (t.kind == InodeKind::kStore) return t.files->Read(t.id, offset, size);
  if (t.kind != InodeKind::kVirtual || t.id == kControlDirNode) return Err(EISDIR, "directory");
  const std::string content =
      open_file != nullptr ? open_file->snapshot : control_.Content(t.id, /*refresh=*/false);
  if (offset >= content.size()) return std::string();
  return content.substr(offset, size);
}

Result<size_t> Filesystem::Write(uint64_t ino, uint64_t offset, std::string_view data) {
  KVFS_ASSIGN_OR_RETURN(Target t, Resolve(ino));
  if (t.kind != InodeKind::kStore) return Err(EPERM, "read-only virtual file");
  return t.files->Write(t.id, offset, data);
}

Status Filesystem::Fallocate(uint64_t ino, int mode, uint64_t offset, uint64_t length) {
  KVFS_ASSIGN_OR_RETURN(Target t, Resolve(ino));
  if (t.kind != InodeKind::kStore) return Err(t.kind == InodeKind::kVirtual ? EPERM : EISDIR, "");
  Allocation a;
  a.offset = offset;
  a.length = length;
  a.keep_size = (mode & FALLOC_FL_KEEP_SIZE) != 0;
  switch (mode & ~FALLOC_FL_KEEP_SIZE) {
    case 0: {
      // Nothing is held ahead (every write goes to the log, wherever it lands), but a request
      // the disk cannot hold is refused now, as ext4 refuses it.
      KVFS_ASSIGN_OR_RETURN(sync::SpaceInfo space,
                            stores_[t.store].fs->GetSpaceInfo(stores_[t.store].config.data_dir));
      if (length > space.free_bytes) {
        return Err(ENOSPC, "fallocate of " + std::to_string(length) + " bytes, " +
                               std::to_string(space.free_bytes) + " free");
      }
      a.kind = Allocation::Kind::kReserve;
      break;
    }
    case FALLOC_FL_PUNCH_HOLE:
      if (!a.keep_size) return Err(EOPNOTSUPP, "PUNCH_HOLE without KEEP_SIZE");
      a.kind = Allocation::Kind::kPunchHole;
      break;
    case FALLOC_FL_ZERO_RANGE:
      a.kind = Allocation::Kind::kZeroRange;
      break;
    default:  // COLLAPSE_RANGE, INSERT_RANGE, UNSHARE_RANGE and mixtures
      return Err(EOPNOTSUPP, "fallocate mode " + std::to_string(mode));
  }
  return t.files->Allocate(t.id, a);
}

Result<uint64_t> Filesystem::Lseek(uint64_t ino, uint64_t offset, int whence) {
  if (whence != SEEK_DATA && whence != SEEK_HOLE) return Err(EINVAL, "unknown whence");
  KVFS_ASSIGN_OR_RETURN(Target t, Resolve(ino));
  if (t.kind == InodeKind::kStore) return t.files->Seek(t.id, offset, whence == SEEK_DATA);
  if (t.kind != InodeKind::kVirtual || t.id == kControlDirNode) return Err(EISDIR, "directory");
  // A control file: all data, no holes.
  const uint64_t size = static_cast<uint64_t>(control_.Attr(t.id).st_size);
  if (offset >= size) return Err(ENXIO, "past the end");
  return whence == SEEK_DATA ? offset : size;
}

Status Filesystem::Fsync(uint64_t ino, bool datasync) {
  KVFS_ASSIGN_OR_RETURN(Target t, Resolve(ino));
  if (t.kind != InodeKind::kStore) return Status::OK();
  return t.files->SyncFile(t.id, datasync);
}

Status Filesystem::FsyncDir(uint64_t ino) {
  KVFS_ASSIGN_OR_RETURN(Target t, Resolve(ino));
  if (t.kind == InodeKind::kStore) return t.files->SyncDir(t.id);
  // The mount root or the control directory: everything, in every store.
  Status first;
  for (Store& s : stores_) {
    Status st = s.files->SyncAll();
    if (!st.ok() && first.ok()) first = st;
  }
  return first;
}

Result<std::unique_ptr<DirHandle>> Filesystem::OpenDir(uint64_t ino) {
  KVFS_ASSIGN_OR_RETURN(struct stat st, GetAttr(ino));
  if (!S_ISDIR(st.st_mode)) return Err(ENOTDIR, "not a directory");
  auto d = std::make_unique<DirHandle>();
  d->ino = ino;
  return d;
}

Status Filesystem::ReadDir(DirHandle* dir, off_t offset, bool plus, const AddEntryFn& add) {
  KVFS_ASSIGN_OR_RETURN(Target t, Resolve(dir->ino));
  std::lock_guard lock(dir->mu);
  // "." and "..": inode numbers only (no lookup reference, as the kernel expects).
  if (offset < 1) {
    Entry dot;
    dot.attr.st_ino = dir->ino;
    dot.attr.st_mode = S_IFDIR;
    if (!add(".", dot, 1)) return Status::OK();
    offset = 1;
  }
  if (offset < 2) {
    Entry dotdot;
    dotdot.attr.st_ino = dir->ino;
    dotdot.attr.st_mode = S_IFDIR;
    if (!add("..", dotdot, 2)) return Status::OK();
    offset = 2;
  }
  if (t.kind == InodeKind::kStore) {
    std::string after;
    if (offset > 3) {
      auto it = dir->names.find(offset);
      if (it == dir->names.end()) return Err(EINVAL, "unknown directory offset");
      after = it->second;
    }
    Status inner;
    std::vector<uint64_t> shadowed;  // consumed but not listed: references to give back
    Status s = t.files->ReadDir(t.id, after, plus, [&](const DirEntry& de) {
      if (IsReservedName(dir->ino, de.name)) {  // shadowed by the control directory
        if (plus) shadowed.push_back(de.attr.id);
        return true;
      }
      Entry e;
      auto built = StoreEntry(t.store, de.attr);
      if (!built.ok()) {
        inner = built.status();
        return false;
      }
      e = *built;
      if (!plus) e.entry_timeout = e.attr_timeout = 0;
      const off_t next = dir->next_offset;
      if (!add(de.name, e, next)) return false;
      dir->names[next] = de.name;
      ++dir->next_offset;
      return true;
    });
    for (uint64_t id : shadowed) t.files->Forget(id, 1);
    KVFS_RETURN_IF_ERROR(s);
    return inner;
  }
  // Virtual directories: a fixed list; offset 3 + i follows entry i. The control directory is
  // hidden from the mount root's listing (reachable by name only).
  std::vector<std::pair<std::string, Entry>> entries;
  if (t.kind == InodeKind::kMountRoot) {
    for (size_t i = 0; i < stores_.size(); ++i) {
      KVFS_ASSIGN_OR_RETURN(Attr a, stores_[i].files->GetAttr(kRootId));
      KVFS_ASSIGN_OR_RETURN(Entry e, StoreEntry(i, a));
      entries.emplace_back(stores_[i].config.name, e);
    }
  } else if (t.id == kControlDirNode) {
    for (const ControlFile& f : ControlFiles::Files()) {
      Entry e;
      e.ino = InodeMap::VirtualIno(f.node);
      e.attr = control_.Attr(f.node);
      entries.emplace_back(f.name, e);
    }
  }
  for (size_t i = offset < 3 ? 0 : static_cast<size_t>(offset - 2); i < entries.size(); ++i) {
    if (!add(entries[i].first, entries[i].second, static_cast<off_t>(3 + i))) break;
  }
  return Status::OK();
}

Result<struct statvfs> Filesystem::StatFs(uint64_t ino) {
  KVFS_ASSIGN_OR_RETURN(Target t, Resolve(ino));
  const size_t store = t.kind == InodeKind::kStore ? t.store : 0;
  struct statvfs sv = {};
  sv.f_bsize = 4096;
  sv.f_frsize = 4096;
  sv.f_namemax = kMaxNameLength;
  if (!stores_.empty()) {
    KVFS_ASSIGN_OR_RETURN(sync::SpaceInfo space,
                          stores_[store].fs->GetSpaceInfo(stores_[store].config.data_dir));
    // What the data directory's file system has, as a passthrough would show it: df's used
    // space is blocks - bfree, its available space bavail.
    sv.f_blocks = space.total_bytes / sv.f_frsize;
    sv.f_bfree = std::max(space.unused_bytes, space.free_bytes) / sv.f_frsize;
    sv.f_bavail = space.free_bytes / sv.f_frsize;
  }
  // Nodes are keys: as many as the space holds. Report a large, stable count.
  sv.f_files = uint64_t{1} << 32;
  sv.f_ffree = sv.f_files - std::min<uint64_t>(sv.f_files, 1);
  sv.f_favail = sv.f_ffree;
  return sv;
}

namespace {

// The security.* and system.* namespaces are not kept: security labels and capabilities would
// be stored but never enforced here, and POSIX ACLs the kernel would not check (it checks the
// mode bits). EOPNOTSUPP, not ENODATA, says "this file system has none", which tools remember
// per file system: `ls -l` probes security.selinux and system.posix_acl_access of every file
// it lists, and with ENODATA each probe is a round trip to the daemon (docs/decisions.md,
// "Measured small choices").
bool UnsupportedXattr(std::string_view name) {
  return name.starts_with("security.") || name.starts_with("system.");
}

// OK for a name kvfs keeps: "user.<name>" or "trusted.<name>". Others are refused as a local
// file system's xattr code refuses them (fs/xattr.c, xattr_resolve_name): a namespace it does
// not keep is EOPNOTSUPP, a namespace with no name after it EINVAL. The kernel passes any name
// to FUSE, so this is the daemon's to say.
Status CheckXattrName(std::string_view name) {
  if (UnsupportedXattr(name)) return Err(EOPNOTSUPP, std::string(name) + ": not supported");
  for (const std::string_view prefix : {std::string_view("user."), std::string_view("trusted.")}) {
    if (!name.starts_with(prefix)) continue;
    if (name.size() == prefix.size()) return Err(EINVAL, std::string(name) + ": no name");
    return Status::OK();
  }
  return Err(EOPNOTSUPP, std::string(name) + ": not in the user or trusted namespace");
}

}  // namespace

Result<std::string> Filesystem::GetXattr(uint64_t ino, std::string_view name) {
  if (!options_.xattrs) return Err(ENOSYS, "xattrs are off (kvfs_noxattr)");
  KVFS_RETURN_IF_ERROR(CheckXattrName(name));
  KVFS_ASSIGN_OR_RETURN(Target t, Resolve(ino));
  if (t.kind != InodeKind::kStore) return Err(ENODATA, "no xattrs on virtual nodes");
  return t.files->GetXattr(t.id, name);
}

Result<std::string> Filesystem::ListXattr(uint64_t ino) {
  if (!options_.xattrs) return Err(ENOSYS, "xattrs are off (kvfs_noxattr)");
  KVFS_ASSIGN_OR_RETURN(Target t, Resolve(ino));
  if (t.kind != InodeKind::kStore) return std::string();
  KVFS_ASSIGN_OR_RETURN(std::vector<std::string> names, t.files->ListXattr(t.id));
  std::string out;
  for (const std::string& n : names) {
    out += n;
    out += '\0';
  }
  return out;
}

Status Filesystem::SetXattr(uint64_t ino, std::string_view name, std::string_view value,
                            int flags) {
  if (!options_.xattrs) return Err(ENOSYS, "xattrs are off (kvfs_noxattr)");
  KVFS_ASSIGN_OR_RETURN(Target t, Resolve(ino));
  if (t.kind != InodeKind::kStore) return Err(EPERM, "virtual node");
  // Refused rather than stored and ignored, so that tools like cp -a fall back to the mode bits.
  KVFS_RETURN_IF_ERROR(CheckXattrName(name));
  return t.files->SetXattr(t.id, name, value, flags);
}

Status Filesystem::RemoveXattr(uint64_t ino, std::string_view name) {
  if (!options_.xattrs) return Err(ENOSYS, "xattrs are off (kvfs_noxattr)");
  KVFS_RETURN_IF_ERROR(CheckXattrName(name));
  KVFS_ASSIGN_OR_RETURN(Target t, Resolve(ino));
  if (t.kind != InodeKind::kStore) return Err(EPERM, "virtual node");
  return t.files->RemoveXattr(t.id, name);
}

StatsSnapshot Filesystem::CollectStats() const {
  StatsSnapshot snapshot;
  snapshot.pid = ::getpid();
  snapshot.mountpoint = ValidUtf8(options_.mountpoint);
  snapshot.uptime_s = (NowNs() - started_ns_) / 1000000000;
  snapshot.single_store = options_.single_store;
  snapshot.no_open = options_.no_open;
  snapshot.writeback_cache = options_.writeback_cache;
  if (closed_.load()) return snapshot;
  for (const Store& s : stores_) {
    StoreStatsSnapshot store;
    store.name = ValidUtf8(s.config.name);
    store.engine = ValidUtf8(s.config.engine);
    store.data_dir = ValidUtf8(s.config.data_dir);
    store.sync = std::string(config::SyncModeName(s.config.sync));
    store.failed = s.files->failed();
    store.files = s.files->stats();
    store.engine_stats = s.files->engine()->stats();
    store.recovery = s.files->engine()->recovery();
    snapshot.stores.push_back(std::move(store));
  }
  return snapshot;
}

}  // namespace kvfs::fusefs
