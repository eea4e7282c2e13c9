// An events store through a real mount (fusefs/event_view.h): append-only streams driven by
// real tools (>>, cat, tail -f, ls -l, rm, mv, truncate, dd), the errno of every refused
// operation, processes racing with pwrite at the end they read, several processes appending
// and fdatasyncing at once, the event view, and what a write larger than max_write becomes.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/fusefs/mount_fixture.h"

namespace kvfs::mount_test {
namespace {

namespace fs = std::filesystem;

#define SKIP_WITHOUT_FUSE()                                       \
  do {                                                            \
    if (const std::string why = FuseSkipReason(); !why.empty()) { \
      GTEST_SKIP() << why;                                        \
    }                                                             \
  } while (0)

MountOptions EventsMount(const std::string& sync = "") {
  MountOptions o;
  o.engine = "events";
  o.sync = sync;
  return o;
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

size_t CountEntries(const std::string& dir) {
  size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    (void)e;
    ++n;
  }
  return n;
}

TEST(MountEvents, ShellToolsAppendReplayListAndRemove) {
  SKIP_WITHOUT_FUSE();
  KvfsMount m(EventsMount());
  ASSERT_TRUE(m.Mount());
  const std::string mnt = Quote(m.mnt());
  CmdResult r = Sh("set -e; cd " + mnt +
                   "; mkdir -p orders/2026; "
                   "echo '{\"type\":\"OrderPlaced\"}' >> orders/2026/o1; "
                   "echo '{\"type\":\"OrderPaid\"}' >> orders/2026/o1; "
                   "printf 'shipped\\n' >> orders/2026/o1; cat orders/2026/o1; "
                   "ls -l orders/2026 | tail -1 | awk '{print $5, $9}'");
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(r.output,
            "{\"type\":\"OrderPlaced\"}\n{\"type\":\"OrderPaid\"}\nshipped\n"
            "52 o1\n");
  // The view: one file per event, numbered, sized as the event.
  r = Sh("cd " + mnt +
         "/.events/orders/2026/o1 && ls && cat 00000000000000000001 && "
         "stat -c '%s' 00000000000000000002 && stat -c '%s' .");
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(r.output,
            "00000000000000000000\n00000000000000000001\n00000000000000000002\n"
            "{\"type\":\"OrderPaid\"}\n8\n3\n");
  EXPECT_EQ(ReadFile(m.At(".events/orders/2026/o1/2")), "shipped\n");
  EXPECT_FALSE(Sh("ls -a " + mnt).output.find(".events") != std::string::npos)
      << "hidden from readdir";
  // Every refused operation, with the tool's exit code and errno.
  const std::string f = mnt + "/orders/2026/o1";
  EXPECT_NE(Sh("echo x > " + f).exit_code, 0) << "> truncates";
  EXPECT_NE(Sh("truncate -s 0 " + f).exit_code, 0);
  EXPECT_NE(Sh("mv " + f + " " + mnt + "/orders/o2").exit_code, 0);
  EXPECT_NE(Sh("printf X | dd of=" + f + " conv=notrunc bs=1 seek=3 2>/dev/null").exit_code, 0);
  EXPECT_NE(Sh("echo x > " + mnt + "/.events/orders/2026/o1/0").exit_code, 0);
  EXPECT_NE(Sh("mkdir " + mnt + "/.events").exit_code, 0);
  const int fd = ::open(m.At("orders/2026/o1").c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  errno = 0;
  EXPECT_EQ(::pwrite(fd, "X", 1, 0), -1);
  EXPECT_EQ(errno, EPERM);
  EXPECT_EQ(::ftruncate(fd, 1), -1);
  EXPECT_EQ(errno, EPERM);
  EXPECT_EQ(::pwrite(fd, "more\n", 5, 52), 5) << "at the end";
  ::close(fd);
  EXPECT_EQ(::rename(m.At("orders/2026/o1").c_str(), m.At("o3").c_str()), -1);
  EXPECT_EQ(errno, EPERM);
  EXPECT_EQ(::truncate(m.At("orders/2026/o1").c_str(), 0), -1);
  EXPECT_EQ(errno, EPERM);
  EXPECT_EQ(::open(m.At("orders/2026/o1").c_str(), O_WRONLY | O_TRUNC), -1);
  EXPECT_EQ(errno, EPERM);
  EXPECT_EQ(::open(m.At(".events/orders/2026/o1/0").c_str(), O_WRONLY), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(::unlink(m.At(".events/orders/2026/o1/0").c_str()), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(ReadFile(m.At("orders/2026/o1")),
            "{\"type\":\"OrderPlaced\"}\n{\"type\":\"OrderPaid\"}\nshipped\nmore\n");
  // rm is allowed, and durable: gone after a remount, and kvfs check agrees.
  r = Sh("set -e; echo a >> " + mnt + "/gone; rm " + mnt + "/gone; sync -f " + mnt +
         "/orders; ls " + mnt);
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(r.output, "orders\n");
  ASSERT_TRUE(m.Remount());
  EXPECT_FALSE(fs::exists(m.At("gone")));
  EXPECT_EQ(Lines(ReadFile(m.At("orders/2026/o1"))).size(), 4u);
  ASSERT_TRUE(m.Unmount());
  r = Exec({KvfsBinary(), "check", "--data", m.data(), "--engine", "events"});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
}

// tail -f follows a stream while another process appends through the same mount.
TEST(MountEvents, TailFollowsAppendsFromAnotherProcess) {
  SKIP_WITHOUT_FUSE();
  KvfsMount m(EventsMount());
  ASSERT_TRUE(m.Mount());
  const std::string f = Quote(m.At("log"));
  const std::string out = Quote(m.Sub("tail.out"));
  CmdResult r = Sh("echo first >> " + f + "; tail -n +1 -f " + f + " > " + out +
                   " & t=$!; sleep 0.5; for i in 1 2 3; do echo event$i >> " + f +
                   "; sleep 0.3; done; sleep 1.5; kill $t; wait $t 2>/dev/null; cat " + out);
  EXPECT_EQ(r.output, "first\nevent1\nevent2\nevent3\n") << r.Describe();
  ASSERT_TRUE(m.Unmount());
}

// Two processes read where the stream ends, then both pwrite there: one lands, the other gets
// EPERM and nothing of it lands. Round after round.
TEST(MountEvents, ProcessesRacingWithPwriteAtTheEndTheyReadNeverBothLand) {
  SKIP_WITHOUT_FUSE();
  KvfsMount m(EventsMount());
  ASSERT_TRUE(m.Mount());
  const std::string path = m.At("race");
  ASSERT_TRUE(WriteFile(path, ""));
  constexpr int kRounds = 30;
  for (int round = 0; round < kRounds; ++round) {
    struct stat st = {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    const off_t end = st.st_size;
    int go[2];
    int done[2];
    ASSERT_EQ(::pipe(go), 0);
    ASSERT_EQ(::pipe(done), 0);
    std::vector<pid_t> kids;
    for (int w = 0; w < 2; ++w) {
      const pid_t pid = ::fork();
      ASSERT_GE(pid, 0);
      if (pid == 0) {
        const int fd = ::open(path.c_str(), O_WRONLY);
        char c;
        if (fd < 0 || ::read(go[0], &c, 1) != 1) ::_exit(3);
        const std::string ev = std::to_string(round) + "/" + std::to_string(w) + "\n";
        const ssize_t n = ::pwrite(fd, ev.data(), ev.size(), end);
        ::_exit(n == static_cast<ssize_t>(ev.size()) ? 0 : errno == EPERM ? 1 : 2);
      }
      kids.push_back(pid);
    }
    ASSERT_EQ(::write(go[1], "gg", 2), 2);  // both start at once
    int landed = 0;
    for (pid_t pid : kids) {
      int status = 0;
      ASSERT_EQ(::waitpid(pid, &status, 0), pid);
      ASSERT_TRUE(WIFEXITED(status));
      ASSERT_LT(WEXITSTATUS(status), 2) << "a pwrite failed with something else than EPERM";
      landed += WEXITSTATUS(status) == 0;
    }
    for (int fd : {go[0], go[1], done[0], done[1]}) ::close(fd);
    EXPECT_EQ(landed, 1) << "round " << round;
  }
  const std::vector<std::string> lines = Lines(ReadFile(path));
  ASSERT_EQ(lines.size(), size_t{kRounds});
  for (int round = 0; round < kRounds; ++round) {
    EXPECT_EQ(lines[round].substr(0, lines[round].find('/')), std::to_string(round));
  }
  EXPECT_EQ(CountEntries(m.At(".events/race")), size_t{kRounds}) << "one event per write";
  ASSERT_TRUE(m.Unmount());
}

// Several processes append and fdatasync at once (O_APPEND): every write is one event, whole,
// never split or interleaved, each process's events in its order; all of it survives a
// remount. One log sync covers every stream, so the syncs are shared (group commit).
TEST(MountEvents, ProcessesAppendingAndFdatasyncingAtOnceEachWriteOneWholeEvent) {
  SKIP_WITHOUT_FUSE();
  KvfsMount m(EventsMount());
  ASSERT_TRUE(m.Mount());
  const std::string path = m.At("shared");
  constexpr int kProcs = 4;
  constexpr int kEach = 150;
  std::vector<pid_t> kids;
  for (int p = 0; p < kProcs; ++p) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT, 0644);
      if (fd < 0) ::_exit(2);
      for (int i = 0; i < kEach; ++i) {
        // Sizes vary up to 3 KiB so that events span pages.
        std::string ev = std::to_string(p) + ":" + std::to_string(i) + ":" +
                         std::string((p * 131 + i * 37) % 3000, static_cast<char>('a' + p)) + "\n";
        if (::write(fd, ev.data(), ev.size()) != static_cast<ssize_t>(ev.size())) ::_exit(3);
        if (::fdatasync(fd) != 0) ::_exit(4);
      }
      ::_exit(::close(fd) == 0 ? 0 : 5);
    }
    kids.push_back(pid);
  }
  for (pid_t pid : kids) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  }
  auto check = [&] {
    const std::vector<std::string> lines = Lines(ReadFile(path));
    ASSERT_EQ(lines.size(), size_t{kProcs} * kEach);
    std::map<int, int> next;
    for (const std::string& line : lines) {
      const int p = std::stoi(line.substr(0, line.find(':')));
      const int i = next[p]++;
      const std::string want = std::to_string(p) + ":" + std::to_string(i) + ":" +
                               std::string((p * 131 + i * 37) % 3000, static_cast<char>('a' + p));
      ASSERT_EQ(line, want) << "an event was split, interleaved or reordered";
    }
    EXPECT_EQ(CountEntries(m.At(".events/shared")), size_t{kProcs} * kEach);
  };
  check();
  const std::string stats = ReadFile(m.At(".kvfs/stats"));
  EXPECT_NE(stats.find("\"fdatasyncs\": " + std::to_string(kProcs * kEach)), std::string::npos)
      << stats.substr(0, 3000);
  ASSERT_TRUE(m.Remount());
  check();
  ASSERT_TRUE(m.Unmount());
}

// Stream files are opened with direct_io, so the kernel sends a write(2) as one write of at most
// max_write (1 MiB) and 256 pages of the caller's buffer: a write of up to 1 MiB - 4095 bytes
// is one event whatever its buffer's alignment, up to 1 MiB from a page-aligned buffer; a
// larger one becomes several events, in order, none over 1 MiB, cut where the kernel cut it.
TEST(MountEvents, AWriteWithinOneRequestIsOneEventALargerOneSeveral) {
  SKIP_WITHOUT_FUSE();
  KvfsMount m(EventsMount());
  ASSERT_TRUE(m.Mount());
  const std::string path = m.At("big");
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  ASSERT_GE(fd, 0);
  constexpr size_t kMiB = size_t{1} << 20;
  void* mem = nullptr;
  ASSERT_EQ(::posix_memalign(&mem, 4096, 4 * kMiB), 0);
  char* buf = static_cast<char*>(mem);
  std::string expected;
  // 1 MiB from a page-aligned buffer; 1 MiB - 4095 starting 4095 bytes into a page (the
  // worst alignment: 256 pages).
  constexpr size_t kAnyAlignment = kMiB - 4095;
  for (auto [skew, n] : {std::pair{size_t{0}, kMiB}, std::pair{size_t{4095}, kAnyAlignment}}) {
    std::memset(buf + skew, static_cast<int>('a' + skew % 26), n);
    ASSERT_EQ(::write(fd, buf + skew, n), static_cast<ssize_t>(n));
    expected.append(buf + skew, n);
  }
  const size_t big = 5 * kMiB / 2;
  std::memset(buf, 'z', big);
  ASSERT_EQ(::write(fd, buf, big), static_cast<ssize_t>(big));
  expected.append(buf, big);
  ::close(fd);
  std::free(mem);
  std::vector<uintmax_t> sizes;  // in event order: the names sort by number
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(m.At(".events/big"))) names.insert(e.path());
  for (const std::string& n : names) sizes.push_back(fs::file_size(n));
  ASSERT_GE(sizes.size(), 5u);
  EXPECT_EQ(sizes[0], kMiB);
  EXPECT_EQ(sizes[1], kAnyAlignment);
  uintmax_t rest = 0;
  for (size_t i = 2; i < sizes.size(); ++i) {
    EXPECT_LE(sizes[i], kMiB);
    rest += sizes[i];
  }
  EXPECT_EQ(rest, big);
  EXPECT_EQ(ReadFile(path), expected);
  ASSERT_TRUE(m.Unmount());
}

// --- Power cuts through the whole mounted stack ---------------------------------------------
//
// The daemon is the test build kvfs_fault_daemon (tests/crash/power_cut.h): the shipped mount
// with its store on the fault-injecting disk. Three processes each append events to a stream of
// their own and to a shared one, fdatasync their own after each (one log: it covers both), and
// log every event the fdatasync acknowledged. The power goes at a sync count; a fresh daemon on
// the real disk mounts what survived. Every stream must hold whole events, each writer's in its
// order, each once, with no gap, at least every acknowledged one, one event per write.

std::string PowerCutConfig(const std::string& data) {
  return "[[store]]\nname = \"s\"\nengine = \"events\"\ndata_dir = \"" + data +
         "\"\nsegment_size = \"1MiB\"\n";
}

std::string Event(int writer, int i) {
  return std::to_string(writer) + ":" + std::to_string(i) + ":" +
         std::string((writer * 97 + i * 53) % 900, static_cast<char>('a' + writer)) + "\n";
}

// Runs the writers; returns, per writer, how many of its events fdatasync acknowledged.
std::vector<int> RunWriters(const KvfsMount& m, int writers, int each) {
  std::vector<pid_t> kids;
  for (int w = 0; w < writers; ++w) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      const int own =
          ::open(m.At("s/w" + std::to_string(w)).c_str(), O_WRONLY | O_APPEND | O_CREAT, 0644);
      const int shared = ::open(m.At("s/shared").c_str(), O_WRONLY | O_APPEND | O_CREAT, 0644);
      const int log =
          ::open(m.Sub("acked" + std::to_string(w)).c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (own < 0 || shared < 0 || log < 0) ::_exit(0);  // the power went already
      for (int i = 0; i < each; ++i) {
        const std::string ev = Event(w, i);
        if (::write(own, ev.data(), ev.size()) != static_cast<ssize_t>(ev.size())) break;
        if (::write(shared, ev.data(), ev.size()) != static_cast<ssize_t>(ev.size())) break;
        if (::fdatasync(own) != 0) break;
        const std::string line = std::to_string(i) + "\n";
        if (::write(log, line.data(), line.size()) < 0) break;
      }
      ::_exit(0);
    }
    kids.push_back(pid);
  }
  for (pid_t pid : kids) ::waitpid(pid, nullptr, 0);
  std::vector<int> acked;
  for (int w = 0; w < writers; ++w) {
    acked.push_back(static_cast<int>(Lines(ReadFile(m.Sub("acked" + std::to_string(w)))).size()));
  }
  return acked;
}

