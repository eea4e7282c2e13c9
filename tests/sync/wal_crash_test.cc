// Power cuts under the write-ahead log.
//
// A workload of appends, syncs and checkpoints from several threads runs on the
// fault-injecting file system until the power goes: at every sync point in turn, and at random
// operations in between, in every crash mode and every sync mode. After the cut the log is
// reopened and the invariant of docs/DESIGN.md checked:
// - every record acknowledged durable is present, with its payload, in LSN order;
// - nothing is present that was never written;
// - the log opens without error and accepts new appends, which survive the next reopen.
// Every failure message carries the seed and the crash point; KVFS_TEST_SEED=<seed> replays.
#include <gtest/gtest.h>

#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "sync/durable.h"
#include "sync/fault_file_system.h"
#include "sync/wal.h"
#include "tests/test_util.h"

namespace kvfs::sync {
namespace {

constexpr char kDir[] = "/store/wal";
constexpr int kThreads = 4;
constexpr int kRecordsPerThread = 30;

constexpr uint32_t kBatchRecords = 7;

// With `deferred` (Wal::DeferBatchSyncs, as the file layer runs it), the batch timer waits so
// long that only the full-batch syncs keep batch mode's bound.
WalOptions Options(SyncMode mode, bool deferred = false) {
  WalOptions o;
  o.sync_mode = mode;
  o.segment_size = 2048;  // many rotations, so crash points land inside them
  o.batch_records = kBatchRecords;
  o.batch_interval = deferred ? std::chrono::milliseconds(60000) : std::chrono::milliseconds(1);
  return o;
}

// What the workload was told, for the checker.
struct Ledger {
  std::mutex mu;
  std::map<uint64_t, std::string> acked;  // LSN -> payload of every Append that returned OK
  uint64_t durable = 0;                   // highest LSN acknowledged as durable
  std::set<std::string> attempted;        // every payload ever passed to Append
  uint64_t checkpoint = 0;                // highest LSN a Checkpoint was started with
  std::vector<Status> errors;             // what every failed call returned
  bool failed_while_powered = false;      // a call failed before the power went

  // A failed call ends its thread. Unless a failure was injected, that may only be once the
  // power is off: a thread that gave up early would leave the check nothing to hold it to.
  void Failed(const FaultFileSystem& fs, const Status& s) {
    std::lock_guard<std::mutex> l(mu);
    errors.push_back(s);
    if (!fs.crashed()) failed_while_powered = true;
  }

