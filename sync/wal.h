// Wal: the segmented write-ahead log every kvfs engine writes through.
//
// A record is an opaque payload (an engine's encoded write batch) that gets the next log
// sequence number (LSN). Records are appended to the active segment, a file of zeros written
// and synced in advance (`first_segment_size` bytes for the segment an Open starts, twice the
// previous one's for each next, up to `segment_size`), so that the fdatasync of an append writes
// data blocks but never the inode or the journal. Once the active segment is half full, a
// background thread prepares the next one (create, fill, fsync, directory fsync). When a record
// does not fit, the active segment is fdatasync'd, the prepared one gets its header (fdatasync'd
// too) and becomes active. So every segment a record is acknowledged in is durable, name and all.
// The format is in WAL_FORMAT.md.
//
// Durability (what "acknowledged durable" means, per sync mode):
// - kAlways: Append returns OK only once the record is on stable storage (fdatasync).
// - kBatch:  Append returns once the record is written to the OS (it survives a process crash);
//            it becomes durable at the next sync: the append that brings the unsynced records
//            to `batch_records` syncs them before it returns, and a background thread syncs
//            once `batch_interval` has passed since the oldest unsynced one; or at an explicit
//            Sync.
// - kNone:   only an explicit Sync (or Close) makes records durable.
// SyncUpTo / Sync return OK only once every record up to the given LSN is on stable storage.
//
// Group commit, writes and syncs apart: concurrent appenders queue up, and the one at the head
// (the write leader) writes the whole queue in one write and hands each member its LSN.
// Concurrent syncers share syncs: while one fdatasync runs, the others wait, and when it ends
// one of them leads the next, covering everything written by then (so N concurrent fsyncs cost
// at most two). A sync in flight never holds up an append: fdatasync covers what was written
// before it began. In kAlways mode an append is a write, then a sync shared in that way. A
// leader that expects more syncers than are waiting (the last sync's callers, coming back for
// their next one) waits a fraction of a sync for them first (WalOptions::sync_gather_fraction).
//
// Failure: any sync error, or a write error other than ENOSPC, puts the log into a failed
// state for good: every later Append and Sync returns kFailed naming the original error, and
// records appended but not yet synced are treated as lost (never reported durable). Reopen to
// recover. ENOSPC while writing or creating a segment fails only the records involved; the log
// stays usable once space is freed.
//
// Checkpoint(lsn) deletes whole segments whose records all have LSN < lsn (the caller has made
// them durable elsewhere) and syncs the directory; no log file is ever rewritten in place.
//
// Thread safety: every method may be called from any thread at any time, except that nothing
// may be called after Close() begins.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "sync/file_system.h"
#include "sync/wal_reader.h"

