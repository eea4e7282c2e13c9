#include "tests/fusefs/mount_fixture.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace kvfs::mount_test {
namespace {

using Clock = std::chrono::steady_clock;

int PidfdOpen(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

// Waits for `pid` to exit (up to `ms`, or for good with ms < 0); true once it has. Uses a pidfd
// (no polling); without pidfd support, checks /proc every 2 ms until the deadline.
bool WaitExit(pid_t pid, int ms) {
  const int fd = PidfdOpen(pid);
  if (fd >= 0) {
    pollfd p{fd, POLLIN, 0};
    int r;
    do {
      r = ::poll(&p, 1, ms);
    } while (r < 0 && errno == EINTR);
    ::close(fd);
    return r > 0;
  }
  if (errno == ESRCH) return true;
  const auto until = Clock::now() + std::chrono::milliseconds(ms < 0 ? INT_MAX : ms);
  while (Clock::now() < until) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string pid_s, comm, state;
    if (!(stat >> pid_s >> comm >> state) || state == "Z") return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return false;
}

int Ms(seconds s) { return static_cast<int>(s.count() * 1000); }

std::string ReadFd(int fd) {
  std::string out;
  char buf[65536];
  off_t off = 0;
  ssize_t n;
  while ((n = ::pread(fd, buf, sizeof buf, off)) > 0) {
    out.append(buf, static_cast<size_t>(n));
    off += n;
  }
  return out;
}

// In a forked child: stdin from /dev/null, stdout and stderr to `out`, every other fd closed.
void RedirectForChild(int out) {
  const int devnull = ::open("/dev/null", O_RDONLY);
  if (devnull >= 0) ::dup2(devnull, 0);
  ::dup2(out, 1);
  ::dup2(out, 2);
  ::close_range(3, ~0U, 0);
}

std::vector<char*> Argv(const std::vector<std::string>& args) {
  std::vector<char*> v;
  for (const std::string& a : args) v.push_back(const_cast<char*>(a.c_str()));
  v.push_back(nullptr);
  return v;
}

std::string Tail(const std::string& s, size_t max) {
  return s.size() <= max ? s : "[...]\n" + s.substr(s.size() - max);
}

std::string Dirname(const std::string& path) {
  return std::filesystem::path(path).parent_path().string();
}

std::string Unescape(const std::string& s) {  // mountinfo escapes " \t\n\\" as \ooo
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

}  // namespace

std::string CmdResult::Describe() const {
  std::string s = timed_out ? "timed out" : "exit " + std::to_string(exit_code);
  return s + ", output:\n" + Tail(output, 6000);
}

CmdResult Exec(const std::vector<std::string>& argv, seconds deadline) {
  CmdResult r;
  const int out = ::memfd_create("kvfs-test-output", MFD_CLOEXEC);
  if (out < 0) {
    r.output = std::string("memfd_create: ") + std::strerror(errno);
    return r;
  }
  std::vector<char*> args = Argv(argv);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::setpgid(0, 0);
    RedirectForChild(out);
    ::execvp(args[0], args.data());
    ::dprintf(2, "exec %s: %s\n", args[0], std::strerror(errno));
    ::_exit(127);
  }
  if (pid < 0) {
    r.output = std::string("fork: ") + std::strerror(errno);
    ::close(out);
    return r;
  }
  ::setpgid(pid, pid);
  if (!WaitExit(pid, Ms(deadline))) {
    r.timed_out = true;
    ::kill(-pid, SIGKILL);
    ::kill(pid, SIGKILL);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.output = ReadFd(out);
  if (WIFSIGNALED(status))
    r.output += "\n[killed by signal " + std::to_string(WTERMSIG(status)) + "]";
  ::close(out);
  return r;
}

CmdResult Sh(const std::string& script, seconds deadline) {
  return Exec({"/bin/sh", "-c", script}, deadline);
}

std::string Quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) {
    if (c == '\'') {
      q += "'\\''";
    } else {
      q += c;
    }
  }
  return q + "'";
}

std::string KvfsBinary() { return KVFS_BINARY; }
std::string KvfsBinaryDir() { return Dirname(KVFS_BINARY); }

std::string KvfsCommand(const std::vector<std::string>& args) {
  std::string cmd = Quote(KvfsBinary());
  for (const std::string& a : args) cmd += " " + Quote(a);
  return cmd;
}

