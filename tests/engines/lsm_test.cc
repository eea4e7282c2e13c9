// The LSM engine through the Engine interface, with small options so that every mechanism
// runs: flushes, leveled compaction, tombstones, blob separation and GC, write stalls, scans
// during flushes and compactions, damage on disk, orphan files, read-only opens.
#include "engines/lsm/lsm.h"

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <random>
#include <thread>

#include "engines/engine.h"
#include "engines/engine_open.h"
#include "engines/lsm/format.h"
#include "sync/durable.h"
#include "sync/fault_file_system.h"
#include "tests/test_util.h"

namespace kvfs::engines {
namespace {

constexpr char kDir[] = "/data/lsm";

EngineOptions Small(bool background = false) {
  EngineOptions o;
  o.sync_mode = sync::SyncMode::kNone;
  o.segment_size = 16 << 10;
  o.background_work = background;
  return o;
}

LsmOptions Tiny() {
  LsmOptions l;
  l.memtable_size = 8 << 10;
  l.l0_compaction_trigger = 2;
  l.l1_target_bytes = 24 << 10;
  l.level_size_ratio = 2;
  l.target_file_size = 8 << 10;
  l.block_size = 512;
  l.min_blob_size = 1000;
  l.subcompaction_min_bytes = 1;  // level-0 jobs run as two merges at once
  return l;
}

class LsmTest : public testing::Test {
 protected:
  void SetUp() override { ASSERT_OK(sync::CreateDirDurably(&fs_, "/data")); }
  Result<std::unique_ptr<Engine>> Open(EngineOptions o = Small(), LsmOptions l = Tiny()) {
    return OpenLsmWith(&fs_, kDir, o, l, &report_);
  }
  std::vector<std::string> Files(const std::string& suffix) {
    std::vector<std::string> out;
    auto names = fs_.ListDir(kDir);
    EXPECT_OK(names);
    for (const std::string& n : *names) {
      if (n.ends_with(suffix)) out.push_back(n);
    }
    return out;
  }
  void ExpectMatches(Engine& e, const std::map<std::string, std::string>& model) {
    for (const auto& [k, v] : model) {
      auto got = e.Get(k);
      ASSERT_TRUE(got.ok()) << k << ": " << got.status().ToString();
      ASSERT_EQ(*got, v) << k;
    }
    std::map<std::string, std::string> scanned;
    ASSERT_OK(e.Scan({}, [&](std::string_view k, std::string_view v) {
      scanned.emplace(std::string(k), std::string(v));
      return true;
    }));
    ASSERT_EQ(scanned.size(), model.size());
    ASSERT_TRUE(scanned == model);
  }

  void ReopenOften(bool background);

