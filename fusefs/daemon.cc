#define FUSE_USE_VERSION 314
#include "fusefs/daemon.h"

#include <fcntl.h>
#include <fuse3/fuse_lowlevel.h>
#include <poll.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/sinks/syslog_sink.h>
#include <spdlog/spdlog.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "fusefs/filesystem.h"
#include "fusefs/fuse_ops.h"
#include "fusefs/stores.h"

namespace kvfs::fusefs {
namespace {

spdlog::level::level_enum SpdLevel(config::LogLevel level) {
  switch (level) {
    case config::LogLevel::kTrace:
      return spdlog::level::trace;
    case config::LogLevel::kDebug:
      return spdlog::level::debug;
    case config::LogLevel::kInfo:
      return spdlog::level::info;
    case config::LogLevel::kWarn:
      return spdlog::level::warn;
    case config::LogLevel::kError:
      return spdlog::level::err;
    case config::LogLevel::kCritical:
      return spdlog::level::critical;
    case config::LogLevel::kOff:
      return spdlog::level::off;
  }
  return spdlog::level::info;
}

// Sets the default spdlog logger. Returns false (with a message on stderr) if the log file
// cannot be opened.
bool SetUpLogging(const config::LoggingConfig& logging, bool attached) {
  try {
    std::shared_ptr<spdlog::logger> logger;
    if (!logging.file.empty()) {
      logger = spdlog::basic_logger_mt("kvfs", logging.file);
    } else if (attached) {
      logger = spdlog::stderr_logger_mt("kvfs");
    } else {
      logger = spdlog::syslog_logger_mt("kvfs", "kvfs", LOG_PID, LOG_DAEMON);
    }
    logger->set_level(SpdLevel(logging.level));
    logger->flush_on(spdlog::level::warn);
    spdlog::set_default_logger(logger);
    return true;
  } catch (const spdlog::spdlog_ex& e) {
    std::fprintf(stderr, "kvfs: cannot set up logging to %s: %s\n", logging.file.c_str(), e.what());
    return false;
  }
}

void FuseLog(enum fuse_log_level level, const char* fmt, va_list ap) {
  char buf[1024];
  std::vsnprintf(buf, sizeof(buf), fmt, ap);
  std::string msg(buf);
  while (!msg.empty() && msg.back() == '\n') msg.pop_back();
  switch (level) {
    case FUSE_LOG_EMERG:
    case FUSE_LOG_ALERT:
    case FUSE_LOG_CRIT:
    case FUSE_LOG_ERR:
      spdlog::error("libfuse: {}", msg);
      break;
    case FUSE_LOG_WARNING:
    case FUSE_LOG_NOTICE:
      spdlog::warn("libfuse: {}", msg);
      break;
    case FUSE_LOG_INFO:
      spdlog::info("libfuse: {}", msg);
      break;
    case FUSE_LOG_DEBUG:
      spdlog::debug("libfuse: {}", msg);
      break;
  }
}

// Escapes ',' and '\' for libfuse's option parser.
std::string EscapeOption(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == ',' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

// OK if `mountpoint` can be mounted on; otherwise the message to print.
std::string CheckMountpoint(const std::string& mountpoint) {
  struct stat st;
  if (::stat(mountpoint.c_str(), &st) != 0) {
    const int err = errno;
    if (err == ENOTCONN) {
      return "mountpoint " + mountpoint +
             " is a FUSE mount whose daemon died; run: fusermount3 -u " + mountpoint;
    }
    return "mountpoint " + mountpoint + ": " + ErrnoText(err);
  }
  if (!S_ISDIR(st.st_mode)) return "mountpoint " + mountpoint + " is not a directory";
  return {};
}

std::string Octal(mode_t mode) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

// The fusermount3 libfuse would run: `preferred` if it exists, else the first in PATH; "" if
// none. getenv: called before any thread starts (RunDaemon's first step).
std::string FindFusermount(const std::string& preferred) {
  if (::access(preferred.c_str(), F_OK) == 0) return preferred;
  const char* path = std::getenv("PATH");  // NOLINT(concurrency-mt-unsafe)
  std::string dirs = path != nullptr ? path : "/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    const std::string dir = dirs.substr(start, end - start);
    std::string candidate = (dir.empty() ? "." : dir) + "/fusermount3";
    if (::access(candidate.c_str(), F_OK) == 0) return candidate;
    start = end + 1;
  }
  return {};
}

// True if `conf` has a line reading user_allow_other, as fusermount3's read_conf sees lines:
// newline-terminated, cut at '#', blanks trimmed.
bool AllowsUserAllowOther(const std::string& conf) {
  std::ifstream in(conf);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t start = 0;
  for (size_t nl = text.find('\n'); nl != std::string::npos; nl = text.find('\n', start)) {
    std::string line = text.substr(start, nl - start);
    start = nl + 1;
    line = line.substr(0, line.find('#'));
    const size_t first = line.find_first_not_of(" \t\r\f\v");
    if (first == std::string::npos) continue;
    line = line.substr(first, line.find_last_not_of(" \t\r\f\v") - first + 1);
    if (line == "user_allow_other") return true;
  }
  return false;
}

void WriteAll(int fd, const char* data, size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, data, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    data += w;
    n -= static_cast<size_t>(w);
  }
}

void Detach() {
  const int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null >= 0) {
    ::dup2(null, 0);
    ::dup2(null, 1);
    ::dup2(null, 2);
    if (null > 2) ::close(null);
  }
  if (::chdir("/") != 0) {
    spdlog::warn("chdir /: {}", ErrnoText(errno));
  }
}

