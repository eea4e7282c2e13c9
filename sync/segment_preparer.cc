#include "sync/segment_preparer.h"

#include <utility>

namespace kvfs::sync {

SegmentPreparer::SegmentPreparer(PrepareFn prepare) : prepare_(std::move(prepare)) {
  thread_ = std::thread([this] { Run(); });
}

SegmentPreparer::~SegmentPreparer() { Stop(); }

void SegmentPreparer::Request(uint64_t number) {
  MutexLock lock(&mu_);
  target_ = number;
  cv_.SignalAll();
}

Status SegmentPreparer::TakePreparedOrPrepare(uint64_t number) {
  {
    MutexLock lock(&mu_);
    ++takers_waiting_;
    while (busy_ && target_ == number) cv_.Wait();
    --takers_waiting_;
    if (ready_ == number) {
      ready_ = 0;
      return Status::OK();
    }
    // Cancelled before preparing it here, so the two never race.
    if (target_ == number) target_ = 0;
  }
  return prepare_(number);
}

bool SegmentPreparer::TakerWaitingForTesting() const {
  MutexLock lock(&mu_);
  return takers_waiting_ > 0 && busy_;
}

uint64_t SegmentPreparer::Stop() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
    cv_.SignalAll();
  }
  if (thread_.joinable()) thread_.join();
  MutexLock lock(&mu_);
  return std::exchange(ready_, 0);
}

void SegmentPreparer::Run() {
  MutexLock lock(&mu_);
  while (!stop_) {
    if (target_ == 0 || target_ == ready_) {
      cv_.Wait();
      continue;
    }
    const uint64_t number = target_;
    busy_ = true;
    mu_.Unlock();
    // On failure the caller prepares the segment itself when it needs it, and reports the
    // error there (in the WAL: ENOSPC to the records involved; a failed sync fails the
    // directory handle, and so the log, at its next directory sync).
    const Status s = prepare_(number);
    mu_.Lock();
    busy_ = false;
    if (s.ok()) ready_ = number;
    if (target_ == number) target_ = 0;
    cv_.SignalAll();
  }
}

}  // namespace kvfs::sync
