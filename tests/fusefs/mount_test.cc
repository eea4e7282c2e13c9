// The mounted filesystem, shown with real tools and real system calls.
//
// Every test mounts the real `kvfs` binary (KVFS_BINARY) on a private mountpoint with a private
// data directory (tests/fusefs/mount_fixture.h), so `ctest -j` can run them side by side, and
// always unmounts, even when it fails. Most suites run over every registered engine whose
// files take every operation (engines::FileEngineNames(), so a new engine joins by
// registering; the append-only "events" has its own, mount_events_test); the workloads whose
// outcome depends on when the log is synced also run over the three sync modes.
//
// What is shown:
// - tools: tar (a tree of a few hundred files of edge-case sizes, empty directories, symlinks)
//   round-trips exactly; cp, cat, ls -l, mv, rm, mkdir, rmdir, touch, ln -s, readlink, dd
//   (8 MiB, writes at offsets, holes), stat, chmod and truncate leave the mount exactly as they
//   leave a local directory; sqlite3 keeps a database intact; sync_probe's fsync, fdatasync and
//   directory fsync all succeed; and all of it is still there, byte for byte, after an unmount
//   and a remount;
// - the errno of every failing namespace call, as Linux filesystems answer;
// - renameat2 flags, unlinked-but-open files, open files and cwds following directory renames,
//   readdir offsets while the directory changes, O_APPEND (also from several processes at once),
//   O_EXCL races, O_TRUNC, offsets past 4 GiB and EFBIG, shared mmap, timestamps, xattrs,
//   statfs, the /.kvfs control files, ownership, setgid directories and permissions;
// - durability as the daemon sees it: fsync, fdatasync and directory fsync each sync the log
//   (the kernel hides an ENOSYS answer, so this is read from /.kvfs/stats), sync modes decide
//   whether plain writes do, and after a SIGKILL of the daemon everything acknowledged is there
//   (power cuts, which drop what was never synced, are tests/crash/mount_crash_test.cc's);
// - the data directory: repeated remounts do not grow it without bound, the smallest segment
//   size works, rm -r leaves no chunks behind;
// - the command line: daemonizing, `kvfs umount`, SIGTERM, mount.fuse3 and mount(8), its
//   errors, and the offline tools seeing what the mount wrote (and the mount what they wrote).
//
// Skipped (loudly) only without /dev/fuse or without root.
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "engines/engine.h"
#include "tests/fusefs/mount_fixture.h"
#include "tests/fusefs/stats_checks.h"

namespace kvfs::mount_test {
namespace {

namespace fs = std::filesystem;

constexpr uid_t kNobody = 65534;
constexpr long kFuseSuperMagic = 0x65735546;

std::string ErrnoName(int e) {
  if (e == 0) return "success";
  const char* n = ::strerrorname_np(e);
  return n != nullptr ? n : "errno " + std::to_string(e);
}

// EXPECT_ERRNO(ENOENT, ::stat(...)): the call must fail (return -1) with exactly that errno.
// On a mismatch the message shows both errno names and the call.
#define EXPECT_ERRNO(expected, call)                                                            \
  do {                                                                                          \
    errno = 0;                                                                                  \
    const long kvfs_r_ = static_cast<long>(call);                                               \
    const int kvfs_e_ = errno;                                                                  \
    EXPECT_EQ(kvfs_r_ == -1 ? ErrnoName(kvfs_e_) : std::string("success"), ErrnoName(expected)) \
        << #call;                                                                               \
  } while (0)
#define EXPECT_SYSCALL_OK(call)                                         \
  do {                                                                  \
    errno = 0;                                                          \
    const long kvfs_r_ = static_cast<long>(call);                       \
    EXPECT_NE(kvfs_r_, -1) << #call << " failed: " << ErrnoName(errno); \
  } while (0)
#define ASSERT_SYSCALL_OK(call)                                         \
  do {                                                                  \
    errno = 0;                                                          \
    const long kvfs_r_ = static_cast<long>(call);                       \
    ASSERT_NE(kvfs_r_, -1) << #call << " failed: " << ErrnoName(errno); \
  } while (0)

// open(2) that closes what it opened: 0 on success, -1 with errno on failure.
long OpenClose(const std::string& path, int flags, mode_t mode = 0644) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) return -1;
  ::close(fd);
  return 0;
}

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() { Reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  bool ok() const { return fd_ >= 0; }
  void Reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

Fd Open(const std::string& path, int flags, mode_t mode = 0644) {
  return Fd(::open(path.c_str(), flags | O_CLOEXEC, mode));
}

// Whole-file read through pread (EINTR-free on FUSE): the content, or "<error>" on failure.
std::string PreadAll(int fd) {
  std::string out;
  char buf[65536];
  off_t off = 0;
  for (;;) {
    const ssize_t n = ::pread(fd, buf, sizeof buf, off);
    if (n < 0) return "<pread error " + ErrnoName(errno) + ">";
    if (n == 0) return out;
    out.append(buf, static_cast<size_t>(n));
    off += n;
  }
}

bool PwriteAll(int fd, std::string_view data, off_t off) {
  while (!data.empty()) {
    const ssize_t n = ::pwrite(fd, data.data(), data.size(), off);
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
    off += n;
  }
  return true;
}

std::string RandomBytes(std::mt19937_64& rng, size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; i += 8) {
    const uint64_t v = rng();
    std::memcpy(s.data() + i, &v, std::min<size_t>(8, n - i));
  }
  return s;
}

// Where two strings first differ, for messages about large contents.
std::string FirstDifference(const std::string& got, const std::string& want) {
  if (got == want) return "equal";
  size_t i = 0;
  while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
  return "got " + std::to_string(got.size()) + " bytes, want " + std::to_string(want.size()) +
         "; first difference at byte " + std::to_string(i);
}

// A listing of a tree that two equal trees share: type, path, permission bits, size of files,
// symlink targets; with `mtimes`, the whole-second mtime of files and directories (tar keeps
// whole seconds).
std::string Manifest(const std::string& dir, bool mtimes) {
  const std::string t = mtimes ? " %Ts" : "";
  const CmdResult r = Sh("cd " + Quote(dir) +
                         " && find . \\( -type l -printf 'l %p -> %l\\n' \\) -o \\( -type d "
                         "-printf 'd %p %m" +
                         t + "\\n' \\) -o \\( -type f -printf 'f %p %m %s" + t +
                         "\\n' \\) -o -printf '? %p\\n' | LC_ALL=C sort");
  return r.exit_code == 0 ? r.output : "manifest failed: " + r.Describe();
}

// `diff -r` that compares symlinks as links: "" if equal, else diff's complaint.
std::string DiffTrees(const std::string& a, const std::string& b) {
  const CmdResult r = Sh("diff -r --no-dereference " + Quote(a) + " " + Quote(b));
  return r.exit_code == 0 ? "" : r.Describe();
}

// Runs fn() in a forked child with all of uid, gid and supplementary groups dropped to uid/gid;
// fn returns 0 or an errno, which becomes the child's exit status. Returns that, or 250+ when
// the identity change or the child itself failed.
template <typename Fn>
int RunAs(uid_t uid, gid_t gid, Fn fn) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setresgid(gid, gid, gid) != 0 ||
        ::setresuid(uid, uid, uid) != 0) {
      ::_exit(250);
    }
    ::_exit(fn());
  }
  int status = 0;
  if (pid < 0 || ::waitpid(pid, &status, 0) != pid) return 251;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 252;
}

std::string ReadStatsText(const KvfsMount& m) {
  const CmdResult r = Exec({"cat", m.At(".kvfs/stats")});
  return r.exit_code == 0 ? r.output : "cat failed: " + r.Describe();
}

// /.kvfs/stats, parsed: a discarded value (is_discarded()) if it cannot be read or is not JSON.
nlohmann::json ReadStats(const KvfsMount& m) { return test::ParseJson(ReadStatsText(m)); }

// The stores' names, in the order /.kvfs/stats lists them.
std::vector<std::string> StoreNames(const nlohmann::json& stats) {
  std::vector<std::string> names;
  if (!stats.is_object() || !stats.contains("stores")) return names;
  for (const nlohmann::json& s : stats["stores"]) names.push_back(s.value("name", ""));
  return names;
}

// Summed over the stores: how often their logs were synced (wal.syncs) and their engines asked
// to sync (engine_stats.syncs); -1 when the stats hold no such counter.
struct SyncCounts {
  int64_t log = -1;
  int64_t engine = -1;
};
SyncCounts SyncsOf(const nlohmann::json& stats) {
  return {test::SumOverStores(stats, "wal", "syncs"),
          test::SumOverStores(stats, "engine_stats", "syncs")};
}
SyncCounts ReadSyncs(const KvfsMount& m) { return SyncsOf(ReadStats(m)); }

MountOptions ForEngine(const std::string& engine, const std::string& sync = "") {
  MountOptions o;
  o.engine = engine;
  o.sync = sync;
  return o;
}

std::vector<std::string> SyncModes() { return {"always", "batch", "none"}; }

std::string EngineParamName(const testing::TestParamInfo<std::string>& info) { return info.param; }
std::string EngineSyncParamName(
    const testing::TestParamInfo<std::tuple<std::string, std::string>>& info) {
  return std::get<0>(info.param) + "_" + std::get<1>(info.param);
}

// A mount of one store at the root with engine GetParam() (default sync mode).
class MountTest : public testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (const std::string why = FuseSkipReason(); !why.empty()) GTEST_SKIP() << why;
    m_ = std::make_unique<KvfsMount>(ForEngine(engine()));
  }
  std::string engine() const { return GetParam(); }
  KvfsMount& m() { return *m_; }
  std::unique_ptr<KvfsMount> m_;
};

// The same over (engine, sync mode).
class MountSyncTest : public testing::TestWithParam<std::tuple<std::string, std::string>> {
 protected:
  void SetUp() override {
    if (const std::string why = FuseSkipReason(); !why.empty()) GTEST_SKIP() << why;
    m_ = std::make_unique<KvfsMount>(ForEngine(engine(), sync_mode()));
  }
  std::string engine() const { return std::get<0>(GetParam()); }
  std::string sync_mode() const { return std::get<1>(GetParam()); }
  KvfsMount& m() { return *m_; }
  std::unique_ptr<KvfsMount> m_;
};

// ---------------------------------------------------------------------------------------------
// Tools: tar, coreutils, dd, sqlite3, sync_probe; then unmount, remount, everything still there.

struct TreeInfo {
  int files = 0, dirs = 0, symlinks = 0;
  uint64_t bytes = 0;
};

// A tree of ~330 files with the sizes that matter to the file layout (0, 1, around the inline
// limit and the chunk size, 1 MiB), names with spaces, UTF-8, quotes, a leading dot or dash and
// 255 bytes, varied modes, empty directories (one nested), relative, directory, dangling,
// absolute and long symlinks. Deterministic.
TreeInfo MakeTree(const std::string& root) {
  TreeInfo info;
  std::mt19937_64 rng(20240601);
  auto mkdir = [&](const std::string& rel, mode_t mode = 0755) {
    fs::create_directories(root + "/" + rel);
    ::chmod((root + "/" + rel).c_str(), mode);
    ++info.dirs;
  };
  auto file = [&](const std::string& rel, const std::string& data, mode_t mode) {
    EXPECT_TRUE(WriteFile(root + "/" + rel, data)) << rel;
    ::chmod((root + "/" + rel).c_str(), mode);
    ++info.files;
    info.bytes += data.size();
  };
  auto link = [&](const std::string& target, const std::string& rel) {
    EXPECT_EQ(::symlink(target.c_str(), (root + "/" + rel).c_str()), 0) << rel;
    ++info.symlinks;
  };
  mkdir("");
  for (int d = 0; d < 10; ++d) {
    for (int s = 0; s < 3; ++s) mkdir("d" + std::to_string(d) + "/s" + std::to_string(s));
  }
  mkdir("d0/empty");
  mkdir("d5/s1/empty_deep/inner");
  mkdir("d9/s2/e");
  static const size_t kSizes[] = {0,    1,    2,    17,   100,   511,   512,   1000,  4095,
                                  4096, 4097, 8191, 8192, 12345, 65535, 65536, 65537, 70000};
  static const mode_t kModes[] = {0644, 0600, 0755, 0444, 0640};
  for (int i = 0; i < 324; ++i) {
    size_t size = kSizes[i % 18];
    if (size > 20000 && (i / 18) % 3 != 0) size %= 9000;
    std::string data;
    switch (i % 4) {
      case 0:
        data = RandomBytes(rng, size);
        break;
      case 1:
        for (int line = 0; data.size() < size; ++line) {
          data += "line " + std::to_string(line) + " of file " + std::to_string(i) + "\n";
        }
        data.resize(size);
        break;
      case 2:
        data.assign(size, '\0');
        break;
      default:
        data.assign(size, static_cast<char>('a' + i % 26));
    }
    std::string name;
    switch (i) {
      case 5:
        name = "with space";
        break;
      case 6:
        name = "\u00fcn\u00efc\u00f8d\u00e9";
        break;  // UTF-8
      case 7:
        name = ".hidden";
        break;
      case 8:
        name = "-dash";
        break;
      case 9:
        name = std::string(255, 'n');
        break;
      case 10:
        name = "quote'and\"double";
        break;
      case 11:
        name = "a%b*c?[x]";
        break;
      default: {
        char buf[32];
        std::snprintf(buf, sizeof buf, "f%03d%s", i,
                      i % 3 == 0   ? ".txt"
                      : i % 3 == 1 ? ".bin"
                                   : "");
        name = buf;
      }
    }
    const int group = (i / 10) % 4;
    const std::string dir =
        "d" + std::to_string(i % 10) + (group == 3 ? "" : "/s" + std::to_string(group));
    file(dir + "/" + name, data, kModes[i % 5]);
  }
  file("big1m", RandomBytes(rng, 1 << 20), 0644);
  file("d3/big1m_plus1", RandomBytes(rng, (1 << 20) + 1), 0644);
  file("d4/s0/big1m_minus1", std::string((1 << 20) - 1, 'z'), 0600);
  link("../d2/f002", "d1/link_rel");
  link("s0", "d3/link_dir");
  link("no/such/target", "d4/dangling");
  link("/etc/passwd", "d6/abs");
  link(std::string(1000, 'x'), "d6/long_target");
  link("../../big1m", "d7/s1/up");
  ::chmod((root + "/d7").c_str(), 0700);
  ::chmod((root + "/d8").c_str(), 0751);
  ::chmod((root + "/d9/s2/e").c_str(), 0555);
  return info;
}

