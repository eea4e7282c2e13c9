// The kvfs daemon: mount the stores of a config and serve them until unmounted.
//
// RunDaemon's sequence, so that every error a user can make is reported on the terminal with
// exit code 1 before `kvfs mount` returns:
//   1. check the mountpoint (exists, is a directory, is not a dead FUSE mount) and print where
//      each store's data lives;
//   2. unless foreground: fork. The parent waits on a pipe until the child reports the mount
//      live (exit 0) or exits (its exit code; its messages went to the same stderr). Forking
//      before anything else starts means the engines' threads are born in the daemon;
//   3. open every store (a data dir locked by another kvfs, or holding another engine, fails
//      here), create the FUSE session (always default_permissions), mount;
//   4. tell the parent, detach from the terminal (setsid, stdio to /dev/null, cwd /), serve
//      with libfuse's multithreaded loop;
//   5. on SIGTERM, SIGINT, SIGHUP or an unmount (`kvfs umount`, `fusermount3 -u`): leave the
//      loop, unmount, sync and close every store. Exit 0 if they closed cleanly, else 1.
//
// Logging: spdlog, at config.logging.level, to config.logging.file if set, else to stderr in
// the foreground and to syslog once detached. libfuse's own messages go the same way.
#pragma once

#include <string>
#include <vector>

#include "config/config.h"
#include "sync/fault_file_system.h"

namespace kvfs::fusefs {

// Tests only: the stores run on the fault-injecting file system (sync/fault_file_system.h),
// loaded at start from the data directories on the real disk (sync::CopyTreeDurably). A power
// cut (SIGUSR1, or the scheduled sync below) makes it keep only what was synced (`mode`),
// writes that image back over the data directories and ends the daemon at once (_exit, no
// unmount, no flush: the mount is left dead, as after a crash), so a fresh daemon mounts what
// a machine would have found after losing power. SIGUSR2 lifts the space limit ("space was
// freed"). Counting starts once the stores are open.
struct FaultInjection {
  bool enabled = false;
  uint64_t seed = 1;
  sync::CrashMode mode = sync::CrashMode::kDropUnsynced;
  uint64_t crash_at_sync = 0;  // power cut just before the n-th sync (0: only on SIGUSR1)
  uint64_t fail_sync = 0;      // the n-th sync fails with EIO (0: none)
  int64_t space_left = -1;     // bytes the files may grow by before ENOSPC (-1: no limit)
};

struct DaemonOptions {
  std::string mountpoint;
  config::Config config;
  bool single_store = false;              // the one store at the mount's root (`--engine NAME`)
  bool foreground = false;                // -f: stay attached, log to stderr
  bool debug = false;                     // -d: libfuse's request trace (implies foreground)
  bool writeback_cache = false;           // -o kvfs_writeback
  bool no_open = true;                    // -o kvfs_open turns it off
  bool xattrs = true;                     // -o kvfs_noxattr turns them off
  double timeout_s = 3600;                // -o kvfs_timeout=SECONDS
  std::vector<std::string> fuse_options;  // passed to libfuse (allow_other, ro, ...)
  std::string fsname;                     // the source column of /proc/mounts
  FaultInjection fault;                   // tests only
};

// Runs the daemon; returns the process exit code (in the parent of a daemonized run: 0 once
// the mount is live, 1 if the child failed).
int RunDaemon(const DaemonOptions& options);

// Unmounts `mountpoint` (umount2 as root, `fusermount3 -u` otherwise) and waits up to
// `wait_s` seconds for the daemon serving it to exit, so the data directory is free again
// when this returns. Returns the exit code (0 = unmounted; 1 with a message otherwise).
int Unmount(const std::string& mountpoint, bool lazy, double wait_s);

}  // namespace kvfs::fusefs
