// Every file type and every call a local file system answers (issue 21), through a real mount,
// with the kernel as the oracle: each script of system calls runs once in a plain directory on
// the local disk (the test's private directory, ext4 here) and once in the mount, and what each
// call returned (success or the errno's name) and what stat then showed (type, mode, nlink,
// rdev, whether ctime moved) must be the same, line for line. Real tools (find, cp -a, tar,
// rsync -a) are compared the same way, and everything is read again after a remount.
//
// Every engine (engines::EngineNames()); skipped (loudly) only without /dev/fuse or root.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/falloc.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "engines/engine.h"
#include "tests/fusefs/mount_fixture.h"

namespace kvfs::mount_test {
namespace {

std::string ErrnoName(int e) {
  if (e == 0) return "success";
  const char* n = ::strerrorname_np(e);
  return n != nullptr ? n : "errno " + std::to_string(e);
}

// A script's record of what the calls did, one line each.
class Log {
 public:
  explicit Log(std::string base) : base_(std::move(base)) {}
  std::string P(const std::string& rel) const { return rel == "." ? base_ : base_ + "/" + rel; }
  // "label: success" or "label: ENOENT".
  void Call(const std::string& label, long rc) {
    out_ += label + ": " + (rc == -1 ? ErrnoName(errno) : std::string("success")) + "\n";
  }
  // The link count of `rel` (lstat), or the errno.
  void Nlink(const std::string& rel) {
    struct stat st;
    if (::lstat(P(rel).c_str(), &st) != 0) return Call("nlink " + rel, -1);
    out_ += "nlink " + rel + ": " + std::to_string(st.st_nlink) + "\n";
  }
  void Text(const std::string& line) { out_ += line + "\n"; }
  const std::string& text() const { return out_; }

 private:
  std::string base_;
  std::string out_;
};

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  for (size_t nl; (nl = text.find('\n', start)) != std::string::npos; start = nl + 1) {
    lines.push_back(text.substr(start, nl - start));
  }
  if (start < text.size()) lines.push_back(text.substr(start));
  return lines;
}

long Touch(const std::string& path) {
  const int fd = ::open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) return -1;
  ::close(fd);
  return 0;
}

long Exchange(const std::string& a, const std::string& b) {
  return ::renameat2(AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), RENAME_EXCHANGE);
}

// --- scripts ---------------------------------------------------------------------------------

// A directory's link count through mkdir, rmdir and rename within and across directories.
void DirectoryLinks(Log* l) {
  l->Call("mkdir d", ::mkdir(l->P("d").c_str(), 0755));
  l->Nlink(".");
  l->Nlink("d");
  for (const char* n : {"d/a", "d/b", "d/c"})
    l->Call(std::string("mkdir ") + n, ::mkdir(l->P(n).c_str(), 0755));
  l->Call("create d/f", Touch(l->P("d/f")));
  l->Call("symlink d/l", ::symlink("f", l->P("d/l").c_str()));
  l->Nlink("d");
  l->Nlink("d/f");
  l->Call("mkdir e", ::mkdir(l->P("e").c_str(), 0755));
  l->Call("rename d/a e/a", ::rename(l->P("d/a").c_str(), l->P("e/a").c_str()));
  for (const char* n : {".", "d", "e", "e/a"}) l->Nlink(n);
  l->Call("rename d/b d/b2", ::rename(l->P("d/b").c_str(), l->P("d/b2").c_str()));
  l->Nlink("d");
  l->Call("mkdir e/empty", ::mkdir(l->P("e/empty").c_str(), 0755));
  l->Call("rename d/b2 over e/empty", ::rename(l->P("d/b2").c_str(), l->P("e/empty").c_str()));
  for (const char* n : {"d", "e"}) l->Nlink(n);
  l->Call("mkdir d/x", ::mkdir(l->P("d/x").c_str(), 0755));
  l->Call("rename d/c over d/x", ::rename(l->P("d/c").c_str(), l->P("d/x").c_str()));
  l->Nlink("d");
  l->Call("exchange d/f e/empty", Exchange(l->P("d/f"), l->P("e/empty")));
  for (const char* n : {"d", "e", "d/f", "e/empty"}) l->Nlink(n);
  l->Call("exchange d/x e/a", Exchange(l->P("d/x"), l->P("e/a")));
  for (const char* n : {"d", "e"}) l->Nlink(n);
  l->Call("mkdir e/a/deep", ::mkdir(l->P("e/a/deep").c_str(), 0755));
  l->Call("rename e/a d/moved", ::rename(l->P("e/a").c_str(), l->P("d/moved").c_str()));
  for (const char* n : {"d", "e", "d/moved"}) l->Nlink(n);
  l->Call("rmdir d (not empty)", ::rmdir(l->P("d").c_str()));
  l->Call("rmdir d/moved/deep", ::rmdir(l->P("d/moved/deep").c_str()));
  l->Call("rmdir d/x", ::rmdir(l->P("d/x").c_str()));
  for (const char* n : {".", "d", "e", "d/moved"}) l->Nlink(n);
}

// Binds a Unix socket at `path` (the way programs make one), then closes it: the node stays.
long BindSocket(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    ::close(fd);
    errno = ENAMETOOLONG;
    return -1;
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  const int rc = ::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  const int err = errno;
  ::close(fd);
  errno = err;
  return rc;
}

// An mtime a script set (utimensat to a small number) exactly; the clock's as "now".
std::string MtimeText(const timespec& t) {
  if (t.tv_sec > 1000000) return "now";
  return std::to_string(t.tv_sec) + "." + std::to_string(t.tv_nsec);
}

// What lstat says of `rel`: type, permission bits, links, device numbers, size, owner, mtime.
void StatLine(Log* l, const std::string& rel) {
  struct stat st;
  if (::lstat(l->P(rel).c_str(), &st) != 0) return l->Call("stat " + rel, -1);
  char line[256];
  std::snprintf(line, sizeof(line),
                "stat %s: type %06o mode %04o nlink %lu rdev %u:%u size %lld uid %u gid %u "
                "mtime %s",
                rel.c_str(), st.st_mode & S_IFMT, st.st_mode & 07777,
                static_cast<unsigned long>(st.st_nlink), major(st.st_rdev), minor(st.st_rdev),
                static_cast<long long>(st.st_size), st.st_uid, st.st_gid,
                MtimeText(st.st_mtim).c_str());
  l->Text(line);
}

