// Behaviour of the Bitcask engine, one test per behaviour and per failure path. Most run on the
// fault-injecting file system (fast, and it can cut the power or fail a sync); a few on the
// real disk. Crash tests at every sync point of every workload are in engine_crash_test.cc;
// here a power cut is placed by hand where a behaviour needs one.
#include "engines/bitcask/bitcask.h"

#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <thread>

#include "engines/bitcask/format.h"
#include "sync/durable.h"
#include "sync/fault_file_system.h"
#include "sync/posix_file_system.h"
#include "sync/wal_format.h"
#include "tests/engines/crash_oracle.h"
#include "tests/test_util.h"

namespace kvfs::engines {
namespace {

using sync::CrashMode;
using sync::FaultFileSystem;
using sync::SyncMode;

constexpr char kDir[] = "/data/bc";
constexpr char kWalDir[] = "/data/bc/wal";
constexpr char kMergedDir[] = "/data/bc/merged";
constexpr char kManifest[] = "/data/bc/MANIFEST";

EngineOptions Opts(SyncMode mode = SyncMode::kAlways, uint64_t segment_size = 64 << 10) {
  EngineOptions o;
  o.sync_mode = mode;
  o.segment_size = segment_size;
  o.batch_interval = std::chrono::milliseconds(1);
  o.background_work = false;
  return o;
}

BitcaskOptions NoHints() {
  BitcaskOptions b;
  b.use_hints = false;
  return b;
}

Result<std::unique_ptr<Engine>> Open(sync::FileSystem* fs, const EngineOptions& o = Opts(),
                                     const BitcaskOptions& b = BitcaskOptions(),
                                     BitcaskRecoveryReport* report = nullptr,
                                     const std::string& dir = kDir) {
  return OpenBitcaskWith(fs, dir, o, b, report);
}

// Every live key and value, through Scan.
std::map<std::string, std::string> Dump(Engine* e) {
  std::map<std::string, std::string> out;
  Status s = e->Scan({}, [&](std::string_view k, std::string_view v) {
    out.emplace(std::string(k), std::string(v));
    return true;
  });
  EXPECT_OK(s);
  return out;
}

std::string Key(int i) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "key%06d", i);
  return buf;
}

std::vector<std::string> Names(sync::FileSystem* fs, const std::string& dir) {
  auto names = fs->ListDir(dir);
  return names.ok() ? *names : std::vector<std::string>{};
}

size_t CountSuffix(sync::FileSystem* fs, const std::string& dir, std::string_view suffix) {
  size_t n = 0;
  for (const std::string& name : Names(fs, dir)) n += name.ends_with(suffix) ? 1 : 0;
  return n;
}

using test::FlipByte;

std::string FirstMergedFile(sync::FileSystem* fs, std::string_view suffix) {
  for (const std::string& name : Names(fs, kMergedDir)) {
    if (name.ends_with(suffix)) return sync::JoinPath(kMergedDir, name);
  }
  return "";
}

// --- File formats (FORMAT.md) -----------------------------------------------------------------

TEST(BitcaskFormat, ManifestRoundTrips) {
  bitcask::Manifest m;
  m.merged_lsn = 1234;
  m.next_file_number = 9;
  m.files = {3, 5, 8};
  ASSERT_OK_AND_ASSIGN(bitcask::Manifest back,
                       bitcask::DecodeManifest(bitcask::EncodeManifest(m), "M"));
  EXPECT_EQ(back.merged_lsn, 1234u);
  EXPECT_EQ(back.next_file_number, 9u);
  EXPECT_EQ(back.files, m.files);
}

TEST(BitcaskFormat, EveryDamagedManifestByteIsCorruptionNamingIt) {
  bitcask::Manifest m;
  m.merged_lsn = 7;
  m.next_file_number = 3;
  m.files = {1, 2};
  const std::string good = bitcask::EncodeManifest(m);
  for (size_t i = 0; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] ^= 0x01;
    auto r = bitcask::DecodeManifest(bad, "/x/MANIFEST");
    ASSERT_TRUE(r.status().IsCorruption()) << "byte " << i;
    EXPECT_NE(r.status().message().find("/x/MANIFEST"), std::string::npos);
  }
  for (size_t n = 0; n < good.size(); ++n) {
    EXPECT_TRUE(bitcask::DecodeManifest(good.substr(0, n), "M").status().IsCorruption()) << n;
  }
}

TEST(BitcaskFormat, HintFileRoundTrips) {
  bitcask::HintBuilder b(4);
  b.Add("alpha", 44, 30, 17);
  b.Add(std::string("\0bin", 4), 74, 20, 18);
  ASSERT_OK_AND_ASSIGN(auto entries, bitcask::DecodeHintFile(b.Finish(), 4, "H"));
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].key, "alpha");
  EXPECT_EQ(entries[0].entry_offset, 44u);
  EXPECT_EQ(entries[0].entry_size, 30u);
  EXPECT_EQ(entries[0].lsn, 17u);
  EXPECT_EQ(entries[1].key, std::string("\0bin", 4));
}

TEST(BitcaskFormat, EveryDamagedHintByteIsCorruption) {
  bitcask::HintBuilder b(4);
  b.Add("alpha", 44, 30, 17);
  const std::string good = b.Finish();
  for (size_t i = 0; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] ^= 0x01;
    EXPECT_TRUE(bitcask::DecodeHintFile(bad, 4, "H").status().IsCorruption()) << "byte " << i;
  }
  for (size_t n = 0; n < good.size(); ++n) {
    EXPECT_TRUE(bitcask::DecodeHintFile(good.substr(0, n), 4, "H").status().IsCorruption()) << n;
  }
  // A valid hint of another data file is refused too.
  EXPECT_TRUE(bitcask::DecodeHintFile(good, 5, "H").status().IsCorruption());
}

TEST(BitcaskFormat, DataHeaderAndRecordPrefixAreChecked) {
  const std::string h = bitcask::EncodeDataHeader(12);
  ASSERT_EQ(h.size(), bitcask::kDataHeaderSize);
  EXPECT_OK(bitcask::CheckDataHeader(h, 12, "D"));
  EXPECT_TRUE(bitcask::CheckDataHeader(h, 13, "D").IsCorruption());
  for (size_t i = 0; i < 28; ++i) {
    std::string bad = h;
    bad[i] ^= 0x01;
    EXPECT_TRUE(bitcask::CheckDataHeader(bad, 12, "D").IsCorruption()) << "byte " << i;
  }
  std::string entry;
  EncodeEntry(&entry, EntryKind::kPut, "k", "v");
  std::string record;
  bitcask::AppendRecord(&record, 99, entry);
  ASSERT_EQ(record.size(), bitcask::kRecordPrefixSize + entry.size());
  EXPECT_EQ(bitcask::DecodeRecordPrefix(record.data()), std::optional<uint64_t>(99));
  for (size_t i = 0; i < bitcask::kRecordPrefixSize + 4; ++i) {
    std::string bad = record;
    bad[i] ^= 0x01;
    EXPECT_EQ(bitcask::DecodeRecordPrefix(bad.data()), std::nullopt) << "byte " << i;
  }
}

TEST(BitcaskFormat, FileNamesParseOnlyTheirExactForm) {
  EXPECT_EQ(bitcask::DataFileName(42), "0000000000000042.data");
  EXPECT_EQ(bitcask::HintFileName(42), "0000000000000042.hint");
  EXPECT_EQ(bitcask::ParseDataFileName("0000000000000042.data"), std::optional<uint64_t>(42));
  EXPECT_EQ(bitcask::ParseHintFileName("0000000000000042.hint"), std::optional<uint64_t>(42));
  EXPECT_EQ(bitcask::ParseDataFileName("0000000000000042.data.tmp"), std::nullopt);
  EXPECT_EQ(bitcask::ParseDataFileName("0000000000000042.hint"), std::nullopt);
  EXPECT_EQ(bitcask::ParseDataFileName("00000000000000x2.data"), std::nullopt);
  EXPECT_EQ(bitcask::ParseDataFileName("42.data"), std::nullopt);
}

// --- Basic operations -------------------------------------------------------------------------

TEST(Bitcask, PutThenGetReturnsTheValue) {
  FaultFileSystem fs(1);
  ASSERT_OK_AND_ASSIGN(auto e, Open(&fs));
  ASSERT_OK(e->Put("users/alice", "hello"));
  ASSERT_OK_AND_ASSIGN(std::string v, e->Get("users/alice"));
  EXPECT_EQ(v, "hello");
  EXPECT_EQ(e->name(), "bitcask");
}

