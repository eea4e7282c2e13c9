// Security through a real mount (README, "Security"): data at rest as private as the files it
// holds, stores that are not private refused, the control files the mounting user's alone, mounts
// by a user who is not root, and bad input from other users of an allow_other mount.
//
// Every call another user makes runs in a child process that has dropped to that uid (65534,
// "nobody"). Bad input is judged against the kernel: each call is made the same way in a plain
// directory under /tmp, and the errnos must be the same; after each case the daemon must answer
// the next request. The mounts by a user who is not root run in a private mount namespace
// (unshare -m), where the test binds its own device node over /dev/fuse and its own files over
// /etc/fuse.conf and /usr/bin/fusermount3: nothing outside the namespace changes.
//
// Needs root and /dev/fuse (skipped otherwise). Every mount is taken down whatever happens: the
// fixture's destructor, and the namespace script's trap.
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "engines/engine.h"
#include "tests/fusefs/mount_fixture.h"
#include "tests/fusefs/stats_checks.h"

namespace kvfs::mount_test {
namespace {

namespace fs = std::filesystem;

constexpr uid_t kNobody = 65534;
constexpr uid_t kStranger = 12345;  // another user, with no passwd entry

std::string ErrnoName(int e) {
  if (e == 0) return "success";
  const char* n = ::strerrorname_np(e);
  return n != nullptr ? n : "errno " + std::to_string(e);
}

// What a call returned: "success", or the errno's name.
std::string Outcome(long rc) { return rc == -1 ? ErrnoName(errno) : "success"; }

long OpenClose(const std::string& path, int flags, mode_t mode = 0644) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) return -1;
  ::close(fd);
  return 0;
}

// Runs `fn` in a child process as uid:gid with no supplementary groups, and returns what it
// appended to its string (or a line saying the child failed). With `open_files`, the child's
// descriptor limit is raised to that many first (as root, before the uid changes).
std::string RunAs(uid_t uid, const std::function<void(std::string*)>& fn, rlim_t open_files = 0) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return "pipe failed";
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    if (open_files > 0) {
      const rlimit lim{open_files, open_files};
      if (::setrlimit(RLIMIT_NOFILE, &lim) != 0) ::_exit(249);
    }
    if (::setgroups(0, nullptr) != 0 || ::setresgid(uid, uid, uid) != 0 ||
        ::setresuid(uid, uid, uid) != 0) {
      ::_exit(250);
    }
    std::string out;
    fn(&out);
    size_t done = 0;
    while (done < out.size()) {
      const ssize_t n = ::write(fds[1], out.data() + done, out.size() - done);
      if (n <= 0) ::_exit(251);
      done += static_cast<size_t>(n);
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string out;
  char buf[65536];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof(buf))) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  if (pid < 0 || ::waitpid(pid, &status, 0) != pid) return out + "\n(child lost)";
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return out + "\n(child ended with status " + std::to_string(status) + ")";
  }
  return out;
}

// Appends "label: outcome\n".
void Note(std::string* out, const std::string& label, long rc) {
  *out += label + ": " + Outcome(rc) + "\n";
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  for (size_t nl; (nl = text.find('\n', start)) != std::string::npos; start = nl + 1) {
    lines.push_back(text.substr(start, nl - start));
  }
  if (start < text.size()) lines.push_back(text.substr(start));
  return lines;
}

std::string Hex(const std::string& s) {
  static const char* const kDigits = "0123456789abcdef";
  std::string out;
  for (const char c : s) {
    out += kDigits[static_cast<unsigned char>(c) >> 4];
    out += kDigits[static_cast<unsigned char>(c) & 15];
  }
  return out;
}

// Every name in `dir` but "." and "..", sorted, hex-encoded, joined by ','.
std::string Listing(const std::string& dir) {
  std::vector<std::string> names;
  if (DIR* d = ::opendir(dir.c_str())) {
    // NOLINTNEXTLINE(concurrency-mt-unsafe): a stream of this process's only thread
    while (const dirent* e = ::readdir(d)) {
      const std::string n = e->d_name;
      if (n != "." && n != "..") names.push_back(Hex(n));
    }
    ::closedir(d);
  } else {
    return "opendir: " + ErrnoName(errno);
  }
  std::sort(names.begin(), names.end());
  std::string out;
  for (const std::string& n : names) out += n + ",";
  return out;
}

