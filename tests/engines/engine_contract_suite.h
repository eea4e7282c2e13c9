// The Engine contract (engines/engine.h) as a parameterised suite (the parameter: an engine's
// name), for each test binary to instantiate over its engines: engine_contract_test over
// EngineNames() (the local engines), etcd_engine_test over "etcd" on its test cluster. An
// engine joins the registry only once it passes this suite (and engine_crash_test, for a local
// one).
//
// The including file defines the two hooks below. The suite's keys are namespaced by nothing:
// each Open gets a fresh store for each (test, directory) pair and the same store again when
// the test reopens the directory.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <thread>

#include "engines/engine.h"
#include "sync/durable.h"
#include "sync/fault_file_system.h"
#include "sync/wal_format.h"
#include "tests/test_util.h"

namespace kvfs::engines {

// Adds what `engine` needs beyond a directory to open the store of `dir` in the running test
// (a remote engine's settings); the same (test, dir) must name the same store.
void ConfigureContractEngine(const std::string& engine, const std::string& dir,
                             EngineOptions* options);
// Whether `engine` keeps its data in the directory's log, so that the power-cut, log-damage,
// sync-failure and disk-space tests (which act on the local file system) apply to it.
bool ContractEngineIsLocal(const std::string& engine);
// Called first in each test's SetUp: may skip the test (GTEST_SKIP) or fail it, e.g. when the
// engine's cluster is missing.
void ContractSetUp(const std::string& engine);

namespace {

constexpr char kDir[] = "/data/store";

#define KVFS_SKIP_UNLESS_LOCAL()                                           \
  if (!ContractEngineIsLocal(GetParam()))                                  \
  GTEST_SKIP() << GetParam()                                               \
               << " keeps no local log: this test acts on the local file " \
                  "system (power cut, damage, sync failure, disk space)"

class EngineContractTest : public testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    ContractSetUp(GetParam());
    if (IsSkipped() || HasFatalFailure()) return;
    ASSERT_OK(sync::CreateDirDurably(&fs_, "/data"));
  }

  Result<std::unique_ptr<Engine>> Open(sync::SyncMode mode = sync::SyncMode::kAlways,
                                       const std::string& dir = kDir) {
    EngineOptions o;
    o.sync_mode = mode;
    o.segment_size = 8192;
    o.background_work = false;
    ConfigureContractEngine(GetParam(), dir, &o);
    return OpenEngine(GetParam(), &fs_, dir, o);
  }

  std::vector<std::pair<std::string, std::string>> ScanAll(Engine& e, ScanOptions o = {}) {
    std::vector<std::pair<std::string, std::string>> out;
    Status s = e.Scan(o, [&](std::string_view k, std::string_view v) {
      out.emplace_back(std::string(k), std::string(v));
      return true;
    });
    EXPECT_OK(s);
    return out;
  }

  sync::FaultFileSystem fs_{7};
};

using KV = std::vector<std::pair<std::string, std::string>>;

// `batch` mode with the full-batch syncs left to the caller (Engine::DeferBatchSyncs, the file
// layer's way): Apply leaves a full batch unsynced, and SyncBatchIfDue syncs it. An engine that
// syncs inline anyway, or whose SyncBatchIfDue does nothing, fails here.
TEST_P(EngineContractTest, DeferredFullBatchIsSyncedBySyncBatchIfDue) {
  KVFS_SKIP_UNLESS_LOCAL();
  EngineOptions o;
  o.sync_mode = sync::SyncMode::kBatch;
  o.batch_records = 2;
  o.batch_interval = std::chrono::milliseconds(60000);  // only full batches are synced
  o.background_work = false;
  ConfigureContractEngine(GetParam(), kDir, &o);
  ASSERT_OK_AND_ASSIGN(auto e, OpenEngine(GetParam(), &fs_, kDir, o));
  e->DeferBatchSyncs();
  ASSERT_OK(e->Put("a", "1"));
  ASSERT_OK(e->Put("b", "2"));
  sync::WalStats w = e->stats().wal;
  EXPECT_GE(w.last_lsn - w.durable_lsn, 2u) << "Apply synced a full batch itself";
  ASSERT_OK(e->SyncBatchIfDue());
  w = e->stats().wal;
  EXPECT_EQ(w.durable_lsn, w.last_lsn) << "SyncBatchIfDue left a full batch unsynced";
  ASSERT_OK(e->Close());
}

