// The whole stack over the etcd engine, crashed: the daemon and every member of a 3-member etcd
// cluster on loopback (tests/engines/etcd_cluster.h) are SIGKILLed, one after another in a
// seeded random order and at seeded random points of tests/crash/kvfs_workload's run (several
// processes creating, writing, truncating, renaming, linking and removing files and
// directories, with fsyncs in between, logging what each call acknowledged). Then the cluster
// and the daemon are started again and the workload's checker holds every worker's tree against
// its log: it must be EXACTLY one of the trees the worker went through, no older than the last
// operation that returned (floor "completed": an etcd store acknowledges a batch only once the
// cluster committed it, on a quorum's fsynced raft logs, so nothing acknowledged, synced or
// not, may be lost), and no newer than the last one begun: nothing half-applied, no file or
// directory that was never made or was removed (the whole tree is compared, absent names too).
// `kvfs check` of the store must pass too.
//
// Each case prints its seed and the order of the kills; KVFS_TEST_SEED=<seed> replays one
// (the same kill order and points; thread timing may differ). KVFS_ETCD_CRASH_CASES sets how
// many cases run (4 by default: about 20 s on a loaded 2-core machine).
//
// Needs root, /dev/fuse and etcd (skipped, saying which is missing, otherwise).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "tests/engines/etcd_cluster.h"
#include "tests/fusefs/mount_fixture.h"
#include "tests/test_util.h"

namespace kvfs::mount_test {
namespace {

namespace fs = std::filesystem;

std::string Workload() { return KVFS_WORKLOAD_BINARY; }

// A short timeout: once quorum is gone the workers' calls fail (EIO) soon and they stop.
std::string EtcdConfig(const std::string& data, const std::string& endpoints,
                       const std::string& prefix) {
  return "[[store]]\nname = \"e\"\nengine = \"etcd\"\ndata_dir = \"" + data +
         "\"\n[store.options]\nendpoints = \"" + endpoints + "\"\nprefix = \"" + prefix +
         "\"\ntimeout_ms = \"1000\"\n";
}

uint64_t BaseSeed() {
  if (const char* s = std::getenv("KVFS_TEST_SEED")) return std::strtoull(s, nullptr, 10);
  return 0;
}

// Operations that returned, over every worker's log ("E <i> <ns>" lines).
int CompletedOps(const std::string& logs) {
  int n = 0;
  if (!fs::exists(logs)) return 0;
  for (const auto& f : fs::directory_iterator(logs)) {
    std::istringstream in(ReadFile(f.path().string()));
    std::string line;
    while (std::getline(in, line)) n += line.starts_with("E ") ? 1 : 0;
  }
  return n;
}

// Polls `done` until it holds or `limit` passes; returns its last value. Between polls it waits
// 5 ms (poll(2) on nothing) so that reading the logs leaves the CPU to the daemon, the members
// and the workers; the condition, not the pause, decides.
template <typename Fn>
bool WaitFor(Fn done, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return done();
    ::poll(nullptr, 0, 5);
  }
  return true;
}

class MountEtcdCrashTest : public testing::Test {
 protected:
  void SetUp() override {
    if (const std::string why = FuseSkipReason(); !why.empty()) GTEST_SKIP() << why;
    if (test::EtcdBinary().empty()) {
      GTEST_SKIP() << "no etcd binary on PATH: install etcd-server (scripts/setup-deps does)";
    }
    ASSERT_OK(cluster_.Start());
  }