// What each store's open recovered, in the log: a torn tail it dropped is a warning (segment,
// offset, bytes), so an operator hears of every byte a crash cost.
void LogRecovery(const Store& store) {
  const engines::RecoveryReport& r = store.files->engine()->recovery();
  if (r.dropped_bytes() || !r.warnings.empty()) {
    spdlog::warn("store {} recovered: {}", store.config.name, r.Summary());
  } else {
    spdlog::info("store {} recovered: {}", store.config.name, r.Summary());
  }
}

// The daemon proper (in the child when daemonized). `ready_fd` >= 0: write 'K' there once the
// mount is live.
int Serve(const DaemonOptions& options, const std::string& mountpoint, int ready_fd) {
  const bool attached = ready_fd < 0;
  config::LoggingConfig logging = options.config.logging;
  if (options.debug) logging.level = config::LogLevel::kDebug;  // libfuse's trace is debug
  if (!SetUpLogging(logging, /*attached=*/true)) return 1;
  fuse_set_log_func(FuseLog);

  OpenStoresOptions store_options;
  store_options.read_only = options.read_only;
  if (options.storage != nullptr) {
    auto fs = options.storage->Start(options.config);
    if (!fs.ok()) {
      std::fprintf(stderr, "kvfs: %s\n", fs.status().ToString().c_str());
      return 1;
    }
    store_options.fs = *fs;
  }
  auto stores = OpenStores(options.config, store_options);
  if (!stores.ok()) {
    std::fprintf(stderr, "kvfs: %s\n", stores.status().ToString().c_str());
    if (stores.status().IsCorruption()) {
      std::fprintf(stderr,
                   "kvfs: nothing was changed; `kvfs check` names the damage, and `kvfs check "
                   "--salvage` keeps every record that verifies (README: the durability "
                   "contract)\n");
    }
    return 1;
  }
  for (const Store& store : *stores) LogRecovery(store);
  if (options.storage != nullptr) options.storage->StoresOpened();
  FsOptions fso;
  fso.single_store = options.single_store;
  fso.no_open = options.no_open;
  fso.writeback_cache = options.writeback_cache;
  fso.xattrs = options.xattrs;
  fso.timeout_s = options.timeout_s;
  fso.public_control = options.public_control;
  fso.mountpoint = mountpoint;
  // The session the change feeds invalidate the kernel's caches through, while it serves.
  // Declared before `fs`, whose stores' feeds call it until Shutdown stops them.
  struct Notifier {
    std::atomic<fuse_session*> se{nullptr};
  };
  Notifier notifier;
  Filesystem fs(std::move(*stores), options.config, fso);

  std::string opts = "default_permissions,subtype=kvfs,fsname=" + EscapeOption(options.fsname);
  for (const std::string& o : options.fuse_options) opts += "," + o;
  fuse_args args = FUSE_ARGS_INIT(0, nullptr);
  fuse_opt_add_arg(&args, "kvfs");
  if (options.debug) fuse_opt_add_arg(&args, "-d");
  fuse_opt_add_arg(&args, "-o");
  fuse_opt_add_arg(&args, opts.c_str());
  fuse_session* se = fuse_session_new(&args, LowLevelOps(), sizeof(fuse_lowlevel_ops), &fs);
  fuse_opt_free_args(&args);
  if (se == nullptr) {
    std::fprintf(stderr, "kvfs: FUSE refused the mount options: %s\n", opts.c_str());
    return 1;
  }
  if (fuse_set_signal_handlers(se) != 0) {
    std::fprintf(stderr, "kvfs: cannot install signal handlers\n");
    fuse_session_destroy(se);
    return 1;
  }
  if (fuse_session_mount(se, mountpoint.c_str()) != 0) {
    std::fprintf(stderr, "kvfs: cannot mount at %s (see the message above)\n", mountpoint.c_str());
    fuse_remove_signal_handlers(se);
    fuse_session_destroy(se);
    return 1;
  }
  std::fprintf(stderr, "kvfs: mounted at %s\n", mountpoint.c_str());
  if (!attached) {
    std::fflush(stderr);
    WriteAll(ready_fd, "K", 1);
    ::close(ready_fd);
    Detach();
    spdlog::drop_all();
    if (!SetUpLogging(logging, /*attached=*/false)) {
      // Nowhere to say it: carry on without logs.
      spdlog::set_level(spdlog::level::off);
    }
  }
  for (const config::StoreConfig& s : options.config.stores)
    spdlog::info("serving {}", DescribeStore(s));
  notifier.se.store(se);
  Invalidation inval;
  inval.entry = [&notifier](uint64_t parent, std::string_view name) {
    fuse_session* live = notifier.se.load();
    if (live == nullptr) return;
    // -ENOENT: the kernel caches nothing of it; nothing to drop.
    const int r = fuse_lowlevel_notify_inval_entry(live, parent, name.data(), name.size());
    if (r != 0 && r != -ENOENT) spdlog::debug("inval_entry {} {}: {}", parent, name, r);
  };
  inval.inode = [&notifier](uint64_t ino, int64_t offset, int64_t length) {
    fuse_session* live = notifier.se.load();
    if (live == nullptr) return;
    const int r = fuse_lowlevel_notify_inval_inode(live, ino, offset, length);
    if (r != 0 && r != -ENOENT) spdlog::debug("inval_inode {}: {}", ino, r);
  };
  auto watched = fs.WatchStores(std::move(inval));
  if (!watched.ok()) {
    // Without the feed, other hosts' changes would stay invisible behind the kernel's caches.
    spdlog::error("cannot watch the stores for other hosts' changes: {}",
                  watched.status().ToString());
    notifier.se.store(nullptr);
    fuse_session_unmount(se);
    fuse_remove_signal_handlers(se);
    fuse_session_destroy(se);
    return 1;
  }
  if (*watched > 0) spdlog::info("watching {} stores for other hosts' changes", *watched);

  fuse_loop_config* loop = fuse_loop_cfg_create();
  // Idle workers are kept (libfuse's default): with a limit, every burst of concurrent fsyncs
  // created and destroyed threads. clone_fd: each worker reads its own /dev/fuse descriptor.
  fuse_loop_cfg_set_max_threads(loop, 64);  // blocked fsyncs must not starve other requests
  fuse_loop_cfg_set_clone_fd(loop, 1);
  const int ret = fuse_session_loop_mt(se, loop);
  fuse_loop_cfg_destroy(loop);
  notifier.se.store(nullptr);  // the feeds run on until Shutdown: no more notifications
  spdlog::info("leaving the loop ({}), unmounting {}", ret, mountpoint);
  fuse_session_unmount(se);
  fuse_remove_signal_handlers(se);
  fuse_session_destroy(se);  // calls destroy: every store synced and closed
  Status closed = fs.Shutdown();
  if (!closed.ok()) {
    spdlog::error("closing the stores: {}", closed.ToString());
    if (attached) std::fprintf(stderr, "kvfs: closing the stores: %s\n", closed.ToString().c_str());
    return 1;
  }
  spdlog::info("clean exit");
  spdlog::shutdown();
  return ret < 0 ? 1 : 0;
}

