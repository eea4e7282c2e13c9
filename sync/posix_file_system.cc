// PosixFileSystem: every file system call kvfs makes on data files.
//
// Conventions kept throughout:
// - Each call that can be interrupted is retried on EINTR; reads and writes loop until done.
// - Each descriptor is opened with O_CLOEXEC, so a fork+exec elsewhere in the daemon (a helper
//   program) never inherits, and so never keeps alive, a log or a lock.
// - Each error is Status::FromErrno(errno, "<op> <path>"): the message names what failed.
// - close(2) is called exactly once per descriptor and never retried: on Linux the descriptor
//   is released even when close reports EINTR, so a retry could close a descriptor that another
//   thread has just been given.
#include "sync/posix_file_system.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <string>
#include <utility>

namespace kvfs::sync {
namespace {

constexpr mode_t kFileMode = kPrivateFileMode;
constexpr mode_t kDirMode = kPrivateDirMode;

Status PosixError(std::string_view op, std::string_view path, int err) {
  std::string context(op);
  context += ' ';
  context += path;
  return Status::FromErrno(err, context);
}

// Calls `f` until it does not fail with EINTR; returns its last result (errno is left set).
template <typename F>
auto RetryOnEintr(F f) {
  decltype(f()) r;
  do {
    r = f();
  } while (r == -1 && errno == EINTR);
  return r;
}

// Owns a descriptor until it is released to a file object, so that every early error return
// of a factory closes what it opened.
class ScopedFd {
 public:
  explicit ScopedFd(int fd) : fd_(fd) {}
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  ~ScopedFd() {
    if (fd_ >= 0) ::close(fd_);  // only reached on an error path, which reports its own error
  }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

Result<int> OpenFd(const std::string& path, int flags, mode_t mode) {
  const int fd = RetryOnEintr([&] { return ::open(path.c_str(), flags | O_CLOEXEC, mode); });
  if (fd < 0) return PosixError("open", path, errno);
  return fd;
}

// Gives the open file or directory `fd` exactly the permission bits `mode` (file_system.h's
// privacy policy): open and mkdir already asked for them, so this changes something only where
// the umask took owner bits away, or the file existed with other bits.
Status RestrictFd(int fd, const std::string& path, mode_t mode) {
  struct stat st;
  if (RetryOnEintr([&] { return ::fstat(fd, &st); }) != 0) return PosixError("fstat", path, errno);
  if ((st.st_mode & 07777) == mode) return Status::OK();
  if (RetryOnEintr([&] { return ::fchmod(fd, mode); }) != 0) {
    return PosixError("fchmod", path, errno);
  }
  return Status::OK();
}

// The same for a directory just made by mkdir. It is opened with O_NOFOLLOW, so a name swapped
// for a symbolic link meanwhile (in a parent others may write, such as /tmp) is an error rather
// than a chmod of whatever the link points to.
Status RestrictNewDir(const std::string& path) {
  struct stat st;
  if (RetryOnEintr([&] { return ::lstat(path.c_str(), &st); }) != 0) {
    return PosixError("lstat", path, errno);
  }
  if (S_ISDIR(st.st_mode) && (st.st_mode & 07777) == kDirMode) return Status::OK();
  const int fd = RetryOnEintr(
      [&] { return ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC); });
  if (fd < 0) return PosixError("open", path, errno);
  Status s = RestrictFd(fd, path, kDirMode);
  ::close(fd);  // read-only descriptor: nothing its close could report matters
  return s;
}

// Closes `fd` once (see the top of the file for why EINTR is not retried and not an error).
Status CloseFd(int fd, const std::string& path) {
  if (fd < 0) return Status::OK();
  if (::close(fd) != 0 && errno != EINTR) return PosixError("close", path, errno);
  return Status::OK();
}

Result<uint64_t> FdSize(int fd, const std::string& path) {
  struct stat st;
  if (RetryOnEintr([&] { return ::fstat(fd, &st); }) != 0) return PosixError("fstat", path, errno);
  return static_cast<uint64_t>(st.st_size);
}

// Reads until `n` bytes or end of file; returns the count.
Result<size_t> PreadFully(int fd, const std::string& path, uint64_t offset, size_t n,
                          char* scratch) {
  size_t done = 0;
  while (done < n) {
    const ssize_t r = ::pread(fd, scratch + done, n - done, static_cast<off_t>(offset + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      return PosixError("pread", path, errno);
    }
    if (r == 0) break;  // end of file
    done += static_cast<size_t>(r);
  }
  return done;
}

// Writes all of `data` at `offset`. pwrite never uses the file position, so the descriptors it
// writes through must not be opened with O_APPEND (Linux would ignore the offset).
Status PwriteFully(int fd, const std::string& path, uint64_t offset, std::string_view data) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t r =
        ::pwrite(fd, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      return PosixError("pwrite", path, errno);
    }
    // A regular file never accepts zero bytes of a non-empty write; do not spin if one does.
    if (r == 0) return PosixError("pwrite", path, EIO);
    done += static_cast<size_t>(r);
  }
  return Status::OK();
}

// fdatasync or fsync; on macOS F_FULLFSYNC, because plain fsync there only hands the data to
// the drive, whose volatile cache can still lose it in a power cut.
Status SyncFd(int fd, const std::string& path, bool data_only) {
#ifdef __APPLE__
  (void)data_only;  // F_FULLFSYNC has no data-only variant
  if (RetryOnEintr([&] { return ::fcntl(fd, F_FULLFSYNC); }) == 0) return Status::OK();
  // Only a file system that does not implement F_FULLFSYNC (network, FAT) may fall back to
  // fsync. A real I/O error is returned as is: retrying it as fsync could report success for
  // data the kernel has already dropped.
  if (errno != ENOTSUP && errno != EINVAL && errno != ENOTTY) {
    return PosixError("fcntl(F_FULLFSYNC)", path, errno);
  }
  if (RetryOnEintr([&] { return ::fsync(fd); }) != 0) return PosixError("fsync", path, errno);
  return Status::OK();
#else
  if (data_only) {
    if (RetryOnEintr([&] { return ::fdatasync(fd); }) != 0) {
      return PosixError("fdatasync", path, errno);
    }
  } else if (RetryOnEintr([&] { return ::fsync(fd); }) != 0) {
    return PosixError("fsync", path, errno);
  }
  return Status::OK();
#endif
}

// Allocates blocks for [0, length) and extends the size to at least `length`, so appends into
// the range change neither the block map nor the size, and their fdatasync need not write the
// inode.
Status PreallocateFd(int fd, const std::string& path, uint64_t length) {
  if (length == 0) return Status::OK();
#if defined(__linux__)
  // Mode 0, not FALLOC_FL_KEEP_SIZE: keeping the size would make every append grow it again.
  if (RetryOnEintr([&] { return ::fallocate(fd, 0, 0, static_cast<off_t>(length)); }) == 0) {
    return Status::OK();
  }
  if (errno != EOPNOTSUPP) return PosixError("fallocate", path, errno);
#endif
#if defined(__APPLE__)
  // No posix_fallocate on macOS. Extending the size keeps appends from changing it; blocks are
  // not reserved, so ENOSPC can still come from a later write (and F_FULLFSYNC writes the
  // metadata regardless).
  KVFS_ASSIGN_OR_RETURN(uint64_t size, FdSize(fd, path));
  if (size >= length) return Status::OK();
  if (RetryOnEintr([&] { return ::ftruncate(fd, static_cast<off_t>(length)); }) != 0) {
    return PosixError("ftruncate", path, errno);
  }
  return Status::OK();
#else
  // File systems without fallocate (some network ones): glibc writes zeros into the holes.
  // posix_fallocate returns the error number rather than setting errno.
  int err;
  do {
    err = ::posix_fallocate(fd, 0, static_cast<off_t>(length));
  } while (err == EINTR);
  if (err != 0) return PosixError("posix_fallocate", path, err);
  return Status::OK();
#endif
}

// Queues the dirty pages of [offset, offset + n) for writing and returns without waiting for
// them. A file system that cannot (sync_file_range is Linux-only; some file systems reject it)
// just leaves the pages to the next sync: it was only a hint.
Status StartWritebackFd(int fd, const std::string& path, uint64_t offset, uint64_t n) {
#if defined(__linux__)
  if (RetryOnEintr([&] {
        return ::sync_file_range(fd, static_cast<off_t>(offset), static_cast<off_t>(n),
                                 SYNC_FILE_RANGE_WRITE);
      }) == 0) {
    return Status::OK();
  }
  if (errno == ENOSYS || errno == EINVAL || errno == ESPIPE || errno == EOPNOTSUPP) {
    return Status::OK();
  }
  return PosixError("sync_file_range", path, errno);
#else
  (void)fd, (void)path, (void)offset, (void)n;
  return Status::OK();
#endif
}

Status TruncateFd(int fd, const std::string& path, uint64_t size) {
  if (RetryOnEintr([&] { return ::ftruncate(fd, static_cast<off_t>(size)); }) != 0) {
    return PosixError("ftruncate", path, errno);
  }
  return Status::OK();
}

class PosixWritableFile final : public WritableFile {
 public:
  PosixWritableFile(std::string path, int fd, uint64_t offset)
      : WritableFile(std::move(path), offset), fd_(fd) {}
  ~PosixWritableFile() override {
    if (fd_ >= 0) ::close(fd_);  // the owner did not call Close(); nobody is left to tell
  }