  void Durable(uint64_t lsn) {
    std::lock_guard<std::mutex> l(mu);
    durable = std::max(durable, lsn);
  }
};

std::string Payload(int thread, int i, std::mt19937_64& rng) {
  std::string p = "t" + std::to_string(thread) + "-" + std::to_string(i) + "-";
  // Mostly small records; now and then one larger than a segment.
  const size_t filler = rng() % 20 == 0 ? 3000 : rng() % 300;
  p.append(filler, static_cast<char>('a' + (thread * 7 + i) % 26));
  return p;
}

void RunWorkload(Wal* wal, const FaultFileSystem& fs, SyncMode mode, bool deferred, uint64_t seed,
                 Ledger* ledger) {
  if (deferred) wal->DeferBatchSyncs();
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([=, &fs] {
      std::mt19937_64 rng(seed * 31 + t);
      for (int i = 0; i < kRecordsPerThread; ++i) {
        const std::string p = Payload(t, i, rng);
        {
          std::lock_guard<std::mutex> l(ledger->mu);
          ledger->attempted.insert(p);
        }
        auto lsn = wal->Append(p);
        if (!lsn.ok()) return ledger->Failed(fs, lsn.status());
        // Deferred, the appender that filled a batch syncs it here, as the file layer does
        // once its locks are dropped, before it acknowledges anything.
        if (deferred) {
          if (Status s = wal->SyncBatchIfDue(); !s.ok()) return ledger->Failed(fs, s);
        }
        {
          std::lock_guard<std::mutex> l(ledger->mu);
          ledger->acked[*lsn] = p;
        }
        if (mode == SyncMode::kAlways) ledger->Durable(*lsn);
        // Batch mode's bound: once a record is acknowledged, fewer than batch_records records
        // up to it are unsynced (wal.h), so everything up to lsn - batch_records + 1 is durable.
        if (mode == SyncMode::kBatch && *lsn >= kBatchRecords) {
          ledger->Durable(*lsn - kBatchRecords + 1);
        }
        if (rng() % 5 == 0) {
          const uint64_t target = wal->last_lsn();
          Status synced = wal->SyncUpTo(target, /*data_only=*/rng() % 2 == 0);
          if (!synced.ok()) return ledger->Failed(fs, synced);
          ledger->Durable(target);
        }
      }
    });
  }
  // A checkpointer, as an engine would run one after flushing: everything below half the
  // durable LSN is "elsewhere" now.
  threads.emplace_back([=, &fs] {
    for (int i = 0; i < 4; ++i) {
      const uint64_t lsn = wal->durable_lsn() / 2;
      {
        std::lock_guard<std::mutex> l(ledger->mu);
        ledger->checkpoint = std::max(ledger->checkpoint, lsn);
      }
      if (Status s = wal->Checkpoint(lsn); !s.ok()) return ledger->Failed(fs, s);
      std::this_thread::yield();
    }
  });
  for (auto& th : threads) th.join();
}

// Reopens after the crash and checks the invariant.
void CheckRecovered(FaultFileSystem* fs, SyncMode mode, bool deferred, Ledger& ledger) {
  std::map<uint64_t, std::string> recovered;
  WalReadReport report;
  auto wal = Wal::Open(
      fs, kDir, Options(mode, deferred), ledger.checkpoint,
      [&](uint64_t lsn, std::string_view payload) {
        recovered[lsn] = std::string(payload);
        return Status::OK();
      },
      &report);
  ASSERT_TRUE(wal.ok()) << "reopen after crash: " << wal.status().ToString();

  for (const auto& [lsn, payload] : ledger.acked) {
    if (lsn < ledger.checkpoint || lsn > ledger.durable) continue;
    auto it = recovered.find(lsn);
    ASSERT_TRUE(it != recovered.end())
        << "acknowledged durable LSN " << lsn << " lost (durable up to " << ledger.durable
        << ", checkpoint " << ledger.checkpoint << "); " << report.Summary();
    ASSERT_EQ(it->second, payload) << "LSN " << lsn;
  }
  std::map<int, int> last_index;  // per thread, the last record index seen, in LSN order
  for (const auto& [lsn, payload] : recovered) {
    ASSERT_TRUE(ledger.attempted.count(payload)) << "LSN " << lsn << " was never written";
    auto acked = ledger.acked.find(lsn);
    if (acked != ledger.acked.end()) {
      ASSERT_EQ(acked->second, payload) << "LSN " << lsn;
    }
    const int t = std::stoi(payload.substr(1));
    const int i = std::stoi(payload.substr(payload.find('-') + 1));
    auto prev = last_index.find(t);
    if (prev != last_index.end()) {
      ASSERT_GT(i, prev->second) << "thread " << t << " reordered";
    }
    last_index[t] = i;
  }

  // The log takes new appends, and they survive the next reopen.
  ASSERT_OK_AND_ASSIGN(uint64_t lsn, (*wal)->Append("after-crash"));
  ASSERT_OK((*wal)->Sync());
  ASSERT_OK((*wal)->Close());
  std::string last;
  ASSERT_OK(Wal::Open(fs, kDir, Options(mode, deferred), ledger.checkpoint,
                      [&](uint64_t l, std::string_view p) {
                        if (l == lsn) last = std::string(p);
                        return Status::OK();
                      })
                .status());
  EXPECT_EQ(last, "after-crash");
}

enum class CutAt { kSync, kOp };

// One run: a fresh disk, a crash scheduled at the n-th sync or operation, the workload, the
// cut, the check.
void RunOnce(SyncMode mode, bool deferred, CrashMode crash, CutAt where, uint64_t n, uint64_t seed,
             FaultStats* stats = nullptr) {
  SCOPED_TRACE("seed " + std::to_string(seed) + ", crash at " +
               (where == CutAt::kSync ? "sync " : "op ") + std::to_string(n) + ", " +
               CrashModeName(crash) + ", sync mode " + SyncModeName(mode) +
               (deferred ? ", full-batch syncs deferred" : ""));
  FaultFileSystem fs(seed);
  ASSERT_OK(CreateDirDurably(&fs, "/store"));
  if (n > 0) {
    if (where == CutAt::kSync)
      fs.CrashAtSync(n, crash);
    else
      fs.CrashAtOp(n, crash);
  }
  Ledger ledger;
  {
    auto wal = Wal::Open(&fs, kDir, Options(mode, deferred), 0,
                         [](uint64_t, std::string_view) { return Status::OK(); });
    if (wal.ok()) {
      RunWorkload(wal->get(), fs, mode, deferred, seed, &ledger);
      if (stats) *stats = fs.stats();
    } else {
      ASSERT_TRUE(fs.crashed()) << "open failed before the power went: " << wal.status().ToString();
    }
    // The Wal dies with the machine; its Close fails on a disk with no power, or syncs.
  }
  ASSERT_FALSE(ledger.failed_while_powered)
      << "a call failed before the power went: " << ledger.errors.front().ToString();
  fs.Crash(crash);
  CheckRecovered(&fs, mode, deferred, ledger);
}

class WalCrashTest : public testing::TestWithParam<std::tuple<SyncMode, CrashMode, bool>> {};

TEST_P(WalCrashTest, PowerCutAtEverySyncPointLosesNothingAcknowledged) {
  const auto [mode, crash, deferred] = GetParam();
  const uint64_t seed = test::TestSeed();
  FaultStats calibration;
  RunOnce(mode, deferred, crash, CutAt::kSync, 0, seed, &calibration);
  ASSERT_GT(calibration.syncs, 10u);
  for (uint64_t n = 1; n <= calibration.syncs + 2; ++n) {
    RunOnce(mode, deferred, crash, CutAt::kSync, n, seed + n);
    if (HasFatalFailure() || HasFailure()) return;
  }
}

TEST_P(WalCrashTest, PowerCutAtRandomOperationsLosesNothingAcknowledged) {
  const auto [mode, crash, deferred] = GetParam();
  const uint64_t seed = test::TestSeed();
  FaultStats calibration;
  RunOnce(mode, deferred, crash, CutAt::kOp, 0, seed, &calibration);
  ASSERT_GT(calibration.mutating_ops, 10u);
  std::mt19937_64 rng(seed);
  for (int i = 0; i < 60; ++i) {
    const uint64_t n = 1 + rng() % calibration.mutating_ops;
    RunOnce(mode, deferred, crash, CutAt::kOp, n, seed + 1000 + i);
    if (HasFatalFailure() || HasFailure()) return;
  }
}

std::string CaseName(const testing::TestParamInfo<WalCrashTest::ParamType>& info) {
  return std::string(SyncModeName(std::get<0>(info.param))) + "_" +
         CrashModeName(std::get<1>(info.param)) + (std::get<2>(info.param) ? "_deferred" : "");
}

INSTANTIATE_TEST_SUITE_P(
    AllModes, WalCrashTest,
    testing::Combine(testing::Values(SyncMode::kAlways, SyncMode::kBatch, SyncMode::kNone),
                     testing::Values(CrashMode::kDropUnsynced, CrashMode::kKeepPrefix,
                                     CrashMode::kTearLastWrite),
                     testing::Values(false)),
    CaseName);

// Batch mode with the full-batch syncs left to the appenders' SyncBatchIfDue (the file layer's
// way): the batch bound holds all the same.
INSTANTIATE_TEST_SUITE_P(DeferredBatch, WalCrashTest,
                         testing::Combine(testing::Values(SyncMode::kBatch),
                                          testing::Values(CrashMode::kDropUnsynced,
                                                          CrashMode::kKeepPrefix,
                                                          CrashMode::kTearLastWrite),
                                          testing::Values(true)),
                         CaseName);

// A sync fails at each sync point in turn, with EIO, ENOSPC or EDQUOT (as a thin-provisioned or
// quota-limited disk answers a sync): the log must refuse everything after it with kFailed, no
// call may be told kNoSpace (a sync is never retried into a success), and after a crash every
// record acknowledged durable before it must be there.
TEST(WalSyncFailure, FailedSyncAtEverySyncPointNeverLosesAcknowledgedRecords) {
  const uint64_t seed = test::TestSeed();
  for (int err : {EIO, ENOSPC, EDQUOT}) {
    for (uint64_t n = 1; n <= 60; ++n) {
      SCOPED_TRACE("seed " + std::to_string(seed + n) + ", " + ::strerrorname_np(err) +
                   " at sync " + std::to_string(n));
      FaultFileSystem fs(seed + n);
      ASSERT_OK(CreateDirDurably(&fs, "/store"));
      Ledger ledger;
      {
        fs.FailSyncAfter(n, err);
        auto wal = Wal::Open(&fs, kDir, Options(SyncMode::kAlways), 0,
                             [](uint64_t, std::string_view) { return Status::OK(); });
        if (wal.ok()) {
          RunWorkload(wal->get(), fs, SyncMode::kAlways, /*deferred=*/false, seed + n, &ledger);
          const Status health = (*wal)->health();
          // Whether the failed sync was an append's, a rotation's, the preparer's or a
          // checkpoint's, once a call has seen it the log is failed for good and says so.
          if (!ledger.errors.empty() || !health.ok()) {
            EXPECT_TRUE(health.IsFailed()) << health.ToString();
            const Status refused = (*wal)->Append("x").status();
            EXPECT_TRUE(refused.IsFailed()) << refused.ToString();
            EXPECT_TRUE((*wal)->Sync().IsFailed());
          }
        } else {
          ledger.errors.push_back(wal.status());
        }
      }
      for (const Status& s : ledger.errors) EXPECT_FALSE(s.IsNoSpace()) << s.ToString();
      fs.Crash(CrashMode::kKeepPrefix);
      CheckRecovered(&fs, SyncMode::kAlways, /*deferred=*/false, ledger);
      if (HasFailure()) return;
    }
  }
}

}  // namespace
}  // namespace kvfs::sync