// FIFOs, devices and sockets: made, stat'ed, changed, opened (the kernel's business), renamed
// onto and over, and removed.
void SpecialFiles(Log* l) {
  l->Call("mkfifo p", ::mkfifo(l->P("p").c_str(), 0640));
  l->Call("mknod c 1:3", ::mknod(l->P("c").c_str(), S_IFCHR | 0666, makedev(1, 3)));
  l->Call("mknod b 7:0", ::mknod(l->P("b").c_str(), S_IFBLK | 0600, makedev(7, 0)));
  l->Call("mknod big 4095:1048575",
          ::mknod(l->P("big").c_str(), S_IFCHR | 0600, makedev(4095, 1048575)));
  l->Call("bind s", BindSocket(l->P("s")));
  l->Call("mknod r (regular)", ::mknod(l->P("r").c_str(), S_IFREG | 0644, 0));
  l->Call("mknod p again", ::mknod(l->P("p").c_str(), S_IFIFO | 0644, 0));
  l->Call("mkfifo c (exists)", ::mkfifo(l->P("c").c_str(), 0644));
  l->Call("mknod of a directory", ::mknod(l->P("d").c_str(), S_IFDIR | 0755, 0));
  l->Call("mknod of no type", ::mknod(l->P("x").c_str(), 0170000 | 0644, 0));
  for (const char* n : {"p", "c", "b", "big", "s", "r"}) StatLine(l, n);
  l->Nlink(".");
  // chmod, chown, utimens.
  const timespec times[2] = {{1000, 5}, {2000, 7}};
  for (const char* n : {"p", "c", "b", "s"}) {
    const std::string name = n;
    l->Call("chmod " + name, ::chmod(l->P(name).c_str(), 0604));
    l->Call("chown " + name, ::lchown(l->P(name).c_str(), 1234, 5678));
    l->Call("utimens " + name, ::utimensat(AT_FDCWD, l->P(name).c_str(), times, 0));
    StatLine(l, name);
  }
  l->Call("truncate p", ::truncate(l->P("p").c_str(), 0));
  // Opening: the kernel's, the node only says what to open.
  const int rd = ::open(l->P("p").c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  l->Call("open p for reading, nonblocking", rd);
  const int wr = ::open(l->P("p").c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
  l->Call("open p for writing, nonblocking", wr);
  l->Call("write p", wr < 0 ? -1 : ::write(wr, "hello", 5));
  char buf[16] = {};
  l->Call("read p", rd < 0 ? -1 : ::read(rd, buf, sizeof(buf)));
  l->Text(std::string("read p gave ") + buf);
  if (rd >= 0) ::close(rd);
  if (wr >= 0) ::close(wr);
  const int null = ::open(l->P("c").c_str(), O_RDWR | O_CLOEXEC);
  l->Call("open c (/dev/null's numbers)", null);
  l->Call("write c", null < 0 ? -1 : ::write(null, "gone", 4));
  l->Call("read c", null < 0 ? -1 : ::read(null, buf, sizeof(buf)));
  if (null >= 0) ::close(null);
  // Names: rename onto a new name, over another type, a file over one; unlink.
  l->Call("rename p p2", ::rename(l->P("p").c_str(), l->P("p2").c_str()));
  l->Call("rename c over p2", ::rename(l->P("c").c_str(), l->P("p2").c_str()));
  l->Call("rename r over b", ::rename(l->P("r").c_str(), l->P("b").c_str()));
  l->Call("exchange s big", Exchange(l->P("s"), l->P("big")));
  l->Call("mkdir d", ::mkdir(l->P("d").c_str(), 0755));
  l->Call("rename s into d", ::rename(l->P("s").c_str(), l->P("d/s").c_str()));
  l->Call("rename d/s over d", ::rename(l->P("d/s").c_str(), l->P("d").c_str()));
  l->Call("rmdir p2", ::rmdir(l->P("p2").c_str()));
  for (const char* n : {"p", "p2", "b", "s", "big", "d/s"}) StatLine(l, n);
  l->Call("unlink big", ::unlink(l->P("big").c_str()));
  l->Call("unlink d/s", ::unlink(l->P("d/s").c_str()));
  l->Call("unlink big again", ::unlink(l->P("big").c_str()));
}

// Whether each of `rels`' ctime, mtime and inode number changed since `before` (the same
// names' stat, taken earlier), as lines.
struct Stamp {
  timespec ctime{}, mtime{};
  ino_t ino = 0;
  bool ok = false;
};
Stamp StampOf(Log* l, const std::string& rel) {
  struct stat st;
  Stamp s;
  if (::lstat(l->P(rel).c_str(), &st) != 0) return s;
  s.ctime = st.st_ctim;
  s.mtime = st.st_mtim;
  s.ino = st.st_ino;
  s.ok = true;
  return s;
}
bool operator==(const timespec& a, const timespec& b) {
  return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}
void Changed(Log* l, const std::string& rel, const Stamp& before) {
  const Stamp now = StampOf(l, rel);
  if (!now.ok || !before.ok) return l->Text("changed " + rel + ": (no stat)");
  l->Text("changed " + rel + ": ctime " + (now.ctime == before.ctime ? "no" : "yes") + ", mtime " +
          (now.mtime == before.mtime ? "no" : "yes"));
}
// Local file systems keep times from a coarse clock: a change lands in a later tick.
void Tick() { ::usleep(20000); }

// Hard links: link(2) and everything a name meets afterwards.
void HardLinks(Log* l) {
  l->Call("create f", Touch(l->P("f")));
  l->Call("write f", ::truncate(l->P("f").c_str(), 10000));
  l->Call("mkdir d", ::mkdir(l->P("d").c_str(), 0755));
  l->Call("create x", Touch(l->P("x")));
  Stamp f0 = StampOf(l, "f"), d0 = StampOf(l, "d"), top0 = StampOf(l, ".");
  Tick();
  l->Call("link f d/g", ::link(l->P("f").c_str(), l->P("d/g").c_str()));
  Changed(l, "f", f0);
  Changed(l, "d", d0);
  Changed(l, ".", top0);
  for (const char* n : {"f", "d/g", "d", "."}) l->Nlink(n);
  l->Text(std::string("same inode f d/g: ") +
          (StampOf(l, "f").ino == StampOf(l, "d/g").ino ? "yes" : "no"));
  l->Call("link f d/g again", ::link(l->P("f").c_str(), l->P("d/g").c_str()));
  l->Call("link f onto x", ::link(l->P("f").c_str(), l->P("x").c_str()));
  l->Call("link d d2", ::link(l->P("d").c_str(), l->P("d2").c_str()));
  l->Call("link missing m", ::link(l->P("missing").c_str(), l->P("m").c_str()));
  l->Call("link f into missing/", ::link(l->P("f").c_str(), l->P("missing/m").c_str()));
  l->Call("link f into x/", ::link(l->P("f").c_str(), l->P("x/m").c_str()));
  // A change through one name is seen through the other.
  l->Call("truncate d/g", ::truncate(l->P("d/g").c_str(), 4));
  l->Call("chmod d/g", ::chmod(l->P("d/g").c_str(), 0600));
  StatLine(l, "f");
  // A third name, then one removed: the rest remain, the file's ctime changes.
  l->Call("link d/g h", ::link(l->P("d/g").c_str(), l->P("h").c_str()));
  l->Nlink("f");
  f0 = StampOf(l, "f");
  Tick();
  l->Call("unlink h", ::unlink(l->P("h").c_str()));
  Changed(l, "f", f0);
  for (const char* n : {"f", "d/g", "h"}) l->Nlink(n);
  // rename(2) from one name of a file to another does nothing.
  l->Call("rename f over d/g (one file)", ::rename(l->P("f").c_str(), l->P("d/g").c_str()));
  for (const char* n : {"f", "d/g"}) l->Nlink(n);
  l->Call("rename f2 noreplace", ::renameat2(AT_FDCWD, l->P("f").c_str(), AT_FDCWD,
                                             l->P("d/g").c_str(), RENAME_NOREPLACE));
  // A name renamed: ctime of the file changes; a rename over another file's name.
  f0 = StampOf(l, "f");
  Tick();
  l->Call("rename d/g g2", ::rename(l->P("d/g").c_str(), l->P("g2").c_str()));
  Changed(l, "f", f0);
  l->Call("link f x2", ::link(l->P("f").c_str(), l->P("x2").c_str()));
  l->Call("rename x over x2", ::rename(l->P("x").c_str(), l->P("x2").c_str()));
  for (const char* n : {"f", "g2", "x2"}) l->Nlink(n);
  l->Call("exchange f x2", Exchange(l->P("f"), l->P("x2")));
  for (const char* n : {"f", "g2", "x2"}) l->Nlink(n);
  // An open file whose every name goes stays readable and writable until closed.
  const int fd = ::open(l->P("g2").c_str(), O_RDWR | O_CLOEXEC);
  l->Call("open g2", fd);
  l->Call("pwrite g2", fd < 0 ? -1 : ::pwrite(fd, "abcd", 4, 0));
  l->Call("unlink g2", ::unlink(l->P("g2").c_str()));
  l->Call("unlink x2", ::unlink(l->P("x2").c_str()));
  struct stat st = {};
  l->Call("fstat", fd < 0 ? -1 : ::fstat(fd, &st));
  l->Text("nlink of the open file: " + std::to_string(st.st_nlink));
  char buf[16] = {};
  l->Call("pwrite after", fd < 0 ? -1 : ::pwrite(fd, "EF", 2, 4));
  l->Call("pread after", fd < 0 ? -1 : ::pread(fd, buf, sizeof(buf), 0));
  l->Text(std::string("read ") + buf);
  const std::string proc = "/proc/self/fd/" + std::to_string(fd);
  l->Call("linkat of the open unlinked file",
          ::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, l->P("back").c_str(), AT_SYMLINK_FOLLOW));
  if (fd >= 0) ::close(fd);
  // Every type but a directory takes a link.
  l->Call("symlink s", ::symlink("target", l->P("s").c_str()));
  l->Call("link s s2", ::link(l->P("s").c_str(), l->P("s2").c_str()));
  l->Call("mkfifo p", ::mkfifo(l->P("p").c_str(), 0600));
  l->Call("link p d/p2", ::link(l->P("p").c_str(), l->P("d/p2").c_str()));
  for (const char* n : {"s", "s2", "p", "d/p2"}) StatLine(l, n);
  char target[64] = {};
  l->Call("readlink s2", ::readlink(l->P("s2").c_str(), target, sizeof(target) - 1));
  l->Text(std::string("target ") + target);
  l->Call("rmdir d (not empty)", ::rmdir(l->P("d").c_str()));
}

// What HardLinks leaves, read again.
void HardLinksAfter(Log* l) {
  for (const char* n : {"f", "x2", "g2", "s", "s2", "p", "d/p2", "d", "."}) StatLine(l, n);
}

// --- extended attributes ---

// getxattr(rel, name) into a buffer of `size` bytes: the value (or its size, for a size query)
// or the errno.
void GetX(Log* l, const std::string& rel, const std::string& name, size_t size = 65536) {
  std::string buf(size, '\0');
  const ssize_t n = ::getxattr(l->P(rel).c_str(), name.c_str(), size ? buf.data() : nullptr, size);
  const std::string label = "getxattr " + rel + " " + name + " (" + std::to_string(size) + ")";
  if (n < 0) return l->Call(label, -1);
  l->Text(label + ": " + (size ? "'" + buf.substr(0, n) + "'" : std::to_string(n)));
}
// listxattr(rel) into a buffer of `size` bytes: the names in name order (the order is the file
// system's own: ext4's is its hash's), the size for a size query, or the errno.
void ListX(Log* l, const std::string& rel, size_t size = 65536, int fd = -1) {
  std::string buf(size, '\0');
  const ssize_t n = fd >= 0 ? ::flistxattr(fd, size ? buf.data() : nullptr, size)
                            : ::listxattr(l->P(rel).c_str(), size ? buf.data() : nullptr, size);
  const std::string label = "listxattr " + rel + " (" + std::to_string(size) + ")";
  if (n < 0) return l->Call(label, -1);
  if (size == 0) return l->Text(label + ": " + std::to_string(n));
  std::set<std::string> names;
  for (ssize_t i = 0; i < n; i += static_cast<ssize_t>(std::strlen(buf.data() + i)) + 1) {
    names.insert(buf.data() + i);
  }
  std::string line = label + ":";
  for (const std::string& name : names) line += " " + name;
  l->Text(line);
}
long SetX(Log* l, const std::string& rel, const std::string& name, const std::string& value,
          int flags) {
  return ::setxattr(l->P(rel).c_str(), name.c_str(), value.data(), value.size(), flags);
}

// setxattr with each flag, getxattr and listxattr with a size query and a buffer too small,
// removexattr, on a file, a directory, a symlink's own attributes (trusted.*, as user.* is
// EPERM there) and the names of one file; ctime moves with each change.
void Xattrs(Log* l) {
  l->Call("create f", Touch(l->P("f")));
  l->Call("mkdir d", ::mkdir(l->P("d").c_str(), 0755));
  l->Call("set f user.a", SetX(l, "f", "user.a", "alpha", 0));
  l->Call("set f user.a create", SetX(l, "f", "user.a", "x", XATTR_CREATE));
  l->Call("set f user.none replace", SetX(l, "f", "user.none", "x", XATTR_REPLACE));
  l->Call("set f user.a replace", SetX(l, "f", "user.a", "beta", XATTR_REPLACE));
  l->Call("set f user.new create", SetX(l, "f", "user.new", "n", XATTR_CREATE));
  l->Call("set f user.empty", SetX(l, "f", "user.empty", "", 0));
  l->Call("set f user.bin", SetX(l, "f", "user.bin", std::string("\0\1\xff", 3), 0));
  l->Call("set f trusted.t", SetX(l, "f", "trusted.t", "t", 0));
  GetX(l, "f", "user.a");
  GetX(l, "f", "user.a", 0);
  GetX(l, "f", "user.a", 2);
  GetX(l, "f", "user.empty");
  GetX(l, "f", "user.empty", 0);
  GetX(l, "f", "user.none");
  GetX(l, "f", "trusted.t");
  ListX(l, "f");
  ListX(l, "f", 0);
  ListX(l, "f", 3);
  l->Call("set f name of 256 bytes", SetX(l, "f", "user." + std::string(251, 'n'), "x", 0));
  l->Call("set f value of 64 KiB + 1", SetX(l, "f", "user.big", std::string(65537, 'v'), 0));
  l->Call("set f empty name", SetX(l, "f", "", "x", 0));
  l->Call("set f no namespace", SetX(l, "f", "color", "x", 0));
  l->Call("remove f user.empty", ::removexattr(l->P("f").c_str(), "user.empty"));
  l->Call("remove f user.empty again", ::removexattr(l->P("f").c_str(), "user.empty"));
  GetX(l, "f", "user.empty");
  // ctime: a set and a remove change it; a refused set does not.
  Stamp f0 = StampOf(l, "f");
  Tick();
  l->Call("set f user.c", SetX(l, "f", "user.c", "c", 0));
  Changed(l, "f", f0);
  f0 = StampOf(l, "f");
  Tick();
  l->Call("set f user.c create (refused)", SetX(l, "f", "user.c", "c", XATTR_CREATE));
  Changed(l, "f", f0);
  Tick();
  l->Call("remove f user.c", ::removexattr(l->P("f").c_str(), "user.c"));
  Changed(l, "f", f0);
  // A directory's and a symlink's.
  l->Call("set d user.d", SetX(l, "d", "user.d", "dir", 0));
  GetX(l, "d", "user.d");
  l->Call("symlink s", ::symlink("f", l->P("s").c_str()));
  l->Call("lset s user.s", ::lsetxattr(l->P("s").c_str(), "user.s", "s", 1, 0));
  l->Call("lset s trusted.s", ::lsetxattr(l->P("s").c_str(), "trusted.s", "s", 1, 0));
  ListX(l, "s");  // through the link: f's
  char buf[64] = {};
  ssize_t n = ::lgetxattr(l->P("s").c_str(), "trusted.s", buf, sizeof buf);
  l->Call("lget s trusted.s", n);
  l->Text(std::string("value ") + std::string(buf, n > 0 ? n : 0));
  // Hard links: one file's attributes under every name; one name removed, the rest keep them.
  l->Call("link f d/g", ::link(l->P("f").c_str(), l->P("d/g").c_str()));
  GetX(l, "d/g", "user.a");
  l->Call("set d/g user.g", SetX(l, "d/g", "user.g", "g", 0));
  ListX(l, "f");
  l->Call("unlink f", ::unlink(l->P("f").c_str()));
  ListX(l, "d/g");
  // Open, every name removed: the attributes stay reachable through the descriptor.
  const int fd = ::open(l->P("d/g").c_str(), O_RDONLY | O_CLOEXEC);
  l->Call("open d/g", fd);
  l->Call("unlink d/g", ::unlink(l->P("d/g").c_str()));
  n = fd < 0 ? -1 : ::fgetxattr(fd, "user.g", buf, sizeof buf);
  l->Call("fgetxattr user.g of the unlinked file", n);
  l->Call("fsetxattr user.h of the unlinked file",
          fd < 0 ? -1 : ::fsetxattr(fd, "user.h", "h", 1, 0));
  ListX(l, "(fd)", 65536, fd);
  if (fd >= 0) ::close(fd);
  // A new file under an old name has none.
  l->Call("create f again", Touch(l->P("f")));
  ListX(l, "f");
  l->Call("set f user.again", SetX(l, "f", "user.again", "1", 0));
}

// What Xattrs leaves, read again (after a remount).
void XattrsAfter(Log* l) {
  ListX(l, "f");
  GetX(l, "f", "user.again");
  ListX(l, "d");
  GetX(l, "d", "user.d");
  char buf[64] = {};
  const ssize_t n = ::lgetxattr(l->P("s").c_str(), "trusted.s", buf, sizeof buf);
  l->Call("lget s trusted.s", n);
}

// st_blocks and st_size of `rel`.
void Blocks(Log* l, const std::string& rel) {
  struct stat st;
  if (::lstat(l->P(rel).c_str(), &st) != 0) return l->Call("blocks " + rel, -1);
  l->Text("blocks " + rel + ": " + std::to_string(st.st_blocks) + ", size " +
          std::to_string(st.st_size));
}

// lseek(fd, off, whence): the offset or the errno.
void Seek(Log* l, int fd, off_t off, int whence) {
  const std::string label =
      std::string(whence == SEEK_DATA ? "SEEK_DATA" : "SEEK_HOLE") + " from " + std::to_string(off);
  const off_t r = ::lseek(fd, off, whence);
  if (r < 0) return l->Call(label, -1);
  l->Text(label + ": " + std::to_string(r));
}

// Bytes [off, off+n) of `fd` as a run-length text ("4096x'a' 10x0"): what reads return.
void ReadRuns(Log* l, int fd, off_t off, size_t n) {
  std::string buf(n, '\0');
  const ssize_t got = ::pread(fd, buf.data(), n, off);
  if (got < 0) return l->Call("pread at " + std::to_string(off), -1);
  buf.resize(static_cast<size_t>(got));
  std::string runs;
  for (size_t i = 0; i < buf.size();) {
    size_t j = i;
    while (j < buf.size() && buf[j] == buf[i]) ++j;
    runs += " " + std::to_string(j - i) + "x" +
            (buf[i] == 0 ? std::string("0") : std::string(1, buf[i]));
    i = j;
  }
  l->Text("read at " + std::to_string(off) + ":" + runs);
}

long Fallocate(int fd, int mode, off_t off, off_t len) {
  return fd < 0 ? -1 : ::fallocate(fd, mode, off, len);
}

constexpr off_t kMiB = off_t{1} << 20;

// Holes and fallocate: what st_blocks, SEEK_DATA/SEEK_HOLE and reads say after sparse writes,
// punched holes, zeroed ranges and reservations, and the errnos of the modes and bad input.
// (st_blocks after a reservation or a zeroed range is not compared: ext4 holds blocks there,
// kvfs holds none; README, "Where kvfs differs".)
void HolesAndFallocate(Log* l) {
  const int fd = ::open(l->P("f").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
  l->Call("create f", fd);
  Blocks(l, "f");
  l->Call("pwrite 4096 a", ::pwrite(fd, std::string(4096, 'a').data(), 4096, 0));
  l->Call("pwrite 10 b past 1 MiB", ::pwrite(fd, "bbbbbbbbbb", 10, kMiB + 100));
  Blocks(l, "f");
  for (const off_t off : {off_t{0}, off_t{100}, off_t{4096}, kMiB, kMiB + 109, kMiB + 110}) {
    Seek(l, fd, off, SEEK_DATA);
    Seek(l, fd, off, SEEK_HOLE);
  }
  ReadRuns(l, fd, 4090, 20);
  Stamp f0 = StampOf(l, "f");
  Tick();
  l->Call("punch [0, 4096)", Fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096));
  Changed(l, "f", f0);
  Blocks(l, "f");
  Seek(l, fd, 0, SEEK_DATA);
  Seek(l, fd, 0, SEEK_HOLE);
  ReadRuns(l, fd, 0, 4100);
  l->Call("punch inside the last block",
          Fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, kMiB + 102, 5));
  Blocks(l, "f");
  ReadRuns(l, fd, kMiB + 100, 10);
  l->Call("punch past the end",
          Fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4 * kMiB, 4096));
  Blocks(l, "f");
  l->Call("punch without KEEP_SIZE", Fallocate(fd, FALLOC_FL_PUNCH_HOLE, 0, 4096));
  // A file of data: zero a range within it, then past its end.
  l->Call("pwrite 3 blocks at 2 MiB",
          ::pwrite(fd, std::string(size_t{3} * 4096, 'c').data(), size_t{3} * 4096, 2 * kMiB));
  Blocks(l, "f");
  f0 = StampOf(l, "f");
  Tick();
  l->Call("zero range [2 MiB + 4000, +5000)",
          Fallocate(fd, FALLOC_FL_ZERO_RANGE, 2 * kMiB + 4000, 5000));
  Changed(l, "f", f0);
  ReadRuns(l, fd, 2 * kMiB, size_t{3} * 4096);
  l->Call("zero range past the end", Fallocate(fd, FALLOC_FL_ZERO_RANGE, 3 * kMiB, 100));
  StatLine(l, "f");
  ReadRuns(l, fd, 3 * kMiB, 200);
  l->Call("zero range past the end, KEEP_SIZE",
          Fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 4 * kMiB, 100));
  StatLine(l, "f");
  // Reservations: the size grows (not with KEEP_SIZE), no byte is written.
  f0 = StampOf(l, "f");
  Tick();
  l->Call("fallocate to 8 MiB", Fallocate(fd, 0, 0, 8 * kMiB));
  Changed(l, "f", f0);
  StatLine(l, "f");
  f0 = StampOf(l, "f");
  Tick();
  l->Call("fallocate within", Fallocate(fd, 0, kMiB, kMiB));
  Changed(l, "f", f0);
  f0 = StampOf(l, "f");
  Tick();
  l->Call("fallocate KEEP_SIZE past the end", Fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 16 * kMiB));
  Changed(l, "f", f0);
  StatLine(l, "f");
  // Reserved space is a hole to SEEK_DATA (ext4's unwritten extents; asked before a read, which
  // would put pages of zeros in ext4's cache that it then counts as data).
  Seek(l, fd, 5 * kMiB, SEEK_DATA);
  Seek(l, fd, 5 * kMiB, SEEK_HOLE);
  ReadRuns(l, fd, 8 * kMiB - 10, 20);
  // Bad input: the kernel's answers, and kvfs's for what reaches it.
  l->Call("fallocate of 0 bytes", Fallocate(fd, 0, 0, 0));
  l->Call("fallocate at a negative offset", Fallocate(fd, 0, -1, 10));
  l->Call("fallocate with an unknown mode", Fallocate(fd, 0x1000, 0, 10));
  l->Call("punch and zero together",
          Fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 0, 10));
  l->Call("fallocate past the largest file", Fallocate(fd, 0, (off_t{1} << 62), 4096));
  const int ro = ::open(l->P("f").c_str(), O_RDONLY | O_CLOEXEC);
  l->Call("fallocate read-only", Fallocate(ro, 0, 0, 10));
  if (ro >= 0) ::close(ro);
  const int dir = ::open(l->P(".").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  l->Call("fallocate a directory", Fallocate(dir, 0, 0, 10));
  l->Call("SEEK_DATA in a directory", dir < 0 ? -1 : ::lseek(dir, 0, SEEK_DATA));
  if (dir >= 0) ::close(dir);
  if (fd >= 0) ::close(fd);
  // A file of one small write: inline in kvfs, one block on ext4.
  l->Call("create small", Touch(l->P("small")));
  const int small = ::open(l->P("small").c_str(), O_RDWR | O_CLOEXEC);
  l->Call("pwrite 100", small < 0 ? -1 : ::pwrite(small, std::string(100, 's').data(), 100, 0));
  Blocks(l, "small");
  Seek(l, small, 0, SEEK_HOLE);
  Seek(l, small, 100, SEEK_DATA);
  l->Call("punch the middle", Fallocate(small, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 10, 20));
  ReadRuns(l, small, 0, 100);
  if (small >= 0) ::close(small);
  // A sparse file by truncate, then du.
  l->Call("create sparse", Touch(l->P("sparse")));
  l->Call("truncate", ::truncate(l->P("sparse").c_str(), 1024 * kMiB));
  Blocks(l, "sparse");
}