  sync::FaultFileSystem fs_{11};
  LsmRecoveryReport report_;
};

std::string Val(std::mt19937_64& rng, int round) {
  const size_t n = rng() % 8 == 0 ? 1000 + rng() % 3000 : rng() % 120;  // some go to blobs
  return std::to_string(round) + ":" + std::string(n, static_cast<char>('a' + rng() % 26));
}

TEST_F(LsmTest, FlushesAndCompactionsKeepEveryValueAcrossLevelsAndReopens) {
  std::map<std::string, std::string> model;
  std::mt19937_64 rng(test::TestSeed());
  {
    ASSERT_OK_AND_ASSIGN(auto e, Open());
    for (int i = 0; i < 4000; ++i) {
      const std::string k = "key" + std::to_string(rng() % 800);
      if (rng() % 6 == 0) {
        ASSERT_OK(e->Delete(k));
        model.erase(k);
      } else {
        model[k] = Val(rng, i);
        ASSERT_OK(e->Put(k, model[k]));
      }
    }
    ExpectMatches(*e, model);
    const LsmDebugStats d = GetLsmDebugStats(*e);
    EXPECT_GT(d.flushes, 20u);
    EXPECT_GT(d.compactions, 5u);
    EXPECT_GT(d.split_compactions, 0u) << "no level-0 job ran as two merges";
    EXPECT_GT(d.blob_files, 0u);
    uint64_t deep = 0;
    for (size_t l = 2; l < d.tables_per_level.size(); ++l) deep += d.tables_per_level[l];
    EXPECT_GT(deep, 0u) << "no table below level 1";
    EXPECT_GT(e->stats().compactions, 0u);
    ASSERT_OK(e->Close());
  }
  ASSERT_OK_AND_ASSIGN(auto e, Open());
  ExpectMatches(*e, model);
  ASSERT_OK(e->Compact());
  ExpectMatches(*e, model);
  const LsmDebugStats d = GetLsmDebugStats(*e);
  uint64_t tables = 0;
  for (size_t l = 0; l < d.tables_per_level.size(); ++l) {
    if (l == 0) {
      EXPECT_EQ(d.tables_per_level[l], 0u);
    }
    tables += d.tables_per_level[l];
  }
  EXPECT_EQ(Files(".sst").size(), tables) << "obsolete tables left on disk";
  EXPECT_EQ(Files(".blob").size(), d.blob_files) << "obsolete blob files left on disk";
}

TEST_F(LsmTest, TombstonesHideOlderValuesInDeeperLevelsUntilTheBottom) {
  ASSERT_OK_AND_ASSIGN(auto e, Open());
  ASSERT_OK(e->Put("victim", "old"));
  for (int i = 0; i < 100; ++i)
    ASSERT_OK(e->Put("fill" + std::to_string(i), std::string(200, 'f')));
  ASSERT_OK(e->Compact());  // "old" is now in the bottom level
  ASSERT_OK(e->Delete("victim"));
  // Many flushes and level-0 compactions: the tombstone moves down while "old" sits below it.
  for (int i = 0; i < 300; ++i)
    ASSERT_OK(e->Put("more" + std::to_string(i), std::string(200, 'm')));
  EXPECT_TRUE(e->Get("victim").status().IsNotFound());
  ASSERT_OK(e->Close());
  e.reset();
  ASSERT_OK_AND_ASSIGN(auto r, Open());
  EXPECT_TRUE(r->Get("victim").status().IsNotFound());
  ASSERT_OK(r->Compact());  // the tombstone reaches the bottom and is dropped with "old"
  EXPECT_TRUE(r->Get("victim").status().IsNotFound());
  ASSERT_OK(r->Close());
  r.reset();
  ASSERT_OK_AND_ASSIGN(auto again, Open());
  EXPECT_TRUE(again->Get("victim").status().IsNotFound());
  bool seen = false;
  ASSERT_OK(again->Scan({}, [&](std::string_view k, std::string_view) {
    seen |= k == "victim";
    return true;
  }));
  EXPECT_FALSE(seen);
}

TEST_F(LsmTest, ScansAreOrderedAndCompleteWhileFlushesAndCompactionsRun) {
  ASSERT_OK_AND_ASSIGN(auto e, Open(Small(true)));
  constexpr int kKeys = 300;
  auto key = [](int i) {
    char b[16];
    std::snprintf(b, sizeof(b), "k%04d", i);
    return std::string(b);
  };
  for (int i = 0; i < kKeys; ++i) ASSERT_OK(e->Put(key(i), "0"));
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    std::mt19937_64 rng(1);
    for (int round = 1; round <= 40; ++round) {
      for (int i = 0; i < kKeys; ++i) {
        // Big values now and then, so blob files come and go too.
        std::string v = std::to_string(round);
        if (rng() % 10 == 0) v += std::string(1500, 'b');
        EXPECT_OK(e->Put(key(i), v));
      }
    }
    stop = true;
  });
  std::thread compactor([&] {
    while (!stop) {
      EXPECT_OK(e->Compact());
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  std::map<std::string, int> last;
  int scans = 0;
  while (!stop || scans < 3) {
    int n = 0;
    std::string prev;
    ASSERT_OK(e->Scan({}, [&](std::string_view k, std::string_view v) {
      EXPECT_GT(std::string(k), prev);
      prev = std::string(k);
      const int version = std::stoi(std::string(v));
      EXPECT_GE(version, last[prev]) << prev << " went back";
      last[prev] = version;
      ++n;
      return true;
    }));
    ASSERT_EQ(n, kKeys) << "a scan missed keys";
    ++scans;
  }
  writer.join();
  compactor.join();
  for (int i = 0; i < kKeys; ++i) EXPECT_EQ(e->Get(key(i))->substr(0, 2), "40");
  const LsmDebugStats d = GetLsmDebugStats(*e);
  EXPECT_GT(d.flushes, 10u);
  EXPECT_GT(d.compactions, 3u);
}

TEST_F(LsmTest, WritersStallInsteadOfPilingUpMemtables) {
  EngineOptions o = Small(true);
  LsmOptions l = Tiny();
  l.memtable_size = 4 << 10;
  l.max_immutable_memtables = 1;
  l.l0_slowdown_trigger = 3;
  l.l0_stop_trigger = 4;
  l.l0_compaction_trigger = 2;
  ASSERT_OK_AND_ASSIGN(auto e, Open(o, l));
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> max_imms{0};
  std::atomic<uint64_t> max_l0{0};
  std::thread watcher([&] {
    while (!stop) {
      const LsmDebugStats d = GetLsmDebugStats(*e);
      max_imms = std::max<uint64_t>(max_imms, d.immutable_memtables);
      max_l0 = std::max<uint64_t>(max_l0, d.tables_per_level[0]);
      std::this_thread::yield();
    }
  });
  std::vector<std::thread> writers;
  for (int t = 0; t < 3; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < 1500; ++i) {
        EXPECT_OK(
            e->Put("w" + std::to_string(t) + "/" + std::to_string(i % 400), std::string(300, 'x')));
      }
    });
  }
  for (auto& w : writers) w.join();
  stop = true;
  watcher.join();
  const LsmDebugStats d = GetLsmDebugStats(*e);
  EXPECT_GT(d.stalls + d.slowdowns, 0u) << "writers never waited";
  EXPECT_LE(max_imms.load(), 1u);
  EXPECT_LE(max_l0.load(), 4u);
  EXPECT_EQ(*e->Get("w2/10"), std::string(300, 'x'));
}

