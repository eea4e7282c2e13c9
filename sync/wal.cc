#include "sync/wal.h"

#include <algorithm>
#include <cassert>
#include <utility>

#include "sync/durable.h"
#include "sync/wal_format.h"

namespace kvfs::sync {

const char* SyncModeName(SyncMode mode) {
  switch (mode) {
    case SyncMode::kAlways:
      return "always";
    case SyncMode::kBatch:
      return "batch";
    case SyncMode::kNone:
      return "none";
  }
  return "?";
}

Result<SyncMode> ParseSyncMode(std::string_view name) {
  if (name == "always") return SyncMode::kAlways;
  if (name == "batch") return SyncMode::kBatch;
  if (name == "none") return SyncMode::kNone;
  return Status::InvalidArgument("sync mode must be always, batch or none, not '" +
                                 std::string(name) + "'");
}

namespace {
uint64_t Micros(std::chrono::steady_clock::duration d) {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(d).count());
}
}  // namespace

// One appender waiting in the write queue. Its fields are written under the Wal's mu_, but
// for the position, which the write leader fills in without it while this appender waits.
struct Wal::Request {
  explicit Request(Mutex* mu) : cv(mu) {}
  std::string_view payload;
  bool done = false;
  Status status;
  WalPosition position;  // where the record went
  CondVar cv;
};

Wal::Wal(FileSystem* fs, std::string dir, WalOptions options, std::unique_ptr<Directory> dir_handle,
         std::vector<WalSegments::Segment> live, uint64_t first_number)
    : dir_(dir),
      options_(options),
      segments_(fs, std::move(dir), std::move(dir_handle), std::move(live), first_number,
                options.first_segment_size, options.segment_size, options.preallocation) {}

Result<std::unique_ptr<Wal>> Wal::Open(FileSystem* fs, const std::string& dir, WalOptions options,
                                       uint64_t from_lsn, const WalReplayFn& replay,
                                       WalReadReport* report) {
  return Open(fs, dir, options, from_lsn,
              WalRecordFn([&](const WalRecord& r) { return replay(r.lsn, r.payload); }), report);
}