// The daemon's pid as /.kvfs/stats reports it, or 0.
pid_t DaemonPid(const std::string& mountpoint) {
  std::ifstream in(mountpoint + "/" + std::string(kControlDirName) + "/stats");
  if (!in) return 0;
  const nlohmann::json stats = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!stats.is_object() || !stats.contains("pid") || !stats["pid"].is_number_integer()) return 0;
  return static_cast<pid_t>(stats["pid"].get<int64_t>());
}

}  // namespace

std::string UnprivilegedMountProblem(uint32_t euid, const std::string& mountpoint,
                                     const std::vector<std::string>& fuse_options,
                                     const UnprivilegedMountPaths& paths) {
  if (euid == 0) return {};
  const std::string user = "uid " + std::to_string(euid);
  struct stat st;
  if (::stat(paths.dev_fuse.c_str(), &st) != 0) {
    return "there is no " + paths.dev_fuse +
           ": the fuse kernel module is not loaded (as root: modprobe fuse), or this container "
           "was started without the device (docker run --device /dev/fuse)";
  }
  if (::faccessat(AT_FDCWD, paths.dev_fuse.c_str(), R_OK | W_OK, AT_EACCESS) != 0) {
    return paths.dev_fuse + " (mode " + Octal(st.st_mode) + ", owner uid " +
           std::to_string(st.st_uid) + ") cannot be opened by " + user +
           ": a FUSE mount by a user who is not root needs read and write access to it. Mount "
           "as root, or let users mount FUSE file systems (as root: chmod 0666 " +
           paths.dev_fuse + ", the mode most distributions give it)";
  }
  const std::string fusermount = FindFusermount(paths.fusermount);
  if (fusermount.empty()) {
    return "fusermount3 is not installed (neither " + paths.fusermount +
           " nor in PATH): libfuse mounts through it for a user who is not root (as root: "
           "apt-get install fuse3), or mount as root";
  }
  if (::stat(fusermount.c_str(), &st) != 0 || st.st_uid != 0 || (st.st_mode & S_ISUID) == 0) {
    return fusermount + " is not setuid root (mode " + Octal(st.st_mode) + ", owner uid " +
           std::to_string(st.st_uid) +
           "): libfuse mounts through it for a user who is not root, so no such user can mount "
           "FUSE file systems here. Mount as root, or, as root: chown root " +
           fusermount + " && chmod u+s " + fusermount + " (as the fuse3 package installs it)";
  }
  if (::faccessat(AT_FDCWD, mountpoint.c_str(), W_OK, AT_EACCESS) != 0) {
    return "mountpoint " + mountpoint + " is not writable by " + user +
           ": fusermount3 mounts only on a directory the user may write (use one of your own)";
  }
  for (const std::string& o : fuse_options) {
    if (o != "allow_other" && o != "allow_root") continue;
    if (AllowsUserAllowOther(paths.fuse_conf)) break;
    std::string msg = "-o " + o;
    msg += " as " + user + " needs the line user_allow_other in " + paths.fuse_conf;
    msg +=
        ", which fusermount3 requires before it lets a user who is not root admit other users "
        "to a mount, and it is not there. As root, add it (echo user_allow_other >> ";
    msg += paths.fuse_conf;
    msg += "; it allows this for every user's FUSE mounts), or mount as root, or leave out -o ";
    msg += o;
    return msg;
  }
  return {};
}