TEST(MountEventsPowerCut, EveryAcknowledgedEventSurvivesOnceInOrderWithoutGaps) {
  SKIP_WITHOUT_FUSE();
  constexpr int kWriters = 3;
  constexpr int kEach = 40;
  const char* const modes[] = {"drop", "prefix", "tear"};
  // Early (creates, first syncs), middle and late cuts, and one after the end (on SIGUSR1).
  const uint64_t cuts[] = {1, 2, 5, 12, 30, 55, 80, 110, 0};
  int c = 0;
  for (uint64_t crash_at : cuts) {
    const char* mode = modes[c++ % 3];
    SCOPED_TRACE("power cut at sync " + std::to_string(crash_at) + ", mode " + mode);
    MountOptions o;
    o.pass_data = false;
    KvfsMount m(o);
    m.options().config = m.Sub("kvfs.toml");
    ASSERT_TRUE(WriteFile(m.options().config, PowerCutConfig(m.data())));
    m.options().daemon = KVFS_FAULT_DAEMON_BINARY;
    m.options().extra_args = {"--seed", std::to_string(7 + crash_at), "--crash-mode", mode};
    if (crash_at > 0) {
      m.options().extra_args.insert(m.options().extra_args.end(),
                                    {"--crash-at-sync", std::to_string(crash_at)});
    }
    ASSERT_TRUE(m.Mount());
    const std::vector<int> acked = RunWriters(m, kWriters, kEach);
    ASSERT_TRUE(m.PowerCut(/*signal=*/true));
    m.options().daemon = KvfsBinary();
    m.options().extra_args.clear();
    ASSERT_TRUE(m.Mount()) << m.DaemonLog();
    std::map<int, int> in_shared;  // per writer, events found in the shared stream
    for (const std::string& line : Lines(ReadFile(m.At("s/shared")))) {
      const int w = std::stoi(line.substr(0, line.find(':')));
      ASSERT_TRUE(w >= 0 && w < kWriters) << line;
      const int i = in_shared[w]++;
      ASSERT_EQ(line + "\n", Event(w, i)) << "shared: a split, repeated or missing event";
    }
    size_t shared_events = 0;
    for (int w = 0; w < kWriters; ++w) {
      const std::string own = m.At("s/w" + std::to_string(w));
      const std::vector<std::string> lines = Lines(ReadFile(own));
      for (size_t i = 0; i < lines.size(); ++i) {
        ASSERT_EQ(lines[i] + "\n", Event(w, static_cast<int>(i))) << "w" << w;
      }
      EXPECT_GE(static_cast<int>(lines.size()), acked[w]) << "w" << w << " lost an acked event";
      EXPECT_GE(in_shared[w], acked[w]) << "the shared stream lost an acked event of w" << w;
      if (fs::exists(m.At(".events/w" + std::to_string(w)))) {
        EXPECT_EQ(CountEntries(m.At(".events/w" + std::to_string(w))), lines.size());
      }
      shared_events += in_shared[w];
    }
    if (fs::exists(m.At(".events/shared"))) {
      EXPECT_EQ(CountEntries(m.At(".events/shared")), shared_events);
    }
    std::printf("power cut at sync %llu (%s): acknowledged %d %d %d, shared stream %zu events\n",
                static_cast<unsigned long long>(crash_at), mode, acked[0], acked[1], acked[2],
                shared_events);
    ASSERT_TRUE(m.Unmount());
    const CmdResult check = Exec({KvfsBinary(), "check", "--config", m.options().config});
    EXPECT_EQ(check.exit_code, 0) << check.Describe();
    if (HasFatalFailure()) return;
  }
}

}  // namespace
}  // namespace kvfs::mount_test