TEST_P(MountSyncTest, TarTreeRoundTripsAndSurvivesRemount) {
  ASSERT_TRUE(m().Mount());
  const std::string src = m().Sub("src");
  const TreeInfo info = MakeTree(src);
  ASSERT_GT(info.files, 300);
  const std::string tarball = m().Sub("tree.tar");
  CmdResult r = Sh("tar -C " + Quote(src) + " -cf " + Quote(tarball) + " .");
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  const std::string dst = m().At("tree");
  ASSERT_SYSCALL_OK(::mkdir(dst.c_str(), 0755));
  r = Sh("tar -C " + Quote(dst) + " -xpf " + Quote(tarball));
  ASSERT_EQ(r.exit_code, 0) << "tar -x into the mount: " << r.Describe();
  const std::string want = Manifest(src, /*mtimes=*/true);
  EXPECT_EQ(DiffTrees(src, dst), "");
  EXPECT_EQ(Manifest(dst, true), want);
  // Reading it all back through tar too (every file read to its end, every link read): the
  // same members as the original archive.
  const CmdResult want_members = Sh("tar -tf " + Quote(tarball) + " | LC_ALL=C sort");
  r = Sh("tar -C " + Quote(dst) + " -cf - . | tar -tf - | LC_ALL=C sort");
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(r.output, want_members.output);

  // Renaming the whole tree (every node below it moves) keeps it whole; and all of it is still
  // there after an unmount and a remount.
  const std::string moved = m().At("moved/tree");
  ASSERT_SYSCALL_OK(::mkdir(m().At("moved").c_str(), 0755));
  ASSERT_SYSCALL_OK(::rename(dst.c_str(), moved.c_str()));
  EXPECT_FALSE(fs::exists(dst));
  EXPECT_EQ(DiffTrees(src, moved), "") << "after renaming the tree";
  ASSERT_TRUE(m().Remount());
  EXPECT_EQ(DiffTrees(src, moved), "") << "after renaming the tree and a remount";
  EXPECT_EQ(Manifest(moved, true), want) << "after renaming the tree and a remount";
  ASSERT_TRUE(m().Unmount());
  r = Exec({KvfsBinary(), "check", "--data", m().data(), "--engine", engine()});
  EXPECT_EQ(r.exit_code, 0) << "kvfs check after the tree was written: " << r.Describe();

  // rm -r removes it all, data chunks included: the store is back to a handful of keys.
  ASSERT_TRUE(m().Mount());
  r = Sh("rm -r " + Quote(m().At("moved")));
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_TRUE(fs::is_empty(m().mnt()));
  ASSERT_TRUE(m().Unmount());
  r = Exec({KvfsBinary(), "check", "--data", m().data(), "--engine", engine()});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  const size_t keys_at = r.output.find(" keys, ");
  ASSERT_NE(keys_at, std::string::npos) << r.output;
  const size_t num_at = r.output.find_last_not_of("0123456789", keys_at - 1) + 1;
  EXPECT_LE(std::stoull(r.output.substr(num_at, keys_at - num_at)), 10u)
      << "keys left after removing every file (leaked chunks or nodes?): " << r.output;
}

// Runs the same commands in a local directory and in the mount; the two results must be equal.
// $T is the target directory, $S holds the inputs.
constexpr const char* kCoreutilsScript = R"sh(
mkdir -p "$T" && cd "$T"
mkdir -p a/b/c e/f empty
printf 'hello\n' > a/hello.txt
cp "$S/rand70000" a/b/copy70000
cp "$S/rand1m" a/b/c/copy1m
cp -p "$S/rand70000" preserved
cat a/hello.txt a/hello.txt > a/twice.txt
echo appended >> a/hello.txt
touch a/empty_file
touch -d '2001-02-03 04:05:06 UTC' a/b/copy70000
ln -s ../hello.txt a/b/link_to_hello
ln -s b/c a/link_to_dir
ln -s nowhere a/dangling
test "$(readlink a/b/link_to_hello)" = ../hello.txt
test "$(readlink a/dangling)" = nowhere
ls a/link_to_dir/ > ls_through_link.txt
cat a/b/link_to_hello > a/via_link.txt
chmod 600 a/twice.txt
chmod 751 a/b
chmod u+x a/hello.txt
mv a/twice.txt e/moved.txt
mv e/f e/g
mv a/b/c a/c2
cp a/hello.txt e/over
mv a/via_link.txt e/over
cp -r a/c2 copied_tree
mkdir todel && touch todel/x && rm todel/x && rmdir todel
mkdir -p rmr/x/y && cp a/hello.txt rmr/x/y/ && cp "$S/rand70000" rmr/x/ && rm -r rmr
if rmdir a 2>/dev/null; then echo "rmdir of a non-empty directory succeeded"; exit 1; fi
dd if="$S/rand8m" of=big bs=1M 2>/dev/null
dd if="$S/small100" of=big bs=100 seek=31457 count=1 conv=notrunc 2>/dev/null
printf 'tail' | dd of=big bs=1 seek=9437184 conv=notrunc 2>/dev/null
truncate -s 20M sparse
printf 'hello' | dd of=sparse bs=1 seek=10485760 conv=notrunc 2>/dev/null
printf 'X' | dd of=sparse bs=1 seek=100 conv=notrunc 2>/dev/null
cp "$S/rand70000" shrunk && truncate -s 5000 shrunk && truncate -s 150000 shrunk
cp "$S/rand1m" emptied && truncate -s 0 emptied
cp "$S/rand70000" overwritten && printf 'short' > overwritten
stat -c '%n %s %a %F' big sparse a/hello.txt a/empty_file a/link_to_dir e/moved.txt > stat.txt
stat -c '%n %Y' a/b/copy70000 preserved > mtimes.txt
ls -l a/b | awk 'NR > 1 && $1 !~ /^d/ { print $1, $5, $NF }' > ls_l.txt
cat big | cksum > big.cksum
)sh";

TEST_P(MountSyncTest, CoreutilsLeaveTheMountAsALocalDirectoryAndSurviveRemount) {
  ASSERT_TRUE(m().Mount());
  const std::string in = m().Sub("in");
  fs::create_directories(in);
  std::mt19937_64 rng(7);
  ASSERT_TRUE(WriteFile(in + "/rand70000", RandomBytes(rng, 70000)));
  ASSERT_TRUE(WriteFile(in + "/rand1m", RandomBytes(rng, 1 << 20)));
  ASSERT_TRUE(WriteFile(in + "/rand8m", RandomBytes(rng, 8 << 20)));
  ASSERT_TRUE(WriteFile(in + "/small100", RandomBytes(rng, 100)));
  const std::string local = m().Sub("local");
  const std::string mounted = m().At("w");
  auto script = [&](const std::string& target) {
    return "set -eu\nT=" + Quote(target) + "\nS=" + Quote(in) + "\n" + kCoreutilsScript;
  };
  CmdResult r = Sh(script(local));
  ASSERT_EQ(r.exit_code, 0) << "the script on a local directory: " << r.Describe();
  r = Sh(script(mounted));
  ASSERT_EQ(r.exit_code, 0) << "the script in the mount: " << r.Describe();
  const std::string want = Manifest(local, false);
  EXPECT_EQ(DiffTrees(local, mounted), "");
  EXPECT_EQ(Manifest(mounted, false), want);

  // Holes read as zeros, and the bytes written at offsets are where they were written.
  {
    Fd fd = Open(mounted + "/sparse", O_RDONLY);
    ASSERT_TRUE(fd.ok()) << ErrnoName(errno);
    const std::string data = PreadAll(fd.get());
    std::string want_sparse(20 << 20, '\0');
    want_sparse[100] = 'X';
    want_sparse.replace(10485760, 5, "hello");
    EXPECT_TRUE(data == want_sparse) << "sparse: " << FirstDifference(data, want_sparse);
  }
  {
    Fd fd = Open(mounted + "/big", O_RDONLY);
    ASSERT_TRUE(fd.ok()) << ErrnoName(errno);
    const std::string data = PreadAll(fd.get());
    std::string want_big = ReadFile(in + "/rand8m");
    want_big.replace(3145700, 100, ReadFile(in + "/small100"));
    want_big.resize(9437184, '\0');
    want_big += "tail";
    EXPECT_TRUE(data == want_big) << "big: " << FirstDifference(data, want_big);
  }

  ASSERT_TRUE(m().Remount());
  EXPECT_EQ(DiffTrees(local, mounted), "") << "after remount";
  EXPECT_EQ(Manifest(mounted, false), want) << "after remount";
}

// thousands of rows in one transaction, an index, updates and deletes in a second one.
constexpr const char* kSqliteFill = R"sql(
CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL, n INTEGER NOT NULL);
BEGIN;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000)
INSERT INTO t SELECT x, printf('row-%d-%s', x, hex(randomblob(40))), x * 7 FROM c;
COMMIT;
CREATE INDEX t_n ON t(n);
BEGIN;
UPDATE t SET n = n + 1 WHERE id % 3 = 0;
DELETE FROM t WHERE id % 10 = 0;
COMMIT;
)sql";
constexpr const char* kSqliteCheck =
    "PRAGMA integrity_check; SELECT count(*) || ' ' || sum(n) FROM t;";

std::string SqliteExpected() {
  long long count = 0, sum = 0;
  for (long long x = 1; x <= 5000; ++x) {
    if (x % 10 == 0) continue;
    ++count;
    sum += 7 * x + (x % 3 == 0 ? 1 : 0);
  }
  return "ok\n" + std::to_string(count) + " " + std::to_string(sum) + "\n";
}

TEST_P(MountSyncTest, SqliteDatabaseStaysIntactAcrossRemount) {
  ASSERT_TRUE(m().Mount());
  const std::string db = m().At("db/test.sqlite");
  ASSERT_SYSCALL_OK(::mkdir(m().At("db").c_str(), 0755));
  CmdResult r = Exec({"sqlite3", "-batch", "-bail", db, kSqliteFill});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  r = Exec({"sqlite3", "-batch", db, kSqliteCheck});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(r.output, SqliteExpected());
  ASSERT_TRUE(m().Remount());
  r = Exec({"sqlite3", "-batch", db, kSqliteCheck});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(r.output, SqliteExpected()) << "after remount";
  EXPECT_FALSE(fs::exists(m().At("db/test.sqlite-journal"))) << "a hot journal was left behind";
}

TEST_P(MountSyncTest, SyncProbeCallsAllSucceedAndItsFileSurvivesRemount) {
  ASSERT_TRUE(m().Mount());
  ASSERT_SYSCALL_OK(::mkdir(m().At("p").c_str(), 0755));
  CmdResult r = Exec({SYNC_PROBE_BINARY, m().At("p")});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  // A second run on the store's root too (fsync of the root directory).
  r = Exec({SYNC_PROBE_BINARY, m().mnt()});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  // Four at once: concurrent syncs share log syncs (group commit), each must still succeed.
  r = Sh(
      "set -u; pids=''; for i in 1 2 3 4; do mkdir " + Quote(m().mnt()) + "/c$i && " +
      Quote(SYNC_PROBE_BINARY) + " " + Quote(m().mnt()) +
      "/c$i & pids=\"$pids $!\"; done; rc=0; for p in $pids; do wait $p || rc=1; done; exit $rc");
  ASSERT_EQ(r.exit_code, 0) << "concurrent sync_probe runs: " << r.Describe();
  ASSERT_TRUE(m().Remount());
  struct stat st;
  ASSERT_SYSCALL_OK(::stat(m().At("p/probe/f").c_str(), &st));
  EXPECT_EQ(st.st_size, 300000);
  EXPECT_ERRNO(ENOENT, ::stat(m().At("p/probe/f.tmp").c_str(), &st));
  EXPECT_ERRNO(ENOENT, ::stat(m().At("p/probe/scratch").c_str(), &st));
}