Result<std::unique_ptr<Wal>> Wal::Open(FileSystem* fs, const std::string& dir, WalOptions options,
                                       uint64_t from_lsn, const WalRecordFn& replay,
                                       WalReadReport* report) {
  if (options.segment_size < wal::kSegmentHeaderSize + wal::kRecordHeaderSize) {
    return Status::InvalidArgument("WAL segment size " + std::to_string(options.segment_size) +
                                   " is too small");
  }
  if (options.batch_records == 0) options.batch_records = 1;
  // The reader relies on this bound to tell a torn write from damage (wal::kMaxWriteBytes).
  options.max_group_bytes = std::min<size_t>(options.max_group_bytes, wal::kMaxWriteBytes);
  WalReadReport local_report;
  if (report == nullptr) report = &local_report;

  KVFS_RETURN_IF_ERROR(CreateDirDurably(fs, dir));
  KVFS_RETURN_IF_ERROR(ReadWal(fs, dir, from_lsn, replay, report));

  KVFS_ASSIGN_OR_RETURN(std::unique_ptr<Directory> dir_handle, fs->OpenDirectory(dir));

  // Records recovered from the newest segment may sit only in the page cache (the process,
  // not the machine, crashed before syncing them). Sync it so everything replayed is durable.
  uint64_t max_number = 0;
  if (!report->segments.empty()) {
    const WalSegmentInfo& newest = report->segments.back();
    max_number = newest.number;
    const std::string path = JoinPath(dir, wal::SegmentFileName(newest.number));
    KVFS_ASSIGN_OR_RETURN(auto file, fs->NewRandomRWFile(path, /*create=*/false));
    KVFS_RETURN_IF_ERROR(file->DataSync());
    KVFS_RETURN_IF_ERROR(file->Close());
  }

  // Remove what no reader needs: a half-created newest segment, and segments an interrupted
  // checkpoint meant to delete. Their records were never acknowledged or are all checkpointed.
  std::vector<uint64_t> doomed = report->stale_segments;
  if (report->torn_segment) doomed.push_back(*report->torn_segment);
  // The next segment must follow the newest live one without a gap (a gap means "checkpoint
  // interrupted" to the reader). The doomed files are gone for good once the directory is
  // synced below, so their numbers can be used again; with no live segment, go past them.
  for (uint64_t n : doomed) {
    if (report->segments.empty()) max_number = std::max(max_number, n);
    KVFS_RETURN_IF_ERROR(fs->RemoveFile(JoinPath(dir, wal::SegmentFileName(n))));
  }
  if (!doomed.empty()) KVFS_RETURN_IF_ERROR(dir_handle->Fsync());

  std::vector<WalSegments::Segment> live;
  for (const WalSegmentInfo& s : report->segments) {
    live.push_back(WalSegments::Segment{s.number, s.first_lsn});
  }
  const uint64_t first_lsn = std::max<uint64_t>({report->next_lsn, from_lsn, 1});
  const uint64_t prev_number = report->segments.empty() ? 0 : report->segments.back().number;
  const uint64_t prev_end = report->segments.empty() ? 0 : report->segments.back().valid_end;
  const uint64_t number = max_number + 1;
  std::unique_ptr<Wal> wal(
      new Wal(fs, dir, options, std::move(dir_handle), std::move(live), number));
  KVFS_RETURN_IF_ERROR(wal->segments_.Prepare(number));
  KVFS_RETURN_IF_ERROR(wal->ActivateSegment(number, first_lsn, prev_number, prev_end));
  // The failed segment is sealed now (the new header records where its acknowledged records
  // end), so the note has done its work. Left behind (this removal failing), it names a
  // segment that is no longer the newest, which readers ignore.
  if (report->failure_note) wal->segments_.RemoveFailureNote().PermitUnchecked();
  wal->next_lsn_ = first_lsn;
  wal->last_lsn_.store(first_lsn - 1);
  wal->durable_lsn_.store(first_lsn - 1);
  {
    MutexLock lock(&wal->mu_);
    wal->stats_.last_lsn = wal->stats_.durable_lsn = first_lsn - 1;
  }

  if (options.sync_mode == SyncMode::kBatch) {
    wal->batch_timer_ = std::thread([w = wal.get()] { w->BatchTimerLoop(); });
  }
  wal->preparer_ = std::make_unique<SegmentPreparer>(
      [w = wal.get()](uint64_t n) { return w->segments_.Prepare(n); });
  return wal;
}

Wal::~Wal() { Close().PermitUnchecked(); }

// Makes prepared segment `number` the active one, its header durable (WalSegments::Activate).
Status Wal::ActivateSegment(uint64_t number, uint64_t first_lsn, uint64_t prev_number,
                            uint64_t prev_end) {
  KVFS_ASSIGN_OR_RETURN(auto file, segments_.Activate(number, first_lsn, prev_number, prev_end));
  KVFS_RETURN_IF_ERROR(active_.Replace(std::move(file), number, segments_.Capacity(number)));
  active_number_.store(number, std::memory_order_release);
  next_prepare_requested_ = false;
  segments_.Add(number, first_lsn);
  return Status::OK();
}

// Called by the write leader when the next record does not fit: seals the active segment (its
// end is now recorded in the next header, so nothing more may go into it), makes it durable,
// then activates the next segment and asks for the one after it. No sync runs meanwhile: the
// active file changes hands.
Status Wal::Rotate(uint64_t next_lsn) {
  {
    MutexLock lock(&mu_);
    rotating_ = true;
    // A gathering sync leader may be waiting for appenders queued behind this rotation.
    gather_cv_.SignalAll();
    while (syncing_) sync_cv_.Wait();
  }
  Status s = [&]() -> Status {
    KVFS_RETURN_IF_ERROR(active_.Seal());
    {
      // Everything written so far is in the sealed segment, durable now.
      MutexLock lock(&mu_);
      ++stats_.syncs;
      last_lsn_.store(std::max(last_lsn(), next_lsn - 1), std::memory_order_release);
      NoteDurable(next_lsn - 1);
    }
    const uint64_t number = active_.number() + 1;
    KVFS_RETURN_IF_ERROR(preparer_->TakePreparedOrPrepare(number));
    return ActivateSegment(number, next_lsn, number - 1, active_.size());
  }();
  MutexLock lock(&mu_);
  rotating_ = false;
  sync_cv_.SignalAll();
  return s;
}

