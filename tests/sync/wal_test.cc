// Behaviour of the write-ahead log, one test per behaviour and per failure path. Most run on
// the fault-injecting file system (fast, and it can cut the power); group commit is shown on
// a file system whose syncs the test can hold.
#include "sync/wal.h"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "sync/durable.h"
#include "sync/fault_file_system.h"
#include "sync/posix_file_system.h"
#include "sync/wal_format.h"
#include "tests/test_util.h"

namespace kvfs::sync {
namespace {

constexpr char kDir[] = "/db/wal";

struct Replayed {
  std::vector<std::pair<uint64_t, std::string>> records;
  WalReadReport report;
  std::vector<std::string> payloads() const {
    std::vector<std::string> p;
    for (const auto& r : records) p.push_back(r.second);
    return p;
  }
};

Result<std::unique_ptr<Wal>> OpenWal(FileSystem* fs, WalOptions options, uint64_t from,
                                     Replayed* out) {
  out->records.clear();
  KVFS_RETURN_IF_ERROR(CreateDirDurably(fs, "/db"));
  return Wal::Open(
      fs, kDir, options, from,
      [out](uint64_t lsn, std::string_view payload) {
        out->records.emplace_back(lsn, std::string(payload));
        return Status::OK();
      },
      &out->report);
}

WalOptions Always(uint64_t segment_size = 64 << 10) {
  WalOptions o;
  o.sync_mode = SyncMode::kAlways;
  o.segment_size = segment_size;
  return o;
}

std::vector<std::string> SegmentNames(FileSystem* fs) {
  auto names = fs->ListDir(kDir);
  std::vector<std::string> out;
  if (!names.ok()) return out;
  for (auto& n : *names) {
    if (wal::ParseSegmentFileName(n)) out.push_back(n);
  }
  return out;
}

using test::FlipByte;

std::string Path(const std::string& name) { return JoinPath(kDir, name); }

TEST(Wal, AppendAssignsConsecutiveLsnsStartingAtOne) {
  FaultFileSystem fs(1);
  Replayed r;
  ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, Always(), 0, &r));
  EXPECT_EQ(wal->last_lsn(), 0u);
  for (uint64_t i = 1; i <= 5; ++i) {
    ASSERT_OK_AND_ASSIGN(uint64_t lsn, wal->Append("r" + std::to_string(i)));
    EXPECT_EQ(lsn, i);
  }
  EXPECT_EQ(wal->last_lsn(), 5u);
  EXPECT_EQ(wal->durable_lsn(), 5u);
}

TEST(Wal, ReopenReplaysEveryRecordInLsnOrder) {
  FaultFileSystem fs(2);
  Replayed r;
  {
    ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, Always(), 0, &r));
    for (int i = 0; i < 100; ++i) ASSERT_OK(wal->Append("value-" + std::to_string(i)));
    ASSERT_OK(wal->Close());
  }
  ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, Always(), 0, &r));
  ASSERT_EQ(r.records.size(), 100u);
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(r.records[i].first, static_cast<uint64_t>(i + 1));
    EXPECT_EQ(r.records[i].second, "value-" + std::to_string(i));
  }
  ASSERT_OK_AND_ASSIGN(uint64_t next, wal->Append("after"));
  EXPECT_EQ(next, 101u);
}

TEST(Wal, ReplayStartsAtTheRequestedLsn) {
  FaultFileSystem fs(3);
  Replayed r;
  {
    ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, Always(), 0, &r));
    for (int i = 0; i < 10; ++i) ASSERT_OK(wal->Append(std::to_string(i)));
  }
  ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, Always(), 8, &r));
  ASSERT_EQ(r.records.size(), 3u);
  EXPECT_EQ(r.records[0].first, 8u);
  EXPECT_EQ(r.report.records_read, 10u);
  EXPECT_EQ(r.report.records_replayed, 3u);
}

TEST(Wal, EmptyPayloadIsARecord) {
  FaultFileSystem fs(4);
  Replayed r;
  {
    ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, Always(), 0, &r));
    ASSERT_OK(wal->Append(""));
    ASSERT_OK(wal->Append("x"));
  }
  ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, Always(), 0, &r));
  EXPECT_EQ(r.payloads(), (std::vector<std::string>{"", "x"}));
}

TEST(Wal, RecordLargerThanASegmentIsWrittenWhole) {
  FaultFileSystem fs(5);
  Replayed r;
  const std::string big(200 << 10, 'b');  // segment size is 64 KiB
  {
    ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, Always(), 0, &r));
    ASSERT_OK(wal->Append("small"));
    ASSERT_OK(wal->Append(big));
    ASSERT_OK(wal->Append("after"));
  }
  ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, Always(), 0, &r));
  EXPECT_EQ(r.payloads(), (std::vector<std::string>{"small", big, "after"}));
}

TEST(Wal, RotatesToANewPreallocatedSegmentWhenFull) {
  FaultFileSystem fs(6);
  Replayed r;
  WalOptions o = Always(4096);
  {
    ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, o, 0, &r));
    for (int i = 0; i < 200; ++i) ASSERT_OK(wal->Append(std::string(100, 'a' + i % 26)));
    EXPECT_GT(wal->stats().segments_created, 3u);
  }
  auto names = SegmentNames(&fs);
  ASSERT_GT(names.size(), 3u);
  // Every segment but possibly an oversized one is exactly its preallocated size.
  for (const auto& n : names) {
    ASSERT_OK_AND_ASSIGN(uint64_t size, fs.FileSize(Path(n)));
    EXPECT_EQ(size, 4096u) << n;
  }
  ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, o, 0, &r));
  ASSERT_EQ(r.records.size(), 200u);
  EXPECT_EQ(r.report.dropped_bytes, 0u) << r.report.Summary();
}

TEST(Wal, SegmentsStartSmallAtEachOpenAndDoubleUpToTheSegmentSize) {
  FaultFileSystem fs(66);
  Replayed r;
  WalOptions o = Always(16 << 10);
  o.first_segment_size = 2 << 10;
  auto sizes = [&] {
    std::vector<uint64_t> out;
    for (const auto& n : SegmentNames(&fs)) {
      auto size = fs.FileSize(Path(n));
      out.push_back(size.ok() ? *size : 0);
    }
    return out;
  };
  {
    ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, o, 0, &r));
    // 2 + 4 + 8 KiB, then full-sized segments.
    for (int i = 0; i < 400; ++i) ASSERT_OK(wal->Append(std::string(100, 'a' + i % 26)));
  }
  std::vector<uint64_t> first_open = sizes();
  ASSERT_GE(first_open.size(), 5u);
  const std::vector<uint64_t> growing = {2 << 10, 4 << 10, 8 << 10, 16 << 10};
  EXPECT_EQ(std::vector<uint64_t>(first_open.begin(), first_open.begin() + 4), growing);
  // The segment being prepared when the log closed may be there too; every one is full-sized.
  for (size_t i = 4; i < first_open.size(); ++i) EXPECT_EQ(first_open[i], 16u << 10) << i;
  {
    // A reopen starts small again, and replays every record across the mixed sizes.
    ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, o, 0, &r));
    ASSERT_EQ(r.records.size(), 400u);
    EXPECT_EQ(r.report.dropped_bytes, 0u) << r.report.Summary();
    ASSERT_OK(wal->Append("after reopen"));
  }
  std::vector<uint64_t> reopened = sizes();
  ASSERT_GT(reopened.size(), first_open.size());
  EXPECT_EQ(reopened.back(), 2u << 10);
  ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, o, 0, &r));
  EXPECT_EQ(r.records.size(), 401u);
}