TEST(Bitcask, OverwriteReturnsTheLatestValue) {
  FaultFileSystem fs(2);
  ASSERT_OK_AND_ASSIGN(auto e, Open(&fs));
  ASSERT_OK(e->Put("k", "one"));
  ASSERT_OK(e->Put("k", "two"));
  ASSERT_OK_AND_ASSIGN(std::string v, e->Get("k"));
  EXPECT_EQ(v, "two");
  EXPECT_EQ(e->stats().live_keys, 1u);
}

TEST(Bitcask, DeletedKeyIsNotFound) {
  FaultFileSystem fs(3);
  ASSERT_OK_AND_ASSIGN(auto e, Open(&fs));
  ASSERT_OK(e->Put("k", "v"));
  ASSERT_OK(e->Delete("k"));
  EXPECT_TRUE(e->Get("k").status().IsNotFound());
  EXPECT_EQ(e->stats().live_keys, 0u);
}

TEST(Bitcask, DeletingAMissingKeyIsNotAnError) {
  FaultFileSystem fs(4);
  ASSERT_OK_AND_ASSIGN(auto e, Open(&fs));
  ASSERT_OK(e->Delete("never"));
  EXPECT_TRUE(e->Get("never").status().IsNotFound());
}

TEST(Bitcask, MissingKeyIsNotFoundAndNotCountedAsAnError) {
  FaultFileSystem fs(5);
  ASSERT_OK_AND_ASSIGN(auto e, Open(&fs));
  auto r = e->Get("nope");
  EXPECT_TRUE(r.status().IsNotFound()) << r.status().ToString();
  EXPECT_EQ(e->stats().errors, 0u);
}

TEST(Bitcask, EmptyAndBinaryValuesRoundTrip) {
  FaultFileSystem fs(6);
  ASSERT_OK_AND_ASSIGN(auto e, Open(&fs));
  const std::string binary("\0\xff\0x", 4);
  ASSERT_OK(e->Put("empty", ""));
  ASSERT_OK(e->Put("bin", binary));
  ASSERT_OK_AND_ASSIGN(std::string v1, e->Get("empty"));
  ASSERT_OK_AND_ASSIGN(std::string v2, e->Get("bin"));
  EXPECT_EQ(v1, "");
  EXPECT_EQ(v2, binary);
}

TEST(Bitcask, InvalidKeysAreRejectedBeforeAnythingIsWritten) {
  FaultFileSystem fs(7);
  ASSERT_OK_AND_ASSIGN(auto e, Open(&fs));
  EXPECT_EQ(e->Put("", "v").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(e->Put(std::string(kMaxKeySize + 1, 'k'), "v").code(), StatusCode::kInvalidArgument);
  WriteBatch b;
  b.Put("good", "v");
  b.Delete("");
  EXPECT_EQ(e->Apply(b).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(e->Get("good").status().IsNotFound());  // the valid part was not applied either
  EXPECT_EQ(e->stats().wal.appends, 0u);
  ASSERT_OK(e->Put(std::string(kMaxKeySize, 'k'), "largest key"));
  ASSERT_OK_AND_ASSIGN(std::string v, e->Get(std::string(kMaxKeySize, 'k')));
  EXPECT_EQ(v, "largest key");
}

TEST(Bitcask, EmptyBatchIsANoOp) {
  FaultFileSystem fs(8);
  ASSERT_OK_AND_ASSIGN(auto e, Open(&fs));
  ASSERT_OK(e->Apply(WriteBatch()));
  EXPECT_EQ(e->stats().wal.appends, 0u);
}

TEST(Bitcask, BatchAppliesItsEntriesInOrder) {
  FaultFileSystem fs(9);
  ASSERT_OK_AND_ASSIGN(auto e, Open(&fs));
  ASSERT_OK(e->Put("gone", "x"));
  WriteBatch b;
  b.Put("a", "1");
  b.Put("a", "2");  // the later entry of one batch wins
  b.Delete("gone");
  b.Put("b", "3");
  ASSERT_OK(e->Apply(b));
  EXPECT_EQ(Dump(e.get()), (std::map<std::string, std::string>{{"a", "2"}, {"b", "3"}}));
  EngineStats s = e->stats();
  EXPECT_EQ(s.batches, 2u);
  EXPECT_EQ(s.puts, 4u);
  EXPECT_EQ(s.deletes, 1u);
}

TEST(Bitcask, BatchIsVisibleAllOrNoneToAConcurrentReader) {
  FaultFileSystem fs(10);
  ASSERT_OK_AND_ASSIGN(auto e, Open(&fs, Opts(SyncMode::kNone)));
  constexpr int kKeys = 8;
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (int round = 1; round <= 300; ++round) {
      WriteBatch b;
      for (int k = 0; k < kKeys; ++k) b.Put(Key(k), std::to_string(round));
      ASSERT_OK(e->Apply(b));
    }
    stop = true;
  });
  int checks = 0;
  while (!stop || checks == 0) {
    std::map<std::string, std::string> seen = Dump(e.get());
    if (seen.empty()) continue;
    ASSERT_EQ(seen.size(), static_cast<size_t>(kKeys));
    // Scan is per-key consistent only, so values may differ across a chunk boundary; but the
    // whole range is one chunk here, read under one lock hold, so it must be one batch.
    for (const auto& [k, v] : seen) ASSERT_EQ(v, seen.begin()->second) << k;
    ++checks;
  }
  writer.join();
  EXPECT_GT(checks, 0);
}

TEST(Bitcask, BatchIsWholeOrAbsentAfterAPowerCut) {
  for (CrashMode mode :
       {CrashMode::kDropUnsynced, CrashMode::kKeepPrefix, CrashMode::kTearLastWrite}) {
    FaultFileSystem fs(11);
    constexpr int kKeys = 5;
    {
      ASSERT_OK_AND_ASSIGN(auto e, Open(&fs, Opts(SyncMode::kNone, 4096)));
      for (int round = 1; round <= 60; ++round) {
        WriteBatch b;
        for (int k = 0; k < kKeys; ++k) b.Put(Key(k), std::to_string(round) + std::string(50, 'x'));
        ASSERT_OK(e->Apply(b));
        if (round == 20) ASSERT_OK(e->Sync(SyncKind::kData));
      }
      fs.Crash(mode);
    }
    ASSERT_OK_AND_ASSIGN(auto e, Open(&fs, Opts(SyncMode::kNone, 4096)));
    std::map<std::string, std::string> seen = Dump(e.get());
    ASSERT_EQ(seen.size(), static_cast<size_t>(kKeys)) << CrashModeName(mode);
    const std::string v = seen.begin()->second;
    for (const auto& [k, value] : seen) EXPECT_EQ(value, v) << k << " " << CrashModeName(mode);
    EXPECT_GE(std::stoi(v), 20) << CrashModeName(mode);  // the synced batch survived
  }
}

// --- Scans ------------------------------------------------------------------------------------

class BitcaskScan : public ::testing::Test {
 protected:
  void SetUp() override {
    auto e = Open(&fs_);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    e_ = std::move(e).value();
    for (const char* k : {"a", "b/1", "b/2", "b/3", "ba", "c"}) {
      ASSERT_OK(e_->Put(k, std::string("v:") + k));
    }
  }
  std::vector<std::string> Keys(const ScanOptions& o, size_t stop_after = SIZE_MAX) {
    std::vector<std::string> keys;
    EXPECT_OK(e_->Scan(o, [&](std::string_view k, std::string_view v) {
      EXPECT_EQ(v, o.keys_only ? std::string() : "v:" + std::string(k));
      keys.emplace_back(k);
      return keys.size() < stop_after;
    }));
    return keys;
  }
  FaultFileSystem fs_{12};
  std::unique_ptr<Engine> e_;
};

TEST_F(BitcaskScan, VisitsEveryKeyInOrderWithValues) {
  EXPECT_EQ(Keys({}), (std::vector<std::string>{"a", "b/1", "b/2", "b/3", "ba", "c"}));
}

TEST_F(BitcaskScan, PrefixLimitsTheKeys) {
  ScanOptions o;
  o.prefix = "b/";
  EXPECT_EQ(Keys(o), (std::vector<std::string>{"b/1", "b/2", "b/3"}));
  o.prefix = "zz";
  EXPECT_TRUE(Keys(o).empty());
}