// Records that every record up to `lsn` is on stable storage.
void Wal::NoteDurable(uint64_t lsn) {
  if (lsn > durable_lsn()) {
    durable_lsn_.store(lsn, std::memory_order_release);
    stats_.durable_lsn = lsn;
  }
  const uint64_t last = last_lsn();
  unsynced_records_ = last > durable_lsn() ? last - durable_lsn() : 0;
  // Those left were written while the sync ran: their batch window starts about now.
  if (unsynced_records_ > 0) oldest_unsynced_ = std::chrono::steady_clock::now();
}

void Wal::Fail(const Status& s) {
  if (failure_.ok()) {
    failure_ = s;
    // Records past the durable LSN were never acknowledged durable, and after a failed sync
    // some of them may be missing from the disk while later ones are there (the kernel drops
    // the pages it failed to write): the note tells recovery to end the log before them.
    note_due_ = true;
    note_ = wal::FailureNote{active_number_.load(std::memory_order_acquire), durable_lsn() + 1,
                             s.ToString()};
  }
  failed_.store(true, std::memory_order_release);
  stats_.failed = true;
  gather_cv_.SignalAll();  // a gathering sync leader stops waiting for syncers
}

void Wal::WriteFailureNoteIfDue() {
  if (!failed_.load(std::memory_order_acquire)) return;
  wal::FailureNote note;
  {
    MutexLock lock(&mu_);
    if (!note_due_) return;
    note_due_ = false;
    note = note_;
  }
  // Best effort: if the directory cannot take it either, recovery finds the damage the note
  // would have explained and refuses to open rather than guess.
  segments_.WriteFailureNote(note).PermitUnchecked();
}

Status Wal::FailedStatus() const {
  return Status(StatusCode::kFailed,
                "write-ahead log " + dir_ + " failed earlier: " + failure_.ToString(),
                failure_.sys_errno() != 0 ? failure_.sys_errno() : EIO);
}

Result<uint64_t> Wal::Append(std::string_view payload) {
  KVFS_ASSIGN_OR_RETURN(WalPosition p, AppendWithPosition(payload));
  return p.lsn;
}

std::string Wal::SegmentPath(uint64_t number) const { return segments_.Path(number); }

Result<WalPosition> Wal::AppendWithPosition(std::string_view payload) {
  Result<WalPosition> r = DoAppend(payload);
  if (!r.ok()) WriteFailureNoteIfDue();
  return r;
}

Result<WalPosition> Wal::DoAppend(std::string_view payload) {
  if (payload.size() > wal::kMaxRecordPayload) {
    return Status::InvalidArgument("WAL record of " + std::to_string(payload.size()) +
                                   " bytes is over the limit");
  }
  Request r(&mu_);
  r.payload = payload;
  bool sync = options_.sync_mode == SyncMode::kAlways;
  {
    MutexLock lock(&mu_);
    if (closed_) return Status::InvalidArgument("write-ahead log " + dir_ + " is closed");
    if (!failure_.ok()) return FailedStatus();
    queue_.push_back(&r);
    while (!r.done && queue_.front() != &r) r.cv.Wait();
    if (!r.done) LeadWrite(&r);
    if (!r.status.ok()) return r.status;
    // In kBatch mode a full batch is synced by the appenders that filled it (sharing one sync),
    // so no more than about batch_records records are ever unsynced; or, deferred, by their
    // callers' SyncBatchIfDue once they hold no lock.
    if (options_.sync_mode == SyncMode::kBatch && unsynced_records_ >= options_.batch_records &&
        !defer_batch_syncs_.load(std::memory_order_relaxed)) {
      sync = true;
    }
  }
  if (sync) KVFS_RETURN_IF_ERROR(SyncUpTo(r.position.lsn));
  return r.position;
}

Status Wal::SyncBatchIfDue() {
  if (options_.sync_mode != SyncMode::kBatch) return Status::OK();
  uint64_t target = 0;
  {
    MutexLock lock(&mu_);
    // As an append that finds no full batch: nothing owed, failed log or not.
    if (unsynced_records_ < options_.batch_records) return Status::OK();
    target = last_lsn();
  }
  return SyncUpTo(target);
}