// Limits: RLIMIT_FSIZE makes writes, truncates and reservations past it EFBIG (SIGXFSZ
// ignored here, so the errno shows), in a child process whose limit it is.
void FileSizeLimit(Log* l) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return l->Text("pipe failed");
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    ::signal(SIGXFSZ, SIG_IGN);
    const rlimit lim{kMiB, kMiB};
    Log child(l->P("."));
    child.Call("setrlimit FSIZE 1 MiB", ::setrlimit(RLIMIT_FSIZE, &lim));
    const int fd = ::open(child.P("limited").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
    child.Call("open", fd);
    child.Call("pwrite below", ::pwrite(fd, "x", 1, kMiB - 1));
    child.Call("pwrite past", ::pwrite(fd, "x", 1, kMiB));
    child.Call("ftruncate past", ::ftruncate(fd, kMiB + 1));
    child.Call("fallocate past", ::fallocate(fd, 0, 0, 2 * kMiB));
    child.Call("fallocate KEEP_SIZE past", ::fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 2 * kMiB));
    child.Call("fallocate below", ::fallocate(fd, 0, 0, kMiB));
    const std::string& out = child.text();
    if (::write(fds[1], out.data(), out.size()) != static_cast<ssize_t>(out.size())) _exit(1);
    _exit(0);
  }
  ::close(fds[1]);
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof(buf))) > 0;)
    out.append(buf, static_cast<size_t>(n));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  for (const std::string& line : Lines(out)) l->Text(line);
  l->Text("child status " + std::to_string(status));
  StatLine(l, "limited");
}