TEST_F(BitcaskScan, StartAfterSkipsKeysUpToAndIncludingIt) {
  ScanOptions o;
  o.prefix = "b/";
  o.start_after = "b/1";
  EXPECT_EQ(Keys(o), (std::vector<std::string>{"b/2", "b/3"}));
  o.start_after = "a";  // before the prefix: the whole prefix
  EXPECT_EQ(Keys(o), (std::vector<std::string>{"b/1", "b/2", "b/3"}));
  o.start_after = "b/3";
  EXPECT_TRUE(Keys(o).empty());
  o.prefix = "";
  o.start_after = "b/25";  // need not be a key
  EXPECT_EQ(Keys(o), (std::vector<std::string>{"b/3", "ba", "c"}));
}

TEST_F(BitcaskScan, KeysOnlyGivesEmptyValuesAndReadsNothing) {
  ScanOptions o;
  o.keys_only = true;
  const uint64_t read_before = e_->stats().bytes_read;
  EXPECT_EQ(Keys(o).size(), 6u);
  EXPECT_EQ(e_->stats().bytes_read, read_before);
}

TEST_F(BitcaskScan, StopsWhenTheCallbackReturnsFalse) {
  EXPECT_EQ(Keys({}, 2), (std::vector<std::string>{"a", "b/1"}));
}

TEST_F(BitcaskScan, SkipsDeletedKeys) {
  ASSERT_OK(e_->Delete("b/2"));
  ASSERT_OK(e_->Delete("a"));
  EXPECT_EQ(Keys({}), (std::vector<std::string>{"b/1", "b/3", "ba", "c"}));
}

TEST(Bitcask, ScanCrossesChunksAndLongRunsOfTombstones) {
  FaultFileSystem fs(13);
  ASSERT_OK_AND_ASSIGN(auto e, Open(&fs, Opts(SyncMode::kNone, 1 << 20)));
  for (int i = 0; i < 3000; ++i) ASSERT_OK(e->Put(Key(i), std::to_string(i)));
  for (int i = 100; i < 2900; ++i) ASSERT_OK(e->Delete(Key(i)));
  std::vector<int> seen;
  ASSERT_OK(e->Scan({}, [&](std::string_view k, std::string_view v) {
    EXPECT_EQ(Key(std::stoi(std::string(v))), k);
    seen.push_back(std::stoi(std::string(v)));
    return true;
  }));
  ASSERT_EQ(seen.size(), 200u);
  for (size_t i = 1; i < seen.size(); ++i) EXPECT_LT(seen[i - 1], seen[i]);
}

TEST(Bitcask, ScanSeesEachKeyOnceInOrderWhileWritersRun) {
  FaultFileSystem fs(14);
  ASSERT_OK_AND_ASSIGN(auto e, Open(&fs, Opts(SyncMode::kNone, 1 << 20)));
  constexpr int kKeys = 1000;
  for (int i = 0; i < kKeys; i += 2) ASSERT_OK(e->Put(Key(i), "0"));  // the even keys are stable
  std::atomic<bool> stop{false};
  std::vector<std::thread> writers;
  for (int t = 0; t < 2; ++t) {
    writers.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int n = 1; !stop; ++n) {
        const int k = static_cast<int>(rng() % kKeys) | 1;  // odd keys come and go
        Status s = (n % 3 == 0) ? e->Delete(Key(k)) : e->Put(Key(k), std::to_string(n));
        ASSERT_OK(s);
        // Rewriting a stable key with its own value must never make it disappear.
        if (n % 5 == 0) ASSERT_OK(e->Put(Key((k + 1) % kKeys), "0"));
      }
    });
  }
  for (int round = 0; round < 20; ++round) {
    std::string last;
    int even = 0;
    ASSERT_OK(e->Scan({}, [&](std::string_view k, std::string_view) {
      EXPECT_LT(last, k);
      last = std::string(k);
      even += (std::stoi(last.substr(3)) % 2 == 0) ? 1 : 0;
      return true;
    }));
    EXPECT_EQ(even, kKeys / 2);
  }
  stop = true;
  for (auto& w : writers) w.join();
}

// --- Durability -------------------------------------------------------------------------------

TEST(Bitcask, ReopenRestoresEveryKeyAndDeletion) {
  FaultFileSystem fs(15);
  std::map<std::string, std::string> expected;
  {
    ASSERT_OK_AND_ASSIGN(auto e, Open(&fs));
    for (int i = 0; i < 100; ++i) ASSERT_OK(e->Put(Key(i), "v" + std::to_string(i)));
    for (int i = 0; i < 100; i += 3) ASSERT_OK(e->Delete(Key(i)));
    for (int i = 0; i < 100; i += 7) ASSERT_OK(e->Put(Key(i), "again"));
    expected = Dump(e.get());
    ASSERT_OK(e->Close());
  }
  ASSERT_OK_AND_ASSIGN(auto e, Open(&fs));
  EXPECT_EQ(Dump(e.get()), expected);
  EXPECT_EQ(e->stats().live_keys, expected.size());
}

TEST(Bitcask, AlwaysModeWritesSurviveAPowerCutWithoutSync) {
  FaultFileSystem fs(16);
  {
    ASSERT_OK_AND_ASSIGN(auto e, Open(&fs));
    ASSERT_OK(e->Put("k", "durable"));
    fs.Crash(CrashMode::kDropUnsynced);
  }
  ASSERT_OK_AND_ASSIGN(auto e, Open(&fs));
  ASSERT_OK_AND_ASSIGN(std::string v, e->Get("k"));
  EXPECT_EQ(v, "durable");
}

TEST(Bitcask, PowerCutInNoneModeLosesUnsyncedWritesAndKeepsSyncedOnes) {
  FaultFileSystem fs(17);
  {
    ASSERT_OK_AND_ASSIGN(auto e, Open(&fs, Opts(SyncMode::kNone)));
    ASSERT_OK(e->Put("synced", "1"));
    ASSERT_OK(e->Sync(SyncKind::kData));
    ASSERT_OK(e->Put("unsynced", "2"));
    ASSERT_OK_AND_ASSIGN(std::string v, e->Get("unsynced"));  // readable before the cut
    EXPECT_EQ(v, "2");
    fs.Crash(CrashMode::kDropUnsynced);
  }
  ASSERT_OK_AND_ASSIGN(auto e, Open(&fs, Opts(SyncMode::kNone)));
  EXPECT_EQ(Dump(e.get()), (std::map<std::string, std::string>{{"synced", "1"}}));
}

TEST(Bitcask, FullSyncMakesEverythingDurable) {
  FaultFileSystem fs(19);
  {
    ASSERT_OK_AND_ASSIGN(auto e, Open(&fs, Opts(SyncMode::kNone)));
    ASSERT_OK(e->Put("a", "1"));
    ASSERT_OK(e->Sync(SyncKind::kFull));
    EXPECT_EQ(e->stats().syncs, 1u);
    fs.Crash(CrashMode::kDropUnsynced);
  }
  ASSERT_OK_AND_ASSIGN(auto e, Open(&fs, Opts(SyncMode::kNone)));
  EXPECT_EQ(Dump(e.get()).size(), 1u);
}

TEST(Bitcask, WritesRotateAcrossManySegmentsAndAllReadBack) {
  FaultFileSystem fs(20);
  {
    ASSERT_OK_AND_ASSIGN(auto e, Open(&fs, Opts(SyncMode::kNone, 4096)));
    for (int i = 0; i < 500; ++i) ASSERT_OK(e->Put(Key(i), std::string(100, 'a' + i % 26)));
    EXPECT_GT(e->stats().wal.segments_created, 10u);
    for (int i = 0; i < 500; ++i) {
      ASSERT_OK_AND_ASSIGN(std::string v, e->Get(Key(i)));  // read from sealed segments too
      EXPECT_EQ(v, std::string(100, 'a' + i % 26));
    }
  }
  EXPECT_GT(CountSuffix(&fs, kWalDir, ".wal"), 10u);
  ASSERT_OK_AND_ASSIGN(auto e, Open(&fs, Opts(SyncMode::kNone, 4096)));
  auto all = Dump(e.get());
  ASSERT_EQ(all.size(), 500u);
  EXPECT_EQ(all[Key(499)], std::string(100, 'a' + 499 % 26));
}