int RunDaemon(const DaemonOptions& options) {
  std::string mountpoint = options.mountpoint;
  if (char* real = ::realpath(mountpoint.c_str(), nullptr); real != nullptr) {
    mountpoint = real;
    std::free(real);
  }
  if (const std::string bad = CheckMountpoint(mountpoint); !bad.empty()) {
    std::fprintf(stderr, "kvfs: %s\n", bad.c_str());
    return 1;
  }
  if (const std::string bad =
          UnprivilegedMountProblem(::geteuid(), mountpoint, options.fuse_options);
      !bad.empty()) {
    std::fprintf(stderr, "kvfs: cannot mount as a user who is not root: %s\n", bad.c_str());
    return 1;
  }
  for (const config::StoreConfig& s : options.config.stores) {
    std::fprintf(stderr, "kvfs: %s\n", DescribeStore(s).c_str());
  }
  if (options.foreground || options.debug) return Serve(options, mountpoint, -1);

  std::fflush(stdout);
  std::fflush(stderr);
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    std::fprintf(stderr, "kvfs: pipe: %s\n", ErrnoText(errno));
    return 1;
  }
  const pid_t child = ::fork();
  if (child < 0) {
    std::fprintf(stderr, "kvfs: fork: %s\n", ErrnoText(errno));
    return 1;
  }
  if (child == 0) {
    ::close(fds[0]);
    ::setsid();
    const int code = Serve(options, mountpoint, fds[1]);
    std::fflush(nullptr);
    ::_exit(code);
  }
  ::close(fds[1]);
  char c = 0;
  ssize_t n;
  do {
    n = ::read(fds[0], &c, 1);
  } while (n < 0 && errno == EINTR);
  ::close(fds[0]);
  if (n == 1 && c == 'K') return 0;
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) != 0) return WEXITSTATUS(status);
  std::fprintf(stderr, "kvfs: the daemon stopped before the mount was live\n");
  return 1;
}

