// The kvfs daemon over the etcd engine, mounted for real on a 3-member etcd cluster on loopback
// (tests/engines/etcd_cluster.h): files written through the mount live in the cluster, so a
// daemon started on another (empty) data directory with the same prefix serves them; and a
// second daemon mounted beside the first reads a file the first wrote and closed; a read-only
// follower that keeps the kernel's caches (default timeouts, an hour) sees the writer's changes
// within a bound, because the etcd watch invalidates them, and writes nothing to the store.
// Needs root, /dev/fuse and etcd (skipped, saying which is missing, otherwise).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/engines/etcd_cluster.h"
#include "tests/fusefs/mount_fixture.h"
#include "tests/test_util.h"

namespace kvfs::mount_test {
namespace {

using Clock = std::chrono::steady_clock;

std::string EtcdConfig(const std::string& data, const std::string& endpoints,
                       const std::string& prefix, int timeout_ms = 5000) {
  return "[[store]]\nname = \"e\"\nengine = \"etcd\"\ndata_dir = \"" + data +
         "\"\n[store.options]\nendpoints = \"" + endpoints + "\"\nprefix = \"" + prefix +
         "\"\ntimeout_ms = \"" + std::to_string(timeout_ms) + "\"\n";
}

// pwrite of all of `data` at `offset`: 0 or the errno.
int PWrite(int fd, const std::string& data, off_t offset) {
  const ssize_t n = ::pwrite(fd, data.data(), data.size(), offset);
  if (n < 0) return errno;
  return n == static_cast<ssize_t>(data.size()) ? 0 : EIO;
}

int FSync(int fd) { return ::fsync(fd) == 0 ? 0 : errno; }

std::string ErrnoName(int e) {
  if (e == 0) return "success";
  const char* n = ::strerrorname_np(e);
  return n != nullptr ? n : "errno " + std::to_string(e);
}

class MountEtcdTest : public testing::Test {
 protected:
  void SetUp() override {
    if (const std::string why = FuseSkipReason(); !why.empty()) GTEST_SKIP() << why;
    if (test::EtcdBinary().empty()) {
      GTEST_SKIP() << "no etcd binary on PATH: install etcd-server (scripts/setup-deps does)";
    }
    ASSERT_OK(cluster_.Start());
  }

  // A mount of the store under `prefix`, with its own private (empty) data directory.
  std::unique_ptr<KvfsMount> NewMount(const std::string& prefix,
                                      std::vector<std::string> fuse_options = {},
                                      int timeout_ms = 5000) {
    MountOptions o;
    o.pass_data = false;
    o.fuse_options = std::move(fuse_options);
    auto m = std::make_unique<KvfsMount>(o);
    m->options().config = m->Sub("kvfs.toml");
    EXPECT_TRUE(WriteFile(m->options().config,
                          EtcdConfig(m->data(), cluster_.endpoints(), prefix, timeout_ms)));
    return m;
  }