TEST(Wal, WithoutPreallocationSegmentsGrowWithTheirRecords) {
  FaultFileSystem fs(7);
  Replayed r;
  WalOptions o = Always();
  o.preallocation = Preallocation::kNone;
  {
    ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, o, 0, &r));
    ASSERT_OK(wal->Append("abc"));
  }
  auto names = SegmentNames(&fs);
  ASSERT_EQ(names.size(), 1u);
  ASSERT_OK_AND_ASSIGN(uint64_t size, fs.FileSize(Path(names[0])));
  EXPECT_EQ(size, wal::kSegmentHeaderSize + wal::RecordSize(3));
}

TEST(Wal, EachOpenStartsANewSegment) {
  FaultFileSystem fs(8);
  Replayed r;
  for (int i = 0; i < 3; ++i) {
    ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, Always(), 0, &r));
    ASSERT_OK(wal->Append("x"));
  }
  EXPECT_EQ(SegmentNames(&fs).size(), 3u);
  ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, Always(), 0, &r));
  EXPECT_EQ(r.records.size(), 3u);
}

TEST(Wal, CheckpointDropsOnlySegmentsEntirelyBelowTheLsn) {
  FaultFileSystem fs(9);
  Replayed r;
  ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, Always(1024), 0, &r));
  for (int i = 0; i < 40; ++i) ASSERT_OK(wal->Append(std::string(100, 'x')));
  // Count segments in use, not files: the preparer may add the next one at any moment.
  const uint64_t before = wal->stats().segments_created;
  ASSERT_GT(before, 4u);
  ASSERT_OK(wal->Checkpoint(20));
  const uint64_t deleted = wal->stats().segments_deleted;
  EXPECT_GT(deleted, 0u);
  ASSERT_OK(wal->Close());  // removes the prepared, unused segment
  EXPECT_EQ(SegmentNames(&fs).size(), before - deleted);
  // Everything from LSN 20 on is still there; some older records are gone.
  ASSERT_OK_AND_ASSIGN(auto reopened, OpenWal(&fs, Always(1024), 20, &r));
  ASSERT_EQ(r.records.front().first, 20u);
  EXPECT_EQ(r.records.back().first, 40u);
  EXPECT_GT(r.report.segments.front().first_lsn, 1u);
}

TEST(Wal, CheckpointNeverDropsTheActiveSegment) {
  FaultFileSystem fs(10);
  Replayed r;
  ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, Always(1024), 0, &r));
  for (int i = 0; i < 40; ++i) ASSERT_OK(wal->Append(std::string(100, 'x')));
  ASSERT_OK(wal->Checkpoint(1000));
  ASSERT_OK_AND_ASSIGN(uint64_t lsn, wal->Append("still works"));
  EXPECT_EQ(lsn, 41u);
  ASSERT_OK(wal->Close());
  EXPECT_EQ(SegmentNames(&fs).size(), 1u);  // Close removed the prepared, unused segment
}

TEST(Wal, TornTailInNewestSegmentIsACleanEndWithDroppedBytesReported) {
  FaultFileSystem fs(11);
  Replayed r;
  {
    ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, Always(), 0, &r));
    for (int i = 0; i < 5; ++i) ASSERT_OK(wal->Append("record-" + std::to_string(i)));
  }
  auto names = SegmentNames(&fs);
  ASSERT_EQ(names.size(), 1u);
  // Tear the last record's write: its first 20 bytes reached the disk, the rest is still the
  // segment's zeros. (A flipped byte there instead is damage: wal_reader_test.cc.)
  const uint64_t last = wal::kSegmentHeaderSize + 4 * wal::RecordSize(8);
  test::ZeroRange(&fs, Path(names[0]), last + 20, wal::RecordSize(8) - 20);
  {
    ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, Always(), 0, &r));
    EXPECT_EQ(r.records.size(), 4u);
    EXPECT_EQ(r.report.dropped_bytes, 20u);
    EXPECT_NE(r.report.dropped_reason.find(names[0]), std::string::npos) << r.report.dropped_reason;
    EXPECT_NE(r.report.dropped_reason.find("offset " + std::to_string(last)), std::string::npos)
        << r.report.dropped_reason;
    // The torn record's LSN is given again: it was never acknowledged.
    ASSERT_OK_AND_ASSIGN(uint64_t lsn, wal->Append("new"));
    EXPECT_EQ(lsn, 5u);
  }
  // The torn segment is now an older one; its recorded end keeps the damage out of reach.
  ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, Always(), 0, &r));
  EXPECT_EQ(r.records.size(), 5u);
  EXPECT_EQ(r.records.back().second, "new");
  EXPECT_EQ(r.report.dropped_bytes, 0u);
}

TEST(Wal, ZeroFilledPreallocatedTailIsNotReportedAsDropped) {
  FaultFileSystem fs(12);
  Replayed r;
  {
    ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, Always(), 0, &r));
    ASSERT_OK(wal->Append("one"));
  }
  ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, Always(), 0, &r));
  EXPECT_EQ(r.report.dropped_bytes, 0u);
  EXPECT_TRUE(r.report.dropped_reason.empty());
}

TEST(Wal, BadRecordInAnOlderSegmentIsCorruptionNamingSegmentAndOffset) {
  FaultFileSystem fs(13);
  Replayed r;
  {
    ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, Always(1024), 0, &r));
    for (int i = 0; i < 30; ++i) ASSERT_OK(wal->Append(std::string(100, 'x')));
  }
  auto names = SegmentNames(&fs);
  ASSERT_GT(names.size(), 2u);
  const uint64_t second_record = wal::kSegmentHeaderSize + wal::RecordSize(100);
  FlipByte(&fs, Path(names[0]), second_record + 20);
  auto opened = OpenWal(&fs, Always(1024), 0, &r);
  ASSERT_FALSE(opened.ok());
  EXPECT_TRUE(opened.status().IsCorruption()) << opened.status().ToString();
  EXPECT_NE(opened.status().message().find(names[0]), std::string::npos);
  EXPECT_NE(opened.status().message().find("offset " + std::to_string(second_record)),
            std::string::npos)
      << opened.status().ToString();
  // The offline reader says the same.
  WalReadReport report;
  Status s = ReadWal(
      &fs, kDir, 0, [](uint64_t, std::string_view) { return Status::OK(); }, &report);
  EXPECT_TRUE(s.IsCorruption());
}

