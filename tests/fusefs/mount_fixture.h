// Helpers for tests that mount kvfs for real: run the `kvfs` binary (KVFS_BINARY), drive the
// mount with ordinary tools, and always take the mount down again.
//
// How a mount is run. KvfsMount::Mount() starts `kvfs mount MNT --data D ... -f` as a child of
// the test process, its stdout and stderr going to a log file in the test's private directory.
// Running in the foreground as our own child is the robust choice: the daemon's pid is known
// without guessing, its exit status (and so any sanitizer report, which makes it non-zero) is
// checked on every unmount, and a daemon that dies during start-up is seen at once instead of
// after a timeout. The mount counts as live when stat(MNT).st_dev differs from its parent's,
// polled against a deadline. The child gets PR_SET_PDEATHSIG(SIGTERM), so if ctest kills the
// test binary on a timeout the daemon still unmounts itself.
//
// MountDaemonized() instead runs a command that must return only once the mount is live (`kvfs
// mount` without -f, `mount -t fuse.kvfs`); the daemon is then found through /proc by its
// command line, and its exit is awaited through a pidfd (its status cannot be read: it is not
// our child).
//
// Teardown never depends on the test having passed: the destructor unmounts (fusermount3 -u,
// then -uz, then umount -l), waits for the daemon to exit (SIGTERM, then SIGKILL after a
// deadline) and removes the private directory only once nothing is mounted below it.
//
// Every wait here is a condition polled (or a pidfd waited on) against a deadline; nothing
// sleeps for a fixed time to synchronise.
//
// Thread safety: none; one test thread uses a KvfsMount.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace kvfs::mount_test {

using std::chrono::seconds;

// How long a started daemon may take until its mount is live (ASan start-up on a loaded 2-core
// machine takes about a second), and to exit after an unmount (leak checks included).
inline constexpr seconds kMountDeadline{30};
inline constexpr seconds kDaemonDeadline{60};
// Default limit for one tool command run through the mount.
inline constexpr seconds kCommandDeadline{180};

struct CmdResult {
  int exit_code = -1;  // -1 if killed by a signal or not started
  std::string output;  // stdout and stderr, interleaved
  bool timed_out = false;
  std::string Describe() const;  // "exit N" plus the output, for failure messages
};

// Runs argv[0] (searched in PATH) with argv, stdin from /dev/null, stdout+stderr captured in a
// memfd (so a daemon that inherits them cannot keep us waiting). On the deadline the command's
// process group is killed and timed_out set.
CmdResult Exec(const std::vector<std::string>& argv, seconds deadline = kCommandDeadline);
// Runs `script` with /bin/sh -c (set -e is NOT implied).
CmdResult Sh(const std::string& script, seconds deadline = kCommandDeadline);
// Single-quotes `s` for /bin/sh.
std::string Quote(const std::string& s);

// The kvfs binary under test (KVFS_BINARY) and the directory holding it.
std::string KvfsBinary();
std::string KvfsBinaryDir();
// `kvfs ARGS...` (each argument quoted), for Sh scripts.
std::string KvfsCommand(const std::vector<std::string>& args);

// Why mount tests cannot run here ("" if they can): /dev/fuse missing or not root.
std::string FuseSkipReason();

// true if `path` is a mount point according to /proc/self/mountinfo (never blocks on a FUSE
// daemon, even a hung one).
bool IsMounted(const std::string& path);
// true if stat(path).st_dev differs from stat(path/..).st_dev: the mount is live and answering.
bool IsLive(const std::string& path);

// The pid of the process whose argv[0] ends in "kvfs" and which has `mountpoint` among its
// arguments; -1 if none.
pid_t FindDaemonFor(const std::string& mountpoint);
// Waits until process `pid` (any process, not only a child) has exited, up to `deadline`.
// Returns true if it exited. Does not reap it.
bool WaitGone(pid_t pid, seconds deadline);
// Starts argv (argv[0] a path) in the background, its stdout and stderr to `log`; its pid.
pid_t Spawn(const std::vector<std::string>& argv, const std::string& log);

// Reads a whole file (binary); "" if it cannot be opened.
std::string ReadFile(const std::string& path);
// Writes a whole file (truncating), with mode 0644 under the umask. false on failure.
bool WriteFile(const std::string& path, const std::string& data);

struct MountOptions {
  std::string engine;                     // --engine NAME; "" = none
  std::string sync;                       // --sync MODE; "" = the default
  std::string config;                     // --config FILE; "" = none
  bool pass_data = true;                  // --data <tmp>/data
  std::vector<std::string> fuse_options;  // joined into one -o
  std::vector<std::string> extra_args;    // appended to `kvfs mount`
  // The daemon binary mounted with: the shipped kvfs, or a test daemon (kvfs_fault_daemon).
  std::string daemon = KvfsBinary();
};

enum class UnmountWith { kFusermount, kKvfsUmount, kUmount, kSigterm };

class KvfsMount {
 public:
  // Creates a private directory with an empty "data" and "mnt"; mounts nothing yet.
  explicit KvfsMount(MountOptions options);
  ~KvfsMount();
  KvfsMount(const KvfsMount&) = delete;
  KvfsMount& operator=(const KvfsMount&) = delete;

  // Starts the daemon in the foreground (-f) as a child and waits until the mount is live.
  // Failure (daemon exited, deadline) carries the daemon's log.
  testing::AssertionResult Mount();
  // Runs `command` through /bin/sh; it must exit 0 with mnt() live at that moment (no waiting).
  // The daemon it leaves behind is found through /proc.
  testing::AssertionResult MountDaemonized(const std::string& command);
  // Unmounts, then requires the daemon to exit within kDaemonDeadline, with status 0 and no
  // sanitizer report in its log (when it is our child), and mnt() to be no mount point.
  testing::AssertionResult Unmount(UnmountWith how = UnmountWith::kFusermount);
  // A crash of the daemon process: SIGKILL, reap it, then detach the dead mount it leaves
  // ("Transport endpoint is not connected") so that Mount() can run again.
  testing::AssertionResult KillDaemon();
  // The end of a daemon mounted with kvfs_fault_daemon after a power cut: sends SIGUSR1
  // if `signal` (else the scheduled crash point must fire by itself), waits for the daemon to
  // write the surviving image back and exit, reaps it, and detaches the dead mount. Fails if
  // it exited non-zero (the image could not be written) or did not exit.
  testing::AssertionResult PowerCut(bool signal);
  testing::AssertionResult Remount() {
    auto u = Unmount();
    if (!u) return u;
    return Mount();
  }

  const std::string& dir() const { return dir_; }  // the private directory
  const std::string& mnt() const { return mnt_; }
  const std::string& data() const { return data_; }
  std::string Sub(const std::string& rel) const { return dir_ + "/" + rel; }  // in dir()
  std::string At(const std::string& rel) const { return mnt_ + "/" + rel; }   // in the mount
  pid_t daemon_pid() const { return pid_; }
  MountOptions& options() { return options_; }
  // The daemon's log (all runs so far), its last `max` bytes.
  std::string DaemonLog(size_t max = 8000) const;
  // The log's size now, and what was written to it from byte `from` on: what one run said.
  size_t DaemonLogBytes() const;
  std::string DaemonLogFrom(size_t from) const;

 private:
  testing::AssertionResult WaitDaemonExit(const char* what);
  void ForceCleanup();

  MountOptions options_;
  std::string dir_, mnt_, data_, log_;
  pid_t pid_ = -1;
  bool child_ = false;  // pid_ is our child (Mount) rather than found in /proc
};

}  // namespace kvfs::mount_test
