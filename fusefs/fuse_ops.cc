// Filesystem's work (top half) and the libfuse adapter (bottom half).
#define FUSE_USE_VERSION 314
#include "fusefs/fuse_ops.h"

#include <fuse3/fuse_lowlevel.h>
#include <linux/fs.h>  // RENAME_NOREPLACE, RENAME_EXCHANGE
#include <spdlog/spdlog.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstring>
#include <utility>

#include "sync/file_system.h"

namespace kvfs::fusefs {
namespace {

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Status Err(int err, std::string msg) { return Status(StatusCode::kIOError, std::move(msg), err); }

struct timespec ToTimespec(int64_t ns) {
  struct timespec ts;
  int64_t sec = ns / 1000000000;
  int64_t rem = ns % 1000000000;
  if (rem < 0) {
    rem += 1000000000;
    --sec;
  }
  ts.tv_sec = static_cast<time_t>(sec);
  ts.tv_nsec = static_cast<long>(rem);
  return ts;
}

int64_t FromTimespec(const struct timespec& ts) {
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

mode_t TypeBits(NodeType type) {
  switch (type) {
    case NodeType::kFile:
      return S_IFREG;
    case NodeType::kDirectory:
      return S_IFDIR;
    case NodeType::kSymlink:
      return S_IFLNK;
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
  st.st_blksize = static_cast<blksize_t>(kPreferredIoSize);  // stdio and cp size their I/O by it
  st.st_blocks = static_cast<blkcnt_t>((a.size + 511) / 512);
  st.st_atim = ToTimespec(a.atime_ns);
  st.st_mtim = ToTimespec(a.mtime_ns);
  st.st_ctim = ToTimespec(a.ctime_ns);
  return st;
}

}  // namespace

std::string JsonQuote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (u < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", u);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  out += '"';
  return out;
}

// ---------------------------------------------------------------------------------------------
// Filesystem

struct Filesystem::Target {
  InodeKind kind = InodeKind::kInvalid;
  size_t store = 0;
  uint64_t id = 0;
  FileStore* files = nullptr;  // kStore
};

Filesystem::Filesystem(std::vector<Store> stores, config::Config config, FsOptions options)
    : stores_(std::move(stores)),
      config_(std::move(config)),
      options_(std::move(options)),
      inodes_(options_.single_store),
      config_toml_(config::ToToml(config_)),
      started_ns_(NowNs()),
      uid_(::geteuid()),
      gid_(::getegid()) {}

Filesystem::~Filesystem() { Shutdown().PermitUnchecked(); }

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
      if (r.id < kControlDirNode || r.id > kConfigNode) break;
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
  e.entry_timeout = options_.timeout_s;
  e.attr_timeout = options_.timeout_s;
  return e;
}

struct stat Filesystem::MountRootAttr() const {
  struct stat st = {};
  st.st_ino = kMountRootIno;
  st.st_mode = S_IFDIR | 0755;
  st.st_nlink = 1;
  st.st_uid = uid_;
  st.st_gid = gid_;
  st.st_blksize = 4096;
  st.st_atim = st.st_mtim = st.st_ctim = ToTimespec(started_ns_);
  return st;
}

const std::string& Filesystem::StatsSnapshot(bool refresh) {
  std::lock_guard lock(stats_mu_);
  if (refresh || stats_time_ns_ == 0) {
    stats_snapshot_ = StatsJson();
    // Strictly increasing, so a reader that compares times sees it change.
    stats_time_ns_ = std::max(NowNs(), stats_time_ns_ + 1);
  }
  return stats_snapshot_;
}

struct stat Filesystem::VirtualAttr(uint64_t node) {
  struct stat st = {};
  st.st_ino = InodeMap::VirtualIno(node);
  st.st_uid = uid_;
  st.st_gid = gid_;
  st.st_nlink = 1;
  st.st_blksize = 4096;
  st.st_atim = st.st_mtim = st.st_ctim = ToTimespec(started_ns_);
  switch (node) {
    case kControlDirNode:
      st.st_mode = S_IFDIR | 0555;
      break;
    case kStatsNode: {
      st.st_mode = S_IFREG | 0444;
      std::lock_guard lock(stats_mu_);
      if (stats_time_ns_ == 0) {
        stats_snapshot_ = StatsJson();
        stats_time_ns_ = NowNs();
      }
      st.st_size = static_cast<off_t>(stats_snapshot_.size());
      st.st_mtim = st.st_ctim = ToTimespec(stats_time_ns_);
      break;
    }
    case kConfigNode:
      st.st_mode = S_IFREG | 0444;
      st.st_size = static_cast<off_t>(config_toml_.size());
      break;
    default:
      break;
  }
  return st;
}

Result<Entry> Filesystem::VirtualEntry(uint64_t node) {
  Entry e;
  e.ino = InodeMap::VirtualIno(node);
  if (node == kStatsNode) {
    StatsSnapshot(/*refresh=*/true);
    e.entry_timeout = 0;  // every path walk looks it up again: a fresh snapshot per open
    e.attr_timeout = 0;
  } else {
    e.entry_timeout = options_.timeout_s;
    e.attr_timeout = options_.timeout_s;
  }
  e.attr = VirtualAttr(node);
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
      if (name == "stats") return VirtualEntry(kStatsNode);
      if (name == "config") return VirtualEntry(kConfigNode);
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
      return VirtualAttr(t.id);
    case InodeKind::kStore: {
      KVFS_ASSIGN_OR_RETURN(Attr a, t.files->GetAttr(t.id));
      return StatOf(a, ino);
    }
    case InodeKind::kInvalid:
      break;
  }
  return Err(ESTALE, "stale inode");
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
                                   const Caller& caller) {
  if (!S_ISREG(mode)) return Err(EPERM, "only regular files, directories and symlinks");
  KVFS_ASSIGN_OR_RETURN(Target p, ResolveStoreDir(parent, name));
  KVFS_ASSIGN_OR_RETURN(Attr a, p.files->Create(p.id, name, mode & 07777, caller));
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
    f->snapshot = t.id == kStatsNode ? StatsSnapshot(/*refresh=*/true) : config_toml_;
    *open_file = std::move(f);
    return Status::OK();
  }
  if (t.kind != InodeKind::kStore) return Err(EISDIR, "directory");
  if (options_.no_open) return Err(ENOSYS, "no open needed");
  return Status::OK();
}

