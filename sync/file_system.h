// FileSystem: the one seam between kvfs and the operating system's files.
//
// Only sync/ calls write, pwrite, fsync, fdatasync, rename, unlink and fallocate on data files.
// Engines and the daemon do all file I/O through a FileSystem, so the fault-injecting
// implementation (fault_file_system.h) can simulate a power cut under any of them.
//
// Durability, in system-call terms (the same in every implementation):
// - A write (Append, Write) is visible to every reader at once and survives a process crash,
//   but not a power cut, until DataSync or Sync of that file returns OK.
// - DataSync is fdatasync(2): the file's bytes and the metadata needed to read them back
//   (its size). Sync is fsync(2): that plus all other metadata (times). On macOS both use
//   F_FULLFSYNC, falling back to fsync where it is not supported.
// - Creating, renaming or removing a name is durable only once the directory that holds the
//   name has been Fsync'd (Directory::Fsync). durable.h wraps the usual sequences.
//
// Sync failure policy (enforced here, in the non-virtual fronts of the file classes and of
// FileSystem, so that no implementation can get it wrong): once DataSync, Sync or Fsync has
// failed, whatever the errno (ENOSPC and EDQUOT included), the kernel may already have dropped
// the dirty pages it did not write and marked them clean, so a retried sync could "succeed"
// without writing them. The object therefore stays failed: every later write or sync returns
// the original error (code kFailed), and a sync's ENOSPC or EDQUOT is reported as kIOError
// (errno kept), never as the retryable kNoSpace. The FileSystem remembers the path too: a file
// or directory opened again on it in this process starts failed, so reopening cannot turn the
// lost pages into a successful sync (until the name is removed or renamed over, which makes it
// another file). Write errors other than ENOSPC/EDQUOT fail the object the same way. ENOSPC
// from a write leaves the object usable: nothing was acknowledged, and the caller may retry
// once space is freed.
//
// Privacy policy (also the same in every implementation): every directory CreateDir makes has
// exactly the permission bits kPrivateDirMode (0700), and every file a call may create
// (NewWritableFile in kCreateNew, kTruncate or kAppend mode, NewRandomRWFile with `create`,
// LockFile) has exactly kPrivateFileMode (0600) when the call returns, whether it created the
// file or found it, whatever the process umask. Every file of a store holds bytes of the files
// kept in it, so each must be as private as the most private of them (README, "Security"). The
// mode is given at creation, so a name is never looser for a moment, and set again where the
// umask took owner bits away. Stat reads a name's mode and owner; private_tree.h checks a tree
// that already exists.
//
// Thread safety: a FileSystem may be used from many threads at once. A WritableFile,
// RandomRWFile or Directory object must be used by one thread at a time (its owner serialises),
// with one exception: a WritableFile's DataSync or Sync may run while another thread Appends
// (the write-ahead log keeps writing while it syncs); the sync covers what was appended before
// it began, and may or may not cover the concurrent append. A RandomAccessFile may be read from
// many threads at once.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "sync/mutex.h"
#include "sync/status.h"

namespace kvfs::sync {

// Shared by the file classes: remembers the first sync or write failure and refuses further
// mutations after it.
// Thread-safe (a sync and an append may meet here, see above).
class FailureLatch {
 public:
  bool failed() const { return failed_.load(std::memory_order_acquire); }
  // Returns OK, or the latched failure as a kFailed Status naming the path.
  Status Check(const std::string& path) const;
  // A write's result: latches it unless it is OK or kNoSpace (retryable). Returns `s`.
  Status RecordWrite(Status s);
  // A sync's result: latches any error, and returns a kNoSpace one as kIOError (errno kept),
  // since no sync error may be retried.
  Status RecordSync(Status s);

 private:
  void Latch(const Status& s);

  std::atomic<bool> failed_{false};
  mutable Mutex mu_;
  Status failure_ ABSL_GUARDED_BY(mu_);
};

// The paths whose sync failed in this process, kept by each FileSystem (see the policy above).
// Thread-safe.
class SyncFailures {
 public:
  // Handles belong to the generation they were opened in; a reboot (Clear) starts a new one,
  // and a failure of a handle from an older one (a dead process's) is not remembered.
  uint64_t generation() const;
  void Record(const std::string& path, const Status& s, uint64_t generation);
  // The failure recorded for `path`, or OK.
  Status Find(const std::string& path) const;
  void Forget(const std::string& path);  // the name now names another file
  void Move(const std::string& from, const std::string& to);
  void Clear();  // a reboot: the machine's page cache is gone (the fault-injecting disk)

 private:
  mutable Mutex mu_;
  std::unordered_map<std::string, Status> failed_ ABSL_GUARDED_BY(mu_);
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
};

// A file written sequentially from a logical end offset: logs, data files, tables.
class WritableFile {
 public:
  WritableFile(const WritableFile&) = delete;
  WritableFile& operator=(const WritableFile&) = delete;
  virtual ~WritableFile() = default;

  const std::string& path() const { return path_; }
  // The logical end: where the next Append lands. Not the size on disk when preallocated.
  uint64_t Size() const { return offset_; }
  bool failed() const { return latch_.failed(); }