// The write leader (the queue's head, holding mu_) takes a group of appends from the front of
// the queue, drops the lock to write them in one write, then reports to every member and wakes
// the next leader. A sync in flight does not hold it up: fdatasync covers what was written
// before it began, and records written meanwhile wait for the next one.
void Wal::LeadWrite(Request* leader) {
  assert(queue_.front() == leader);
  std::vector<Request*>& group = group_;
  group.clear();
  size_t bytes = 0;
  for (Request* q : queue_) {
    bytes += wal::RecordSize(q->payload.size());
    if (!group.empty() && bytes > options_.max_group_bytes) break;
    group.push_back(q);
  }
  Status write_status;
  size_t written = 0;
  uint64_t first_lsn = 0;
  if (!failure_.ok()) {
    write_status = FailedStatus();
  } else {
    mu_.Unlock();
    first_lsn = next_lsn_;
    write_status = WriteGroup(group, &written);
    mu_.Lock();
  }
  // A write error, or a sync's (a rotation seals the segment and syncs the next one's header;
  // no sync error is kNoSpace, file_system.h): the log fails either way.
  if (!write_status.ok() && !write_status.IsNoSpace()) Fail(write_status);
  const bool failed = !failure_.ok();
  if (written > 0) {
    last_lsn_.store(first_lsn + written - 1, std::memory_order_release);
    stats_.last_lsn = first_lsn + written - 1;
    ++stats_.writes;
    const uint64_t before = unsynced_records_;
    if (before == 0) oldest_unsynced_ = std::chrono::steady_clock::now();
    const uint64_t last = last_lsn();
    unsynced_records_ = last > durable_lsn() ? last - durable_lsn() : 0;
    // The batch timer syncs once the window of the oldest unsynced record has passed: it needs
    // waking when a window opens, not at every write.
    if (options_.sync_mode == SyncMode::kBatch && before == 0) timer_cv_.Signal();
  }
  for (size_t i = 0; i < group.size(); ++i) {
    Request* q = group[i];
    if (failed) {
      q->status = FailedStatus();  // written or not, a failed log acknowledges nothing
    } else if (i < written) {
      q->position.lsn = first_lsn + i;
      q->status = Status::OK();
      ++stats_.appends;
      stats_.bytes_appended += q->payload.size();
    } else {
      q->status = write_status;  // ENOSPC: this record was not written
    }
  }
  for (size_t i = 0; i < group.size(); ++i) queue_.pop_front();
  for (Request* q : group) {
    q->done = true;
    if (q != leader) q->cv.Signal();
  }
  if (!queue_.empty()) queue_.front()->cv.Signal();
}

// Writes the group's records, rotating segments as needed; *written counts those written, in
// order. Runs in the write leader, without mu_.
Status Wal::WriteGroup(const std::vector<Request*>& group, size_t* written) {
  std::string& buf = write_buf_;
  buf.clear();
  size_t buffered = 0;  // appends in buf
  auto flush = [&]() -> Status {
    if (buf.empty()) return Status::OK();
    Status s = active_.Append(buf);
    if (s.ok()) {
      *written += buffered;
      next_lsn_ += buffered;
    }
    buf.clear();
    buffered = 0;
    return s;
  };
  Status status;
  for (Request* q : group) {
    if (!active_.Fits(buf.size(), wal::RecordSize(q->payload.size()))) {
      status = flush();
      if (status.ok()) status = Rotate(next_lsn_);
      if (!status.ok()) break;
    }
    q->position.segment = active_.number();
    q->position.payload_offset = active_.size() + buf.size() + wal::kRecordHeaderSize;
    wal::AppendRecord(&buf, next_lsn_ + buffered, q->payload);
    ++buffered;
  }
  if (status.ok()) status = flush();
  ReleaseBigWriteBuffer();
  if (status.ok()) status = active_.HintWriteback(options_.writeback_bytes);
  // Once the active segment is half full, have the next one prepared in the background, so it
  // is ready (zero-filled and durable) by the time it is needed. Not earlier: an idle or
  // freshly opened log does no background I/O and holds no spare segment.
  if (options_.preallocation != Preallocation::kNone && !next_prepare_requested_ &&
      active_.size() >= active_.capacity() / 2) {
    next_prepare_requested_ = true;
    preparer_->Request(active_.number() + 1);
  }
  return status;
}