Result<std::string> Filesystem::Read(uint64_t ino, uint64_t offset, size_t size,
                                     const OpenFile* open_file) {
  KVFS_ASSIGN_OR_RETURN(Target t, Resolve(ino));
  if (t.kind == InodeKind::kStore) return t.files->Read(t.id, offset, size);
  if (t.kind != InodeKind::kVirtual || t.id == kControlDirNode) return Err(EISDIR, "directory");
  std::string content;
  if (open_file != nullptr) {
    content = open_file->snapshot;
  } else if (t.id == kStatsNode) {
    content = StatsSnapshot(/*refresh=*/false);
  } else {
    content = config_toml_;
  }
  if (offset >= content.size()) return std::string();
  return content.substr(offset, size);
}

Result<size_t> Filesystem::Write(uint64_t ino, uint64_t offset, std::string_view data) {
  KVFS_ASSIGN_OR_RETURN(Target t, Resolve(ino));
  if (t.kind != InodeKind::kStore) return Err(EPERM, "read-only virtual file");
  return t.files->Write(t.id, offset, data);
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
    entries.emplace_back("stats", Entry{});
    entries.back().second.ino = InodeMap::VirtualIno(kStatsNode);
    entries.back().second.attr = VirtualAttr(kStatsNode);
    entries.emplace_back("config", Entry{});
    entries.back().second.ino = InodeMap::VirtualIno(kConfigNode);
    entries.back().second.attr = VirtualAttr(kConfigNode);
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
    sv.f_blocks = space.total_bytes / sv.f_frsize;
    sv.f_bfree = space.free_bytes / sv.f_frsize;
    sv.f_bavail = sv.f_bfree;
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
// it lists, and with ENODATA each probe was a round trip to the daemon (16,692 files/s listed,
// against 96,006 without those probes).
bool UnsupportedXattr(std::string_view name) {
  return name.starts_with("security.") || name.starts_with("system.");
}

}  // namespace