  test::EtcdCluster cluster_;
};

TEST_F(MountEtcdTest, FilesLiveInTheClusterAndAnotherDataDirectoryServesThem) {
  auto a = NewMount("tree/");
  ASSERT_TRUE(a->Mount());
  const std::string src = a->Sub("src");
  const CmdResult made =
      Sh("set -e; cd " + Quote(a->At("e")) +
         "; mkdir -p d/sub; echo hello > d/sub/small; head -c 3000000 /dev/urandom > " +
         Quote(src) + "; cp " + Quote(src) +
         " big; mv d/sub/small d/moved; ln -s moved d/link; echo gone > x;"
         " rm x; truncate -s 10000 big2; sync");
  ASSERT_EQ(made.exit_code, 0) << made.Describe();
  ASSERT_TRUE(a->Unmount());

  auto b = NewMount("tree/");  // another data directory: nothing local carries over
  ASSERT_TRUE(b->Mount());
  const CmdResult seen = Sh("set -e; cd " + Quote(b->At("e")) + "; cmp big " + Quote(src) +
                            "; test \"$(cat d/moved)\" = hello; test \"$(cat d/link)\" = hello;"
                            " test ! -e x; test ! -e d/sub/small; test $(stat -c %s big2) = 10000;"
                            " ls -a d/sub | wc -l");
  ASSERT_EQ(seen.exit_code, 0) << seen.Describe();
  EXPECT_EQ(seen.output, "2\n") << "d/sub should hold only . and ..";
  ASSERT_TRUE(b->Unmount());

  auto other = NewMount("other/");  // another prefix: another store
  ASSERT_TRUE(other->Mount());
  const CmdResult empty = Sh("ls -A " + Quote(other->At("e")) + " | wc -l");
  EXPECT_EQ(empty.output, "0\n") << empty.Describe();
  ASSERT_TRUE(other->Unmount());
}

// Close-to-open between two daemons on one store: a file written and closed through one mount
// is read whole through the other, which had not looked it up before. (Only one daemon
// writes: the file layer allocates file ids and caches nodes as the store's only writer.)
TEST_F(MountEtcdTest, ASecondDaemonReadsAFileTheFirstWroteAndClosed) {
  auto writer = NewMount("shared/");
  auto reader = NewMount("shared/", {"kvfs_timeout=0"});
  ASSERT_TRUE(writer->Mount());
  ASSERT_TRUE(reader->Mount());
  const std::string src = writer->Sub("src");
  const CmdResult wrote =
      Sh("set -e; head -c 200000 /dev/urandom > " + Quote(src) + "; mkdir " +
         Quote(writer->At("e/dir")) + "; cp " + Quote(src) + " " + Quote(writer->At("e/dir/f")));
  ASSERT_EQ(wrote.exit_code, 0) << wrote.Describe();
  const CmdResult read = Sh("cmp " + Quote(src) + " " + Quote(reader->At("e/dir/f")));
  EXPECT_EQ(read.exit_code, 0) << read.Describe();
  ASSERT_TRUE(reader->Unmount());
  ASSERT_TRUE(writer->Unmount());
}

// Polls `done` (a shell condition, run on this host) until it holds or `deadline` passes;
// the time it took, or nullopt.
std::optional<std::chrono::milliseconds> WaitUntil(const std::string& done,
                                                   std::chrono::milliseconds deadline) {
  const auto start = std::chrono::steady_clock::now();
  while (true) {
    if (Sh(done).exit_code == 0) {
      return std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::steady_clock::now() - start);
    }
    if (std::chrono::steady_clock::now() - start > deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // polling, not synchronising
  }
}

// The bound the follower tests hold the invalidation to: the kernel caches entries and
// attributes for an hour (the default), so without the watch nothing would change in time.
// Typically tens of milliseconds (tests/bench/follower_delay.py measures it); 5 s leaves room
// for a loaded machine, each poll being a shell.
constexpr std::chrono::milliseconds kStaleBound{5000};

// Two daemons on one store, each as it would run on its own host: a writer, and a read-only
// follower (-o ro) with the kernel's caches on (entries, attributes, negative entries and
// file pages kept for an hour). Each change the writer makes is seen by the follower within
// kStaleBound, though the follower had it cached: new bytes, size and mtime of a file
// rewritten and closed; a name removed (rm) or moved (mv) stops showing, in ls and stat; a
// name the follower had looked up in vain appears.
TEST_F(MountEtcdTest, AReadOnlyFollowerWithCachingSeesTheWritersChangesWithinTheBound) {
  auto writer = NewMount("follow/");
  auto follower = NewMount("follow/", {"ro"});
  ASSERT_TRUE(writer->Mount());
  const std::string w = writer->At("e/dir");
  const std::string f = follower->At("e/dir");
  ASSERT_EQ(Sh("set -e; mkdir " + Quote(w) + "; echo one > " + Quote(w + "/file") + "; echo x > " +
               Quote(w + "/old") + "; echo y > " + Quote(w + "/tomove"))
                .exit_code,
            0);
  ASSERT_TRUE(follower->Mount());
  // The follower caches all of it: bytes, attributes, entries, and that "new" is absent.
  const CmdResult cached = Sh("set -e; cd " + Quote(f) +
                              "; cat file; stat -c '%s %Y' file old tomove; ls; "
                              "test ! -e new");
  ASSERT_EQ(cached.exit_code, 0) << cached.Describe();
  ASSERT_EQ(cached.output.substr(0, 4), "one\n");
  EXPECT_NE(Sh("touch " + Quote(f + "/refused")).exit_code, 0) << "the follower wrote";

  // A file rewritten and closed on the writer: bytes, size and mtime.
  const std::string src = writer->Sub("src");
  ASSERT_EQ(Sh("set -e; head -c 10000 /dev/urandom > " + Quote(src) + "; cp " + Quote(src) + " " +
               Quote(w + "/file") + "; touch -m -d @1700000000 " + Quote(w + "/file"))
                .exit_code,
            0);
  auto data = WaitUntil("cmp -s " + Quote(src) + " " + Quote(f + "/file") +
                            " && test \"$(stat -c '%s %Y' " + Quote(f + "/file") +
                            ")\" = '10000 1700000000'",
                        kStaleBound);
  EXPECT_TRUE(data.has_value()) << "the follower still shows the old file: "
                                << Sh("stat -c '%s %Y' " + Quote(f + "/file")).output;

  // rm and mv on the writer: the old names go from the follower's ls and stat; a process on
  // the follower's host that holds the moved file open reads it on (the follower's id table
  // follows the move: its kernel asks by inode, and the file is no longer at the old path).
  const CmdResult holder =
      Sh("sleep 600 < " + Quote(f + "/tomove") + " > /dev/null 2>&1 & echo $!");
  ASSERT_EQ(holder.exit_code, 0) << holder.Describe();
  const std::string pid = holder.output.substr(0, holder.output.find('\n'));
  ASSERT_EQ(Sh("set -e; rm " + Quote(w + "/old") + "; mv " + Quote(w + "/tomove") + " " +
               Quote(w + "/moved"))
                .exit_code,
            0);
  // First only that the old names are gone (a lookup of "moved" would tell the table the
  // file's new path by itself): the held file is then read by its inode alone.
  ASSERT_TRUE(WaitUntil("cd " + Quote(f) +
                            " && ! stat old >/dev/null 2>&1 && ! stat tomove >/dev/null 2>&1",
                        kStaleBound)
                  .has_value())
      << "the follower still shows old names: " << Sh("cd " + Quote(f) + "; ls").output;
  const CmdResult through_fd = Sh("cat /proc/" + pid + "/fd/0");
  EXPECT_EQ(through_fd.output, "y\n") << "the moved file, held open: " << through_fd.Describe();
  Sh("kill " + pid);

  auto names =
      WaitUntil("cd " + Quote(f) +
                    " && ! stat old >/dev/null 2>&1 && ! stat tomove >/dev/null 2>&1 && "
                    "test \"$(cat moved)\" = y && test \"$(ls | tr '\\n' ' ')\" = 'file moved '",
                kStaleBound);
  EXPECT_TRUE(names.has_value()) << "the follower still shows old names: "
                                 << Sh("cd " + Quote(f) + "; ls; stat -c %n old tomove").output;

  // A name the follower had found absent (a cached negative entry) appears.
  ASSERT_EQ(Sh("echo new > " + Quote(w + "/new")).exit_code, 0);
  auto appeared =
      WaitUntil("test \"$(cat " + Quote(f + "/new") + " 2>/dev/null)\" = new", kStaleBound);
  EXPECT_TRUE(appeared.has_value()) << "the follower still finds no 'new'";
  std::printf("follower saw: new data after %lld ms, rm/mv after %lld ms, a create after %lld ms\n",
              data ? static_cast<long long>(data->count()) : -1LL,
              names ? static_cast<long long>(names->count()) : -1LL,
              appeared ? static_cast<long long>(appeared->count()) : -1LL);
  ASSERT_TRUE(follower->Unmount());
  ASSERT_TRUE(writer->Unmount());
}

// A read-only follower opens the store read-only and writes nothing: not the sequence key
// (which would fence the writer off, EROFS), and not the writer's orphans (a file the writer's
// host holds open after rm), which a writable open would purge under it. The writer goes on
// writing, and its open file stays whole, with the follower mounted.
TEST_F(MountEtcdTest, AReadOnlyFollowerWritesNothing) {
  auto writer = NewMount("ro/");
  ASSERT_TRUE(writer->Mount());
  const std::string src = writer->Sub("src");
  ASSERT_EQ(Sh("set -e; head -c 50000 /dev/urandom > " + Quote(src) + "; cp " + Quote(src) + " " +
               Quote(writer->At("e/held")))
                .exit_code,
            0);
  // A process on the writer's host holds the file open, then it is removed: an orphan.
  const CmdResult held =
      Sh("sleep 600 < " + Quote(writer->At("e/held")) + " > /dev/null 2>&1 & echo $!");
  ASSERT_EQ(held.exit_code, 0) << held.Describe();
  const std::string pid = held.output.substr(0, held.output.find('\n'));
  ASSERT_EQ(Sh("rm " + Quote(writer->At("e/held"))).exit_code, 0);

  auto follower = NewMount("ro/", {"ro"});
  ASSERT_TRUE(follower->Mount());
  const CmdResult listed = Sh("ls -A " + Quote(follower->At("e")));
  EXPECT_EQ(listed.output, "") << listed.Describe();
  const CmdResult wrote = Sh("echo after > " + Quote(writer->At("e/after")) + " && sync -f " +
                             Quote(writer->At("e/after")));
  EXPECT_EQ(wrote.exit_code, 0) << "the writer was fenced off by the follower: "
                                << wrote.Describe();
  const CmdResult whole = Sh("cmp " + Quote(src) + " /proc/" + pid + "/fd/0");
  EXPECT_EQ(whole.exit_code, 0) << "the writer's open file lost its data: " << whole.Describe();
  Sh("kill " + pid);
  ASSERT_TRUE(follower->Unmount());
  ASSERT_TRUE(writer->Unmount());
}

// Faults under a mount: with the member it was talking to killed, the daemon's writes go on
// (the engine fails over); a file fsynced, then the daemon SIGKILLed, is there whole when the
// store is mounted again (from another data directory, with the member back): every
// acknowledged write was already on a quorum of members.
TEST_F(MountEtcdTest, AMemberKilledThenTheDaemonKilledLosesNothingSynced) {
  auto a = NewMount("crash/");
  ASSERT_TRUE(a->Mount());
  const std::string src = a->Sub("src");
  ASSERT_EQ(Sh("head -c 500000 /dev/urandom > " + Quote(src)).exit_code, 0);
  ASSERT_EQ(Sh("cp " + Quote(src) + " " + Quote(a->At("e/before"))).exit_code, 0);
  cluster_.Kill(0);
  const CmdResult wrote =
      Sh("set -e; cp " + Quote(src) + " " + Quote(a->At("e/after")) + "; mkdir " +
         Quote(a->At("e/dir")) + "; sync -f " + Quote(a->At("e/after")));
  ASSERT_EQ(wrote.exit_code, 0) << wrote.Describe();
  ASSERT_TRUE(a->KillDaemon());
  ASSERT_OK(cluster_.Restart(0));
  auto b = NewMount("crash/");
  ASSERT_TRUE(b->Mount());
  const CmdResult seen =
      Sh("set -e; cmp " + Quote(src) + " " + Quote(b->At("e/before")) + "; cmp " + Quote(src) +
         " " + Quote(b->At("e/after")) + "; test -d " + Quote(b->At("e/dir")));
  EXPECT_EQ(seen.exit_code, 0) << seen.Describe();
  ASSERT_TRUE(b->Unmount());
}

// Quorum lost under a mount (the leader and a follower killed: the follower left forwards
// proposals to no leader, so the write reaches no raft log). A program's write through FUSE
// fails with EIO within the store's timeout_ms plus a margin: never a hang, never a success.
// Once the members are back, writes and fsyncs through the same mount (the same open file)
// succeed again, and a remount finds every acknowledged byte and none of the failed write.
TEST_F(MountEtcdTest, QuorumLostFailsAWriteWithEIOWithinTheTimeoutAndTheMountWritesAgain) {
  constexpr int kTimeoutMs = 1000;
  // Each engine call is bounded by timeout_ms. A write through FUSE makes two reads before it
  // gives up (the file layer's Load tries the file's shared record when reading its node
  // fails, on any error), so twice that; the margin is for FUSE and a loaded machine.
  const auto bound = std::chrono::milliseconds(2 * kTimeoutMs + 1000);
  auto m = NewMount("quorum/", {}, kTimeoutMs);
  ASSERT_TRUE(m->Mount());
  // Whole 4 KiB chunks past the end: the write reads nothing first (the node is cached), so
  // its batch is sent and its outcome is unknown to the engine until the cluster answers.
  const std::string before(8192, 'b'), during(4096, 'd'), after(4096, 'a');
  const int fd = ::open(m->At("e/f").c_str(), O_CREAT | O_RDWR, 0644);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  ASSERT_EQ(ErrnoName(PWrite(fd, before, 0)), "success");
  ASSERT_EQ(ErrnoName(FSync(fd)), "success");

  ASSERT_OK_AND_ASSIGN(const int leader, cluster_.Leader());
  const int follower = (leader + 1) % 3;
  cluster_.Kill(leader);
  cluster_.Kill(follower);
  for (int attempt = 0; attempt < 2; ++attempt) {  // the second after an unsettled first
    const auto start = Clock::now();
    const int err = PWrite(fd, during, static_cast<off_t>(before.size()));
    const auto took = Clock::now() - start;
    EXPECT_EQ(ErrnoName(err), "EIO") << "write " << attempt << " with quorum lost";
    EXPECT_LT(took, bound) << "write " << attempt << " took "
                           << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                           << " ms";
  }

  ASSERT_OK(cluster_.Restart(leader, /*wait=*/false));
  ASSERT_OK(cluster_.Restart(follower, /*wait=*/false));
  for (int i = 0; i < cluster_.size(); ++i) ASSERT_OK(cluster_.WaitHealthy(i));
  // The same mount, the same open file: the write and its fsync go through.
  EXPECT_EQ(ErrnoName(PWrite(fd, after, static_cast<off_t>(before.size()))), "success");
  EXPECT_EQ(ErrnoName(FSync(fd)), "success");
  ::close(fd);
  EXPECT_TRUE(WriteFile(m->At("e/new"), "new file"));
  const int dfd = ::open(m->At("e").c_str(), O_RDONLY | O_DIRECTORY);
  ASSERT_GE(dfd, 0);
  EXPECT_EQ(ErrnoName(FSync(dfd)), "success");
  ::close(dfd);

  ASSERT_TRUE(m->Remount()) << m->DaemonLog();
  EXPECT_TRUE(ReadFile(m->At("e/f")) == before + after)
      << "acknowledged bytes lost, or the failed write's bytes there";
  EXPECT_EQ(ReadFile(m->At("e/new")), "new file");
  ASSERT_TRUE(m->Unmount());
}

// One member (member 0: the endpoint the daemon's engine talks to first) killed while two
// programs append 4 KiB and fdatasync each time through the mount: every append succeeds (the
// engine fails over to the next endpoint; if it was the leader, the others elect another), and
// a remount with the member still down has every acknowledged byte.
TEST_F(MountEtcdTest, AMemberKilledMidWorkloadLosesNothingAcknowledgedAndWritesGoOn) {
  auto m = NewMount("member/");
  ASSERT_TRUE(m->Mount());
  constexpr int kWriters = 2;
  constexpr int kAppends = 60;
  constexpr int kKillAfter = 20;  // acknowledged appends over both writers
  std::mutex mu;
  std::condition_variable cv;
  int acknowledged = 0;
  std::vector<std::string> failures;
  std::vector<std::thread> writers;
  auto chunk = [](int w, int i) {
    return std::string(4096, static_cast<char>('a' + (w * 7 + i) % 26));
  };
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      const std::string path = m->At("e/w" + std::to_string(w));
      const int fd = ::open(path.c_str(), O_CREAT | O_WRONLY | O_APPEND, 0644);
      int err = fd < 0 ? errno : 0;
      for (int i = 0; i < kAppends && err == 0; ++i) {
        const std::string c = chunk(w, i);
        const ssize_t n = ::write(fd, c.data(), c.size());
        err = n < 0 ? errno : (n == static_cast<ssize_t>(c.size()) ? 0 : EIO);
        if (err == 0 && ::fdatasync(fd) != 0) err = errno;
        if (err == 0) {
          std::lock_guard<std::mutex> lock(mu);
          ++acknowledged;
          cv.notify_all();
        }
      }
      if (fd >= 0) ::close(fd);
      std::lock_guard<std::mutex> lock(mu);
      if (err != 0) failures.push_back("writer " + std::to_string(w) + ": " + ErrnoName(err));
      cv.notify_all();
    });
  }
  int at_kill = 0;
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return acknowledged >= kKillAfter || !failures.empty(); });
    at_kill = acknowledged;
  }
  cluster_.Kill(0);
  for (auto& t : writers) t.join();
  ASSERT_TRUE(failures.empty()) << failures.front() << "\n" << m->DaemonLog();
  EXPECT_LT(at_kill, kWriters * kAppends) << "the member died after the workload";
  ASSERT_TRUE(m->Remount()) << m->DaemonLog();
  for (int w = 0; w < kWriters; ++w) {
    std::string want;
    for (int i = 0; i < kAppends; ++i) want += chunk(w, i);
    EXPECT_TRUE(ReadFile(m->At("e/w" + std::to_string(w))) == want) << "writer " << w;
  }
  ASSERT_TRUE(m->Unmount());
}