// --- the cases of bad input (each run as another user, in `base`, a 0777 directory) ---------

void NameLengths(const std::string& base, std::string* out) {
  const std::string n255(255, 'n'), n256(256, 'n');
  Note(out, "create a 255-byte name", OpenClose(base + "/" + n255, O_CREAT | O_EXCL | O_WRONLY));
  Note(out, "create a 256-byte name", OpenClose(base + "/" + n256, O_CREAT | O_EXCL | O_WRONLY));
  struct stat st;
  Note(out, "stat a 255-byte name", ::stat((base + "/" + n255).c_str(), &st));
  Note(out, "stat a 256-byte name", ::stat((base + "/" + n256).c_str(), &st));
  Note(out, "mkdir a 255-byte name", ::mkdir((base + "/" + std::string(255, 'd')).c_str(), 0755));
  Note(out, "mkdir a 256-byte name", ::mkdir((base + "/" + n256).c_str(), 0755));
  Note(out, "rename to a 256-byte name",
       ::rename((base + "/" + n255).c_str(), (base + "/" + n256).c_str()));
  Note(out, "rename to a 255-byte name",
       ::rename((base + "/" + n255).c_str(), (base + "/" + std::string(255, 'r')).c_str()));
  Note(out, "symlink at a 256-byte name", ::symlink("target", (base + "/" + n256).c_str()));
  Note(out, "symlink at a 255-byte name",
       ::symlink("target", (base + "/" + std::string(255, 's')).c_str()));
  Note(out, "symlink to 4095 bytes",
       ::symlink(std::string(4095, 't').c_str(), (base + "/long-target").c_str()));
  Note(out, "symlink to 4096 bytes",
       ::symlink(std::string(4096, 't').c_str(), (base + "/too-long-target").c_str()));
  char buf[8192];
  const ssize_t n = ::readlink((base + "/long-target").c_str(), buf, sizeof(buf));
  *out += "readlink of the 4095-byte target: " + std::to_string(n) + "\n";
  Note(out, "unlink a 256-byte name", ::unlink((base + "/" + n256).c_str()));
  Note(out, "rmdir a 256-byte name", ::rmdir((base + "/" + n256).c_str()));
  Note(out, "unlink a 255-byte name", ::unlink((base + "/" + std::string(255, 'r')).c_str()));
  Note(out, "rmdir a 255-byte name", ::rmdir((base + "/" + std::string(255, 'd')).c_str()));
}

void EveryByte(const std::string& base, std::string* out) {
  const std::string dir = base + "/bytes";
  Note(out, "mkdir bytes", ::mkdir(dir.c_str(), 0777));
  std::string all;
  for (int b = 1; b < 256; ++b) {
    if (b == '/') continue;
    const std::string name(1, static_cast<char>(b));
    all += name;
    Note(out, "create the name " + Hex(name),
         OpenClose(dir + "/" + name, O_CREAT | O_EXCL | O_WRONLY));
  }
  Note(out, "create the name of every byte",
       OpenClose(dir + "/" + all, O_CREAT | O_EXCL | O_WRONLY));
  const int fd = ::open((dir + "/" + all).c_str(), O_RDWR | O_CLOEXEC);
  Note(out, "open it again", fd);
  if (fd >= 0) {
    Note(out, "write to it", ::pwrite(fd, all.data(), all.size(), 0) == 254 ? 0 : -1);
    std::string back(254, '\0');
    Note(out, "read it back",
         ::pread(fd, back.data(), back.size(), 0) == 254 && back == all ? 0 : -1);
    ::close(fd);
  }
  const std::string odd = "\n\t\x7f\xff\xc3\x28 .. -";  // control bytes, invalid UTF-8
  Note(out, "mkdir an odd name", ::mkdir((dir + "/d" + odd).c_str(), 0755));
  Note(out, "rename into it",
       ::rename((dir + "/" + all).c_str(), (dir + "/d" + odd + "/" + odd).c_str()));
  *out += "listing: " + Listing(dir) + "\n";
  *out += "listing inside: " + Listing(dir + "/d" + odd) + "\n";
}

