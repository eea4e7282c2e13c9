// FaultFileSystem: one test per modelled behaviour. What survives a crash is the contract every
// crash test in kvfs leans on, so each rule of sync/fault_file_system.h is pinned here.
#include "sync/fault_file_system.h"

#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/test_util.h"

namespace kvfs::sync {
namespace {

constexpr CrashMode kAllModes[] = {CrashMode::kDropUnsynced, CrashMode::kKeepPrefix,
                                   CrashMode::kTearLastWrite};

// The model without FileSystem's fronts: what the simulated kernel does on its own when a
// program opens a file again after a failed sync (kvfs's fronts refuse that: see below).
class RawFaultFileSystem : public FaultFileSystem {
 public:
  using FaultFileSystem::DoNewWritableFile;
  using FaultFileSystem::DoOpenDirectory;
  using FaultFileSystem::FaultFileSystem;
};

Result<std::string> ReadFile(FileSystem& fs, const std::string& path) {
  KVFS_ASSIGN_OR_RETURN(auto file, fs.NewRandomAccessFile(path));
  KVFS_ASSIGN_OR_RETURN(uint64_t size, file->Size());
  std::string data(size, '\0');
  KVFS_ASSIGN_OR_RETURN(size_t n, file->Read(0, size, data.data()));
  data.resize(n);
  return data;
}

Status FsyncDir(FileSystem& fs, const std::string& dir) {
  KVFS_ASSIGN_OR_RETURN(auto d, fs.OpenDirectory(dir));
  return d->Fsync();
}

// Creates `path` holding `data`, DataSyncs it and Fsyncs `dir`: durable in name and content.
Status WriteDurable(FileSystem& fs, const std::string& path, std::string_view data,
                    const std::string& dir) {
  KVFS_ASSIGN_OR_RETURN(auto file, fs.NewWritableFile(path, CreateMode::kTruncate));
  KVFS_RETURN_IF_ERROR(file->Append(data));
  KVFS_RETURN_IF_ERROR(file->DataSync());
  KVFS_RETURN_IF_ERROR(file->Close());
  return FsyncDir(fs, dir);
}

// Every path in the tree: a file maps to its contents, a directory to "<dir>".
Status SnapshotInto(FileSystem& fs, const std::string& dir,
                    std::map<std::string, std::string>* out) {
  KVFS_ASSIGN_OR_RETURN(auto names, fs.ListDir(dir));
  for (const std::string& name : names) {
    const std::string path = (dir == "/" ? "" : dir) + "/" + name;
    KVFS_ASSIGN_OR_RETURN(bool is_dir, fs.IsDirectory(path));
    if (is_dir) {
      (*out)[path] = "<dir>";
      KVFS_RETURN_IF_ERROR(SnapshotInto(fs, path, out));
    } else {
      KVFS_ASSIGN_OR_RETURN((*out)[path], ReadFile(fs, path));
    }
  }
  return Status::OK();
}

Result<std::map<std::string, std::string>> Snapshot(FileSystem& fs) {
  std::map<std::string, std::string> out;
  KVFS_RETURN_IF_ERROR(SnapshotInto(fs, "/", &out));
  return out;
}

bool IsPowerOff(const Status& s) {
  return s.IsIOError() && s.message().find("power is off") != std::string::npos;
}

// ---- What a crash keeps and drops --------------------------------------------------------------

TEST(FaultFileSystemTest, UnsyncedAppendIsLostOnCrash) {
  FaultFileSystem fs(1);
  ASSERT_OK(WriteDurable(fs, "/f", "", "/"));
  ASSERT_OK_AND_ASSIGN(auto file, fs.NewWritableFile("/f", CreateMode::kAppend));
  ASSERT_OK(file->Append("unsynced"));
  fs.Crash(CrashMode::kDropUnsynced);
  ASSERT_OK_AND_ASSIGN(std::string data, ReadFile(fs, "/f"));
  EXPECT_EQ(data, "");
}

TEST(FaultFileSystemTest, SyncedAppendSurvivesCrash) {
  FaultFileSystem fs(1);
  ASSERT_OK(WriteDurable(fs, "/f", "", "/"));
  ASSERT_OK_AND_ASSIGN(auto file, fs.NewWritableFile("/f", CreateMode::kAppend));
  ASSERT_OK(file->Append("synced"));
  ASSERT_OK(file->DataSync());
  ASSERT_OK(file->Append(" not"));
  fs.Crash(CrashMode::kDropUnsynced);
  ASSERT_OK_AND_ASSIGN(std::string data, ReadFile(fs, "/f"));
  EXPECT_EQ(data, "synced");
}

TEST(FaultFileSystemTest, AppendZerosIsAnAppendLikeAnyOther) {
  FaultFileSystem fs(1);
  ASSERT_OK(WriteDurable(fs, "/f", "", "/"));
  ASSERT_OK_AND_ASSIGN(auto file, fs.NewWritableFile("/f", CreateMode::kAppend));
  ASSERT_OK(file->Append("a"));
  ASSERT_OK(file->AppendZeros(3 << 20));  // more than one 1 MiB write
  EXPECT_EQ(file->Size(), (3u << 20) + 1);
  ASSERT_OK(file->DataSync());
  ASSERT_OK(file->AppendZeros(5));
  fs.Crash(CrashMode::kDropUnsynced);
  ASSERT_OK_AND_ASSIGN(std::string data, ReadFile(fs, "/f"));
  EXPECT_EQ(data, "a" + std::string(3 << 20, '\0'));
}

TEST(FaultFileSystemTest, OverwriteModeWritesFromTheStartAndUnsyncedOverwriteReverts) {
  FaultFileSystem fs(1);
  ASSERT_OK(WriteDurable(fs, "/f", "0000000000", "/"));
  ASSERT_OK_AND_ASSIGN(auto file, fs.NewWritableFile("/f", CreateMode::kOverwrite));
  EXPECT_EQ(file->Size(), 0u);
  ASSERT_OK(file->Append("abc"));
  ASSERT_OK_AND_ASSIGN(std::string data, ReadFile(fs, "/f"));
  EXPECT_EQ(data, "abc0000000");
  fs.Crash(CrashMode::kDropUnsynced);
  ASSERT_OK_AND_ASSIGN(std::string after, ReadFile(fs, "/f"));
  EXPECT_EQ(after, "0000000000");
}

TEST(FaultFileSystemTest, OverwriteModeOfMissingFileIsNotFound) {
  FaultFileSystem fs(1);
  auto file = fs.NewWritableFile("/missing", CreateMode::kOverwrite);
  ASSERT_FALSE(file.ok());
  EXPECT_TRUE(file.status().IsNotFound());
}

TEST(FaultFileSystemTest, SyncedFileWithoutDirFsyncIsGoneAfterCrash) {
  FaultFileSystem fs(1);
  ASSERT_OK_AND_ASSIGN(auto file, fs.NewWritableFile("/f", CreateMode::kCreateNew));
  ASSERT_OK(file->Append("data"));
  ASSERT_OK(file->Sync());
  fs.Crash(CrashMode::kDropUnsynced);
  ASSERT_OK_AND_ASSIGN(bool exists, fs.Exists("/f"));
  EXPECT_FALSE(exists);
}

TEST(FaultFileSystemTest, DirFsyncWithoutDataSyncKeepsNameWithLastSyncedContent) {
  FaultFileSystem fs(1);
  ASSERT_OK_AND_ASSIGN(auto file, fs.NewWritableFile("/f", CreateMode::kCreateNew));
  ASSERT_OK(file->Append("data"));
  ASSERT_OK(FsyncDir(fs, "/"));
  fs.Crash(CrashMode::kDropUnsynced);
  ASSERT_OK_AND_ASSIGN(std::string data, ReadFile(fs, "/f"));
  EXPECT_EQ(data, "");
}

TEST(FaultFileSystemTest, RenameWithoutDirFsyncReverts) {
  FaultFileSystem fs(1);
  ASSERT_OK(WriteDurable(fs, "/a", "new", "/"));
  ASSERT_OK(WriteDurable(fs, "/b", "old", "/"));
  ASSERT_OK(fs.Rename("/a", "/b"));
  ASSERT_OK_AND_ASSIGN(std::string before, ReadFile(fs, "/b"));
  EXPECT_EQ(before, "new");
  fs.Crash(CrashMode::kDropUnsynced);
  ASSERT_OK_AND_ASSIGN(auto snap, Snapshot(fs));
  EXPECT_EQ(snap, (std::map<std::string, std::string>{{"/a", "new"}, {"/b", "old"}}));
}

TEST(FaultFileSystemTest, RenameWithDirFsyncSurvives) {
  FaultFileSystem fs(1);
  ASSERT_OK(WriteDurable(fs, "/a", "new", "/"));
  ASSERT_OK(WriteDurable(fs, "/b", "old", "/"));
  ASSERT_OK(fs.Rename("/a", "/b"));
  ASSERT_OK(FsyncDir(fs, "/"));
  fs.Crash(CrashMode::kDropUnsynced);
  ASSERT_OK_AND_ASSIGN(auto snap, Snapshot(fs));
  EXPECT_EQ(snap, (std::map<std::string, std::string>{{"/b", "new"}}));
}

// Sets up durable /a, /b and /a/f = "data", then renames /a/f to /b/f.
void RenameAcrossDirs(FaultFileSystem& fs) {
  ASSERT_OK(fs.CreateDir("/a"));
  ASSERT_OK(fs.CreateDir("/b"));
  ASSERT_OK(FsyncDir(fs, "/"));
  ASSERT_OK(WriteDurable(fs, "/a/f", "data", "/a"));
  ASSERT_OK(fs.Rename("/a/f", "/b/f"));
}

TEST(FaultFileSystemTest, RenameAcrossDirsWithOnlyTargetSyncedLeavesBothNames) {
  FaultFileSystem fs(1);
  RenameAcrossDirs(fs);
  ASSERT_OK(FsyncDir(fs, "/b"));
  fs.Crash(CrashMode::kDropUnsynced);
  ASSERT_OK_AND_ASSIGN(auto snap, Snapshot(fs));
  EXPECT_EQ(snap, (std::map<std::string, std::string>{
                      {"/a", "<dir>"}, {"/a/f", "data"}, {"/b", "<dir>"}, {"/b/f", "data"}}));
}

TEST(FaultFileSystemTest, RenameAcrossDirsWithOnlySourceSyncedLeavesNeitherName) {
  FaultFileSystem fs(1);
  RenameAcrossDirs(fs);
  ASSERT_OK(FsyncDir(fs, "/a"));
  fs.Crash(CrashMode::kDropUnsynced);
  ASSERT_OK_AND_ASSIGN(auto snap, Snapshot(fs));
  EXPECT_EQ(snap, (std::map<std::string, std::string>{{"/a", "<dir>"}, {"/b", "<dir>"}}));
}

TEST(FaultFileSystemTest, RenameAcrossDirsWithBothSyncedMovesTheFile) {
  FaultFileSystem fs(1);
  RenameAcrossDirs(fs);
  ASSERT_OK(FsyncDir(fs, "/a"));
  ASSERT_OK(FsyncDir(fs, "/b"));
  fs.Crash(CrashMode::kDropUnsynced);
  ASSERT_OK_AND_ASSIGN(auto snap, Snapshot(fs));
  EXPECT_EQ(snap, (std::map<std::string, std::string>{
                      {"/a", "<dir>"}, {"/b", "<dir>"}, {"/b/f", "data"}}));
}

TEST(FaultFileSystemTest, DirectoryLeftUnderTwoNamesByACrashKeepsOne) {
  FaultFileSystem fs(1);
  ASSERT_OK(fs.CreateDir("/a"));
  ASSERT_OK(fs.CreateDir("/b"));
  ASSERT_OK(FsyncDir(fs, "/"));
  ASSERT_OK(fs.CreateDir("/a/sub"));
  ASSERT_OK(FsyncDir(fs, "/a"));
  ASSERT_OK(fs.Rename("/a/sub", "/b/sub"));
  ASSERT_OK(FsyncDir(fs, "/b"));
  fs.Crash(CrashMode::kDropUnsynced);
  ASSERT_OK_AND_ASSIGN(bool in_a, fs.Exists("/a/sub"));
  ASSERT_OK_AND_ASSIGN(bool in_b, fs.Exists("/b/sub"));
  EXPECT_NE(in_a, in_b) << "a directory must never have two names";
}

TEST(FaultFileSystemTest, UnlinkWithoutDirFsyncBringsFileBackWithSyncedContent) {
  FaultFileSystem fs(1);
  ASSERT_OK(WriteDurable(fs, "/f", "synced", "/"));
  ASSERT_OK_AND_ASSIGN(auto file, fs.NewWritableFile("/f", CreateMode::kAppend));
  ASSERT_OK(file->Append(" unsynced"));
  ASSERT_OK(fs.RemoveFile("/f"));
  fs.Crash(CrashMode::kDropUnsynced);
  ASSERT_OK_AND_ASSIGN(std::string data, ReadFile(fs, "/f"));
  EXPECT_EQ(data, "synced");
}

TEST(FaultFileSystemTest, UnlinkWithDirFsyncIsDurable) {
  FaultFileSystem fs(1);
  ASSERT_OK(WriteDurable(fs, "/f", "synced", "/"));
  ASSERT_OK(fs.RemoveFile("/f"));
  ASSERT_OK(FsyncDir(fs, "/"));
  fs.Crash(CrashMode::kDropUnsynced);
  ASSERT_OK_AND_ASSIGN(bool exists, fs.Exists("/f"));
  EXPECT_FALSE(exists);
}

TEST(FaultFileSystemTest, MkdirWithoutParentFsyncLosesDirAndContents) {
  FaultFileSystem fs(1);
  ASSERT_OK(fs.CreateDir("/d"));
  ASSERT_OK(WriteDurable(fs, "/d/f", "data", "/d"));
  fs.Crash(CrashMode::kDropUnsynced);
  ASSERT_OK_AND_ASSIGN(auto names, fs.ListDir("/"));
  EXPECT_TRUE(names.empty());
}

TEST(FaultFileSystemTest, MkdirWithParentFsyncSurvives) {
  FaultFileSystem fs(1);
  ASSERT_OK(fs.CreateDir("/d"));
  ASSERT_OK(FsyncDir(fs, "/"));
  fs.Crash(CrashMode::kDropUnsynced);
  ASSERT_OK_AND_ASSIGN(bool is_dir, fs.IsDirectory("/d"));
  EXPECT_TRUE(is_dir);
}

TEST(FaultFileSystemTest, TruncateOnOpenIsRevertedIfUnsynced) {
  FaultFileSystem fs(1);
  ASSERT_OK(WriteDurable(fs, "/f", "contents", "/"));
  ASSERT_OK_AND_ASSIGN(auto file, fs.NewWritableFile("/f", CreateMode::kTruncate));
  ASSERT_OK_AND_ASSIGN(uint64_t size, fs.FileSize("/f"));
  EXPECT_EQ(size, 0u);
  fs.Crash(CrashMode::kDropUnsynced);
  ASSERT_OK_AND_ASSIGN(std::string data, ReadFile(fs, "/f"));
  EXPECT_EQ(data, "contents");
}

TEST(FaultFileSystemTest, DirectoryFsyncCoversTheDirectoryEvenAfterItIsRenamed) {
  FaultFileSystem fs(1);
  ASSERT_OK(fs.CreateDir("/d"));
  ASSERT_OK(FsyncDir(fs, "/"));
  ASSERT_OK_AND_ASSIGN(auto dir, fs.OpenDirectory("/d"));
  ASSERT_OK(WriteDurable(fs, "/d/f", "data", "/"));  // the root sync does not cover /d/f
  ASSERT_OK(fs.Rename("/d", "/e"));
  ASSERT_OK(FsyncDir(fs, "/"));
  ASSERT_OK(dir->Fsync());  // the inode opened as /d, now named /e
  fs.Crash(CrashMode::kDropUnsynced);
  ASSERT_OK_AND_ASSIGN(auto snap, Snapshot(fs));
  EXPECT_EQ(snap, (std::map<std::string, std::string>{{"/e", "<dir>"}, {"/e/f", "data"}}));
}

// ---- Crash modes -------------------------------------------------------------------------------

// A durable file holding "base", then ten unsynced appends of distinct lengths and bytes.
constexpr std::string_view kBase = "base";
std::vector<std::string> Pieces() {
  std::vector<std::string> pieces;
  for (int i = 0; i < 10; ++i) pieces.emplace_back(i + 3, static_cast<char>('a' + i));
  return pieces;
}

Result<std::string> CrashAfterAppends(uint64_t seed, CrashMode mode) {
  FaultFileSystem fs(seed);
  KVFS_RETURN_IF_ERROR(WriteDurable(fs, "/f", kBase, "/"));
  KVFS_ASSIGN_OR_RETURN(auto file, fs.NewWritableFile("/f", CreateMode::kAppend));
  for (const std::string& piece : Pieces()) KVFS_RETURN_IF_ERROR(file->Append(piece));
  fs.Crash(mode);
  return ReadFile(fs, "/f");
}

TEST(FaultFileSystemTest, KeepPrefixKeepsAPrefixOfPendingAppends) {
  const uint64_t base_seed = test::TestSeed();
  SCOPED_TRACE("KVFS_TEST_SEED=" + std::to_string(base_seed));
  std::set<size_t> kept_counts;
  for (uint64_t i = 0; i < 100; ++i) {
    ASSERT_OK_AND_ASSIGN(std::string data,
                         CrashAfterAppends(base_seed + i, CrashMode::kKeepPrefix));
    std::string expected(kBase);
    size_t kept = 0;
    for (const std::string& piece : Pieces()) {
      if (expected.size() >= data.size()) break;
      expected += piece;
      ++kept;
    }
    ASSERT_EQ(data, expected) << "seed " << base_seed + i << ": not base + whole pieces";
    kept_counts.insert(kept);
  }
  EXPECT_GT(kept_counts.size(), 1u);
}

TEST(FaultFileSystemTest, TearLastWriteKeepsAPrefixOfTheByteStream) {
  const uint64_t base_seed = test::TestSeed();
  SCOPED_TRACE("KVFS_TEST_SEED=" + std::to_string(base_seed));
  std::string all(kBase);
  std::set<size_t> boundaries;
  for (const std::string& piece : Pieces()) {
    boundaries.insert(all.size());
    all += piece;
  }
  boundaries.insert(all.size());
  bool saw_torn_write = false;
  for (uint64_t i = 0; i < 200; ++i) {
    ASSERT_OK_AND_ASSIGN(std::string data,
                         CrashAfterAppends(base_seed + i, CrashMode::kTearLastWrite));
    ASSERT_GE(data.size(), kBase.size()) << "seed " << base_seed + i;
    ASSERT_EQ(data, all.substr(0, data.size())) << "seed " << base_seed + i;
    if (boundaries.count(data.size()) == 0) saw_torn_write = true;
  }
  EXPECT_TRUE(saw_torn_write);
}

TEST(FaultFileSystemTest, DropUnsyncedKeepsNothingPending) {
  ASSERT_OK_AND_ASSIGN(std::string data, CrashAfterAppends(7, CrashMode::kDropUnsynced));
  EXPECT_EQ(data, kBase);
}

// Several files with pending appends, a rename and a pwrite, crashed with `mode`.
Result<std::map<std::string, std::string>> RandomisedCrash(uint64_t seed, CrashMode mode) {
  FaultFileSystem fs(seed);
  for (int f = 0; f < 5; ++f) {
    const std::string path = "/f" + std::to_string(f);
    KVFS_RETURN_IF_ERROR(WriteDurable(fs, path, "start", "/"));
    KVFS_ASSIGN_OR_RETURN(auto file, fs.NewWritableFile(path, CreateMode::kAppend));
    for (int i = 0; i < 20; ++i) KVFS_RETURN_IF_ERROR(file->Append(std::string(i + 1, 'x')));
  }
  KVFS_ASSIGN_OR_RETURN(auto rw, fs.NewRandomRWFile("/f0", false));
  KVFS_RETURN_IF_ERROR(rw->Write(2, "PWRITE"));
  KVFS_RETURN_IF_ERROR(fs.Rename("/f1", "/g1"));
  fs.Crash(mode);
  return Snapshot(fs);
}

TEST(FaultFileSystemTest, SameSeedGivesSameCrash) {
  const uint64_t seed = test::TestSeed();
  SCOPED_TRACE("KVFS_TEST_SEED=" + std::to_string(seed));
  for (CrashMode mode : kAllModes) {
    ASSERT_OK_AND_ASSIGN(auto first, RandomisedCrash(seed, mode));
    ASSERT_OK_AND_ASSIGN(auto second, RandomisedCrash(seed, mode));
    EXPECT_EQ(first, second) << CrashModeName(mode);
  }
  std::set<std::map<std::string, std::string>> outcomes;
  for (uint64_t i = 0; i < 5; ++i) {
    ASSERT_OK_AND_ASSIGN(auto snap, RandomisedCrash(seed + i, CrashMode::kTearLastWrite));
    outcomes.insert(snap);
  }
  EXPECT_GT(outcomes.size(), 1u) << "the seed should matter";
}

TEST(FaultFileSystemTest, SeedIsReported) {
  FaultFileSystem fs(12345);
  EXPECT_EQ(fs.seed(), 12345u);
}

// ---- Injected sync failures --------------------------------------------------------------------

TEST(FaultFileSystemTest, FailedSyncReturnsEioAndLatchesTheFile) {
  FaultFileSystem fs(1);
  ASSERT_OK(WriteDurable(fs, "/f", "", "/"));
  ASSERT_OK_AND_ASSIGN(auto file, fs.NewWritableFile("/f", CreateMode::kAppend));
  ASSERT_OK(file->Append("lost"));
  fs.FailSyncAfter(1);
  Status s = file->DataSync();
  EXPECT_TRUE(s.IsIOError()) << s.ToString();
  EXPECT_EQ(s.sys_errno(), EIO);
  EXPECT_NE(s.message().find("injected EIO"), std::string::npos) << s.ToString();
  EXPECT_TRUE(file->failed());
  EXPECT_TRUE(file->DataSync().IsFailed());
  EXPECT_TRUE(file->Append("more").IsFailed());
  // Like the page cache after a writeback error: still readable, no longer durable.
  ASSERT_OK_AND_ASSIGN(std::string data, ReadFile(fs, "/f"));
  EXPECT_EQ(data, "lost");
}

TEST(FaultFileSystemTest, FreshHandleSyncAfterFailedSyncDoesNotPersistLostWrites) {
  // PostgreSQL's 2018 fsync trap: retrying the sync on a new descriptor "succeeds".
  RawFaultFileSystem fs(1);
  ASSERT_OK(WriteDurable(fs, "/f", "durable", "/"));
  {
    ASSERT_OK_AND_ASSIGN(auto file, fs.NewWritableFile("/f", CreateMode::kAppend));
    ASSERT_OK(file->Append("+lost"));
    fs.FailSyncAfter(1);
    EXPECT_TRUE(file->DataSync().IsIOError());
  }
  ASSERT_OK_AND_ASSIGN(auto fresh, fs.DoNewWritableFile("/f", CreateMode::kAppend));
  EXPECT_EQ(fresh->Size(), 12u);
  ASSERT_OK(fresh->DataSync());
  fs.Crash(CrashMode::kKeepPrefix);
  ASSERT_OK_AND_ASSIGN(std::string data, ReadFile(fs, "/f"));
  EXPECT_EQ(data, "durable");
}

TEST(FaultFileSystemTest, WritesAfterFailedSyncPersistWithoutTheLostOnes) {
  RawFaultFileSystem fs(1);
  ASSERT_OK(WriteDurable(fs, "/f", "", "/"));
  {
    ASSERT_OK_AND_ASSIGN(auto file, fs.NewWritableFile("/f", CreateMode::kAppend));
    ASSERT_OK(file->Append("lost"));
    fs.FailSyncAfter(1);
    EXPECT_TRUE(file->Sync().IsIOError());
  }
  ASSERT_OK_AND_ASSIGN(auto fresh, fs.DoNewWritableFile("/f", CreateMode::kAppend));
  ASSERT_OK(fresh->Append("new"));
  ASSERT_OK(fresh->DataSync());
  fs.Crash(CrashMode::kDropUnsynced);
  ASSERT_OK_AND_ASSIGN(std::string data, ReadFile(fs, "/f"));
  EXPECT_EQ(data, std::string("\0\0\0\0new", 7));
}

TEST(FaultFileSystemTest, FailSyncAfterCountsFileAndDirectorySyncs) {
  FaultFileSystem fs(1);
  ASSERT_OK_AND_ASSIGN(auto file, fs.NewWritableFile("/f", CreateMode::kCreateNew));
  fs.FailSyncAfter(3);
  ASSERT_OK(file->DataSync());
  ASSERT_OK(FsyncDir(fs, "/"));
  Status s = file->Sync();
  EXPECT_TRUE(s.IsIOError()) << s.ToString();
  ASSERT_OK_AND_ASSIGN(auto other, fs.NewWritableFile("/g", CreateMode::kCreateNew));
  EXPECT_OK(other->Sync());  // FailSyncAfter fires once
  EXPECT_EQ(fs.stats().syncs, 3u) << "the failed sync is not counted";
}

TEST(FaultFileSystemTest, FailSyncAfterZeroCancels) {
  FaultFileSystem fs(1);
  ASSERT_OK_AND_ASSIGN(auto file, fs.NewWritableFile("/f", CreateMode::kCreateNew));
  fs.FailSyncAfter(1);
  fs.FailSyncAfter(0);
  EXPECT_OK(file->DataSync());
}

TEST(FaultFileSystemTest, FailedDirFsyncNeverPersistsTheNamesItCovered) {
  RawFaultFileSystem fs(1);
  ASSERT_OK(WriteDurable(fs, "/f", "f", "/"));
  ASSERT_OK_AND_ASSIGN(auto g, fs.NewWritableFile("/g", CreateMode::kCreateNew));
  ASSERT_OK(g->Sync());
  ASSERT_OK(fs.RemoveFile("/f"));
  ASSERT_OK_AND_ASSIGN(auto dir, fs.OpenDirectory("/"));
  fs.FailSyncAfter(1);
  Status s = dir->Fsync();
  EXPECT_EQ(s.sys_errno(), EIO) << s.ToString();
  EXPECT_TRUE(dir->Fsync().IsFailed());
  ASSERT_OK(fs.CreateDir("/h"));  // a change after the failure is persisted normally
  ASSERT_OK_AND_ASSIGN(auto raw_dir, fs.DoOpenDirectory("/"));
  ASSERT_OK(raw_dir->Fsync());
  fs.Crash(CrashMode::kDropUnsynced);
  ASSERT_OK_AND_ASSIGN(auto snap, Snapshot(fs));
  EXPECT_EQ(snap, (std::map<std::string, std::string>{{"/f", "f"}, {"/h", "<dir>"}}));
}

// ---- Space -------------------------------------------------------------------------------------

TEST(FaultFileSystemTest, WritePastSpaceLimitFailsWithNoSpaceAndChangesNothing) {
  FaultFileSystem fs(1);
  fs.SetSpaceLimit(100);
  ASSERT_OK_AND_ASSIGN(auto a, fs.NewWritableFile("/a", CreateMode::kCreateNew));
  ASSERT_OK(a->Append(std::string(60, 'a')));
  ASSERT_OK_AND_ASSIGN(auto b, fs.NewWritableFile("/b", CreateMode::kCreateNew));
  ASSERT_OK(b->Append("0123456789"));
  const uint64_t written = fs.stats().bytes_written;
  Status s = b->Append(std::string(31, 'b'));
  EXPECT_TRUE(s.IsNoSpace()) << s.ToString();
  EXPECT_EQ(s.sys_errno(), ENOSPC);
  EXPECT_FALSE(b->failed()) << "ENOSPC must not latch";
  EXPECT_EQ(b->Size(), 10u);
  ASSERT_OK_AND_ASSIGN(std::string data, ReadFile(fs, "/b"));
  EXPECT_EQ(data, "0123456789");
  EXPECT_EQ(fs.stats().bytes_written, written);
  ASSERT_OK(b->Append(std::string(30, 'b')));  // exactly up to the limit
}

TEST(FaultFileSystemTest, RemovingAFileFreesSpace) {
  FaultFileSystem fs(1);
  fs.SetSpaceLimit(100);
  ASSERT_OK(WriteDurable(fs, "/a", std::string(80, 'a'), "/"));
  ASSERT_OK_AND_ASSIGN(auto b, fs.NewWritableFile("/b", CreateMode::kCreateNew));
  EXPECT_TRUE(b->Append(std::string(50, 'b')).IsNoSpace());
  ASSERT_OK(fs.RemoveFile("/a"));
  EXPECT_OK(b->Append(std::string(50, 'b')));
}

TEST(FaultFileSystemTest, UnlinkedOpenFileHoldsSpaceUntilClosed) {
  FaultFileSystem fs(1);
  fs.SetSpaceLimit(100);
  ASSERT_OK_AND_ASSIGN(auto a, fs.NewWritableFile("/a", CreateMode::kCreateNew));
  ASSERT_OK(a->Append(std::string(80, 'a')));
  ASSERT_OK(fs.RemoveFile("/a"));
  ASSERT_OK_AND_ASSIGN(auto b, fs.NewWritableFile("/b", CreateMode::kCreateNew));
  EXPECT_TRUE(b->Append(std::string(50, 'b')).IsNoSpace());
  ASSERT_OK(a->Close());
  EXPECT_OK(b->Append(std::string(50, 'b')));
}

TEST(FaultFileSystemTest, PreallocateCountsAgainstSpaceLimit) {
  FaultFileSystem fs(1);
  fs.SetSpaceLimit(100);
  ASSERT_OK_AND_ASSIGN(auto a, fs.NewWritableFile("/a", CreateMode::kCreateNew));
  ASSERT_OK(a->Preallocate(80));
  ASSERT_OK_AND_ASSIGN(auto b, fs.NewWritableFile("/b", CreateMode::kCreateNew));
  EXPECT_TRUE(b->Append(std::string(30, 'b')).IsNoSpace());
  EXPECT_TRUE(b->Preallocate(30).IsNoSpace());
  EXPECT_FALSE(b->failed());
  ASSERT_OK_AND_ASSIGN(uint64_t size, fs.FileSize("/b"));
  EXPECT_EQ(size, 0u);
  // Appending inside the preallocated range needs no more space.
  EXPECT_OK(a->Append(std::string(80, 'a')));
  EXPECT_OK(a->Preallocate(50));  // never shrinks
  ASSERT_OK_AND_ASSIGN(size, fs.FileSize("/a"));
  EXPECT_EQ(size, 80u);
}

TEST(FaultFileSystemTest, GetSpaceInfoReportsLimitAndFree) {
  FaultFileSystem fs(1);
  ASSERT_OK_AND_ASSIGN(SpaceInfo unlimited, fs.GetSpaceInfo("/"));
  EXPECT_EQ(unlimited.total_bytes, UINT64_MAX);
  fs.SetSpaceLimit(1000);
  ASSERT_OK(fs.CreateDir("/d"));
  ASSERT_OK(WriteDurable(fs, "/d/f", std::string(300, 'x'), "/d"));
  ASSERT_OK_AND_ASSIGN(SpaceInfo info, fs.GetSpaceInfo("/d"));
  EXPECT_EQ(info.total_bytes, 1000u);
  EXPECT_EQ(info.free_bytes, 700u);
  EXPECT_TRUE(fs.GetSpaceInfo("/missing").status().IsNotFound());
}

TEST(FaultFileSystemTest, HandleFromBeforeCrashDoesNotReleaseSpaceOfNewHandles) {
  FaultFileSystem fs(1);
  fs.SetSpaceLimit(100);
  ASSERT_OK(WriteDurable(fs, "/a", std::string(80, 'a'), "/"));
  ASSERT_OK_AND_ASSIGN(auto stale, fs.NewRandomAccessFile("/a"));
  fs.Crash(CrashMode::kDropUnsynced);
  ASSERT_OK_AND_ASSIGN(auto reader, fs.NewRandomAccessFile("/a"));
  ASSERT_OK(fs.RemoveFile("/a"));
  stale.reset();  // must not release the registration `reader` holds
  ASSERT_OK_AND_ASSIGN(auto b, fs.NewWritableFile("/b", CreateMode::kCreateNew));
  EXPECT_TRUE(b->Append(std::string(50, 'b')).IsNoSpace());
  reader.reset();
  EXPECT_OK(b->Append(std::string(50, 'b')));
}

// ---- Scheduled crash points --------------------------------------------------------------------

TEST(FaultFileSystemTest, CrashAtSyncFiresBeforeTheNthSync) {
  FaultFileSystem fs(1);
  ASSERT_OK(WriteDurable(fs, "/f", "a", "/"));
  ASSERT_OK_AND_ASSIGN(auto file, fs.NewWritableFile("/f", CreateMode::kAppend));
  fs.CrashAtSync(2, CrashMode::kDropUnsynced);
  ASSERT_OK(file->Append("b"));
  ASSERT_OK(file->DataSync());
  ASSERT_OK(file->Append("c"));
  EXPECT_FALSE(fs.crashed());
  Status s = file->DataSync();
  EXPECT_TRUE(IsPowerOff(s)) << s.ToString();
  EXPECT_TRUE(fs.crashed());
  EXPECT_TRUE(IsPowerOff(fs.NewWritableFile("/g", CreateMode::kCreateNew).status()))
      << "every operation fails while the power is off";
  EXPECT_TRUE(IsPowerOff(fs.FileSize("/f").status()));
  EXPECT_TRUE(IsPowerOff(ReadFile(fs, "/f").status()));
  fs.Crash(CrashMode::kTearLastWrite);  // the mode given to CrashAtSync wins
  EXPECT_FALSE(fs.crashed());
  EXPECT_EQ(fs.stats().crashes, 1u);
  ASSERT_OK_AND_ASSIGN(std::string data, ReadFile(fs, "/f"));
  EXPECT_EQ(data, "ab");
}

TEST(FaultFileSystemTest, CrashAtOpFiresBeforeTheNthOp) {
  FaultFileSystem fs(1);
  ASSERT_OK(WriteDurable(fs, "/f", "a", "/"));
  ASSERT_OK_AND_ASSIGN(auto file, fs.NewWritableFile("/f", CreateMode::kAppend));
  fs.CrashAtOp(2, CrashMode::kKeepPrefix);
  ASSERT_OK(file->Append("b"));
  ASSERT_OK(file->DataSync());  // syncs are not ops
  Status s = fs.CreateDir("/d");
  EXPECT_TRUE(IsPowerOff(s)) << s.ToString();
  EXPECT_TRUE(fs.crashed());
  EXPECT_TRUE(IsPowerOff(file->DataSync()));
  fs.Crash(CrashMode::kDropUnsynced);
  ASSERT_OK_AND_ASSIGN(auto snap, Snapshot(fs));
  EXPECT_EQ(snap, (std::map<std::string, std::string>{{"/f", "ab"}}));
}

TEST(FaultFileSystemTest, CrashAtZeroAndLaterScheduleCancel) {
  FaultFileSystem fs(1);
  fs.CrashAtOp(1, CrashMode::kDropUnsynced);
  fs.CrashAtSync(0, CrashMode::kDropUnsynced);  // replaces the op schedule, then cancels
  ASSERT_OK(fs.CreateDir("/d"));
  ASSERT_OK(FsyncDir(fs, "/"));
  EXPECT_FALSE(fs.crashed());
}

// A workload touching every kind of mutating operation and sync, one call per step, so the
// test can compute what a crash before any step must leave.
struct WorkloadCtx {
  FileSystem* fs;
  std::unique_ptr<WritableFile> log;
  std::unique_ptr<RandomRWFile> pages;
};
struct Step {
  enum Kind { kOp, kSync } kind;
  std::function<Status(WorkloadCtx&)> run;
};

std::vector<Step> Workload() {
  using C = WorkloadCtx;
  return {
      {Step::kOp, [](C& c) { return c.fs->CreateDir("/d"); }},
      {Step::kSync, [](C& c) { return FsyncDir(*c.fs, "/"); }},
      {Step::kOp,
       [](C& c) {
         auto r = c.fs->NewWritableFile("/d/log", CreateMode::kCreateNew);
         if (!r.ok()) return r.status();
         c.log = std::move(r).value();
         return Status::OK();
       }},
      {Step::kOp, [](C& c) { return c.log->Append("hello"); }},
      {Step::kSync, [](C& c) { return c.log->DataSync(); }},
      {Step::kSync, [](C& c) { return FsyncDir(*c.fs, "/d"); }},
      {Step::kOp, [](C& c) { return c.log->Append(" world"); }},
      {Step::kOp,
       [](C& c) {
         auto r = c.fs->NewRandomRWFile("/d/pages", true);
         if (!r.ok()) return r.status();
         c.pages = std::move(r).value();
         return Status::OK();
       }},
      {Step::kOp, [](C& c) { return c.pages->Write(0, "AAAAAAAA"); }},
      {Step::kSync, [](C& c) { return c.pages->Sync(); }},
      {Step::kOp, [](C& c) { return c.pages->Write(2, "BB"); }},
      {Step::kOp, [](C& c) { return c.pages->Truncate(6); }},
      {Step::kOp, [](C& c) { return c.fs->Rename("/d/log", "/d/log2"); }},
      {Step::kSync, [](C& c) { return FsyncDir(*c.fs, "/d"); }},
      {Step::kSync, [](C& c) { return c.pages->DataSync(); }},
      {Step::kOp, [](C& c) { return c.log->Preallocate(32); }},
      {Step::kOp, [](C& c) { return c.log->Append("!"); }},
      {Step::kSync, [](C& c) { return c.log->Sync(); }},
      {Step::kOp, [](C& c) { return c.fs->RemoveFile("/d/pages"); }},
      {Step::kOp, [](C& c) { return c.fs->CreateDir("/e"); }},
      {Step::kOp, [](C& c) { return c.fs->Rename("/d/log2", "/e/log"); }},
      {Step::kSync, [](C& c) { return FsyncDir(*c.fs, "/e"); }},
      {Step::kSync, [](C& c) { return FsyncDir(*c.fs, "/"); }},
      {Step::kOp, [](C& c) { return c.log->Append(" tail"); }},
      {Step::kOp, [](C& c) { return c.fs->RemoveDir("/d"); }},
  };
}

// Runs the workload on a fresh file system; stops before the `stop_at`-th step of kind `kind`
// (1-based; 0 runs it all) or at the first error. Returns the index of the step that stopped it.
size_t RunWorkload(FileSystem& fs, Step::Kind kind, uint64_t stop_at, Status* error) {
  WorkloadCtx ctx{&fs, nullptr, nullptr};
  std::vector<Step> steps = Workload();
  uint64_t seen = 0;
  for (size_t i = 0; i < steps.size(); ++i) {
    if (steps[i].kind == kind && ++seen == stop_at) return i;
    Status s = steps[i].run(ctx);
    if (!s.ok()) {
      *error = s;
      return i;
    }
  }
  return steps.size();
}

// For every step of `kind` in the workload: a crash point there leaves exactly the state of a
// crash taken just before that step, in every crash mode, and the step itself fails.
void CheckEveryCrashPoint(Step::Kind kind) {
  uint64_t total = 0;
  for (const Step& step : Workload()) total += step.kind == kind ? 1 : 0;
  {
    FaultFileSystem fs(1);
    Status error;
    ASSERT_EQ(RunWorkload(fs, kind, 0, &error), Workload().size()) << error.ToString();
    EXPECT_EQ(kind == Step::kOp ? fs.stats().mutating_ops : fs.stats().syncs, total)
        << "stats count exactly the calls the crash points count";
  }
  for (CrashMode mode : kAllModes) {
    for (uint64_t n = 1; n <= total; ++n) {
      SCOPED_TRACE(std::string(CrashModeName(mode)) + " crash point " + std::to_string(n));
      FaultFileSystem expected_fs(99);
      Status none;
      const size_t stop = RunWorkload(expected_fs, kind, n, &none);
      ASSERT_OK(none);
      expected_fs.Crash(mode);
      ASSERT_OK_AND_ASSIGN(auto expected, Snapshot(expected_fs));

      FaultFileSystem fs(99);
      if (kind == Step::kOp) {
        fs.CrashAtOp(n, mode);
      } else {
        fs.CrashAtSync(n, mode);
      }
      Status error;
      EXPECT_EQ(RunWorkload(fs, kind, 0, &error), stop);
      EXPECT_TRUE(IsPowerOff(error)) << error.ToString();
      EXPECT_TRUE(fs.crashed());
      fs.Crash(CrashMode::kDropUnsynced);
      ASSERT_OK_AND_ASSIGN(auto actual, Snapshot(fs));
      EXPECT_EQ(actual, expected);
    }
  }
}

TEST(FaultFileSystemTest, CrashAtOpLeavesWhatWasDurableBeforeThatOp) {
  CheckEveryCrashPoint(Step::kOp);
}

TEST(FaultFileSystemTest, CrashAtSyncLeavesWhatWasDurableBeforeThatSync) {
  CheckEveryCrashPoint(Step::kSync);
}

TEST(FaultFileSystemTest, HandlesFromBeforeACrashFail) {
  FaultFileSystem fs(1);
  ASSERT_OK(fs.CreateDir("/d"));
  ASSERT_OK(FsyncDir(fs, "/"));
  ASSERT_OK(WriteDurable(fs, "/d/f", "data", "/d"));
  ASSERT_OK_AND_ASSIGN(auto writer, fs.NewWritableFile("/d/f", CreateMode::kAppend));
  ASSERT_OK_AND_ASSIGN(auto reader, fs.NewRandomAccessFile("/d/f"));
  ASSERT_OK_AND_ASSIGN(auto rw, fs.NewRandomRWFile("/d/f", false));
  ASSERT_OK_AND_ASSIGN(auto dir, fs.OpenDirectory("/d"));
  ASSERT_OK_AND_ASSIGN(auto lock, fs.LockFile("/d/LOCK"));
  fs.Crash(CrashMode::kDropUnsynced);

  auto stale = [](const Status& s) {
    return s.IsIOError() && s.message().find("before a crash") != std::string::npos;
  };
  char buf[4];
  EXPECT_TRUE(stale(writer->Append("x")));
  EXPECT_TRUE(stale(reader->Read(0, 4, buf).status()));
  EXPECT_TRUE(stale(reader->Size().status()));
  EXPECT_TRUE(stale(rw->Read(0, 4, buf).status()));
  EXPECT_TRUE(stale(rw->Write(0, "x")));
  EXPECT_TRUE(stale(dir->Fsync()));
  EXPECT_TRUE(stale(writer->Close()));
  // The new process sees the data, and the dead one's lock is gone.
  ASSERT_OK_AND_ASSIGN(std::string data, ReadFile(fs, "/d/f"));
  EXPECT_EQ(data, "data");
  ASSERT_OK_AND_ASSIGN(auto new_lock, fs.LockFile("/d/LOCK"));
  lock.reset();  // a stale lock's destructor must not release the new one
  EXPECT_TRUE(fs.LockFile("/d/LOCK").status().IsBusy());
}

// ---- RandomRWFile and preallocation ------------------------------------------------------------

TEST(FaultFileSystemTest, RandomRWFileUnsyncedPwriteIsRevertedOnCrash) {
  FaultFileSystem fs(1);
  ASSERT_OK(WriteDurable(fs, "/p", "0123456789", "/"));
  ASSERT_OK_AND_ASSIGN(auto rw, fs.NewRandomRWFile("/p", false));
  ASSERT_OK(rw->Write(3, "xyz"));
  char buf[10];
  ASSERT_OK_AND_ASSIGN(size_t n, rw->Read(0, sizeof(buf), buf));
  EXPECT_EQ(std::string(buf, n), "012xyz6789");
  fs.Crash(CrashMode::kDropUnsynced);
  ASSERT_OK_AND_ASSIGN(std::string data, ReadFile(fs, "/p"));
  EXPECT_EQ(data, "0123456789");
}

TEST(FaultFileSystemTest, RandomRWFileSyncedPwriteIsKept) {
  FaultFileSystem fs(1);
  ASSERT_OK(WriteDurable(fs, "/p", "0123456789", "/"));
  ASSERT_OK_AND_ASSIGN(auto rw, fs.NewRandomRWFile("/p", false));
  ASSERT_OK(rw->Write(3, "xyz"));
  ASSERT_OK(rw->DataSync());
  ASSERT_OK(rw->Write(12, "past end"));
  ASSERT_OK_AND_ASSIGN(uint64_t size, rw->Size());
  EXPECT_EQ(size, 20u);
  fs.Crash(CrashMode::kDropUnsynced);
  ASSERT_OK_AND_ASSIGN(std::string data, ReadFile(fs, "/p"));
  EXPECT_EQ(data, "012xyz6789");
}

TEST(FaultFileSystemTest, RandomRWFileTruncateIsRevertedIfUnsynced) {
  FaultFileSystem fs(1);
  ASSERT_OK(WriteDurable(fs, "/p", "0123456789", "/"));
  ASSERT_OK_AND_ASSIGN(auto rw, fs.NewRandomRWFile("/p", false));
  ASSERT_OK(rw->Truncate(4));
  ASSERT_OK(rw->Truncate(6));  // grows with zeros
  ASSERT_OK_AND_ASSIGN(std::string now, ReadFile(fs, "/p"));
  EXPECT_EQ(now, std::string("0123\0\0", 6));
  fs.Crash(CrashMode::kDropUnsynced);
  ASSERT_OK_AND_ASSIGN(std::string data, ReadFile(fs, "/p"));
  EXPECT_EQ(data, "0123456789");
}

TEST(FaultFileSystemTest, RandomRWFileWithoutCreateNeedsAnExistingFile) {
  FaultFileSystem fs(1);
  EXPECT_TRUE(fs.NewRandomRWFile("/p", false).status().IsNotFound());
  ASSERT_OK_AND_ASSIGN(auto rw, fs.NewRandomRWFile("/p", true));
  ASSERT_OK(rw->Write(0, "x"));
  ASSERT_OK(rw->Close());
  char buf[1];
  EXPECT_FALSE(rw->Read(0, 1, buf).ok()) << "read after Close";
  ASSERT_OK_AND_ASSIGN(auto again, fs.NewRandomRWFile("/p", true));
  ASSERT_OK_AND_ASSIGN(uint64_t size, again->Size());
  EXPECT_EQ(size, 1u) << "create does not truncate";
}

TEST(FaultFileSystemTest, PreallocateExtendsWithZerosAndIsRevertedIfUnsynced) {
  FaultFileSystem fs(1);
  ASSERT_OK(WriteDurable(fs, "/f", "", "/"));
  ASSERT_OK_AND_ASSIGN(auto file, fs.NewWritableFile("/f", CreateMode::kAppend));
  ASSERT_OK(file->Preallocate(16));
  EXPECT_EQ(file->Size(), 0u) << "the logical end does not move";
  ASSERT_OK(file->Append("abc"));
  ASSERT_OK_AND_ASSIGN(std::string now, ReadFile(fs, "/f"));
  EXPECT_EQ(now, "abc" + std::string(13, '\0'));
  fs.Crash(CrashMode::kDropUnsynced);
  ASSERT_OK_AND_ASSIGN(uint64_t size, fs.FileSize("/f"));
  EXPECT_EQ(size, 0u);
}

TEST(FaultFileSystemTest, SyncedPreallocationSurvivesCrash) {
  FaultFileSystem fs(1);
  ASSERT_OK(WriteDurable(fs, "/f", "", "/"));
  ASSERT_OK_AND_ASSIGN(auto file, fs.NewWritableFile("/f", CreateMode::kAppend));
  ASSERT_OK(file->Preallocate(16));
  ASSERT_OK(file->Append("abc"));
  ASSERT_OK(file->DataSync());
  fs.Crash(CrashMode::kDropUnsynced);
  ASSERT_OK_AND_ASSIGN(std::string data, ReadFile(fs, "/f"));
  EXPECT_EQ(data, "abc" + std::string(13, '\0'));
}

TEST(FaultFileSystemTest, StartWritebackIsNeitherASyncNorAnOpAndDurabilityIgnoresIt) {
  FaultFileSystem fs(1);
  ASSERT_OK(WriteDurable(fs, "/f", "", "/"));
  ASSERT_OK_AND_ASSIGN(auto file, fs.NewWritableFile("/f", CreateMode::kAppend));
  ASSERT_OK(file->Append("abc"));
  const FaultStats before = fs.stats();
  ASSERT_OK(file->StartWriteback(0, 3));
  EXPECT_EQ(fs.stats().syncs, before.syncs);
  EXPECT_EQ(fs.stats().mutating_ops, before.mutating_ops);
  fs.Crash(CrashMode::kDropUnsynced);
  ASSERT_OK_AND_ASSIGN(std::string data, ReadFile(fs, "/f"));
  EXPECT_EQ(data, "") << "writeback started is not writeback done";
  const Status s = file->StartWriteback(0, 3);
  EXPECT_TRUE(s.IsIOError()) << "a handle from before the crash: " << s.ToString();
}

// ---- POSIX behaviours --------------------------------------------------------------------------

TEST(FaultFileSystemTest, CreateModesBehaveLikeOpenFlags) {
  FaultFileSystem fs(1);
  ASSERT_OK(WriteDurable(fs, "/f", "abc", "/"));
  EXPECT_TRUE(fs.NewWritableFile("/f", CreateMode::kCreateNew).status().IsAlreadyExists());
  {
    ASSERT_OK_AND_ASSIGN(auto append, fs.NewWritableFile("/f", CreateMode::kAppend));
    EXPECT_EQ(append->Size(), 3u);
    ASSERT_OK(append->Append("de"));
  }
  ASSERT_OK_AND_ASSIGN(std::string data, ReadFile(fs, "/f"));
  EXPECT_EQ(data, "abcde");
  ASSERT_OK_AND_ASSIGN(auto trunc, fs.NewWritableFile("/f", CreateMode::kTruncate));
  EXPECT_EQ(trunc->Size(), 0u);
  ASSERT_OK_AND_ASSIGN(data, ReadFile(fs, "/f"));
  EXPECT_EQ(data, "");
}

TEST(FaultFileSystemTest, OpenInMissingDirectoryIsNotFound) {
  FaultFileSystem fs(1);
  EXPECT_TRUE(fs.NewWritableFile("/nope/f", CreateMode::kCreateNew).status().IsNotFound());
  EXPECT_TRUE(fs.NewRandomAccessFile("/nope").status().IsNotFound());
  EXPECT_TRUE(fs.OpenDirectory("/nope").status().IsNotFound());
  EXPECT_TRUE(fs.CreateDir("/nope/d").IsNotFound());
  EXPECT_TRUE(fs.RemoveDir("/nope/d").IsNotFound());
  EXPECT_TRUE(fs.RemoveDir("/nope").IsNotFound());
  EXPECT_TRUE(fs.RemoveFile("/nope").IsNotFound());
  EXPECT_TRUE(fs.Rename("/nope", "/x").IsNotFound());
  EXPECT_TRUE(fs.FileSize("/nope").status().IsNotFound());
  EXPECT_TRUE(fs.IsDirectory("/nope").status().IsNotFound());
}

TEST(FaultFileSystemTest, FileWhereDirectoryIsFailsWithEisdir) {
  FaultFileSystem fs(1);
  ASSERT_OK(fs.CreateDir("/d"));
  for (CreateMode mode : {CreateMode::kTruncate, CreateMode::kAppend}) {
    EXPECT_EQ(fs.NewWritableFile("/d", mode).status().sys_errno(), EISDIR);
  }
  EXPECT_TRUE(fs.NewWritableFile("/d", CreateMode::kCreateNew).status().IsAlreadyExists());
  EXPECT_EQ(fs.NewRandomAccessFile("/d").status().sys_errno(), EISDIR);
  EXPECT_EQ(fs.NewRandomRWFile("/d", true).status().sys_errno(), EISDIR);
  EXPECT_EQ(fs.RemoveFile("/d").sys_errno(), EISDIR);
  EXPECT_EQ(fs.LockFile("/d").status().sys_errno(), EISDIR);
  EXPECT_EQ(fs.NewWritableFile("/", CreateMode::kAppend).status().sys_errno(), EISDIR);
}

TEST(FaultFileSystemTest, DirectoryOpsOnFilesFailWithEnotdir) {
  FaultFileSystem fs(1);
  ASSERT_OK(WriteDurable(fs, "/f", "", "/"));
  EXPECT_EQ(fs.RemoveDir("/f").sys_errno(), ENOTDIR);
  EXPECT_EQ(fs.ListDir("/f").status().sys_errno(), ENOTDIR);
  EXPECT_EQ(fs.OpenDirectory("/f").status().sys_errno(), ENOTDIR);
  EXPECT_EQ(fs.CreateDir("/f/d").sys_errno(), ENOTDIR);
  EXPECT_EQ(fs.NewWritableFile("/f/g", CreateMode::kAppend).status().sys_errno(), ENOTDIR);
}

TEST(FaultFileSystemTest, RemoveDirOfNonEmptyDirectoryFailsWithEnotempty) {
  FaultFileSystem fs(1);
  ASSERT_OK(fs.CreateDir("/d"));
  ASSERT_OK(WriteDurable(fs, "/d/f", "", "/d"));
  Status s = fs.RemoveDir("/d");
  EXPECT_EQ(s.sys_errno(), ENOTEMPTY) << s.ToString();
  ASSERT_OK(fs.RemoveFile("/d/f"));
  EXPECT_OK(fs.RemoveDir("/d"));
  EXPECT_EQ(fs.RemoveDir("/").sys_errno(), EBUSY);
}

TEST(FaultFileSystemTest, CreateDirOfExistingNameIsAlreadyExists) {
  FaultFileSystem fs(1);
  ASSERT_OK(fs.CreateDir("/d"));
  EXPECT_TRUE(fs.CreateDir("/d").IsAlreadyExists());
  EXPECT_TRUE(fs.CreateDir("/").IsAlreadyExists());
  ASSERT_OK(WriteDurable(fs, "/f", "", "/"));
  EXPECT_TRUE(fs.CreateDir("/f").IsAlreadyExists());
}

TEST(FaultFileSystemTest, RenameFollowsPosixRules) {
  FaultFileSystem fs(1);
  ASSERT_OK(fs.CreateDir("/d"));
  ASSERT_OK(fs.CreateDir("/d/sub"));
  ASSERT_OK(fs.CreateDir("/empty"));
  ASSERT_OK(fs.CreateDir("/full"));
  ASSERT_OK(WriteDurable(fs, "/full/f", "x", "/full"));
  ASSERT_OK(WriteDurable(fs, "/g", "g", "/"));
  EXPECT_EQ(fs.Rename("/d", "/d/sub/d").sys_errno(), EINVAL);
  EXPECT_EQ(fs.Rename("/g", "/empty").sys_errno(), EISDIR);
  EXPECT_EQ(fs.Rename("/d", "/g").sys_errno(), ENOTDIR);
  EXPECT_EQ(fs.Rename("/d", "/full").sys_errno(), ENOTEMPTY);
  EXPECT_EQ(fs.Rename("/", "/x").sys_errno(), EBUSY);
  EXPECT_OK(fs.Rename("/g", "/g"));
  EXPECT_OK(fs.Rename("/d", "/empty"));  // a directory may replace an empty one
  ASSERT_OK_AND_ASSIGN(auto names, fs.ListDir("/"));
  EXPECT_EQ(names, (std::vector<std::string>{"empty", "full", "g"}));
  ASSERT_OK_AND_ASSIGN(bool is_dir, fs.IsDirectory("/empty/sub"));
  EXPECT_TRUE(is_dir);
}

TEST(FaultFileSystemTest, UnlinkedFileStaysUsableThroughOpenHandles) {
  FaultFileSystem fs(1);
  ASSERT_OK_AND_ASSIGN(auto writer, fs.NewWritableFile("/f", CreateMode::kCreateNew));
  ASSERT_OK_AND_ASSIGN(auto reader, fs.NewRandomAccessFile("/f"));
  ASSERT_OK(writer->Append("before"));
  ASSERT_OK(fs.RemoveFile("/f"));
  ASSERT_OK(writer->Append("+after"));
  ASSERT_OK(writer->DataSync());
  char buf[32];
  ASSERT_OK_AND_ASSIGN(size_t n, reader->Read(0, sizeof(buf), buf));
  EXPECT_EQ(std::string(buf, n), "before+after");
  ASSERT_OK_AND_ASSIGN(bool exists, fs.Exists("/f"));
  EXPECT_FALSE(exists);
}

TEST(FaultFileSystemTest, ListDirExistsIsDirectoryAndFileSize) {
  FaultFileSystem fs(1);
  ASSERT_OK(fs.CreateDir("/d"));
  ASSERT_OK(WriteDurable(fs, "/d/b", "12345", "/d"));
  ASSERT_OK(WriteDurable(fs, "/d/a", "", "/d"));
  ASSERT_OK(fs.CreateDir("/d/C"));
  ASSERT_OK_AND_ASSIGN(auto names, fs.ListDir("/d"));
  EXPECT_EQ(names, (std::vector<std::string>{"C", "a", "b"}));
  ASSERT_OK_AND_ASSIGN(auto root, fs.ListDir("/"));
  EXPECT_EQ(root, (std::vector<std::string>{"d"}));
  ASSERT_OK_AND_ASSIGN(bool exists, fs.Exists("/d/b"));
  EXPECT_TRUE(exists);
  ASSERT_OK_AND_ASSIGN(exists, fs.Exists("/d/zz"));
  EXPECT_FALSE(exists);
  ASSERT_OK_AND_ASSIGN(exists, fs.Exists("/d/b/under_a_file"));
  EXPECT_FALSE(exists);
  ASSERT_OK_AND_ASSIGN(bool is_dir, fs.IsDirectory("/d/C"));
  EXPECT_TRUE(is_dir);
  ASSERT_OK_AND_ASSIGN(is_dir, fs.IsDirectory("/d/b"));
  EXPECT_FALSE(is_dir);
  ASSERT_OK_AND_ASSIGN(is_dir, fs.IsDirectory("/"));
  EXPECT_TRUE(is_dir);
  ASSERT_OK_AND_ASSIGN(uint64_t size, fs.FileSize("/d/b"));
  EXPECT_EQ(size, 5u);
  EXPECT_EQ(fs.FileSize("/d").status().sys_errno(), EISDIR);
}

TEST(FaultFileSystemTest, RelativeAndAbsolutePathsAreTheSame) {
  FaultFileSystem fs(1);
  ASSERT_OK(fs.CreateDir("d"));
  ASSERT_OK(WriteDurable(fs, "d//f", "x", "d/"));
  ASSERT_OK_AND_ASSIGN(std::string data, ReadFile(fs, "/d/f"));
  EXPECT_EQ(data, "x");
  ASSERT_OK_AND_ASSIGN(data, ReadFile(fs, "./d/./f"));
  EXPECT_EQ(data, "x");
  ASSERT_OK_AND_ASSIGN(auto names, fs.ListDir("/d/"));
  EXPECT_EQ(names, (std::vector<std::string>{"f"}));
  ASSERT_OK_AND_ASSIGN(auto lock, fs.LockFile("d/f"));
  EXPECT_TRUE(fs.LockFile("/d//f").status().IsBusy()) << "one lock per file, however spelled";
  EXPECT_TRUE(fs.Exists("/d/../d").status().code() == StatusCode::kInvalidArgument);
  ASSERT_OK_AND_ASSIGN(bool exists, fs.Exists(""));
  EXPECT_FALSE(exists);
  EXPECT_TRUE(fs.FileSize("").status().IsNotFound());
}

TEST(FaultFileSystemTest, LockFileIsBusyUntilReleased) {
  FaultFileSystem fs(1);
  ASSERT_OK(fs.CreateDir("/d"));
  ASSERT_OK_AND_ASSIGN(auto lock, fs.LockFile("/d/LOCK"));
  EXPECT_EQ(lock->path(), "/d/LOCK");
  ASSERT_OK_AND_ASSIGN(bool exists, fs.Exists("/d/LOCK"));
  EXPECT_TRUE(exists) << "LockFile creates the file";
  ASSERT_OK_AND_ASSIGN(bool is_dir, fs.IsDirectory("/d/LOCK"));
  EXPECT_FALSE(is_dir);
  Status s = fs.LockFile("/d/LOCK").status();
  EXPECT_TRUE(s.IsBusy()) << s.ToString();
  ASSERT_OK_AND_ASSIGN(auto other, fs.LockFile("/d/OTHER"));
  lock.reset();
  EXPECT_OK(fs.LockFile("/d/LOCK").status());
}

TEST(FaultFileSystemTest, StatsCountSyncsOpsBytesAndCrashes) {
  FaultFileSystem fs(1);
  ASSERT_OK_AND_ASSIGN(auto file, fs.NewWritableFile("/f", CreateMode::kCreateNew));  // op 1
  ASSERT_OK(file->Append("12345"));                                                   // op 2
  ASSERT_OK(file->Append(""));  // empty: nothing happens, nothing counted
  ASSERT_OK(file->DataSync());
  ASSERT_OK(FsyncDir(fs, "/"));
  ASSERT_OK(fs.Rename("/f", "/g"));  // op 3
  fs.Crash(CrashMode::kDropUnsynced);
  const FaultStats stats = fs.stats();
  EXPECT_EQ(stats.mutating_ops, 3u);
  EXPECT_EQ(stats.syncs, 2u);
  EXPECT_EQ(stats.bytes_written, 5u);
  EXPECT_EQ(stats.crashes, 1u);
}

// ---- Threads -----------------------------------------------------------------------------------

// Record `i` of thread `t`: its position in the file is determined by t and i alone.
std::string Record(int t, int i) { return "<" + std::to_string(t) + ":" + std::to_string(i) + ">"; }

TEST(FaultFileSystemTest, ConcurrentAppendersKeepExactlyTheirSyncedBytes) {
  constexpr int kThreads = 4;
  constexpr int kRecords = 300;
  FaultFileSystem fs(test::TestSeed());
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_OK_AND_ASSIGN(auto f,
                         fs.NewWritableFile("/t" + std::to_string(t), CreateMode::kCreateNew));
  }
  ASSERT_OK(FsyncDir(fs, "/"));
  std::vector<std::string> synced(kThreads);
  std::atomic<bool> done{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto file = fs.NewWritableFile("/t" + std::to_string(t), CreateMode::kAppend);
      ASSERT_TRUE(file.ok()) << file.status().ToString();
      std::string written;
      for (int i = 0; i < kRecords; ++i) {
        ASSERT_OK((*file)->Append(Record(t, i)));
        written += Record(t, i);
        if (i % 16 == 15) {
          ASSERT_OK((*file)->DataSync());
          synced[t] = written;
        }
      }
    });
  }
  std::thread observer([&] {
    while (!done.load()) {
      EXPECT_OK(fs.ListDir("/").status());
      EXPECT_OK(fs.GetSpaceInfo("/").status());
      (void)fs.stats();
      (void)fs.crashed();
    }
  });
  for (std::thread& thread : threads) thread.join();
  done = true;
  observer.join();
  fs.Crash(CrashMode::kDropUnsynced);
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_OK_AND_ASSIGN(std::string data, ReadFile(fs, "/t" + std::to_string(t)));
    EXPECT_EQ(data, synced[t]) << "thread " << t;
  }
}