 private:
  Status DoWrite(uint64_t offset, std::string_view data) override {
    return PwriteFully(fd_, path(), offset, data);
  }
  // A page per pwrite, so the page cache holds the file in page-sized folios (file_system.h).
  Status DoWriteZeros(uint64_t offset, uint64_t n) override {
    static constexpr char kPage[4096] = {};
    for (uint64_t done = 0; done < n;) {
      const uint64_t m = std::min<uint64_t>(sizeof(kPage), n - done);
      KVFS_RETURN_IF_ERROR(PwriteFully(fd_, path(), offset + done, std::string_view(kPage, m)));
      done += m;
    }
    return Status::OK();
  }
  Status DoSync(bool data_only) override { return SyncFd(fd_, path(), data_only); }
  Status DoPreallocate(uint64_t length) override { return PreallocateFd(fd_, path(), length); }
  Status DoStartWriteback(uint64_t offset, uint64_t n) override {
    return StartWritebackFd(fd_, path(), offset, n);
  }
  Status DoClose() override { return CloseFd(std::exchange(fd_, -1), path()); }

  int fd_;
};

class PosixRandomAccessFile final : public RandomAccessFile {
 public:
  PosixRandomAccessFile(std::string path, int fd) : RandomAccessFile(std::move(path)), fd_(fd) {}
  ~PosixRandomAccessFile() override { ::close(fd_); }