Result<std::string> Filesystem::GetXattr(uint64_t ino, std::string_view name) {
  if (!options_.xattrs) return Err(ENOSYS, "xattrs are off (kvfs_noxattr)");
  if (UnsupportedXattr(name)) return Err(EOPNOTSUPP, std::string(name) + ": not supported");
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
  if (UnsupportedXattr(name)) return Err(EOPNOTSUPP, std::string(name) + ": not supported");
  return t.files->SetXattr(t.id, name, value, flags);
}

Status Filesystem::RemoveXattr(uint64_t ino, std::string_view name) {
  if (!options_.xattrs) return Err(ENOSYS, "xattrs are off (kvfs_noxattr)");
  if (UnsupportedXattr(name)) return Err(EOPNOTSUPP, std::string(name) + ": not supported");
  KVFS_ASSIGN_OR_RETURN(Target t, Resolve(ino));
  if (t.kind != InodeKind::kStore) return Err(EPERM, "virtual node");
  return t.files->RemoveXattr(t.id, name);
}

std::string Filesystem::StatsJson() const {
  auto num = [](uint64_t v) { return std::to_string(v); };
  std::string o = "{\n";
  o += "  \"pid\": " + std::to_string(::getpid()) + ",\n";
  o += "  \"mountpoint\": " + JsonQuote(options_.mountpoint) + ",\n";
  o += "  \"uptime_s\": " + std::to_string((NowNs() - started_ns_) / 1000000000) + ",\n";
  o += "  \"single_store\": " + std::string(options_.single_store ? "true" : "false") + ",\n";
  o += "  \"no_open\": " + std::string(options_.no_open ? "true" : "false") + ",\n";
  o += "  \"writeback_cache\": " + std::string(options_.writeback_cache ? "true" : "false") + ",\n";
  o += "  \"stores\": [";
  if (closed_.load()) {
    o += "]\n}\n";
    return o;
  }
  for (size_t i = 0; i < stores_.size(); ++i) {
    const Store& s = stores_[i];
    const FileStoreStats f = s.files->stats();
    const engines::EngineStats e = s.files->engine()->stats();
    o += i == 0 ? "\n" : ",\n";
    o += "    {\n";
    o += "      \"name\": " + JsonQuote(s.config.name) + ",\n";
    o += "      \"engine\": " + JsonQuote(s.config.engine) + ",\n";
    o += "      \"data_dir\": " + JsonQuote(s.config.data_dir) + ",\n";
    o += "      \"sync\": " + JsonQuote(config::SyncModeName(s.config.sync)) + ",\n";
    o += "      \"failed\": " + std::string(s.files->failed() ? "true" : "false") + ",\n";
    o += "      \"files\": {";
    const std::pair<const char*, uint64_t> fs[] = {{"lookups", f.lookups},
                                                   {"getattrs", f.getattrs},
                                                   {"setattrs", f.setattrs},
                                                   {"readdirs", f.readdirs},
                                                   {"creates", f.creates},
                                                   {"mkdirs", f.mkdirs},
                                                   {"symlinks", f.symlinks},
                                                   {"unlinks", f.unlinks},
                                                   {"rmdirs", f.rmdirs},
                                                   {"renames", f.renames},
                                                   {"reads", f.reads},
                                                   {"read_bytes", f.read_bytes},
                                                   {"writes", f.writes},
                                                   {"write_bytes", f.write_bytes},
                                                   {"fsyncs", f.fsyncs},
                                                   {"fdatasyncs", f.fdatasyncs},
                                                   {"fsyncdirs", f.fsyncdirs},
                                                   {"errors", f.errors},
                                                   {"sync_errors", f.sync_errors},
                                                   {"known_nodes", f.known_nodes},
                                                   {"orphans", f.orphans}};
    for (size_t k = 0; k < std::size(fs); ++k) {
      o += std::string(k == 0 ? "" : ", ") + "\"" + fs[k].first + "\": " + num(fs[k].second);
    }
    o += "},\n";
    o += "      \"engine_stats\": {";
    const std::pair<const char*, uint64_t> es[] = {{"gets", e.gets},
                                                   {"puts", e.puts},
                                                   {"deletes", e.deletes},
                                                   {"batches", e.batches},
                                                   {"scans", e.scans},
                                                   {"bytes_written", e.bytes_written},
                                                   {"bytes_read", e.bytes_read},
                                                   {"syncs", e.syncs},
                                                   {"compactions", e.compactions},
                                                   {"live_keys", e.live_keys},
                                                   {"errors", e.errors}};
    for (size_t k = 0; k < std::size(es); ++k) {
      o += std::string(k == 0 ? "" : ", ") + "\"" + es[k].first + "\": " + num(es[k].second);
    }
    o += "},\n";
    o += "      \"wal\": {";
    const std::pair<const char*, uint64_t> ws[] = {{"appends", e.wal.appends},
                                                   {"bytes_appended", e.wal.bytes_appended},
                                                   {"writes", e.wal.writes},
                                                   {"syncs", e.wal.syncs},
                                                   {"synced_requests", e.wal.synced_requests},
                                                   {"max_group", e.wal.max_group},
                                                   {"segments_created", e.wal.segments_created},
                                                   {"segments_deleted", e.wal.segments_deleted},
                                                   {"last_lsn", e.wal.last_lsn},
                                                   {"durable_lsn", e.wal.durable_lsn}};
    for (size_t k = 0; k < std::size(ws); ++k) {
      o += std::string(k == 0 ? "" : ", ") + "\"" + ws[k].first + "\": " + num(ws[k].second);
    }
    o += ", \"failed\": " + std::string(e.wal.failed ? "true" : "false") + "}\n";
    o += "    }";
  }
  o += "\n  ]\n}\n";
  return o;
}