TEST(Bitcask, ValueLargerThanASegmentIsStoredWhole) {
  FaultFileSystem fs(21);
  const std::string big(20000, 'B');
  {
    ASSERT_OK_AND_ASSIGN(auto e, Open(&fs, Opts(SyncMode::kAlways, 4096)));
    ASSERT_OK(e->Put("big", big));
    ASSERT_OK(e->Put("small", "s"));
    ASSERT_OK(e->Compact());
  }
  ASSERT_OK_AND_ASSIGN(auto e, Open(&fs, Opts(SyncMode::kAlways, 4096)));
  ASSERT_OK_AND_ASSIGN(std::string v, e->Get("big"));
  EXPECT_EQ(v, big);
}

// --- Merge ------------------------------------------------------------------------------------

TEST(Bitcask, MergeRemovesOldSegmentsAndKeepsEveryValue) {
  FaultFileSystem fs(30);
  ASSERT_OK_AND_ASSIGN(auto e, Open(&fs, Opts(SyncMode::kNone, 4096)));
  for (int round = 0; round < 5; ++round) {
    for (int i = 0; i < 50; ++i) ASSERT_OK(e->Put(Key(i), std::to_string(round) + "-" + Key(i)));
  }
  const size_t segments_before = CountSuffix(&fs, kWalDir, ".wal");
  ASSERT_GT(segments_before, 3u);
  auto before = Dump(e.get());
  ASSERT_OK(e->Compact());
  EXPECT_EQ(e->stats().compactions, 1u);
  // At most the active segment (which may hold merged records too) and the prepared next one.
  EXPECT_LE(CountSuffix(&fs, kWalDir, ".wal"), 2u);
  EXPECT_GE(CountSuffix(&fs, kMergedDir, ".data"), 1u);
  EXPECT_EQ(CountSuffix(&fs, kMergedDir, ".data"), CountSuffix(&fs, kMergedDir, ".hint"));
  EXPECT_EQ(Dump(e.get()), before);
  for (int i = 0; i < 50; ++i) {
    ASSERT_OK_AND_ASSIGN(std::string v, e->Get(Key(i)));
    EXPECT_EQ(v, "4-" + Key(i));
  }
}

TEST(Bitcask, MergeReclaimsTheSpaceOfOverwrittenValues) {
  FaultFileSystem fs(31);
  ASSERT_OK_AND_ASSIGN(auto e, Open(&fs, Opts(SyncMode::kNone, 4096)));
  for (int round = 0; round < 20; ++round) {
    for (int i = 0; i < 10; ++i) ASSERT_OK(e->Put(Key(i), std::string(200, 'a' + round)));
  }
  ASSERT_OK(e->Compact());
  uint64_t merged = 0;
  for (const std::string& name : Names(&fs, kMergedDir)) {
    if (!name.ends_with(".data")) continue;
    ASSERT_OK_AND_ASSIGN(uint64_t size, fs.FileSize(sync::JoinPath(kMergedDir, name)));
    merged += size;
  }
  // Ten live values of ~230 bytes each, not two hundred.
  EXPECT_LT(merged, 10u * 300);
  EXPECT_GT(merged, 10u * 200);
}

TEST(Bitcask, MergeWithNothingNewIsANoOp) {
  FaultFileSystem fs(32);
  ASSERT_OK_AND_ASSIGN(auto e, Open(&fs));
  ASSERT_OK(e->Compact());  // empty store
  ASSERT_OK(e->Put("k", "v"));
  ASSERT_OK(e->Compact());
  const auto names = Names(&fs, kMergedDir);
  ASSERT_OK(e->Compact());
  EXPECT_EQ(Names(&fs, kMergedDir), names);
  EXPECT_EQ(e->stats().compactions, 1u);
}

TEST(Bitcask, MergeDropsTombstonesAndDeletedKeysStayDeleted) {
  FaultFileSystem fs(33);
  BitcaskRecoveryReport report;
  {
    ASSERT_OK_AND_ASSIGN(auto e, Open(&fs, Opts(SyncMode::kAlways, 4096)));
    for (int i = 0; i < 40; ++i) ASSERT_OK(e->Put(Key(i), "v"));
    ASSERT_OK(e->Compact());  // the keys are now in merged files
    for (int i = 0; i < 40; i += 2) ASSERT_OK(e->Delete(Key(i)));
    ASSERT_OK(e->Delete("never-existed"));
    ASSERT_OK(e->Compact());  // the tombstones are folded in and dropped
    EXPECT_EQ(e->stats().live_keys, 20u);
  }
  ASSERT_OK_AND_ASSIGN(auto e, Open(&fs, Opts(SyncMode::kAlways, 4096), BitcaskOptions(), &report));
  EXPECT_EQ(report.keys_from_hints, 20u);  // the merged files hold only the live keys
  EXPECT_EQ(e->recovery().log.records_replayed, 0u);
  auto all = Dump(e.get());
  EXPECT_EQ(all.size(), 20u);
  for (int i = 0; i < 40; i += 2) EXPECT_TRUE(e->Get(Key(i)).status().IsNotFound());
}

TEST(Bitcask, WritesMadeDuringAMergeAreNotLost) {
  FaultFileSystem fs(34);
  std::map<std::string, std::string> expected;
  {
    ASSERT_OK_AND_ASSIGN(auto e, Open(&fs, Opts(SyncMode::kNone, 4096)));
    for (int i = 0; i < 200; ++i) ASSERT_OK(e->Put(Key(i), "old"));
    std::atomic<bool> stop{false};
    std::thread merger([&] {
      while (!stop) ASSERT_OK(e->Compact());
    });
    // Writes go on until several merges finished meanwhile, however the threads are scheduled.
    for (int n = 0; n < 2000 || e->stats().compactions < 3; ++n) {
      const std::string k = Key(n % 300);
      if (n % 7 == 0) {
        ASSERT_OK(e->Delete(k));
        expected.erase(k);
      } else {
        ASSERT_OK(e->Put(k, std::to_string(n)));
        expected[k] = std::to_string(n);
      }
    }
    stop = true;
    merger.join();
    for (int i = 0; i < 200; ++i) {
      if (!expected.count(Key(i)) && e->Get(Key(i)).ok()) expected[Key(i)] = "old";
    }
    EXPECT_GE(e->stats().compactions, 3u);
    EXPECT_EQ(Dump(e.get()), expected);
    ASSERT_OK(e->Close());
  }
  ASSERT_OK_AND_ASSIGN(auto e, Open(&fs, Opts(SyncMode::kNone, 4096)));
  EXPECT_EQ(Dump(e.get()), expected);
}

// A FaultFileSystem that calls a hook when a file whose name ends in `suffix` is created:
// a way to act at an exact point inside a merge.
class HookedFileSystem : public FaultFileSystem {
 public:
  using FaultFileSystem::FaultFileSystem;
  std::function<void()> on_create;
  std::string suffix;
  Result<std::unique_ptr<sync::WritableFile>> DoNewWritableFile(const std::string& path,
                                                                sync::CreateMode mode) override {
    if (on_create && path.ends_with(suffix)) std::exchange(on_create, nullptr)();
    return FaultFileSystem::DoNewWritableFile(path, mode);
  }
};

TEST(Bitcask, UnsyncedWriteThatSupersedesAMergedValueIsDurableBeforeTheSwitch) {
  // The merge walks the keydir in chunks. A key overwritten after the merge began, but before
  // the walk reached it, is not copied: after the MANIFEST switch only the newer log record
  // stands for it. Here that record is unsynced (mode none) when it is written, the power is
  // cut right after the merge, and the key must still be there.
  HookedFileSystem fs(37);
  {
    ASSERT_OK_AND_ASSIGN(auto e, Open(&fs, Opts(SyncMode::kNone)));
    for (int i = 0; i < 600; ++i) ASSERT_OK(e->Put(Key(i), "old"));  // over two chunks
    ASSERT_OK(e->Sync(SyncKind::kData));
    fs.suffix = ".data.tmp";  // the first merged file: created after the first chunk is read
    fs.on_create = [&] { ASSERT_OK(e->Put(Key(599), "new")); };
    ASSERT_OK(e->Compact());
    EXPECT_EQ(fs.on_create, nullptr);  // the hook ran
    fs.Crash(CrashMode::kDropUnsynced);
  }
  ASSERT_OK_AND_ASSIGN(auto e, Open(&fs, Opts(SyncMode::kNone)));
  ASSERT_OK_AND_ASSIGN(std::string v, e->Get(Key(599)));
  EXPECT_EQ(v, "new");
  EXPECT_EQ(Dump(e.get()).size(), 600u);
}

