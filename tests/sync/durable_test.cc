#include "sync/durable.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "sync/fault_file_system.h"
#include "sync/posix_file_system.h"
#include "tests/test_util.h"

namespace kvfs::sync {
namespace {

// --- Path helpers ------------------------------------------------------------------------------

TEST(PathTest, DirNameOfNestedRelativeAndRooted) {
  EXPECT_EQ(DirName("a/b"), "a");
  EXPECT_EQ(DirName("a/b/c"), "a/b");
  EXPECT_EQ(DirName("/data/wal/000001.log"), "/data/wal");
  EXPECT_EQ(DirName("b"), ".");
  EXPECT_EQ(DirName("/b"), "/");
}

TEST(PathTest, DirNameEdgeCases) {
  EXPECT_EQ(DirName(""), ".");
  EXPECT_EQ(DirName("/"), "/");
  EXPECT_EQ(DirName("//"), "/");
  EXPECT_EQ(DirName("a/b/"), "a") << "trailing slashes are ignored";
  EXPECT_EQ(DirName("a//b"), "a") << "repeated separators collapse";
  EXPECT_EQ(DirName("b/"), ".");
  EXPECT_EQ(DirName("//b"), "/");
}

TEST(PathTest, BaseNameOfNestedRelativeAndRooted) {
  EXPECT_EQ(BaseName("a/b"), "b");
  EXPECT_EQ(BaseName("/data/wal/000001.log"), "000001.log");
  EXPECT_EQ(BaseName("b"), "b");
  EXPECT_EQ(BaseName("/b"), "b");
}

TEST(PathTest, BaseNameEdgeCases) {
  EXPECT_EQ(BaseName(""), ".");
  EXPECT_EQ(BaseName("/"), "/");
  EXPECT_EQ(BaseName("a/b/"), "b");
  EXPECT_EQ(BaseName("a//b"), "b");
}

TEST(PathTest, DirNameAndBaseNameJoinBackToPath) {
  for (const char* path : {"a/b", "/data/wal/x", "/b"}) {
    EXPECT_EQ(JoinPath(DirName(path), BaseName(path)), path);
  }
}

TEST(PathTest, JoinPathAddsOneSeparator) {
  EXPECT_EQ(JoinPath("a", "b"), "a/b");
  EXPECT_EQ(JoinPath("a/", "b"), "a/b");
  EXPECT_EQ(JoinPath("/", "b"), "/b");
  EXPECT_EQ(JoinPath("/data/wal", "000001.log"), "/data/wal/000001.log");
}

TEST(PathTest, JoinPathWithEmptySide) {
  EXPECT_EQ(JoinPath("", "b"), "b");
  EXPECT_EQ(JoinPath("a", ""), "a");
  EXPECT_EQ(JoinPath("", ""), "");
}

// --- Helpers on the real file system -----------------------------------------------------------

class DurableTest : public ::testing::Test {
 protected:
  std::vector<std::string> Names() {
    Result<std::vector<std::string>> r = fs_.ListDir(dir_.path());
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : std::vector<std::string>();
  }

  PosixFileSystem fs_;
  test::TempDir dir_;
};

TEST_F(DurableTest, SyncDirSucceeds) { EXPECT_OK(SyncDir(&fs_, dir_.path())); }

TEST_F(DurableTest, SyncDirOfMissingDirIsNotFound) {
  const Status s = SyncDir(&fs_, dir_.Sub("missing"));
  EXPECT_TRUE(s.IsNotFound()) << s.ToString();
  EXPECT_NE(s.message().find(dir_.Sub("missing")), std::string::npos) << s.ToString();
}

TEST_F(DurableTest, CreateFileDurablyReturnsEmptyWritableFile) {
  const std::string path = dir_.Sub("000001.log");
  ASSERT_OK_AND_ASSIGN(auto file, CreateFileDurably(&fs_, path));
  EXPECT_EQ(file->path(), path);
  EXPECT_EQ(file->Size(), 0u);
  ASSERT_OK(file->Append("record"));
  ASSERT_OK(file->DataSync());
  ASSERT_OK(file->Close());
  ASSERT_OK_AND_ASSIGN(std::string contents, ReadFileToString(&fs_, path));
  EXPECT_EQ(contents, "record");
}

TEST_F(DurableTest, CreateFileDurablyFailsOnExistingFile) {
  const std::string path = dir_.Sub("f");
  ASSERT_OK(WriteFileAtomically(&fs_, path, "precious"));
  auto r = CreateFileDurably(&fs_, path);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsAlreadyExists()) << r.status().ToString();
  ASSERT_OK_AND_ASSIGN(std::string contents, ReadFileToString(&fs_, path));
  EXPECT_EQ(contents, "precious") << "an existing file is never truncated";
}

TEST_F(DurableTest, CreateFileDurablyInMissingDirIsNotFound) {
  auto r = CreateFileDurably(&fs_, dir_.Sub("missing/f"));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsNotFound()) << r.status().ToString();
}