TEST_F(LsmTest, LargeValuesLiveInBlobFilesAndGarbageIsCollected) {
  ASSERT_OK_AND_ASSIGN(auto e, Open());
  std::map<std::string, std::string> model;
  for (int round = 0; round < 6; ++round) {
    for (int i = 0; i < 30; ++i) {
      const std::string k = "chunk" + std::to_string(i);
      model[k] = std::string(4000 + i, static_cast<char>('a' + round));
      ASSERT_OK(e->Put(k, model[k]));
    }
  }
  ASSERT_OK(e->Put("small", "s"));
  model["small"] = "s";
  // Tables hold references: a 4 KB value is a few bytes in a table.
  ASSERT_OK(e->Compact());
  ExpectMatches(*e, model);
  LsmDebugStats d = GetLsmDebugStats(*e);
  EXPECT_GT(d.blob_gcs + d.blob_files_deleted, 0u) << "no blob garbage collected";
  // Every blob file left holds mostly live data: 30 live values of ~4 KB.
  uint64_t blob_bytes = 0;
  for (const std::string& f : Files(".blob"))
    blob_bytes += *fs_.FileSize(std::string(kDir) + "/" + f);
  EXPECT_LT(blob_bytes, 30u * 4100u * 2) << "garbage not reclaimed";
  EXPECT_EQ(Files(".blob").size(), d.blob_files);
  // Deleting everything and compacting leaves no blob file at all.
  for (const auto& [k, v] : model) ASSERT_OK(e->Delete(k));
  ASSERT_OK(e->Compact());
  d = GetLsmDebugStats(*e);
  EXPECT_EQ(d.blob_files, 0u);
  EXPECT_TRUE(Files(".blob").empty());
  EXPECT_TRUE(Files(".sst").empty());
  ASSERT_OK(e->Close());
  e.reset();
  ASSERT_OK_AND_ASSIGN(auto r, Open());
  int n = 0;
  ASSERT_OK(r->Scan({}, [&](std::string_view, std::string_view) { return ++n > 0; }));
  EXPECT_EQ(n, 0);
}

