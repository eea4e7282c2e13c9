// The sync failure policy of FileSystem's fronts (file_system.h): no sync error is retryable,
// whatever its errno, and after a failed sync in this process no new handle of that file or
// directory can sync it again into a success.
#include <gtest/gtest.h>

#include <cerrno>

#include "sync/fault_file_system.h"
#include "sync/file_system.h"
#include "tests/test_util.h"

namespace kvfs::sync {
namespace {

Status Write(FileSystem& fs, const std::string& path, std::string_view data) {
  KVFS_ASSIGN_OR_RETURN(auto f, fs.NewWritableFile(path, CreateMode::kAppend));
  KVFS_RETURN_IF_ERROR(f->Append(data));
  return f->DataSync();
}

// ENOSPC and EDQUOT from a sync are not "retry once space is freed": the pages it did not write
// may be gone. They latch like EIO and are never reported as the retryable kNoSpace.
TEST(SyncFailure, NoSpaceFromASyncIsFinalNotRetryable) {
  for (int err : {ENOSPC, EDQUOT}) {
    SCOPED_TRACE(err);
    FaultFileSystem fs(1);
    ASSERT_OK_AND_ASSIGN(auto f, fs.NewWritableFile("/f", CreateMode::kCreateNew));
    ASSERT_OK(f->Append("data"));
    fs.FailSyncAfter(1, err);
    Status s = f->DataSync();
    EXPECT_FALSE(s.IsNoSpace()) << s.ToString();
    EXPECT_TRUE(s.IsIOError()) << s.ToString();
    EXPECT_EQ(s.sys_errno(), err);
    EXPECT_TRUE(f->DataSync().IsFailed());
    EXPECT_TRUE(f->Append("more").IsFailed());
  }
}

// The same from a directory fsync.
TEST(SyncFailure, NoSpaceFromADirectoryFsyncIsFinal) {
  FaultFileSystem fs(2);
  ASSERT_OK(fs.CreateDir("/d"));
  ASSERT_OK_AND_ASSIGN(auto d, fs.OpenDirectory("/d"));
  fs.FailSyncAfter(1, ENOSPC);
  Status s = d->Fsync();
  EXPECT_TRUE(s.IsIOError()) << s.ToString();
  EXPECT_TRUE(d->Fsync().IsFailed());
}

// A write's ENOSPC stays retryable: nothing was acknowledged.
TEST(SyncFailure, NoSpaceFromAWriteStaysRetryable) {
  FaultFileSystem fs(3);
  ASSERT_OK_AND_ASSIGN(auto f, fs.NewWritableFile("/f", CreateMode::kCreateNew));
  fs.SetSpaceLimit(2);
  EXPECT_TRUE(f->Append("toolong").IsNoSpace());
  fs.SetSpaceLimit(UINT64_MAX);
  EXPECT_OK(f->Append("fits"));
  EXPECT_OK(f->DataSync());
}

// PostgreSQL's fsync trap, closed: a new handle of a file whose sync failed starts failed, so
// its sync cannot "succeed" over the pages the kernel dropped.
TEST(SyncFailure, AFreshHandleAfterAFailedSyncStartsFailed) {
  FaultFileSystem fs(4);
  {
    ASSERT_OK_AND_ASSIGN(auto f, fs.NewWritableFile("/f", CreateMode::kCreateNew));
    ASSERT_OK(f->Append("lost"));
    fs.FailSyncAfter(1);
    EXPECT_FALSE(f->DataSync().ok());
  }
  ASSERT_OK_AND_ASSIGN(auto again, fs.NewWritableFile("/f", CreateMode::kAppend));
  Status s = again->DataSync();
  EXPECT_TRUE(s.IsFailed()) << s.ToString();
  EXPECT_EQ(s.sys_errno(), EIO);
  EXPECT_NE(s.message().find("failed earlier in this process"), std::string::npos) << s.ToString();
  ASSERT_OK_AND_ASSIGN(auto rw, fs.NewRandomRWFile("/f", false));
  EXPECT_TRUE(rw->DataSync().IsFailed());
  EXPECT_TRUE(rw->Write(0, "x").IsFailed());
}

TEST(SyncFailure, AFreshDirectoryHandleAfterAFailedFsyncStartsFailed) {
  FaultFileSystem fs(5);
  ASSERT_OK(fs.CreateDir("/d"));
  {
    ASSERT_OK_AND_ASSIGN(auto d, fs.OpenDirectory("/d"));
    fs.FailSyncAfter(1);
    EXPECT_FALSE(d->Fsync().ok());
  }
  ASSERT_OK_AND_ASSIGN(auto again, fs.OpenDirectory("/d"));
  EXPECT_TRUE(again->Fsync().IsFailed());
}

// Removing the name, or renaming another file over it, makes it another file; a rename carries
// the memory to the new name.
TEST(SyncFailure, RemoveAndRenameMakeTheNameAnotherFile) {
  FaultFileSystem fs(6);
  ASSERT_OK(Write(fs, "/f", "ok"));
  {
    ASSERT_OK_AND_ASSIGN(auto f, fs.NewWritableFile("/f", CreateMode::kAppend));
    fs.FailSyncAfter(1);
    EXPECT_FALSE(f->DataSync().ok());
  }
  ASSERT_OK(fs.Rename("/f", "/g"));
  EXPECT_TRUE(Write(fs, "/g", "x").IsFailed());  // the failed file, under its new name
  EXPECT_OK(Write(fs, "/f", "new file"));
  ASSERT_OK(fs.RemoveFile("/g"));
  EXPECT_OK(Write(fs, "/g", "new file"));
  ASSERT_OK(Write(fs, "/h", "h"));
  ASSERT_OK_AND_ASSIGN(auto f, fs.NewWritableFile("/f", CreateMode::kAppend));
  fs.FailSyncAfter(1);
  EXPECT_FALSE(f->DataSync().ok());
  ASSERT_OK(fs.Rename("/h", "/f"));  // /f is now h's file
  EXPECT_OK(Write(fs, "/f", "+"));
}

// A reboot forgets: the page cache that could have lied is gone. And a dead process's handle
// failing after the reboot is not remembered for the new one.
TEST(SyncFailure, ACrashForgetsAndOldHandlesDoNotPoisonTheNextBoot) {
  FaultFileSystem fs(7);
  ASSERT_OK(Write(fs, "/f", "durable"));
  ASSERT_OK_AND_ASSIGN(auto old, fs.NewWritableFile("/f", CreateMode::kAppend));
  fs.FailSyncAfter(1);
  EXPECT_FALSE(old->DataSync().ok());
  ASSERT_OK_AND_ASSIGN(auto other, fs.NewWritableFile("/g", CreateMode::kCreateNew));
  fs.Crash(CrashMode::kDropUnsynced);
  EXPECT_FALSE(other->DataSync().ok());  // a handle from before the crash
  EXPECT_OK(Write(fs, "/f", "+after reboot"));
  ASSERT_OK(Write(fs, "/g", "g"));
}

}  // namespace
}  // namespace kvfs::sync