// Directories under `base`, so that `base`/.../<last> is exactly `total` bytes long; returns it
// (the directories on the way exist).
std::string PathOfLength(const std::string& base, size_t total, std::string* out) {
  std::string p = base + "/near-path-max";
  if (::mkdir(p.c_str(), 0777) != 0 && errno != EEXIST) Note(out, "mkdir near-path-max", -1);
  while (total - p.size() > 256) {
    p += "/" + std::string(200, 'p');
    if (::mkdir(p.c_str(), 0777) != 0 && errno != EEXIST) Note(out, "mkdir on the way", -1);
  }
  return p + "/" + std::string(total - p.size() - 1, 'z');
}

void NearPathMax(const std::string& base, std::string* out) {
  const std::string at_max = PathOfLength(base, 4095, out);
  Note(out, "create at 4095 bytes", OpenClose(at_max, O_CREAT | O_EXCL | O_WRONLY));
  struct stat st;
  Note(out, "stat at 4095 bytes", ::stat(at_max.c_str(), &st));
  const std::string past = at_max + "z";
  Note(out, "create at 4096 bytes", OpenClose(past, O_CREAT | O_EXCL | O_WRONLY));
  Note(out, "mkdir at 4096 bytes", ::mkdir(past.c_str(), 0755));
  Note(out, "stat at 4096 bytes", ::stat(past.c_str(), &st));
  Note(out, "rename to 4096 bytes", ::rename(at_max.c_str(), past.c_str()));
  Note(out, "unlink at 4095 bytes", ::unlink(at_max.c_str()));
  const std::string dir_at_max = PathOfLength(base, 4095, out);
  Note(out, "mkdir at 4095 bytes", ::mkdir(dir_at_max.c_str(), 0755));
  Note(out, "rmdir at 4095 bytes", ::rmdir(dir_at_max.c_str()));
}

void Xattrs(const std::string& base, const std::string& not_mine, std::string* out) {
  const std::string f = base + "/xattrs";
  const char* p = f.c_str();
  Note(out, "create", OpenClose(f, O_CREAT | O_EXCL | O_WRONLY));
  const std::string n255 = "user." + std::string(250, 'x'), n256 = "user." + std::string(251, 'x');
  Note(out, "set a 255-byte name", ::setxattr(p, n255.c_str(), "v", 1, 0));
  Note(out, "set a 256-byte name", ::setxattr(p, n256.c_str(), "v", 1, 0));
  char buf[16];
  Note(out, "get a 255-byte name", ::getxattr(p, n255.c_str(), buf, sizeof(buf)));
  Note(out, "get a 256-byte name", ::getxattr(p, n256.c_str(), buf, sizeof(buf)));
  Note(out, "remove a 256-byte name", ::removexattr(p, n256.c_str()));
  const std::string big(65537, 'b');
  // The largest value the kernel passes: whether it fits is the file system's own limit (ext4:
  // a file's attributes share one 4 KiB block, ENOSPC; kvfs: 1 MiB per file, README "Where
  // kvfs differs"), so only "fits or ENOSPC" is compared, and the value is removed again.
  const bool fits = ::setxattr(p, "user.big", big.data(), 65536, 0) == 0;
  *out += std::string("set a 65536-byte value: ") +
          (fits || errno == ENOSPC ? "success or ENOSPC" : ErrnoName(errno)) + "\n";
  if (fits) ::removexattr(p, "user.big");
  Note(out, "set a 65537-byte value", ::setxattr(p, "user.big", big.data(), 65537, 0));
  Note(out, "set an empty value", ::setxattr(p, "user.empty", "", 0, 0));
  Note(out, "set ten bytes", ::setxattr(p, "user.ten", "0123456789", 10, 0));
  Note(out, "get into 5 bytes", ::getxattr(p, "user.ten", buf, 5));
  *out += "get its size: " + std::to_string(::getxattr(p, "user.ten", nullptr, 0)) + "\n";
  Note(out, "list into 1 byte", ::listxattr(p, buf, 1));
  *out += "list's size: " + std::to_string(::listxattr(p, nullptr, 0)) + "\n";
  Note(out, "create an existing one", ::setxattr(p, "user.ten", "x", 1, XATTR_CREATE));
  Note(out, "replace a missing one", ::setxattr(p, "user.none", "x", 1, XATTR_REPLACE));
  Note(out, "get a missing one", ::getxattr(p, "user.none", buf, sizeof(buf)));
  Note(out, "remove a missing one", ::removexattr(p, "user.none"));
  Note(out, "set trusted.*", ::setxattr(p, "trusted.x", "x", 1, 0));
  Note(out, "set security.*", ::setxattr(p, "security.x", "x", 1, 0));
  Note(out, "set on another user's file", ::setxattr(not_mine.c_str(), "user.x", "x", 1, 0));
  Note(out, "set with no namespace", ::setxattr(p, "nonamespace", "x", 1, 0));
  Note(out, "get with no namespace", ::getxattr(p, "nonamespace", buf, sizeof(buf)));
  Note(out, "remove with no namespace", ::removexattr(p, "nonamespace"));
  Note(out, "set a namespace with no name", ::setxattr(p, "user.", "x", 1, 0));
  Note(out, "get a namespace with no name", ::getxattr(p, "user.", buf, sizeof(buf)));
}

