// PosixFileSystem: FileSystem on the real disk, the only code in kvfs that makes file system
// calls on data files.
//
// Every call retries on EINTR and loops over short reads and writes; every descriptor is opened
// with O_CLOEXEC; every error becomes a Status naming the operation, the path and the errno.
// Appends use pwrite at the file's logical end, so a preallocated file keeps its size.
// Locks use flock(2) on the lock file, so they conflict across processes and between two opens
// in one process; the holder's pid is written into the file to make the "locked" message useful.
// Files and directories are created with the private modes (file_system.h), fchmod'ed to them
// after an open that may create, and a directory after mkdir, when the umask took bits away.
#pragma once

#include "sync/file_system.h"

namespace kvfs::sync {

class PosixFileSystem : public FileSystem {
 public:
  PosixFileSystem() = default;

  Result<std::unique_ptr<RandomAccessFile>> NewRandomAccessFile(const std::string& path) override;
  Status CreateDir(const std::string& path) override;
  Result<std::vector<std::string>> ListDir(const std::string& path) override;
  Result<uint64_t> FileSize(const std::string& path) override;
  Result<bool> Exists(const std::string& path) override;
  Result<bool> IsDirectory(const std::string& path) override;
  Result<FileStat> Stat(const std::string& path) override;
  Result<std::unique_ptr<FileLock>> LockFile(const std::string& path) override;
  Result<SpaceInfo> GetSpaceInfo(const std::string& path) override;

 protected:
  Result<std::unique_ptr<WritableFile>> DoNewWritableFile(const std::string& path,
                                                          CreateMode mode) override;
  Result<std::unique_ptr<RandomRWFile>> DoNewRandomRWFile(const std::string& path,
                                                          bool create) override;
  Result<std::unique_ptr<Directory>> DoOpenDirectory(const std::string& path) override;
  Status DoRemoveDir(const std::string& path) override;
  Status DoRename(const std::string& from, const std::string& to) override;
  Status DoRemoveFile(const std::string& path) override;
};

}  // namespace kvfs::sync