// The README's secured cluster, through the real daemon: https endpoints with a CA file and a
// client certificate, etcd auth with a user and password in [store.options]. A tree written
// through the mount is there after a remount; a wrong password fails the mount, its log saying
// why.
TEST(MountEtcdSecuredTest, AMountOnAClusterWithTlsAndAuthServesItsTree) {
  if (const std::string why = FuseSkipReason(); !why.empty()) GTEST_SKIP() << why;
  if (test::EtcdBinary().empty()) GTEST_SKIP() << "no etcd binary on PATH";
  test::EtcdCluster cluster;
  test::EtcdClusterOptions co;
  co.tls = true;
  ASSERT_OK(cluster.Start(co));
  ASSERT_OK(cluster.EnableAuth("kvfs", "kvfs-pw", "tls/"));
  auto config = [&](const std::string& data, const std::string& password) {
    return EtcdConfig(data, cluster.endpoints(), "tls/") + "ca_file = \"" + cluster.ca_file() +
           "\"\ncert_file = \"" + cluster.client_cert() + "\"\nkey_file = \"" +
           cluster.client_key() + "\"\nuser = \"kvfs\"\npassword = \"" + password + "\"\n";
  };
  MountOptions o;
  o.pass_data = false;
  KvfsMount m(o);
  m.options().config = m.Sub("kvfs.toml");
  ASSERT_TRUE(WriteFile(m.options().config, config(m.data(), "kvfs-pw")));
  ASSERT_TRUE(m.Mount()) << m.DaemonLog();
  const CmdResult made = Sh("set -e; cd " + Quote(m.At("e")) +
                            "; mkdir d; echo secret > d/f; head -c 100000 /dev/urandom > big;"
                            " cp big " +
                            Quote(m.Sub("big")) + "; sync -f big");
  ASSERT_EQ(made.exit_code, 0) << made.Describe();
  ASSERT_TRUE(m.Remount()) << m.DaemonLog();
  EXPECT_EQ(ReadFile(m.At("e/d/f")), "secret\n");
  EXPECT_TRUE(ReadFile(m.At("e/big")) == ReadFile(m.Sub("big")));
  ASSERT_TRUE(m.Unmount());

  ASSERT_TRUE(WriteFile(m.options().config, config(m.data(), "wrong")));
  const size_t from = m.DaemonLogBytes();
  EXPECT_FALSE(m.Mount()) << "mounted with a wrong password";
  EXPECT_NE(m.DaemonLogFrom(from).find("authentication failed"), std::string::npos)
      << m.DaemonLogFrom(from);
}

}  // namespace
}  // namespace kvfs::mount_test