TEST(Bitcask, CorruptValueInTheLogIsCorruptionNamingTheSegment) {
  FaultFileSystem fs(39);
  ASSERT_OK_AND_ASSIGN(auto e, Open(&fs));
  ASSERT_OK(e->Put("k", "some value"));
  auto names = Names(&fs, kWalDir);
  ASSERT_FALSE(names.empty());
  // The first record of the first segment: header, record header, then the entry.
  const uint64_t value_at =
      sync::wal::kSegmentHeaderSize + sync::wal::kRecordHeaderSize + kEntryHeaderSize + 1;
  FlipByte(&fs, sync::JoinPath(kWalDir, names[0]), value_at);
  auto r = e->Get("k");
  ASSERT_TRUE(r.status().IsCorruption()) << r.status().ToString();
  EXPECT_NE(r.status().message().find(names[0]), std::string::npos) << r.status().ToString();
  EXPECT_NE(r.status().message().find("offset " + std::to_string(value_at - kEntryHeaderSize - 1)),
            std::string::npos)
      << r.status().ToString();
}

TEST(Bitcask, ReopenAfterMergeFromHintsAndByScanGivesIdenticalStores) {
  FaultFileSystem fs(35);
  BitcaskOptions small;
  small.merged_file_size = 2048;  // several merged files
  {
    ASSERT_OK_AND_ASSIGN(auto e, Open(&fs, Opts(SyncMode::kNone, 4096), small));
    for (int i = 0; i < 300; ++i) ASSERT_OK(e->Put(Key(i % 120), std::to_string(i)));
    for (int i = 0; i < 120; i += 5) ASSERT_OK(e->Delete(Key(i)));
    ASSERT_OK(e->Compact());
    for (int i = 0; i < 30; ++i) ASSERT_OK(e->Put(Key(i), "after merge"));  // log on top
    ASSERT_OK(e->Close());
  }
  BitcaskRecoveryReport with_hints, by_scan;
  std::map<std::string, std::string> a, b;
  {
    ASSERT_OK_AND_ASSIGN(auto e, Open(&fs, Opts(SyncMode::kNone, 4096), small, &with_hints));
    a = Dump(e.get());
  }
  {
    BitcaskOptions scan = small;
    scan.use_hints = false;
    ASSERT_OK_AND_ASSIGN(auto e, Open(&fs, Opts(SyncMode::kNone, 4096), scan, &by_scan));
    b = Dump(e.get());
  }
  EXPECT_EQ(a, b);
  EXPECT_EQ(a.size(), 102u);  // 120 keys, 24 deleted, 6 of them written again
  EXPECT_GT(with_hints.merged_files, 1u);
  EXPECT_EQ(with_hints.hint_files_used, with_hints.merged_files);
  EXPECT_EQ(with_hints.entries_scanned, 0u);
  EXPECT_EQ(by_scan.hint_files_used, 0u);
  EXPECT_EQ(by_scan.entries_scanned, with_hints.keys_from_hints);
  EXPECT_EQ(by_scan.merged_lsn, with_hints.merged_lsn);
}

TEST(Bitcask, MergeInterruptedByAPowerCutAtAnySyncLeavesTheOldOrTheNewState) {
  // Count the syncs of one merge, then cut the power at each of them in turn.
  auto workload = [](Engine* e) -> Status {
    for (int i = 0; i < 60; ++i) KVFS_RETURN_IF_ERROR(e->Put(Key(i % 25), std::to_string(i)));
    KVFS_RETURN_IF_ERROR(e->Delete(Key(3)));
    return Status::OK();
  };
  BitcaskOptions small;
  small.merged_file_size = 512;
  uint64_t merge_syncs = 0;
  std::map<std::string, std::string> expected;
  {
    FaultFileSystem fs(36);
    ASSERT_OK_AND_ASSIGN(auto e, Open(&fs, Opts(SyncMode::kAlways, 4096), small));
    ASSERT_OK(workload(e.get()));
    expected = Dump(e.get());
    const uint64_t before = fs.stats().syncs;
    ASSERT_OK(e->Compact());
    merge_syncs = fs.stats().syncs - before;
  }
  ASSERT_GT(merge_syncs, 5u);
  // The log prepares its next segment in a background thread, whose syncs may fall among the
  // merge's: a cut may land there instead (the invariant must hold all the same), but most
  // land in the merge.
  uint64_t interrupted = 0;
  for (uint64_t n = 1; n <= merge_syncs; ++n) {
    for (CrashMode mode : {CrashMode::kDropUnsynced, CrashMode::kTearLastWrite}) {
      FaultFileSystem fs(36 + n);
      {
        ASSERT_OK_AND_ASSIGN(auto e, Open(&fs, Opts(SyncMode::kAlways, 4096), small));
        ASSERT_OK(workload(e.get()));
        fs.CrashAtSync(n, mode);
        if (!e->Compact().ok()) ++interrupted;
        fs.Crash(mode);
      }
      ASSERT_OK_AND_ASSIGN(auto e, Open(&fs, Opts(SyncMode::kAlways, 4096), small));
      EXPECT_EQ(Dump(e.get()), expected) << "power cut at merge sync " << n << " of " << merge_syncs
                                         << ", " << CrashModeName(mode);
      // Whatever the cut left in merged/ is named by the MANIFEST: no leftovers.
      for (const std::string& name : Names(&fs, kMergedDir)) {
        EXPECT_FALSE(name.ends_with(".tmp")) << name;
      }
      ASSERT_OK(e->Put("after", "x"));
      ASSERT_OK(e->Compact());
      EXPECT_EQ(Dump(e.get()).size(), expected.size() + 1);
    }
  }
  EXPECT_GE(interrupted, merge_syncs);  // at least half of the 2 * merge_syncs runs
}

// --- Corruption -------------------------------------------------------------------------------

TEST(Bitcask, CorruptValueInAMergedFileIsCorruptionNamingTheFile) {
  FaultFileSystem fs(40);
  {
    ASSERT_OK_AND_ASSIGN(auto e, Open(&fs));
    ASSERT_OK(e->Put("k", "a value long enough to hit"));
    ASSERT_OK(e->Compact());
  }
  const std::string data = FirstMergedFile(&fs, ".data");
  ASSERT_FALSE(data.empty());
  ASSERT_OK_AND_ASSIGN(uint64_t size, fs.FileSize(data));
  FlipByte(&fs, data, size - 3);            // inside the value
  ASSERT_OK_AND_ASSIGN(auto e, Open(&fs));  // the hint is intact, so open does not read it
  auto r = e->Get("k");
  ASSERT_TRUE(r.status().IsCorruption()) << r.status().ToString();
  EXPECT_NE(r.status().message().find(data), std::string::npos) << r.status().ToString();
  EXPECT_EQ(e->stats().errors, 1u);
  EXPECT_TRUE(e->Scan({}, [](std::string_view, std::string_view) { return true; }).IsCorruption());
  // Keys-only scans read no value and still work.
  ScanOptions o;
  o.keys_only = true;
  EXPECT_OK(e->Scan(o, [](std::string_view, std::string_view) { return true; }));
}

TEST(Bitcask, CorruptMergedDataFileFailsAScanningOpenNamingFileAndOffset) {
  FaultFileSystem fs(41);
  {
    ASSERT_OK_AND_ASSIGN(auto e, Open(&fs));
    ASSERT_OK(e->Put("a", "1"));
    ASSERT_OK(e->Put("b", "2"));
    ASSERT_OK(e->Compact());
  }
  const std::string data = FirstMergedFile(&fs, ".data");
  ASSERT_OK_AND_ASSIGN(uint64_t size, fs.FileSize(data));
  FlipByte(&fs, data, size - 1);  // the last value byte: the second record
  auto r = Open(&fs, Opts(), NoHints());
  ASSERT_TRUE(r.status().IsCorruption()) << r.status().ToString();
  EXPECT_NE(r.status().message().find(data), std::string::npos) << r.status().ToString();
  const uint64_t second =
      bitcask::kDataHeaderSize + bitcask::kRecordPrefixSize + kEntryHeaderSize + 2;
  EXPECT_NE(r.status().message().find("offset " + std::to_string(second)), std::string::npos)
      << r.status().ToString();
}