// A crash of the daemon process (SIGKILL; the machine stays up): every operation it acknowledged
// is there after a remount, in every sync mode, fsync'd or not (each reached the log, in the
// kernel's hands, before it was answered), a file that was unlinked while open is gone, and the
// store passes `kvfs check`. On the real disk the kernel keeps every write, so this cannot see a
// missing fsync: what a power cut after the kill keeps, per sync mode, is mount_crash_test's
// KilledThenPowerCut (on the fault-injecting disk).
TEST_P(MountSyncTest, DaemonKilledWithSigkillRecoversOnRemount) {
  ASSERT_TRUE(m().Mount());
  std::mt19937_64 rng(17);
  const std::string synced = RandomBytes(rng, 100000);
  {
    Fd fd = Open(m().At("synced"), O_CREAT | O_WRONLY | O_EXCL);
    ASSERT_TRUE(fd.ok()) << ErrnoName(errno);
    ASSERT_TRUE(PwriteAll(fd.get(), synced, 0));
    ASSERT_SYSCALL_OK(::fsync(fd.get()));
  }
  ASSERT_SYSCALL_OK(::mkdir(m().At("dir").c_str(), 0755));
  {
    Fd fd = Open(m().At("dir/in"), O_CREAT | O_WRONLY | O_EXCL);
    ASSERT_TRUE(fd.ok()) << ErrnoName(errno);
    ASSERT_TRUE(PwriteAll(fd.get(), "inside", 0));
    ASSERT_SYSCALL_OK(::fdatasync(fd.get()));
    Fd dir = Open(m().At("dir"), O_RDONLY | O_DIRECTORY);
    ASSERT_SYSCALL_OK(::fsync(dir.get()));
  }
  ASSERT_SYSCALL_OK(::rename(m().At("synced").c_str(), m().At("renamed").c_str()));
  {
    Fd root = Open(m().mnt(), O_RDONLY | O_DIRECTORY);
    ASSERT_SYSCALL_OK(::fsync(root.get()));
  }
  ASSERT_TRUE(WriteFile(m().At("unsynced"), "acknowledged, never fsync'd"));
  Fd held = Open(m().At("held"), O_CREAT | O_RDWR);  // unlinked while open: an orphan
  ASSERT_TRUE(held.ok());
  ASSERT_TRUE(PwriteAll(held.get(), RandomBytes(rng, 200000), 0));
  ASSERT_SYSCALL_OK(::unlink(m().At("held").c_str()));
  ASSERT_TRUE(m().KillDaemon());
  held.Reset();

  ASSERT_TRUE(m().Mount());
  EXPECT_TRUE(ReadFile(m().At("renamed")) == synced) << "fsync'd file lost or damaged";
  EXPECT_FALSE(fs::exists(m().At("synced"))) << "fsync'd rename undone";
  EXPECT_EQ(ReadFile(m().At("dir/in")), "inside");
  EXPECT_FALSE(fs::exists(m().At("held")));
  EXPECT_EQ(ReadFile(m().At("unsynced")), "acknowledged, never fsync'd")
      << "sync=" << sync_mode() << ": a killed daemon lost an acknowledged write";
  ASSERT_TRUE(WriteFile(m().At("after"), "the store takes writes after recovery"));
  ASSERT_TRUE(m().Unmount());
  const CmdResult r = Exec({KvfsBinary(), "check", "--data", m().data(), "--engine", engine()});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
}

INSTANTIATE_TEST_SUITE_P(EnginesAndSyncModes, MountSyncTest,
                         testing::Combine(testing::ValuesIn(engines::FileEngineNames()),
                                          testing::ValuesIn(SyncModes())),
                         EngineSyncParamName);

// ---------------------------------------------------------------------------------------------
// Durability calls reach the engine.

// The kernel hides an ENOSYS answer to fsync, fdatasync or fsyncdir (it turns it into success and
// stops sending the call), so whether they reach the engine is seen through the store's own
// counters: with --sync none nothing but these calls syncs the log, so each must add a sync.
TEST_P(MountTest, FsyncFdatasyncAndDirectoryFsyncEachSyncTheLog) {
  m().options().sync = "none";
  ASSERT_TRUE(m().Mount());
  ASSERT_GE(ReadSyncs(m()).log, 0) << "no wal.syncs in /.kvfs/stats:\n" << ReadStatsText(m());
  Fd fd = Open(m().At("f"), O_CREAT | O_WRONLY, 0644);
  ASSERT_TRUE(fd.ok()) << ErrnoName(errno);
  ASSERT_TRUE(PwriteAll(fd.get(), std::string(1000, 'a'), 0));
  SyncCounts before = ReadSyncs(m());
  ASSERT_SYSCALL_OK(::fdatasync(fd.get()));
  SyncCounts after = ReadSyncs(m());
  EXPECT_GT(after.log, before.log) << "fdatasync did not sync the log";

  ASSERT_TRUE(PwriteAll(fd.get(), std::string(1000, 'b'), 1000));
  before = after;
  ASSERT_SYSCALL_OK(::fsync(fd.get()));
  after = ReadSyncs(m());
  EXPECT_GT(after.log, before.log) << "fsync did not sync the log";

  ASSERT_SYSCALL_OK(::mkdir(m().At("d").c_str(), 0755));
  ASSERT_SYSCALL_OK(OpenClose(m().At("d/new"), O_CREAT | O_WRONLY));
  Fd dir = Open(m().At("d"), O_RDONLY | O_DIRECTORY);
  ASSERT_TRUE(dir.ok()) << ErrnoName(errno);
  before = ReadSyncs(m());
  ASSERT_SYSCALL_OK(::fsync(dir.get()));
  after = ReadSyncs(m());
  EXPECT_GT(after.log, before.log) << "fsync on a directory did not sync the log";
}

// ---------------------------------------------------------------------------------------------
// errno, as Linux filesystems answer.

TEST_P(MountTest, NamespaceErrorsCarryTheRightErrno) {
  ASSERT_TRUE(m().Mount());
  const std::string f = m().At("f"), d = m().At("d"), e = m().At("empty");
  ASSERT_TRUE(WriteFile(f, "content"));
  ASSERT_SYSCALL_OK(::mkdir(d.c_str(), 0755));
  ASSERT_SYSCALL_OK(::mkdir((d + "/sub").c_str(), 0755));
  ASSERT_SYSCALL_OK(::mkdir(e.c_str(), 0755));
  struct stat st;
  char buf[64];

  // ENOENT
  EXPECT_ERRNO(ENOENT, OpenClose(m().At("missing"), O_RDONLY));
  EXPECT_ERRNO(ENOENT, ::stat(m().At("missing").c_str(), &st));
  EXPECT_ERRNO(ENOENT, ::unlink(m().At("missing").c_str()));
  EXPECT_ERRNO(ENOENT, ::rmdir(m().At("missing").c_str()));
  EXPECT_ERRNO(ENOENT, ::rename(m().At("missing").c_str(), m().At("x").c_str()));
  EXPECT_ERRNO(ENOENT, OpenClose(m().At("nodir/x"), O_CREAT | O_WRONLY));
  EXPECT_ERRNO(ENOENT, ::mkdir(m().At("nodir/x").c_str(), 0755));
  EXPECT_ERRNO(ENOENT, ::readlink(m().At("missing").c_str(), buf, sizeof buf));
  EXPECT_ERRNO(ENOENT, ::truncate(m().At("missing").c_str(), 0));

  // EEXIST
  EXPECT_ERRNO(EEXIST, OpenClose(f, O_CREAT | O_EXCL | O_WRONLY));
  EXPECT_ERRNO(EEXIST, OpenClose(d, O_CREAT | O_EXCL | O_WRONLY));
  EXPECT_ERRNO(EEXIST, ::mkdir(f.c_str(), 0755));
  EXPECT_ERRNO(EEXIST, ::mkdir(d.c_str(), 0755));
  EXPECT_ERRNO(EEXIST, ::symlink("x", f.c_str()));
  EXPECT_EQ(ReadFile(f), "content") << "a refused O_EXCL create changed the file";

  // ENOTDIR
  EXPECT_ERRNO(ENOTDIR, OpenClose(f + "/x", O_RDONLY));
  EXPECT_ERRNO(ENOTDIR, OpenClose(f + "/x", O_CREAT | O_WRONLY));
  EXPECT_ERRNO(ENOTDIR, ::mkdir((f + "/x").c_str(), 0755));
  EXPECT_ERRNO(ENOTDIR, ::stat((f + "/x").c_str(), &st));
  EXPECT_ERRNO(ENOTDIR, OpenClose(f, O_RDONLY | O_DIRECTORY));
  EXPECT_ERRNO(ENOTDIR, ::rmdir(f.c_str()));
  EXPECT_ERRNO(ENOTDIR, ::rename(e.c_str(), f.c_str()));  // a directory over a file

  // EISDIR
  EXPECT_ERRNO(EISDIR, OpenClose(d, O_WRONLY));
  EXPECT_ERRNO(EISDIR, OpenClose(d, O_RDWR));
  EXPECT_ERRNO(EISDIR, ::unlink(d.c_str()));
  EXPECT_ERRNO(EISDIR, ::rename(f.c_str(), e.c_str()));  // a file over a directory
  EXPECT_ERRNO(EISDIR, ::truncate(d.c_str(), 0));
  {
    Fd dir = Open(d, O_RDONLY | O_DIRECTORY);
    ASSERT_TRUE(dir.ok());
    EXPECT_ERRNO(EISDIR, ::read(dir.get(), buf, sizeof buf));
  }

  // ENOTEMPTY
  EXPECT_ERRNO(ENOTEMPTY, ::rmdir(d.c_str()));
  EXPECT_ERRNO(ENOTEMPTY, ::rename(e.c_str(), d.c_str()));  // onto a non-empty directory
  EXPECT_TRUE(fs::is_directory(d + "/sub"));

  // EINVAL: a directory into itself
  EXPECT_ERRNO(EINVAL, ::rename(d.c_str(), (d + "/sub/inner").c_str()));

  // ENAMETOOLONG at 256 bytes; 255 is fine
  const std::string n256 = m().At(std::string(256, 'n'));
  const std::string n255 = m().At(std::string(255, 'n'));
  EXPECT_ERRNO(ENAMETOOLONG, OpenClose(n256, O_CREAT | O_WRONLY));
  EXPECT_ERRNO(ENAMETOOLONG, ::mkdir(n256.c_str(), 0755));
  EXPECT_ERRNO(ENAMETOOLONG, ::stat(n256.c_str(), &st));
  EXPECT_ERRNO(ENAMETOOLONG, ::symlink("x", n256.c_str()));
  EXPECT_ERRNO(ENAMETOOLONG, ::rename(f.c_str(), n256.c_str()));
  EXPECT_SYSCALL_OK(OpenClose(n255, O_CREAT | O_WRONLY));
  EXPECT_SYSCALL_OK(::stat(n255.c_str(), &st));
  EXPECT_SYSCALL_OK(::unlink(n255.c_str()));
}

TEST_P(MountTest, RenameNoReplaceAndExchange) {
  ASSERT_TRUE(m().Mount());
  const std::string a = m().At("a"), b = m().At("b"), c = m().At("c"), dir = m().At("dir");
  ASSERT_TRUE(WriteFile(a, "A"));
  ASSERT_TRUE(WriteFile(b, "B"));
  ASSERT_SYSCALL_OK(::mkdir(dir.c_str(), 0755));
  ASSERT_TRUE(WriteFile(dir + "/child", "child"));

  EXPECT_ERRNO(EEXIST, ::renameat2(AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), RENAME_NOREPLACE));
  EXPECT_EQ(ReadFile(a), "A");
  EXPECT_EQ(ReadFile(b), "B");
  EXPECT_SYSCALL_OK(::renameat2(AT_FDCWD, a.c_str(), AT_FDCWD, c.c_str(), RENAME_NOREPLACE));
  EXPECT_FALSE(fs::exists(a));
  EXPECT_EQ(ReadFile(c), "A");

  EXPECT_SYSCALL_OK(::renameat2(AT_FDCWD, b.c_str(), AT_FDCWD, c.c_str(), RENAME_EXCHANGE));
  EXPECT_EQ(ReadFile(b), "A");
  EXPECT_EQ(ReadFile(c), "B");
  // A file and a directory (with its subtree) swap places.
  EXPECT_SYSCALL_OK(::renameat2(AT_FDCWD, c.c_str(), AT_FDCWD, dir.c_str(), RENAME_EXCHANGE));
  EXPECT_EQ(ReadFile(dir), "B");
  EXPECT_EQ(ReadFile(c + "/child"), "child");
  // Across directories.
  ASSERT_SYSCALL_OK(::mkdir(m().At("x").c_str(), 0755));
  ASSERT_TRUE(WriteFile(m().At("x/one"), "one"));
  EXPECT_SYSCALL_OK(
      ::renameat2(AT_FDCWD, m().At("x/one").c_str(), AT_FDCWD, b.c_str(), RENAME_EXCHANGE));
  EXPECT_EQ(ReadFile(b), "one");
  EXPECT_EQ(ReadFile(m().At("x/one")), "A");
  EXPECT_ERRNO(ENOENT, ::renameat2(AT_FDCWD, m().At("missing").c_str(), AT_FDCWD, b.c_str(),
                                   RENAME_EXCHANGE));
  EXPECT_ERRNO(ENOENT, ::renameat2(AT_FDCWD, b.c_str(), AT_FDCWD, m().At("missing").c_str(),
                                   RENAME_EXCHANGE));
  // A plain rename replaces a file, and a directory replaces an empty directory.
  EXPECT_SYSCALL_OK(::rename(dir.c_str(), b.c_str()));
  EXPECT_EQ(ReadFile(b), "B");
  ASSERT_SYSCALL_OK(::mkdir(m().At("empty").c_str(), 0755));
  EXPECT_SYSCALL_OK(::rename(c.c_str(), m().At("empty").c_str()));
  EXPECT_EQ(ReadFile(m().At("empty/child")), "child");

  ASSERT_TRUE(m().Remount());
  EXPECT_EQ(ReadFile(b), "B");
  EXPECT_EQ(ReadFile(m().At("x/one")), "A");
  EXPECT_EQ(ReadFile(m().At("empty/child")), "child");
  EXPECT_FALSE(fs::exists(c));
  EXPECT_FALSE(fs::exists(dir));
  EXPECT_FALSE(fs::exists(a));
}

