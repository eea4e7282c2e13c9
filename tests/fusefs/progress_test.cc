// ProgressLine with a fake clock and a captured terminal: when it draws, what the line says, and
// that it draws nothing without a terminal.
#include "fusefs/progress.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tests/test_util.h"

namespace kvfs::fusefs {
namespace {

constexpr int64_t kMs = 1'000'000;
constexpr uint64_t kMiB = 1 << 20;

class KvfsProgressLineTest : public testing::Test {
 protected:
  ProgressLine Line() {
    return ProgressLine([this](std::string_view s) { writes_.emplace_back(s); },
                        [this] { return now_; });
  }
  int64_t now_ = 5000 * kMs;  // any start: only differences count
  std::vector<std::string> writes_;
};

TEST_F(KvfsProgressLineTest, QuickWorkDrawsNothing) {
  ProgressLine p = Line();
  p.Start("lsm", "keys", 10 * kMiB);
  for (int i = 0; i < 1000; ++i) {
    now_ += kMs / 10;  // 100 ms in all
    p.Add(1, 1024);
  }
  p.Clear();
  EXPECT_TRUE(writes_.empty());
}

TEST_F(KvfsProgressLineTest, DrawsAtMostOncePerIntervalWithCountsRateAndTimeLeft) {
  ProgressLine p = Line();
  p.Start("lsm", "keys", 30 * kMiB);
  now_ += 1000 * kMs;
  p.Add(1000, 10 * kMiB);
  ASSERT_EQ(writes_.size(), 1u);
  // 10 MiB in 1 s is 10.5 MB/s; 20 MiB left at that rate is 2 s.
  EXPECT_EQ(writes_[0], "\rlsm: 1000 keys, 10.0 MiB verified, 10.5 MB/s, 2 s left");
  now_ += 200 * kMs;
  p.Add(1, 1);
  EXPECT_EQ(writes_.size(), 1u) << "within the interval: no redraw";
  now_ += 50 * kMs;
  p.Add(0, 0);
  ASSERT_EQ(writes_.size(), 2u);
  EXPECT_EQ(writes_[1].substr(0, 36), "\rlsm: 1001 keys, 10.0 MiB verified, ");
}

TEST_F(KvfsProgressLineTest, LongWorkShowsMinutesAndHoursAndNoTimeLeftPastTheTotal) {
  ProgressLine p = Line();
  p.Start("big", "files", uint64_t{100} * 1024 * kMiB);  // 100 GiB
  now_ += 10'000 * kMs;
  p.Add(3, 10 * kMiB);  // 1 MiB/s: 102390 s left
  ASSERT_EQ(writes_.size(), 1u);
  EXPECT_EQ(writes_.back(), "\rbig: 3 files, 10.0 MiB verified, 1.0 MB/s, 28 h 26 min left");
  p.Start("small", "keys", 2 * kMiB);
  now_ += 1000 * kMs;
  p.Add(1, kMiB);  // 1 MiB left at 1 MiB/s
  EXPECT_EQ(writes_.back(),
            "\rsmall: 1 keys, 1.0 MiB verified, 1.0 MB/s, 1 s left" + std::string(8, ' '))
      << "blanks over the end of the longer line before";
  now_ += 250 * kMs;
  p.Add(1, 3 * kMiB);  // past the estimated total
  EXPECT_EQ(writes_.back(), "\rsmall: 2 keys, 4.0 MiB verified, 3.4 MB/s" + std::string(10, ' '));
  p.Start("unknown", "keys", 0);
  now_ += 90'500 * kMs;
  p.Add(7, 512);
  EXPECT_EQ(writes_.back(), "\runknown: 7 keys, 512 B verified, 0.0 MB/s");
}

TEST_F(KvfsProgressLineTest, MinutesAreShownWithSeconds) {
  ProgressLine p = Line();
  p.Start("s", "keys", 186 * kMiB);
  now_ += 1000 * kMs;
  p.Add(1, kMiB);  // 185 s left
  EXPECT_EQ(writes_.back(), "\rs: 1 keys, 1.0 MiB verified, 1.0 MB/s, 3 min 05 s left");
}

TEST_F(KvfsProgressLineTest, ClearErasesTheLineOnlyWhenOneIsShown) {
  ProgressLine p = Line();
  p.Start("x", "keys", 0);
  p.Clear();
  EXPECT_TRUE(writes_.empty());
  now_ += 300 * kMs;
  p.Add(1, 10);
  ASSERT_EQ(writes_.size(), 1u);
  const size_t shown = writes_[0].size() - 1;  // without the '\r'
  p.Clear();
  ASSERT_EQ(writes_.size(), 2u);
  EXPECT_EQ(writes_[1], "\r" + std::string(shown, ' ') + "\r");
  p.Clear();
  EXPECT_EQ(writes_.size(), 2u) << "nothing left to erase";
}

TEST_F(KvfsProgressLineTest, WithoutATerminalNothingIsWritten) {
  int64_t reads = 0;
  ProgressLine p(nullptr, [&] { return ++reads * 1000 * kMs; });
  EXPECT_FALSE(p.enabled());
  p.Start("x", "keys", 100);
  for (int i = 0; i < 10; ++i) p.Add(1, 10);
  p.Clear();
  EXPECT_EQ(reads, 0) << "not even the clock is read";
}

// stderr made a pipe, then a pseudo-terminal, for as long as ForStderr looks at it.
TEST(KvfsProgressForStderr, DrawsOnlyWhenStderrIsATerminal) {
  const int saved = ::dup(STDERR_FILENO);
  ASSERT_GE(saved, 0);
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  const int master = ::posix_openpt(O_RDWR | O_NOCTTY);
  ASSERT_GE(master, 0);
  ASSERT_EQ(::grantpt(master), 0);
  ASSERT_EQ(::unlockpt(master), 0);
  const int terminal = ::open(::ptsname(master), O_RDWR | O_NOCTTY);
  ASSERT_GE(terminal, 0);

  ::dup2(pipe_fds[1], STDERR_FILENO);
  const bool on_pipe = ProgressLine::ForStderr().enabled();
  ::dup2(terminal, STDERR_FILENO);
  const bool on_terminal = ProgressLine::ForStderr().enabled();
  ::dup2(saved, STDERR_FILENO);
  for (int fd : {saved, pipe_fds[0], pipe_fds[1], terminal, master}) ::close(fd);
  EXPECT_FALSE(on_pipe);
  EXPECT_TRUE(on_terminal);
}

TEST(KvfsProgressDirectoryBytes, SumsTheRegularFilesBelow) {
  test::TempDir tmp;
  std::ofstream(tmp.Sub("a")) << std::string(1000, 'a');
  std::filesystem::create_directories(tmp.Sub("d/e"));
  std::ofstream(tmp.Sub("d/e/b")) << std::string(24, 'b');
  EXPECT_EQ(DirectoryBytes(tmp.path()), 1024u);
  EXPECT_EQ(DirectoryBytes(tmp.Sub("nosuch")), 0u);
}

}  // namespace
}  // namespace kvfs::fusefs