TEST(Wal, BadHeaderInAnOlderSegmentIsCorruption) {
  FaultFileSystem fs(14);
  Replayed r;
  for (int i = 0; i < 2; ++i) {
    ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, Always(), 0, &r));
    ASSERT_OK(wal->Append("x"));
  }
  auto names = SegmentNames(&fs);
  ASSERT_EQ(names.size(), 2u);
  FlipByte(&fs, Path(names[0]), 20);
  auto opened = OpenWal(&fs, Always(), 0, &r);
  ASSERT_FALSE(opened.ok());
  EXPECT_TRUE(opened.status().IsCorruption());
  EXPECT_NE(opened.status().message().find(names[0]), std::string::npos);
}

// Found by tests/fuzz/wal_reader_fuzz: a valid header starting at LSN 0 was accepted, and the
// reader reported next LSN 0 while the writer continued at 1.
TEST(Wal, SegmentHeaderStartingAtLsnZeroIsCorruption) {
  FaultFileSystem fs(16);
  ASSERT_OK(CreateDirDurably(&fs, "/db"));
  ASSERT_OK(CreateDirDurably(&fs, kDir));
  std::string segment = wal::EncodeSegmentHeader(wal::SegmentHeader{1, 0, 0, 0});
  wal::AppendRecord(&segment, 0, "lsn zero");
  {
    ASSERT_OK_AND_ASSIGN(auto f,
                         fs.NewWritableFile(Path(wal::SegmentFileName(1)), CreateMode::kCreateNew));
    ASSERT_OK(f->Append(segment));
    ASSERT_OK(f->Sync());
  }
  WalReadReport report;
  Status s = ReadWal(
      &fs, kDir, 0, [](uint64_t, std::string_view) { return Status::OK(); }, &report);
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  Replayed r;
  auto opened = OpenWal(&fs, Always(), 0, &r);
  ASSERT_FALSE(opened.ok());
  EXPECT_TRUE(opened.status().IsCorruption()) << opened.status().ToString();
}

TEST(Wal, HalfCreatedNewestSegmentIsIgnoredAndRemoved) {
  FaultFileSystem fs(15);
  Replayed r;
  {
    ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, Always(), 0, &r));
    ASSERT_OK(wal->Append("kept"));
  }
  // A segment whose header never made it to disk (as if power went out mid-creation): zeros
  // being written, then a header torn after 20 bytes of a full-size file.
  const std::string torn = Path(wal::SegmentFileName(99));
  {
    ASSERT_OK_AND_ASSIGN(auto f, fs.NewWritableFile(torn, CreateMode::kCreateNew));
    ASSERT_OK(f->Append(wal::EncodeSegmentHeader({99, 2, 1, 100, 4096}).substr(0, 20)));
    ASSERT_OK(f->AppendZeros(4096 - 20));
    ASSERT_OK(f->Sync());
  }
  ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, Always(), 0, &r));
  EXPECT_EQ(r.payloads(), std::vector<std::string>{"kept"});
  ASSERT_TRUE(r.report.torn_segment.has_value());
  EXPECT_EQ(*r.report.torn_segment, 99u);
  ASSERT_OK_AND_ASSIGN(bool exists, fs.Exists(torn));
  EXPECT_FALSE(exists);
}

TEST(Wal, SegmentsLeftByAnInterruptedCheckpointAreIgnored) {
  FaultFileSystem fs(16);
  Replayed r;
  {
    ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, Always(1024), 0, &r));
    for (int i = 0; i < 40; ++i) ASSERT_OK(wal->Append(std::string(100, 'x')));
  }
  auto names = SegmentNames(&fs);
  ASSERT_GT(names.size(), 4u);
  // The checkpoint's LSN: the fourth segment's first. Its caller made everything below it
  // durable elsewhere, and reads from there on.
  WalReadReport before;
  ASSERT_OK(ReadWal(
      &fs, kDir, 0, [](uint64_t, std::string_view) { return Status::OK(); }, &before));
  const uint64_t checkpoint = before.segments[3].first_lsn;
  // A checkpoint deleting the first three segments got only the second one done.
  ASSERT_OK(fs.RemoveFile(Path(names[1])));
  WalReadReport report;
  ASSERT_OK(ReadWal(
      &fs, kDir, checkpoint, [](uint64_t, std::string_view) { return Status::OK(); }, &report));
  EXPECT_EQ(report.stale_segments.size(), 1u);
  ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, Always(1024), checkpoint, &r));
  EXPECT_FALSE(fs.Exists(Path(names[0])).value());
  // Who asks for records the checkpoint deleted finds them missing, not silently skipped.
  wal.reset();
  ASSERT_OK(fs.RemoveFile(Path(names[2])));
  Status missing = ReadWal(
      &fs, kDir, 1, [](uint64_t, std::string_view) { return Status::OK(); }, &report);
  EXPECT_TRUE(missing.IsCorruption()) << missing.ToString();
  EXPECT_NE(missing.message().find("is missing"), std::string::npos) << missing.ToString();
}

TEST(Wal, MissingSegmentIsCorruptionWhenItsRecordsAreNeeded) {
  FaultFileSystem fs(17);
  Replayed r;
  {
    ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, Always(1024), 0, &r));
    for (int i = 0; i < 40; ++i) ASSERT_OK(wal->Append(std::string(100, 'x')));
  }
  auto names = SegmentNames(&fs);
  ASSERT_OK(fs.RemoveFile(Path(names[0])));
  auto opened = OpenWal(&fs, Always(1024), 1, &r);
  ASSERT_FALSE(opened.ok());
  EXPECT_TRUE(opened.status().IsCorruption());
  EXPECT_NE(opened.status().message().find("missing"), std::string::npos)
      << opened.status().ToString();
}

TEST(Wal, FromLsnPastTheLogRaisesTheNextLsn) {
  FaultFileSystem fs(18);
  Replayed r;
  {
    ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, Always(), 0, &r));
    ASSERT_OK(wal->Append("a"));
  }
  ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, Always(), 50, &r));
  EXPECT_TRUE(r.records.empty());
  ASSERT_OK_AND_ASSIGN(uint64_t lsn, wal->Append("b"));
  EXPECT_EQ(lsn, 50u);
  ASSERT_OK(wal->Close());
  ASSERT_OK_AND_ASSIGN(auto again, OpenWal(&fs, Always(), 0, &r));
  ASSERT_EQ(r.records.size(), 2u);
  EXPECT_EQ(r.records[1].first, 50u);
}