namespace kvfs::sync {

enum class SyncMode { kAlways, kBatch, kNone };

const char* SyncModeName(SyncMode mode);
// "always", "batch" or "none".
Result<SyncMode> ParseSyncMode(std::string_view name);

// How a segment's space is reserved before records go into it.
enum class Preallocation {
  kNone,       // the file grows with each append: every fdatasync also writes the inode
  kFallocate,  // fallocate: blocks reserved but unwritten, so ext4 still journals the extent
               // conversion on each fdatasync (measured slower than kNone on ext4)
  kZeroFill,   // zeros written and synced in advance: an append's fdatasync writes data only
};

struct WalOptions {
  uint64_t segment_size = uint64_t{64} << 20;
  // The segment an Open starts gets this many bytes (at most segment_size), and each next one
  // twice as many as the last, up to segment_size. An Open then writes 4 MiB of zeros rather
  // than 64 (the zero-fill of a full segment was most of the time a store took to open), and a
  // busy log still reaches full segments after a few rotations.
  uint64_t first_segment_size = uint64_t{4} << 20;
  SyncMode sync_mode = SyncMode::kBatch;
  uint32_t batch_records = 1000;
  std::chrono::milliseconds batch_interval{10};
  // kZeroFill unless measuring what it buys. The next segment is prepared by a background
  // thread once the active one is half full, so rotation does not wait for the zeros.
  Preallocation preallocation = Preallocation::kZeroFill;
  // A leader stops adding records to its group past this many bytes (but always takes one).
  size_t max_group_bytes = size_t{4} << 20;
  // Once this many bytes have been written to the active segment since the last hint, the
  // write leader asks the OS to start writing them to disk (WritableFile::StartWriteback), so
  // the fdatasync that seals a full segment at rotation, or the next sync, waits only for what
  // came since the last hint rather than for everything written since the last sync.
  // 0: no hints.
  uint64_t writeback_bytes = uint64_t{1} << 20;
  // Sync gathering: a sync leader that expects more syncers than are waiting (the previous
  // sync's group comes back for its next sync, with those who arrived while it ran) waits for
  // them up to `sync_gather_fraction` of the previous sync's duration, at most
  // `max_sync_gather`, before it syncs. Without it two threads that sync in turn never share a
  // sync: each one's record is written just after the other's sync began. 0 (either): never.
  double sync_gather_fraction = 0.5;
  std::chrono::microseconds max_sync_gather{1000};
};

struct WalStats {
  uint64_t appends = 0;          // records acknowledged
  uint64_t bytes_appended = 0;   // payload bytes acknowledged
  uint64_t writes = 0;           // groups written to segment files (one write each, or more
                                 // when the group spans a segment rotation)
  uint64_t syncs = 0;            // fdatasync/fsync calls on segments
  uint64_t synced_requests = 0;  // appends and Sync calls answered by those syncs
  uint64_t max_group = 0;        // most requests answered by one sync
  uint64_t segments_created = 0;
  uint64_t segments_deleted = 0;
  uint64_t last_lsn = 0;     // highest LSN written
  uint64_t durable_lsn = 0;  // highest LSN known to be on stable storage
  bool failed = false;
};

// Where an appended record landed.
struct WalPosition {
  uint64_t lsn = 0;
  uint64_t segment = 0;         // segment file number (SegmentPath gives its path)
  uint64_t payload_offset = 0;  // where the payload starts in that file
};

class Wal {
 public:
  // Opens the log in `dir` (creating the directory durably if missing), replays every record
  // with LSN >= from_lsn to `replay` in LSN order (see ReadWal for what is an error), removes
  // what the reader reported as torn or stale, and starts a new segment for appends. New
  // records get LSNs >= max(next LSN of the log, from_lsn), so an engine whose state already
  // holds records past a torn tail never sees an LSN reused. `report` may be null.
  static Result<std::unique_ptr<Wal>> Open(FileSystem* fs, std::string dir, WalOptions options,
                                           uint64_t from_lsn, const WalRecordFn& replay,
                                           WalReadReport* report = nullptr);
  static Result<std::unique_ptr<Wal>> Open(FileSystem* fs, std::string dir, WalOptions options,
                                           uint64_t from_lsn, const WalReplayFn& replay,
                                           WalReadReport* report = nullptr);

  // Syncs (unless failed) and closes. Equivalent to Close() with its status ignored.
  ~Wal();
  Wal(const Wal&) = delete;
  Wal& operator=(const Wal&) = delete;

  // Appends one record and returns its LSN; durable on return in kAlways mode (see above).
  Result<uint64_t> Append(std::string_view payload);
  // The same, returning where the payload is in the log, for engines that read it back there.
  // The bytes stay readable at that position until a Checkpoint deletes the segment (an open
  // RandomAccessFile keeps them readable even then).
  Result<WalPosition> AppendWithPosition(std::string_view payload);
  // The path of segment file `number`.
  std::string SegmentPath(uint64_t number) const;
  // Makes every record with LSN <= lsn durable (fdatasync, or fsync if !data_only). Returns at
  // once if they already are. Concurrent callers share one sync.
  Status SyncUpTo(uint64_t lsn, bool data_only = true);
  // Makes every record appended before the call durable.
  Status Sync(bool data_only = true) { return SyncUpTo(last_lsn(), data_only); }
  // Deletes every non-active segment whose records all have LSN < lsn, then syncs the
  // directory. The active segment is never deleted.
  Status Checkpoint(uint64_t lsn);
  // Stops the batch timer, syncs what is unsynced (unless failed) and closes the files.
  // Returns the sync's status, or the failure that put the log into the failed state.
  Status Close();

  // Tests only: what a killed process leaves behind. Stops the background threads and closes
  // the files without syncing or cleaning up anything; the object is closed afterwards.
  void SimulateProcessCrashForTesting();
  // Tests only: whether a sync leader is waiting for syncers (see WalOptions::max_sync_gather).
  bool GatheringForTesting() const;

  uint64_t last_lsn() const { return last_lsn_.load(std::memory_order_acquire); }
  uint64_t durable_lsn() const { return durable_lsn_.load(std::memory_order_acquire); }
  // OK, or the error that failed the log.
  Status health() const;
  WalStats stats() const;
  // Appends queued or being written, plus callers waiting for or leading a sync.
  size_t pending_requests() const;
  const std::string& dir() const { return dir_; }

 private:
  struct Request;
  struct Segment {
    uint64_t number;
    uint64_t first_lsn;
  };

  Wal(FileSystem* fs, std::string dir, WalOptions options);