  // Writes `data` at Size() and advances it. On error Size() is unchanged (bytes past it may
  // hold garbage that the next Append overwrites).
  Status Append(std::string_view data);
  // Appends `n` zero bytes, as Append would (used to write log segments full of zeros before
  // use). The real disk gets them a page per write: ext4 caches a file written in large writes
  // in large folios, and every later small write into such a folio costs in proportion to the
  // folio (docs/decisions.md, "Measured small choices").
  Status AppendZeros(uint64_t n);
  // fdatasync: everything appended so far, and the file size, reach stable storage.
  Status DataSync();
  // fsync: as DataSync plus every other inode field.
  Status Sync();
  // Reserves disk blocks for [0, length) and sets the file size to at least `length` (bytes
  // past Size() read as zeros), so later appends into that range neither allocate blocks nor
  // change the size: their fdatasync need not write the inode. Size() is unchanged.
  Status Preallocate(uint64_t length);
  // Asks the OS to start writing [offset, offset + n) to disk now, without waiting, so that a
  // later DataSync waits only for what was written since. A hint with no durability meaning:
  // nothing may count on it having happened. An error is latched as a failed write would be.
  Status StartWriteback(uint64_t offset, uint64_t n);
  // Releases the descriptor. Does not sync. Calling it twice is harmless.
  Status Close();

 protected:
  WritableFile(std::string path, uint64_t initial_offset)
      : path_(std::move(path)), offset_(initial_offset) {}

  virtual Status DoWrite(uint64_t offset, std::string_view data) = 0;
  // Default: DoWrite of zeros, up to 1 MiB at a time.
  virtual Status DoWriteZeros(uint64_t offset, uint64_t n);
  virtual Status DoSync(bool data_only) = 0;
  virtual Status DoPreallocate(uint64_t length) = 0;
  // Default: nothing (a file system that has no writeback to start, such as an in-memory one).
  virtual Status DoStartWriteback(uint64_t /*offset*/, uint64_t /*n*/) { return Status::OK(); }
  virtual Status DoClose() = 0;

 private:
  friend class FileSystem;
  Status AfterSync(Status s);

  std::string path_;
  uint64_t offset_;
  FailureLatch latch_;
  SyncFailures* sync_failures_ = nullptr;  // set by the FileSystem that opened it
  uint64_t sync_generation_ = 0;
  bool closed_ = false;
};

// A read-only file, read at any offset from any number of threads at once.
class RandomAccessFile {
 public:
  RandomAccessFile(const RandomAccessFile&) = delete;
  RandomAccessFile& operator=(const RandomAccessFile&) = delete;
  virtual ~RandomAccessFile() = default;

  const std::string& path() const { return path_; }
  // Reads up to `n` bytes at `offset` into `scratch`; returns the number read, short only at
  // end of file.
  virtual Result<size_t> Read(uint64_t offset, size_t n, char* scratch) const = 0;
  virtual Result<uint64_t> Size() const = 0;

 protected:
  explicit RandomAccessFile(std::string path) : path_(std::move(path)) {}

 private:
  std::string path_;
};

// A file read and written in place (pages of a B-tree). Writes in place are not atomic: the
// owner must make them safe with its own log.
class RandomRWFile {
 public:
  RandomRWFile(const RandomRWFile&) = delete;
  RandomRWFile& operator=(const RandomRWFile&) = delete;
  virtual ~RandomRWFile() = default;

  const std::string& path() const { return path_; }
  bool failed() const { return latch_.failed(); }

  Result<size_t> Read(uint64_t offset, size_t n, char* scratch) const {
    return DoRead(offset, n, scratch);
  }
  Status Write(uint64_t offset, std::string_view data);
  Status Truncate(uint64_t size);
  Status DataSync();
  Status Sync();
  Result<uint64_t> Size() const { return DoSize(); }
  Status Close();

 protected:
  explicit RandomRWFile(std::string path) : path_(std::move(path)) {}

  virtual Result<size_t> DoRead(uint64_t offset, size_t n, char* scratch) const = 0;
  virtual Status DoWrite(uint64_t offset, std::string_view data) = 0;
  virtual Status DoTruncate(uint64_t size) = 0;
  virtual Status DoSync(bool data_only) = 0;
  virtual Result<uint64_t> DoSize() const = 0;
  virtual Status DoClose() = 0;

 private:
  friend class FileSystem;
  Status AfterSync(Status s);

  std::string path_;
  FailureLatch latch_;
  SyncFailures* sync_failures_ = nullptr;  // set by the FileSystem that opened it
  uint64_t sync_generation_ = 0;
  bool closed_ = false;
};

// An open directory, whose Fsync makes the creates, renames and unlinks of names in it durable.
class Directory {
 public:
  Directory(const Directory&) = delete;
  Directory& operator=(const Directory&) = delete;
  virtual ~Directory() = default;

  const std::string& path() const { return path_; }
  bool failed() const { return latch_.failed(); }
  Status Fsync();

 protected:
  explicit Directory(std::string path) : path_(std::move(path)) {}
  virtual Status DoFsync() = 0;

 private:
  friend class FileSystem;

