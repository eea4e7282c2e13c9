// PowerCutHarness: the storage of the test daemon (kvfs_fault_daemon.cc), never of the shipped
// kvfs: the stores run on the fault-injecting file system (sync/fault_file_system.h), loaded at
// start from the data directories on the real disk. A power cut (SIGUSR1, or the scheduled sync)
// makes it keep only what was synced, writes that image back over the data directories and ends
// the daemon at once (_exit, no unmount, no flush: the mount is left dead, as after a crash), so
// a fresh daemon mounts what a machine would have found after losing power. SIGUSR2 lifts the
// space limit ("space was freed"). Counting starts once the stores are open.
//
// Start() copies every store's data directory from the real disk into a new FaultFileSystem
// (durably, so that is the "synced" state a power cut goes back to) and takes the real
// directories' locks, so no other kvfs mounts them meanwhile. The stores are then opened on
// fs(). Arm() schedules the faults and starts a watcher thread that cuts the power on SIGUSR1,
// or when the scheduled crash point fires: the file system keeps only what was synced and
// freezes, the surviving image is written over the real data directories, and the process ends
// at once with _exit (nothing is flushed or unmounted; the engines' threads never get to run
// again). SIGUSR2 lifts the space limit.
//
// Thread safety: Start and StoresOpened from the daemon's main thread, before the FUSE loop.
#pragma once

#include <cerrno>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "config/config.h"
#include "fusefs/daemon.h"
#include "sync/fault_file_system.h"
#include "sync/status.h"

namespace kvfs::crash_test {

struct FaultInjection {
  uint64_t seed = 1;
  sync::CrashMode mode = sync::CrashMode::kDropUnsynced;
  uint64_t crash_at_sync = 0;  // power cut just before the n-th sync (0: only on SIGUSR1)
  uint64_t fail_sync = 0;      // the n-th sync fails with fail_sync_errno (0: none)
  int fail_sync_errno = EIO;   // EIO, or ENOSPC / EDQUOT as thin or quota-limited disks answer
  int64_t space_left = -1;     // bytes the files may grow by before ENOSPC (-1: no limit)
};

class PowerCutHarness final : public fusefs::StorageHooks {
 public:
  explicit PowerCutHarness(const FaultInjection& options);
  ~PowerCutHarness() override;
  PowerCutHarness(const PowerCutHarness&) = delete;
  PowerCutHarness& operator=(const PowerCutHarness&) = delete;

  // Loads the stores' data directories into the fault-injecting disk and locks the real ones.
  Result<sync::FileSystem*> Start(const config::Config& config) override;
  // Schedules the faults (counted from now) and starts watching for a power cut.
  void StoresOpened() override;

 private:
  void Watch();
  [[noreturn]] void CutPower(const char* why);

  const FaultInjection options_;
  std::vector<std::string> dirs_;
  sync::FaultFileSystem fault_;
  std::vector<std::unique_ptr<sync::FileLock>> real_locks_;
  int pipe_[2] = {-1, -1};  // the signal handler's byte goes in [1], the watcher reads [0]
  std::thread watcher_;
};

}  // namespace kvfs::crash_test
