// Power cuts at every sync point of a workload that makes the LSM engine flush (with blob
// files), rewrite its MANIFEST, compact, and garbage-collect blob files, in every crash mode.
// The workload is single-threaded and seeded, so crash point n falls at the same place of the
// same run every time, and every place gets its turn. After each cut the store must reopen, and
// docs/DESIGN.md's invariant hold per key: the value is the last one acknowledged (sync mode
// always: every acknowledged write is durable), or the write in flight at the cut, never anything
// else. Failures print the seed; KVFS_TEST_SEED=<seed> replays.
#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <random>

#include "engines/engine.h"
#include "engines/lsm/lsm.h"
#include "sync/durable.h"
#include "sync/fault_file_system.h"
#include "tests/test_util.h"

namespace kvfs::engines {
namespace {

constexpr char kDir[] = "/data/lsm";

EngineOptions Options() {
  EngineOptions o;
  o.sync_mode = sync::SyncMode::kAlways;
  o.segment_size = 8 << 10;
  o.background_work = false;
  return o;
}

LsmOptions Tiny() {
  LsmOptions l;
  l.memtable_size = 6 << 10;
  l.l0_compaction_trigger = 2;
  l.l1_target_bytes = 16 << 10;
  l.level_size_ratio = 2;
  l.target_file_size = 6 << 10;
  l.block_size = 512;
  l.min_blob_size = 600;
  l.subcompaction_min_bytes = 1;  // level-0 jobs run as two merges at once
  return l;
}

using Model = std::map<std::string, std::optional<std::string>>;

struct Outcome {
  Model acked;  // per key: the last acknowledged value (nullopt: deleted)
  std::optional<std::pair<std::string, std::optional<std::string>>> in_flight;
  LsmDebugStats debug;
};

// What a workload exercises: the default reaches flushes, compactions and blob GC (large values,
// Compact() every 40 ops); the split one, many small keys and no Compact(), reaches level-0
// compactions run as two merges (level 1 holding several tables).
struct Shape {
  int ops = 120;
  int keys = 24;
  bool compact_every_40 = true;
  bool large_values = true;
};

// Runs until an operation fails, which may only be once the power is off: a workload that
// stopped early for another reason would leave the check below nothing to hold it to.
void RunWorkload(Engine* e, const sync::FaultFileSystem& fs, uint64_t seed, const Shape& shape,
                 Outcome* out) {
  auto stop = [&fs](const Status& s) {
    if (!fs.crashed()) ADD_FAILURE() << "failed before the power went: " << s.ToString();
  };
  std::mt19937_64 rng(seed);
  for (int op = 1; op <= shape.ops; ++op) {
    if (shape.compact_every_40 && op % 40 == 0) {
      // Includes blob GC once garbage piles up.
      if (Status s = e->Compact(); !s.ok()) return stop(s);
      continue;
    }
    const std::string key = "k" + std::to_string(rng() % shape.keys);
    std::optional<std::string> value;
    if (rng() % 7 != 0) {
      // Large values (to blob files) for a few hot keys, so overwrites make blob garbage.
      const size_t n = shape.large_values && key.size() == 2 ? 700 + rng() % 500 : rng() % 150;
      value = std::to_string(op) + ":" + std::string(n, static_cast<char>('a' + op % 26));
    }
    out->in_flight = {key, value};
    const Status s = value ? e->Put(key, *value) : e->Delete(key);
    if (!s.ok()) return stop(s);
    out->acked[key] = value;
    out->in_flight.reset();
  }
}

void RunOnce(sync::CrashMode mode, uint64_t crash_at, uint64_t seed, Outcome* calibration,
             const Shape& shape = Shape()) {
  SCOPED_TRACE("seed " + std::to_string(seed) + ", crash at sync " + std::to_string(crash_at) +
               ", " + sync::CrashModeName(mode));
  sync::FaultFileSystem fs(seed);
  ASSERT_OK(sync::CreateDirDurably(&fs, "/data"));
  const uint64_t syncs_before = fs.stats().syncs;
  if (crash_at > 0) fs.CrashAtSync(crash_at, mode);
  Outcome out;
  {
    auto e = OpenLsmWith(&fs, kDir, Options(), Tiny());
    if (e.ok()) {
      RunWorkload(e->get(), fs, seed, shape, &out);
      out.debug = GetLsmDebugStats(**e);
    } else {
      ASSERT_TRUE(fs.crashed()) << "open failed before the power went: " << e.status().ToString();
    }
  }  // the close (a shutdown checkpoint: it flushes) has sync points too
  if (calibration != nullptr) {
    *calibration = out;
    calibration->debug.flushes = fs.stats().syncs - syncs_before;  // reused: sync count
  }
  fs.Crash(mode);
  ASSERT_OK_AND_ASSIGN(auto e, OpenLsmWith(&fs, kDir, Options(), Tiny()));
  for (int k = 0; k < shape.keys; ++k) {
    const std::string key = "k" + std::to_string(k);
    auto got = e->Get(key);
    ASSERT_TRUE(got.ok() || got.status().IsNotFound()) << key << ": " << got.status().ToString();
    std::optional<std::string> value;
    if (got.ok()) value = *got;
    auto acked = out.acked.find(key);
    const std::optional<std::string> expected =
        acked == out.acked.end() ? std::nullopt : acked->second;
    const bool in_flight = out.in_flight && out.in_flight->first == key;
    if (value != expected) {
      ASSERT_TRUE(in_flight && value == out.in_flight->second)
          << key << " shows " << (value ? value->substr(0, 12) : "nothing") << ", acknowledged "
          << (expected ? expected->substr(0, 12) : "nothing");
    }
  }
  // Scans agree with Gets and show no key the workload never wrote, and the store takes writes
  // that survive a reopen.
  int scanned = 0;
  ASSERT_OK(e->Scan({}, [&](std::string_view k, std::string_view v) {
    auto g = e->Get(k);
    EXPECT_TRUE(g.ok() && *g == v) << k;
    const bool written =
        out.acked.count(std::string(k)) > 0 || (out.in_flight && out.in_flight->first == k);
    EXPECT_TRUE(written) << k << " was never written";
    ++scanned;
    return true;
  }));
  ASSERT_OK(e->Put("after", "crash"));
  ASSERT_OK(e->Compact());
  ASSERT_OK(e->Close());
  e.reset();
  ASSERT_OK_AND_ASSIGN(auto again, OpenLsmWith(&fs, kDir, Options(), Tiny()));
  EXPECT_EQ(*again->Get("after"), "crash");
}

class LsmCrashTest : public testing::TestWithParam<sync::CrashMode> {};

TEST_P(LsmCrashTest, PowerCutAtEverySyncOfFlushesCompactionsAndBlobGcLosesNothing) {
  const uint64_t seed = test::TestSeed();
  Outcome calibration;
  RunOnce(GetParam(), 0, seed, &calibration);
  if (HasFailure()) return;
  const uint64_t syncs = calibration.debug.flushes;
  // The workload must reach every mechanism, or the sync points below would not cover them.
  ASSERT_GT(calibration.debug.compactions, 2u) << "seed " << seed;
  ASSERT_GT(calibration.debug.blob_gcs + calibration.debug.blob_files_deleted, 0u)
      << "seed " << seed;
  ASSERT_GT(syncs, 100u);
  for (uint64_t n = 1; n <= syncs + 2; ++n) {
    RunOnce(GetParam(), n, seed, nullptr);
    if (HasFailure()) return;
  }
}

TEST_P(LsmCrashTest, PowerCutAtEverySyncOfALevel0CompactionRunAsTwoMergesLosesNothing) {
  const uint64_t seed = test::TestSeed();
  Shape split;
  split.ops = 400;
  split.keys = 300;
  split.compact_every_40 = false;
  split.large_values = false;
  Outcome calibration;
  RunOnce(GetParam(), 0, seed, &calibration, split);
  if (HasFailure()) return;
  const uint64_t syncs = calibration.debug.flushes;
  ASSERT_GT(calibration.debug.split_compactions, 0u) << "seed " << seed;
  for (uint64_t n = 1; n <= syncs + 2; ++n) {
    RunOnce(GetParam(), n, seed, nullptr, split);
    if (HasFailure()) return;
  }
}

// The flush a reopen brings: what the log replayed, flushed by the flush thread after Open
// returns, or by Close when that comes first. The store is written (every write durable, less
// than a memtable) and loses power before it is closed (a clean close would flush it: nothing
// would be left to replay). It is then opened with background work, given a few more writes
// (so the close's shutdown checkpoint flushes an active memtable on the flush thread) and
// closed, with a power cut at every sync of that open, those writes and that close; every
// acknowledged write must survive.
void ReopenAndCloseOnce(sync::CrashMode mode, uint64_t crash_at, uint64_t seed, uint64_t* syncs) {
  SCOPED_TRACE("seed " + std::to_string(seed) + ", crash at sync " + std::to_string(crash_at) +
               ", " + sync::CrashModeName(mode));
  sync::FaultFileSystem fs(seed);
  ASSERT_OK(sync::CreateDirDurably(&fs, "/data"));
  std::map<std::string, std::string> written;
  {
    ASSERT_OK_AND_ASSIGN(auto e, OpenLsmWith(&fs, kDir, Options(), Tiny()));
    for (int k = 0; k < 30; ++k) {
      const std::string key = "k" + std::to_string(k);
      written[key] = std::to_string(seed % 1000) + ":" + std::string(size_t{3} * k, 'v');
      ASSERT_OK(e->Put(key, written[key]));
    }
    fs.CrashAtSync(1, sync::CrashMode::kDropUnsynced);  // nothing the close does is durable
  }
  fs.Crash(sync::CrashMode::kDropUnsynced);
  const uint64_t before = fs.stats().syncs;
  if (crash_at > 0) fs.CrashAtSync(crash_at, mode);
  {
    EngineOptions background = Options();
    background.background_work = true;
    auto e = OpenLsmWith(&fs, kDir, background, Tiny());
    if (e.ok()) {
      for (int k = 30; k < 36; ++k) {  // sync mode always: acknowledged is durable
        const std::string key = "k" + std::to_string(k);
        const std::string value = "after reopen:" + std::string(k, 'w');
        if (Status s = (*e)->Put(key, value); !s.ok()) {
          EXPECT_TRUE(fs.crashed()) << "failed before the power went: " << s.ToString();
          break;
        }
        written[key] = value;
      }
      (*e)->Close().PermitUnchecked();
    } else {
      ASSERT_TRUE(fs.crashed()) << "open failed before the power went: " << e.status().ToString();
    }
  }
  if (syncs != nullptr) *syncs = fs.stats().syncs - before;
  fs.Crash(mode);
  ASSERT_OK_AND_ASSIGN(auto e, OpenLsmWith(&fs, kDir, Options(), Tiny()));
  for (const auto& [key, value] : written) {
    auto got = e->Get(key);
    ASSERT_TRUE(got.ok()) << key << ": " << got.status().ToString();
    EXPECT_EQ(*got, value) << key;
  }
}

TEST_P(LsmCrashTest, PowerCutAtEverySyncOfTheFlushAfterAReopenLosesNothing) {
  const uint64_t seed = test::TestSeed();
  uint64_t syncs = 0;
  ReopenAndCloseOnce(GetParam(), 0, seed, &syncs);
  if (HasFailure()) return;
  // The open's log segment and the flush (table, directory, MANIFEST, checkpoint) at least.
  ASSERT_GT(syncs, 5u) << "seed " << seed;
  for (uint64_t n = 1; n <= syncs + 2; ++n) {
    ReopenAndCloseOnce(GetParam(), n, seed + n, nullptr);
    if (HasFailure()) return;
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, LsmCrashTest,
                         testing::Values(sync::CrashMode::kDropUnsynced,
                                         sync::CrashMode::kKeepPrefix,
                                         sync::CrashMode::kTearLastWrite),
                         [](const testing::TestParamInfo<sync::CrashMode>& info) {
                           return std::string(sync::CrashModeName(info.param));
                         });

}  // namespace
}  // namespace kvfs::engines