TEST_P(MountTest, UnlinkedOpenFileStaysReadableUntilClosed) {
  ASSERT_TRUE(m().Mount());
  std::mt19937_64 rng(3);
  const std::string old_data = RandomBytes(rng, 200000);  // chunked, not inline
  const std::string path = m().At("f");
  ASSERT_TRUE(WriteFile(path, old_data));
  Fd fd = Open(path, O_RDWR);
  ASSERT_TRUE(fd.ok()) << ErrnoName(errno);
  ASSERT_SYSCALL_OK(::unlink(path.c_str()));
  struct stat st;
  EXPECT_ERRNO(ENOENT, ::stat(path.c_str(), &st));
  ASSERT_SYSCALL_OK(::fstat(fd.get(), &st));
  EXPECT_EQ(st.st_size, 200000);
  EXPECT_EQ(st.st_nlink, 0u) << "fstat of an unlinked, still open file (ext4 and tmpfs say 0)";
  std::string got = PreadAll(fd.get());
  EXPECT_TRUE(got == old_data) << "unlinked file: " << FirstDifference(got, old_data);
  // A new file of the same name is a different file.
  ASSERT_TRUE(WriteFile(path, "new"));
  EXPECT_EQ(ReadFile(path), "new");
  got = PreadAll(fd.get());
  EXPECT_TRUE(got == old_data) << "after re-create: " << FirstDifference(got, old_data);
  // Still writable, and fsync on it works.
  EXPECT_TRUE(PwriteAll(fd.get(), "tail", 200000));
  EXPECT_SYSCALL_OK(::fsync(fd.get()));
  EXPECT_EQ(PreadAll(fd.get()), old_data + "tail");
  EXPECT_EQ(ReadFile(path), "new");

  // Rename over an open file: the replaced file stays readable through its descriptor.
  ASSERT_TRUE(WriteFile(m().At("victim"), "victim data"));
  ASSERT_TRUE(WriteFile(m().At("winner"), "winner data"));
  Fd victim = Open(m().At("victim"), O_RDONLY);
  ASSERT_TRUE(victim.ok());
  ASSERT_SYSCALL_OK(::rename(m().At("winner").c_str(), m().At("victim").c_str()));
  EXPECT_EQ(PreadAll(victim.get()), "victim data");
  EXPECT_EQ(ReadFile(m().At("victim")), "winner data");

  fd.Reset();
  victim.Reset();
  ASSERT_TRUE(m().Remount());
  EXPECT_EQ(ReadFile(path), "new");
  EXPECT_EQ(ReadFile(m().At("victim")), "winner data");
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(m().mnt())) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"f", "victim"}));
}

// Names returned by getdents64 on `fd` from its current offset to the end, `buffer` bytes at a
// time, calling between(i) after the i-th call.
std::vector<std::string> GetDents(int fd, size_t buffer, const std::function<void(int)>& between) {
  std::vector<std::string> names;
  std::vector<char> buf(buffer);
  for (int call = 0;; ++call) {
    const ssize_t n = ::getdents64(fd, buf.data(), buf.size());
    if (n < 0) {
      ADD_FAILURE() << "getdents64: " << ErrnoName(errno);
      break;
    }
    if (n == 0) break;
    for (ssize_t pos = 0; pos < n;) {
      const auto* d = reinterpret_cast<const dirent64*>(buf.data() + pos);
      const std::string name = d->d_name;
      if (name != "." && name != "..") {
        names.push_back(name);
      }
      pos += d->d_reclen;
    }
    between(call);
  }
  return names;
}

std::string Name(const char* prefix, int i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%s%04d", prefix, i);
  return buf;
}

TEST_P(MountTest, ReaddirOffsetsStayValidWhileEntriesChange) {
  ASSERT_TRUE(m().Mount());
  const std::string dir = m().At("d");
  ASSERT_SYSCALL_OK(::mkdir(dir.c_str(), 0755));
  std::set<std::string> originals;
  for (int i = 0; i < 600; i += 2) {  // even numbers: odd ones are added later, in between
    originals.insert(Name("e", i));
    ASSERT_SYSCALL_OK(OpenClose(dir + "/" + Name("e", i), O_CREAT | O_WRONLY));
  }
  std::set<std::string> removed;
  std::set<std::string> added;
  // Small getdents64 buffers make the kernel ask the daemon for each small batch at the offset
  // where the previous one stopped; between batches, entries are added before and after the
  // current position and some not yet seen are removed.
  {
    Fd fd = Open(dir, O_RDONLY | O_DIRECTORY);
    ASSERT_TRUE(fd.ok());
    const std::vector<std::string> seen = GetDents(fd.get(), 512, [&](int call) {
      if (call >= 12) return;  // (entries added after the cursor forever would never end)
      for (int k = 0; k < 3; ++k) {
        const std::string n = Name("e", (call * 37 + k * 191) % 600 | 1);  // odd: new
        if (added.insert(n).second) OpenClose(dir + "/" + n, O_CREAT | O_WRONLY);
      }
      const std::string a = Name("a", call), z = Name("z", call);  // before and after all
      added.insert(a);
      added.insert(z);
      OpenClose(dir + "/" + a, O_CREAT | O_WRONLY);
      OpenClose(dir + "/" + z, O_CREAT | O_WRONLY);
      const std::string gone = Name("e", (599 - call * 14) & ~1);
      if (originals.count(gone) && removed.insert(gone).second)
        ::unlink((dir + "/" + gone).c_str());
    });
    std::map<std::string, int> count;
    for (const std::string& n : seen) ++count[n];
    for (const auto& [n, c] : count) EXPECT_EQ(c, 1) << n << " returned " << c << " times";
    for (const std::string& n : originals) {
      if (!removed.count(n)) {
        EXPECT_EQ(count[n], 1) << "original entry " << n << " was skipped";
      }
    }
    for (const auto& [n, c] : count) {
      EXPECT_TRUE(originals.count(n) || added.count(n)) << "unknown entry " << n;
    }
  }

  // telldir/seekdir: after seekdir to a position taken earlier, the entries that existed all
  // along come back in the same order from there, and none from before it.
  DIR* d = ::opendir(dir.c_str());
  ASSERT_NE(d, nullptr);
  std::vector<std::string> before;
  long pos = -1;
  std::vector<std::string> all;
  while (dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (n == "." || n == "..") continue;
    all.push_back(n);
    if (all.size() == 100) pos = ::telldir(d);
  }
  ASSERT_GT(all.size(), 200u);
  ASSERT_NE(pos, -1);
  const std::set<std::string> first100(all.begin(), all.begin() + 100);
  const std::vector<std::string> rest_before(all.begin() + 100, all.end());
  // Change the directory: entries before and after the position, and removals after it.
  std::set<std::string> gone2;
  for (int i = 0; i < 20; ++i) {
    OpenClose(dir + "/" + Name("b", i), O_CREAT | O_WRONLY);
    OpenClose(dir + "/" + Name("y", i), O_CREAT | O_WRONLY);
  }
  for (size_t i = 0; i < rest_before.size(); i += 7) {
    gone2.insert(rest_before[i]);
    ::unlink((dir + "/" + rest_before[i]).c_str());
  }
  ::seekdir(d, pos);
  std::vector<std::string> rest_after;
  std::set<std::string> dup_check;
  while (dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (n == "." || n == "..") continue;
    EXPECT_TRUE(dup_check.insert(n).second) << n << " returned twice after seekdir";
    EXPECT_FALSE(first100.count(n)) << n << " came before the telldir position, again after";
    rest_after.push_back(n);
  }
  ::closedir(d);
  std::vector<std::string> want, got;
  for (const std::string& n : rest_before) {
    if (!gone2.count(n)) want.push_back(n);
  }
  const std::set<std::string> old_names(all.begin(), all.end());
  for (const std::string& n : rest_after) {
    if (old_names.count(n) && !gone2.count(n)) got.push_back(n);
  }
  EXPECT_EQ(got, want) << "entries after seekdir differ from those read after telldir";

  // rewinddir-equivalent: a fresh listing is exactly the directory now.
  std::set<std::string> now;
  for (const auto& entry : fs::directory_iterator(dir)) now.insert(entry.path().filename());
  std::set<std::string> expect_now;
  for (const std::string& n : old_names) {
    if (!gone2.count(n)) expect_now.insert(n);
  }
  for (int i = 0; i < 20; ++i) {
    expect_now.insert(Name("b", i));
    expect_now.insert(Name("y", i));
  }
  EXPECT_EQ(now, expect_now);
}

TEST_P(MountTest, AppendAppendsAndTruncTruncates) {
  ASSERT_TRUE(m().Mount());
  const std::string p = m().At("f");
  ASSERT_TRUE(WriteFile(p, "ab"));
  {
    Fd app = Open(p, O_WRONLY | O_APPEND);
    ASSERT_TRUE(app.ok());
    ASSERT_EQ(::write(app.get(), "cd", 2), 2);
    Fd other = Open(p, O_WRONLY);
    ASSERT_TRUE(other.ok());
    ASSERT_TRUE(PwriteAll(other.get(), "XYZ", 4));  // extends the file behind the appender
    ASSERT_EQ(::write(app.get(), "ef", 2), 2);
    EXPECT_EQ(::lseek(app.get(), 0, SEEK_CUR), 9);
  }
  EXPECT_EQ(ReadFile(p), "abcdXYZef");

  // Appending to a file larger than one chunk.
  std::mt19937_64 rng(5);
  const std::string big = RandomBytes(rng, 70000);
  ASSERT_TRUE(WriteFile(m().At("big"), big));
  {
    Fd app = Open(m().At("big"), O_WRONLY | O_APPEND);
    ASSERT_TRUE(app.ok());
    ASSERT_EQ(::write(app.get(), "0123456789", 10), 10);
  }
  std::string got = ReadFile(m().At("big"));
  EXPECT_TRUE(got == big + "0123456789") << FirstDifference(got, big + "0123456789");

  // O_TRUNC empties a chunked file; extending it again shows zeros, never the old bytes.
  ASSERT_TRUE(WriteFile(m().At("t"), std::string(200000, 'x')));
  {
    Fd t = Open(m().At("t"), O_WRONLY | O_TRUNC);
    ASSERT_TRUE(t.ok());
    struct stat st;
    ASSERT_SYSCALL_OK(::fstat(t.get(), &st));
    EXPECT_EQ(st.st_size, 0);
    ASSERT_EQ(::write(t.get(), "abc", 3), 3);
    ASSERT_SYSCALL_OK(::ftruncate(t.get(), 100000));
  }
  std::string want = "abc" + std::string(100000 - 3, '\0');
  got = ReadFile(m().At("t"));
  EXPECT_TRUE(got == want) << FirstDifference(got, want);
  // ftruncate down in the middle of a chunk, then up: the cut bytes read as zeros.
  ASSERT_TRUE(WriteFile(m().At("u"), std::string(150000, 'y')));
  ASSERT_SYSCALL_OK(::truncate(m().At("u").c_str(), 70001));
  ASSERT_SYSCALL_OK(::truncate(m().At("u").c_str(), 140000));
  want = std::string(70001, 'y') + std::string(140000 - 70001, '\0');
  got = ReadFile(m().At("u"));
  EXPECT_TRUE(got == want) << FirstDifference(got, want);

  ASSERT_TRUE(m().Remount());
  EXPECT_EQ(ReadFile(p), "abcdXYZef");
  got = ReadFile(m().At("t"));
  EXPECT_TRUE(got == "abc" + std::string(100000 - 3, '\0')) << "after remount";
  got = ReadFile(m().At("u"));
  EXPECT_TRUE(got == want) << "after remount: " << FirstDifference(got, want);
}