TEST(Wal, ReplayErrorFailsOpen) {
  FaultFileSystem fs(19);
  Replayed r;
  {
    ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, Always(), 0, &r));
    ASSERT_OK(wal->Append("a"));
  }
  auto opened = Wal::Open(&fs, kDir, Always(), 0, [](uint64_t, std::string_view) {
    return Status::Corruption("engine rejects record");
  });
  ASSERT_FALSE(opened.ok());
  EXPECT_NE(opened.status().message().find("engine rejects"), std::string::npos);
}

TEST(Wal, AlwaysModeAppendIsDurableWhenItReturns) {
  FaultFileSystem fs(20);
  Replayed r;
  {
    ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, Always(), 0, &r));
    ASSERT_OK(wal->Append("durable"));
    fs.Crash(CrashMode::kDropUnsynced);  // the Wal object dies with the machine
  }
  ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, Always(), 0, &r));
  EXPECT_EQ(r.payloads(), std::vector<std::string>{"durable"});
}

TEST(Wal, NoneModeRecordsAreLostOnPowerCutUntilSynced) {
  FaultFileSystem fs(21);
  Replayed r;
  WalOptions o = Always();
  o.sync_mode = SyncMode::kNone;
  {
    ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, o, 0, &r));
    ASSERT_OK(wal->Append("synced"));
    ASSERT_OK(wal->Sync());
    ASSERT_OK(wal->Append("not synced"));
    EXPECT_EQ(wal->durable_lsn(), 1u);
    EXPECT_EQ(wal->last_lsn(), 2u);
    fs.Crash(CrashMode::kDropUnsynced);
  }
  ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, o, 0, &r));
  EXPECT_EQ(r.payloads(), std::vector<std::string>{"synced"});
}

TEST(Wal, UnsyncedRecordsSurviveAProcessCrash) {
  // A process crash loses nothing the OS has: the next open reads and syncs it.
  FaultFileSystem fs(22);
  Replayed r;
  WalOptions o = Always();
  o.sync_mode = SyncMode::kNone;
  {
    ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, o, 0, &r));
    ASSERT_OK(wal->Append("in page cache"));
    wal->SimulateProcessCrashForTesting();
  }
  {
    ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, o, 0, &r));
    EXPECT_EQ(r.payloads(), std::vector<std::string>{"in page cache"});
    fs.Crash(CrashMode::kDropUnsynced);  // then the power goes
  }
  ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, o, 0, &r));
  EXPECT_EQ(r.payloads(), std::vector<std::string>{"in page cache"});
}

TEST(Wal, BatchModeSyncsAfterBatchRecords) {
  FaultFileSystem fs(23);
  Replayed r;
  WalOptions o = Always();
  o.sync_mode = SyncMode::kBatch;
  o.batch_records = 4;
  o.batch_interval = std::chrono::hours(1);  // only the count can trigger it here
  ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, o, 0, &r));
  for (int i = 0; i < 3; ++i) ASSERT_OK(wal->Append("x"));
  EXPECT_EQ(wal->durable_lsn(), 0u);
  ASSERT_OK(wal->Append("x"));
  EXPECT_EQ(wal->durable_lsn(), 4u);
}

TEST(Wal, BatchModeSyncsOnItsTimer) {
  FaultFileSystem fs(24);
  Replayed r;
  WalOptions o = Always();
  o.sync_mode = SyncMode::kBatch;
  o.batch_records = 1000000;
  o.batch_interval = std::chrono::milliseconds(5);
  ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, o, 0, &r));
  ASSERT_OK(wal->Append("x"));
  // Wait for the condition, not for a time: the timer must make it durable on its own.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (wal->durable_lsn() < 1 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  EXPECT_EQ(wal->durable_lsn(), 1u);
}

TEST(Wal, CloseSyncsWhatIsUnsynced) {
  FaultFileSystem fs(25);
  Replayed r;
  WalOptions o = Always();
  o.sync_mode = SyncMode::kNone;
  {
    ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, o, 0, &r));
    ASSERT_OK(wal->Append("a"));
    ASSERT_OK(wal->Close());
    fs.Crash(CrashMode::kDropUnsynced);
  }
  ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, o, 0, &r));
  EXPECT_EQ(r.payloads(), std::vector<std::string>{"a"});
}

TEST(Wal, AppendAfterCloseIsRefused) {
  FaultFileSystem fs(26);
  Replayed r;
  ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, Always(), 0, &r));
  ASSERT_OK(wal->Close());
  EXPECT_FALSE(wal->Append("x").ok());
  EXPECT_FALSE(wal->Sync().ok());
}

TEST(Wal, FailedSyncFailsTheLogForGoodAndLosesNothingAcknowledged) {
  FaultFileSystem fs(27);
  Replayed r;
  {
    ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, Always(), 0, &r));
    ASSERT_OK(wal->Append("acknowledged"));
    fs.FailSyncAfter(1);
    auto failed = wal->Append("not acknowledged");
    ASSERT_FALSE(failed.ok());
    EXPECT_EQ(failed.status().sys_errno(), EIO);
    // Never retried into a success: every later call fails, naming the first error.
    auto later = wal->Append("later");
    ASSERT_FALSE(later.ok());
    EXPECT_TRUE(later.status().IsFailed()) << later.status().ToString();
    EXPECT_TRUE(wal->Sync().IsFailed());
    EXPECT_TRUE(wal->Checkpoint(1).IsFailed());
    EXPECT_TRUE(wal->health().IsFailed());
    EXPECT_TRUE(wal->stats().failed);
    EXPECT_EQ(wal->durable_lsn(), 1u);
    fs.Crash(CrashMode::kDropUnsynced);
  }
  ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, Always(), 0, &r));
  ASSERT_GE(r.records.size(), 1u);
  EXPECT_EQ(r.records[0].second, "acknowledged");
  for (const auto& rec : r.records) EXPECT_NE(rec.second, "later");
}

TEST(Wal, FailedSegmentCreationSyncFailsTheLog) {
  FaultFileSystem fs(28);
  Replayed r;
  // No preallocation, so nothing is prepared in the background and the segment is created on
  // the spot: the sync count below is exact.
  WalOptions o = Always(1024);
  o.preallocation = Preallocation::kNone;
  ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, o, 0, &r));
  ASSERT_OK(wal->Append(std::string(900, 'a')));
  // The next record needs a new segment: old segment sync, new file sync, dir fsync. Fail the
  // new file's sync.
  fs.FailSyncAfter(2);
  auto failed = wal->Append(std::string(900, 'b'));
  ASSERT_FALSE(failed.ok());
  EXPECT_TRUE(wal->Append("x").status().IsFailed());
}

