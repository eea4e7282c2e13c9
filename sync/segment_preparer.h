// SegmentPreparer: a background thread that prepares the log's next segment (creates it,
// reserves its space, makes it durable) before the rotation that needs it, so that the write
// leader does not wait for the zeros.
//
// The caller asks for segment `n` with Request(n) (the WAL does once its active segment is half
// full) and, when it needs the segment, calls TakePreparedOrPrepare(n): that takes the thread's
// work if it is done, waits for it if it is under way, and otherwise runs `prepare(n)` on the
// caller's thread. One number is never prepared twice, nor by two threads at once.
//
// Thread safety: Request and TakePreparedOrPrepare may be called from any thread, but the
// protocol above assumes one caller at a time (the WAL's write leader). Stop (or the destructor)
// ends the thread; nothing else may be called after it. The lock is a leaf: it is never held
// while `prepare` runs or while another lock is taken.
#pragma once

#include <cstdint>
#include <functional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "sync/mutex.h"
#include "sync/status.h"

namespace kvfs::sync {

class SegmentPreparer {
 public:
  // Prepares segment `number`, durably. Called on the preparer's thread or on the caller of
  // TakePreparedOrPrepare, never for the same number on both.
  using PrepareFn = std::function<Status(uint64_t number)>;

  // Starts the thread, which waits for a Request.
  explicit SegmentPreparer(PrepareFn prepare);
  // Stop().
  ~SegmentPreparer();
  SegmentPreparer(const SegmentPreparer&) = delete;
  SegmentPreparer& operator=(const SegmentPreparer&) = delete;

  // Has the thread prepare segment `number` (replacing an earlier request it has not begun).
  // Returns at once. A failure is not reported: TakePreparedOrPrepare then prepares it again.
  void Request(uint64_t number) ABSL_LOCKS_EXCLUDED(mu_);
  // Returns once segment `number` is prepared: OK if the thread did it (waiting for it if it is
  // at work on it), or else the status of `prepare(number)` run here. The request for it, if
  // any, is cancelled before that, so the thread never prepares it too.
  Status TakePreparedOrPrepare(uint64_t number) ABSL_LOCKS_EXCLUDED(mu_);
  // Ends the thread, after the preparation it is at, if any. Returns the number of a segment
  // it prepared that was never taken (the caller may remove it), or 0; only the first call
  // returns it.
  uint64_t Stop() ABSL_LOCKS_EXCLUDED(mu_);

  // Tests only: whether a TakePreparedOrPrepare is waiting for the thread's preparation.
  bool TakerWaitingForTesting() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Run() ABSL_LOCKS_EXCLUDED(mu_);

  const PrepareFn prepare_;
  mutable Mutex mu_;
  CondVar cv_{&mu_};                          // target_, ready_, busy_ or stop_ changed
  uint64_t target_ ABSL_GUARDED_BY(mu_) = 0;  // segment to prepare, 0 for none
  uint64_t ready_ ABSL_GUARDED_BY(mu_) = 0;   // segment prepared and durable, not yet taken
  bool busy_ ABSL_GUARDED_BY(mu_) = false;    // the thread is preparing target_
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  int takers_waiting_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;  // started last, by the constructor
};

}  // namespace kvfs::sync