  // One case: the workload under the daemon, the four processes killed in a seeded order at
  // seeded points, everything restarted, the trees checked.
  void RunCase(uint64_t seed) {
    std::mt19937_64 rng(seed);
    // Victims: 0..2 the members, 3 the daemon; and the completed-operation count at which
    // each is killed (the first somewhere in the workload, each later one a little after the
    // one before, or as soon as the workers have stopped: with quorum gone they fail and stop).
    std::vector<int> order = {0, 1, 2, 3};
    std::shuffle(order.begin(), order.end(), rng);
    std::vector<int> at;
    int point = 10 + static_cast<int>(rng() % 200);
    for (size_t k = 0; k < order.size(); ++k) {
      at.push_back(point);
      point += static_cast<int>(rng() % 80);
    }
    std::string plan;
    for (size_t k = 0; k < order.size(); ++k) {
      plan += (k == 0 ? "" : ", ") +
              (order[k] == 3 ? std::string("daemon") : "member " + std::to_string(order[k])) +
              " at " + std::to_string(at[k]) + " ops";
    }
    SCOPED_TRACE("replay: KVFS_TEST_SEED=" + std::to_string(seed) + " (kills: " + plan + ")");
    std::printf("etcd crash case: seed %llu, kills: %s\n", static_cast<unsigned long long>(seed),
                plan.c_str());

    MountOptions o;
    o.pass_data = false;
    KvfsMount m(o);
    m.options().config = m.Sub("kvfs.toml");
    const std::string prefix = "crash-" + std::to_string(seed) + "/";
    ASSERT_TRUE(WriteFile(m.options().config, EtcdConfig(m.data(), cluster_.endpoints(), prefix)));
    ASSERT_TRUE(m.Mount());
    const std::string work = m.At("e/work"), logs = m.Sub("logs");
    fs::create_directories(logs);
    ASSERT_EQ(::mkdir(work.c_str(), 0755), 0);
    const pid_t workload = Spawn({Workload(), "run", work, logs, "--workers", "3", "--ops", "200",
                                  "--seed", std::to_string(seed)},
                                 m.Sub("workload.out"));
    ASSERT_GT(workload, 0);
    bool reaped = false;
    int status = 0;
    auto exited = [&] {
      if (!reaped) reaped = ::waitpid(workload, &status, WNOHANG) == workload;
      return reaped;
    };
    for (size_t k = 0; k < order.size(); ++k) {
      WaitFor([&] { return exited() || CompletedOps(logs) >= at[k]; }, std::chrono::seconds(60));
      if (order[k] == 3) {
        ASSERT_TRUE(m.KillDaemon());
      } else {
        cluster_.Kill(order[k]);
      }
    }
    // Every worker stops at its first error (the daemon is gone), or ran to its end.
    if (!reaped) {
      ASSERT_EQ(::waitpid(workload, &status, 0), workload);
    }
    const int completed = CompletedOps(logs);
    std::printf("etcd crash case: seed %llu: %d operations completed\n",
                static_cast<unsigned long long>(seed), completed);

    for (int i = 0; i < cluster_.size(); ++i) ASSERT_OK(cluster_.Restart(i, /*wait=*/false));
    for (int i = 0; i < cluster_.size(); ++i) ASSERT_OK(cluster_.WaitHealthy(i));
    ASSERT_TRUE(m.Mount()) << m.DaemonLog();
    ASSERT_TRUE(fs::exists(logs + "/w0.log")) << "the workers never started\n"
                                              << ReadFile(m.Sub("workload.out"));
    const CmdResult check = Exec({Workload(), "check", work, logs, "--floor", "completed"});
    EXPECT_EQ(check.exit_code, 0) << check.Describe() << "\nworkload:\n"
                                  << ReadFile(m.Sub("workload.out"));
    ASSERT_TRUE(m.Unmount());
    const CmdResult offline = Exec({KvfsBinary(), "check", "--config", m.options().config});
    EXPECT_EQ(offline.exit_code, 0) << offline.Describe();
  }

  test::EtcdCluster cluster_;
};

TEST_F(MountEtcdCrashTest, DaemonAndEveryMemberKilledLoseNothingAcknowledged) {
  int cases = 4;
  if (const char* n = std::getenv("KVFS_ETCD_CRASH_CASES")) cases = std::atoi(n);
  const uint64_t replay = BaseSeed();
  for (int c = 0; c < cases; ++c) {
    RunCase(replay != 0 ? replay : 4000 + c);
    if (HasFatalFailure() || replay != 0) return;
  }
}

}  // namespace
}  // namespace kvfs::mount_test