TEST(Wal, NoSpaceForANewSegmentFailsOnlyThatRecordAndRecovers) {
  FaultFileSystem fs(29);
  Replayed r;
  ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, Always(4096), 0, &r));
  ASSERT_OK(wal->Append(std::string(3000, 'a')));
  // No room for more segments than exist now (the preparer may have made the next one).
  ASSERT_OK_AND_ASSIGN(SpaceInfo space, fs.GetSpaceInfo("/"));
  fs.SetSpaceLimit(space.total_bytes - space.free_bytes + 100);
  std::vector<std::string> acked = {std::string(3000, 'a')};
  Status full;
  for (int i = 0; i < 5 && full.ok(); ++i) {
    const std::string p(3000, static_cast<char>('b' + i));
    auto lsn = wal->Append(p);
    if (lsn.ok())
      acked.push_back(p);
    else
      full = lsn.status();
  }
  ASSERT_TRUE(full.IsNoSpace()) << full.ToString();
  EXPECT_EQ(full.sys_errno(), ENOSPC);
  EXPECT_OK(wal->health());
  fs.SetSpaceLimit(UINT64_MAX);  // space is freed
  ASSERT_OK_AND_ASSIGN(uint64_t lsn, wal->Append(std::string(3000, 'z')));
  EXPECT_EQ(lsn, acked.size() + 1);
  acked.push_back(std::string(3000, 'z'));
  ASSERT_OK(wal->Close());
  ASSERT_OK_AND_ASSIGN(auto reopened, OpenWal(&fs, Always(4096), 0, &r));
  EXPECT_EQ(r.payloads(), acked);
}

TEST(Wal, TooLargeRecordIsRejected) {
  FaultFileSystem fs(30);
  Replayed r;
  ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, Always(), 0, &r));
  // Not allocated: a view over a fake pointer would do, but a real string keeps ASan quiet.
  std::string huge;
  huge.resize(wal::kMaxRecordPayload + 1);
  auto res = wal->Append(huge);
  EXPECT_EQ(res.status().code(), StatusCode::kInvalidArgument);
}

TEST(Wal, PositionsPointAtThePayloadAndMatchWhatRecoveryReports) {
  FaultFileSystem fs(31);
  Replayed r;
  std::vector<WalPosition> appended;
  std::vector<std::string> payloads;
  {
    ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, Always(1024), 0, &r));
    for (int i = 0; i < 30; ++i) {
      payloads.push_back(std::string(50 + i * 7, static_cast<char>('a' + i % 26)));
      ASSERT_OK_AND_ASSIGN(WalPosition p, wal->AppendWithPosition(payloads.back()));
      EXPECT_EQ(p.lsn, static_cast<uint64_t>(i + 1));
      appended.push_back(p);
      // The payload can be read back from the log where the position says.
      ASSERT_OK_AND_ASSIGN(auto file, fs.NewRandomAccessFile(wal->SegmentPath(p.segment)));
      std::string buf(payloads.back().size(), '\0');
      ASSERT_OK_AND_ASSIGN(size_t n, file->Read(p.payload_offset, buf.size(), buf.data()));
      ASSERT_EQ(n, buf.size());
      EXPECT_EQ(buf, payloads.back()) << "record " << i;
    }
    EXPECT_GT(appended.back().segment, appended.front().segment);  // it rotated
  }
  std::vector<WalRecord> seen;
  WalReadReport report;
  ASSERT_OK(ReadWal(&fs, kDir, 0, WalRecordFn([&](const WalRecord& rec) {
    seen.push_back(rec);
    EXPECT_EQ(rec.payload, payloads[rec.lsn - 1]);
    return Status::OK();
  }),
                    &report));
  ASSERT_EQ(seen.size(), appended.size());
  for (size_t i = 0; i < seen.size(); ++i) {
    EXPECT_EQ(seen[i].segment, appended[i].segment);
    EXPECT_EQ(seen[i].payload_offset, appended[i].payload_offset);
  }
}

// Any single damaged byte, or a file cut short, anywhere in a multi-segment log of records all
// acknowledged durable: the reader either reports corruption or returns every record as
// written. Never a shorter log, never a record that differs, never a crash.
TEST(WalReader, DamageAnywhereGivesAnErrorOrAnExactPrefix) {
  const uint64_t seed = test::TestSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  FaultFileSystem fs(seed);
  Replayed r;
  std::vector<std::string> written;
  {
    ASSERT_OK_AND_ASSIGN(auto wal, OpenWal(&fs, Always(2048), 0, &r));
    for (int i = 0; i < 60; ++i) {
      written.push_back(std::string(rng() % 300, static_cast<char>('a' + i % 26)));
      ASSERT_OK(wal->Append(written.back()));
    }
  }
  const auto names = SegmentNames(&fs);
  ASSERT_GT(names.size(), 3u);
  for (int trial = 0; trial < 400; ++trial) {
    const std::string path = Path(names[rng() % names.size()]);
    ASSERT_OK_AND_ASSIGN(uint64_t size, fs.FileSize(path));
    ASSERT_OK_AND_ASSIGN(std::string original, ReadFileToString(&fs, path));
    std::string damaged = original;
    if (trial % 4 == 3) {
      // Cut short, not to nothing: an empty newest segment cannot be told from one just
      // created (WAL_FORMAT.md, "Recovery").
      damaged.resize(1 + rng() % (size - 1));
    } else {
      damaged[rng() % size] ^= static_cast<char>(1 + rng() % 255);
    }
    ASSERT_OK(WriteFileAtomically(&fs, path, damaged));
    std::vector<std::string> got;
    WalReadReport report;
    Status s = ReadWal(
        &fs, kDir, 0,
        [&](uint64_t, std::string_view p) {
          got.emplace_back(p);
          return Status::OK();
        },
        &report);
    if (s.ok()) {
      // Every record was acknowledged durable (sync mode always), so none may be missing: a
      // read that succeeds over damage must have found it outside the records (in a segment's
      // zeros, or past an older segment's recorded end).
      ASSERT_EQ(got.size(), written.size()) << "trial " << trial << ": " << report.Summary();
      for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], written[i]) << "record " << i;
    } else {
      EXPECT_TRUE(s.IsCorruption()) << s.ToString();
    }
    ASSERT_OK(WriteFileAtomically(&fs, path, original));
  }
}

TEST(Wal, ParsesSyncModes) {
  EXPECT_EQ(*ParseSyncMode("always"), SyncMode::kAlways);
  EXPECT_EQ(*ParseSyncMode("batch"), SyncMode::kBatch);
  EXPECT_EQ(*ParseSyncMode("none"), SyncMode::kNone);
  EXPECT_FALSE(ParseSyncMode("sometimes").ok());
  EXPECT_STREQ(SyncModeName(SyncMode::kBatch), "batch");
}

// --- Group commit ------------------------------------------------------------------------

// A WritableFile that passes every call to the one it wraps; test file systems below wrap the
// active segments in subclasses that override what they watch.
class ForwardingFile : public WritableFile {
 public:
  explicit ForwardingFile(std::unique_ptr<WritableFile> inner)
      : WritableFile(inner->path(), inner->Size()), inner_(std::move(inner)) {}

