// The libfuse adapter: decode each request, call one Filesystem method, reply exactly once.
#define FUSE_USE_VERSION 314
#include "fusefs/fuse_ops.h"

#include <fuse3/fuse_lowlevel.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kvfs::fusefs {
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
  // first read after writing went to the daemon. (The live control files, which do change, are read
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
    p.entry_timeout = fs->NegativeTimeout(parent);
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

void OpGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  Filesystem* fs = Fs(req);
  auto st = fs->GetAttr(ino);
  if (!st.ok()) return ReplyErr(req, st.status());
  fuse_reply_attr(req, &*st, fs->AttrTimeout(ino));
}

void OpSetattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info*) {
  Filesystem* fs = Fs(req);
  auto st = fs->SetAttr(ino, *attr, to_set);
  if (!st.ok()) return ReplyErr(req, st.status());
  fuse_reply_attr(req, &*st, fs->AttrTimeout(ino));
}

void OpReadlink(fuse_req_t req, fuse_ino_t ino) {
  auto target = Fs(req)->ReadLink(ino);
  if (!target.ok()) return ReplyErr(req, target.status());
  fuse_reply_readlink(req, target->c_str());
}

void OpMknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  ReplyEntry(req, Fs(req)->MakeNode(parent, name, mode, rdev, CallerOf(req)));
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

void OpLink(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname) {
  ReplyEntry(req, Fs(req)->Link(ino, newparent, newname));
}

void SetOpenFlags(Filesystem* fs, fuse_file_info* fi, std::unique_ptr<OpenFile> open_file) {
  if (open_file != nullptr) {
    fi->fh = fs->open_files().Add(std::move(open_file));
    fi->direct_io = 1;  // the snapshot's size is not the cached size
    fi->keep_cache = 0;
  } else {
    fi->fh = 0;
    fi->keep_cache = 1;  // only this mount changes files (or the etcd watch drops the pages)
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
  std::unique_ptr<OpenFile> stream = fs->StreamOpenFile(e->ino);
  const bool handle = stream != nullptr;
  SetOpenFlags(fs, fi, std::move(stream));
  const fuse_entry_param p = ToParam(*e);
  if (fuse_reply_create(req, &p, fi) == -ENOENT) {
    fs->Forget(e->ino, 1);
    if (handle) fs->open_files().Remove(fi->fh);
  }
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

void OpFallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                 fuse_file_info*) {
  if (offset < 0 || length <= 0) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  fuse_reply_err(req, ErrnoOf(Fs(req)->Fallocate(ino, mode, static_cast<uint64_t>(offset),
                                                 static_cast<uint64_t>(length))));
}

void OpLseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, fuse_file_info*) {
  if (off < 0) {
    fuse_reply_err(req, ENXIO);
    return;
  }
  auto pos = Fs(req)->Lseek(ino, static_cast<uint64_t>(off), whence);
  if (!pos.ok()) return ReplyErr(req, pos.status());
  fuse_reply_lseek(req, static_cast<off_t>(*pos));
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
  ops.lseek = OpLseek;
  ops.fallocate = OpFallocate;
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