// 10,000 files created and held open at once, from 8 threads.
void TenThousandOpens(const std::string& base, std::string* out) {
  constexpr int kFiles = 10000, kThreads = 8;
  const std::string dir = base + "/opens";
  Note(out, "mkdir opens", ::mkdir(dir.c_str(), 0777));
  std::vector<int> fds(kFiles, -1);
  std::vector<int> errs(kFiles, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; i < kFiles; i += kThreads) {
        const std::string path = dir + "/f" + std::to_string(i);
        fds[i] = ::open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
        errs[i] = fds[i] < 0 ? errno : 0;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  std::map<std::string, int> outcomes;
  for (int i = 0; i < kFiles; ++i) ++outcomes[ErrnoName(errs[i])];
  for (const auto& [what, count] : outcomes) {
    *out += "open: " + what + " x" + std::to_string(count) + "\n";
  }
  int written = 0;
  for (int i = 0; i < kFiles; i += 97) written += fds[i] >= 0 && ::write(fds[i], "x", 1) == 1;
  *out += "written through held descriptors: " + std::to_string(written) + "\n";
  for (const int fd : fds) {
    if (fd >= 0) ::close(fd);
  }
  int entries = 0;
  if (DIR* d = ::opendir(dir.c_str())) {
    // NOLINTNEXTLINE(concurrency-mt-unsafe): the threads above are joined
    while (::readdir(d) != nullptr) ++entries;
    ::closedir(d);
  }
  *out += "entries: " + std::to_string(entries) + "\n";
}

// A mount of one store of `engine` ("": the embedded default, one store per engine).
MountOptions Options(const std::string& engine, std::vector<std::string> fuse_options = {}) {
  MountOptions o;
  o.engine = engine;
  o.fuse_options = std::move(fuse_options);
  return o;
}

class MountSecurityTest : public testing::Test {
 protected:
  void SetUp() override {
    if (const std::string why = FuseSkipReason(); !why.empty()) {
      GTEST_SKIP() << "MOUNT TESTS SKIPPED: " << why;
    }
  }
};

// The daemon still answers: the mount's root, /.kvfs/stats (as JSON), and a file written and
// read back in the first store.
testing::AssertionResult DaemonAnswers(const KvfsMount& m, const std::string& store) {
  if (::kill(m.daemon_pid(), 0) != 0) return testing::AssertionFailure() << "the daemon is gone";
  struct stat st;
  if (::stat(m.mnt().c_str(), &st) != 0) {
    return testing::AssertionFailure() << "stat of the mount: " << ErrnoName(errno);
  }
  if (!test::ParseJson(ReadFile(m.At(".kvfs/stats"))).is_object()) {
    return testing::AssertionFailure() << "/.kvfs/stats is not JSON";
  }
  const std::string probe = m.At(store + "/probe");
  if (!WriteFile(probe, "still here") || ReadFile(probe) != "still here") {
    return testing::AssertionFailure() << "cannot write and read back " << probe;
  }
  return testing::AssertionSuccess();
}

// Every name under `dir`, `dir` included.
std::vector<std::string> Walk(const std::string& dir) {
  std::vector<std::string> names{dir};
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    names.push_back(it->path().string());
  }
  return names;
}

