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

WalOptions Options(SyncMode mode) {
  WalOptions o;
  o.sync_mode = mode;
  o.segment_size = 2048;  // many rotations, so crash points land inside them
  o.batch_records = 7;
  o.batch_interval = std::chrono::milliseconds(1);
  return o;
}

// What the workload was told, for the checker.
struct Ledger {
  std::mutex mu;
  std::map<uint64_t, std::string> acked;  // LSN -> payload of every Append that returned OK
  uint64_t durable = 0;                   // highest LSN acknowledged as durable
  std::set<std::string> attempted;        // every payload ever passed to Append
  uint64_t checkpoint = 0;                // highest LSN a Checkpoint was started with

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

void RunWorkload(Wal* wal, SyncMode mode, uint64_t seed, Ledger* ledger) {
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([=] {
      std::mt19937_64 rng(seed * 31 + t);
      for (int i = 0; i < kRecordsPerThread; ++i) {
        const std::string p = Payload(t, i, rng);
        {
          std::lock_guard<std::mutex> l(ledger->mu);
          ledger->attempted.insert(p);
        }
        auto lsn = wal->Append(p);
        if (!lsn.ok()) return;  // the power is off (or the log failed): this thread is done
        {
          std::lock_guard<std::mutex> l(ledger->mu);
          ledger->acked[*lsn] = p;
        }
        if (mode == SyncMode::kAlways) ledger->Durable(*lsn);
        if (rng() % 5 == 0) {
          const uint64_t target = wal->last_lsn();
          if (!wal->SyncUpTo(target, /*data_only=*/rng() % 2 == 0).ok()) return;
          ledger->Durable(target);
        }
      }
    });
  }
  // A checkpointer, as an engine would run one after flushing: everything below half the
  // durable LSN is "elsewhere" now.
  threads.emplace_back([=] {
    for (int i = 0; i < 4; ++i) {
      const uint64_t lsn = wal->durable_lsn() / 2;
      {
        std::lock_guard<std::mutex> l(ledger->mu);
        ledger->checkpoint = std::max(ledger->checkpoint, lsn);
      }
      if (!wal->Checkpoint(lsn).ok()) return;
      std::this_thread::yield();
    }
  });
  for (auto& th : threads) th.join();
}

// Reopens after the crash and checks the invariant.
void CheckRecovered(FaultFileSystem* fs, SyncMode mode, Ledger& ledger) {
  std::map<uint64_t, std::string> recovered;
  WalReadReport report;
  auto wal = Wal::Open(
      fs, kDir, Options(mode), ledger.checkpoint,
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
  ASSERT_OK(
      Wal::Open(fs, kDir, Options(mode), ledger.checkpoint, [&](uint64_t l, std::string_view p) {
        if (l == lsn) last = std::string(p);
        return Status::OK();
      }).status());
  EXPECT_EQ(last, "after-crash");
}

enum class CutAt { kSync, kOp };

// One run: a fresh disk, a crash scheduled at the n-th sync or operation, the workload, the
// cut, the check.
void RunOnce(SyncMode mode, CrashMode crash, CutAt where, uint64_t n, uint64_t seed,
             FaultStats* stats = nullptr) {
  SCOPED_TRACE("seed " + std::to_string(seed) + ", crash at " +
               (where == CutAt::kSync ? "sync " : "op ") + std::to_string(n) + ", " +
               CrashModeName(crash) + ", sync mode " + SyncModeName(mode));
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
    auto wal = Wal::Open(&fs, kDir, Options(mode), 0,
                         [](uint64_t, std::string_view) { return Status::OK(); });
    if (wal.ok()) {
      RunWorkload(wal->get(), mode, seed, &ledger);
      if (stats) *stats = fs.stats();
    }
    // The Wal dies with the machine; its Close fails on a disk with no power, or syncs.
  }
  fs.Crash(crash);
  CheckRecovered(&fs, mode, ledger);
}

class WalCrashTest : public testing::TestWithParam<std::tuple<SyncMode, CrashMode>> {};

TEST_P(WalCrashTest, PowerCutAtEverySyncPointLosesNothingAcknowledged) {
  const auto [mode, crash] = GetParam();
  const uint64_t seed = test::TestSeed();
  FaultStats calibration;
  RunOnce(mode, crash, CutAt::kSync, 0, seed, &calibration);
  ASSERT_GT(calibration.syncs, 10u);
  for (uint64_t n = 1; n <= calibration.syncs + 2; ++n) {
    RunOnce(mode, crash, CutAt::kSync, n, seed + n);
    if (HasFatalFailure() || HasFailure()) return;
  }
}

TEST_P(WalCrashTest, PowerCutAtRandomOperationsLosesNothingAcknowledged) {
  const auto [mode, crash] = GetParam();
  const uint64_t seed = test::TestSeed();
  FaultStats calibration;
  RunOnce(mode, crash, CutAt::kOp, 0, seed, &calibration);
  ASSERT_GT(calibration.mutating_ops, 10u);
  std::mt19937_64 rng(seed);
  for (int i = 0; i < 60; ++i) {
    const uint64_t n = 1 + rng() % calibration.mutating_ops;
    RunOnce(mode, crash, CutAt::kOp, n, seed + 1000 + i);
    if (HasFatalFailure() || HasFailure()) return;
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllModes, WalCrashTest,
    testing::Combine(testing::Values(SyncMode::kAlways, SyncMode::kBatch, SyncMode::kNone),
                     testing::Values(CrashMode::kDropUnsynced, CrashMode::kKeepPrefix,
                                     CrashMode::kTearLastWrite)),
    [](const testing::TestParamInfo<WalCrashTest::ParamType>& info) {
      return std::string(SyncModeName(std::get<0>(info.param))) + "_" +
             CrashModeName(std::get<1>(info.param));
    });

// A sync fails with EIO at each sync point in turn: the log must refuse everything after it,
// and after a crash everything acknowledged before it must be there.
TEST(WalSyncFailure, EioAtEverySyncPointNeverLosesAcknowledgedRecords) {
  const uint64_t seed = test::TestSeed();
  for (uint64_t n = 1; n <= 60; ++n) {
    SCOPED_TRACE("seed " + std::to_string(seed + n) + ", EIO at sync " + std::to_string(n));
    FaultFileSystem fs(seed + n);
    ASSERT_OK(CreateDirDurably(&fs, "/store"));
    Ledger ledger;
    {
      auto wal = Wal::Open(&fs, kDir, Options(SyncMode::kAlways), 0,
                           [](uint64_t, std::string_view) { return Status::OK(); });
      if (wal.ok()) {
        fs.FailSyncAfter(n);
        RunWorkload(wal->get(), SyncMode::kAlways, seed + n, &ledger);
        const Status health = (*wal)->health();
        // Whether the failed sync belonged to the log or to a checkpoint, once it happened the
        // log is failed for good and says so.
        if (fs.stats().syncs + 1 > n && !health.ok()) {
          EXPECT_TRUE(health.IsFailed()) << health.ToString();
          EXPECT_TRUE((*wal)->Append("x").status().IsFailed());
        }
      }
    }
    fs.Crash(CrashMode::kKeepPrefix);
    CheckRecovered(&fs, SyncMode::kAlways, ledger);
    if (HasFailure()) return;
  }
}

}  // namespace
}  // namespace kvfs::sync