// ---------------------------------------------------------------------------------------------
// The libfuse adapter: decode, call, reply exactly once.

namespace {

Filesystem* Fs(fuse_req_t req) { return static_cast<Filesystem*>(fuse_req_userdata(req)); }

Caller CallerOf(fuse_req_t req) {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  Caller c;
  c.uid = ctx->uid;
  c.gid = ctx->gid;
  c.umask = ctx->umask;
  return c;
}

void ReplyErr(fuse_req_t req, const Status& s) {
  const int err = ErrnoOf(s);
  if (err != ENOENT && err != EEXIST && err != ENOSYS && err != ENODATA && err != ENOTEMPTY &&
      err != EOPNOTSUPP) {
    spdlog::debug("reply {}: {}", err, s.ToString());
  }
  fuse_reply_err(req, err);
}

fuse_entry_param ToParam(const Entry& e) {
  fuse_entry_param p = {};
  p.ino = e.ino;
  p.generation = 0;  // ids are never reused
  p.attr = e.attr;
  p.attr_timeout = e.attr_timeout;
  p.entry_timeout = e.entry_timeout;
  return p;
}

void ReplyEntry(fuse_req_t req, const Result<Entry>& e) {
  if (!e.ok()) return ReplyErr(req, e.status());
  const fuse_entry_param p = ToParam(*e);
  if (fuse_reply_entry(req, &p) == -ENOENT) {
    // The request was interrupted: the kernel never saw the reference.
    Fs(req)->Forget(e->ino, 1);
  }
}

void OpInit(void* userdata, fuse_conn_info* conn) {
  auto* fs = static_cast<Filesystem*>(userdata);
  const FsOptions& o = fs->options();
  if (conn->capable & FUSE_CAP_READDIRPLUS) conn->want |= FUSE_CAP_READDIRPLUS;
  if (conn->capable & FUSE_CAP_READDIRPLUS_AUTO) conn->want |= FUSE_CAP_READDIRPLUS_AUTO;
  // The kernel truncates with a SETATTR before the open, so open needs no O_TRUNC handling
  // (and open may be skipped altogether: no_open).
  conn->want &= ~FUSE_CAP_ATOMIC_O_TRUNC;
  conn->want &= ~(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
  conn->want &= ~FUSE_CAP_EXPORT_SUPPORT;
  // No auto_inval_data: every change comes through this mount (the data directories are
  // locked), so the kernel's cached pages never go stale behind its back; with it, the mtime a
  // write changed made the kernel drop the file's pages at the next attribute refresh, and the
  // first read after writing went to the daemon. (The stats file, which does change, is read
  // with direct_io.)
  conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
  if (conn->capable & FUSE_CAP_PARALLEL_DIROPS) conn->want |= FUSE_CAP_PARALLEL_DIROPS;
  if (conn->capable & FUSE_CAP_CACHE_SYMLINKS) conn->want |= FUSE_CAP_CACHE_SYMLINKS;
  if (o.writeback_cache && (conn->capable & FUSE_CAP_WRITEBACK_CACHE)) {
    conn->want |= FUSE_CAP_WRITEBACK_CACHE;
  } else {
    conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
  }
  conn->max_write = 1 << 20;
  conn->max_readahead = 1 << 20;
  conn->time_gran = 1;
  spdlog::info("FUSE protocol {}.{}; writeback cache {}, no_open {}, xattrs {}", conn->proto_major,
               conn->proto_minor, (conn->want & FUSE_CAP_WRITEBACK_CACHE) ? "on" : "off",
               o.no_open ? "on" : "off", o.xattrs ? "on" : "off");
}

void OpDestroy(void* userdata) {
  auto* fs = static_cast<Filesystem*>(userdata);
  Status s = fs->Shutdown();
  if (s.ok()) {
    spdlog::info("every store synced and closed");
  } else {
    spdlog::error("closing the stores failed: {}", s.ToString());
  }
}

void OpLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Filesystem* fs = Fs(req);
  auto e = fs->Lookup(parent, name);
  if (!e.ok() && ErrnoOf(e.status()) == ENOENT) {
    // A negative entry, cached as long as positive ones: names appear only through this mount.
    fuse_entry_param p = {};
    p.ino = 0;
    p.entry_timeout = fs->options().timeout_s;
    fuse_reply_entry(req, &p);
    return;
  }
  ReplyEntry(req, e);
}

void OpForget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  Fs(req)->Forget(ino, nlookup);
  fuse_reply_none(req);
}