TEST(Bitcask, TruncatedMergedDataFileFailsAScanningOpen) {
  FaultFileSystem fs(42);
  {
    ASSERT_OK_AND_ASSIGN(auto e, Open(&fs));
    ASSERT_OK(e->Put("a", "1"));
    ASSERT_OK(e->Compact());
  }
  const std::string data = FirstMergedFile(&fs, ".data");
  {
    ASSERT_OK_AND_ASSIGN(auto f, fs.NewRandomRWFile(data, false));
    ASSERT_OK_AND_ASSIGN(uint64_t size, f->Size());
    ASSERT_OK(f->Truncate(size - 1));
    ASSERT_OK(f->Sync());
  }
  EXPECT_TRUE(Open(&fs, Opts(), NoHints()).status().IsCorruption());
}

TEST(Bitcask, CorruptHintFileFallsBackToScanningTheDataFile) {
  FaultFileSystem fs(43);
  std::map<std::string, std::string> expected;
  {
    ASSERT_OK_AND_ASSIGN(auto e, Open(&fs));
    for (int i = 0; i < 20; ++i) ASSERT_OK(e->Put(Key(i), std::to_string(i)));
    ASSERT_OK(e->Compact());
    expected = Dump(e.get());
  }
  const std::string hint = FirstMergedFile(&fs, ".hint");
  ASSERT_FALSE(hint.empty());
  FlipByte(&fs, hint, 40);
  BitcaskRecoveryReport report;
  ASSERT_OK_AND_ASSIGN(auto e, Open(&fs, Opts(), BitcaskOptions(), &report));
  EXPECT_EQ(Dump(e.get()), expected);
  EXPECT_EQ(report.hint_files_used, 0u);
  ASSERT_EQ(report.hint_files_rejected.size(), 1u);
  EXPECT_NE(report.hint_files_rejected[0].find(hint), std::string::npos);
  EXPECT_EQ(report.entries_scanned, 20u);
}

TEST(Bitcask, MissingHintFileFallsBackToScanningTheDataFile) {
  FaultFileSystem fs(44);
  {
    ASSERT_OK_AND_ASSIGN(auto e, Open(&fs));
    ASSERT_OK(e->Put("k", "v"));
    ASSERT_OK(e->Compact());
  }
  ASSERT_OK(sync::RemoveFileDurably(&fs, FirstMergedFile(&fs, ".hint")));
  BitcaskRecoveryReport report;
  ASSERT_OK_AND_ASSIGN(auto e, Open(&fs, Opts(), BitcaskOptions(), &report));
  ASSERT_OK_AND_ASSIGN(std::string v, e->Get("k"));
  EXPECT_EQ(v, "v");
  EXPECT_EQ(report.hint_files_rejected.size(), 1u);
}

TEST(Bitcask, CorruptManifestFailsOpenNamingIt) {
  FaultFileSystem fs(45);
  {
    ASSERT_OK_AND_ASSIGN(auto e, Open(&fs));
    ASSERT_OK(e->Put("k", "v"));
    ASSERT_OK(e->Compact());
  }
  FlipByte(&fs, kManifest, 20);
  auto r = Open(&fs);
  ASSERT_TRUE(r.status().IsCorruption()) << r.status().ToString();
  EXPECT_NE(r.status().message().find(kManifest), std::string::npos) << r.status().ToString();
}

TEST(Bitcask, MergedFileNamedByTheManifestButMissingFailsOpen) {
  FaultFileSystem fs(46);
  {
    ASSERT_OK_AND_ASSIGN(auto e, Open(&fs));
    ASSERT_OK(e->Put("k", "v"));
    ASSERT_OK(e->Compact());
  }
  ASSERT_OK(sync::RemoveFileDurably(&fs, FirstMergedFile(&fs, ".data")));
  EXPECT_FALSE(Open(&fs).ok());
}

TEST(Bitcask, CorruptRecordInAnOlderLogSegmentFailsOpenNamingIt) {
  FaultFileSystem fs(47);
  {
    ASSERT_OK_AND_ASSIGN(auto e, Open(&fs, Opts(SyncMode::kAlways, 4096)));
    for (int i = 0; i < 100; ++i) ASSERT_OK(e->Put(Key(i), std::string(100, 'x')));
  }
  auto names = Names(&fs, kWalDir);
  ASSERT_GT(names.size(), 3u);
  const std::string first = sync::JoinPath(kWalDir, names[0]);
  FlipByte(&fs, first, sync::wal::kSegmentHeaderSize + 30);
  auto r = Open(&fs, Opts(SyncMode::kAlways, 4096));
  ASSERT_TRUE(r.status().IsCorruption()) << r.status().ToString();
  EXPECT_NE(r.status().message().find(names[0]), std::string::npos) << r.status().ToString();
}

TEST(Bitcask, LeftoverMergeFilesAreDeletedAtOpen) {
  FaultFileSystem fs(48);
  {
    ASSERT_OK_AND_ASSIGN(auto e, Open(&fs));
    ASSERT_OK(e->Put("k", "v"));
    ASSERT_OK(e->Compact());
  }
  const auto named = Names(&fs, kMergedDir);
  for (const char* leftover :
       {"0000000000000099.data.tmp", "0000000000000099.data", "0000000000000099.hint", "junk"}) {
    ASSERT_OK_AND_ASSIGN(auto f,
                         sync::CreateFileDurably(&fs, sync::JoinPath(kMergedDir, leftover)));
    ASSERT_OK(f->Append("partial"));
    ASSERT_OK(f->Close());
  }
  BitcaskRecoveryReport report;
  {
    ASSERT_OK_AND_ASSIGN(auto e, Open(&fs, Opts(), BitcaskOptions(), &report));
    EXPECT_EQ(report.leftover_files_removed, 4u);
    EXPECT_EQ(Names(&fs, kMergedDir), named);
    fs.Crash(CrashMode::kDropUnsynced);  // the removals were made durable
  }
  EXPECT_EQ(Names(&fs, kMergedDir), named);
}

// --- Locking, failures, read-only -------------------------------------------------------------

TEST(Bitcask, SecondOpenOfTheSameDirectoryIsBusy) {
  FaultFileSystem fs(50);
  ASSERT_OK_AND_ASSIGN(auto e, Open(&fs));
  auto second = Open(&fs);
  EXPECT_TRUE(second.status().IsBusy()) << second.status().ToString();
  ASSERT_OK(e->Close());
  ASSERT_OK_AND_ASSIGN(auto again, Open(&fs));  // Close released the lock
}

// Whatever the errno (a thin-provisioned or quota-limited disk answers a sync with ENOSPC or
// EDQUOT): the write fails without a retryable kNoSpace, later ones get kFailed.
TEST(Bitcask, FailedSyncFailsThatWriteThenRefusesWritesButReadsGoOn) {
  for (int err : {EIO, ENOSPC, EDQUOT}) {
    SCOPED_TRACE(::strerrorname_np(err));
    FaultFileSystem fs(51);
    {
      ASSERT_OK_AND_ASSIGN(auto e, Open(&fs));
      ASSERT_OK(e->Put("before", "1"));
      fs.FailSyncAfter(1, err);
      Status failed = e->Put("during", "2");
      EXPECT_FALSE(failed.ok());
      EXPECT_FALSE(failed.IsNoSpace()) << failed.ToString();
      Status later = e->Put("after", "3");
      EXPECT_TRUE(later.IsFailed()) << later.ToString();
      EXPECT_TRUE(e->Sync(SyncKind::kData).IsFailed());
      EXPECT_TRUE(e->Compact().IsFailed());
      ASSERT_OK_AND_ASSIGN(std::string v, e->Get("before"));
      EXPECT_EQ(v, "1");
      EXPECT_EQ(Dump(e.get()).count("before"), 1u);
      EXPECT_TRUE(e->stats().wal.failed);
      fs.Crash(CrashMode::kDropUnsynced);
    }
    ASSERT_OK_AND_ASSIGN(auto e, Open(&fs));
    auto all = Dump(e.get());
    EXPECT_EQ(all.count("before"), 1u);   // everything acknowledged is there
    EXPECT_EQ(all.count("after"), 0u);    // nothing refused is
    ASSERT_OK(e->Put("reopened", "ok"));  // and the store takes writes again
  }
}