// What SpecialFiles leaves, read again.
void SpecialFilesAfter(Log* l) {
  for (const char* n : {"p2", "b", "d", "d/s", "big"}) StatLine(l, n);
}

// A tree holding every type: files (empty, small, chunked), a symlink, an empty directory, a
// FIFO, a socket, character and block devices.
void MakeTypesTree(const std::string& root) {
  ASSERT_EQ(::mkdir(root.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((root + "/sub").c_str(), 0750), 0);
  ASSERT_EQ(::mkdir((root + "/sub/empty").c_str(), 0700), 0);
  ASSERT_TRUE(WriteFile(root + "/empty", ""));
  ASSERT_TRUE(WriteFile(root + "/small", "small file\n"));
  ASSERT_TRUE(WriteFile(root + "/sub/big", std::string(100000, 'b')));
  ASSERT_EQ(::symlink("sub/big", (root + "/link").c_str()), 0);
  ASSERT_EQ(::mkfifo((root + "/fifo").c_str(), 0620), 0);
  ASSERT_EQ(::mkfifo((root + "/sub/fifo2").c_str(), 0600), 0);
  ASSERT_EQ(BindSocket(root + "/sock"), 0);
  ASSERT_EQ(::mknod((root + "/null").c_str(), S_IFCHR | 0666, makedev(1, 3)), 0);
  ASSERT_EQ(::mknod((root + "/sub/loop").c_str(), S_IFBLK | 0660, makedev(7, 1)), 0);
  // Hard links: within a directory, across directories, of a FIFO.
  ASSERT_EQ(::link((root + "/small").c_str(), (root + "/small.hard").c_str()), 0);
  ASSERT_EQ(::link((root + "/sub/big").c_str(), (root + "/big.hard").c_str()), 0);
  ASSERT_EQ(::link((root + "/sub/big").c_str(), (root + "/sub/empty/big.hard2").c_str()), 0);
  ASSERT_EQ(::link((root + "/fifo").c_str(), (root + "/sub/fifo.hard").c_str()), 0);
}

// Every name under `dir` with its type, mode, links, device numbers, size and target: what two
// copies of a tree must share (times are not: tar and cp keep seconds differently for
// sockets). "" and the command's output if it fails.
std::string Manifest(const std::string& dir) {
  const CmdResult r = Sh("cd " + Quote(dir) +
                         " && find . -mindepth 1 -exec stat -c '%F %n %a %h %t:%T %s %N' {} + | "
                         "LC_ALL=C sort");
  if (r.exit_code != 0) return "manifest failed: " + r.Describe();
  // Which names are one file: groups of names by inode number (the numbers differ between
  // copies, the groups must not).
  const CmdResult inodes =
      Sh("cd " + Quote(dir) + " && find . -mindepth 1 ! -type d -links +1 -printf '%i %p\\n'");
  if (inodes.exit_code != 0) return "find failed: " + inodes.Describe();
  std::map<std::string, std::set<std::string>> by_inode;
  for (const std::string& line : Lines(inodes.output)) {
    const size_t sp = line.find(' ');
    if (sp != std::string::npos) by_inode[line.substr(0, sp)].insert(line.substr(sp + 1));
  }
  std::set<std::string> groups;
  for (const auto& [ino, names] : by_inode) {
    std::string g = "one file:";
    for (const std::string& n : names) g += " " + n;
    groups.insert(g);
  }
  std::string out = r.output;
  for (const std::string& g : groups) out += g + "\n";
  return out;
}

// The link counts DirectoryLinks leaves, read again (after a remount, in the mount).
void DirectoryLinksAfter(Log* l) {
  for (const char* n : {".", "d", "e", "d/f", "e/empty", "d/moved"}) l->Nlink(n);
}

// --- the fixture -----------------------------------------------------------------------------

class MountFilesTest : public testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (const std::string why = FuseSkipReason(); !why.empty()) {
      GTEST_SKIP() << "MOUNT TESTS SKIPPED: " << why;
    }
    MountOptions o;
    o.engine = GetParam();
    // A device node opens only on a mount without nodev, which every FUSE mount has unless
    // root asks (as the local disk here is mounted).
    o.fuse_options = {"dev"};
    m_ = std::make_unique<KvfsMount>(o);
    ASSERT_EQ(::mkdir(m_->Sub("local").c_str(), 0755), 0);
    ASSERT_TRUE(m_->Mount());
  }

  // Runs `script` in a fresh directory `name` on the local disk and in the mount, and expects
  // the same lines from both.
  void Compare(const std::string& name, const std::function<void(Log*)>& script) {
    ASSERT_EQ(::mkdir(Local(name).c_str(), 0755), 0);
    ASSERT_EQ(::mkdir(Mounted(name).c_str(), 0755), 0);
    Again(name, script);
  }
  // The same in the directories Compare made (a script reading what an earlier one left).
  void Again(const std::string& name, const std::function<void(Log*)>& script) {
    Log local(Local(name)), mounted(Mounted(name));
    script(&local);
    script(&mounted);
    const std::vector<std::string> got = Lines(mounted.text());
    const std::vector<std::string> want = Lines(local.text());
    std::string differences;
    for (size_t i = 0; i < std::max(got.size(), want.size()); ++i) {
      const std::string g = i < got.size() ? got[i] : "(nothing)";
      const std::string w = i < want.size() ? want[i] : "(nothing)";
      if (g != w) differences += "  mount: " + g + "\n  local: " + w + "\n";
    }
    EXPECT_EQ(differences, "") << "the mount and the local disk differ (" << got.size() << " and "
                               << want.size() << " lines)";
  }
  std::string Local(const std::string& name) const { return m_->Sub("local/" + name); }
  std::string Mounted(const std::string& name) const { return m_->At(name); }
  KvfsMount& m() { return *m_; }

  std::unique_ptr<KvfsMount> m_;
};

