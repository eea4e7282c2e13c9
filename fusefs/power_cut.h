// PowerCutHarness: the daemon's test-only fault-injection mode (daemon.h, FaultInjection).
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
// Thread safety: Start and Arm from the daemon's main thread, before the FUSE loop; fs() from
// any thread.
#pragma once

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "config/config.h"
#include "fusefs/daemon.h"
#include "sync/fault_file_system.h"
#include "sync/status.h"

namespace kvfs::fusefs {

class PowerCutHarness {
 public:
  static Result<std::unique_ptr<PowerCutHarness>> Start(const config::Config& config,
                                                        const FaultInjection& options);
  ~PowerCutHarness();
  PowerCutHarness(const PowerCutHarness&) = delete;
  PowerCutHarness& operator=(const PowerCutHarness&) = delete;

  sync::FileSystem* fs() { return &fault_; }
  // Schedules the faults (counted from now) and starts watching for a power cut.
  void Arm();

 private:
  PowerCutHarness(std::vector<std::string> dirs, const FaultInjection& options);
  void Watch();
  [[noreturn]] void CutPower(const char* why);

  const std::vector<std::string> dirs_;
  const FaultInjection options_;
  sync::FaultFileSystem fault_;
  std::vector<std::unique_ptr<sync::FileLock>> real_locks_;
  int pipe_[2] = {-1, -1};  // the signal handler's byte goes in [1], the watcher reads [0]
  std::thread watcher_;
};

}  // namespace kvfs::fusefs