TEST_F(DurableTest, CreateDirDurablyCreatesDirectory) {
  const std::string path = dir_.Sub("store");
  ASSERT_OK(CreateDirDurably(&fs_, path));
  ASSERT_OK_AND_ASSIGN(bool is_dir, fs_.IsDirectory(path));
  EXPECT_TRUE(is_dir);
}

TEST_F(DurableTest, CreateDirDurablyIsOkWhenDirExists) {
  const std::string path = dir_.Sub("store");
  ASSERT_OK(fs_.CreateDir(path));
  EXPECT_OK(CreateDirDurably(&fs_, path));
}

TEST_F(DurableTest, CreateDirDurablyFailsWhenAFileHasTheName) {
  const std::string path = dir_.Sub("store");
  ASSERT_OK(WriteFileAtomically(&fs_, path, "not a dir"));
  const Status s = CreateDirDurably(&fs_, path);
  EXPECT_TRUE(s.IsAlreadyExists()) << s.ToString();
}

TEST_F(DurableTest, CreateDirDurablyCreatesMissingParents) {
  ASSERT_OK(CreateDirDurably(&fs_, dir_.Sub("a/b/c")));
  ASSERT_OK_AND_ASSIGN(bool is_dir, fs_.IsDirectory(dir_.Sub("a/b/c")));
  EXPECT_TRUE(is_dir);
}

TEST_F(DurableTest, CreateDirDurablyUnderAFileFails) {
  ASSERT_OK(WriteFileAtomically(&fs_, dir_.Sub("f"), "x"));
  EXPECT_FALSE(CreateDirDurably(&fs_, dir_.Sub("f/sub")).ok());
}

TEST_F(DurableTest, WriteFileAtomicallyCreatesFile) {
  const std::string path = dir_.Sub("MANIFEST");
  ASSERT_OK(WriteFileAtomically(&fs_, path, "v1"));
  ASSERT_OK_AND_ASSIGN(std::string contents, ReadFileToString(&fs_, path));
  EXPECT_EQ(contents, "v1");
  EXPECT_EQ(Names(), std::vector<std::string>{"MANIFEST"});
}

TEST_F(DurableTest, WriteFileAtomicallyReplacesContentAndLeavesNoTmp) {
  const std::string path = dir_.Sub("MANIFEST");
  ASSERT_OK(WriteFileAtomically(&fs_, path, "a much longer first version"));
  ASSERT_OK(WriteFileAtomically(&fs_, path, "v2"));
  ASSERT_OK_AND_ASSIGN(std::string contents, ReadFileToString(&fs_, path));
  EXPECT_EQ(contents, "v2");
  EXPECT_EQ(Names(), std::vector<std::string>{"MANIFEST"});
}

TEST_F(DurableTest, WriteFileAtomicallyOverwritesStaleTmp) {
  const std::string path = dir_.Sub("MANIFEST");
  // As left by a crash in the middle of an earlier replace.
  ASSERT_OK_AND_ASSIGN(auto stale, fs_.NewWritableFile(path + ".tmp", CreateMode::kCreateNew));
  ASSERT_OK(stale->Append("stale garbage that is longer than the new contents"));
  ASSERT_OK(stale->Close());
  ASSERT_OK(WriteFileAtomically(&fs_, path, "fresh"));
  ASSERT_OK_AND_ASSIGN(std::string contents, ReadFileToString(&fs_, path));
  EXPECT_EQ(contents, "fresh");
  EXPECT_EQ(Names(), std::vector<std::string>{"MANIFEST"});
}