TEST(Bitcask, NoSpaceFailsTheWriteAndTheStoreRecoversOnceSpaceIsFreed) {
  FaultFileSystem fs(52);
  ASSERT_OK_AND_ASSIGN(auto e, Open(&fs, Opts(SyncMode::kAlways, 4096)));
  ASSERT_OK(e->Put("first", "1"));
  // The active and the prepared segment exist: no room for a third, so rotation fails.
  ASSERT_OK_AND_ASSIGN(auto space, fs.GetSpaceInfo("/"));
  fs.SetSpaceLimit(space.total_bytes - space.free_bytes);
  Status s;
  int written = 0;
  for (; written < 100; ++written) {
    s = e->Put(Key(written), std::string(500, 'x'));
    if (!s.ok()) break;
  }
  ASSERT_TRUE(s.IsNoSpace()) << s.ToString();
  EXPECT_TRUE(e->Get(Key(written)).status().IsNotFound());
  fs.SetSpaceLimit(UINT64_MAX);
  ASSERT_OK(e->Put(Key(written), "now it fits"));
  ASSERT_OK_AND_ASSIGN(std::string v, e->Get(Key(written)));
  EXPECT_EQ(v, "now it fits");
  ASSERT_OK_AND_ASSIGN(std::string first, e->Get("first"));
  EXPECT_EQ(first, "1");
}

TEST(Bitcask, NoSpaceDuringAMergeLeavesTheStoreUsable) {
  FaultFileSystem fs(53);
  ASSERT_OK_AND_ASSIGN(auto e, Open(&fs, Opts(SyncMode::kAlways, 4096)));
  for (int i = 0; i < 50; ++i) ASSERT_OK(e->Put(Key(i), std::string(100, 'v')));
  ASSERT_OK_AND_ASSIGN(auto space, fs.GetSpaceInfo("/"));
  fs.SetSpaceLimit(space.total_bytes - space.free_bytes + 1000);  // not enough for the merge
  Status s = e->Compact();
  EXPECT_TRUE(s.IsNoSpace()) << s.ToString();
  for (const std::string& name : Names(&fs, kMergedDir)) ADD_FAILURE() << "left " << name;
  fs.SetSpaceLimit(UINT64_MAX);
  ASSERT_OK(e->Put("more", "x"));
  ASSERT_OK(e->Compact());
  EXPECT_EQ(Dump(e.get()).size(), 51u);
}

TEST(Bitcask, ReadOnlyOpenReadsAndRefusesWrites) {
  FaultFileSystem fs(54);
  {
    ASSERT_OK_AND_ASSIGN(auto e, Open(&fs));
    ASSERT_OK(e->Put("a", "1"));
    ASSERT_OK(e->Compact());
    ASSERT_OK(e->Put("b", "2"));
  }
  EngineOptions ro = Opts();
  ro.read_only = true;
  const auto wal_files = Names(&fs, kWalDir);
  ASSERT_OK_AND_ASSIGN(auto e, Open(&fs, ro));
  EXPECT_EQ(Dump(e.get()), (std::map<std::string, std::string>{{"a", "1"}, {"b", "2"}}));
  EXPECT_EQ(e->Put("c", "3").code(), StatusCode::kNotSupported);
  EXPECT_EQ(e->Compact().code(), StatusCode::kNotSupported);
  EXPECT_EQ(Names(&fs, kWalDir), wal_files);  // nothing written, no new segment
}

TEST(Bitcask, ReadOnlyOpenOfAMissingStoreIsNotFoundAndCreatesNothing) {
  FaultFileSystem fs(55);
  EngineOptions ro = Opts();
  ro.read_only = true;
  EXPECT_TRUE(Open(&fs, ro).status().IsNotFound());
  ASSERT_OK_AND_ASSIGN(bool exists, fs.Exists(kDir));
  EXPECT_FALSE(exists);
}

TEST(Bitcask, StatsCountOperations) {
  FaultFileSystem fs(56);
  ASSERT_OK_AND_ASSIGN(auto e, Open(&fs));
  ASSERT_OK(e->Put("a", "12345"));
  ASSERT_OK(e->Delete("b"));
  ASSERT_OK_AND_ASSIGN(std::string v, e->Get("a"));
  EXPECT_TRUE(e->Get("zz").status().IsNotFound());
  ASSERT_OK(e->Scan({}, [](std::string_view, std::string_view) { return true; }));
  ASSERT_OK(e->Sync(SyncKind::kData));
  EXPECT_EQ(e->Put("", "x").code(), StatusCode::kInvalidArgument);
  EngineStats s = e->stats();
  EXPECT_EQ(s.puts, 1u);
  EXPECT_EQ(s.deletes, 1u);
  EXPECT_EQ(s.batches, 2u);
  EXPECT_EQ(s.gets, 2u);
  EXPECT_EQ(s.scans, 1u);
  EXPECT_EQ(s.syncs, 1u);
  EXPECT_EQ(s.bytes_written, 7u);  // "a" + "12345" + "b"
  EXPECT_EQ(s.bytes_read, 10u);    // the Get and the Scan
  EXPECT_EQ(s.live_keys, 1u);
  EXPECT_EQ(s.errors, 1u);
  EXPECT_EQ(s.wal.appends, 2u);
}

TEST(Bitcask, IsRegisteredAsBitcask) {
  FaultFileSystem fs(57);
  ASSERT_OK_AND_ASSIGN(auto e, OpenEngine("bitcask", &fs, kDir, Opts()));
  ASSERT_OK(e->Put("k", "v"));
  EXPECT_EQ(e->name(), "bitcask");
}

// --- Concurrency and background merge ---------------------------------------------------------

TEST(Bitcask, ConcurrentReadersWritersAndMergesSeeOnlyWrittenValues) {
  FaultFileSystem fs(60);
  BitcaskOptions small;
  small.merged_file_size = 4096;
  ASSERT_OK_AND_ASSIGN(auto e, Open(&fs, Opts(SyncMode::kBatch, 4096), small));
  constexpr int kWriters = 3, kKeysPerWriter = 40, kOps = 400;
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  // Each writer owns its keys; a value names its key and a counter that only grows.
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      for (int n = 1; n <= kOps; ++n) {
        const std::string k = "w" + std::to_string(w) + "/" + Key(n % kKeysPerWriter);
        WriteBatch b;
        b.Put(k, k + "=" + std::to_string(n));
        if (n % 10 == 0) b.Delete("w" + std::to_string(w) + "/" + Key((n + 1) % kKeysPerWriter));
        ASSERT_OK(e->Apply(b));
        if (n % 50 == 0) ASSERT_OK(e->Sync(SyncKind::kData));
      }
    });
  }
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&] {
      while (!stop) {
        for (int w = 0; w < kWriters; ++w) {
          const std::string k = "w" + std::to_string(w) + "/" + Key(7);
          auto v = e->Get(k);
          if (v.ok()) {
            ASSERT_EQ(v->substr(0, k.size() + 1), k + "=");
          } else {
            ASSERT_TRUE(v.status().IsNotFound()) << v.status().ToString();
          }
        }
        ASSERT_OK(e->Scan({}, [](std::string_view k, std::string_view v) {
          EXPECT_EQ(v.substr(0, k.size() + 1), std::string(k) + "=");
          return true;
        }));
      }
    });
  }
  std::thread merger([&] {
    while (!stop) ASSERT_OK(e->Compact());
  });
  for (int w = 0; w < kWriters; ++w) threads[w].join();
  stop = true;
  for (size_t i = kWriters; i < threads.size(); ++i) threads[i].join();
  merger.join();
  auto before = Dump(e.get());
  ASSERT_OK(e->Close());
  ASSERT_OK_AND_ASSIGN(auto reopened, Open(&fs, Opts(SyncMode::kBatch, 4096), small));
  EXPECT_EQ(Dump(reopened.get()), before);
}