TEST_F(MountSecurityTest, DataAtRestIsPrivateOnEveryEngineWhateverTheUmask) {
  KvfsMount m(MountOptions{});
  const std::string root = m.Sub("fresh/kvfs");  // made by kvfs, parents included
  m.options().pass_data = false;
  m.options().extra_args = {"--data", root};
  ASSERT_EQ(::chmod(m.dir().c_str(), 0711), 0);  // others may pass through to root's files
  const mode_t old_umask = ::umask(0);           // the daemon inherits it
  const testing::AssertionResult mounted = m.Mount();
  ::umask(old_umask);
  ASSERT_TRUE(mounted);
  std::vector<std::string> stores;
  for (const auto& e : fs::directory_iterator(m.mnt())) stores.push_back(e.path().filename());
  ASSERT_GE(stores.size(), 2u);
  const std::string secret = "issue-26 secret bytes " + std::to_string(::getpid());
  for (const std::string& s : stores) {
    SCOPED_TRACE(s);
    ASSERT_EQ(::mkdir(m.At(s + "/d").c_str(), 0755), 0);
    for (int i = 0; i < 30; ++i) {
      const std::string f = m.At(s + "/d/f" + std::to_string(i));
      ASSERT_TRUE(WriteFile(f, std::string(static_cast<size_t>(i) * 7000 + 1, 'a' + i % 26)));
    }
    // An append-only store's files cannot move (mount_events_test): f1 keeps its name there.
    const std::string moved = engines::IsAppendOnlyEngine(s) ? "/d/f1" : "/moved";
    if (moved == "/moved") {
      ASSERT_EQ(::rename(m.At(s + "/d/f1").c_str(), m.At(s + moved).c_str()), 0);
    }
    ASSERT_EQ(::unlink(m.At(s + "/d/f2").c_str()), 0);
    ASSERT_EQ(::setxattr(m.At(s + moved).c_str(), "user.k", "v", 1, 0), 0);
    ASSERT_TRUE(WriteFile(m.At(s + "/private"), secret));
    ASSERT_EQ(::chmod(m.At(s + "/private").c_str(), 0600), 0);
  }
  ASSERT_TRUE(m.Unmount());  // every store synced, flushed and closed

  const std::vector<std::string> names = Walk(m.Sub("fresh"));
  ASSERT_GT(names.size(), 10u);
  std::vector<std::string> files;
  for (const std::string& n : names) {
    struct stat st;
    ASSERT_EQ(::lstat(n.c_str(), &st), 0) << n;
    EXPECT_EQ(st.st_mode & 07777, S_ISDIR(st.st_mode) ? 0700u : 0600u)
        << n << " has mode " << std::oct << (st.st_mode & 07777);
    EXPECT_EQ(st.st_uid, 0u) << n;
    if (S_ISREG(st.st_mode)) files.push_back(n);
  }
  // What the issue saw: another user reading a 0600 file's bytes out of the store's files.
  const std::string seen = RunAs(kNobody, [&](std::string* out) {
    for (const std::string& f : files) {
      const int fd = ::open(f.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) {
        if (errno != EACCES) *out += f + ": " + ErrnoName(errno) + "\n";
        continue;
      }
      *out += f + ": readable by uid 65534\n";
      ::close(fd);
    }
  });
  EXPECT_EQ(seen, "");
}

