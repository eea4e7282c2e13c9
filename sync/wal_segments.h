// WalSegments: the log's directory. It knows which segment files hold live records (oldest
// first, the active one last), how big each new segment is made, how one is created (space
// reserved, durable, name and all) and given its header, and how a checkpoint deletes old
// ones. It holds the directory handle, whose fsyncs it serialises. The format is in
// WAL_FORMAT.md.
//
// Thread safety: every method may be called from any thread. The WAL calls Prepare from its
// preparer thread or its write leader, Activate and Add from the write leader,
// DeleteCheckpointed from Checkpoint's callers, RemoveUnused from Close.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "sync/file_system.h"
#include "sync/mutex.h"
#include "sync/status.h"
#include "sync/wal_format.h"

namespace kvfs::sync {

// How a segment's space is reserved before records go into it.
enum class Preallocation {
  kNone,       // the file grows with each append: every fdatasync also writes the inode
  kFallocate,  // fallocate: blocks reserved but unwritten, so ext4 still journals the extent
               // conversion on each fdatasync (measured slower than kNone on ext4)
  kZeroFill,   // zeros written and synced in advance: an append's fdatasync writes data only
};

class WalSegments {
 public:
  struct Segment {
    uint64_t number;
    uint64_t first_lsn;
  };
  struct Counts {
    uint64_t created = 0;  // segments added since construction
    uint64_t deleted = 0;  // segments deleted by checkpoints
  };

  // `dir_handle` is `dir` open; `live` the segments recovery found, oldest first. Segment
  // `first_number` is the first this process creates: it gets `first_size` bytes (at least a
  // header and an empty record, at most `max_size`) and each next one twice the previous
  // one's, up to `max_size`.
  WalSegments(FileSystem* fs, std::string dir, std::unique_ptr<Directory> dir_handle,
              std::vector<Segment> live, uint64_t first_number, uint64_t first_size,
              uint64_t max_size, Preallocation preallocation);
  WalSegments(const WalSegments&) = delete;
  WalSegments& operator=(const WalSegments&) = delete;

  // The path of segment file `number`.
  std::string Path(uint64_t number) const;
  // How many bytes segment `number` is made: where its records end.
  uint64_t Capacity(uint64_t number) const;

  // Creates segment file `number` with its space reserved, fsyncs it and the directory. It has
  // no header yet: a reader takes a newest segment without a valid header for one that was
  // never used, and ignores it. On failure the file is removed (giving the space back after
  // ENOSPC); a failed directory fsync fails the directory handle for good. Must not be called
  // twice for one number.
  Status Prepare(uint64_t number) ABSL_LOCKS_EXCLUDED(dir_mu_, list_mu_);
  // Writes the header into prepared segment `number` and fdatasyncs it; returns the file open
  // for appending after the header. The header is durable before any record in the segment can
  // be acknowledged, and before a checkpoint can delete the segments it follows. Add it to the
  // live segments once it is the active one.
  Result<std::unique_ptr<WritableFile>> Activate(uint64_t number, uint64_t first_lsn,
                                                 uint64_t prev_number, uint64_t prev_end);
  // Appends segment `number` to the live segments: it is the active one from now on.
  void Add(uint64_t number, uint64_t first_lsn) ABSL_LOCKS_EXCLUDED(list_mu_);

  // Deletes, oldest first, every live segment but the active (last) one whose records all have
  // LSN < lsn, then fsyncs the directory. They are no longer live even if this fails. On a
  // failed directory fsync sets *dir_sync_failed (the caller fails the log: the directory
  // handle is failed for good) and returns its error; on a failed removal returns that.
  Status DeleteCheckpointed(uint64_t lsn, bool* dir_sync_failed)
      ABSL_LOCKS_EXCLUDED(dir_mu_, list_mu_);
  // Removes segment `number`, prepared and never activated, and fsyncs the directory; best
  // effort (left behind it is harmless: the next open deletes it).
  void RemoveUnused(uint64_t number) ABSL_LOCKS_EXCLUDED(dir_mu_);

  // The failure note (wal_format.h): written once the log fails on a sync error, durably (temp
  // file, sync, rename, directory fsync); removed by the next open once the segment it names
  // is sealed by a newer one. Either may fail: the log is failed already, and a note naming a
  // segment that is not the newest is ignored by readers.
  Status WriteFailureNote(const wal::FailureNote& note) ABSL_LOCKS_EXCLUDED(dir_mu_);
  Status RemoveFailureNote() ABSL_LOCKS_EXCLUDED(dir_mu_);

  Counts counts() const ABSL_LOCKS_EXCLUDED(list_mu_);

 private:
  FileSystem* const fs_;
  const std::string dir_;
  const uint64_t first_number_;
  const uint64_t first_size_;
  const uint64_t max_size_;
  const Preallocation preallocation_;

  // Two locks: dir_mu_ is held across directory changes and their fsyncs (milliseconds), so
  // segment creation and a checkpoint's deletion never run together, and the handle is used
  // by one thread at a time (file_system.h). list_mu_ guards the list alone and is never held
  // across I/O, so the write leader, which adds a segment at each rotation, never waits for a
  // checkpoint's directory fsync. A checkpoint takes list_mu_ inside dir_mu_.
  Mutex dir_mu_ ABSL_ACQUIRED_BEFORE(list_mu_);
  mutable Mutex list_mu_;
  std::unique_ptr<Directory> dir_handle_ ABSL_GUARDED_BY(dir_mu_);
  std::vector<Segment> live_ ABSL_GUARDED_BY(list_mu_);  // oldest first; back() is active
  Counts counts_ ABSL_GUARDED_BY(list_mu_);
};

}  // namespace kvfs::sync