  // pread does not move a shared file position, so concurrent readers need no lock.
  Result<size_t> Read(uint64_t offset, size_t n, char* scratch) const override {
    return PreadFully(fd_, path(), offset, n, scratch);
  }
  Result<uint64_t> Size() const override { return FdSize(fd_, path()); }

 private:
  const int fd_;
};

class PosixRandomRWFile final : public RandomRWFile {
 public:
  PosixRandomRWFile(std::string path, int fd) : RandomRWFile(std::move(path)), fd_(fd) {}
  ~PosixRandomRWFile() override {
    if (fd_ >= 0) ::close(fd_);
  }

 private:
  Result<size_t> DoRead(uint64_t offset, size_t n, char* scratch) const override {
    return PreadFully(fd_, path(), offset, n, scratch);
  }
  Status DoWrite(uint64_t offset, std::string_view data) override {
    return PwriteFully(fd_, path(), offset, data);
  }
  Status DoTruncate(uint64_t size) override { return TruncateFd(fd_, path(), size); }
  Status DoSync(bool data_only) override { return SyncFd(fd_, path(), data_only); }
  Result<uint64_t> DoSize() const override { return FdSize(fd_, path()); }
  Status DoClose() override { return CloseFd(std::exchange(fd_, -1), path()); }

  int fd_;
};

// fsync of a directory makes the names in it durable. Some file systems answer it with EINVAL;
// that is returned like any other error rather than treated as success, because success would
// promise durability of creates and renames that nothing has written.
class PosixDirectory final : public Directory {
 public:
  PosixDirectory(std::string path, int fd) : Directory(std::move(path)), fd_(fd) {}
  ~PosixDirectory() override { ::close(fd_); }

 private:
  Status DoFsync() override { return SyncFd(fd_, path(), /*data_only=*/false); }

  const int fd_;
};

// flock(2) locks belong to the open file description, so two opens of the lock file in one
// process conflict just as two processes do; closing the descriptor releases the lock.
class PosixFileLock final : public FileLock {
 public:
  PosixFileLock(std::string path, int fd) : FileLock(std::move(path)), fd_(fd) {}
  ~PosixFileLock() override { ::close(fd_); }

 private:
  const int fd_;
};

// The pid a lock holder wrote into the lock file, or 0 if it cannot be read (the holder may be
// between its ftruncate and its write).
pid_t ReadLockHolderPid(int fd) {
  char buf[32];
  size_t n = 0;
  while (n < sizeof(buf)) {
    const ssize_t r = ::pread(fd, buf + n, sizeof(buf) - n, static_cast<off_t>(n));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    n += static_cast<size_t>(r);
  }
  pid_t pid = 0;
  const auto [end, ec] = std::from_chars(buf, buf + n, pid);
  (void)end;
  return ec == std::errc() && pid > 0 ? pid : 0;
}

Status LockBusy(const std::string& path, int fd) {
  const pid_t holder = ReadLockHolderPid(fd);
  if (holder == 0) return Status::Busy(path + " is locked by another process");
  if (holder == ::getpid()) {
    return Status::Busy(path + " is locked by this process (pid " + std::to_string(holder) + ")");
  }
  return Status::Busy(path + " is locked by another process (pid " + std::to_string(holder) + ")");
}

}  // namespace

