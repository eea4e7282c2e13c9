#include "sync/tree_copy.h"

#include <gtest/gtest.h>

#include "sync/durable.h"
#include "sync/fault_file_system.h"
#include "sync/posix_file_system.h"
#include "tests/test_util.h"

namespace kvfs::sync {
namespace {

Status WriteSynced(FileSystem* fs, const std::string& path, std::string_view data) {
  KVFS_ASSIGN_OR_RETURN(auto f, CreateFileDurably(fs, path));
  KVFS_RETURN_IF_ERROR(f->Append(data));
  KVFS_RETURN_IF_ERROR(f->Sync());
  return f->Close();
}

TEST(CopyTreeDurably, ThePostCrashImageRoundTripsThroughARealDirectory) {
  test::TempDir tmp;
  FaultFileSystem fault(3);
  ASSERT_OK(CreateDirDurably(&fault, "/data/a/b"));
  ASSERT_OK(WriteSynced(&fault, "/data/a/kept", "durable"));
  ASSERT_OK(WriteSynced(&fault, "/data/a/b/big", std::string(3 << 20, 'x')));
  {
    // Written but never synced: the power cut takes it.
    ASSERT_OK_AND_ASSIGN(auto f, fault.NewWritableFile("/data/a/lost", CreateMode::kCreateNew));
    ASSERT_OK(f->Append("gone"));
  }
  fault.Crash(CrashMode::kDropUnsynced);

  FileSystem* posix = DefaultFileSystem();
  ASSERT_OK(WriteSynced(posix, tmp.Sub("stale"), "removed by the copy"));
  ASSERT_OK(CopyTreeDurably(&fault, "/data", posix, tmp.path()));
  EXPECT_EQ(*ReadFileToString(posix, tmp.Sub("a/kept")), "durable");
  EXPECT_EQ(ReadFileToString(posix, tmp.Sub("a/b/big"))->size(), size_t{3} << 20);
  EXPECT_FALSE(*posix->Exists(tmp.Sub("a/lost")));
  EXPECT_FALSE(*posix->Exists(tmp.Sub("stale")));

  // And back into a fresh model, where it is durable at once.
  FaultFileSystem again(4);
  ASSERT_OK(CopyTreeDurably(posix, tmp.path(), &again, "/data"));
  again.Crash(CrashMode::kDropUnsynced);
  EXPECT_EQ(*ReadFileToString(&again, "/data/a/kept"), "durable");
  EXPECT_EQ(ReadFileToString(&again, "/data/a/b/big")->size(), size_t{3} << 20);
}

TEST(CopyTreeDurably, AFrozenImageRefusesChangesButCanBeCopied) {
  test::TempDir tmp;
  FaultFileSystem fault(5);
  ASSERT_OK(CreateDirDurably(&fault, "/data"));
  ASSERT_OK(WriteSynced(&fault, "/data/kept", "durable"));
  ASSERT_OK_AND_ASSIGN(auto open, fault.NewWritableFile("/data/pending", CreateMode::kCreateNew));
  ASSERT_OK(open->Append("unsynced"));
  fault.CrashAndFreeze(CrashMode::kDropUnsynced);
  // The process that lost power goes on running for a moment: nothing it does lands.
  EXPECT_FALSE(open->Append("more").ok());
  EXPECT_FALSE(fault.NewWritableFile("/data/new", CreateMode::kCreateNew).ok());
  EXPECT_FALSE(SyncDir(&fault, "/data").ok());
  ASSERT_OK(CopyTreeDurably(&fault, "/data", DefaultFileSystem(), tmp.path()));
  EXPECT_EQ(*ReadFileToString(DefaultFileSystem(), tmp.Sub("kept")), "durable");
  EXPECT_FALSE(*DefaultFileSystem()->Exists(tmp.Sub("pending")));
  EXPECT_FALSE(*DefaultFileSystem()->Exists(tmp.Sub("new")));
}

}  // namespace
}  // namespace kvfs::sync