 protected:
  Status DoWrite(uint64_t, std::string_view data) override { return inner_->Append(data); }
  Status DoSync(bool data_only) override { return data_only ? inner_->DataSync() : inner_->Sync(); }
  Status DoPreallocate(uint64_t length) override { return inner_->Preallocate(length); }
  Status DoStartWriteback(uint64_t offset, uint64_t n) override {
    return inner_->StartWriteback(offset, n);
  }
  Status DoClose() override { return inner_->Close(); }
  uint64_t inner_size() const { return inner_->Size(); }

 private:
  std::unique_ptr<WritableFile> inner_;
};

// A file system whose file syncs can be held at a gate, so a test can line up requests behind
// a leader that is inside fdatasync.
class GatedFileSystem : public PosixFileSystem {
 public:
  void Close() {
    std::lock_guard<std::mutex> l(mu_);
    closed_ = true;
    syncs_in_progress_ = 0;
  }
  void Open() {
    std::lock_guard<std::mutex> l(mu_);
    closed_ = false;
    cv_.notify_all();
  }
  void WaitForSyncAtGate() {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return syncs_in_progress_ > 0; });
  }
  int syncs() const { return syncs_.load(); }

  Result<std::unique_ptr<WritableFile>> DoNewWritableFile(const std::string& path,
                                                          CreateMode mode) override {
    KVFS_ASSIGN_OR_RETURN(auto inner, PosixFileSystem::DoNewWritableFile(path, mode));
    // Gate only active segments (opened to overwrite their zeros), not the background
    // preparation of the next one.
    if (mode != CreateMode::kOverwrite) return inner;
    return std::unique_ptr<WritableFile>(new GatedFile(this, std::move(inner)));
  }

 private:
  class GatedFile : public ForwardingFile {
   public:
    GatedFile(GatedFileSystem* fs, std::unique_ptr<WritableFile> inner)
        : ForwardingFile(std::move(inner)), fs_(fs) {}

   protected:
    Status DoSync(bool data_only) override {
      {
        std::unique_lock<std::mutex> l(fs_->mu_);
        ++fs_->syncs_in_progress_;
        fs_->cv_.notify_all();
        fs_->cv_.wait(l, [&] { return !fs_->closed_; });
      }
      ++fs_->syncs_;
      return ForwardingFile::DoSync(data_only);
    }

   private:
    GatedFileSystem* fs_;
  };

  std::mutex mu_;
  std::condition_variable cv_;
  bool closed_ = false;
  int syncs_in_progress_ = 0;
  std::atomic<int> syncs_{0};
};

// Waits until n requests are pending and records up to `written` are written (so those of
// them that are appends wait for a sync, not for their write).
void WaitForPending(Wal* wal, size_t n, uint64_t written = 0) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while ((wal->pending_requests() < n || wal->last_lsn() < written) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  ASSERT_EQ(wal->pending_requests(), n);
  ASSERT_GE(wal->last_lsn(), written);
}

TEST(WalGroupCommit, AppendersQueuedBehindALeaderShareOneSync) {
  test::TempDir tmp;
  GatedFileSystem fs;
  WalOptions o = Always();
  ASSERT_OK_AND_ASSIGN(auto wal,
                       Wal::Open(&fs, tmp.Sub("wal"), o, 0,
                                 [](uint64_t, std::string_view) { return Status::OK(); }));
  const WalStats before = wal->stats();
  fs.Close();
  std::thread leader([&] { EXPECT_OK(wal->Append("leader")); });
  fs.WaitForSyncAtGate();
  std::vector<std::thread> followers;
  for (int i = 0; i < 7; ++i) {
    followers.emplace_back([&, i] { EXPECT_OK(wal->Append("follower" + std::to_string(i))); });
  }
  // The leader in its sync, and all seven written and waiting for the next one: with only
  // "pending", a follower writing the others' group could still be writing when the gate
  // opened, and the seven then took two syncs (seen under ThreadSanitizer).
  WaitForPending(wal.get(), 8, /*written=*/8);
  fs.Open();
  leader.join();
  for (auto& t : followers) t.join();
  const WalStats after = wal->stats();
  EXPECT_EQ(after.appends - before.appends, 8u);
  EXPECT_EQ(after.syncs - before.syncs, 2u);  // the leader's, then one for all seven
  EXPECT_EQ(after.max_group, 7u);
  EXPECT_EQ(wal->durable_lsn(), 8u);
}

TEST(WalGroupCommit, ConcurrentSyncCallsShareOneSync) {
  test::TempDir tmp;
  GatedFileSystem fs;
  WalOptions o = Always();
  o.sync_mode = SyncMode::kNone;
  ASSERT_OK_AND_ASSIGN(auto wal,
                       Wal::Open(&fs, tmp.Sub("wal"), o, 0,
                                 [](uint64_t, std::string_view) { return Status::OK(); }));
  ASSERT_OK(wal->Append("a"));
  fs.Close();
  std::thread first([&] { EXPECT_OK(wal->Sync()); });
  fs.WaitForSyncAtGate();
  // A sync in flight does not hold up an append: it is written at once.
  ASSERT_OK_AND_ASSIGN(uint64_t lsn, wal->Append("b"));
  EXPECT_EQ(lsn, 2u);
  EXPECT_EQ(wal->durable_lsn(), 0u);
  std::vector<std::thread> syncers;
  for (int i = 0; i < 5; ++i) syncers.emplace_back([&] { EXPECT_OK(wal->Sync()); });
  WaitForPending(wal.get(), 6);  // the first sync, and five waiting behind it
  const int syncs_before_release = fs.syncs();
  fs.Open();
  first.join();
  for (auto& t : syncers) t.join();
  // The first covered "a"; one more covered "b" for all five.
  EXPECT_EQ(fs.syncs() - syncs_before_release, 2);
  EXPECT_EQ(wal->durable_lsn(), 2u);
}

// A full sync (fsync, asked for metadata too) is not covered by an fsync that was already
// running when it was asked for; several asked for meanwhile share the next one.
TEST(WalGroupCommit, FullSyncsWaitForAnFsyncBegunAfterThemAndShareIt) {
  test::TempDir tmp;
  GatedFileSystem fs;
  WalOptions o = Always();
  o.sync_mode = SyncMode::kNone;
  ASSERT_OK_AND_ASSIGN(auto wal,
                       Wal::Open(&fs, tmp.Sub("wal"), o, 0,
                                 [](uint64_t, std::string_view) { return Status::OK(); }));
  ASSERT_OK(wal->Append("a"));
  fs.Close();
  std::thread first([&] { EXPECT_OK(wal->Sync(/*data_only=*/false)); });
  fs.WaitForSyncAtGate();
  std::vector<std::thread> later;
  for (int i = 0; i < 3; ++i) later.emplace_back([&] { EXPECT_OK(wal->Sync(false)); });
  WaitForPending(wal.get(), 4);
  const int before = fs.syncs();
  fs.Open();
  first.join();
  for (auto& t : later) t.join();
  EXPECT_EQ(fs.syncs() - before, 2);  // the first fsync, then one for the three
  const int after = fs.syncs();
  ASSERT_OK(wal->Sync());  // a data sync of what is durable already costs nothing
  EXPECT_EQ(fs.syncs(), after);
}