TEST_F(LsmTest, DamagedTableIsCorruptionNamingTheFileAndOffset) {
  {
    ASSERT_OK_AND_ASSIGN(auto e, Open());
    for (int i = 0; i < 200; ++i) ASSERT_OK(e->Put("k" + std::to_string(i), std::string(50, 'v')));
    ASSERT_OK(e->Compact());
    ASSERT_OK(e->Close());
  }
  const std::vector<std::string> tables = Files(".sst");
  ASSERT_FALSE(tables.empty());
  const std::string path = std::string(kDir) + "/" + tables[0];
  test::FlipByte(&fs_, path, 100);  // inside the first data block
  ASSERT_OK_AND_ASSIGN(auto e, Open());
  Status s = e->Scan({}, [](std::string_view, std::string_view) { return true; });
  ASSERT_TRUE(s.IsCorruption()) << s.ToString();
  EXPECT_NE(s.message().find(path + " at offset 0"), std::string::npos) << s.ToString();
  EXPECT_GT(e->stats().errors, 0u);
  ASSERT_OK(e->Close());
  e.reset();
  // What `kvfs check` does: a read-only open and a scan of every value.
  EngineOptions ro = Small();
  ro.read_only = true;
  ASSERT_OK_AND_ASSIGN(auto check, Open(ro));
  s = check->Scan({}, [](std::string_view, std::string_view) { return true; });
  ASSERT_TRUE(s.IsCorruption()) << s.ToString();
  EXPECT_NE(s.message().find(path + " at offset 0"), std::string::npos) << s.ToString();
}

TEST_F(LsmTest, DamagedManifestOrMissingTableFailsOpenNamingIt) {
  {
    ASSERT_OK_AND_ASSIGN(auto e, Open());
    for (int i = 0; i < 200; ++i) ASSERT_OK(e->Put("k" + std::to_string(i), std::string(50, 'v')));
    ASSERT_OK(e->Compact());
    ASSERT_OK(e->Close());
  }
  const std::string manifest = std::string(kDir) + "/MANIFEST";
  ASSERT_OK_AND_ASSIGN(std::string good, sync::ReadFileToString(&fs_, manifest));
  test::FlipByte(&fs_, manifest, 30);
  auto bad = Open();
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(bad.status().IsCorruption());
  EXPECT_NE(bad.status().message().find(manifest), std::string::npos) << bad.status().ToString();
  ASSERT_OK(sync::WriteFileAtomically(&fs_, manifest, good));
  const std::string table = std::string(kDir) + "/" + Files(".sst")[0];
  ASSERT_OK(fs_.RemoveFile(table));
  auto missing = Open();
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find(table), std::string::npos)
      << missing.status().ToString();
}

TEST_F(LsmTest, OrphanFilesAreDeletedAtOpenAndTablesWithoutAManifestAreRefused) {
  {
    ASSERT_OK_AND_ASSIGN(auto e, Open());
    ASSERT_OK(e->Put("a", "1"));
    ASSERT_OK(e->Compact());
    ASSERT_OK(e->Close());
  }
  for (const char* name : {"/data/lsm/999990.sst", "/data/lsm/999991.blob",
                           "/data/lsm/000123.sst.tmp", "/data/lsm/MANIFEST.tmp"}) {
    ASSERT_OK_AND_ASSIGN(auto f, fs_.NewWritableFile(name, sync::CreateMode::kTruncate));
    ASSERT_OK(f->Append("junk"));
  }
  {
    ASSERT_OK_AND_ASSIGN(auto e, Open());
    EXPECT_EQ(report_.orphans_removed, 4u);
    EXPECT_EQ(*e->Get("a"), "1");
  }
  ASSERT_OK(fs_.RemoveFile("/data/lsm/MANIFEST"));
  auto lost = Open();
  ASSERT_FALSE(lost.ok());
  EXPECT_TRUE(lost.status().IsCorruption()) << lost.status().ToString();
}

