// SegmentPreparer: a requested segment is prepared once, by the thread or by the caller who
// needs it, never by both; a failure in the background is retried where it is needed.
#include "sync/segment_preparer.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include "tests/test_util.h"

namespace kvfs::sync {
namespace {

// Counts the preparations of each number, and where they ran; can hold them at a gate.
class Recorder {
 public:
  SegmentPreparer::PrepareFn Fn() {
    return [this](uint64_t number) {
      std::unique_lock<std::mutex> l(mu_);
      ++calls_[number];
      if (std::this_thread::get_id() == caller_) ++on_caller_;
      ++entered_;
      cv_.notify_all();
      cv_.wait(l, [&] { return !gate_closed_; });
      ++returned_;
      return result_;
    };
  }
  // How many preparations have returned so far.
  int returned() {
    std::lock_guard<std::mutex> l(mu_);
    return returned_;
  }
  void CloseGate() {
    std::lock_guard<std::mutex> l(mu_);
    gate_closed_ = true;
  }
  void OpenGate() {
    std::lock_guard<std::mutex> l(mu_);
    gate_closed_ = false;
    cv_.notify_all();
  }
  void Fail(Status s) {
    std::lock_guard<std::mutex> l(mu_);
    result_ = std::move(s);
  }
  // Waits until `n` preparations have begun.
  void WaitForEntered(int n) {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return entered_ >= n; });
  }
  int calls(uint64_t number) {
    std::lock_guard<std::mutex> l(mu_);
    return calls_[number];
  }
  int on_caller() {
    std::lock_guard<std::mutex> l(mu_);
    return on_caller_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  const std::thread::id caller_ = std::this_thread::get_id();
  std::map<uint64_t, int> calls_;
  int entered_ = 0;
  int on_caller_ = 0;
  int returned_ = 0;
  bool gate_closed_ = false;
  Status result_;
};

TEST(SegmentPreparer, ARequestedSegmentIsPreparedInTheBackgroundAndTakenAsIs) {
  Recorder rec;
  SegmentPreparer preparer(rec.Fn());
  preparer.Request(5);
  rec.WaitForEntered(1);
  EXPECT_OK(preparer.TakePreparedOrPrepare(5));
  EXPECT_EQ(rec.calls(5), 1);
  EXPECT_EQ(rec.on_caller(), 0);
  EXPECT_EQ(preparer.Stop(), 0u);  // taken: nothing left over
}

TEST(SegmentPreparer, AnUnrequestedSegmentIsPreparedOnTheCallersThread) {
  Recorder rec;
  SegmentPreparer preparer(rec.Fn());
  EXPECT_OK(preparer.TakePreparedOrPrepare(7));
  EXPECT_EQ(rec.calls(7), 1);
  EXPECT_EQ(rec.on_caller(), 1);
}

TEST(SegmentPreparer, TakeWaitsForAPreparationUnderWayInsteadOfPreparingAgain) {
  Recorder rec;
  SegmentPreparer preparer(rec.Fn());
  rec.CloseGate();
  preparer.Request(3);
  rec.WaitForEntered(1);  // the thread is inside prepare(3), held at the gate
  // What the taker saw when Take returned: how many preparations had returned by then. A Take
  // that did not wait would see 0 (prepare(3) is held at the gate until the taker is started).
  int returned_when_taken = -1;
  Status taken;
  std::thread taker([&] {
    taken = preparer.TakePreparedOrPrepare(3);
    returned_when_taken = rec.returned();
  });
  // The taker is inside Take, waiting for the thread (polled: a condition, not a guess of time;
  // a Take that never waits fails the deadline).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!preparer.TakerWaitingForTesting() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  ASSERT_TRUE(preparer.TakerWaitingForTesting()) << "Take did not wait for the thread";
  EXPECT_EQ(rec.returned(), 0);
  rec.OpenGate();
  taker.join();
  EXPECT_OK(taken);
  EXPECT_EQ(returned_when_taken, 1);
  EXPECT_EQ(rec.calls(3), 1);
}

TEST(SegmentPreparer, ABackgroundFailureIsPreparedAgainWhereItIsNeededAndReportedThere) {
  Recorder rec;
  rec.Fail(Status::NoSpace("disk full"));
  SegmentPreparer preparer(rec.Fn());
  preparer.Request(4);
  rec.WaitForEntered(1);
  const Status s = preparer.TakePreparedOrPrepare(4);
  EXPECT_TRUE(s.IsNoSpace()) << s.ToString();
  EXPECT_EQ(rec.calls(4), 2);
  EXPECT_EQ(rec.on_caller(), 1);
}

TEST(SegmentPreparer, StopReturnsASegmentPreparedAndNeverTakenOnce) {
  Recorder rec;
  SegmentPreparer preparer(rec.Fn());
  preparer.Request(9);
  rec.WaitForEntered(1);
  EXPECT_EQ(preparer.Stop(), 9u);  // waits for the preparation under way
  EXPECT_EQ(preparer.Stop(), 0u);
  EXPECT_EQ(rec.calls(9), 1);
}

TEST(SegmentPreparer, ARequestRacingItsTakeIsPreparedExactlyOnce) {
  Recorder rec;
  SegmentPreparer preparer(rec.Fn());
  constexpr uint64_t kRounds = 500;
  for (uint64_t n = 1; n <= kRounds; ++n) {
    preparer.Request(n);
    if (n % 2 == 0) std::this_thread::yield();
    ASSERT_OK(preparer.TakePreparedOrPrepare(n));
    // Time for the thread, woken by the request, to find it taken (or cancelled).
    if (n % 3 == 0) std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  EXPECT_EQ(preparer.Stop(), 0u);
  for (uint64_t n = 1; n <= kRounds; ++n) ASSERT_EQ(rec.calls(n), 1) << "segment " << n;
}

}  // namespace
}  // namespace kvfs::sync