// Offsets far beyond 4 GiB (chunk index arithmetic), holes as zeros, and EFBIG past the limit.
TEST_P(MountTest, HugeSparseOffsets) {
  ASSERT_TRUE(m().Mount());
  constexpr off_t k5GiB = off_t{5} << 30;
  {
    Fd fd = Open(m().At("sparse"), O_CREAT | O_RDWR);
    ASSERT_TRUE(fd.ok());
    ASSERT_TRUE(PwriteAll(fd.get(), "far", k5GiB)) << ErrnoName(errno);
    ASSERT_TRUE(PwriteAll(fd.get(), "near", 65530));  // across the first chunk boundary
    struct stat st;
    ASSERT_SYSCALL_OK(::fstat(fd.get(), &st));
    EXPECT_EQ(st.st_size, k5GiB + 3);
    char buf[16] = {};
    EXPECT_EQ(::pread(fd.get(), buf, sizeof buf, k5GiB - 8), 11);
    EXPECT_EQ(std::string(buf, 11), std::string(8, '\0') + "far");
    EXPECT_EQ(::pread(fd.get(), buf, 8, 65528), 8);
    EXPECT_EQ(std::string(buf, 8), std::string("\0\0near\0\0", 8));
    EXPECT_EQ(::pread(fd.get(), buf, 8, off_t{3} << 30), 8);
    EXPECT_EQ(std::string(buf, 8), std::string(8, '\0')) << "a hole at 3 GiB";
    // Past the largest file size the store allows (4 TiB): EFBIG, nothing changes.
    errno = 0;
    EXPECT_EQ(::pwrite(fd.get(), "x", 1, off_t{1} << 43), -1);
    EXPECT_EQ(ErrnoName(errno), "EFBIG");
    EXPECT_ERRNO(EFBIG, ::ftruncate(fd.get(), off_t{1} << 43));
    ASSERT_SYSCALL_OK(::fstat(fd.get(), &st));
    EXPECT_EQ(st.st_size, k5GiB + 3);
    ASSERT_SYSCALL_OK(::ftruncate(fd.get(), k5GiB - 1));  // cuts "far" off
    ASSERT_SYSCALL_OK(::ftruncate(fd.get(), k5GiB + 3));
    EXPECT_EQ(::pread(fd.get(), buf, 3, k5GiB), 3);
    EXPECT_EQ(std::string(buf, 3), std::string(3, '\0')) << "truncated bytes came back";
  }
  ASSERT_TRUE(m().Remount());
  Fd fd = Open(m().At("sparse"), O_RDONLY);
  ASSERT_TRUE(fd.ok());
  struct stat st;
  ASSERT_SYSCALL_OK(::fstat(fd.get(), &st));
  EXPECT_EQ(st.st_size, k5GiB + 3);
  char buf[8];
  EXPECT_EQ(::pread(fd.get(), buf, 4, 65530), 4);
  EXPECT_EQ(std::string(buf, 4), "near");
}

TEST_P(MountTest, UserXattrsSetGetListRemoveAndPersist) {
  ASSERT_TRUE(m().Mount());
  const std::string p = m().At("f");
  const std::string d = m().At("d");
  ASSERT_TRUE(WriteFile(p, "x"));
  ASSERT_SYSCALL_OK(::mkdir(d.c_str(), 0755));
  ASSERT_SYSCALL_OK(::setxattr(p.c_str(), "user.a", "alpha", 5, 0));
  ASSERT_SYSCALL_OK(::setxattr(p.c_str(), "user.b", "", 0, 0));  // empty value
  const std::string binary("\0\x01\xff value", 9);
  ASSERT_SYSCALL_OK(::setxattr(p.c_str(), "user.bin", binary.data(), binary.size(), 0));
  ASSERT_SYSCALL_OK(::setxattr(d.c_str(), "user.on_dir", "dir", 3, 0));
  char buf[256];
  EXPECT_EQ(::getxattr(p.c_str(), "user.a", nullptr, 0), 5) << "size query";
  ASSERT_EQ(::getxattr(p.c_str(), "user.a", buf, sizeof buf), 5) << ErrnoName(errno);
  EXPECT_EQ(std::string(buf, 5), "alpha");
  EXPECT_EQ(::getxattr(p.c_str(), "user.b", buf, sizeof buf), 0) << ErrnoName(errno);
  ASSERT_EQ(::getxattr(p.c_str(), "user.bin", buf, sizeof buf), 9) << ErrnoName(errno);
  EXPECT_EQ(std::string(buf, 9), binary);
  EXPECT_ERRNO(ERANGE, ::getxattr(p.c_str(), "user.a", buf, 2));
  EXPECT_ERRNO(ENODATA, ::getxattr(p.c_str(), "user.none", buf, sizeof buf));
  EXPECT_ERRNO(EEXIST, ::setxattr(p.c_str(), "user.a", "x", 1, XATTR_CREATE));
  EXPECT_ERRNO(ENODATA, ::setxattr(p.c_str(), "user.none", "x", 1, XATTR_REPLACE));
  EXPECT_SYSCALL_OK(::setxattr(p.c_str(), "user.a", "beta", 4, XATTR_REPLACE));
  ASSERT_EQ(::getxattr(d.c_str(), "user.on_dir", buf, sizeof buf), 3) << ErrnoName(errno);

  auto list = [&](const std::string& path) {
    char names[1024];
    const ssize_t n = ::listxattr(path.c_str(), names, sizeof names);
    std::set<std::string> out;
    if (n < 0) {
      out.insert("<listxattr " + ErrnoName(errno) + ">");
      return out;
    }
    for (ssize_t i = 0; i < n; i += static_cast<ssize_t>(std::strlen(names + i)) + 1) {
      out.insert(names + i);
    }
    return out;
  };
  EXPECT_EQ(list(p), (std::set<std::string>{"user.a", "user.b", "user.bin"}));
  const ssize_t list_size = ::listxattr(p.c_str(), nullptr, 0);
  EXPECT_EQ(list_size, static_cast<ssize_t>(sizeof "user.a" + sizeof "user.b" + sizeof "user.bin"));
  EXPECT_ERRNO(ERANGE, ::listxattr(p.c_str(), buf, 3));
  EXPECT_SYSCALL_OK(::removexattr(p.c_str(), "user.b"));
  EXPECT_ERRNO(ENODATA, ::removexattr(p.c_str(), "user.b"));
  EXPECT_ERRNO(ENODATA, ::getxattr(p.c_str(), "user.b", buf, sizeof buf));
  // Renaming keeps a file's xattrs.
  ASSERT_SYSCALL_OK(::rename(p.c_str(), m().At("g").c_str()));

  ASSERT_TRUE(m().Remount());
  const std::string g = m().At("g");
  EXPECT_EQ(list(g), (std::set<std::string>{"user.a", "user.bin"}));
  ASSERT_EQ(::getxattr(g.c_str(), "user.a", buf, sizeof buf), 4) << ErrnoName(errno);
  EXPECT_EQ(std::string(buf, 4), "beta");
  ASSERT_EQ(::getxattr(g.c_str(), "user.bin", buf, sizeof buf), 9) << ErrnoName(errno);
  EXPECT_EQ(std::string(buf, 9), binary);
  EXPECT_EQ(list(d), (std::set<std::string>{"user.on_dir"}));
}

TEST_P(MountTest, StatfsAnswers) {
  ASSERT_TRUE(m().Mount());
  ASSERT_SYSCALL_OK(::mkdir(m().At("sub").c_str(), 0755));
  for (const std::string& path : {m().mnt(), m().At("sub")}) {
    struct statvfs sv;
    ASSERT_EQ(::statvfs(path.c_str(), &sv), 0) << path << ": " << ErrnoName(errno);
    EXPECT_GT(sv.f_bsize, 0u);
    EXPECT_GT(sv.f_frsize, 0u);
    EXPECT_GT(sv.f_blocks, 0u) << "df would show a size of 0";
    EXPECT_LE(sv.f_bfree, sv.f_blocks);
    EXPECT_LE(sv.f_bavail, sv.f_bfree);
    EXPECT_EQ(sv.f_namemax, 255u);
    struct statfs sf;
    ASSERT_EQ(::statfs(path.c_str(), &sf), 0) << ErrnoName(errno);
    EXPECT_EQ(sf.f_type, kFuseSuperMagic);
  }
  const CmdResult r = Exec({"df", "-P", m().mnt()});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
}

TEST_P(MountTest, ControlFilesShowStatsConfigAndMetricsAndAreReadOnly) {
  ASSERT_TRUE(m().Mount());
  const nlohmann::json before = ReadStats(m());
  ASSERT_TRUE(before.is_object()) << ReadStatsText(m());
  EXPECT_EQ(StoreNames(before), std::vector<std::string>{engine()}) << before.dump(2);
  EXPECT_GE(test::SumOverStores(before, "files", "writes"), 0) << before.dump(2);
  EXPECT_GE(test::SumOverStores(before, "wal", "syncs"), 0) << before.dump(2);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(WriteFile(m().At("f" + std::to_string(i)), std::string(1000, 'w')));
  }
  const nlohmann::json after = ReadStats(m());
  EXPECT_GE(test::SumOverStores(after, "files", "writes"),
            test::SumOverStores(before, "files", "writes") + 5)
      << "writes did not count:\n"
      << after.dump(2);

  const CmdResult config = Exec({"cat", m().At(".kvfs/config")});
  EXPECT_EQ(config.exit_code, 0) << config.Describe();
  EXPECT_NE(config.output.find("[[store]]"), std::string::npos) << config.output;
  EXPECT_NE(config.output.find("name = \"" + engine() + "\""), std::string::npos) << config.output;
  EXPECT_NE(config.output.find("engine = \"" + engine() + "\""), std::string::npos)
      << config.output;

  // The metrics: Prometheus text with the numbers the stats show. An fsync of the store's root
  // first, so that no batch-mode sync changes the log's numbers between the two reads.
  {
    Fd root = Open(m().At(""), O_RDONLY | O_DIRECTORY);
    ASSERT_TRUE(root.ok()) << ErrnoName(errno);
    ASSERT_SYSCALL_OK(::fsync(root.get()));
  }
  const CmdResult metrics = Exec({"cat", m().At(".kvfs/metrics")});
  EXPECT_EQ(metrics.exit_code, 0) << metrics.Describe();
  const std::string stats = ReadStatsText(m());
  test::Exposition exposition;
  EXPECT_TRUE(test::ParseExposition(metrics.output, &exposition));
  EXPECT_EQ(exposition.types["kvfs_file_writes_total"], "counter");
  EXPECT_TRUE(test::MetricsAgreeWithStats(test::ParseJson(stats), exposition,
                                          /*uptime_slack_s=*/1))
      << metrics.output << stats;
  std::set<std::string> control;
  for (const auto& entry : fs::directory_iterator(m().At(".kvfs"))) {
    control.insert(entry.path().filename());
  }
  EXPECT_EQ(control, (std::set<std::string>{"stats", "config", "metrics"}));

  // Read-only: no writing, truncating, removing or creating.
  for (const char* name : {".kvfs/stats", ".kvfs/config", ".kvfs/metrics"}) {
    const std::string p = m().At(name);
    errno = 0;
    EXPECT_EQ(OpenClose(p, O_WRONLY), -1) << name << " opened for writing";
    EXPECT_EQ(OpenClose(p, O_RDWR | O_TRUNC), -1) << name << " opened with O_TRUNC";
    EXPECT_EQ(::unlink(p.c_str()), -1) << name << " unlinked";
    EXPECT_EQ(::truncate(p.c_str(), 0), -1) << name << " truncated";
  }
  EXPECT_EQ(OpenClose(m().At(".kvfs/new"), O_CREAT | O_WRONLY), -1);
  EXPECT_EQ(::mkdir(m().At(".kvfs/dir").c_str(), 0755), -1);
  EXPECT_EQ(::rmdir(m().At(".kvfs").c_str()), -1);
  EXPECT_TRUE(ReadStats(m()).is_object());
}