void OpForgetMulti(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  Filesystem* fs = Fs(req);
  for (size_t i = 0; i < count; ++i) fs->Forget(forgets[i].ino, forgets[i].nlookup);
  fuse_reply_none(req);
}

double AttrTimeout(Filesystem* fs, fuse_ino_t ino) {
  return ino == InodeMap::VirtualIno(kStatsNode) ? 0 : fs->options().timeout_s;
}

void OpGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  Filesystem* fs = Fs(req);
  auto st = fs->GetAttr(ino);
  if (!st.ok()) return ReplyErr(req, st.status());
  fuse_reply_attr(req, &*st, AttrTimeout(fs, ino));
}

void OpSetattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info*) {
  Filesystem* fs = Fs(req);
  auto st = fs->SetAttr(ino, *attr, to_set);
  if (!st.ok()) return ReplyErr(req, st.status());
  fuse_reply_attr(req, &*st, AttrTimeout(fs, ino));
}

void OpReadlink(fuse_req_t req, fuse_ino_t ino) {
  auto target = Fs(req)->ReadLink(ino);
  if (!target.ok()) return ReplyErr(req, target.status());
  fuse_reply_readlink(req, target->c_str());
}

void OpMknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t) {
  ReplyEntry(req, Fs(req)->MakeNode(parent, name, mode, CallerOf(req)));
}

void OpMkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  ReplyEntry(req, Fs(req)->Mkdir(parent, name, mode, CallerOf(req)));
}

void OpUnlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  fuse_reply_err(req, ErrnoOf(Fs(req)->Unlink(parent, name)));
}

void OpRmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  fuse_reply_err(req, ErrnoOf(Fs(req)->Rmdir(parent, name)));
}

void OpSymlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name) {
  ReplyEntry(req, Fs(req)->Symlink(parent, name, link, CallerOf(req)));
}

void OpRename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
              const char* newname, unsigned int flags) {
  fuse_reply_err(req, ErrnoOf(Fs(req)->Rename(parent, name, newparent, newname, flags)));
}

void OpLink(fuse_req_t req, fuse_ino_t, fuse_ino_t, const char*) {
  fuse_reply_err(req, EPERM);  // no hard links (as filesystems without them answer)
}

void SetOpenFlags(Filesystem* fs, fuse_file_info* fi, std::unique_ptr<OpenFile> open_file) {
  if (open_file != nullptr) {
    fi->fh = fs->open_files().Add(std::move(open_file));
    fi->direct_io = 1;  // the snapshot's size is not the cached size
    fi->keep_cache = 0;
  } else {
    fi->fh = 0;
    fi->keep_cache = 1;  // only this mount changes files: cached pages stay valid
    fi->noflush = 1;
  }
}

void OpOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  std::unique_ptr<OpenFile> open_file;
  Status s = Fs(req)->Open(ino, fi->flags, &open_file);
  if (!s.ok()) return ReplyErr(req, s);
  const bool handle = open_file != nullptr;
  SetOpenFlags(Fs(req), fi, std::move(open_file));
  // Interrupted: no release will come.
  if (fuse_reply_open(req, fi) == -ENOENT && handle) Fs(req)->open_files().Remove(fi->fh);
}

void OpCreate(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
              fuse_file_info* fi) {
  Filesystem* fs = Fs(req);
  auto e = fs->Create(parent, name, mode, fi->flags, CallerOf(req));
  if (!e.ok()) return ReplyErr(req, e.status());
  SetOpenFlags(fs, fi, nullptr);
  const fuse_entry_param p = ToParam(*e);
  if (fuse_reply_create(req, &p, fi) == -ENOENT) fs->Forget(e->ino, 1);
}

void OpRead(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  if (off < 0) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  auto data =
      Fs(req)->Read(ino, static_cast<uint64_t>(off), size, HandleTable<OpenFile>::Get(fi->fh));
  if (!data.ok()) return ReplyErr(req, data.status());
  fuse_reply_buf(req, data->data(), data->size());
}

void OpWrite(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off,
             fuse_file_info*) {
  if (off < 0) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  auto n = Fs(req)->Write(ino, static_cast<uint64_t>(off), std::string_view(buf, size));
  if (!n.ok()) return ReplyErr(req, n.status());
  fuse_reply_write(req, *n);
}

void OpFlush(fuse_req_t req, fuse_ino_t, fuse_file_info*) {
  // Every write reached the engine when it was answered: nothing to flush. ENOSYS makes the
  // kernel stop sending FLUSH (it treats it as success).
  fuse_reply_err(req, ENOSYS);
}

void OpRelease(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  if (fi->fh != 0) Fs(req)->open_files().Remove(fi->fh);
  fuse_reply_err(req, 0);
}

void OpFsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info*) {
  fuse_reply_err(req, ErrnoOf(Fs(req)->Fsync(ino, datasync != 0)));
}

void OpOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  auto d = Fs(req)->OpenDir(ino);
  if (!d.ok()) return ReplyErr(req, d.status());
  fi->fh = Fs(req)->dir_handles().Add(std::move(*d));
  if (fuse_reply_open(req, fi) == -ENOENT) Fs(req)->dir_handles().Remove(fi->fh);
}

