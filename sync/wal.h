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
//            Sync. After DeferBatchSyncs(), an append that finds a full batch leaves that sync
//            to its caller, who calls SyncBatchIfDue() once it holds no lock of its own and
//            before it acknowledges the record: what is acknowledged keeps the same bound, and
//            no caller's lock is held across the sync (the file layer: fusefs/file_store.h).
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
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "sync/file_system.h"
#include "sync/mutex.h"
#include "sync/segment_preparer.h"
#include "sync/wal_active_segment.h"
#include "sync/wal_format.h"
#include "sync/wal_reader.h"
#include "sync/wal_segments.h"

namespace kvfs::sync {

enum class SyncMode { kAlways, kBatch, kNone };

const char* SyncModeName(SyncMode mode);
// "always", "batch" or "none".
Result<SyncMode> ParseSyncMode(std::string_view name);

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
  // kZeroFill unless measuring what it buys (the enum is in wal_segments.h). The next segment
  // is prepared by a background thread once the active one is half full, so rotation does not
  // wait for the zeros.
  Preallocation preallocation = Preallocation::kZeroFill;
  // A leader stops adding records to its group past this many bytes (but always takes one), so
  // one write is at most this, or one bigger record. At most wal::kMaxWriteBytes.
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
  uint64_t last_lsn = 0;       // highest LSN written
  uint64_t durable_lsn = 0;    // highest LSN known to be on stable storage
  uint64_t sync_micros = 0;    // time spent in those syncs (a sync's whole duration, once)
  uint64_t gather_micros = 0;  // time sync leaders waited for syncers first (sync gathering)
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
  static Result<std::unique_ptr<Wal>> Open(FileSystem* fs, const std::string& dir,
                                           WalOptions options, uint64_t from_lsn,
                                           const WalRecordFn& replay,
                                           WalReadReport* report = nullptr);
  static Result<std::unique_ptr<Wal>> Open(FileSystem* fs, const std::string& dir,
                                           WalOptions options, uint64_t from_lsn,
                                           const WalReplayFn& replay,
                                           WalReadReport* report = nullptr);

  // Syncs (unless failed) and closes. Equivalent to Close() with its status ignored.
  ~Wal();
  Wal(const Wal&) = delete;
  Wal& operator=(const Wal&) = delete;

  // Appends one record and returns its LSN; durable on return in kAlways mode (see above).
  Result<uint64_t> Append(std::string_view payload) ABSL_LOCKS_EXCLUDED(mu_);
  // The same, returning where the payload is in the log, for engines that read it back there.
  // The bytes stay readable at that position until a Checkpoint deletes the segment (an open
  // RandomAccessFile keeps them readable even then).
  Result<WalPosition> AppendWithPosition(std::string_view payload) ABSL_LOCKS_EXCLUDED(mu_);
  // The path of segment file `number`.
  std::string SegmentPath(uint64_t number) const;
  // Makes every record with LSN <= lsn durable (fdatasync, or fsync if !data_only). Returns at
  // once if they already are. Concurrent callers share one sync.
  Status SyncUpTo(uint64_t lsn, bool data_only = true) ABSL_LOCKS_EXCLUDED(mu_);
  // Makes every record appended before the call durable.
  Status Sync(bool data_only = true) ABSL_LOCKS_EXCLUDED(mu_) {
    return SyncUpTo(last_lsn(), data_only);
  }
  // kBatch only, from then on: an append that fills a batch returns without syncing it, and
  // its caller calls SyncBatchIfDue() after it, holding no lock, before acknowledging anything
  // (see "Durability" above). Until every caller does, unsynced records may pile up to the
  // batch timer's window. Not undone; any thread, any time.
  void DeferBatchSyncs() { defer_batch_syncs_.store(true, std::memory_order_relaxed); }
  // kBatch: syncs every record written so far if at least `batch_records` of them are unsynced
  // (what the appender that filled the batch would have done inline); OK at once otherwise, and
  // in the other modes. A record its caller appended before the call is then either durable or
  // one of fewer than `batch_records` unsynced ones.
  Status SyncBatchIfDue() ABSL_LOCKS_EXCLUDED(mu_);
  // Deletes every non-active segment whose records all have LSN < lsn, then syncs the
  // directory. The active segment is never deleted.
  Status Checkpoint(uint64_t lsn) ABSL_LOCKS_EXCLUDED(mu_);
  // Stops the batch timer, syncs what is unsynced (unless failed) and closes the files.
  // Returns the sync's status, or the failure that put the log into the failed state.
  Status Close() ABSL_LOCKS_EXCLUDED(mu_);