TEST_P(MountTest, OwnershipFollowsTheCallerAndPermissionsAreChecked) {
  m().options().fuse_options = {"allow_other"};
  ASSERT_SYSCALL_OK(::chmod(m().dir().c_str(), 0755));  // mkdtemp made it 0700: let 65534 in
  ASSERT_TRUE(m().Mount());
  const std::string pub = m().At("pub");
  ASSERT_SYSCALL_OK(::mkdir(pub.c_str(), 0777));
  ASSERT_SYSCALL_OK(::chmod(pub.c_str(), 0777));  // past the umask
  const std::string byuser = pub + "/byuser", userdir = pub + "/userdir";
  const char* byuser_c = byuser.c_str();
  const char* userdir_c = userdir.c_str();
  EXPECT_EQ(ErrnoName(RunAs(kNobody, kNobody,
                            [&] {
                              const int fd = ::open(byuser_c, O_CREAT | O_EXCL | O_WRONLY, 0644);
                              if (fd < 0) return errno;
                              if (::write(fd, "mine", 4) != 4) return errno;
                              return ::close(fd) == 0 ? 0 : errno;
                            })),
            "success")
      << "create as uid 65534 in a 0777 directory";
  EXPECT_EQ(
      ErrnoName(RunAs(kNobody, kNobody, [&] { return ::mkdir(userdir_c, 0755) == 0 ? 0 : errno; })),
      "success");
  struct stat st;
  for (const std::string& p : {byuser, userdir}) {
    ASSERT_SYSCALL_OK(::stat(p.c_str(), &st));
    EXPECT_EQ(st.st_uid, kNobody) << p;
    EXPECT_EQ(st.st_gid, kNobody) << p;
  }

  const std::string secret = pub + "/secret", shared = pub + "/shared", open = pub + "/open";
  ASSERT_TRUE(WriteFile(secret, "secret"));
  ASSERT_SYSCALL_OK(::chmod(secret.c_str(), 0600));
  ASSERT_TRUE(WriteFile(shared, "shared"));
  ASSERT_SYSCALL_OK(::chown(shared.c_str(), 0, kNobody));
  ASSERT_SYSCALL_OK(::chmod(shared.c_str(), 0640));
  ASSERT_TRUE(WriteFile(open, "open"));
  ASSERT_SYSCALL_OK(::chmod(open.c_str(), 0644));
  const char* secret_c = secret.c_str();
  const char* shared_c = shared.c_str();
  const char* open_c = open.c_str();
  auto open_as_nobody = [&](const char* path, int flags) {
    return ErrnoName(RunAs(kNobody, kNobody, [&] {
      const int fd = ::open(path, flags);
      if (fd < 0) return errno;
      ::close(fd);
      return 0;
    }));
  };
  EXPECT_EQ(open_as_nobody(secret_c, O_RDONLY), "EACCES") << "0600 root file read by 65534";
  EXPECT_EQ(open_as_nobody(secret_c, O_WRONLY), "EACCES");
  EXPECT_EQ(open_as_nobody(shared_c, O_RDONLY), "success") << "0640 root:65534 read by group";
  EXPECT_EQ(open_as_nobody(shared_c, O_WRONLY), "EACCES");
  EXPECT_EQ(open_as_nobody(open_c, O_RDONLY), "success");
  EXPECT_EQ(open_as_nobody(open_c, O_WRONLY), "EACCES");
  EXPECT_EQ(
      ErrnoName(RunAs(kNobody, kNobody, [&] { return ::chmod(secret_c, 0666) == 0 ? 0 : errno; })),
      "EPERM")
      << "chmod by a non-owner";
  EXPECT_EQ(
      ErrnoName(RunAs(kNobody, kNobody, [&] { return ::chown(byuser_c, 0, 0) == 0 ? 0 : errno; })),
      "EPERM")
      << "giving a file away";
  const std::string rootdir_file = m().At("rootonly");
  const char* rootdir_file_c = rootdir_file.c_str();
  EXPECT_EQ(ErrnoName(RunAs(kNobody, kNobody,
                            [&] {
                              const int fd = ::open(rootdir_file_c, O_CREAT | O_WRONLY, 0644);
                              if (fd < 0) return errno;
                              ::close(fd);
                              return 0;
                            })),
            "EACCES")
      << "create in root's 0755 directory";
  EXPECT_EQ(ReadFile(secret), "secret");
  // Writing to a setuid/setgid file drops those bits, as on a local disk (the writer lacks
  // CAP_FSETID); else anyone allowed to write could plant code that runs as the owner.
  const std::string suid = pub + "/suid";
  ASSERT_TRUE(WriteFile(suid, "#!/bin/sh\n"));
  ASSERT_SYSCALL_OK(::chmod(suid.c_str(), 06777));
  const char* suid_c = suid.c_str();
  EXPECT_EQ(ErrnoName(RunAs(kNobody, kNobody,
                            [&] {
                              const int fd = ::open(suid_c, O_WRONLY | O_APPEND);
                              if (fd < 0) return errno;
                              const bool ok = ::write(fd, "id\n", 3) == 3;
                              const int err = errno;
                              ::close(fd);
                              return ok ? 0 : err;
                            })),
            "success");
  ASSERT_SYSCALL_OK(::stat(suid_c, &st));
  EXPECT_EQ(st.st_mode & 07777, 0777u) << "a write by another user kept setuid/setgid";
  // A setgid directory hands its group down, and its setgid bit to new subdirectories.
  const std::string sgid = m().At("sgid");
  ASSERT_SYSCALL_OK(::mkdir(sgid.c_str(), 0755));
  ASSERT_SYSCALL_OK(::chown(sgid.c_str(), 0, kNobody));
  ASSERT_SYSCALL_OK(::chmod(sgid.c_str(), 02775));
  ASSERT_TRUE(WriteFile(sgid + "/file", ""));
  ASSERT_SYSCALL_OK(::mkdir((sgid + "/sub").c_str(), 0755));
  ASSERT_SYSCALL_OK(::stat((sgid + "/file").c_str(), &st));
  EXPECT_EQ(st.st_gid, kNobody) << "file in a setgid directory";
  ASSERT_SYSCALL_OK(::stat((sgid + "/sub").c_str(), &st));
  EXPECT_EQ(st.st_gid, kNobody) << "directory in a setgid directory";
  EXPECT_TRUE(st.st_mode & S_ISGID) << "subdirectory of a setgid directory lacks setgid";

  ASSERT_TRUE(m().Remount());
  ASSERT_SYSCALL_OK(::stat(byuser.c_str(), &st));
  EXPECT_EQ(st.st_uid, kNobody);
  EXPECT_EQ(st.st_gid, kNobody);
  ASSERT_SYSCALL_OK(::stat(secret.c_str(), &st));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_uid, 0u);
  EXPECT_EQ(open_as_nobody(secret_c, O_RDONLY), "EACCES") << "after remount";
  EXPECT_EQ(ReadFile(byuser), "mine");
}

// Inode identity: open files and directory descriptors (and a shell's cwd) keep working after
// their directory is renamed or exchanged, and writes through them land at the new path.
TEST_P(MountTest, OpenFilesFollowRenamesOfTheirDirectories) {
  ASSERT_TRUE(m().Mount());
  ASSERT_SYSCALL_OK(::mkdir(m().At("a").c_str(), 0755));
  ASSERT_SYSCALL_OK(::mkdir(m().At("a/b").c_str(), 0755));
  ASSERT_TRUE(WriteFile(m().At("a/b/f"), "hello"));
  Fd fd = Open(m().At("a/b/f"), O_RDWR);
  ASSERT_TRUE(fd.ok());
  Fd dir = Open(m().At("a/b"), O_RDONLY | O_DIRECTORY);
  ASSERT_TRUE(dir.ok());
  ASSERT_SYSCALL_OK(::rename(m().At("a").c_str(), m().At("z").c_str()));
  EXPECT_TRUE(PwriteAll(fd.get(), "HELLO", 0));
  EXPECT_SYSCALL_OK(::fsync(fd.get()));
  struct stat st;
  EXPECT_SYSCALL_OK(::fstat(fd.get(), &st));
  EXPECT_EQ(ReadFile(m().At("z/b/f")), "HELLO");
  EXPECT_SYSCALL_OK(OpenClose(m().At("z/b/f"), O_RDONLY));
  const int g = ::openat(dir.get(), "g", O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  EXPECT_GE(g, 0) << "openat in a renamed directory: " << ErrnoName(errno);
  if (g >= 0) ::close(g);
  EXPECT_TRUE(fs::exists(m().At("z/b/g")));
  EXPECT_FALSE(fs::exists(m().At("a")));
  EXPECT_SYSCALL_OK(::fstatat(dir.get(), "f", &st, 0));

  // A shell whose working directory moves away under it.
  const CmdResult r = Sh("cd " + Quote(m().At("z/b")) + " && mv " + Quote(m().At("z")) + " " +
                         Quote(m().At("y")) + " && ls && echo x > h && cat f");
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(r.output, "f\ng\nHELLO") << r.Describe();
  EXPECT_EQ(ReadFile(m().At("y/b/h")), "x\n");

  // Exchanged directories: an open file inside keeps pointing at its own file.
  ASSERT_SYSCALL_OK(::mkdir(m().At("p").c_str(), 0755));
  ASSERT_SYSCALL_OK(::mkdir(m().At("q").c_str(), 0755));
  ASSERT_TRUE(WriteFile(m().At("p/pf"), "P"));
  ASSERT_TRUE(WriteFile(m().At("q/qf"), "Q"));
  Fd pf = Open(m().At("p/pf"), O_RDWR);
  ASSERT_TRUE(pf.ok());
  EXPECT_SYSCALL_OK(
      ::renameat2(AT_FDCWD, m().At("p").c_str(), AT_FDCWD, m().At("q").c_str(), RENAME_EXCHANGE));
  EXPECT_TRUE(PwriteAll(pf.get(), "P2", 0));
  EXPECT_EQ(ReadFile(m().At("q/pf")), "P2");
  EXPECT_EQ(ReadFile(m().At("p/qf")), "Q");
  fd.Reset();
  dir.Reset();
  pf.Reset();

  ASSERT_TRUE(m().Remount());
  EXPECT_EQ(ReadFile(m().At("y/b/f")), "HELLO");
  EXPECT_TRUE(fs::exists(m().At("y/b/g")));
  EXPECT_EQ(ReadFile(m().At("y/b/h")), "x\n");
  EXPECT_EQ(ReadFile(m().At("q/pf")), "P2");
  EXPECT_EQ(ReadFile(m().At("p/qf")), "Q");
}

// mv of a directory of 3006 entries, more than one batch of a directory move (kMoveBatch), so it
// moves behind a move record in bounded batches: every entry at the new path with its content,
// none at the old; a file held open inside keeps writing to its file; the same after a remount.
TEST_P(MountTest, MvOfABigDirectoryMovesEveryEntry) {
  ASSERT_TRUE(m().Mount());
  const CmdResult made =
      Sh("cd " + Quote(m().At("")) +
         " && mkdir big && for d in 0 1 2 3 4 5; do mkdir big/d$d; i=0; while [ $i -lt 500 ]; do "
         "echo $d-$i > big/d$d/f$i; i=$((i+1)); done; done");
  ASSERT_EQ(made.exit_code, 0) << made.Describe();
  Fd fd = Open(m().At("big/d3/f7"), O_RDWR);
  ASSERT_TRUE(fd.ok());
  const CmdResult mv = Sh("mv " + Quote(m().At("big")) + " " + Quote(m().At("moved")));
  ASSERT_EQ(mv.exit_code, 0) << mv.Describe();
  EXPECT_FALSE(fs::exists(m().At("big")));
  EXPECT_TRUE(PwriteAll(fd.get(), "X", 0));
  fd.Reset();
  auto check = [&] {
    const CmdResult n = Sh("cd " + Quote(m().At("moved")) + " && find . | wc -l && cat d5/f499");
    EXPECT_EQ(n.output, "3007\n5-499\n") << n.Describe();  // ".", 6 directories, 3000 files
    EXPECT_EQ(ReadFile(m().At("moved/d3/f7")), "X-7\n");
    EXPECT_FALSE(fs::exists(m().At("big")));
  };
  check();
  ASSERT_TRUE(m().Remount());
  check();
}

TEST_P(MountTest, TimestampsFollowChangesAndKeepNanoseconds) {
  ASSERT_TRUE(m().Mount());
  const std::string f = m().At("f"), d = m().At("d");
  ASSERT_TRUE(WriteFile(f, "x"));
  ASSERT_SYSCALL_OK(::mkdir(d.c_str(), 0755));
  const timespec past[2] = {{978307200, 123456789}, {978307201, 987654321}};  // 2001
  ASSERT_SYSCALL_OK(::utimensat(AT_FDCWD, f.c_str(), past, 0));
  ASSERT_SYSCALL_OK(::utimensat(AT_FDCWD, d.c_str(), past, 0));
  struct stat st;
  ASSERT_SYSCALL_OK(::stat(f.c_str(), &st));
  EXPECT_EQ(st.st_atim.tv_sec, past[0].tv_sec);
  EXPECT_EQ(st.st_atim.tv_nsec, past[0].tv_nsec);
  EXPECT_EQ(st.st_mtim.tv_sec, past[1].tv_sec);
  EXPECT_EQ(st.st_mtim.tv_nsec, past[1].tv_nsec);
  {
    Fd fd = Open(f, O_WRONLY);
    ASSERT_TRUE(PwriteAll(fd.get(), "more", 1));
  }
  ASSERT_SYSCALL_OK(::stat(f.c_str(), &st));
  EXPECT_GT(st.st_mtim.tv_sec, past[1].tv_sec) << "a write did not update mtime";
  EXPECT_GT(st.st_ctim.tv_sec, past[1].tv_sec) << "a write did not update ctime";
  ASSERT_TRUE(WriteFile(d + "/new", ""));
  ASSERT_SYSCALL_OK(::stat(d.c_str(), &st));
  EXPECT_GT(st.st_mtim.tv_sec, past[1].tv_sec) << "a create did not update the directory's mtime";
  ASSERT_SYSCALL_OK(::utimensat(AT_FDCWD, d.c_str(), past, 0));
  ASSERT_SYSCALL_OK(::unlink((d + "/new").c_str()));
  ASSERT_SYSCALL_OK(::stat(d.c_str(), &st));
  EXPECT_GT(st.st_mtim.tv_sec, past[1].tv_sec) << "an unlink did not update the directory's mtime";
  ASSERT_SYSCALL_OK(::utimensat(AT_FDCWD, f.c_str(), past, 0));

  ASSERT_TRUE(m().Remount());
  ASSERT_SYSCALL_OK(::stat(f.c_str(), &st));
  EXPECT_EQ(st.st_mtim.tv_sec, past[1].tv_sec);
  EXPECT_EQ(st.st_mtim.tv_nsec, past[1].tv_nsec) << "nanoseconds lost across a remount";
  EXPECT_EQ(st.st_atim.tv_nsec, past[0].tv_nsec);
  EXPECT_EQ(st.st_size, 5);
}

// Several processes at once: O_EXCL gives each name to exactly one, O_APPEND writes never
// overwrite each other.
TEST_P(MountTest, ConcurrentExclusiveCreatesAndAppends) {
  ASSERT_TRUE(m().Mount());
  constexpr int kProcs = 4, kNames = 40, kLines = 100, kLineLen = 64;
  const std::string dir = m().mnt();
  const char* dir_c = dir.c_str();
  std::vector<pid_t> pids;
  for (int p = 0; p < kProcs; ++p) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      char path[4200];
      std::snprintf(path, sizeof path, "%s/log", dir_c);
      const int log = ::open(path, O_CREAT | O_WRONLY | O_APPEND, 0644);
      if (log < 0) ::_exit(200);
      int won = 0;
      for (int i = 0; i < kLines; ++i) {
        if (i < kNames) {
          std::snprintf(path, sizeof path, "%s/x%02d", dir_c, i);
          const int fd = ::open(path, O_CREAT | O_EXCL | O_WRONLY, 0644);
          if (fd >= 0) {
            ++won;
            const char id = static_cast<char>('0' + p);
            if (::write(fd, &id, 1) != 1) ::_exit(201);
            ::close(fd);
          } else if (errno != EEXIST) {
            ::_exit(202);
          }
        }
        char line[kLineLen + 1];
        std::memset(line, ' ', kLineLen);
        const int n = std::snprintf(line, sizeof line, "proc %d line %03d", p, i);
        line[n] = ' ';
        line[kLineLen - 1] = '\n';
        if (::write(log, line, kLineLen) != kLineLen) ::_exit(203);
      }
      ::close(log);
      ::_exit(won);
    }
    ASSERT_GT(pid, 0);
    pids.push_back(pid);
  }
  int total = 0;
  for (pid_t pid : pids) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    ASSERT_LE(WEXITSTATUS(status), kNames) << "child failed with code " << WEXITSTATUS(status);
    total += WEXITSTATUS(status);
  }
  EXPECT_EQ(total, kNames) << "O_EXCL creates won in total (each name exactly once)";
  for (int i = 0; i < kNames; ++i) {
    char name[16];
    std::snprintf(name, sizeof name, "x%02d", i);
    EXPECT_EQ(ReadFile(m().At(name)).size(), 1u) << name << " written by more than one creator";
  }
  const std::string log = ReadFile(m().At("log"));
  ASSERT_EQ(log.size(), static_cast<size_t>(kProcs * kLines * kLineLen))
      << "O_APPEND writes overwrote each other";
  std::map<int, int> next;
  for (size_t off = 0; off < log.size(); off += kLineLen) {
    int p = -1, l = -1;
    ASSERT_EQ(std::sscanf(log.c_str() + off, "proc %d line %d", &p, &l), 2)
        << "torn line at " << off << ": " << log.substr(off, kLineLen);
    EXPECT_EQ(l, next[p]) << "process " << p << "'s lines out of order";
    next[p] = l + 1;
    EXPECT_EQ(log[off + kLineLen - 1], '\n');
  }
}

