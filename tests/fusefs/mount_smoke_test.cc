// A basic mount smoke test: the real kvfs binary mounted on /dev/fuse in a private directory,
// driven through system calls. Needs root and /dev/fuse; skipped (loudly) otherwise. The full
// suite with real tools is mount_test.cc.
//
// Every test unmounts in a guard's destructor, whatever happened (kvfs umount, then
// fusermount3 -u -z). No fixed sleeps: `kvfs mount` returns only once the mount is live, and
// the foreground daemon's mount is awaited by polling st_dev against a deadline.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "engines/engine.h"
#include "tests/fusefs/stats_checks.h"
#include "tests/test_util.h"

namespace kvfs {
namespace {

using Clock = std::chrono::steady_clock;

struct RunResult {
  int exit_code;
  std::string output;
};

RunResult Sh(const std::string& cmd) {
  FILE* p = ::popen((cmd + " 2>&1 </dev/null").c_str(), "r");
  if (p == nullptr) return {-1, "popen failed"};
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  const int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

std::string Kvfs() { return KVFS_BINARY; }

bool IsLive(const std::string& mnt) {
  struct stat a, b;
  if (::stat(mnt.c_str(), &a) != 0 || ::stat((mnt + "/..").c_str(), &b) != 0) return false;
  return a.st_dev != b.st_dev;
}

bool IsMounted(const std::string& mnt) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, devno, root, point;
    fields >> id >> parent >> devno >> root >> point;
    if (point == mnt) return true;
  }
  return false;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::set<std::string> ListDir(const std::string& path) {
  std::set<std::string> names;
  DIR* d = ::opendir(path.c_str());
  if (d == nullptr) return names;
  while (const dirent* e = ::readdir(d)) names.insert(e->d_name);
  ::closedir(d);
  return names;
}

class MountSmokeTest : public testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0 || ::access("/dev/fuse", R_OK | W_OK) != 0) {
      GTEST_SKIP() << "MOUNT TESTS SKIPPED: need root and /dev/fuse";
    }
    mnt_ = tmp_.Sub("mnt");
    data_ = tmp_.Sub("data");
    ASSERT_EQ(::mkdir(mnt_.c_str(), 0755), 0);
  }
  void TearDown() override {
    if (mnt_.empty()) return;
    if (daemon_ > 0) {
      ::kill(daemon_, SIGTERM);
      WaitChild(std::chrono::seconds(60));
    }
    if (IsMounted(mnt_)) Sh(Kvfs() + " umount " + mnt_);
    if (IsMounted(mnt_)) Sh("fusermount3 -u -z " + mnt_);
    EXPECT_FALSE(IsMounted(mnt_)) << "left mounted: " << mnt_;
  }

  // `kvfs mount` (daemonizing): returns once the mount is live.
  void Mount(const std::string& flags) {
    RunResult r = Sh(Kvfs() + " mount " + mnt_ + " --data " + data_ + " " + flags);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    ASSERT_TRUE(IsLive(mnt_)) << "kvfs mount returned before the mount was live\n" << r.output;
  }
  void Unmount() {
    RunResult r = Sh(Kvfs() + " umount " + mnt_);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    ASSERT_FALSE(IsMounted(mnt_));
  }
  // Returns the child's exit code, or -1 if it did not exit in time.
  int WaitChild(std::chrono::seconds limit) {
    const auto deadline = Clock::now() + limit;
    int status = 0;
    while (Clock::now() < deadline) {
      const pid_t r = ::waitpid(daemon_, &status, WNOHANG);
      if (r == daemon_) {
        daemon_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // polling, with a deadline
    }
    return -1;
  }

  test::TempDir tmp_;
  std::string mnt_, data_;
  pid_t daemon_ = -1;
};