TEST_F(LsmTest, ReadOnlyOpenReadsEverythingWritesNothingAndRefusesWrites) {
  {
    ASSERT_OK_AND_ASSIGN(auto e, Open());
    for (int i = 0; i < 300; ++i) ASSERT_OK(e->Put("k" + std::to_string(i), std::string(i, 'v')));
    ASSERT_OK(e->Sync(SyncKind::kData));
    ASSERT_OK(e->Close());
  }
  ASSERT_OK_AND_ASSIGN(auto before, fs_.ListDir(kDir));
  ASSERT_OK_AND_ASSIGN(auto wal_before, fs_.ListDir(std::string(kDir) + "/wal"));
  const uint64_t bytes = fs_.stats().bytes_written;
  EngineOptions o = Small();
  o.read_only = true;
  ASSERT_OK_AND_ASSIGN(auto e, Open(o));
  for (int i = 0; i < 300; ++i) EXPECT_EQ(*e->Get("k" + std::to_string(i)), std::string(i, 'v'));
  EXPECT_EQ(e->Put("x", "y").code(), StatusCode::kNotSupported);
  EXPECT_EQ(e->Compact().code(), StatusCode::kNotSupported);
  ASSERT_OK(e->Close());
  EXPECT_EQ(fs_.stats().bytes_written, bytes);
  EXPECT_EQ(*fs_.ListDir(kDir), before);
  EXPECT_EQ(*fs_.ListDir(std::string(kDir) + "/wal"), wal_before);
  EXPECT_TRUE(OpenLsm(&fs_, "/data/none", o).status().IsNotFound());
}

// Whatever the errno (ENOSPC and EDQUOT too, as a thin-provisioned or quota-limited disk
// answers a sync): the flush fails without a retryable kNoSpace, and writes get kFailed.
TEST_F(LsmTest, FailedSyncDuringAFlushRefusesWritesUntilReopen) {
  for (int err : {EIO, ENOSPC, EDQUOT}) {
    SCOPED_TRACE(::strerrorname_np(err));
    ASSERT_OK_AND_ASSIGN(auto e, Open());
    ASSERT_OK(e->Put("before", "1"));
    ASSERT_OK(e->Sync(SyncKind::kData));
    // Less than half a log segment, so the log's preparer has no segment to make (its syncs
    // would race the flush's); sync mode none, so no put syncs. Compact() flushes first.
    for (int i = 0; i < 10; ++i) ASSERT_OK(e->Put("k" + std::to_string(i), std::string(100, 'x')));
    fs_.FailSyncAfter(1, err);  // the flush's first sync
    Status s = e->Compact();
    EXPECT_FALSE(s.ok());
    EXPECT_FALSE(s.IsNoSpace()) << s.ToString();
    Status later = e->Put("later", "x");
    EXPECT_TRUE(later.IsFailed()) << later.ToString();
    EXPECT_EQ(*e->Get("before"), "1");
    e->Close().PermitUnchecked();
    e.reset();
    ASSERT_OK_AND_ASSIGN(auto r, Open());
    EXPECT_EQ(*r->Get("before"), "1");
    EXPECT_TRUE(r->Get("later").status().IsNotFound());
    ASSERT_OK(r->Put("after", "works"));
  }
}

// Each open starts a log segment; what it replayed is flushed (by the flush thread after the
// open, or by the close when that comes first), so the log stays a few segments however often
// the store is reopened, with or without background work, and nothing is lost on the way.
void LsmTest::ReopenOften(bool background) {
  std::map<std::string, std::string> model;
  size_t most_segments = 0;
  for (int round = 0; round < 30; ++round) {
    ASSERT_OK_AND_ASSIGN(auto e, Open(Small(background)));
    ExpectMatches(*e, model);
    const std::string key = "k" + std::to_string(round % 7);
    ASSERT_OK(e->Put(key, "v" + std::to_string(round)));
    model[key] = "v" + std::to_string(round);
    ASSERT_OK(e->Close());
    auto names = fs_.ListDir(sync::JoinPath(kDir, engines::kWalDirName));
    ASSERT_OK(names);
    most_segments = std::max(most_segments, names->size());
  }
  EXPECT_LE(most_segments, 3u);
  ASSERT_OK_AND_ASSIGN(auto e, Open(Small(background)));
  ExpectMatches(*e, model);
}