// A group of big records (up to max_group_bytes) leaves a big buffer behind: an idle log should
// not hold on to megabytes, so only a buffer of common size is kept.
void Wal::ReleaseBigWriteBuffer() {
  constexpr size_t kKeptBytes = size_t{64} << 10;
  if (write_buf_.capacity() > kKeptBytes) std::string().swap(write_buf_);
}

// Group commit for syncs: while one caller's sync runs, the others wait; when it ends, those it
// covered return and one of the rest leads the next sync, which covers everything written by
// the time it starts. N concurrent fdatasyncs cost at most two syncs, and appends are never
// held up by a sync.
Status Wal::SyncUpTo(uint64_t lsn, bool data_only) {
  Status s = DoSyncUpTo(lsn, data_only);
  if (!s.ok()) WriteFailureNoteIfDue();
  return s;
}

Status Wal::DoSyncUpTo(uint64_t lsn, bool data_only) {
  MutexLock lock(&mu_);
  if (closed_) return Status::InvalidArgument("write-ahead log " + dir_ + " is closed");
  if (!failure_.ok()) return FailedStatus();
  lsn = std::min(lsn, last_lsn());  // nothing past what was written can be asked for
  // A data sync is covered by any sync that reached `lsn`. A full sync (fsync) is asked for
  // metadata too, so only an fsync begun after the call covers it (and reaches `lsn`, which
  // was written by then).
  const uint64_t arrival = fsync_starts_;
  if (data_only && durable_lsn() >= lsn) return Status::OK();  // already durable: costs nothing
  ++sync_waiters_;
  if (!data_only) ++fsync_waiters_;
  if (gathering_) gather_cv_.Signal();
  Status result;
  for (;;) {
    if (!failure_.ok()) {
      result = FailedStatus();
      break;
    }
    if (data_only ? durable_lsn() >= lsn : fsync_done_start_ > arrival) {  // covered

      ++stats_.synced_requests;
      break;
    }
    if (syncing_ || rotating_) {
      sync_cv_.Wait();
      continue;
    }
    // Lead a sync of everything written so far: an fsync if anyone waiting needs one.
    syncing_ = true;
    GatherSyncers();
    if (!failure_.ok()) {
      syncing_ = false;
      sync_cv_.SignalAll();
      continue;  // returns the failure above
    }
    const bool full = fsync_waiters_ > 0;
    const uint64_t start = full ? ++fsync_starts_ : 0;
    const uint64_t target = last_lsn();
    stats_.max_group = std::max<uint64_t>(stats_.max_group, sync_waiters_);
    WritableFile* file = active_.file();  // Rotate does not replace it while syncing_
    const auto began = std::chrono::steady_clock::now();
    mu_.Unlock();
    const Status s = full ? file->Sync() : file->DataSync();
    mu_.Lock();
    last_sync_ = std::chrono::steady_clock::now() - began;
    stats_.sync_micros += Micros(last_sync_);
    // Nobody has left yet: those it covered are still here, with those who came meanwhile.
    expected_syncers_ = sync_waiters_;
    syncing_ = false;
    sync_cv_.SignalAll();
    if (!s.ok()) {
      // Never retried: the kernel may have dropped the pages the failed sync did not write.
      Fail(s);
      result = FailedStatus();
      break;
    }
    ++stats_.syncs;
    NoteDurable(target);
    if (full) fsync_done_start_ = start;
  }
  --sync_waiters_;
  if (!data_only) --fsync_waiters_;
  return result;
}