TEST_F(DurableTest, WriteFileAtomicallyOfEmptyData) {
  const std::string path = dir_.Sub("empty");
  ASSERT_OK(WriteFileAtomically(&fs_, path, "old"));
  ASSERT_OK(WriteFileAtomically(&fs_, path, ""));
  ASSERT_OK_AND_ASSIGN(std::string contents, ReadFileToString(&fs_, path));
  EXPECT_EQ(contents, "");
}

TEST_F(DurableTest, WriteFileAtomicallyInMissingDirFailsAndChangesNothing) {
  const Status s = WriteFileAtomically(&fs_, dir_.Sub("missing/f"), "x");
  EXPECT_TRUE(s.IsNotFound()) << s.ToString();
  EXPECT_NE(s.message().find(dir_.Sub("missing/f.tmp")), std::string::npos) << s.ToString();
  EXPECT_TRUE(Names().empty());
}

// --- WriteFileAtomically's outcome: whether a failure may have replaced the file ---------------

// A FaultFileSystem whose renames fail with `rename_errno` (after doing the rename when
// `rename_happens`: the error then comes too late to say whether it took).
class RenameFaultFileSystem : public FaultFileSystem {
 public:
  using FaultFileSystem::FaultFileSystem;
  int rename_errno = 0;
  bool rename_happens = false;

 protected:
  Status DoRename(const std::string& from, const std::string& to) override {
    if (rename_errno == 0) return FaultFileSystem::DoRename(from, to);
    if (rename_happens) KVFS_RETURN_IF_ERROR(FaultFileSystem::DoRename(from, to));
    return Status::FromErrno(rename_errno, "rename " + from + " to " + to + ": injected");
  }
};

class AtomicReplaceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(CreateDirDurably(&fs_, "/d"));
    ASSERT_OK(WriteFileAtomically(&fs_, kPath, "old"));
  }
  std::string Contents() {
    auto r = ReadFileToString(&fs_, kPath);
    return r.ok() ? *r : r.status().ToString();
  }
  static constexpr char kPath[] = "/d/MANIFEST";
  RenameFaultFileSystem fs_{3};
};

TEST_F(AtomicReplaceTest, SuccessIsReplaced) {
  ReplaceOutcome outcome = ReplaceOutcome::kUncertain;
  ASSERT_OK(WriteFileAtomically(&fs_, kPath, "new", &outcome));
  EXPECT_EQ(outcome, ReplaceOutcome::kReplaced);
  fs_.Crash(CrashMode::kDropUnsynced);
  EXPECT_EQ(Contents(), "new");
}

TEST_F(AtomicReplaceTest, FailedSyncOfTheTemporaryFileLeavesTheOldContentsForCertain) {
  for (int err : {EIO, ENOSPC, EDQUOT}) {
    fs_.FailSyncAfter(1, err);  // the temporary file's DataSync
    ReplaceOutcome outcome = ReplaceOutcome::kReplaced;
    const Status s = WriteFileAtomically(&fs_, kPath, "new", &outcome);
    EXPECT_FALSE(s.ok());
    EXPECT_FALSE(s.IsNoSpace()) << s.ToString();  // a sync's ENOSPC is never retryable
    EXPECT_EQ(outcome, ReplaceOutcome::kUnchanged) << s.ToString();
    EXPECT_EQ(Contents(), "old");
  }
}

TEST_F(AtomicReplaceTest, NoSpaceForTheTemporaryFileLeavesTheOldContentsForCertain) {
  ASSERT_OK_AND_ASSIGN(SpaceInfo space, fs_.GetSpaceInfo("/"));
  fs_.SetSpaceLimit(space.total_bytes - space.free_bytes + 2);
  ReplaceOutcome outcome = ReplaceOutcome::kReplaced;
  const Status s = WriteFileAtomically(&fs_, kPath, "a longer version", &outcome);
  EXPECT_TRUE(s.IsNoSpace()) << s.ToString();
  EXPECT_EQ(outcome, ReplaceOutcome::kUnchanged);
  EXPECT_EQ(Contents(), "old");
}