TEST_F(LsmTest, ReopeningOftenKeepsTheLogShortAndEveryWrite) { ReopenOften(false); }
TEST_F(LsmTest, ReopeningOftenWithBackgroundWorkKeepsTheLogShortAndEveryWrite) {
  ReopenOften(true);
}

// Log segments are no bigger than a memtable, so flushes free them and the log holds about
// two memtables' worth of records, which is all a reopen reads.
TEST_F(LsmTest, TheLogHoldsAboutTwoMemtables) {
  EngineOptions o = Small();
  o.segment_size = 1 << 20;  // far larger than Tiny()'s 8 KiB memtable
  std::map<std::string, std::string> want;
  {
    ASSERT_OK_AND_ASSIGN(auto e, Open(o));
    std::mt19937_64 rng(5);
    for (int i = 0; i < 3000; ++i) {
      const std::string key = "key" + std::to_string(rng() % 500);
      want[key] = std::string(40, static_cast<char>('a' + i % 26));
      ASSERT_OK(e->Put(key, want[key]));
    }
    ASSERT_OK(e->Sync(SyncKind::kData));
    // Power lost with the store open, before its next sync (a clean close would flush the
    // memtable): the open below finds the log as it was.
    fs_.CrashAtSync(1, sync::CrashMode::kDropUnsynced);
  }
  fs_.Crash(sync::CrashMode::kDropUnsynced);
  ASSERT_OK_AND_ASSIGN(auto r, Open(o));
  EXPECT_LE(r->recovery().log.records_read, 2 * (8 << 10) / 40) << r->recovery().Summary();
  EXPECT_GT(r->recovery().log.records_replayed, 0u);
  for (const auto& [key, value] : want) EXPECT_EQ(*r->Get(key), value) << key;
}

// A clean close is a shutdown checkpoint: every memtable is flushed, so the next open replays
// nothing into a memtable, and every write is there.
TEST_F(LsmTest, ACleanCloseFlushesEveryMemtableSoTheOpenReplaysNothing) {
  for (const bool background : {true, false}) {
    SCOPED_TRACE(background ? "background work" : "no background work");
    EngineOptions o = Small();
    o.background_work = background;
    o.sync_mode = sync::SyncMode::kNone;  // nothing synced before the close
    {
      ASSERT_OK_AND_ASSIGN(auto e, Open(o));
      for (int i = 0; i < 500; ++i) {
        ASSERT_OK(
            e->Put("k" + std::to_string(i), "v" + std::to_string(i) + (background ? "b" : "")));
      }
      ASSERT_OK(e->Close());
    }
    fs_.Crash(sync::CrashMode::kDropUnsynced);  // power lost right after the close
    ASSERT_OK_AND_ASSIGN(auto e, Open(o));
    EXPECT_EQ(e->recovery().log.records_replayed, 0u) << e->recovery().Summary();
    for (int i = 0; i < 500; ++i) {
      EXPECT_EQ(*e->Get("k" + std::to_string(i)),
                "v" + std::to_string(i) + (background ? "b" : ""));
    }
    ASSERT_OK(e->Close());
  }
}

