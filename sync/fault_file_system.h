// FaultFileSystem: an in-memory FileSystem that simulates power cuts and disk faults.
//
// It models what survives a power cut on a POSIX file system, and nothing more:
// - per file, the image as of its last successful DataSync/Sync, plus the list of writes,
//   truncates and preallocations made since (the "pending" operations);
// - per directory, the set of names as of its last successful Fsync, plus the current set.
//   Creates, renames (including one that replaced an existing file) and unlinks since the last
//   Fsync of the directory that holds the name revert on a crash. A rename touches two
//   directories: each side reverts unless its own directory was synced.
//
// Crash() (or a scheduled crash point) turns the current state into what a machine would find
// after losing power, in one of the CrashModes below; files no name reaches any more are
// dropped. Open handles from before a crash fail with kIOError afterwards: the process that
// held them is gone.
//
// Faults:
// - FailSyncAfter(n, err): the n-th sync from now (file DataSync/Sync or directory Fsync, counted
//   together, n = 1 is the next one) fails with errno `err` (EIO, or ENOSPC or EDQUOT as a
//   thin-provisioned or quota-limited disk answers a sync). As on Linux, the dirty data it covered
//   is then treated as written back and lost: the pending writes stay readable but will never
//   become durable, and a later sync of the same file "succeeds" without persisting them. That
//   is exactly the retry-into-success trap the FailureLatch exists to stop.
// - SetSpaceLimit(bytes): total file bytes (the sum of the current sizes of all live files,
//   preallocation included) may not exceed `bytes`; a write or preallocation that would go past
//   it fails with ENOSPC and changes nothing. Removing files frees space.
// - CrashAtSync(n) / CrashAtOp(n): at the n-th sync (before it takes effect), or the n-th
//   mutating operation (before it takes effect), the disk "loses power": the post-crash image is
//   taken then, and every later operation fails with EIO until Crash() is called, which installs
//   that image. This lets a multi-threaded workload run into a crash point and records exactly
//   which acknowledgements came before it.
//
// Determinism: every random choice (which prefix of pending writes survives, where a write is
// torn) comes from a generator seeded in the constructor; seed() reports it so a failing test
// can print it and be replayed.
//
// Counting: CrashAtSync and FailSyncAfter count sync attempts (file syncs and directory fsyncs
// together); CrashAtOp counts every call that may change state, whether or not it then fails.
// FaultStats::syncs counts only syncs that succeeded.
//
// Paths: absolute ("/data/wal/000001.wal") or relative to "/" (same thing). "." components are
// skipped; ".." is refused. The root directory "/" always exists and is always durable (its
// entries are not: they need an Fsync of "/" like any other directory's).
//
// Thread safety: every method may be called from any thread; one internal mutex serialises
// them (the model is not meant to be fast).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "sync/file_system.h"

namespace kvfs::sync {

enum class CrashMode {
  kDropUnsynced,   // every pending operation is lost
  kKeepPrefix,     // per file, a random prefix of the pending operations survives
  kTearLastWrite,  // as kKeepPrefix, then a random part (a prefix) of the next write survives
};

const char* CrashModeName(CrashMode mode);

struct FaultStats {
  uint64_t syncs = 0;         // successful file syncs + directory fsyncs
  uint64_t mutating_ops = 0;  // writes, creates, renames, removes, truncates, preallocations
  uint64_t bytes_written = 0;
  uint64_t crashes = 0;
};

class FaultFileSystem : public FileSystem {
 public:
  explicit FaultFileSystem(uint64_t seed);
  ~FaultFileSystem() override;

  uint64_t seed() const;

  // --- Power cuts ---------------------------------------------------------------------------
  // Installs the post-crash image: the one taken at a scheduled crash point if one fired,
  // otherwise one taken now. After it the file system works again (a reboot).
  void Crash(CrashMode mode);
  // As Crash, but the disk stays "off" for every call that would change it (they fail with
  // EIO) while reads work: the surviving image can be copied out (CopyTreeDurably) while the
  // threads of the process that "lost power" still run. For good: there is no unfreezing.
  void CrashAndFreeze(CrashMode mode);
  // Schedules a power cut just before the n-th sync / mutating operation from now (n >= 1).
  // The image is taken with `mode`. Clears any earlier schedule.
  void CrashAtSync(uint64_t n, CrashMode mode);
  void CrashAtOp(uint64_t n, CrashMode mode);
  // True once a scheduled crash point has fired (the disk is "off" until Crash()).
  bool crashed() const;

  // --- Disk faults --------------------------------------------------------------------------
  // The n-th sync from now fails with EIO (n >= 1); 0 cancels.
  void FailSyncAfter(uint64_t n, int err = EIO);
  // Called with the file's path at the start of every file sync (fsync and fdatasync, not a
  // directory's), in the syncing thread, before the model is touched: a test can hold a sync
  // there to see what waits behind it. Empty (the default) for none.
  void SetBeforeSyncHook(std::function<void(const std::string& path)> hook);
  // Total bytes the files may hold; UINT64_MAX (the default) means no limit.
  void SetSpaceLimit(uint64_t bytes);

  FaultStats stats() const;

  // --- Modes and owners (test-only) ---------------------------------------------------------
  // As chmod and chown would: make a name loose, or another user's, so that a test can see a
  // store refused on the simulated disk too (private_tree.h). Every create gives the private
  // modes of file_system.h; a name nobody chowned is owned by the process's effective uid.
  // Not part of the crash model: a crash keeps them as they were set.
  Status SetMode(const std::string& path, uint32_t mode);
  Status SetOwner(const std::string& path, uint32_t uid);

  // --- FileSystem ---------------------------------------------------------------------------
  Result<std::unique_ptr<RandomAccessFile>> NewRandomAccessFile(const std::string& path) override;
  Status CreateDir(const std::string& path) override;
  Result<std::vector<std::string>> ListDir(const std::string& path) override;
  Result<uint64_t> FileSize(const std::string& path) override;
  Result<bool> Exists(const std::string& path) override;
  Result<bool> IsDirectory(const std::string& path) override;
  // Files and directories only (the model has no symbolic links).
  Result<FileStat> Stat(const std::string& path) override;
  Result<std::unique_ptr<FileLock>> LockFile(const std::string& path) override;
  Result<SpaceInfo> GetSpaceInfo(const std::string& path) override;

  struct State;  // the model; defined in the .cc

 protected:
  Result<std::unique_ptr<WritableFile>> DoNewWritableFile(const std::string& path,
                                                          CreateMode mode) override;
  Result<std::unique_ptr<RandomRWFile>> DoNewRandomRWFile(const std::string& path,
                                                          bool create) override;
  Result<std::unique_ptr<Directory>> DoOpenDirectory(const std::string& path) override;
  Status DoRemoveDir(const std::string& path) override;
  Status DoRename(const std::string& from, const std::string& to) override;
  Status DoRemoveFile(const std::string& path) override;

 private:
  std::shared_ptr<State> state_;
};

}  // namespace kvfs::sync