Result<std::unique_ptr<WritableFile>> PosixFileSystem::DoNewWritableFile(const std::string& path,
                                                                         CreateMode mode) {
  int flags = O_WRONLY | O_CREAT;  // never O_APPEND: see PwriteFully
  switch (mode) {
    case CreateMode::kCreateNew:
      flags |= O_EXCL;
      break;
    case CreateMode::kTruncate:
      flags |= O_TRUNC;
      break;
    case CreateMode::kAppend:
      break;
    case CreateMode::kOverwrite:
      flags &= ~O_CREAT;
      break;
  }
  KVFS_ASSIGN_OR_RETURN(int raw_fd, OpenFd(path, flags, kFileMode));
  ScopedFd fd(raw_fd);
  if (flags & O_CREAT) KVFS_RETURN_IF_ERROR(RestrictFd(fd.get(), path, kFileMode));
  uint64_t offset = 0;
  if (mode == CreateMode::kAppend) {
    KVFS_ASSIGN_OR_RETURN(offset, FdSize(fd.get(), path));
  }
  std::unique_ptr<WritableFile> file =
      std::make_unique<PosixWritableFile>(path, fd.release(), offset);
  return file;
}

Result<std::unique_ptr<RandomAccessFile>> PosixFileSystem::NewRandomAccessFile(
    const std::string& path) {
  KVFS_ASSIGN_OR_RETURN(int fd, OpenFd(path, O_RDONLY, 0));
  std::unique_ptr<RandomAccessFile> file = std::make_unique<PosixRandomAccessFile>(path, fd);
  return file;
}

Result<std::unique_ptr<RandomRWFile>> PosixFileSystem::DoNewRandomRWFile(const std::string& path,
                                                                         bool create) {
  KVFS_ASSIGN_OR_RETURN(int raw_fd, OpenFd(path, O_RDWR | (create ? O_CREAT : 0), kFileMode));
  ScopedFd fd(raw_fd);
  if (create) KVFS_RETURN_IF_ERROR(RestrictFd(fd.get(), path, kFileMode));
  std::unique_ptr<RandomRWFile> file = std::make_unique<PosixRandomRWFile>(path, fd.release());
  return file;
}

Result<std::unique_ptr<Directory>> PosixFileSystem::DoOpenDirectory(const std::string& path) {
  KVFS_ASSIGN_OR_RETURN(int fd, OpenFd(path, O_RDONLY | O_DIRECTORY, 0));
  std::unique_ptr<Directory> dir = std::make_unique<PosixDirectory>(path, fd);
  return dir;
}

Status PosixFileSystem::CreateDir(const std::string& path) {
  if (RetryOnEintr([&] { return ::mkdir(path.c_str(), kDirMode); }) != 0) {
    return PosixError("mkdir", path, errno);
  }
  return RestrictNewDir(path);
}

Status PosixFileSystem::DoRemoveDir(const std::string& path) {
  if (RetryOnEintr([&] { return ::rmdir(path.c_str()); }) != 0) {
    return PosixError("rmdir", path, errno);
  }
  return Status::OK();
}

Result<std::vector<std::string>> PosixFileSystem::ListDir(const std::string& path) {
  // open + fdopendir rather than opendir, so the descriptor is O_CLOEXEC on every libc.
  KVFS_ASSIGN_OR_RETURN(int raw_fd, OpenFd(path, O_RDONLY | O_DIRECTORY, 0));
  ScopedFd fd(raw_fd);
  DIR* dir = ::fdopendir(fd.get());
  if (dir == nullptr) return PosixError("fdopendir", path, errno);
  fd.release();  // now owned by `dir`

  std::vector<std::string> names;
  Status status;
  for (;;) {
    errno = 0;  // readdir returns null both at the end and on error; only errno tells them apart
    // readdir is safe on a stream no other thread uses, as this one (glibc's own guarantee).
    const struct dirent* entry = ::readdir(dir);  // NOLINT(concurrency-mt-unsafe)
    if (entry == nullptr) {
      if (errno != 0) status = PosixError("readdir", path, errno);
      break;
    }
    const std::string_view name(entry->d_name);
    if (name == "." || name == "..") continue;
    names.emplace_back(name);
  }
  ::closedir(dir);  // read-only descriptor: nothing its close could report matters
  KVFS_RETURN_IF_ERROR(status);
  std::sort(names.begin(), names.end());  // std::string compares bytewise (char_traits)
  return names;
}