// Scans pay a seek in every level-0 table: once they have paid a table's allowed seeks
// (max(100, size / 16 KiB)), level 0 is compacted even below its trigger (LevelDB's seek
// compaction, for scans). Without background work it runs with the next writer's flush.
TEST_F(LsmTest, ScansThatPayALevel0TablesAllowedSeeksCompactLevel0BelowItsTrigger) {
  LsmOptions l = Tiny();
  l.l0_compaction_trigger = 4;  // two tables stay in level 0 unless scans ask
  ASSERT_OK_AND_ASSIGN(auto e, Open(Small(), l));
  std::map<std::string, std::string> model;
  int next = 0;
  // Writes until one more flush has run (and, without background work, the compactions the
  // writer runs after it).
  auto write_one_flush = [&] {
    const uint64_t flushes = GetLsmDebugStats(*e).flushes;
    for (int i = 0; i < 10000 && GetLsmDebugStats(*e).flushes == flushes; ++i) {
      const std::string key = "k" + std::to_string(100000 + next++);
      model[key] = std::string(60, static_cast<char>('a' + next % 26));
      ASSERT_OK(e->Put(key, model[key]));
    }
    ASSERT_EQ(GetLsmDebugStats(*e).flushes, flushes + 1);
  };
  ScanOptions ten;
  ten.prefix = "k10000";  // k100000 .. k100009
  auto scan = [&](int times) {
    for (int i = 0; i < times; ++i) {
      uint64_t rows = 0;
      ASSERT_OK(e->Scan(ten, [&](std::string_view, std::string_view) {
        ++rows;
        return true;
      }));
      ASSERT_EQ(rows, 10u);
    }
  };
  write_one_flush();
  ASSERT_EQ(GetLsmDebugStats(*e).tables_per_level[0], 1u);
  scan(50);  // half of the first table's 100 seeks
  write_one_flush();
  EXPECT_EQ(GetLsmDebugStats(*e).tables_per_level[0], 2u);  // below the trigger: they stay
  EXPECT_EQ(GetLsmDebugStats(*e).seek_compactions, 0u);
  scan(50);           // the first table's last 50
  write_one_flush();  // its writer compacts level 0 after the flush
  const LsmDebugStats d = GetLsmDebugStats(*e);
  EXPECT_EQ(d.seek_compactions, 1u);
  EXPECT_EQ(d.tables_per_level[0], 0u);
  ExpectMatches(*e, model);
}

// The memtable takes distinct (key, LSN) pairs: a batch's repeated keys are dropped but for
// the last entry of each, in batches small and big (which find repeats differently), at the
// write and at the log's replay alike.
TEST_F(LsmTest, ABatchPutsOneMemtableEntryPerKey) {
  LsmOptions big_memtable = Tiny();
  big_memtable.memtable_size = 1 << 20;  // nothing is flushed: live_keys counts memtable entries
  uint64_t want_entries = 0;
  {
    ASSERT_OK_AND_ASSIGN(auto e, Open(Small(), big_memtable));
    for (const size_t n : {size_t{2}, size_t{16}, size_t{17}, size_t{200}}) {
      WriteBatch b;
      const std::string prefix = "n" + std::to_string(n) + "-";
      for (size_t i = 0; i < n; ++i) b.Put(prefix + std::to_string(i), "v");
      b.Put(prefix + "0", "again");              // repeats the first
      b.Delete(prefix + std::to_string(n - 1));  // repeats the last
      ASSERT_OK(e->Apply(b));
      want_entries += n;
      EXPECT_EQ(e->stats().live_keys, want_entries) << "batch of " << n + 2;
      EXPECT_EQ(*e->Get(prefix + "0"), "again");
      EXPECT_TRUE(e->Get(prefix + std::to_string(n - 1)).status().IsNotFound());
    }
    ASSERT_OK(e->Sync(SyncKind::kData));
    // Power lost with the store open (a clean close would flush the memtable): the open below
    // replays the log.
    fs_.CrashAtSync(1, sync::CrashMode::kDropUnsynced);
  }
  fs_.Crash(sync::CrashMode::kDropUnsynced);
  ASSERT_OK_AND_ASSIGN(auto e, Open(Small(), big_memtable));
  EXPECT_EQ(e->recovery().log.records_replayed, 4u);
  // The open flushes what it replayed; the flush drops the four tombstones, which have nothing
  // older to hide.
  EXPECT_EQ(e->stats().live_keys, want_entries - 4);
  EXPECT_EQ(*e->Get("n200-0"), "again");
  EXPECT_TRUE(e->Get("n200-199").status().IsNotFound());
}

TEST_F(LsmTest, IsRegisteredAsLsm) {
  auto names = EngineNames();
  EXPECT_NE(std::find(names.begin(), names.end(), "lsm"), names.end());
  ASSERT_OK_AND_ASSIGN(auto e, OpenEngine("lsm", &fs_, kDir, Small()));
  EXPECT_EQ(e->name(), "lsm");
}

}  // namespace
}  // namespace kvfs::engines
