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
#include "sync/file_system.h"
#include "sync/status.h"

namespace kvfs::fusefs {

// Where the stores' files live. The shipped daemon uses the real disk (no hooks); a test daemon
// (tests/crash/kvfs_fault_daemon) supplies hooks that put the stores on a simulated disk it can
// cut the power of. The production binary links no such thing, so no flag of it can start a
// mount on a simulated disk.
class StorageHooks {
 public:
  virtual ~StorageHooks() = default;
  // Called once, before any store opens: the file system the stores of `config` live on.
  virtual Result<sync::FileSystem*> Start(const config::Config& config) = 0;
  // Called once every store is open, before the mount serves its first request.
  virtual void StoresOpened() = 0;
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
  StorageHooks* storage = nullptr;        // null: the real disk
};

// Runs the daemon; returns the process exit code (in the parent of a daemonized run: 0 once
// the mount is live, 1 if the child failed).
int RunDaemon(const DaemonOptions& options);

// Unmounts `mountpoint` (umount2 as root, `fusermount3 -u` otherwise) and waits up to
// `wait_s` seconds for the daemon serving it to exit, so the data directory is free again
// when this returns. Returns the exit code (0 = unmounted; 1 with a message otherwise).
int Unmount(const std::string& mountpoint, bool lazy, double wait_s);

}  // namespace kvfs::fusefs
