#include "tests/crash/power_cut.h"

#include <fcntl.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>

#include "sync/durable.h"
#include "sync/file_system.h"
#include "sync/tree_copy.h"

namespace kvfs::crash_test {
namespace {

// The write end of the running harness's pipe, for the signal handler (one harness per
// process: the daemon's).
volatile sig_atomic_t signal_fd = -1;

void OnSignal(int sig) {
  const int saved = errno;
  const char c = sig == SIGUSR1 ? 'c' : 's';
  if (signal_fd >= 0) {
    [[maybe_unused]] const ssize_t n = ::write(signal_fd, &c, 1);
  }
  errno = saved;
}

}  // namespace

PowerCutHarness::PowerCutHarness(const FaultInjection& options)
    : options_(options), fault_(options.seed) {}

Result<sync::FileSystem*> PowerCutHarness::Start(const config::Config& config) {
  sync::FileSystem* real = sync::DefaultFileSystem();
  for (const config::StoreConfig& s : config.stores) {
    const std::string& dir = s.data_dir;
    dirs_.push_back(dir);
    KVFS_RETURN_IF_ERROR(sync::CreateDirDurably(real, dir));
    auto lock = real->LockFile(sync::JoinPath(dir, "LOCK"));
    if (!lock.ok()) return lock.status().WithContext("data directory " + dir);
    real_locks_.push_back(std::move(*lock));
    Status loaded = sync::CopyTreeDurably(real, dir, &fault_, dir);
    if (!loaded.ok())
      return loaded.WithContext("loading " + dir + " into the fault-injecting disk");
  }
  if (::pipe2(pipe_, O_CLOEXEC) != 0) return Status::FromErrno(errno, "pipe");
  return &fault_;
}

PowerCutHarness::~PowerCutHarness() {
  signal_fd = -1;
  if (pipe_[1] >= 0) {
    const char stop = 'q';
    [[maybe_unused]] const ssize_t n = ::write(pipe_[1], &stop, 1);
  }
  if (watcher_.joinable()) watcher_.join();
  for (int fd : pipe_) {
    if (fd >= 0) ::close(fd);
  }
}

void PowerCutHarness::StoresOpened() {
  if (options_.crash_at_sync > 0) fault_.CrashAtSync(options_.crash_at_sync, options_.mode);
  if (options_.fail_sync > 0) fault_.FailSyncAfter(options_.fail_sync, options_.fail_sync_errno);
  if (options_.space_left >= 0 && !dirs_.empty()) {
    // With no limit, total - free is what the files hold.
    auto space = fault_.GetSpaceInfo(dirs_.front());
    const uint64_t used = space.ok() ? space->total_bytes - space->free_bytes : 0;
    fault_.SetSpaceLimit(used + static_cast<uint64_t>(options_.space_left));
  }
  signal_fd = pipe_[1];
  struct sigaction sa = {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  ::sigaction(SIGUSR1, &sa, nullptr);
  ::sigaction(SIGUSR2, &sa, nullptr);
  watcher_ = std::thread([this] { Watch(); });
  spdlog::warn("fault injection on (tests only): seed {}, crash mode {}, power cut {}{}",
               options_.seed, sync::CrashModeName(options_.mode),
               options_.crash_at_sync > 0
                   ? "at sync " + std::to_string(options_.crash_at_sync) + " or on SIGUSR1"
                   : std::string("on SIGUSR1"),
               options_.fail_sync > 0 ? ", sync " + std::to_string(options_.fail_sync) +
                                            " fails with " + std::strerror(options_.fail_sync_errno)
                                      : std::string());
}

void PowerCutHarness::Watch() {
  for (;;) {
    // A scheduled crash point fires inside some sync, in some thread: polled, as the fault
    // file system has no callback (this mode exists for tests only).
    pollfd p = {pipe_[0], POLLIN, 0};
    const int r = ::poll(&p, 1, 2);
    if (r < 0 && errno != EINTR) return;
    if (r > 0) {
      char c = 0;
      if (::read(pipe_[0], &c, 1) != 1) continue;
      if (c == 'q') return;
      if (c == 'c') CutPower("SIGUSR1");
      if (c == 's') {
        fault_.SetSpaceLimit(UINT64_MAX);
        spdlog::warn("fault injection: space limit lifted (SIGUSR2)");
      }
    }
    if (fault_.crashed()) CutPower("the scheduled crash point");
  }
}

void PowerCutHarness::CutPower(const char* why) {
  fault_.CrashAndFreeze(options_.mode);
  sync::FileSystem* real = sync::DefaultFileSystem();
  int code = 0;
  for (const std::string& dir : dirs_) {
    Status s = sync::CopyTreeDurably(&fault_, dir, real, dir);
    if (!s.ok()) {
      std::fprintf(stderr, "kvfs: power cut: writing back %s failed: %s\n", dir.c_str(),
                   s.ToString().c_str());
      code = 1;
    }
  }
  std::fprintf(stderr, "kvfs: power cut (%s, seed %llu, %s): what survives is in the data dirs\n",
               why, static_cast<unsigned long long>(options_.seed),
               sync::CrashModeName(options_.mode));
  std::fflush(stderr);
  if (auto logger = spdlog::default_logger()) logger->flush();
  ::_exit(code);  // no unmount, no flush, no destructors: the power is gone
}

}  // namespace kvfs::crash_test