std::string FuseSkipReason() {
  if (::access("/dev/fuse", F_OK) != 0) return "/dev/fuse is absent: mount tests need FUSE";
  if (::geteuid() != 0) return "not root: mount tests mount and change uid, which needs root";
  return "";
}

bool IsMounted(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, devno, root, mountpoint;
    fields >> id >> parent >> devno >> root >> mountpoint;
    if (Unescape(mountpoint) == path) return true;
  }
  return false;
}

bool IsLive(const std::string& path) {
  struct stat here, parent;
  if (::stat(path.c_str(), &here) != 0) return false;
  if (::stat(Dirname(path).c_str(), &parent) != 0) return false;
  return here.st_dev != parent.st_dev;
}

pid_t FindDaemonFor(const std::string& mountpoint) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(name));
    if (pid == ::getpid()) continue;
    const std::string cmdline = ReadFile("/proc/" + name + "/cmdline");
    std::vector<std::string> args;
    for (size_t start = 0; start < cmdline.size();) {
      const size_t end = cmdline.find('\0', start);
      args.push_back(cmdline.substr(start, end - start));
      if (end == std::string::npos) break;
      start = end + 1;
    }
    if (args.empty()) continue;
    const std::string argv0 = std::filesystem::path(args[0]).filename().string();
    if (argv0 != "kvfs") continue;
    for (size_t i = 1; i < args.size(); ++i) {
      if (args[i] == mountpoint) {
        std::ifstream stat("/proc/" + name + "/stat");
        std::string pid_s, comm, state;
        if ((stat >> pid_s >> comm >> state) && state != "Z") return pid;
      }
    }
  }
  return -1;
}

bool WaitGone(pid_t pid, seconds deadline) { return WaitExit(pid, Ms(deadline)); }

pid_t Spawn(const std::vector<std::string>& argv, const std::string& log) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  return pid;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  out.close();
  return static_cast<bool>(out);
}

// --- KvfsMount --------------------------------------------------------------------------------

KvfsMount::KvfsMount(MountOptions options) : options_(std::move(options)) {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/kvfs-mount-test-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp " << tmpl << ": " << std::strerror(errno);
    return;
  }
  char real[PATH_MAX];
  dir_ = ::realpath(tmpl.c_str(), real) != nullptr ? real : tmpl;
  mnt_ = dir_ + "/mnt";
  data_ = dir_ + "/data";
  log_ = dir_ + "/daemon.log";
  ::mkdir(mnt_.c_str(), 0755);
  ::mkdir(data_.c_str(), 0700);  // private, as a store's data directory must be
}

KvfsMount::~KvfsMount() { ForceCleanup(); }

std::string KvfsMount::DaemonLog(size_t max) const { return Tail(ReadFile(log_), max); }

size_t KvfsMount::DaemonLogBytes() const { return ReadFile(log_).size(); }

std::string KvfsMount::DaemonLogFrom(size_t from) const {
  const std::string log = ReadFile(log_);
  return from < log.size() ? log.substr(from) : "";
}