TEST_P(MountTest, SharedMmapWritesReachTheFile) {
  ASSERT_TRUE(m().Mount());
  constexpr size_t kSize = 3 * 65536 + 100;
  std::string want(kSize, '\0');
  {
    Fd fd = Open(m().At("mapped"), O_CREAT | O_RDWR);
    ASSERT_TRUE(fd.ok());
    ASSERT_SYSCALL_OK(::ftruncate(fd.get(), kSize));
    void* p = ::mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
    ASSERT_NE(p, MAP_FAILED) << "mmap MAP_SHARED: " << ErrnoName(errno);
    char* c = static_cast<char*>(p);
    for (size_t i = 0; i < kSize; i += 997) {
      c[i] = static_cast<char>('A' + i % 26);
      want[i] = c[i];
    }
    EXPECT_SYSCALL_OK(::msync(p, kSize, MS_SYNC));
    ::munmap(p, kSize);
    EXPECT_SYSCALL_OK(::fsync(fd.get()));
  }
  std::string got = ReadFile(m().At("mapped"));
  EXPECT_TRUE(got == want) << FirstDifference(got, want);
  {
    Fd fd = Open(m().At("mapped"), O_RDONLY);
    void* p = ::mmap(nullptr, kSize, PROT_READ, MAP_SHARED, fd.get(), 0);
    ASSERT_NE(p, MAP_FAILED) << ErrnoName(errno);
    EXPECT_EQ(std::memcmp(p, want.data(), kSize), 0) << "mmap read differs";
    ::munmap(p, kSize);
  }
  ASSERT_TRUE(m().Remount());
  got = ReadFile(m().At("mapped"));
  EXPECT_TRUE(got == want) << "after remount: " << FirstDifference(got, want);
}