TEST_P(MountFilesTest, DirectoryLinkCountsAreExt4sThroughMkdirRmdirAndRenames) {
  Compare("links", DirectoryLinks);
  // find(1) skips the entries of a directory whose link count says it has no subdirectories
  // left to visit: a count too low hides directories from it.
  const CmdResult local = Sh("cd " + Quote(Local("links")) + " && find . -type d | LC_ALL=C sort");
  const CmdResult mounted =
      Sh("cd " + Quote(Mounted("links")) + " && find . -type d | LC_ALL=C sort");
  EXPECT_EQ(mounted.output, local.output);
  ASSERT_TRUE(m().Remount());
  Again("links", DirectoryLinksAfter);
  ASSERT_TRUE(m().Unmount());
  const CmdResult check =
      Exec({KvfsBinary(), "check", "--engine", GetParam(), "--data", m().data()});
  EXPECT_EQ(check.exit_code, 0) << check.Describe();
}

TEST_P(MountFilesTest, HardLinksKeepNlinkCtimeAndDataAsExt4) {
  Compare("hard", HardLinks);
  ASSERT_TRUE(m().Remount());
  Again("hard", HardLinksAfter);
  ASSERT_TRUE(m().Unmount());
  const CmdResult check =
      Exec({KvfsBinary(), "check", "--engine", GetParam(), "--data", m().data()});
  EXPECT_EQ(check.exit_code, 0) << check.Describe();
}