// Called by a sync leader before its sync. Everyone covered by the last sync has returned, and
// whoever comes back within the wait is written by the time this sync starts, so covered by it:
// two threads that sync in turn share each sync instead of taking one each, and N such threads
// approach one sync per round instead of about N/2. The wait is a fraction of a sync (half, by
// default), and only when the last sync's callers are not all back: a lone syncer never waits.
// A rotation ends the wait (the syncers may be queued behind it), as do a failure and a close.
void Wal::GatherSyncers() {
  if (sync_waiters_ >= expected_syncers_ || options_.sync_gather_fraction <= 0) return;
  const auto window = std::min<std::chrono::steady_clock::duration>(
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(
          last_sync_ * options_.sync_gather_fraction),
      options_.max_sync_gather);
  if (window <= std::chrono::steady_clock::duration::zero()) return;
  gathering_ = true;
  const auto began = std::chrono::steady_clock::now();
  const auto deadline = began + window;
  while (sync_waiters_ < expected_syncers_ && failure_.ok() && !closing_ && !rotating_) {
    if (!gather_cv_.WaitUntil(deadline)) break;
  }
  gathering_ = false;
  stats_.gather_micros += Micros(std::chrono::steady_clock::now() - began);
}

Status Wal::Checkpoint(uint64_t lsn) {
  {
    MutexLock lock(&mu_);
    if (closed_) return Status::InvalidArgument("write-ahead log " + dir_ + " is closed");
    if (!failure_.ok()) return FailedStatus();
  }
  bool dir_sync_failed = false;
  Status s = segments_.DeleteCheckpointed(lsn, &dir_sync_failed);
  if (dir_sync_failed) {
    {
      MutexLock lock(&mu_);
      Fail(s);
    }
    WriteFailureNoteIfDue();
  }
  return s;
}

void Wal::BatchTimerLoop() {
  MutexLock lock(&mu_);
  while (!closing_) {
    if (unsynced_records_ == 0 || !failure_.ok()) {
      timer_cv_.Wait();
      continue;
    }
    const auto due = oldest_unsynced_ + options_.batch_interval;
    if (std::chrono::steady_clock::now() < due) {
      timer_cv_.WaitUntil(due);
      continue;
    }
    const uint64_t target = last_lsn();
    mu_.Unlock();
    // An error here has already failed the log; every later caller will see it.
    SyncUpTo(target).PermitUnchecked();
    mu_.Lock();
  }
}

Status Wal::Close() {
  {
    MutexLock lock(&mu_);
    if (closed_ || closing_) return Status::OK();
    closing_ = true;
    gather_cv_.SignalAll();
  }
  const uint64_t unused = StopBackgroundThreads();
  Status s;
  {
    MutexLock lock(&mu_);
    s = failure_.ok() ? Status::OK() : FailedStatus();
  }
  if (s.ok() && last_lsn() > durable_lsn()) s = Sync();
  if (unused != 0 && s.ok()) {
    // A prepared segment nobody used. Left behind it would be harmless (the next open takes a
    // header-less newest segment for an unused one and deletes it), but it holds space.
    segments_.RemoveUnused(unused);
  }
  MutexLock lock(&mu_);
  closed_ = true;
  if (active_.open()) {
    Status c = active_.Close();
    if (s.ok()) s = c;
  }
  return s;
}

uint64_t Wal::StopBackgroundThreads() {
  timer_cv_.SignalAll();  // closing_ was set under mu_: the timer sees it or is waiting
  if (batch_timer_.joinable()) batch_timer_.join();
  return preparer_ ? preparer_->Stop() : 0;
}

void Wal::SimulateProcessCrashForTesting() {
  {
    MutexLock lock(&mu_);
    closing_ = true;
    gather_cv_.SignalAll();
  }
  StopBackgroundThreads();
  MutexLock lock(&mu_);
  closed_ = true;
  if (active_.open()) active_.Close().PermitUnchecked();
}

bool Wal::GatheringForTesting() const {
  MutexLock lock(&mu_);
  return gathering_;
}

Status Wal::health() const {
  if (!failed_.load(std::memory_order_acquire)) return Status::OK();
  MutexLock lock(&mu_);
  return failure_.ok() ? Status::OK() : FailedStatus();
}

size_t Wal::pending_requests() const {
  MutexLock lock(&mu_);
  return queue_.size() + sync_waiters_;
}

WalStats Wal::stats() const {
  WalStats stats;
  {
    MutexLock lock(&mu_);
    stats = stats_;
  }
  const WalSegments::Counts counts = segments_.counts();
  stats.segments_created = counts.created;
  stats.segments_deleted = counts.deleted;
  return stats;
}

}  // namespace kvfs::sync