TEST_P(EngineContractTest, PutThenGetReturnsTheValue) {
  ASSERT_OK_AND_ASSIGN(auto e, Open());
  ASSERT_OK(e->Put("a", "1"));
  ASSERT_OK_AND_ASSIGN(std::string v, e->Get("a"));
  EXPECT_EQ(v, "1");
  EXPECT_EQ(e->name(), GetParam());
}

TEST_P(EngineContractTest, GetOfAMissingKeyIsNotFound) {
  ASSERT_OK_AND_ASSIGN(auto e, Open());
  EXPECT_TRUE(e->Get("missing").status().IsNotFound());
}

TEST_P(EngineContractTest, OverwriteReplacesAndDeleteRemoves) {
  ASSERT_OK_AND_ASSIGN(auto e, Open());
  ASSERT_OK(e->Put("k", "old"));
  ASSERT_OK(e->Put("k", "new"));
  EXPECT_EQ(*e->Get("k"), "new");
  ASSERT_OK(e->Delete("k"));
  EXPECT_TRUE(e->Get("k").status().IsNotFound());
  EXPECT_OK(e->Delete("never-there"));  // not an error
}

TEST_P(EngineContractTest, EmptyAndBinaryValuesRoundTrip) {
  ASSERT_OK_AND_ASSIGN(auto e, Open());
  const std::string binary("\0\xff\x01zero\0", 8);
  ASSERT_OK(e->Put("empty", ""));
  ASSERT_OK(e->Put(std::string("bin\0key", 7), binary));
  EXPECT_EQ(*e->Get("empty"), "");
  EXPECT_EQ(*e->Get(std::string("bin\0key", 7)), binary);
}

TEST_P(EngineContractTest, LargeValuesRoundTrip) {
  ASSERT_OK_AND_ASSIGN(auto e, Open());
  std::string big(1 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 131 % 251);
  ASSERT_OK(e->Put("big", big));
  EXPECT_EQ(*e->Get("big"), big);
}