TEST_P(MountFilesTest, XattrsAnswerAsExt4AndStayWithTheFile) {
  Compare("xattrs", Xattrs);
  ASSERT_TRUE(m().Remount());
  Again("xattrs", XattrsAfter);
  ASSERT_TRUE(m().Unmount());
  const CmdResult check =
      Exec({KvfsBinary(), "check", "--engine", GetParam(), "--data", m().data()});
  EXPECT_EQ(check.exit_code, 0) << check.Describe();
}

// What kvfs allows beyond ext4 (README, "Where kvfs differs"): ext4 keeps a file's attributes
// in one 4 KiB block (ENOSPC past it); kvfs keeps thousands, each its own key, up to names of
// 64 KiB in all (listxattr's largest answer) and 1 MiB of names and values, then ENOSPC. All of
// them come back through listxattr and after a remount.
TEST_P(MountFilesTest, AFileKeepsThousandsOfXattrsUpToItsDocumentedLimit) {
  const std::string f = Mounted("many");
  ASSERT_EQ(Touch(f), 0);
  size_t list = 0;
  for (int i = 0; i < 3000; ++i) {
    const std::string name = "user.attribute" + std::to_string(i);
    ASSERT_EQ(::setxattr(f.c_str(), name.c_str(), "12345678", 8, 0), 0) << i << " " << errno;
    list += name.size() + 1;
  }
  EXPECT_EQ(::listxattr(f.c_str(), nullptr, 0), static_cast<ssize_t>(list));
  // Names of 254 bytes until listxattr's 64 KiB is full: ENOSPC, and the list still reads.
  int added = 0;
  int err = 0;
  for (;; ++added) {
    std::string name = "user.long" + std::to_string(added) + ".";
    name += std::string(254 - name.size(), 'n');
    if (::setxattr(f.c_str(), name.c_str(), "", 0, 0) != 0) {
      err = errno;
      break;
    }
    list += 255;
  }
  EXPECT_EQ(err, ENOSPC);
  EXPECT_LE(list, 65536u);
  EXPECT_GT(list + 255, 65536u);
  std::string buf(65536, '\0');
  EXPECT_EQ(::listxattr(f.c_str(), buf.data(), buf.size()), static_cast<ssize_t>(list));
  ASSERT_TRUE(m().Remount());
  EXPECT_EQ(::listxattr(f.c_str(), buf.data(), buf.size()), static_cast<ssize_t>(list));
  char v[16];
  EXPECT_EQ(::getxattr(f.c_str(), "user.attribute2999", v, sizeof v), 8);
  // Values: 1 MiB of names and values in all.
  const std::string g = Mounted("big");
  ASSERT_EQ(Touch(g), 0);
  const std::string value(65536, 'v');
  int values = 0;
  while (::setxattr(g.c_str(), ("user.v" + std::to_string(values)).c_str(), value.data(),
                    value.size(), 0) == 0) {
    ++values;
  }
  EXPECT_EQ(errno, ENOSPC);
  EXPECT_EQ(values, 15);
  ASSERT_TRUE(m().Unmount());
  const CmdResult check =
      Exec({KvfsBinary(), "check", "--engine", GetParam(), "--data", m().data()});
  EXPECT_EQ(check.exit_code, 0) << check.Describe();
}