int Unmount(const std::string& mountpoint_arg, bool lazy, double wait_s) {
  std::string mountpoint = mountpoint_arg;
  if (char* real = ::realpath(mountpoint.c_str(), nullptr); real != nullptr) {
    mountpoint = real;
    std::free(real);
  }
  // Hold the daemon by a pidfd before unmounting, so its pid cannot be reused under us.
  int pidfd = -1;
  if (const pid_t pid = DaemonPid(mountpoint); pid > 0) {
    pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  }
  int rc = 0;
  if (::geteuid() == 0) {
    if (::umount2(mountpoint.c_str(), lazy ? MNT_DETACH : 0) != 0) {
      const int err = errno;
      std::fprintf(stderr, "kvfs: cannot unmount %s: %s%s\n", mountpoint.c_str(), ErrnoText(err),
                   err == EBUSY ? " (files open or a working directory there; "
                                  "kvfs umount --lazy detaches it now, it ends when unused)"
                                : "");
      rc = 1;
    }
  } else {
    const pid_t child = ::fork();
    if (child == 0) {
      if (lazy) {
        ::execlp("fusermount3", "fusermount3", "-u", "-z", mountpoint.c_str(), nullptr);
      } else {
        ::execlp("fusermount3", "fusermount3", "-u", mountpoint.c_str(), nullptr);
      }
      std::fprintf(stderr, "kvfs: cannot run fusermount3: %s\n", ErrnoText(errno));
      ::_exit(127);
    }
    int status = 0;
    while (child > 0 && ::waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
    if (child < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) rc = 1;
  }
  if (rc == 0 && pidfd >= 0 && !lazy) {
    // The daemon syncs and closes its stores after the unmount: wait for it, so that the data
    // directory is free (and durable) when we return.
    pollfd p = {pidfd, POLLIN, 0};
    const int ms = static_cast<int>(wait_s * 1000);
    int r;
    do {
      r = ::poll(&p, 1, ms);
    } while (r < 0 && errno == EINTR);
    if (r == 0) {
      std::fprintf(stderr, "kvfs: unmounted %s, but its daemon is still running after %.0f s\n",
                   mountpoint.c_str(), wait_s);
      rc = 1;
    }
  }
  if (pidfd >= 0) ::close(pidfd);
  return rc;
}

}  // namespace kvfs::fusefs
