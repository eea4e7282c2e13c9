// Power cuts under every engine, through the Engine interface only.
//
// Several threads apply batches (puts and deletes over keys each thread owns), sync now and
// then, and one thread runs merges/compactions, on the fault-injecting file system, until the
// power goes: at every sync point in turn and at random operations, in every crash mode, for
// every registered engine and sync mode. Then the store is reopened and docs/DESIGN.md's invariant
// checked, per key:
// - its value is the last write acknowledged durable or a later write (acknowledged or not);
//   never an older one, never one that was never written;
// - batches are atomic: if a key shows batch s, no other key of batch s shows an older one;
// - the store opens without error, takes new writes, and they survive the next reopen.
// Failures print the seed and the crash point; KVFS_TEST_SEED=<seed> replays.
#include <gtest/gtest.h>

#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "engines/engine.h"
#include "sync/durable.h"
#include "sync/fault_file_system.h"
#include "tests/test_util.h"

namespace kvfs::engines {
namespace {

constexpr char kDir[] = "/data/store";
constexpr int kThreads = 3;
constexpr int kBatchesPerThread = 25;
constexpr int kKeysPerThread = 6;

EngineOptions Options(sync::SyncMode mode) {
  EngineOptions o;
  o.sync_mode = mode;
  o.segment_size = 4096;  // many rotations
  o.batch_records = 5;
  o.batch_interval = std::chrono::milliseconds(1);
  o.background_work = false;  // merges only where the workload asks, so crash points hit them
  return o;
}

std::string Key(int thread, int k) {
  return "t" + std::to_string(thread) + "/k" + std::to_string(k);
}

// A value names the batch that wrote it: "<thread>:<seq>:" then filler.
std::string Value(int thread, int seq, std::mt19937_64& rng) {
  std::string v = std::to_string(thread) + ":" + std::to_string(seq) + ":";
  v.append(rng() % 10 == 0 ? 2000 : rng() % 200, static_cast<char>('a' + seq % 26));
  return v;
}

int SeqOf(std::string_view value) {
  const size_t a = value.find(':');
  return std::stoi(std::string(value.substr(a + 1, value.find(':', a + 1) - a - 1)));
}

// What one thread did, for the checker. Keys are owned by one thread, so per key the writes
// are ordered by the thread's batch sequence.
struct ThreadLog {
  struct Batch {
    std::map<int, std::string> writes;  // key index -> value ("" = delete)
  };
  std::vector<Batch> batches;  // every batch attempted, in order (seq = index + 1)
  int durable = 0;             // batches 1..durable acknowledged durable
};

void RunWorkload(Engine* engine, sync::SyncMode mode, uint64_t seed, std::vector<ThreadLog>* logs) {
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([=] {
      std::mt19937_64 rng(seed * 131 + t);
      ThreadLog& log = (*logs)[t];
      for (int seq = 1; seq <= kBatchesPerThread; ++seq) {
        ThreadLog::Batch b;
        WriteBatch wb;
        const int n = 1 + static_cast<int>(rng() % 3);
        for (int i = 0; i < n; ++i) {
          const int k = static_cast<int>(rng() % kKeysPerThread);
          if (b.writes.count(k)) continue;
          if (rng() % 5 == 0) {
            b.writes[k] = "";
            wb.Delete(Key(t, k));
          } else {
            b.writes[k] = Value(t, seq, rng);
            wb.Put(Key(t, k), b.writes[k]);
          }
        }
        log.batches.push_back(b);
        if (!engine->Apply(wb).ok()) return;  // the power is off: this thread is done
        if (mode == sync::SyncMode::kAlways) log.durable = seq;
        if (rng() % 4 == 0) {
          if (!engine->Sync(rng() % 2 ? SyncKind::kData : SyncKind::kFull).ok()) return;
          log.durable = seq;
        }
      }
    });
  }
  threads.emplace_back([=] {
    for (int i = 0; i < 3; ++i) {
      if (!engine->Compact().ok()) return;
      std::this_thread::yield();
    }
  });
  for (auto& th : threads) th.join();
}

void CheckRecovered(const std::string& engine_name, sync::FaultFileSystem* fs, sync::SyncMode mode,
                    const std::vector<ThreadLog>& logs) {
  auto opened = OpenEngine(engine_name, fs, kDir, Options(mode));
  ASSERT_TRUE(opened.ok()) << "reopen after crash: " << opened.status().ToString();
  Engine& engine = **opened;
  for (int t = 0; t < kThreads; ++t) {
    const ThreadLog& log = logs[t];
    std::map<int, int> shown;  // key index -> seq of the batch whose value it shows (0: none)
    for (int k = 0; k < kKeysPerThread; ++k) {
      // The seqs that wrote k, and what each wrote.
      int last_durable = 0;  // seq of the last durable write to k
      for (int s = 1; s <= log.durable; ++s) {
        if (log.batches[s - 1].writes.count(k)) last_durable = s;
      }
      auto got = engine.Get(Key(t, k));
      ASSERT_TRUE(got.ok() || got.status().IsNotFound()) << got.status().ToString();
      if (got.ok()) {
        const int s = SeqOf(*got);
        ASSERT_GE(s, 1);
        ASSERT_LE(s, static_cast<int>(log.batches.size())) << Key(t, k) << " never written";
        auto w = log.batches[s - 1].writes.find(k);
        ASSERT_TRUE(w != log.batches[s - 1].writes.end()) << Key(t, k) << " batch " << s;
        ASSERT_EQ(*got, w->second) << Key(t, k) << " has a value never written";
        ASSERT_GE(s, last_durable) << Key(t, k) << " lost durable batch " << last_durable;
        shown[k] = s;
      } else {
        // Absent: never written durably, or a delete at or after the last durable write.
        bool deleted_after = last_durable == 0;
        for (size_t s = std::max(last_durable, 1); s <= log.batches.size(); ++s) {
          auto w = log.batches[s - 1].writes.find(k);
          if (w != log.batches[s - 1].writes.end() && w->second.empty() &&
              static_cast<int>(s) >= last_durable) {
            deleted_after = true;
          }
        }
        ASSERT_TRUE(deleted_after) << Key(t, k) << " lost durable batch " << last_durable;
        shown[k] = -1;  // unknown which batch
      }
    }
    // Atomicity: a key showing batch s means every key of batch s shows s or later.
    for (const auto& [k, s] : shown) {
      if (s <= 0) continue;
      for (const auto& [other, value] : log.batches[s - 1].writes) {
        if (shown[other] == -1) continue;  // deleted later, or the delete of batch s itself
        ASSERT_GE(shown[other], s)
            << "batch " << s << " of thread " << t << " half applied: " << Key(t, k)
            << " shows it, " << Key(t, other) << " shows " << shown[other];
      }
    }
  }
  // The store takes new writes, and they survive the next reopen.
  ASSERT_OK(engine.Put("after/crash", "yes"));
  ASSERT_OK(engine.Sync(SyncKind::kFull));
  ASSERT_OK(engine.Close());
  opened->reset();
  ASSERT_OK_AND_ASSIGN(auto again, OpenEngine(engine_name, fs, kDir, Options(mode)));
  ASSERT_OK_AND_ASSIGN(std::string v, again->Get("after/crash"));
  EXPECT_EQ(v, "yes");
}

enum class CutAt { kSync, kOp };

void RunOnce(const std::string& engine_name, sync::SyncMode mode, sync::CrashMode crash,
             CutAt where, uint64_t n, uint64_t seed, sync::FaultStats* stats = nullptr) {
  SCOPED_TRACE(engine_name + ", seed " + std::to_string(seed) + ", crash at " +
               (where == CutAt::kSync ? "sync " : "op ") + std::to_string(n) + ", " +
               sync::CrashModeName(crash) + ", sync mode " + sync::SyncModeName(mode));
  sync::FaultFileSystem fs(seed);
  ASSERT_OK(sync::CreateDirDurably(&fs, "/data"));
  if (n > 0) {
    if (where == CutAt::kSync) {
      fs.CrashAtSync(n, crash);
    } else {
      fs.CrashAtOp(n, crash);
    }
  }
  std::vector<ThreadLog> logs(kThreads);
  {
    auto engine = OpenEngine(engine_name, &fs, kDir, Options(mode));
    if (engine.ok()) {
      RunWorkload(engine->get(), mode, seed, &logs);
      if (stats) *stats = fs.stats();
    }
  }
  fs.Crash(crash);
  CheckRecovered(engine_name, &fs, mode, logs);
}

using Param = std::tuple<std::string, sync::SyncMode, sync::CrashMode>;
class EngineCrashTest : public testing::TestWithParam<Param> {};

TEST_P(EngineCrashTest, PowerCutAtEverySyncPointLosesNothingAcknowledged) {
  const auto& [engine, mode, crash] = GetParam();
  const uint64_t seed = test::TestSeed();
  sync::FaultStats calibration;
  RunOnce(engine, mode, crash, CutAt::kSync, 0, seed, &calibration);
  ASSERT_GT(calibration.syncs, 5u);
  for (uint64_t n = 1; n <= calibration.syncs + 2; ++n) {
    RunOnce(engine, mode, crash, CutAt::kSync, n, seed + n);
    if (HasFailure()) return;
  }
}

TEST_P(EngineCrashTest, PowerCutAtRandomOperationsLosesNothingAcknowledged) {
  const auto& [engine, mode, crash] = GetParam();
  const uint64_t seed = test::TestSeed();
  sync::FaultStats calibration;
  RunOnce(engine, mode, crash, CutAt::kOp, 0, seed, &calibration);
  std::mt19937_64 rng(seed);
  for (int i = 0; i < 40; ++i) {
    RunOnce(engine, mode, crash, CutAt::kOp, 1 + rng() % calibration.mutating_ops, seed + 1000 + i);
    if (HasFailure()) return;
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllEngines, EngineCrashTest,
    testing::Combine(testing::ValuesIn(EngineNames()),
                     testing::Values(sync::SyncMode::kAlways, sync::SyncMode::kBatch,
                                     sync::SyncMode::kNone),
                     testing::Values(sync::CrashMode::kDropUnsynced, sync::CrashMode::kKeepPrefix,
                                     sync::CrashMode::kTearLastWrite)),
    [](const testing::TestParamInfo<Param>& info) {
      return std::get<0>(info.param) + "_" + sync::SyncModeName(std::get<1>(info.param)) + "_" +
             sync::CrashModeName(std::get<2>(info.param));
    });

}  // namespace
}  // namespace kvfs::engines