void DoReaddir(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi, bool plus) {
  Filesystem* fs = Fs(req);
  DirHandle* dir = HandleTable<DirHandle>::Get(fi->fh);
  std::string buf(size, '\0');
  size_t used = 0;
  std::vector<uint64_t> referenced;  // lookup references handed out (plus)
  Status s = fs->ReadDir(dir, off, plus, [&](std::string_view name, const Entry& e, off_t next) {
    const std::string n(name);
    size_t need;
    if (plus) {
      const fuse_entry_param p = ToParam(e);
      need = fuse_add_direntry_plus(req, buf.data() + used, size - used, n.c_str(), &p, next);
    } else {
      need = fuse_add_direntry(req, buf.data() + used, size - used, n.c_str(), &e.attr, next);
    }
    if (need > size - used) return false;
    used += need;
    if (plus && e.ino != 0) referenced.push_back(e.ino);
    return true;
  });
  if (!s.ok() && used == 0) {
    for (uint64_t ino : referenced) fs->Forget(ino, 1);
    return ReplyErr(req, s);
  }
  if (fuse_reply_buf(req, buf.data(), used) == -ENOENT) {
    for (uint64_t ino : referenced) fs->Forget(ino, 1);
  }
}

void OpReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  DoReaddir(req, ino, size, off, fi, false);
}

void OpReaddirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  DoReaddir(req, ino, size, off, fi, true);
}

void OpReleasedir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  Fs(req)->dir_handles().Remove(fi->fh);
  fuse_reply_err(req, 0);
}

void OpFsyncdir(fuse_req_t req, fuse_ino_t ino, int, fuse_file_info*) {
  fuse_reply_err(req, ErrnoOf(Fs(req)->FsyncDir(ino)));
}

void OpStatfs(fuse_req_t req, fuse_ino_t ino) {
  auto sv = Fs(req)->StatFs(ino);
  if (!sv.ok()) return ReplyErr(req, sv.status());
  fuse_reply_statfs(req, &*sv);
}

void ReplyXattrValue(fuse_req_t req, const Result<std::string>& value, size_t size) {
  if (!value.ok()) return ReplyErr(req, value.status());
  if (size == 0) return static_cast<void>(fuse_reply_xattr(req, value->size()));
  if (size < value->size()) return static_cast<void>(fuse_reply_err(req, ERANGE));
  fuse_reply_buf(req, value->data(), value->size());
}

void OpSetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
                int flags) {
  fuse_reply_err(req, ErrnoOf(Fs(req)->SetXattr(ino, name, std::string_view(value, size), flags)));
}

void OpGetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  ReplyXattrValue(req, Fs(req)->GetXattr(ino, name), size);
}

void OpListxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  ReplyXattrValue(req, Fs(req)->ListXattr(ino), size);
}

void OpRemovexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  fuse_reply_err(req, ErrnoOf(Fs(req)->RemoveXattr(ino, name)));
}

fuse_lowlevel_ops MakeOps() {
  fuse_lowlevel_ops ops = {};
  ops.init = OpInit;
  ops.destroy = OpDestroy;
  ops.lookup = OpLookup;
  ops.forget = OpForget;
  ops.forget_multi = OpForgetMulti;
  ops.getattr = OpGetattr;
  ops.setattr = OpSetattr;
  ops.readlink = OpReadlink;
  ops.mknod = OpMknod;
  ops.mkdir = OpMkdir;
  ops.unlink = OpUnlink;
  ops.rmdir = OpRmdir;
  ops.symlink = OpSymlink;
  ops.rename = OpRename;
  ops.link = OpLink;
  ops.open = OpOpen;
  ops.read = OpRead;
  ops.write = OpWrite;
  ops.flush = OpFlush;
  ops.release = OpRelease;
  ops.fsync = OpFsync;
  ops.opendir = OpOpendir;
  ops.readdir = OpReaddir;
  ops.readdirplus = OpReaddirplus;
  ops.releasedir = OpReleasedir;
  ops.fsyncdir = OpFsyncdir;
  ops.statfs = OpStatfs;
  ops.setxattr = OpSetxattr;
  ops.getxattr = OpGetxattr;
  ops.listxattr = OpListxattr;
  ops.removexattr = OpRemovexattr;
  ops.create = OpCreate;
  return ops;
}

}  // namespace

const fuse_lowlevel_ops* LowLevelOps() {
  static const fuse_lowlevel_ops ops = MakeOps();
  return &ops;
}

}  // namespace kvfs::fusefs