// The rename happened, then the directory fsync failed: the new name is visible now, and
// whether it survives a crash is up to the disk. Either contents may be the one that counts.
TEST_F(AtomicReplaceTest, FailedDirectoryFsyncAfterTheRenameIsUncertain) {
  for (int err : {EIO, ENOSPC, EDQUOT}) {
    RenameFaultFileSystem fs(4);
    ASSERT_OK(CreateDirDurably(&fs, "/d"));
    ASSERT_OK(WriteFileAtomically(&fs, kPath, "old"));
    fs.FailSyncAfter(2, err);  // the temporary file's DataSync passes, the directory's fails
    ReplaceOutcome outcome = ReplaceOutcome::kReplaced;
    const Status s = WriteFileAtomically(&fs, kPath, "new", &outcome);
    EXPECT_FALSE(s.ok());
    EXPECT_FALSE(s.IsNoSpace()) << s.ToString();
    EXPECT_EQ(outcome, ReplaceOutcome::kUncertain) << s.ToString();
    ASSERT_OK_AND_ASSIGN(std::string now, ReadFileToString(&fs, kPath));
    EXPECT_EQ(now, "new");
  }
}

TEST_F(AtomicReplaceTest, RenameThatFoundNoRoomLeavesTheOldContentsForCertain) {
  fs_.rename_errno = ENOSPC;
  ReplaceOutcome outcome = ReplaceOutcome::kReplaced;
  const Status s = WriteFileAtomically(&fs_, kPath, "new", &outcome);
  EXPECT_TRUE(s.IsNoSpace()) << s.ToString();
  EXPECT_EQ(outcome, ReplaceOutcome::kUnchanged);
  EXPECT_EQ(Contents(), "old");
}

TEST_F(AtomicReplaceTest, RenameThatFailedWithEioIsUncertain) {
  for (bool happened : {false, true}) {
    fs_.rename_errno = EIO;
    fs_.rename_happens = happened;
    ReplaceOutcome outcome = ReplaceOutcome::kReplaced;
    const Status s = WriteFileAtomically(&fs_, kPath, "new", &outcome);
    EXPECT_TRUE(s.IsIOError()) << s.ToString();
    EXPECT_EQ(outcome, ReplaceOutcome::kUncertain);
    EXPECT_EQ(Contents(), happened ? "new" : "old");
  }
}

TEST_F(DurableTest, RemoveFileDurablyRemovesIt) {
  const std::string path = dir_.Sub("old.log");
  ASSERT_OK(WriteFileAtomically(&fs_, path, "x"));
  ASSERT_OK(RemoveFileDurably(&fs_, path));
  ASSERT_OK_AND_ASSIGN(bool exists, fs_.Exists(path));
  EXPECT_FALSE(exists);
}

TEST_F(DurableTest, RemoveFileDurablyOfMissingIsNotFound) {
  const Status s = RemoveFileDurably(&fs_, dir_.Sub("missing"));
  EXPECT_TRUE(s.IsNotFound()) << s.ToString();
}

TEST_F(DurableTest, ReadFileToStringReadsEmptyFile) {
  ASSERT_OK(WriteFileAtomically(&fs_, dir_.Sub("e"), ""));
  ASSERT_OK_AND_ASSIGN(std::string contents, ReadFileToString(&fs_, dir_.Sub("e")));
  EXPECT_TRUE(contents.empty());
}

TEST_F(DurableTest, ReadFileToStringReadsLargeBinaryFile) {
  std::string data(300 * 1024 + 17, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i % 251);
  ASSERT_OK(WriteFileAtomically(&fs_, dir_.Sub("big"), data));
  ASSERT_OK_AND_ASSIGN(std::string contents, ReadFileToString(&fs_, dir_.Sub("big")));
  EXPECT_EQ(contents, data);
}

TEST_F(DurableTest, ReadFileToStringOfMissingIsNotFound) {
  auto r = ReadFileToString(&fs_, dir_.Sub("missing"));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsNotFound());
}

TEST_F(DurableTest, ReadFileToStringOfDirectoryFails) {
  auto r = ReadFileToString(&fs_, dir_.path());
  EXPECT_FALSE(r.ok());
}

}  // namespace
}  // namespace kvfs::sync