  // Tests only: what a killed process leaves behind. Stops the background threads and closes
  // the files without syncing or cleaning up anything; the object is closed afterwards.
  void SimulateProcessCrashForTesting() ABSL_LOCKS_EXCLUDED(mu_);
  // Tests only: whether a sync leader is waiting for syncers (see WalOptions::max_sync_gather).
  bool GatheringForTesting() const ABSL_LOCKS_EXCLUDED(mu_);

  uint64_t last_lsn() const { return last_lsn_.load(std::memory_order_acquire); }
  uint64_t durable_lsn() const { return durable_lsn_.load(std::memory_order_acquire); }
  // OK, or the error that failed the log.
  Status health() const ABSL_LOCKS_EXCLUDED(mu_);
  WalStats stats() const ABSL_LOCKS_EXCLUDED(mu_);
  // Appends queued or being written, plus callers waiting for or leading a sync.
  size_t pending_requests() const ABSL_LOCKS_EXCLUDED(mu_);
  const std::string& dir() const { return dir_; }

 private:
  struct Request;

  Wal(FileSystem* fs, std::string dir, WalOptions options, std::unique_ptr<Directory> dir_handle,
      std::vector<WalSegments::Segment> live, uint64_t first_number);

  // The write leader's side.
  Status ActivateSegment(uint64_t number, uint64_t first_lsn, uint64_t prev_number,
                         uint64_t prev_end) ABSL_LOCKS_EXCLUDED(mu_);
  void LeadWrite(Request* leader) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Status WriteGroup(const std::vector<Request*>& group, size_t* written) ABSL_LOCKS_EXCLUDED(mu_);
  void ReleaseBigWriteBuffer();
  Status Rotate(uint64_t next_lsn) ABSL_LOCKS_EXCLUDED(mu_);
  // The sync group's side.
  void GatherSyncers() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);  // and syncing_
  void NoteDurable(uint64_t lsn) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void BatchTimerLoop() ABSL_LOCKS_EXCLUDED(mu_);
  // Fails the log for good; the first failure makes a failure note due.
  void Fail(const Status& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WriteFailureNoteIfDue() ABSL_LOCKS_EXCLUDED(mu_);
  Result<WalPosition> DoAppend(std::string_view payload) ABSL_LOCKS_EXCLUDED(mu_);
  Status DoSyncUpTo(uint64_t lsn, bool data_only) ABSL_LOCKS_EXCLUDED(mu_);
  Status FailedStatus() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Returns a segment prepared and never used (0 if none), for Close to remove.
  uint64_t StopBackgroundThreads() ABSL_LOCKS_EXCLUDED(mu_);

  const std::string dir_;
  const WalOptions options_;

  // The directory and its live segments, and the background preparation of the next segment:
  // each has its own locks (leaves with respect to mu_, which is never held while taking them
  // and never taken while they are held). preparer_ is set once Open has started the first
  // segment.
  WalSegments segments_;
  std::unique_ptr<SegmentPreparer> preparer_;

  // mu_ guards the write queue, the sync group, the batch accounting, the failure and the
  // close together, because their decisions read each other's state and must see it change
  // at once: a write leader fails the log for syncers and a sync leader for appenders; a
  // rotation stops syncs (rotating_) and ends a gatherer's wait; a sync's end changes the batch
  // accounting that appenders and the batch timer act on; a close ends them all. Splitting it
  // would put a second lock on every kAlways append (a write, then a sync) or duplicate state.
  mutable Mutex mu_;
  CondVar sync_cv_{&mu_};    // a sync or a rotation ended
  CondVar gather_cv_{&mu_};  // a gathering sync leader may stop waiting (see GatherSyncers)
  CondVar timer_cv_{&mu_};   // a batch window opened, or closing_

  // The write queue: appends waiting to be written, oldest first; the head leads the write.
  std::deque<Request*> queue_ ABSL_GUARDED_BY(mu_);

  // The sync group. A sync leader uses the active file (its pointer taken under mu_) while
  // syncing_; Rotate, which replaces it, first sets rotating_ and waits for !syncing_, and no
  // sync starts while rotating_.
  bool syncing_ ABSL_GUARDED_BY(mu_) = false;           // a sync leader is in its sync
  bool rotating_ ABSL_GUARDED_BY(mu_) = false;          // the write leader is rotating
  uint64_t sync_waiters_ ABSL_GUARDED_BY(mu_) = 0;      // callers inside SyncUpTo
  uint64_t fsync_waiters_ ABSL_GUARDED_BY(mu_) = 0;     // those asking for a full sync
  uint64_t fsync_starts_ ABSL_GUARDED_BY(mu_) = 0;      // full syncs begun
  uint64_t fsync_done_start_ ABSL_GUARDED_BY(mu_) = 0;  // the last finished one's number
  // Sync gathering (WalOptions::sync_gather_fraction): how many callers the next sync leader
  // expects, how long the last sync took, and whether a leader is waiting for them (new
  // syncers then wake it through gather_cv_).
  uint64_t expected_syncers_ ABSL_GUARDED_BY(mu_) = 0;
  std::chrono::steady_clock::duration last_sync_ ABSL_GUARDED_BY(mu_){};
  bool gathering_ ABSL_GUARDED_BY(mu_) = false;

  // Batch accounting: records written but not known durable, and since when.
  uint64_t unsynced_records_ ABSL_GUARDED_BY(mu_) = 0;
  std::chrono::steady_clock::time_point oldest_unsynced_ ABSL_GUARDED_BY(mu_);

  Status failure_ ABSL_GUARDED_BY(mu_);
  // Whether failure_ is set, readable without mu_: health(), which the engines call before
  // every write, then takes no lock that the write leader and the appenders contend for.
  std::atomic<bool> failed_{false};
  // The failure note (wal_format.h) the first failure calls for, written by whoever saw the
  // failure once it has dropped mu_ (WriteFailureNoteIfDue).
  bool note_due_ ABSL_GUARDED_BY(mu_) = false;
  wal::FailureNote note_ ABSL_GUARDED_BY(mu_);
  // The active segment's number, readable without the write leader (a failure note names it).
  std::atomic<uint64_t> active_number_{0};
  WalStats stats_ ABSL_GUARDED_BY(mu_);  // but segments_created/deleted: segments_ counts them
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  // Written under mu_, read anywhere.
  std::atomic<uint64_t> last_lsn_{0};
  std::atomic<uint64_t> durable_lsn_{0};

  // Owned by the write leader, so no lock: Open's thread before the first append, then the
  // queue's head while it leads (it drops mu_ to write; only the head may lead, and the next
  // head waits until it is done), then Close's thread (nothing may be called once Close has
  // begun). The exception is the sync leader's use of the active file, above.
  ActiveSegment active_;
  uint64_t next_lsn_ = 1;
  std::vector<Request*> group_;  // kept, not reallocated
  std::string write_buf_;        // kept, not reallocated
  bool next_prepare_requested_ = false;

  std::thread batch_timer_;
  std::atomic<bool> defer_batch_syncs_{false};  // DeferBatchSyncs()
};

}  // namespace kvfs::sync