testing::AssertionResult KvfsMount::Mount() {
  if (pid_ > 0 || IsMounted(mnt_)) return testing::AssertionFailure() << mnt_ << " already mounted";
  std::vector<std::string> args = {options_.daemon, "mount", mnt_};
  if (options_.pass_data) args.insert(args.end(), {"--data", data_});
  if (!options_.config.empty()) args.insert(args.end(), {"--config", options_.config});
  if (!options_.engine.empty()) args.insert(args.end(), {"--engine", options_.engine});
  if (!options_.sync.empty()) args.insert(args.end(), {"--sync", options_.sync});
  args.insert(args.end(), options_.extra_args.begin(), options_.extra_args.end());
  args.push_back("-f");
  if (!options_.fuse_options.empty()) {
    std::string o;
    for (const std::string& opt : options_.fuse_options) o += (o.empty() ? "" : ",") + opt;
    args.insert(args.end(), {"-o", o});
  }
  std::string printable;
  for (const std::string& a : args) printable += (printable.empty() ? "" : " ") + a;
  {
    std::ofstream log(log_, std::ios::app);
    log << "=== " << printable << "\n";
  }
  const int log_fd = ::open(log_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (log_fd < 0) return testing::AssertionFailure() << "open " << log_ << ": " << strerror(errno);
  std::vector<char*> argv = Argv(args);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) {
    // If the test binary dies (a ctest timeout kills it), the daemon unmounts and exits.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(1);
    RedirectForChild(log_fd);
    ::execv(argv[0], argv.data());
    ::dprintf(2, "exec %s: %s\n", argv[0], std::strerror(errno));
    ::_exit(127);
  }
  ::close(log_fd);
  if (pid < 0) return testing::AssertionFailure() << "fork: " << std::strerror(errno);
  pid_ = pid;
  child_ = true;
  const auto until = Clock::now() + kMountDeadline;
  while (Clock::now() < until) {
    int status;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return testing::AssertionFailure()
             << "`" << printable << "` exited ("
             << (WIFEXITED(status) ? "status " + std::to_string(WEXITSTATUS(status))
                                   : "signal " + std::to_string(WTERMSIG(status)))
             << ") before its mount was live; its log:\n"
             << DaemonLog();
    }
    if (IsMounted(mnt_) && IsLive(mnt_)) return testing::AssertionSuccess();
    WaitExit(pid_, 5);  // returns early if the daemon dies
  }
  // Take the stuck daemon down now rather than leave it to the destructor's patient path.
  ::kill(pid_, SIGTERM);
  if (!WaitExit(pid_, Ms(seconds(5)))) ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
  if (IsMounted(mnt_)) Exec({"fusermount3", "-uz", mnt_}, seconds(30));
  return testing::AssertionFailure() << "`" << printable << "`: mount not live after "
                                     << kMountDeadline.count() << " s (daemon killed); log:\n"
                                     << DaemonLog();
}

testing::AssertionResult KvfsMount::MountDaemonized(const std::string& command) {
  if (pid_ > 0 || IsMounted(mnt_)) return testing::AssertionFailure() << mnt_ << " already mounted";
  const CmdResult r = Sh(command, kDaemonDeadline);
  // Find the daemon first, so that the destructor can take it down whatever happens next.
  pid_ = FindDaemonFor(mnt_);
  child_ = false;
  if (r.exit_code != 0) {
    return testing::AssertionFailure() << "`" << command << "`: " << r.Describe();
  }
  if (!IsMounted(mnt_) || !IsLive(mnt_)) {
    return testing::AssertionFailure() << "`" << command << "` returned 0 but " << mnt_
                                       << " is not (yet) a live mount: it must return only once "
                                          "the mount is live. Output:\n"
                                       << r.output;
  }
  if (pid_ < 0) {
    return testing::AssertionFailure()
           << "`" << command << "`: mounted, but no process with argv[0] "
           << "ending in kvfs has " << mnt_ << " in its arguments";
  }
  return testing::AssertionSuccess();
}

testing::AssertionResult KvfsMount::WaitDaemonExit(const char* what) {
  if (pid_ <= 0) return testing::AssertionSuccess();
  if (!WaitExit(pid_, Ms(kDaemonDeadline))) {
    return testing::AssertionFailure()
           << "daemon " << pid_ << " still running " << kDaemonDeadline.count() << " s after "
           << what << "; log:\n"
           << DaemonLog();
  }
  if (!child_) {
    pid_ = -1;
    return testing::AssertionSuccess();
  }
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
  const std::string log = ReadFile(log_);
  for (const char* bad : {"Sanitizer", "runtime error:"}) {
    if (log.find(bad) != std::string::npos) {
      return testing::AssertionFailure()
             << "daemon log has a sanitizer report (\"" << bad << "\") after " << what << ":\n"
             << Tail(log, 20000);
    }
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return testing::AssertionFailure()
           << "daemon ended with "
           << (WIFEXITED(status) ? "exit status " + std::to_string(WEXITSTATUS(status))
                                 : "signal " + std::to_string(WTERMSIG(status)))
           << " after " << what << " (expected exit 0); log:\n"
           << DaemonLog();
  }
  return testing::AssertionSuccess();
}