TEST_F(MountSecurityTest, AStoreThatIsNotPrivateOrNotTheUsersIsRefusedByTheMount) {
  KvfsMount m(Options("lsm"));
  ASSERT_TRUE(m.Mount());
  ASSERT_TRUE(WriteFile(m.At("kept"), "kept"));
  ASSERT_TRUE(m.Unmount());
  const auto try_mount = [&] {
    return Exec({KvfsBinary(), "mount", m.mnt(), "--data", m.data(), "--engine", "lsm"});
  };
  ASSERT_EQ(::chmod(m.data().c_str(), 0755), 0);  // as `mkdir` under the usual umask makes it
  CmdResult r = try_mount();
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  EXPECT_NE(r.output.find(m.data() + " has mode 0755"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("fix it with: chmod -R go-rwx " + m.data()), std::string::npos)
      << r.output;
  EXPECT_FALSE(IsMounted(m.mnt()));
  struct stat st;
  ASSERT_EQ(::stat(m.data().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u) << "refused, not repaired";

  ASSERT_EQ(::chmod(m.data().c_str(), 0700), 0);
  ASSERT_EQ(::lchown(m.data().c_str(), kNobody, kNobody), 0);  // a user's store, mounted by root
  r = try_mount();
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  EXPECT_NE(r.output.find(m.data() + " is owned by uid 65534"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("kvfs runs as uid 0"), std::string::npos) << r.output;
  EXPECT_FALSE(IsMounted(m.mnt()));

  ASSERT_EQ(::lchown(m.data().c_str(), 0, 0), 0);
  ASSERT_TRUE(m.Mount()) << "private and root's again";
  EXPECT_EQ(ReadFile(m.At("kept")), "kept");
  ASSERT_TRUE(m.Unmount());
}

TEST_F(MountSecurityTest, TheControlFilesAreTheMountingUsersUnlessTheMountSaysOtherwise) {
  KvfsMount m(Options("", {"allow_other"}));
  ASSERT_EQ(::chmod(m.dir().c_str(), 0711), 0);
  const std::string config = m.At(".kvfs/config"), stats = m.At(".kvfs/stats");
  const auto read_as_nobody = [&] {
    return RunAs(kNobody, [&](std::string* out) {
      Note(out, "config", OpenClose(config, O_RDONLY));
      Note(out, "stats", OpenClose(stats, O_RDONLY));
      Note(out, "list", OpenClose(m.At(".kvfs"), O_RDONLY | O_DIRECTORY));
    });
  };
  ASSERT_TRUE(m.Mount());
  struct stat st;
  ASSERT_EQ(::stat(m.At(".kvfs").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0500u);
  ASSERT_EQ(::stat(config.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0400u);
  EXPECT_EQ(st.st_uid, 0u);
  EXPECT_EQ(read_as_nobody(), "config: EACCES\nstats: EACCES\nlist: EACCES\n");
  EXPECT_NE(ReadFile(config).find("[[store]]"), std::string::npos) << "the owner reads it";
  ASSERT_TRUE(m.Unmount());

  m.options().fuse_options = {"allow_other", "kvfs_public_control"};
  ASSERT_TRUE(m.Mount());
  ASSERT_EQ(::stat(config.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0444u);
  EXPECT_EQ(read_as_nobody(), "config: success\nstats: success\nlist: success\n");
  ASSERT_TRUE(m.Unmount());
}

// Bad input from another user of an allow_other mount, in every store, each call compared with
// the same call in a plain directory under /tmp; the daemon answers after each case.
TEST_F(MountSecurityTest, BadInputFromAnotherUserGetsTheLocalErrnoAndTheDaemonServesOn) {
  KvfsMount m(Options("", {"allow_other"}));
  ASSERT_EQ(::chmod(m.dir().c_str(), 0711), 0);
  const std::string oracle = m.Sub("oracle");  // on the disk under /tmp: the kernel's answers
  ASSERT_EQ(::mkdir(oracle.c_str(), 0777), 0);
  ASSERT_EQ(::chmod(oracle.c_str(), 0777), 0);
  ASSERT_TRUE(WriteFile(oracle + "/roots", "root's"));
  ASSERT_TRUE(m.Mount());
  std::vector<std::string> stores;
  for (const auto& e : fs::directory_iterator(m.mnt())) stores.push_back(e.path().filename());
  ASSERT_GE(stores.size(), 2u);

  struct Case {
    const char* name;
    std::function<void(const std::string& base, std::string* out)> run;
    rlim_t open_files = 0;
  };
  const std::vector<Case> cases = {
      {"names of 255 and 256 bytes", NameLengths},
      {"every byte but '/' and NUL in a name", EveryByte},
      {"paths near PATH_MAX", NearPathMax},
      {"xattr names and values at and past their limits",
       [](const std::string& base, std::string* out) { Xattrs(base, base + "/roots", out); }},
      {"10,000 concurrent opens", TenThousandOpens, 10200},
  };
  // The kernel's answers, once per case (they name no path, so they hold for every store).
  const auto fresh_dir = [](const std::string& b) {
    EXPECT_EQ(::mkdir(b.c_str(), 0777), 0) << b;
    EXPECT_EQ(::chmod(b.c_str(), 0777), 0);
    EXPECT_TRUE(WriteFile(b + "/roots", "root's"));  // another user's file, for the xattrs
  };
  std::vector<std::string> expected;
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string base = oracle + "/" + std::to_string(i);
    fresh_dir(base);
    expected.push_back(RunAs(
        kNobody, [&](std::string* out) { cases[i].run(base, out); }, cases[i].open_files));
  }
  for (const std::string& store : stores) {
    // Compared with a local file system's answers: an append-only store answers EPERM where
    // ext4 renames or truncates by design (its answers are mount_events_test's).
    if (engines::IsAppendOnlyEngine(store)) continue;
    const std::string pub = m.At(store + "/pub");
    fresh_dir(pub);
    for (size_t i = 0; i < cases.size(); ++i) {
      SCOPED_TRACE(store + ": " + cases[i].name);
      const std::string base = pub + "/" + std::to_string(i);
      fresh_dir(base);
      const std::string got = RunAs(
          kNobody, [&](std::string* out) { cases[i].run(base, out); }, cases[i].open_files);
      EXPECT_EQ(Lines(got), Lines(expected[i])) << "through the mount (left) vs /tmp (right)";
      ASSERT_TRUE(DaemonAnswers(m, store));
    }
  }
  ASSERT_TRUE(m.Unmount());  // and the daemon exits 0, without a sanitizer report
}

// --- a mount by a user who is not root, in a private mount namespace ----------------------

TEST_F(MountSecurityTest, AUserWhoIsNotRootMountsEndToEndOrIsToldWhyNot) {
  for (const char* tool : {"unshare", "setpriv", "mknod"}) {
    if (Exec({"sh", "-c", std::string("command -v ") + tool}).exit_code != 0) {
      GTEST_SKIP() << "needs " << tool;
    }
  }
  struct stat fm;
  if (::stat("/usr/bin/fusermount3", &fm) != 0 || !(fm.st_mode & S_ISUID) || fm.st_uid != 0) {
    GTEST_SKIP() << "needs a setuid-root /usr/bin/fusermount3";
  }
  KvfsMount m(MountOptions{});
  ASSERT_EQ(::chmod(m.dir().c_str(), 0711), 0);
  const std::string home = m.Sub("home"), mnt = m.Sub("umnt"), ns = m.Sub("ns");
  for (const std::string& d : {home, mnt, ns}) ASSERT_EQ(::mkdir(d.c_str(), 0755), 0);
  for (const std::string& d : {home, mnt}) ASSERT_EQ(::chown(d.c_str(), kNobody, kNobody), 0);
  const std::string data = home + "/.local/share/kvfs";
  const std::string user =
      "setpriv --reuid=65534 --regid=65534 --clear-groups env HOME=" + Quote(home) + " ";
  const std::string stranger = "setpriv --reuid=" + std::to_string(kStranger) +
                               " --regid=" + std::to_string(kStranger) + " --clear-groups ";
  const std::string kvfs = Quote(KvfsBinary());
  const std::string script =
      "set -u\n"
      "mnt=" +
      Quote(mnt) + "; ns=" + Quote(ns) +
      "\n"
      "cleanup() { if grep -qs \" $mnt \" /proc/self/mountinfo; then " +
      user + kvfs +
      " umount \"$mnt\" >/dev/null 2>&1 || fusermount3 -uz \"$mnt\"; fi; }\n"
      "trap cleanup EXIT\n"
      "mount -t tmpfs -o mode=0755 kvfs-test \"$ns\" || exit 90\n"
      "mknod -m 0600 \"$ns/fuse\" c 10 229 && mount --bind \"$ns/fuse\" /dev/fuse || exit 91\n"
      "printf '#user_allow_other\\n' > \"$ns/fuse.conf\" && "
      "mount --bind \"$ns/fuse.conf\" /etc/fuse.conf || exit 92\n"
      "echo '== device 0600'\n" +
      user + kvfs + " mount \"$mnt\" 2>&1; echo \"rc=$?\"\n" + "test -e " + Quote(data) +
      " && echo 'data created' || echo 'no data'\n"
      "chmod 0666 \"$ns/fuse\"\n"
      "echo '== mounted'\n" +
      user + kvfs + " mount \"$mnt\" >/dev/null 2>&1; echo \"rc=$?\"\n" + user +
      "sh -c 'echo hello > \"$1/lsm/f\" && cat \"$1/lsm/f\"' sh \"$mnt\"\n" + user +
      "stat -c '%a %u %n' \"$mnt/.kvfs\" \"$mnt/.kvfs/config\" \"$mnt/lsm/f\"\n" + user +
      "cat \"$mnt/.kvfs/config\" >/dev/null; echo \"owner reads config: $?\"\n" + stranger +
      "cat \"$mnt/lsm/f\" >/dev/null 2>&1; echo \"stranger reads: $?\"\n" + "find " +
      Quote(home + "/.local") +
      " -perm /077 -printf 'loose %m %p\\n'\n"
      "find " +
      Quote(home + "/.local") +
      " ! -uid 65534 -printf 'not the user %U %p\\n'\n"
      "echo '== umount'\n" +
      user + kvfs + " umount \"$mnt\"; echo \"rc=$?\"\n" + user + kvfs +
      " get lsm/f; echo \"get rc=$?\"\n" + "echo '== root mounts the user store'\n" + kvfs +
      " mount \"$mnt\" --data " + Quote(data) + " 2>&1; echo \"rc=$?\"\n" +
      "echo '== allow_other without user_allow_other'\n" + user + kvfs +
      " mount \"$mnt\" -o allow_other 2>&1; echo \"rc=$?\"\n" +
      "echo '== allow_other with user_allow_other'\n"
      "printf 'user_allow_other\\n' > \"$ns/fuse.conf\"\n" +
      user + kvfs + " mount \"$mnt\" -o allow_other >/dev/null 2>&1; echo \"rc=$?\"\n" + stranger +
      "cat \"$mnt/lsm/f\"; echo \"stranger reads: $?\"\n" + user + kvfs +
      " umount \"$mnt\"; echo \"rc=$?\"\n" +
      "echo '== fusermount3 not setuid'\n"
      "cp /usr/bin/fusermount3 \"$ns/fusermount3\" && chmod 0755 \"$ns/fusermount3\" && "
      "mount --bind \"$ns/fusermount3\" /usr/bin/fusermount3 || exit 93\n" +
      user + kvfs + " mount \"$mnt\" 2>&1; echo \"rc=$?\"\n" + "echo '== end'\n";
  const CmdResult r =
      Exec({"unshare", "--mount", "--propagation", "private", "sh", "-c", script}, seconds(120));
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  const std::string& out = r.output;
  // The sections, in order, each with what it must say.
  const std::vector<std::pair<std::string, std::vector<std::string>>> expected = {
      {"== device 0600",
       {"kvfs: cannot mount as a user who is not root: /dev/fuse (mode 0600, owner uid 0) cannot "
        "be opened by uid 65534",
        "chmod 0666 /dev/fuse", "rc=1", "no data"}},
      {"== mounted",
       {"rc=0", "hello", "500 65534 " + mnt + "/.kvfs", "400 65534 " + mnt + "/.kvfs/config",
        "644 65534 " + mnt + "/lsm/f", "owner reads config: 0", "stranger reads: 1"}},
      {"== umount", {"rc=0", "hello", "get rc=0"}},
      {"== root mounts the user store",
       {data + "/bitcask is owned by uid 65534 (nobody), but kvfs runs as uid 0 (root)", "rc=1"}},
      {"== allow_other without user_allow_other",
       {"kvfs: cannot mount as a user who is not root: -o allow_other as uid 65534 needs the line "
        "user_allow_other in /etc/fuse.conf",
        "echo user_allow_other >> /etc/fuse.conf", "rc=1"}},
      {"== allow_other with user_allow_other", {"rc=0", "hello", "stranger reads: 0", "rc=0"}},
      {"== fusermount3 not setuid",
       {"/usr/bin/fusermount3 is not setuid root (mode 0755, owner uid 0)", "rc=1"}},
      {"== end", {}},
  };
  size_t at = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    const size_t start = out.find(expected[i].first, at);
    ASSERT_NE(start, std::string::npos) << "no section " << expected[i].first << " in:\n" << out;
    const size_t end =
        i + 1 < expected.size() ? out.find(expected[i + 1].first, start) : out.size();
    const std::string section = out.substr(start, end - start);
    size_t pos = 0;
    for (const std::string& line : expected[i].second) {
      const size_t found = section.find(line, pos);
      EXPECT_NE(found, std::string::npos) << "expected, in order: " << line << "\nin:\n" << section;
      if (found != std::string::npos) pos = found + line.size();
    }
    at = start;
  }
  EXPECT_EQ(out.find("loose "), std::string::npos) << out;
  EXPECT_EQ(out.find("not the user "), std::string::npos) << out;
  EXPECT_EQ(out.find("fusermount3: "), std::string::npos) << "libfuse's message, not kvfs's:\n"
                                                          << out;
}

}  // namespace
}  // namespace kvfs::mount_test