TEST(FaultFileSystemTest, ConcurrentWorkloadRunsIntoCrashPoint) {
  constexpr int kThreads = 4;
  const uint64_t seed = test::TestSeed();
  SCOPED_TRACE("KVFS_TEST_SEED=" + std::to_string(seed));
  FaultFileSystem fs(seed);
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_OK_AND_ASSIGN(auto f,
                         fs.NewWritableFile("/t" + std::to_string(t), CreateMode::kCreateNew));
  }
  ASSERT_OK(FsyncDir(fs, "/"));
  fs.CrashAtSync(1 + seed % 60, CrashMode::kKeepPrefix);
  std::vector<std::string> acked(kThreads), written(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto file = fs.NewWritableFile("/t" + std::to_string(t), CreateMode::kAppend);
      if (!file.ok()) return;  // the crash came first
      for (int i = 0;; ++i) {
        if (!(*file)->Append(Record(t, i)).ok()) return;
        written[t] += Record(t, i);
        if (i % 4 == 3) {
          if (!(*file)->DataSync().ok()) return;
          acked[t] = written[t];
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_TRUE(fs.crashed());
  fs.Crash(CrashMode::kDropUnsynced);
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_OK_AND_ASSIGN(std::string data, ReadFile(fs, "/t" + std::to_string(t)));
    EXPECT_GE(data.size(), acked[t].size()) << "thread " << t << " lost an acknowledged sync";
    EXPECT_EQ(data, written[t].substr(0, data.size())) << "thread " << t;
  }
}

}  // namespace
}  // namespace kvfs::sync