  // How big segment `number` is made: see WalOptions::first_segment_size.
  uint64_t SegmentCapacity(uint64_t number) const;
  Status PrepareSegment(uint64_t number);
  Status TakePreparedOrPrepare(uint64_t number);
  void RequestPrepare(uint64_t number);
  Status ActivateSegment(uint64_t number, uint64_t first_lsn, uint64_t prev_number,
                         uint64_t prev_end);
  void PreparerLoop();
  void StopBackgroundThreads();
  void LeadWrite(std::unique_lock<std::mutex>& lock, Request* leader);
  Status WriteGroup(const std::vector<Request*>& group, size_t* written);
  void ReleaseBigWriteBuffer();
  Status HintWriteback();
  void GatherSyncers(std::unique_lock<std::mutex>& lock);  // requires mu_ (and syncing_)
  Status Rotate(uint64_t next_lsn);
  void NoteDurable(uint64_t lsn);  // requires mu_
  void Fail(const Status& s);      // requires mu_
  Status FailedStatus() const;     // requires mu_
  void BatchTimerLoop();

  FileSystem* const fs_;
  const std::string dir_;
  const WalOptions options_;

  // Lock order: dir_mu_ before mu_. The write leader drops mu_ while it writes; it alone
  // touches active_, active_sealed_ and next_lsn_ then, which is safe because only the queue
  // head may lead. A sync leader uses active_ (through a pointer taken under mu_) while
  // syncing_; Rotate, which replaces it, first sets rotating_ and waits for !syncing_, and no
  // sync starts while rotating_. dir_mu_ serialises segment creation (write leader) with
  // deletion (Checkpoint), both of which fsync the directory.
  std::mutex dir_mu_;
  mutable std::mutex mu_;
  std::condition_variable timer_cv_;
  std::condition_variable sync_cv_;        // a sync or a rotation ended
  std::deque<Request*> queue_;             // guarded by mu_: appends waiting to be written
  bool syncing_ = false;                   // guarded by mu_: a sync leader is in its sync
  bool rotating_ = false;                  // guarded by mu_: the write leader is rotating
  uint64_t sync_waiters_ = 0;              // guarded by mu_: callers inside SyncUpTo
  uint64_t fsync_waiters_ = 0;             // guarded by mu_: those asking for a full sync
  uint64_t fsync_starts_ = 0;              // guarded by mu_: full syncs begun
  uint64_t fsync_done_start_ = 0;          // guarded by mu_: the last finished one's number
  std::vector<Segment> segments_;          // guarded by mu_, oldest first; back() is active
  std::unique_ptr<WritableFile> active_;   // used by the leader only
  bool active_sealed_ = false;             // used by the leader only
  uint64_t active_number_ = 0;             // used by the leader only
  uint64_t active_capacity_ = 0;           // used by the leader only: where records end
  uint64_t writeback_from_ = 0;            // used by the leader only: active_ bytes not hinted
  std::vector<Request*> group_;            // used by the leader only: kept, not reallocated
  std::string write_buf_;                  // used by the leader only: kept, not reallocated
  uint64_t open_number_ = 0;               // set by Open: the first segment it started
  bool next_prepare_requested_ = false;    // used by the leader only
  std::unique_ptr<Directory> dir_handle_;  // guarded by dir_mu_
  uint64_t next_lsn_ = 1;                  // used by the leader only
  uint64_t unsynced_records_ = 0;          // guarded by mu_
  std::chrono::steady_clock::time_point oldest_unsynced_;  // guarded by mu_
  Status failure_;                                         // guarded by mu_
  WalStats stats_;                                         // guarded by mu_
  bool closing_ = false;                                   // guarded by mu_
  bool closed_ = false;                                    // guarded by mu_
  // Whether failure_ is set, readable without mu_: health(), which the engines call before
  // every write, then takes no lock that the write leader and the appenders contend for.
  std::atomic<bool> failed_{false};
  // The segment preparer. prep_mu_ is a leaf lock: never held while taking another.
  std::mutex prep_mu_;
  std::condition_variable prep_cv_;
  uint64_t prep_target_ = 0;  // guarded by prep_mu_: segment number to prepare, 0 for none
  uint64_t prep_ready_ = 0;   // guarded by prep_mu_: segment number prepared and durable
  bool prep_busy_ = false;    // guarded by prep_mu_: the preparer is working on prep_target_
  bool prep_stop_ = false;    // guarded by prep_mu_
  std::thread preparer_;

  std::atomic<uint64_t> last_lsn_{0};
  std::atomic<uint64_t> durable_lsn_{0};
  std::thread batch_timer_;

  // Sync gathering (WalOptions::sync_gather_fraction): how many callers the next sync leader
  // expects, how long the last sync took, and whether a leader is waiting for them (new
  // syncers then wake it through gather_cv_).
  uint64_t expected_syncers_ = 0;                    // guarded by mu_
  std::chrono::steady_clock::duration last_sync_{};  // guarded by mu_
  bool gathering_ = false;                           // guarded by mu_
  std::condition_variable gather_cv_;
};

}  // namespace kvfs::sync