TEST_P(EngineContractTest, InvalidKeysAreRefusedBeforeAnythingIsWritten) {
  ASSERT_OK_AND_ASSIGN(auto e, Open());
  WriteBatch b;
  b.Put("fine", "1");
  b.Put("", "empty key");
  EXPECT_EQ(e->Apply(b).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(e->Get("fine").status().IsNotFound());
  EXPECT_EQ(e->Put(std::string(kMaxKeySize + 1, 'k'), "v").code(), StatusCode::kInvalidArgument);
}

TEST_P(EngineContractTest, BatchAppliesInOrder) {
  ASSERT_OK_AND_ASSIGN(auto e, Open());
  WriteBatch b;
  b.Put("x", "1");
  b.Put("y", "2");
  b.Delete("x");
  b.Put("y", "3");
  ASSERT_OK(e->Apply(b));
  EXPECT_TRUE(e->Get("x").status().IsNotFound());
  EXPECT_EQ(*e->Get("y"), "3");
}

// Big batches take a different path to find repeated keys than small ones: check both sizes,
// with repeats at either end and none at all, before and after a replay of the log.
TEST_P(EngineContractTest, EveryBatchSizeKeepsTheLastEntryOfARepeatedKey) {
  for (const size_t n : {size_t{3}, size_t{16}, size_t{17}, size_t{100}}) {
    SCOPED_TRACE("batch of " + std::to_string(n) + " entries");
    const std::string dir = std::string(kDir) + "-" + std::to_string(n);
    std::map<std::string, std::string> want;
    {
      ASSERT_OK_AND_ASSIGN(auto e, Open(sync::SyncMode::kAlways, dir));
      WriteBatch distinct;
      for (size_t i = 0; i < n; ++i) {
        const std::string key = "d" + std::to_string(1000 + i);
        distinct.Put(key, "v" + std::to_string(i));
        want[key] = "v" + std::to_string(i);
      }
      ASSERT_OK(e->Apply(distinct));
      WriteBatch repeated;
      repeated.Put("r-first", "old");
      for (size_t i = 0; i + 4 < n; ++i) repeated.Put("r" + std::to_string(1000 + i), "x");
      repeated.Delete("d1000");
      repeated.Put("r-first", "new");
      repeated.Put("r-last", "old");
      repeated.Put("r-last", "new");
      for (size_t i = 0; i + 4 < n; ++i) want["r" + std::to_string(1000 + i)] = "x";
      want.erase("d1000");
      want["r-first"] = "new";
      want["r-last"] = "new";
      ASSERT_OK(e->Apply(repeated));
      EXPECT_EQ(ScanAll(*e), KV(want.begin(), want.end()));
    }
    ASSERT_OK_AND_ASSIGN(auto e, Open(sync::SyncMode::kAlways, dir));
    EXPECT_EQ(ScanAll(*e), KV(want.begin(), want.end()));
    EXPECT_EQ(*e->Get("r-first"), "new");
    EXPECT_TRUE(e->Get("d1000").status().IsNotFound());
  }
}

TEST_P(EngineContractTest, ScanVisitsKeysInOrderWithinThePrefixAfterStart) {
  ASSERT_OK_AND_ASSIGN(auto e, Open());
  for (const char* k : {"b/2", "a/1", "b/1", "b/3", "c", "b"}) ASSERT_OK(e->Put(k, k));
  ASSERT_OK(e->Delete("b/3"));
  EXPECT_EQ(ScanAll(*e),
            (KV{{"a/1", "a/1"}, {"b", "b"}, {"b/1", "b/1"}, {"b/2", "b/2"}, {"c", "c"}}));
  ScanOptions o;
  o.prefix = "b/";
  EXPECT_EQ(ScanAll(*e, o), (KV{{"b/1", "b/1"}, {"b/2", "b/2"}}));
  o.start_after = "b/1";
  EXPECT_EQ(ScanAll(*e, o), (KV{{"b/2", "b/2"}}));
  o.keys_only = true;
  o.start_after = "";
  EXPECT_EQ(ScanAll(*e, o), (KV{{"b/1", ""}, {"b/2", ""}}));
}

TEST_P(EngineContractTest, ScanStopsWhenTheCallbackSaysSo) {
  ASSERT_OK_AND_ASSIGN(auto e, Open());
  for (int i = 0; i < 1000; ++i) ASSERT_OK(e->Put("k" + std::to_string(1000 + i), "v"));
  int seen = 0;
  ASSERT_OK(e->Scan({}, [&](std::string_view, std::string_view) { return ++seen < 10; }));
  EXPECT_EQ(seen, 10);
}

TEST_P(EngineContractTest, EverythingSurvivesReopen) {
  {
    ASSERT_OK_AND_ASSIGN(auto e, Open());
    for (int i = 0; i < 500; ++i) ASSERT_OK(e->Put("k" + std::to_string(i), std::to_string(i)));
    for (int i = 0; i < 500; i += 3) ASSERT_OK(e->Delete("k" + std::to_string(i)));
    ASSERT_OK(e->Close());
  }
  ASSERT_OK_AND_ASSIGN(auto e, Open());
  for (int i = 0; i < 500; ++i) {
    auto v = e->Get("k" + std::to_string(i));
    if (i % 3 == 0) {
      EXPECT_TRUE(v.status().IsNotFound()) << i;
    } else {
      ASSERT_TRUE(v.ok()) << i << ": " << v.status().ToString();
      EXPECT_EQ(*v, std::to_string(i));
    }
  }
}

TEST_P(EngineContractTest, CompactKeepsEveryLiveValue) {
  ASSERT_OK_AND_ASSIGN(auto e, Open());
  for (int round = 0; round < 5; ++round) {
    for (int i = 0; i < 200; ++i) {
      ASSERT_OK(e->Put("k" + std::to_string(i), std::to_string(round) + std::string(50, 'v')));
    }
  }
  for (int i = 0; i < 200; i += 2) ASSERT_OK(e->Delete("k" + std::to_string(i)));
  ASSERT_OK(e->Compact());
  ASSERT_OK(e->Close());
  e.reset();
  ASSERT_OK_AND_ASSIGN(auto reopened, Open());
  for (int i = 0; i < 200; ++i) {
    auto v = reopened->Get("k" + std::to_string(i));
    if (i % 2 == 0) {
      EXPECT_TRUE(v.status().IsNotFound()) << i;
    } else {
      EXPECT_EQ(*v, "4" + std::string(50, 'v')) << i;
    }
  }
  EXPECT_EQ(ScanAll(*reopened).size(), 100u);
}

TEST_P(EngineContractTest, SecondOpenOfTheSameDirectoryIsBusy) {
  ASSERT_OK_AND_ASSIGN(auto e, Open());
  auto second = Open();
  ASSERT_FALSE(second.ok());
  EXPECT_TRUE(second.status().IsBusy()) << second.status().ToString();
}

TEST_P(EngineContractTest, AlwaysModeWritesSurviveAPowerCut) {
  {
    ASSERT_OK_AND_ASSIGN(auto e, Open(sync::SyncMode::kAlways));
    ASSERT_OK(e->Put("durable", "yes"));
    fs_.Crash(sync::CrashMode::kDropUnsynced);
  }
  ASSERT_OK_AND_ASSIGN(auto e, Open());
  EXPECT_EQ(*e->Get("durable"), "yes");
}

// Every engine reports its recovery in the same shape (Engine::recovery()): the log's records
// replayed at open, for a writable open and a read-only one alike.
TEST_P(EngineContractTest, TheRecoveryReportCountsTheLogRecordsReplayed) {
  KVFS_SKIP_UNLESS_LOCAL();
  {
    ASSERT_OK_AND_ASSIGN(auto e, Open(sync::SyncMode::kAlways));
    EXPECT_EQ(e->recovery().log.records_replayed, 0u) << e->recovery().Summary();
    for (int i = 0; i < 3; ++i) ASSERT_OK(e->Put("k" + std::to_string(i), "v"));
    // Power lost with the store open: a clean close may fold the log into the engine's files.
    fs_.CrashAtSync(1, sync::CrashMode::kDropUnsynced);
  }
  fs_.Crash(sync::CrashMode::kDropUnsynced);
  EngineOptions o;
  o.read_only = true;
  o.background_work = false;
  {
    ASSERT_OK_AND_ASSIGN(auto r, OpenEngine(GetParam(), &fs_, kDir, o));
    EXPECT_EQ(r->recovery().log.records_replayed, 3u) << r->recovery().Summary();
    EXPECT_NE(r->recovery().Summary().find("3 records replayed"), std::string::npos)
        << r->recovery().Summary();
  }
  ASSERT_OK_AND_ASSIGN(auto e, Open());
  EXPECT_EQ(e->recovery().log.records_replayed, 3u) << e->recovery().Summary();
  EXPECT_FALSE(e->recovery().facts.empty()) << e->recovery().Summary();
}

// --- Damage inside the newest log segment -------------------------------------------------------

// One record of a log segment file, found by walking the format (WAL_FORMAT.md): where it starts,
// its length and the key its batch writes.
struct SegmentRecord {
  uint64_t offset = 0;
  uint64_t size = 0;  // header and payload
  std::string key;
};

std::vector<SegmentRecord> RecordsOf(sync::FileSystem* fs, const std::string& path) {
  std::vector<SegmentRecord> out;
  auto bytes = sync::ReadFileToString(fs, path);
  EXPECT_TRUE(bytes.ok()) << bytes.status().ToString();
  if (!bytes.ok()) return out;
  for (uint64_t off = sync::wal::kSegmentHeaderSize;
       off + sync::wal::kRecordHeaderSize <= bytes->size();) {
    const sync::wal::RecordHeader h = sync::wal::DecodeRecordHeader(bytes->data() + off);
    if (h.crc == 0 && h.length == 0 && h.lsn == 0) break;  // the zeros after the last record
    const std::string_view payload(bytes->data() + off + sync::wal::kRecordHeaderSize, h.length);
    SegmentRecord r{off, sync::wal::RecordSize(h.length), ""};
    EXPECT_OK(ForEachEntry(payload, path, [&](const BatchEntry& e) {
      r.key = std::string(e.key);
      return Status::OK();
    }));
    out.push_back(r);
    off += r.size;
  }
  return out;
}

enum class LogDamage { kFlipByte, kZeroRange, kCutShort };

const char* LogDamageName(LogDamage d) {
  switch (d) {
    case LogDamage::kFlipByte:
      return "a flipped byte";
    case LogDamage::kZeroRange:
      return "a zeroed record";
    case LogDamage::kCutShort:
      return "the segment cut short";
  }
  return "";
}

// Every file of a directory and its bytes.
std::map<std::string, std::string> Snapshot(sync::FileSystem* fs, const std::string& dir) {
  std::map<std::string, std::string> out;
  auto names = fs->ListDir(dir);
  if (!names.ok()) return out;
  for (const std::string& name : *names) {
    auto bytes = sync::ReadFileToString(fs, sync::JoinPath(dir, name));
    out[name] = bytes.ok() ? *bytes : bytes.status().ToString();
  }
  return out;
}

// Damage inside an acknowledged-durable record of the newest log segment, with acknowledged
// records after it, cannot be a torn last write: every open (writable, or read-only as `kvfs
// check` opens) is Corruption naming the segment file and the record's offset, and changes
// nothing. A salvage open serves every key whose record verifies and names the stretch skipped.
TEST_P(EngineContractTest, DamageInsideTheNewestLogSegmentIsAnErrorNamingItAndSalvageSkipsIt) {
  KVFS_SKIP_UNLESS_LOCAL();
  for (LogDamage damage : {LogDamage::kFlipByte, LogDamage::kZeroRange, LogDamage::kCutShort}) {
    SCOPED_TRACE(LogDamageName(damage));
    const std::string dir = std::string(kDir) + "-damage-" + std::to_string(int(damage));
    const std::string wal_dir = sync::JoinPath(dir, "wal");
    std::map<std::string, std::string> written;
    {
      ASSERT_OK_AND_ASSIGN(auto e, Open(sync::SyncMode::kAlways, dir));
      for (int i = 0; i < 30; ++i) {
        const std::string key = "k" + std::to_string(100 + i);
        written[key] = "value " + std::to_string(i) + std::string(40, 'v');
        ASSERT_OK(e->Put(key, written[key]));
      }
      // Power lost with the store open: a clean close may fold the log into the engine's files.
      fs_.CrashAtSync(1, sync::CrashMode::kDropUnsynced);
    }
    fs_.Crash(sync::CrashMode::kDropUnsynced);

    ASSERT_OK_AND_ASSIGN(std::vector<std::string> names, fs_.ListDir(wal_dir));
    uint64_t newest = 0;
    for (const std::string& name : names) {
      if (auto n = sync::wal::ParseSegmentFileName(name)) newest = std::max(newest, *n);
    }
    ASSERT_NE(newest, 0u);
    const std::string segment = sync::JoinPath(wal_dir, sync::wal::SegmentFileName(newest));
    const std::vector<SegmentRecord> records = RecordsOf(&fs_, segment);
    ASSERT_GE(records.size(), 5u);
    const size_t mid = records.size() / 2;
    const SegmentRecord& hit = records[mid];
    switch (damage) {
      case LogDamage::kFlipByte:
        test::FlipByte(&fs_, segment, hit.offset + hit.size - 5);  // in its payload
        break;
      case LogDamage::kZeroRange:
        test::ZeroRange(&fs_, segment, hit.offset, hit.size);
        break;
      case LogDamage::kCutShort:
        test::CutShort(&fs_, segment, hit.offset + hit.size / 2);
        break;
    }
    const auto before = Snapshot(&fs_, wal_dir);

    const std::string offset = "offset " + std::to_string(hit.offset);
    for (bool read_only : {false, true}) {
      SCOPED_TRACE(read_only ? "read-only open" : "writable open");
      EngineOptions o;
      o.sync_mode = sync::SyncMode::kAlways;
      o.segment_size = 8192;
      o.background_work = false;
      o.read_only = read_only;
      auto r = OpenEngine(GetParam(), &fs_, dir, o);
      ASSERT_FALSE(r.ok()) << "opened over the damage";
      EXPECT_TRUE(r.status().IsCorruption()) << r.status().ToString();
      EXPECT_NE(r.status().message().find(segment), std::string::npos) << r.status().ToString();
      EXPECT_NE(r.status().message().find(offset), std::string::npos) << r.status().ToString();
      EXPECT_EQ(Snapshot(&fs_, wal_dir), before) << "the failed open changed the log";
    }

    EngineOptions salvage;
    salvage.read_only = true;
    salvage.salvage = true;
    salvage.background_work = false;
    ASSERT_OK_AND_ASSIGN(auto s, OpenEngine(GetParam(), &fs_, dir, salvage));
    const auto& skipped = s->recovery().log.damage;
    ASSERT_EQ(skipped.size(), 1u) << s->recovery().Summary();
    EXPECT_EQ(skipped[0].segment, newest);
    EXPECT_EQ(skipped[0].offset, hit.offset);
    EXPECT_NE(skipped[0].reason.find(segment), std::string::npos) << skipped[0].reason;
    // The records before the damage verify, and so do those after it unless they were cut off.
    std::map<std::string, std::string> expected = written;
    for (size_t i = mid; i < records.size(); ++i) {
      if (i == mid || damage == LogDamage::kCutShort) expected.erase(records[i].key);
    }
    EXPECT_EQ(ScanAll(*s), KV(expected.begin(), expected.end()));
    EXPECT_TRUE(s->Get(hit.key).status().IsNotFound());
    EXPECT_EQ(Snapshot(&fs_, wal_dir), before) << "the salvage open changed the log";
  }
}

TEST_P(EngineContractTest, NoneModeKeepsOnlyWhatWasSynced) {
  KVFS_SKIP_UNLESS_LOCAL();
  {
    ASSERT_OK_AND_ASSIGN(auto e, Open(sync::SyncMode::kNone));
    ASSERT_OK(e->Put("synced", "1"));
    ASSERT_OK(e->Sync(SyncKind::kData));
    ASSERT_OK(e->Put("unsynced", "2"));
    // Power lost with the store open, before its next sync: nothing its close does becomes
    // durable (a clean close may make every write durable), and the reboot below installs
    // what the disk held.
    fs_.CrashAtSync(1, sync::CrashMode::kDropUnsynced);
  }
  fs_.Crash(sync::CrashMode::kDropUnsynced);
  ASSERT_OK_AND_ASSIGN(auto e, Open());
  EXPECT_EQ(*e->Get("synced"), "1");
  EXPECT_TRUE(e->Get("unsynced").status().IsNotFound());
}

TEST_P(EngineContractTest, FailedSyncRefusesWritesButKeepsReadsAndAcknowledgedData) {
  KVFS_SKIP_UNLESS_LOCAL();
  {
    ASSERT_OK_AND_ASSIGN(auto e, Open(sync::SyncMode::kAlways));
    ASSERT_OK(e->Put("before", "1"));
    fs_.FailSyncAfter(1);
    EXPECT_FALSE(e->Put("failing", "2").ok());
    Status later = e->Put("later", "3");
    EXPECT_TRUE(later.IsFailed()) << later.ToString();
    EXPECT_EQ(later.sys_errno(), EIO);
    // Every engine refuses in the same words (engines/store_failure.h), naming its store.
    EXPECT_NE(later.message().find(std::string(" store ") + kDir + " refuses writes after a"),
              std::string::npos)
        << later.ToString();
    EXPECT_EQ(*e->Get("before"), "1");  // reads go on
    fs_.Crash(sync::CrashMode::kDropUnsynced);
  }
  ASSERT_OK_AND_ASSIGN(auto e, Open());
  EXPECT_EQ(*e->Get("before"), "1");
  EXPECT_TRUE(e->Get("later").status().IsNotFound());
  ASSERT_OK(e->Put("after reopen", "works"));
}

TEST_P(EngineContractTest, NoSpaceFailsTheWriteAndTheStoreRecoversWhenSpaceIsFreed) {
  KVFS_SKIP_UNLESS_LOCAL();
  ASSERT_OK_AND_ASSIGN(auto e, Open());
  ASSERT_OK(e->Put("a", "1"));
  ASSERT_OK_AND_ASSIGN(sync::SpaceInfo space, fs_.GetSpaceInfo("/"));
  fs_.SetSpaceLimit(space.total_bytes - space.free_bytes + 64);
  Status full;
  for (int i = 0; i < 100 && full.ok(); ++i)
    full = e->Put("k" + std::to_string(i), std::string(4000, 'x'));
  EXPECT_TRUE(full.IsNoSpace()) << full.ToString();
  EXPECT_EQ(*e->Get("a"), "1");
  fs_.SetSpaceLimit(UINT64_MAX);
  ASSERT_OK(e->Put("b", "2"));
  EXPECT_EQ(*e->Get("b"), "2");
}

TEST_P(EngineContractTest, ConcurrentReadersAndWritersSeeWholeBatches) {
  ASSERT_OK_AND_ASSIGN(auto e, Open(sync::SyncMode::kNone));
  std::atomic<bool> stop{false};
  std::vector<std::thread> writers;
  for (int t = 0; t < 3; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < 300; ++i) {
        // Both keys of a thread always hold the same version.
        WriteBatch b;
        b.Put("w" + std::to_string(t) + "/a", std::to_string(i));
        b.Put("w" + std::to_string(t) + "/b", std::to_string(i));
        EXPECT_OK(e->Apply(b));
      }
    });
  }
  std::thread reader([&] {
    // A scan is not a snapshot, but no key's version may ever go backwards (a stale value
    // resurrected by out-of-order updates would).
    std::map<std::string, int> last;
    while (!stop) {
      EXPECT_OK(e->Scan({}, [&](std::string_view k, std::string_view v) {
        const int version = std::stoi(std::string(v));
        int& seen = last[std::string(k)];
        EXPECT_GE(version, seen) << k;
        seen = version;
        return true;
      }));
    }
  });
  for (auto& w : writers) w.join();
  stop = true;
  reader.join();
  for (int t = 0; t < 3; ++t) {
    EXPECT_EQ(*e->Get("w" + std::to_string(t) + "/a"), "299");
    EXPECT_EQ(*e->Get("w" + std::to_string(t) + "/b"), "299");
  }
  const EngineStats st = e->stats();
  EXPECT_GE(st.batches, 900u);
  EXPECT_GE(st.puts, 1800u);
}

}  // namespace
}  // namespace kvfs::engines