TEST_P(MountFilesTest, HolesAndFallocateAnswerAsExt4) {
  Compare("holes", HolesAndFallocate);
  Compare("limits", FileSizeLimit);
  ASSERT_TRUE(m().Remount());
  Again("holes", [](Log* l) {
    for (const char* n : {"small", "sparse"}) Blocks(l, n);  // f's: ext4 holds its reservation
  });
}

// What kvfs does differently, on purpose (README, "Where kvfs differs"): no blocks are held
// ahead, so st_blocks after fallocate counts only what was written; COLLAPSE_RANGE and
// INSERT_RANGE are EOPNOTSUPP (ext4 moves extents).
TEST_P(MountFilesTest, FallocateHoldsNoSpaceAheadAndKeepsNoExtentModes) {
  const std::string f = Mounted("f");
  const int fd = ::open(f.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::fallocate(fd, 0, 0, 64 * kMiB), 0) << std::strerror(errno);
  struct stat st;
  ASSERT_EQ(::fstat(fd, &st), 0);
  EXPECT_EQ(st.st_size, 64 * kMiB);
  EXPECT_EQ(st.st_blocks, 0);
  errno = 0;
  EXPECT_EQ(::fallocate(fd, FALLOC_FL_COLLAPSE_RANGE, 0, 4096), -1);
  EXPECT_EQ(errno, EOPNOTSUPP);
  EXPECT_EQ(::fallocate(fd, FALLOC_FL_INSERT_RANGE, 0, 4096), -1);
  EXPECT_EQ(errno, EOPNOTSUPP);
  // More than the disk holds: ENOSPC, as ext4, and the size stays.
  EXPECT_EQ(::fallocate(fd, 0, 0, off_t{1} << 50), -1);
  EXPECT_EQ(errno, ENOSPC);
  ASSERT_EQ(::fstat(fd, &st), 0);
  EXPECT_EQ(st.st_size, 64 * kMiB);
  ::close(fd);
}

// The tools: fallocate(1) of 1 GiB in under a second, du of a sparse file as on ext4, and cp
// --sparse=always keeping holes.
TEST_P(MountFilesTest, FallocateOfAGibibyteIsQuickAndDuSeesHoles) {
  const auto start = std::chrono::steady_clock::now();
  const CmdResult r = Exec({"fallocate", "-l", "1G", Mounted("big")});
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_LT(took, std::chrono::seconds(1));
  std::printf("fallocate -l 1G through the mount: %.3f s\n",
              std::chrono::duration<double>(took).count());
  const std::string make =
      "truncate -s 1G sparse && printf data | dd of=sparse bs=1 seek=$((512*1024*1024)) "
      "conv=notrunc status=none && cp --sparse=always sparse copy && du -k sparse copy && "
      "stat -c '%s %b' sparse copy";
  const CmdResult local = Sh("cd " + Quote(m().Sub("local")) + " && " + make);
  const CmdResult mounted = Sh("cd " + Quote(m().mnt()) + " && " + make);
  EXPECT_EQ(mounted.exit_code, 0) << mounted.Describe();
  EXPECT_EQ(mounted.output, local.output);
}