Status PosixFileSystem::DoRename(const std::string& from, const std::string& to) {
  if (RetryOnEintr([&] { return ::rename(from.c_str(), to.c_str()); }) != 0) {
    return PosixError("rename", from + " to " + to, errno);
  }
  return Status::OK();
}

Status PosixFileSystem::DoRemoveFile(const std::string& path) {
  if (RetryOnEintr([&] { return ::unlink(path.c_str()); }) != 0) {
    return PosixError("unlink", path, errno);
  }
  return Status::OK();
}

Result<uint64_t> PosixFileSystem::FileSize(const std::string& path) {
  struct stat st;
  if (RetryOnEintr([&] { return ::stat(path.c_str(), &st); }) != 0) {
    return PosixError("stat", path, errno);
  }
  return static_cast<uint64_t>(st.st_size);
}

Result<bool> PosixFileSystem::Exists(const std::string& path) {
  // lstat: a dangling symlink is still a name that O_EXCL and mkdir would collide with.
  struct stat st;
  if (RetryOnEintr([&] { return ::lstat(path.c_str(), &st); }) == 0) return true;
  if (errno == ENOENT || errno == ENOTDIR) return false;
  return PosixError("lstat", path, errno);
}

Result<bool> PosixFileSystem::IsDirectory(const std::string& path) {
  // A missing path is an error (kNotFound), not "false": the caller asked about a thing.
  struct stat st;
  if (RetryOnEintr([&] { return ::stat(path.c_str(), &st); }) != 0) {
    return PosixError("stat", path, errno);
  }
  return S_ISDIR(st.st_mode);
}

Result<FileStat> PosixFileSystem::Stat(const std::string& path) {
  struct stat st;
  if (RetryOnEintr([&] { return ::lstat(path.c_str(), &st); }) != 0) {
    return PosixError("lstat", path, errno);
  }
  FileStat fs;
  if (S_ISREG(st.st_mode)) {
    fs.type = FileStat::Type::kFile;
  } else if (S_ISDIR(st.st_mode)) {
    fs.type = FileStat::Type::kDirectory;
  } else if (S_ISLNK(st.st_mode)) {
    fs.type = FileStat::Type::kSymlink;
  }
  fs.mode = st.st_mode & 07777;
  fs.uid = st.st_uid;
  return fs;
}

Result<std::unique_ptr<FileLock>> PosixFileSystem::LockFile(const std::string& path) {
  KVFS_ASSIGN_OR_RETURN(int raw_fd, OpenFd(path, O_RDWR | O_CREAT, kFileMode));
  ScopedFd fd(raw_fd);
  KVFS_RETURN_IF_ERROR(RestrictFd(fd.get(), path, kFileMode));
  if (RetryOnEintr([&] { return ::flock(fd.get(), LOCK_EX | LOCK_NB); }) != 0) {
    if (errno == EWOULDBLOCK) return LockBusy(path, fd.get());
    return PosixError("flock", path, errno);
  }
  // Record our pid for the message a second locker gets. It is only a hint, so it is not
  // synced: after a crash the lock is gone anyway and a stale pid is simply overwritten.
  KVFS_RETURN_IF_ERROR(TruncateFd(fd.get(), path, 0));
  KVFS_RETURN_IF_ERROR(PwriteFully(fd.get(), path, 0, std::to_string(::getpid()) + "\n"));
  std::unique_ptr<FileLock> lock = std::make_unique<PosixFileLock>(path, fd.release());
  return lock;
}

Result<SpaceInfo> PosixFileSystem::GetSpaceInfo(const std::string& path) {
  struct statvfs st;
  if (RetryOnEintr([&] { return ::statvfs(path.c_str(), &st); }) != 0) {
    return PosixError("statvfs", path, errno);
  }
  SpaceInfo info;
  info.total_bytes = static_cast<uint64_t>(st.f_blocks) * st.f_frsize;
  info.free_bytes = static_cast<uint64_t>(st.f_bavail) * st.f_frsize;  // excludes root's reserve
  info.unused_bytes = static_cast<uint64_t>(st.f_bfree) * st.f_frsize;
  return info;
}

FileSystem* DefaultFileSystem() {
  // Never destroyed: threads still running during exit may use it after static destructors.
  static PosixFileSystem* const fs = new PosixFileSystem();
  return fs;
}

}  // namespace kvfs::sync