void WaitForGathering(Wal* wal) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!wal->GatheringForTesting() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  ASSERT_TRUE(wal->GatheringForTesting());
}

// Sync gathering, with a wait long enough that only the expected syncer's arrival (or a close)
// can end it: the outcome depends on no timing.
WalOptions GatherUntilTheyCome() {
  WalOptions o = Always();
  o.sync_gather_fraction = 1e9;
  o.max_sync_gather = std::chrono::hours(1);
  return o;
}

// The scene the gathering tests share: A's append leads a sync held at the gate while B's
// record is written and waits behind it; the gate opens and A's append returns. B, still
// running in *b, is left to lead the next sync, expecting A back.
void SyncInTurn(Wal* wal, GatedFileSystem* fs, std::string_view a_record, std::string_view b_record,
                std::thread* b) {
  fs->Close();
  std::thread a([&] { EXPECT_OK(wal->Append(a_record)); });
  fs->WaitForSyncAtGate();
  *b = std::thread([wal, b_record] { EXPECT_OK(wal->Append(b_record)); });
  WaitForPending(wal, 2, /*written=*/2);
  fs->Open();
  a.join();
}

// A syncs (held at the gate) while B's record is written and waits. Without gathering, B's
// sync would start the moment A's ends and cover B alone, and A's next record would need a
// third sync; the leader waits for A to come back instead, and one sync covers both.
TEST(WalGroupCommit, TwoThreadsSyncingInTurnShareTheNextSync) {
  test::TempDir tmp;
  GatedFileSystem fs;
  ASSERT_OK_AND_ASSIGN(auto wal,
                       Wal::Open(&fs, tmp.Sub("wal"), GatherUntilTheyCome(), 0,
                                 [](uint64_t, std::string_view) { return Status::OK(); }));
  const int before = fs.syncs();
  std::thread b;
  SyncInTurn(wal.get(), &fs, "a1", "b1", &b);
  EXPECT_OK(wal->Append("a2"));  // A, back for its next sync
  b.join();
  EXPECT_EQ(fs.syncs() - before, 2);  // A's first, then one for b1 and a2
  EXPECT_EQ(wal->stats().max_group, 2u);
  EXPECT_EQ(wal->durable_lsn(), 3u);
}

// The expected syncer never comes back: the leader syncs once its wait (capped at
// max_sync_gather) is over, and its caller's record is durable.
TEST(WalGroupCommit, ALeaderWhoseExpectedSyncerDoesNotComeBackStillSyncs) {
  test::TempDir tmp;
  GatedFileSystem fs;
  WalOptions o = Always();
  o.max_sync_gather = std::chrono::milliseconds(5);
  ASSERT_OK_AND_ASSIGN(auto wal,
                       Wal::Open(&fs, tmp.Sub("wal"), o, 0,
                                 [](uint64_t, std::string_view) { return Status::OK(); }));
  std::thread b;
  SyncInTurn(wal.get(), &fs, "a", "b", &b);  // A's only record
  b.join();
  EXPECT_EQ(wal->durable_lsn(), 2u);
}

// A's next record does not fit in the segment: its rotation waits for the sync leader, so it
// ends the leader's wait for A instead of waiting out the window (an hour here).
TEST(WalGroupCommit, ARotationEndsAGatheringLeadersWait) {
  test::TempDir tmp;
  GatedFileSystem fs;
  WalOptions o = GatherUntilTheyCome();
  o.segment_size = wal::kSegmentHeaderSize + 2 * wal::RecordSize(2);  // room for a1 and b1
  ASSERT_OK_AND_ASSIGN(auto wal,
                       Wal::Open(&fs, tmp.Sub("wal"), o, 0,
                                 [](uint64_t, std::string_view) { return Status::OK(); }));
  std::thread b;
  SyncInTurn(wal.get(), &fs, "a1", "b1", &b);
  WaitForGathering(wal.get());   // B leads the next sync and waits for A
  EXPECT_OK(wal->Append("a2"));  // rotates to the next segment
  b.join();
  EXPECT_EQ(wal->durable_lsn(), 3u);
  EXPECT_EQ(wal->stats().segments_created, 2u);
}

// A close does not wait out a gathering leader's window (an hour here): the leader syncs at
// once and Close returns with everything durable.
TEST(WalGroupCommit, CloseEndsAGatheringLeadersWait) {
  test::TempDir tmp;
  GatedFileSystem fs;
  ASSERT_OK_AND_ASSIGN(auto wal,
                       Wal::Open(&fs, tmp.Sub("wal"), GatherUntilTheyCome(), 0,
                                 [](uint64_t, std::string_view) { return Status::OK(); }));
  std::thread b;
  SyncInTurn(wal.get(), &fs, "a", "b", &b);
  WaitForGathering(wal.get());  // B leads the next sync and waits for A, which is gone
  EXPECT_OK(wal->Close());
  b.join();
  EXPECT_EQ(wal->durable_lsn(), 2u);
}

TEST(WalGroupCommit, SyncOfAlreadyDurableRecordsCostsNothing) {
  test::TempDir tmp;
  GatedFileSystem fs;
  ASSERT_OK_AND_ASSIGN(auto wal,
                       Wal::Open(&fs, tmp.Sub("wal"), Always(), 0,
                                 [](uint64_t, std::string_view) { return Status::OK(); }));
  ASSERT_OK(wal->Append("a"));
  const int syncs = fs.syncs();
  ASSERT_OK(wal->Sync());
  ASSERT_OK(wal->SyncUpTo(1));
  EXPECT_EQ(fs.syncs(), syncs);
  ASSERT_OK(wal->Sync(/*data_only=*/false));  // fsync is asked for metadata: it always syncs
  EXPECT_EQ(fs.syncs(), syncs + 1);
}

TEST(WalGroupCommit, ManyThreadsOnTheRealDiskKeepEveryRecordInOrder) {
  test::TempDir tmp;
  PosixFileSystem fs;
  const std::string dir = tmp.Sub("wal");
  WalOptions o = Always(256 << 10);
  constexpr int kThreads = 8, kPerThread = 200;
  {
    ASSERT_OK_AND_ASSIGN(auto wal, Wal::Open(&fs, dir, o, 0, [](uint64_t, std::string_view) {
                           return Status::OK();
                         }));
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        uint64_t prev = 0;
        for (int i = 0; i < kPerThread; ++i) {
          auto lsn = wal->Append(std::to_string(t) + ":" + std::to_string(i));
          ASSERT_TRUE(lsn.ok()) << lsn.status().ToString();
          EXPECT_GT(*lsn, prev);
          prev = *lsn;
        }
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_LE(wal->stats().syncs, static_cast<uint64_t>(kThreads * kPerThread));
  }
  std::vector<int> next(kThreads, 0);
  uint64_t count = 0;
  ASSERT_OK_AND_ASSIGN(auto wal, Wal::Open(&fs, dir, o, 0, [&](uint64_t, std::string_view p) {
                         const auto colon = p.find(':');
                         const int t = std::stoi(std::string(p.substr(0, colon)));
                         const int i = std::stoi(std::string(p.substr(colon + 1)));
                         EXPECT_EQ(i, next[t]) << "thread " << t;
                         next[t] = i + 1;
                         ++count;
                         return Status::OK();
                       }));
  EXPECT_EQ(count, static_cast<uint64_t>(kThreads * kPerThread));
}