  std::string path_;
  FailureLatch latch_;
  SyncFailures* sync_failures_ = nullptr;  // set by the FileSystem that opened it
  uint64_t sync_generation_ = 0;
};

// An exclusive lock on a file (created if missing), held until the object is destroyed. Held
// across processes and within one process: a second LockFile of the same path fails with kBusy.
class FileLock {
 public:
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  virtual ~FileLock() = default;
  const std::string& path() const { return path_; }

 protected:
  explicit FileLock(std::string path) : path_(std::move(path)) {}

 private:
  std::string path_;
};

// The permission bits of every directory and file a FileSystem creates (see the policy above).
inline constexpr uint32_t kPrivateDirMode = 0700;
inline constexpr uint32_t kPrivateFileMode = 0600;

// What lstat(2) says of a name: what it is, its permission bits and its owner.
struct FileStat {
  enum class Type { kFile, kDirectory, kSymlink, kOther };
  Type type = Type::kOther;
  uint32_t mode = 0;  // the permission bits: st_mode & 07777
  uint32_t uid = 0;   // the owner

  bool operator==(const FileStat&) const = default;
};

enum class CreateMode {
  kCreateNew,  // O_CREAT|O_EXCL: fails with kAlreadyExists if the file exists
  kTruncate,   // O_CREAT|O_TRUNC: starts empty whether or not it existed
  kAppend,     // O_CREAT: keeps the contents; Size() starts at the current size
  kOverwrite,  // the file must exist; keeps its size and contents; Size() starts at 0, so
               // appends overwrite from the start (a log segment zero-filled in advance)
};

struct SpaceInfo {
  uint64_t total_bytes = 0;
  uint64_t free_bytes = 0;    // available to an unprivileged writer (statvfs f_bavail)
  uint64_t unused_bytes = 0;  // free on the file system, root's reserve included (f_bfree)
};

// The operations an implementation provides are the Do* methods; the public ones are fronts
// that apply the sync failure policy (the paths whose sync failed, above) around them.
class FileSystem {
 public:
  FileSystem() = default;
  FileSystem(const FileSystem&) = delete;
  FileSystem& operator=(const FileSystem&) = delete;
  virtual ~FileSystem() = default;

  // The file opened starts failed if a sync of `path` failed earlier in this process.
  Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path, CreateMode mode);
  virtual Result<std::unique_ptr<RandomAccessFile>> NewRandomAccessFile(
      const std::string& path) = 0;
  // Opens a file for reading and writing in place; creates it (empty) when `create` is true.
  // Starts failed as NewWritableFile does.
  Result<std::unique_ptr<RandomRWFile>> NewRandomRWFile(const std::string& path, bool create);
  // Starts failed if an Fsync of `path` failed earlier in this process.
  Result<std::unique_ptr<Directory>> OpenDirectory(const std::string& path);

  // mkdir(2), mode kPrivateDirMode. kAlreadyExists if the name exists. Durable once the parent
  // is Fsync'd.
  virtual Status CreateDir(const std::string& path) = 0;
  // rmdir(2) of an empty directory.
  Status RemoveDir(const std::string& path);
  // The names in a directory, without "." and "..", sorted bytewise.
  virtual Result<std::vector<std::string>> ListDir(const std::string& path) = 0;
  // rename(2): atomically replaces `to` if it exists. Durable once both parents are Fsync'd.
  Status Rename(const std::string& from, const std::string& to);
  // unlink(2). Open handles keep working. Durable once the parent is Fsync'd.
  Status RemoveFile(const std::string& path);
  // The size of a regular file (what it is for a directory is unspecified: do not ask).
  virtual Result<uint64_t> FileSize(const std::string& path) = 0;
  // True if the name exists (file or directory); false also when a parent is not a directory.
  virtual Result<bool> Exists(const std::string& path) = 0;
  // kNotFound if the name does not exist.
  virtual Result<bool> IsDirectory(const std::string& path) = 0;
  // lstat(2): a symbolic link is described, not followed. kNotFound if the name does not exist.
  virtual Result<FileStat> Stat(const std::string& path) = 0;
  virtual Result<std::unique_ptr<FileLock>> LockFile(const std::string& path) = 0;
  virtual Result<SpaceInfo> GetSpaceInfo(const std::string& path) = 0;

 protected:
  virtual Result<std::unique_ptr<WritableFile>> DoNewWritableFile(const std::string& path,
                                                                  CreateMode mode) = 0;
  virtual Result<std::unique_ptr<RandomRWFile>> DoNewRandomRWFile(const std::string& path,
                                                                  bool create) = 0;
  virtual Result<std::unique_ptr<Directory>> DoOpenDirectory(const std::string& path) = 0;
  virtual Status DoRemoveDir(const std::string& path) = 0;
  virtual Status DoRename(const std::string& from, const std::string& to) = 0;
  virtual Status DoRemoveFile(const std::string& path) = 0;

  SyncFailures& sync_failures() { return sync_failures_; }

 private:
  SyncFailures sync_failures_;
};

// The POSIX file system of this machine. Never null; lives for the whole process.
FileSystem* DefaultFileSystem();

}  // namespace kvfs::sync