// truncate(1) and O_TRUNC of big files through the mount: what a local disk shows (content,
// size, blocks) after the file is cut, extended again and written into the dropped range, also
// after a remount (the dropped chunks are reclaimed in the background meanwhile, or by the next
// mount).
TEST_P(MountFilesTest, TruncatedBytesReadAsZerosAfterTheFileGrowsAgain) {
  const std::string script =
      "yes abcdefgh | head -c 16M > big && truncate -s 0 big && truncate -s 16M big && "
      "printf new | dd of=big bs=1 seek=$((8*1024*1024)) conv=notrunc status=none && "
      "yes 12345678 | head -c 8M > cut && truncate -s 4096 cut && truncate -s 8M cut && "
      "yes xy | head -c 16M > over && : > over && truncate -s 16M over && "
      "yes zz | head -c 4M >> over && ";
  const std::string report = "md5sum big cut over && stat -c '%n %s %b' big cut over";
  const CmdResult local = Sh("cd " + Quote(m().Sub("local")) + " && " + script + report);
  const CmdResult mounted = Sh("cd " + Quote(m().mnt()) + " && " + script + report);
  EXPECT_EQ(mounted.exit_code, 0) << mounted.Describe();
  EXPECT_EQ(mounted.output, local.output);
  // Cut, grown and read back at once, so the reads most likely come before the reclaimer has
  // deleted the 8192 dropped chunks: zeros all the same (O_DIRECT: from the daemon, not the
  // kernel's cache).
  const std::string path = Mounted("quick");
  int fd = ::open(path.c_str(), O_CREAT | O_RDWR, 0644);
  ASSERT_GE(fd, 0);
  const std::string piece(1 << 20, 'q');
  for (int i = 0; i < 32; ++i) {
    ASSERT_EQ(::write(fd, piece.data(), piece.size()), static_cast<ssize_t>(piece.size()));
  }
  ::close(fd);
  for (int round = 0; round < 2; ++round) {
    fd = ::open(path.c_str(), O_RDWR | O_TRUNC | O_DIRECT);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    ASSERT_EQ(::ftruncate(fd, 32 << 20), 0);
    alignas(4096) static char buf[1 << 20];
    for (off_t off : {off_t{0}, off_t{20} << 20, off_t{31} << 20}) {
      ASSERT_EQ(::pread(fd, buf, sizeof buf, off), static_cast<ssize_t>(sizeof buf));
      EXPECT_EQ(std::count(buf, buf + sizeof buf, '\0'), static_cast<ssize_t>(sizeof buf))
          << "round " << round << ": old bytes at " << off;
    }
    std::memset(buf, 'q', sizeof buf);
    for (off_t off = 0; off < (off_t{32} << 20); off += sizeof buf) {
      ASSERT_EQ(::pwrite(fd, buf, sizeof buf, off), static_cast<ssize_t>(sizeof buf));
    }
    ::close(fd);
  }
  ASSERT_TRUE(m().Remount());
  const CmdResult again = Sh("cd " + Quote(m().mnt()) + " && " + report);
  EXPECT_EQ(again.output, local.output);
}

// statfs shows the data directory's file system as a passthrough would: free blocks (bfree,
// root's reserve included) apart from the available ones (bavail), so df's used space is right.
TEST_P(MountFilesTest, StatfsShowsTheDataDirectorysFreeAndAvailableSpace) {
  struct statvfs local, mounted;
  ASSERT_EQ(::statvfs(m().data().c_str(), &local), 0);
  ASSERT_EQ(::statvfs(m().mnt().c_str(), &mounted), 0);
  const auto bytes = [](const struct statvfs& s, fsblkcnt_t n) {
    return static_cast<double>(n) * static_cast<double>(s.f_frsize);
  };
  const double slack = 256.0 * kMiB;  // other writers on the disk meanwhile
  EXPECT_NEAR(bytes(mounted, mounted.f_blocks), bytes(local, local.f_blocks), slack);
  EXPECT_NEAR(bytes(mounted, mounted.f_bfree), bytes(local, local.f_bfree), slack);
  EXPECT_NEAR(bytes(mounted, mounted.f_bavail), bytes(local, local.f_bavail), slack);
  if (local.f_bfree > local.f_bavail + (slack / local.f_frsize)) {
    EXPECT_GT(mounted.f_bfree, mounted.f_bavail) << "root's reserve is missing from bfree";
  }
}

TEST_P(MountFilesTest, SpecialFilesAreKeptAndTakeEveryCallAFileTakes) {
  Compare("special", SpecialFiles);
  ASSERT_TRUE(m().Remount());
  Again("special", SpecialFilesAfter);
  ASSERT_TRUE(m().Unmount());
  const CmdResult check =
      Exec({KvfsBinary(), "check", "--engine", GetParam(), "--data", m().data()});
  EXPECT_EQ(check.exit_code, 0) << check.Describe();
  EXPECT_NE(check.output.find("special files"), std::string::npos) << check.output;
}

// A FIFO in the mount carries bytes between two processes (the kernel's pipe; the daemon keeps
// only the node).
TEST_P(MountFilesTest, AFifoInTheMountJoinsTwoProcesses) {
  const std::string fifo = Mounted("fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const CmdResult r =
      Sh("(echo through the fifo > " + Quote(fifo) + " &) ; cat " + Quote(fifo), seconds(30));
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(r.output, "through the fifo\n");
}

// cp -a, tar and rsync -a copy a tree holding every file type into the mount and out of it
// again exactly as they do into a local directory (sockets included: tar skips them, saying so,
// here and there alike).
TEST_P(MountFilesTest, CpTarAndRsyncCopyEveryFileTypeAsOnTheLocalDisk) {
  const std::string src = m().Sub("src");
  MakeTypesTree(src);
  if (HasFatalFailure()) return;
  const std::string want = Manifest(src);
  ASSERT_NE(want.find("fifo"), std::string::npos) << want;
  struct Tool {
    const char* name;
    std::string (*command)(const std::string& from, const std::string& to);
  };
  const Tool tools[] = {
      {"cp", [](const std::string& f,
                const std::string& t) { return "cp -a " + Quote(f) + " " + Quote(t); }},
      {"tar",
       [](const std::string& f, const std::string& t) {
         return "mkdir " + Quote(t) + " && tar -C " + Quote(f) + " -cf - . | tar -C " + Quote(t) +
                " -xpf -";
       }},
      {"rsync",
       [](const std::string& f, const std::string& t) {
         return "rsync -aH " + Quote(f + "/") + " " + Quote(t);
       }},
  };
  for (const Tool& tool : tools) {
    SCOPED_TRACE(tool.name);
    const std::string local = Local(std::string(tool.name) + "-in");
    const std::string mounted = Mounted(std::string(tool.name) + "-in");
    const CmdResult into_local = Sh(tool.command(src, local));
    const CmdResult into_mount = Sh(tool.command(src, mounted));
    EXPECT_EQ(into_mount.exit_code, into_local.exit_code) << into_mount.Describe();
    EXPECT_EQ(Manifest(mounted), Manifest(local));
    if (std::string(tool.name) != "tar") {
      EXPECT_EQ(Manifest(mounted), want);
    }
    // And out of the mount again.
    const std::string back = Local(std::string(tool.name) + "-back");
    const CmdResult out = Sh(tool.command(mounted, back));
    EXPECT_EQ(out.exit_code, into_local.exit_code) << out.Describe();
    EXPECT_EQ(Manifest(back), Manifest(local));
  }
  ASSERT_TRUE(m().Remount());
  for (const Tool& tool : tools) {
    EXPECT_EQ(Manifest(Mounted(std::string(tool.name) + "-in")),
              Manifest(Local(std::string(tool.name) + "-in")))
        << tool.name << ", after a remount";
  }
}

INSTANTIATE_TEST_SUITE_P(Engines, MountFilesTest, testing::ValuesIn(engines::FileEngineNames()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace kvfs::mount_test