// --- Writeback hints -----------------------------------------------------------------------

// Records every StartWriteback on the active segments (files opened to overwrite their zeros),
// and can fail them.
class WritebackRecordingFileSystem : public PosixFileSystem {
 public:
  struct Hint {
    std::string path;
    uint64_t offset, n, size_then;
  };
  std::vector<Hint> hints() const {
    std::lock_guard<std::mutex> l(mu_);
    return hints_;
  }
  void FailHints(Status s) {
    std::lock_guard<std::mutex> l(mu_);
    fail_ = std::move(s);
  }

  Result<std::unique_ptr<WritableFile>> DoNewWritableFile(const std::string& path,
                                                          CreateMode mode) override {
    KVFS_ASSIGN_OR_RETURN(auto inner, PosixFileSystem::DoNewWritableFile(path, mode));
    if (mode != CreateMode::kOverwrite) return inner;
    return std::unique_ptr<WritableFile>(new RecordingFile(this, std::move(inner)));
  }

 private:
  class RecordingFile : public ForwardingFile {
   public:
    RecordingFile(WritebackRecordingFileSystem* fs, std::unique_ptr<WritableFile> inner)
        : ForwardingFile(std::move(inner)), fs_(fs) {}

   protected:
    Status DoStartWriteback(uint64_t offset, uint64_t n) override {
      std::lock_guard<std::mutex> l(fs_->mu_);
      fs_->hints_.push_back({path(), offset, n, inner_size()});
      if (!fs_->fail_.ok()) return fs_->fail_;
      return ForwardingFile::DoStartWriteback(offset, n);
    }

   private:
    WritebackRecordingFileSystem* fs_;
  };

  mutable std::mutex mu_;
  std::vector<Hint> hints_;
  Status fail_;
};

WalOptions Buffered(uint64_t segment_size, uint64_t writeback_bytes) {
  WalOptions o;
  o.sync_mode = SyncMode::kNone;
  o.segment_size = segment_size;
  o.first_segment_size = segment_size;
  o.writeback_bytes = writeback_bytes;
  return o;
}

TEST(WalWriteback, HintsCoverEachSegmentInWholePagesOnceEveryWritebackBytes) {
  test::TempDir tmp;
  WritebackRecordingFileSystem fs;
  constexpr uint64_t kEvery = 64 << 10;
  const std::string dir = tmp.Sub("wal");
  uint64_t last = 0;
  {
    ASSERT_OK_AND_ASSIGN(auto wal,
                         Wal::Open(&fs, dir, Buffered(1 << 20, kEvery), 0,
                                   [](uint64_t, std::string_view) { return Status::OK(); }));
    // About 2.5 MiB of records: three segments, the last one part full.
    for (int i = 0; i < 2500; ++i) ASSERT_OK(wal->Append(std::string(1000, 'a' + i % 26)));
    last = wal->last_lsn();
    EXPECT_GE(wal->stats().segments_created, 3u);
  }
  const auto hints = fs.hints();
  ASSERT_FALSE(hints.empty());
  std::map<std::string, uint64_t> next;  // per segment: where the next hint must start
  for (const auto& h : hints) {
    SCOPED_TRACE(h.path + " @" + std::to_string(h.offset) + "+" + std::to_string(h.n));
    EXPECT_EQ(h.offset, next[h.path]) << "hints are contiguous from the segment's start";
    EXPECT_GE(h.n, kEvery);
    EXPECT_LT(h.n, kEvery + 4096 + 1000) << "no more than one group past the threshold";
    EXPECT_EQ((h.offset + h.n) % 4096, 0u) << "whole pages only";
    EXPECT_LE(h.offset + h.n, h.size_then) << "nothing past what was written";
    next[h.path] = h.offset + h.n;
  }
  EXPECT_GE(next.size(), 3u) << "each segment is hinted from its own start";
  int full = 0;  // segments hinted up to their last stretch (the seal's sync does the rest)
  for (const auto& [path, end] : next) full += end > (uint64_t{1} << 20) - kEvery - 8192 ? 1 : 0;
  EXPECT_GE(full, 2);
  uint64_t replayed = 0;
  ASSERT_OK_AND_ASSIGN(
      auto wal, Wal::Open(&fs, dir, Buffered(1 << 20, kEvery), 0, [&](uint64_t, std::string_view) {
        ++replayed;
        return Status::OK();
      }));
  EXPECT_EQ(replayed, last);
}

TEST(WalWriteback, ZeroWritebackBytesSendsNoHints) {
  test::TempDir tmp;
  WritebackRecordingFileSystem fs;
  ASSERT_OK_AND_ASSIGN(auto wal,
                       Wal::Open(&fs, tmp.Sub("wal"), Buffered(1 << 20, 0), 0,
                                 [](uint64_t, std::string_view) { return Status::OK(); }));
  for (int i = 0; i < 2500; ++i) ASSERT_OK(wal->Append(std::string(1000, 'z')));
  EXPECT_TRUE(fs.hints().empty());
}

TEST(WalWriteback, AFailedHintFailsTheLogAndAcknowledgesNothingMore) {
  test::TempDir tmp;
  WritebackRecordingFileSystem fs;
  ASSERT_OK_AND_ASSIGN(auto wal,
                       Wal::Open(&fs, tmp.Sub("wal"), Buffered(1 << 20, 16 << 10), 0,
                                 [](uint64_t, std::string_view) { return Status::OK(); }));
  fs.FailHints(Status::FromErrno(EIO, "sync_file_range segment"));
  Status failed;
  int appended = 0;
  for (; appended < 100 && failed.ok(); ++appended) {
    failed = wal->Append(std::string(1000, 'e')).status();
  }
  ASSERT_FALSE(failed.ok()) << "16 KiB of records must have asked for writeback";
  EXPECT_EQ(failed.sys_errno(), EIO) << failed.ToString();
  EXPECT_EQ(fs.hints().size(), 1u);
  EXPECT_TRUE(wal->stats().failed);
  const Status after = wal->Append("more").status();
  EXPECT_TRUE(after.IsFailed()) << after.ToString();
  EXPECT_TRUE(wal->Sync().IsFailed());
}

}  // namespace
}  // namespace kvfs::sync