TEST_F(MountSmokeTest, DefaultConfigServesEveryStoreAndKeepsDataAcrossRemount) {
  Mount("");
  const std::set<std::string> root = ListDir(mnt_);
  EXPECT_TRUE(root.count("bitcask")) << "stores at the root";
  EXPECT_FALSE(root.count(".kvfs")) << "the control directory is hidden from readdir";
  for (const std::string& store : root) {
    if (store == "." || store == "..") continue;
    const std::string dir = mnt_ + "/" + store;
    ASSERT_EQ(::mkdir((dir + "/d").c_str(), 0755), 0) << store;
    // An append-only store's files cannot move (mount_events_test): g is written in place.
    const bool append_only = engines::IsAppendOnlyEngine(store);
    {
      std::ofstream out(dir + (append_only ? "/g" : "/d/f"));
      out << "hello " << store;
    }
    if (!append_only) {
      ASSERT_EQ(::rename((dir + "/d/f").c_str(), (dir + "/g").c_str()), 0) << store;
    }
    const int fd = ::open((dir + "/g").c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    EXPECT_EQ(::fsync(fd), 0);
    EXPECT_EQ(::fdatasync(fd), 0);
    ::close(fd);
    EXPECT_EQ(ReadAll(dir + "/g"), "hello " + store);
  }
  const std::string stats_text = ReadAll(mnt_ + "/.kvfs/stats");
  const nlohmann::json stats = test::ParseJson(stats_text);
  ASSERT_TRUE(stats.is_object()) << stats_text;
  ASSERT_TRUE(stats["stores"].is_array()) << stats_text;
  EXPECT_EQ(stats["stores"].size(), root.size() - 2) << stats_text;  // "." and ".." aside
  for (const nlohmann::json& store : stats["stores"]) {
    EXPECT_EQ(store["files"]["fsyncs"], 1) << store.dump(2);
    EXPECT_EQ(store["files"]["fdatasyncs"], 1) << store.dump(2);
  }
  EXPECT_NE(ReadAll(mnt_ + "/.kvfs/config").find("[[store]]"), std::string::npos);
  // Renames across stores are EXDEV (mv then copies).
  EXPECT_EQ(::rename((mnt_ + "/bitcask/g").c_str(), (mnt_ + "/lsm/g2").c_str()), -1);
  EXPECT_EQ(errno, EXDEV);

  Unmount();
  Mount("");
  for (const std::string& store : root) {
    if (store == "." || store == "..") continue;
    EXPECT_EQ(ReadAll(mnt_ + "/" + store + "/g"), "hello " + store) << "after remount";
    EXPECT_EQ(ListDir(mnt_ + "/" + store + "/d"), (std::set<std::string>{".", ".."}));
  }
  Unmount();
  // The offline tools see what the mount showed.
  RunResult get = Sh(Kvfs() + " get --data " + data_ + " bitcask/g");
  EXPECT_EQ(get.exit_code, 0) << get.output;
  EXPECT_EQ(get.output, "hello bitcask");
  RunResult check = Sh(Kvfs() + " check --data " + data_);
  EXPECT_EQ(check.exit_code, 0) << check.output;
}

TEST_F(MountSmokeTest, ASecondMountOfTheSameDataIsRefusedWithAClearMessage) {
  Mount("--engine bitcask");
  const std::string other = tmp_.Sub("mnt2");
  ASSERT_EQ(::mkdir(other.c_str(), 0755), 0);
  RunResult r = Sh(Kvfs() + " mount " + other + " --data " + data_ + " --engine bitcask");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("in use"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("pid"), std::string::npos) << r.output;
  EXPECT_FALSE(IsMounted(other));
  RunResult missing = Sh(Kvfs() + " mount " + tmp_.Sub("nosuch") + " --data " + data_);
  EXPECT_EQ(missing.exit_code, 1) << missing.output;
  EXPECT_NE(missing.output.find("nosuch"), std::string::npos) << missing.output;
  Unmount();
}

TEST_F(MountSmokeTest, ForegroundDaemonUnmountsCleanlyOnSigterm) {
  daemon_ = ::fork();
  ASSERT_GE(daemon_, 0);
  if (daemon_ == 0) {
    const std::string log = tmp_.Sub("daemon.log");
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::execl(KVFS_BINARY, KVFS_BINARY, "mount", mnt_.c_str(), "--data", data_.c_str(), "--engine",
            "lsm", "-f", nullptr);
    ::_exit(127);
  }
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  while (!IsLive(mnt_) && Clock::now() < deadline) {
    ASSERT_EQ(::waitpid(daemon_, nullptr, WNOHANG), 0) << ReadAll(tmp_.Sub("daemon.log"));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // polling, with a deadline
  }
  ASSERT_TRUE(IsLive(mnt_)) << ReadAll(tmp_.Sub("daemon.log"));
  {
    std::ofstream out(mnt_ + "/file");
    out << "single";
  }
  EXPECT_EQ(ReadAll(mnt_ + "/file"), "single");
  EXPECT_TRUE(ListDir(mnt_ + "/.kvfs").count("stats"));
  ASSERT_EQ(::kill(daemon_, SIGTERM), 0);
  EXPECT_EQ(WaitChild(std::chrono::seconds(60)), 0) << ReadAll(tmp_.Sub("daemon.log"));
  EXPECT_FALSE(IsMounted(mnt_));
  RunResult get = Sh(Kvfs() + " get --data " + data_ + " --engine lsm file");
  EXPECT_EQ(get.output, "single");
}

}  // namespace
}  // namespace kvfs
