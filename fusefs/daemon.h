// The kvfs daemon: mount the stores of a config and serve them until unmounted.
//
// RunDaemon's sequence, so that every error a user can make is reported on the terminal with
// exit code 1 before `kvfs mount` returns:
//   1. check the mountpoint (exists, is a directory, is not a dead FUSE mount), and for a user
//      who is not root what libfuse's mount through fusermount3 needs
//      (UnprivilegedMountProblem); print where each store's data lives;
//   2. unless foreground: fork. The parent waits on a pipe until the child reports the mount
//      live (exit 0) or exits (its exit code; its messages went to the same stderr). Forking
//      before anything else starts means the engines' threads are born in the daemon;
//   3. open every store (a data dir locked by another kvfs, or holding another engine, fails
//      here), create the FUSE session (always default_permissions), mount;
//   4. tell the parent, detach from the terminal (setsid, stdio to /dev/null, cwd /), serve
//      with libfuse's multithreaded loop;
//   4b. stores whose engine has a change feed (etcd: several daemons on one store) are watched:
//      what another process changed is dropped from the kernel's caches
//      (fuse_lowlevel_notify_inval_entry / _inode, from the feed's thread) until unmounted;
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
  bool public_control = false;            // -o kvfs_public_control: /.kvfs readable by all
  std::vector<std::string> fuse_options;  // passed to libfuse (allow_other, ro, ...)
  // -o ro: the stores open read-only too (engine and file layer), so that the daemon writes
  // nothing: with etcd, a follower of another host's writer (it never takes the store's
  // sequence key, never purges that writer's orphans).
  bool read_only = false;
  std::string fsname;               // the source column of /proc/mounts
  StorageHooks* storage = nullptr;  // null: the real disk
};

// What a mount by a user who is not root goes through, and where: libfuse opens the device
// itself, then has the setuid-root fusermount3 mount it (FUSERMOUNT_DIR first, then PATH), which
// admits allow_other or allow_root only with user_allow_other in fuse.conf. Tests point these at
// their own files.
struct UnprivilegedMountPaths {
  std::string dev_fuse = "/dev/fuse";
  std::string fusermount = "/usr/bin/fusermount3";  // if missing, fusermount3 is looked up in PATH
  std::string fuse_conf = "/etc/fuse.conf";
};

// Why a mount by `euid` with `fuse_options` would fail before libfuse tries it, as the message
// to print: the device missing or not readable and writable by the user, fusermount3 missing or
// not setuid root, the mountpoint not writable by the user, allow_other (or allow_root) without
// a user_allow_other line in fuse.conf (read as fusermount3 reads it: a '#' starts a comment,
// blanks around are ignored, only whole lines count). Each says what to do. "" when nothing
// known stands in the way, and always for root (euid 0).
std::string UnprivilegedMountProblem(uint32_t euid, const std::string& mountpoint,
                                     const std::vector<std::string>& fuse_options,
                                     const UnprivilegedMountPaths& paths = {});

// Runs the daemon; returns the process exit code (in the parent of a daemonized run: 0 once
// the mount is live, 1 if the child failed).
int RunDaemon(const DaemonOptions& options);

// Unmounts `mountpoint` (umount2 as root, `fusermount3 -u` otherwise) and waits up to
// `wait_s` seconds for the daemon serving it to exit, so the data directory is free again
// when this returns. Returns the exit code (0 = unmounted; 1 with a message otherwise).
int Unmount(const std::string& mountpoint, bool lazy, double wait_s);

}  // namespace kvfs::fusefs