testing::AssertionResult KvfsMount::Unmount(UnmountWith how) {
  const char* what = "";
  CmdResult r;
  r.exit_code = 0;
  switch (how) {
    case UnmountWith::kFusermount:
      what = "fusermount3 -u";
      r = Exec({"fusermount3", "-u", mnt_}, kDaemonDeadline);
      break;
    case UnmountWith::kKvfsUmount:
      what = "kvfs umount";
      r = Exec({KvfsBinary(), "umount", mnt_}, kDaemonDeadline);
      break;
    case UnmountWith::kUmount:
      what = "umount";
      r = Exec({"umount", mnt_}, kDaemonDeadline);
      break;
    case UnmountWith::kSigterm:
      what = "SIGTERM";
      if (pid_ <= 0 || ::kill(pid_, SIGTERM) != 0) {
        return testing::AssertionFailure() << "no daemon to send SIGTERM to";
      }
      break;
  }
  if (r.exit_code != 0) {
    return testing::AssertionFailure()
           << what << " " << mnt_ << " failed: " << r.Describe() << "\ndaemon log:\n"
           << DaemonLog();
  }
  testing::AssertionResult exited = WaitDaemonExit(what);
  if (!exited) return exited;
  if (IsMounted(mnt_)) {
    return testing::AssertionFailure()
           << mnt_ << " is still mounted after " << what << " and the daemon's exit";
  }
  return testing::AssertionSuccess();
}

testing::AssertionResult KvfsMount::KillDaemon() {
  if (pid_ <= 0 || ::kill(pid_, SIGKILL) != 0) {
    return testing::AssertionFailure() << "no daemon to kill";
  }
  if (!WaitExit(pid_, Ms(kDaemonDeadline))) {
    return testing::AssertionFailure() << "daemon " << pid_ << " survived SIGKILL";
  }
  if (child_) ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
  if (IsMounted(mnt_)) Exec({"fusermount3", "-u", mnt_}, kDaemonDeadline);
  if (IsMounted(mnt_)) Exec({"fusermount3", "-uz", mnt_}, kDaemonDeadline);
  if (IsMounted(mnt_)) {
    return testing::AssertionFailure() << "cannot detach the dead mount " << mnt_;
  }
  return testing::AssertionSuccess();
}

testing::AssertionResult KvfsMount::PowerCut(bool signal) {
  if (pid_ <= 0 || !child_) return testing::AssertionFailure() << "no daemon of ours to cut";
  if (signal && ::kill(pid_, SIGUSR1) != 0) {
    return testing::AssertionFailure() << "kill(SIGUSR1): " << std::strerror(errno);
  }
  if (!WaitExit(pid_, Ms(kDaemonDeadline))) {
    return testing::AssertionFailure() << "daemon " << pid_ << " still running after the cut\n"
                                       << DaemonLog();
  }
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
  if (IsMounted(mnt_)) Exec({"fusermount3", "-u", mnt_}, kDaemonDeadline);
  if (IsMounted(mnt_)) Exec({"fusermount3", "-uz", mnt_}, kDaemonDeadline);
  if (IsMounted(mnt_)) {
    return testing::AssertionFailure() << "cannot detach the dead mount " << mnt_;
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return testing::AssertionFailure()
           << "the power cut did not write its image back (status " << status << ")\n"
           << DaemonLog();
  }
  return testing::AssertionSuccess();
}

void KvfsMount::ForceCleanup() {
  if (dir_.empty()) return;
  if (pid_ <= 0) {  // a daemon started by a command the test ran itself
    pid_ = FindDaemonFor(mnt_);
    child_ = false;
  }
  if (IsMounted(mnt_)) {
    Exec({"fusermount3", "-u", mnt_}, seconds(30));
    if (IsMounted(mnt_)) Exec({"fusermount3", "-uz", mnt_}, seconds(30));
    if (IsMounted(mnt_)) Exec({"umount", "-l", mnt_}, seconds(30));
  }
  if (pid_ > 0) {
    if (!WaitExit(pid_, Ms(seconds(30)))) {
      ::kill(pid_, SIGTERM);
      if (!WaitExit(pid_, Ms(seconds(10)))) {
        ::kill(pid_, SIGKILL);
        WaitExit(pid_, Ms(seconds(10)));
      }
    }
    if (child_) ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  if (IsMounted(mnt_)) {  // the daemon died and left a dead mount behind
    Exec({"fusermount3", "-uz", mnt_}, seconds(30));
    if (IsMounted(mnt_)) Exec({"umount", "-l", mnt_}, seconds(30));
  }
  if (IsMounted(mnt_)) {
    ADD_FAILURE() << "cannot unmount " << mnt_ << "; leaving " << dir_ << " in place";
    return;
  }
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

}  // namespace kvfs::mount_test
