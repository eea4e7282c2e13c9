// What the log does after a failed sync, whatever its errno: it fails for good, leaves a note
// that tells recovery where acknowledged records end, and cannot be reopened in the same
// process into pretending the failed segment is synced.
#include <gtest/gtest.h>

#include <cerrno>
#include <string>

#include "sync/durable.h"
#include "sync/fault_file_system.h"
#include "sync/wal.h"
#include "sync/wal_format.h"
#include "sync/wal_reader.h"
#include "tests/test_util.h"

namespace kvfs::sync {
namespace {

constexpr char kDir[] = "/db/wal";
const std::string kNote = JoinPath(kDir, wal::kFailureNoteName);

Result<std::unique_ptr<Wal>> OpenLog(FileSystem* fs, WalOptions o, std::vector<std::string>* got,
                                     WalReadReport* report = nullptr) {
  KVFS_RETURN_IF_ERROR(CreateDirDurably(fs, "/db"));
  got->clear();
  return Wal::Open(
      fs, kDir, o, 0,
      [got](uint64_t, std::string_view p) {
        got->emplace_back(p);
        return Status::OK();
      },
      report);
}

WalOptions Mode(SyncMode m) {
  WalOptions o;
  o.sync_mode = m;
  o.segment_size = o.first_segment_size = 64 << 10;
  return o;
}

// A failed sync leaves a note naming the segment and the first LSN not acknowledged durable;
// the next open (after a reboot) ends the log there, removes the note, and goes on from it.
TEST(WalFailure, AFailedSyncLeavesANoteTheNextOpenHonoursAndRemoves) {
  FaultFileSystem fs(1);
  std::vector<std::string> got;
  {
    ASSERT_OK_AND_ASSIGN(auto wal, OpenLog(&fs, Mode(SyncMode::kNone), &got));
    for (int i = 1; i <= 3; ++i) ASSERT_OK(wal->Append("durable " + std::to_string(i)));
    ASSERT_OK(wal->Sync());
    ASSERT_OK(wal->Append("never durable"));
    fs.FailSyncAfter(1);
    EXPECT_FALSE(wal->Sync().ok());
    ASSERT_OK_AND_ASSIGN(std::string bytes, ReadFileToString(&fs, kNote));
    auto note = wal::DecodeFailureNote(bytes);
    ASSERT_TRUE(note.has_value());
    EXPECT_EQ(note->first_unacknowledged_lsn, 4u);
    EXPECT_NE(note->error.find("injected EIO"), std::string::npos) << note->error;
  }
  fs.Crash(CrashMode::kKeepPrefix);
  WalReadReport report;
  ASSERT_OK_AND_ASSIGN(auto wal, OpenLog(&fs, Mode(SyncMode::kAlways), &got, &report));
  EXPECT_EQ(got, (std::vector<std::string>{"durable 1", "durable 2", "durable 3"}));
  ASSERT_OK_AND_ASSIGN(bool note_left, fs.Exists(kNote));
  EXPECT_FALSE(note_left);
  ASSERT_OK_AND_ASSIGN(uint64_t lsn, wal->Append("after"));
  EXPECT_EQ(lsn, 4u);
}

// The case the note exists for: after a failed sync the disk may hold a later record but not an
// earlier one (the pages the sync failed to write are gone). Built byte for byte here: without
// the note that is damage, with it the log ends before the first unacknowledged LSN.
TEST(WalFailure, TheNoteExplainsAHoleAfterAFailedSync) {
  FaultFileSystem fs(2);
  std::vector<std::string> got;
  std::string segment;
  {
    ASSERT_OK_AND_ASSIGN(auto wal, OpenLog(&fs, Mode(SyncMode::kAlways), &got));
    for (int i = 1; i <= 5; ++i) ASSERT_OK(wal->Append(std::string(40, 'a' + i)));
    segment = wal->SegmentPath(1);
    wal->SimulateProcessCrashForTesting();
  }
  // Record 4 lost to the failed sync, record 5 written back later.
  const uint64_t fourth = wal::kSegmentHeaderSize + 3 * wal::RecordSize(40);
  test::ZeroRange(&fs, segment, fourth, wal::RecordSize(40));
  WalReadReport report;
  Status damaged = ReadWal(
      &fs, kDir, 0, [](uint64_t, std::string_view) { return Status::OK(); }, &report);
  EXPECT_TRUE(damaged.IsCorruption()) << damaged.ToString();
  ASSERT_OK(WriteFileAtomically(&fs, kNote, wal::EncodeFailureNote({1, 4, "injected EIO"})));
  ASSERT_OK_AND_ASSIGN(auto wal, OpenLog(&fs, Mode(SyncMode::kAlways), &got, &report));
  EXPECT_EQ(got.size(), 3u);
  EXPECT_EQ(report.dropped_offset, fourth);
  EXPECT_NE(report.dropped_reason.find("the log failed at LSN 4"), std::string::npos)
      << report.dropped_reason;
}

// A note is never guessed past: damaged, it is an error naming it.
TEST(WalFailure, ADamagedNoteIsAnError) {
  FaultFileSystem fs(3);
  std::vector<std::string> got;
  {
    ASSERT_OK_AND_ASSIGN(auto wal, OpenLog(&fs, Mode(SyncMode::kAlways), &got));
    ASSERT_OK(wal->Append("x"));
  }
  std::string note = wal::EncodeFailureNote({1, 2, "injected EIO"});
  note[20] ^= 1;
  ASSERT_OK(WriteFileAtomically(&fs, kNote, note));
  auto wal = OpenLog(&fs, Mode(SyncMode::kAlways), &got);
  ASSERT_FALSE(wal.ok());
  EXPECT_TRUE(wal.status().IsCorruption()) << wal.status().ToString();
  EXPECT_NE(wal.status().message().find(kNote), std::string::npos) << wal.status().ToString();
}

// In the same process the kernel's page cache still holds what the failed sync did not write,
// and a new descriptor's fdatasync would "succeed" over it: the log cannot be reopened on it
// until a restart.
TEST(WalFailure, AReopenInTheSameProcessAfterAFailedSyncIsRefused) {
  FaultFileSystem fs(4);
  std::vector<std::string> got;
  {
    ASSERT_OK_AND_ASSIGN(auto wal, OpenLog(&fs, Mode(SyncMode::kNone), &got));
    ASSERT_OK(wal->Append("unsynced"));
    fs.FailSyncAfter(1);
    EXPECT_FALSE(wal->Sync().ok());
  }
  auto again = OpenLog(&fs, Mode(SyncMode::kNone), &got);
  ASSERT_FALSE(again.ok());
  EXPECT_TRUE(again.status().IsFailed()) << again.status().ToString();
  EXPECT_NE(again.status().message().find("failed earlier in this process"), std::string::npos)
      << again.status().ToString();
}

// ENOSPC or EDQUOT from a sync fails the log as EIO does, including the seal of a full segment
// at rotation, which the write path used to take for a retryable full disk.
TEST(WalFailure, NoSpaceFromTheSealAtRotationFailsTheLog) {
  for (int err : {ENOSPC, EDQUOT}) {
    SCOPED_TRACE(err);
    FaultFileSystem fs(5);
    std::vector<std::string> got;
    WalOptions o = Mode(SyncMode::kNone);
    o.preallocation = Preallocation::kNone;  // no background preparation: rotation syncs only
    o.segment_size = o.first_segment_size = 4096;
    ASSERT_OK_AND_ASSIGN(auto wal, OpenLog(&fs, o, &got));
    const std::string record(1000, 'r');
    for (int i = 0; i < 3; ++i) ASSERT_OK(wal->Append(record));  // fills the first segment
    fs.FailSyncAfter(1, err);                                    // the seal's fdatasync
    Status s = wal->Append(record).status();
    EXPECT_FALSE(s.ok());
    EXPECT_FALSE(s.IsNoSpace()) << s.ToString();
    EXPECT_TRUE(wal->health().IsFailed()) << wal->health().ToString();
    Status later = wal->Append(record).status();
    EXPECT_TRUE(later.IsFailed()) << later.ToString();
    EXPECT_EQ(later.sys_errno(), err);
  }
}

// ENOSPC from a write (not a sync) fails only that record: space freed, the log goes on.
TEST(WalFailure, NoSpaceFromAWriteFailsOnlyThatRecord) {
  FaultFileSystem fs(6);
  std::vector<std::string> got;
  ASSERT_OK_AND_ASSIGN(auto wal, OpenLog(&fs, Mode(SyncMode::kAlways), &got));
  ASSERT_OK_AND_ASSIGN(SpaceInfo space, fs.GetSpaceInfo("/"));
  ASSERT_OK(wal->Append("fits"));
  fs.SetSpaceLimit(space.total_bytes - space.free_bytes);  // no byte more
  // The segment is zero-filled: appends overwrite, so fill it past its end to need space.
  Status full;
  for (int i = 0; i < 200 && full.ok(); ++i) full = wal->Append(std::string(1000, 'x')).status();
  EXPECT_TRUE(full.IsNoSpace()) << full.ToString();
  EXPECT_OK(wal->health());
  fs.SetSpaceLimit(UINT64_MAX);
  EXPECT_OK(wal->Append("after space came back"));
}

}  // namespace
}  // namespace kvfs::sync