TEST(Bitcask, BackgroundMergeRunsWhenSegmentsAccumulate) {
  FaultFileSystem fs(61);
  EngineOptions o = Opts(SyncMode::kNone, 4096);
  o.background_work = true;
  BitcaskOptions b;
  b.merge_check_interval = std::chrono::milliseconds(5);
  b.merge_min_sealed_segments = 2;
  b.merge_garbage_ratio = 0.3;
  ASSERT_OK_AND_ASSIGN(auto e, Open(&fs, o, b));
  for (int round = 0; round < 10; ++round) {
    for (int i = 0; i < 20; ++i) ASSERT_OK(e->Put(Key(i), std::string(100, 'a' + round)));
  }
  for (int wait = 0; wait < 2000 && e->stats().compactions == 0; ++wait) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_GT(e->stats().compactions, 0u);
  for (int i = 0; i < 20; ++i) {
    ASSERT_OK_AND_ASSIGN(std::string v, e->Get(Key(i)));
    EXPECT_EQ(v, std::string(100, 'a' + 9));
  }
  ASSERT_OK(e->Close());  // stops the background thread
  e.reset();
  // What every merge leaves: a MANIFEST with a merged LSN, and the merged files it names. Not
  // necessarily a merged file: a merge runs beside the writer, and one during which the writer
  // overwrote every key (between the merge's LSN and its walk of the keydir) has nothing below
  // its LSN left to copy. It names no file and still lets the log go below its LSN.
  BitcaskRecoveryReport report;
  ASSERT_OK_AND_ASSIGN(auto reopened, Open(&fs, Opts(SyncMode::kNone, 4096), b, &report));
  EXPECT_GT(report.merged_lsn, 1u);
  EXPECT_EQ(CountSuffix(&fs, kMergedDir, ".data"), report.merged_files);
  EXPECT_EQ(CountSuffix(&fs, kMergedDir, ".hint"), report.merged_files);
  EXPECT_EQ(report.leftover_files_removed, 0u);
  for (int i = 0; i < 20; ++i) {
    ASSERT_OK_AND_ASSIGN(std::string v, reopened->Get(Key(i)));
    EXPECT_EQ(v, std::string(100, 'a' + 9));
  }
}

TEST(Bitcask, BackgroundMergeWaitsForGarbage) {
  FaultFileSystem fs(62);
  EngineOptions o = Opts(SyncMode::kNone, 4096);
  o.background_work = true;
  BitcaskOptions b;
  b.merge_check_interval = std::chrono::milliseconds(1);
  b.merge_garbage_ratio = 0.5;
  b.merge_max_sealed_segments = 1000;
  ASSERT_OK_AND_ASSIGN(auto e, Open(&fs, o, b));
  for (int i = 0; i < 200; ++i) ASSERT_OK(e->Put(Key(i), std::string(100, 'x')));  // all live
  // The thread has looked at the trigger many times since the writes (a counted condition, not
  // a guess of time), and never merged: there is no garbage.
  const uint64_t checks = GetBitcaskDebugStats(*e).merge_checks;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (GetBitcaskDebugStats(*e).merge_checks < checks + 20 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  ASSERT_GE(GetBitcaskDebugStats(*e).merge_checks, checks + 20);
  EXPECT_EQ(e->stats().compactions, 0u);
}

// --- The real disk ----------------------------------------------------------------------------

TEST(BitcaskPosix, WritesMergesAndReopensOnTheRealDisk) {
  test::TempDir tmp;
  sync::FileSystem* fs = sync::DefaultFileSystem();
  const std::string dir = tmp.Sub("store");
  std::map<std::string, std::string> expected;
  {
    ASSERT_OK_AND_ASSIGN(auto e,
                         Open(fs, Opts(SyncMode::kBatch, 8192), BitcaskOptions(), nullptr, dir));
    for (int i = 0; i < 300; ++i) ASSERT_OK(e->Put(Key(i % 100), std::to_string(i)));
    ASSERT_OK(e->Compact());
    for (int i = 0; i < 100; i += 4) ASSERT_OK(e->Delete(Key(i)));
    ASSERT_OK(e->Sync(SyncKind::kFull));
    expected = Dump(e.get());
    EXPECT_TRUE(Open(fs, Opts(), BitcaskOptions(), nullptr, dir).status().IsBusy());
  }
  for (bool hints : {true, false}) {
    BitcaskOptions b;
    b.use_hints = hints;
    ASSERT_OK_AND_ASSIGN(auto e, Open(fs, Opts(SyncMode::kBatch, 8192), b, nullptr, dir));
    EXPECT_EQ(Dump(e.get()), expected);
  }
}

TEST(BitcaskPosix, ConcurrentWritersOnTheRealDiskInAlwaysMode) {
  test::TempDir tmp;
  sync::FileSystem* fs = sync::DefaultFileSystem();
  const std::string dir = tmp.Sub("store");
  {
    ASSERT_OK_AND_ASSIGN(
        auto e, Open(fs, Opts(SyncMode::kAlways, 1 << 20), BitcaskOptions(), nullptr, dir));
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < 50; ++i) {
          ASSERT_OK(e->Put("t" + std::to_string(t) + "/" + Key(i), std::to_string(i)));
        }
      });
    }
    for (auto& t : threads) t.join();
  }
  ASSERT_OK_AND_ASSIGN(auto e, Open(fs, Opts(), BitcaskOptions(), nullptr, dir));
  EXPECT_EQ(Dump(e.get()).size(), 200u);
}

}  // namespace
}  // namespace kvfs::engines

namespace kvfs::engines {
namespace {

// One thread writing, syncing now and then and merging in between, cut at every mutating
// operation: the merge's protocol (files, MANIFEST, checkpoint, removals) under every
// interleaving with unsynced log records. The recovered keys must be the state some prefix of
// the batches left, at or past the last one acknowledged durable (crash_oracle.h).
TEST(BitcaskCrash, MergesBetweenUnsyncedWritesSurviveAPowerCutAtAnyOperation) {
  struct Run {
    std::vector<oracle::BatchWrites> batches;  // every batch attempted, in order
    size_t durable = 0;                        // batches 1..durable acknowledged durable
  };
  // Runs until an operation fails, which may only be once the power is off.
  auto run = [](sync::FaultFileSystem* fs, SyncMode mode, Run* out) {
    auto stop = [fs](const Status& s) {
      if (!fs->crashed()) ADD_FAILURE() << "failed before the power went: " << s.ToString();
    };
    auto opened = Open(fs, Opts(mode, 4096));
    if (!opened.ok()) return stop(opened.status());
    Engine* e = opened->get();
    std::mt19937 rng(7);
    for (int seq = 1; seq <= 60; ++seq) {
      oracle::BatchWrites b;
      WriteBatch wb;
      for (int i = 0; i < 2; ++i) {
        const std::string key = Key(static_cast<int>(rng() % 6));
        if (b.count(key)) continue;
        if (rng() % 4 == 0) {
          b[key] = std::nullopt;
          wb.Delete(key);
        } else {
          b[key] = std::to_string(seq) + ":" + std::string(rng() % 300, 'v');
          wb.Put(key, *b[key]);
        }
      }
      out->batches.push_back(b);
      if (Status s = e->Apply(wb); !s.ok()) return stop(s);
      if (mode == SyncMode::kAlways) out->durable = out->batches.size();
      if (seq % 4 == 0) {
        if (Status s = e->Sync(SyncKind::kData); !s.ok()) return stop(s);
        out->durable = out->batches.size();
      }
      if (seq % 9 == 0) {
        if (Status s = e->Compact(); !s.ok()) return stop(s);
      }
    }
  };
  for (SyncMode mode : {SyncMode::kNone, SyncMode::kAlways}) {
    uint64_t ops = 0;
    {
      sync::FaultFileSystem fs(70);
      Run calibration;
      run(&fs, mode, &calibration);
      ASSERT_EQ(calibration.batches.size(), 60u);
      ops = fs.stats().mutating_ops;
    }
    for (uint64_t n = 1; n <= ops; ++n) {
      for (CrashMode crash : {CrashMode::kDropUnsynced, CrashMode::kTearLastWrite}) {
        SCOPED_TRACE("crash at op " + std::to_string(n) + " " + CrashModeName(crash) + " " +
                     sync::SyncModeName(mode));
        sync::FaultFileSystem fs(70 + n);
        fs.CrashAtOp(n, crash);
        Run out;
        run(&fs, mode, &out);
        fs.Crash(crash);
        ASSERT_OK_AND_ASSIGN(auto e, Open(&fs, Opts(mode, 4096)));
        ASSERT_EQ(oracle::CheckRecoveredPrefix(out.batches, out.durable, Dump(e.get())), "");
      }
    }
  }
}

}  // namespace
}  // namespace kvfs::engines