uint64_t DiskUsage(const std::string& dir) {  // allocated bytes, as du counts them
  uint64_t bytes = 0;
  std::error_code ec;
  for (const auto& entry : fs::recursive_directory_iterator(dir, ec)) {
    struct stat st;
    if (::lstat(entry.path().c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      bytes += static_cast<uint64_t>(st.st_blocks) * 512;
    }
  }
  return bytes;
}

// A one-store config for engine `engine` in `data` with log segments of `segment_size`.
std::string SmallSegmentConfig(const std::string& engine, const std::string& data,
                               const std::string& segment_size) {
  return "[[store]]\nname = \"s\"\nengine = \"" + engine + "\"\ndata_dir = \"" + data +
         "\"\nsegment_size = \"" + segment_size + "\"\n";
}

// Mounting and unmounting again and again (each time with a little work) must not make the data
// directory grow without bound: what a clean close leaves behind, a later open reuses or drops.
// Log segments of 2 MiB keep the cycles cheap; twelve mounts holding a few bytes must stay
// within 16 MiB (a few segments awaiting a merge are fine; one more per mount forever is not).
TEST_P(MountTest, RepeatedRemountsDoNotGrowTheDataDirectory) {
  m().options().pass_data = false;
  m().options().engine = "";
  m().options().config = m().Sub("kvfs.toml");
  ASSERT_TRUE(WriteFile(m().options().config, SmallSegmentConfig(engine(), m().data(), "2MiB")));
  std::vector<uint64_t> usage;
  for (int i = 0; i < 12; ++i) {
    ASSERT_TRUE(m().Mount());
    ASSERT_TRUE(WriteFile(m().At("s/f" + std::to_string(i)), std::to_string(i)));
    ASSERT_TRUE(m().Unmount());
    usage.push_back(DiskUsage(m().data()));
  }
  std::string trend;
  for (uint64_t u : usage) trend += std::to_string(u >> 10) + " ";
  const CmdResult files = Sh("cd " + Quote(m().data()) + " && ls -lR");
  EXPECT_LE(usage.back(), uint64_t{16} << 20)
      << "KiB used after each of 12 mounts: " << trend << "\n"
      << files.output;
}

// The smallest segment size the config accepts (1 MiB) mounts and works, files spanning many
// segments included.
TEST_P(MountTest, SmallestSegmentSizeWorks) {
  m().options().pass_data = false;
  m().options().engine = "";
  m().options().config = m().Sub("kvfs.toml");
  ASSERT_TRUE(WriteFile(m().options().config, SmallSegmentConfig(engine(), m().data(), "1MiB")));
  ASSERT_TRUE(m().Mount());
  std::mt19937_64 rng(19);
  const std::string data = RandomBytes(rng, 3 << 20);
  ASSERT_TRUE(WriteFile(m().At("s/big"), data));
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(WriteFile(m().At("s/f" + std::to_string(i)), "x"));
  ASSERT_TRUE(m().Remount());
  EXPECT_TRUE(ReadFile(m().At("s/big")) == data);
  EXPECT_EQ(ReadFile(m().At("s/f49")), "x");
}

// `always` syncs the log for every operation; `none` never, unless a program asks.
TEST_P(MountTest, SyncModeDecidesWhetherPlainWritesSyncTheLog) {
  m().options().sync = "always";
  ASSERT_TRUE(m().Mount());
  SyncCounts before = ReadSyncs(m());
  ASSERT_TRUE(WriteFile(m().At("a"), "always"));
  SyncCounts after = ReadSyncs(m());
  EXPECT_GT(after.log, before.log) << "sync=always: a write without fsync did not sync the log";
  ASSERT_TRUE(m().Unmount());

  m().options().sync = "none";
  ASSERT_TRUE(m().Mount());
  before = ReadSyncs(m());
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(WriteFile(m().At("n" + std::to_string(i)), "none"));
  ASSERT_SYSCALL_OK(::mkdir(m().At("dir").c_str(), 0755));
  ASSERT_SYSCALL_OK(::rename(m().At("n0").c_str(), m().At("dir/n0").c_str()));
  after = ReadSyncs(m());
  EXPECT_EQ(after.log, before.log) << "sync=none: the log was synced without fsync:\n"
                                   << ReadStatsText(m());
  EXPECT_EQ(after.engine, before.engine) << "sync=none: the engine was asked to sync:\n"
                                         << ReadStatsText(m());
}

// ---------------------------------------------------------------------------------------------
// Several stores in one mount.

TEST_P(MountTest, RenameBetweenStoresIsExdevAndMvCopiesInstead) {
  MountOptions options;
  options.pass_data = false;
  options.config = m().Sub("kvfs.toml");
  std::string toml;
  for (const char* store : {"one", "two"}) {
    toml += "[[store]]\nname = \"" + std::string(store) + "\"\nengine = \"" + engine() +
            "\"\ndata_dir = \"" + m().data() + "/" + store + "\"\n\n";
  }
  ASSERT_TRUE(WriteFile(options.config, toml));
  m().options() = options;
  ASSERT_TRUE(m().Mount());
  const std::string one = m().At("one"), two = m().At("two");
  ASSERT_TRUE(fs::is_directory(one));
  ASSERT_TRUE(fs::is_directory(two));
  ASSERT_TRUE(WriteFile(one + "/f", "from one"));
  ASSERT_TRUE(WriteFile(two + "/g", "in two"));
  ASSERT_SYSCALL_OK(::mkdir((one + "/dir").c_str(), 0755));
  ASSERT_TRUE(WriteFile(one + "/dir/inner", "inner"));
  EXPECT_ERRNO(EXDEV, ::rename((one + "/f").c_str(), (two + "/f").c_str()));
  EXPECT_ERRNO(EXDEV, ::rename((one + "/f").c_str(), (two + "/g").c_str()));
  EXPECT_ERRNO(EXDEV, ::rename((one + "/dir").c_str(), (two + "/dir").c_str()));
  EXPECT_ERRNO(EXDEV, ::renameat2(AT_FDCWD, (one + "/f").c_str(), AT_FDCWD, (two + "/g").c_str(),
                                  RENAME_EXCHANGE));
  EXPECT_ERRNO(EXDEV, ::renameat2(AT_FDCWD, (one + "/f").c_str(), AT_FDCWD, (two + "/new").c_str(),
                                  RENAME_NOREPLACE));
  EXPECT_EQ(ReadFile(one + "/f"), "from one");
  EXPECT_EQ(ReadFile(two + "/g"), "in two");
  CmdResult r = Sh("mv " + Quote(one + "/f") + " " + Quote(two + "/f") + " && mv " +
                   Quote(one + "/dir") + " " + Quote(two + "/"));
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_FALSE(fs::exists(one + "/f"));
  EXPECT_FALSE(fs::exists(one + "/dir"));
  EXPECT_EQ(ReadFile(two + "/f"), "from one");
  EXPECT_EQ(ReadFile(two + "/dir/inner"), "inner");
  EXPECT_EQ(StoreNames(ReadStats(m())), (std::vector<std::string>{"one", "two"}))
      << ReadStatsText(m());

  ASSERT_TRUE(m().Remount());
  EXPECT_EQ(ReadFile(two + "/f"), "from one");
  EXPECT_EQ(ReadFile(two + "/dir/inner"), "inner");
  EXPECT_FALSE(fs::exists(one + "/f"));
  // Each store lives in its own data directory.
  ASSERT_TRUE(m().Unmount());
  r = Exec({KvfsBinary(), "get", "--config", options.config, "two/dir/inner"});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(r.output, "inner");
  r = Exec({KvfsBinary(), "get", "--data", m().data() + "/two", "--engine", engine(), "f"});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(r.output, "from one");
}

// ---------------------------------------------------------------------------------------------
// The command line: offline tools, daemonizing, unmount paths, mount.fuse3, errors.

TEST_P(MountTest, OfflineToolsSeeWhatTheMountWroteAndTheMountSeesWhatTheyWrite) {
  ASSERT_TRUE(m().Mount());
  std::mt19937_64 rng(11);
  const std::string big = RandomBytes(rng, 70000);
  ASSERT_SYSCALL_OK(::mkdir(m().At("a").c_str(), 0755));
  ASSERT_SYSCALL_OK(::mkdir(m().At("a/b").c_str(), 0755));
  ASSERT_SYSCALL_OK(::mkdir(m().At("a/empty").c_str(), 0755));
  ASSERT_TRUE(WriteFile(m().At("a/b/c.txt"), "see me\n"));
  ASSERT_TRUE(WriteFile(m().At("a/big"), big));
  ASSERT_SYSCALL_OK(::symlink("b/c.txt", m().At("a/link").c_str()));
  ASSERT_TRUE(m().Unmount());

  auto kvfs = [&](std::vector<std::string> args) {
    args.insert(args.begin() + 1, {"--data", m().data(), "--engine", engine()});
    args.insert(args.begin(), KvfsBinary());
    return Exec(args);
  };
  CmdResult r = kvfs({"ls", "a"});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  for (const char* name : {"b", "big", "empty", "link"}) {
    EXPECT_NE(r.output.find(name), std::string::npos) << "kvfs ls a lacks " << name << ":\n"
                                                      << r.output;
  }
  r = kvfs({"ls", "-l", "a"});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_NE(r.output.find("70000"), std::string::npos) << "kvfs ls -l: no size:\n" << r.output;
  r = kvfs({"get", "a/b/c.txt"});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(r.output, "see me\n");
  r = Sh(KvfsCommand({"get", "--data", m().data(), "--engine", engine(), "a/big"}) + " > " +
         Quote(m().Sub("big.out")));
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_TRUE(ReadFile(m().Sub("big.out")) == big) << "kvfs get a/big differs";
  r = kvfs({"get", "a/missing"});
  EXPECT_NE(r.exit_code, 0) << "kvfs get of a missing file: " << r.Describe();
  r = kvfs({"check"});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();

  ASSERT_TRUE(WriteFile(m().Sub("put.in"), big + "put"));
  r = kvfs({"put", "a/put_file", m().Sub("put.in")});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  r = Sh("printf 'from stdin' | " +
         KvfsCommand({"put", "--data", m().data(), "--engine", engine(), "a/b/stdin", "-"}));
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  r = kvfs({"rm", "a/b/c.txt"});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  r = kvfs({"check"});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();

  ASSERT_TRUE(m().Mount());
  EXPECT_TRUE(ReadFile(m().At("a/put_file")) == big + "put") << "kvfs put not seen by the mount";
  EXPECT_EQ(ReadFile(m().At("a/b/stdin")), "from stdin");
  EXPECT_FALSE(fs::exists(m().At("a/b/c.txt"))) << "kvfs rm not seen by the mount";
  EXPECT_TRUE(ReadFile(m().At("a/big")) == big);
  EXPECT_EQ(fs::read_symlink(m().At("a/link")).string(), "b/c.txt");
  EXPECT_TRUE(fs::is_directory(m().At("a/empty")));
}

TEST_P(MountTest, DaemonizedMountReturnsLiveAndKvfsUmountEndsIt) {
  ASSERT_TRUE(m().MountDaemonized(
      KvfsCommand({"mount", m().mnt(), "--data", m().data(), "--engine", engine()})));
  ASSERT_TRUE(WriteFile(m().At("f"), "daemonized"));
  ASSERT_TRUE(m().Unmount(UnmountWith::kKvfsUmount));
  const CmdResult r = Exec({KvfsBinary(), "get", "--data", m().data(), "--engine", engine(), "f"});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(r.output, "daemonized");
  ASSERT_TRUE(m().MountDaemonized(
      KvfsCommand({"mount", m().mnt(), "--data", m().data(), "--engine", engine()})));
  EXPECT_EQ(ReadFile(m().At("f")), "daemonized");
  ASSERT_TRUE(m().Unmount(UnmountWith::kFusermount));
}

TEST_P(MountTest, SigtermUnmountsCleanlyAndKeepsTheData) {
  ASSERT_TRUE(m().Mount());
  std::mt19937_64 rng(13);
  const std::string data = RandomBytes(rng, 100000);
  ASSERT_TRUE(WriteFile(m().At("f"), data));  // no fsync: a clean stop must keep it anyway
  ASSERT_TRUE(m().Unmount(UnmountWith::kSigterm));
  ASSERT_TRUE(m().Mount());
  EXPECT_TRUE(ReadFile(m().At("f")) == data);
}

// `mount -t fuse.kvfs DATA MNT -o engine=E` makes mount(8) run `/sbin/mount.fuse DATA MNT -o
// rw,engine=E -t fuse.kvfs`, which runs `kvfs DATA MNT -o rw,engine=E,dev,suid` through
// /bin/sh. mount(8) (util-linux 2.38) drops PATH from the helper's environment, so a kvfs that
// is not in a standard directory is found only if mount.fuse3 is run directly with PATH set
// (what mount(8) would run, same arguments), or named by its absolute path in the source
// ("/path/kvfs#DATA", type fuse). Both are shown; a kvfs installed in /usr/bin needs neither.
TEST_P(MountTest, MountFuse3HelperFindsKvfsOnPath) {
  const std::string cmd = "PATH=" + Quote(KvfsBinaryDir()) + ":\"$PATH\" mount.fuse3 " +
                          Quote(m().data()) + " " + Quote(m().mnt()) + " -o rw,engine=" + engine() +
                          " -t fuse.kvfs";
  ASSERT_TRUE(m().MountDaemonized(cmd));
  ASSERT_TRUE(WriteFile(m().At("f"), "via mount.fuse3"));
  ASSERT_TRUE(m().Unmount(UnmountWith::kUmount));
  ASSERT_TRUE(m().MountDaemonized(cmd));
  EXPECT_EQ(ReadFile(m().At("f")), "via mount.fuse3");
  ASSERT_TRUE(m().Unmount(UnmountWith::kFusermount));
}

TEST_P(MountTest, MountTypeFuseThroughMountAndUmount) {
  const std::string cmd = "mount -t fuse " + Quote(KvfsBinary() + "#" + m().data()) + " " +
                          Quote(m().mnt()) + " -o engine=" + engine();
  ASSERT_TRUE(m().MountDaemonized(cmd));
  ASSERT_TRUE(WriteFile(m().At("f"), "via mount(8)"));
  ASSERT_TRUE(m().Unmount(UnmountWith::kUmount));
  ASSERT_TRUE(m().MountDaemonized(cmd));
  EXPECT_EQ(ReadFile(m().At("f")), "via mount(8)");
  ASSERT_TRUE(m().Unmount(UnmountWith::kUmount));
}

TEST_P(MountTest, MountOfAMissingMountpointFailsSayingSo) {
  const std::string missing = m().Sub("no/such/dir");
  CmdResult r = Exec({KvfsBinary(), "mount", missing, "--data", m().data(), "--engine", engine()});
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  EXPECT_NE(r.output.find(missing), std::string::npos) << "message does not name the path:\n"
                                                       << r.output;
  EXPECT_EQ(FindDaemonFor(missing), -1) << "a daemon was left running";
  r = Exec({KvfsBinary(), "mount"});
  EXPECT_NE(r.exit_code, 0) << r.Describe();
  std::string lower = r.output;
  std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
  EXPECT_NE(lower.find("mountpoint"), std::string::npos) << r.output;
}

TEST_P(MountTest, SecondMountOfTheSameDataFailsNamingTheLock) {
  ASSERT_TRUE(m().Mount());
  ASSERT_TRUE(WriteFile(m().At("f"), "first"));
  KvfsMount second(ForEngine(engine()));
  const CmdResult r =
      Exec({KvfsBinary(), "mount", second.mnt(), "--data", m().data(), "--engine", engine()},
           kDaemonDeadline);
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  std::string lower = r.output;
  std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
  EXPECT_NE(lower.find("lock"), std::string::npos) << "message does not mention the lock:\n"
                                                   << r.output;
  EXPECT_FALSE(IsMounted(second.mnt())) << "the second mount is mounted";
  EXPECT_EQ(ReadFile(m().At("f")), "first") << "the first mount was disturbed";
  EXPECT_TRUE(m().Unmount());
}

TEST_P(MountTest, BadConfigFailsNamingTheFileLineAndKey) {
  const std::string config = m().Sub("bad.toml");
  ASSERT_TRUE(WriteFile(config,
                        "# a config with a typo\n"
                        "[[store]]\n"
                        "name = \"s\"\n"
                        "engine = \"" +
                            engine() +
                            "\"\n"
                            "data_dir = \"data/s\"\n"
                            "sync_mdoe = \"batch\"\n"));
  CmdResult r = Exec({KvfsBinary(), "mount", m().mnt(), "--config", config}, kDaemonDeadline);
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  EXPECT_NE(r.output.find("bad.toml:6"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("sync_mdoe"), std::string::npos) << r.output;
  EXPECT_FALSE(IsMounted(m().mnt()));

  ASSERT_TRUE(WriteFile(config,
                        "[[store]]\n"
                        "name = \"s\"\n"
                        "engine = \"" +
                            engine() +
                            "\"\n"
                            "data_dir = \"data/s\"\n"
                            "batch_window_ms = 0\n"));
  r = Exec({KvfsBinary(), "mount", m().mnt(), "--config", config}, kDaemonDeadline);
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  EXPECT_NE(r.output.find("bad.toml:5"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("batch_window_ms"), std::string::npos) << r.output;
  EXPECT_FALSE(IsMounted(m().mnt()));

  r = Exec({KvfsBinary(), "mount", m().mnt(), "--data", m().data(), "--engine", engine(), "--sync",
            "sometimes"},
           kDaemonDeadline);
  EXPECT_NE(r.exit_code, 0) << r.Describe();
  EXPECT_NE(r.output.find("sometimes"), std::string::npos) << r.output;
  EXPECT_FALSE(IsMounted(m().mnt()));
}

INSTANTIATE_TEST_SUITE_P(Engines, MountTest, testing::ValuesIn(engines::FileEngineNames()),
                         EngineParamName);

// The default configuration: one store per engine, each a top-level directory named after it.
TEST(DefaultMount, OneStorePerEngineAtTheRoot) {
  if (const std::string why = FuseSkipReason(); !why.empty()) GTEST_SKIP() << why;
  KvfsMount m(MountOptions{});
  ASSERT_TRUE(m.Mount());
  const std::vector<std::string> engines = engines::EngineNames();
  std::set<std::string> top;
  for (const auto& entry : fs::directory_iterator(m.mnt())) top.insert(entry.path().filename());
  for (const std::string& e : engines) {
    EXPECT_TRUE(top.count(e)) << "no store directory " << e << " at the root";
    ASSERT_TRUE(WriteFile(m.At(e + "/hello"), "hello from " + e)) << e;
    ASSERT_SYSCALL_OK(::mkdir(m.At(e + "/dir").c_str(), 0755));
  }
  if (engines.size() >= 2) {
    EXPECT_ERRNO(
        EXDEV, ::rename(m.At(engines[0] + "/hello").c_str(), m.At(engines[1] + "/moved").c_str()));
  }
  EXPECT_EQ(StoreNames(ReadStats(m)), engines) << ReadStatsText(m);
  ASSERT_TRUE(m.Remount());
  for (const std::string& e : engines) {
    EXPECT_EQ(ReadFile(m.At(e + "/hello")), "hello from " + e);
  }
  ASSERT_TRUE(m.Unmount());
  for (const std::string& e : engines) {
    EXPECT_TRUE(fs::is_directory(m.data() + "/" + e)) << "no data directory for " << e;
    const CmdResult r = Exec({KvfsBinary(), "get", "--data", m.data(), e + "/hello"});
    EXPECT_EQ(r.exit_code, 0) << r.Describe();
    EXPECT_EQ(r.output, "hello from " + e);
  }
  CmdResult r = Exec({KvfsBinary(), "ls", "--data", m.data(), "/"});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  for (const std::string& e : engines) EXPECT_NE(r.output.find(e), std::string::npos) << r.output;
  r = Exec({KvfsBinary(), "check", "--data", m.data()});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
}

TEST(DefaultMount, SqliteWalModeDatabase) {
  // WAL mode maps its -shm file shared and writable, which needs mmap support through FUSE.
  if (const std::string why = FuseSkipReason(); !why.empty()) GTEST_SKIP() << why;
  KvfsMount m(MountOptions{});
  ASSERT_TRUE(m.Mount());
  const std::string db = m.At(engines::EngineNames().front() + "/wal.sqlite");
  CmdResult r = Exec(
      {"sqlite3", "-batch", "-bail", db, std::string("PRAGMA journal_mode=WAL;") + kSqliteFill});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(r.output, "wal\n");
  r = Exec({"sqlite3", "-batch", db, kSqliteCheck});
  EXPECT_EQ(r.output, SqliteExpected()) << r.Describe();
  ASSERT_TRUE(m.Remount());
  r = Exec({"sqlite3", "-batch", db, kSqliteCheck});
  EXPECT_EQ(r.output, SqliteExpected()) << "after remount: " << r.Describe();
}

}  // namespace
}  // namespace kvfs::mount_test
