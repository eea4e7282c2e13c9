#include "sync/posix_file_system.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "sync/durable.h"
#include "tests/test_util.h"

namespace kvfs::sync {
namespace {

class PosixFileSystemTest : public ::testing::Test {
 protected:
  // Writes `data` to `path` (truncating) through the file system under test.
  void Put(const std::string& path, std::string_view data) {
    ASSERT_OK_AND_ASSIGN(auto file, fs_.NewWritableFile(path, CreateMode::kTruncate));
    ASSERT_OK(file->Append(data));
    ASSERT_OK(file->Close());
  }
  std::string Get(const std::string& path) {
    Result<std::string> r = ReadFileToString(&fs_, path);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : std::string();
  }
  // The on-disk size, from stat(2) directly rather than through the code under test.
  static off_t StatSize(const std::string& path) {
    struct stat st;
    EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
    return st.st_size;
  }

  PosixFileSystem fs_;
  test::TempDir dir_;
};

// --- WritableFile ------------------------------------------------------------------------------

TEST_F(PosixFileSystemTest, CreateNewMakesEmptyFile) {
  const std::string path = dir_.Sub("f");
  ASSERT_OK_AND_ASSIGN(auto file, fs_.NewWritableFile(path, CreateMode::kCreateNew));
  EXPECT_EQ(file->path(), path);
  EXPECT_EQ(file->Size(), 0u);
  ASSERT_OK(file->Close());
  EXPECT_EQ(StatSize(path), 0);
}

TEST_F(PosixFileSystemTest, CreateNewFailsWithAlreadyExistsOnExistingFile) {
  const std::string path = dir_.Sub("f");
  Put(path, "old");
  auto r = fs_.NewWritableFile(path, CreateMode::kCreateNew);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsAlreadyExists()) << r.status().ToString();
  EXPECT_NE(r.status().message().find(path), std::string::npos) << r.status().ToString();
  EXPECT_EQ(Get(path), "old");
}

TEST_F(PosixFileSystemTest, TruncateModeEmptiesExistingFile) {
  const std::string path = dir_.Sub("f");
  Put(path, "old contents");
  ASSERT_OK_AND_ASSIGN(auto file, fs_.NewWritableFile(path, CreateMode::kTruncate));
  EXPECT_EQ(file->Size(), 0u);
  ASSERT_OK(file->Append("new"));
  ASSERT_OK(file->Close());
  EXPECT_EQ(Get(path), "new");
}

TEST_F(PosixFileSystemTest, TruncateModeCreatesMissingFile) {
  const std::string path = dir_.Sub("f");
  ASSERT_OK_AND_ASSIGN(auto file, fs_.NewWritableFile(path, CreateMode::kTruncate));
  ASSERT_OK(file->Close());
  EXPECT_EQ(StatSize(path), 0);
}

TEST_F(PosixFileSystemTest, AppendModeStartsAtCurrentSizeAndKeepsContents) {
  const std::string path = dir_.Sub("f");
  Put(path, "hello ");
  ASSERT_OK_AND_ASSIGN(auto file, fs_.NewWritableFile(path, CreateMode::kAppend));
  EXPECT_EQ(file->Size(), 6u);
  ASSERT_OK(file->Append("world"));
  EXPECT_EQ(file->Size(), 11u);
  ASSERT_OK(file->Close());
  EXPECT_EQ(Get(path), "hello world");
}

TEST_F(PosixFileSystemTest, AppendModeCreatesMissingFile) {
  const std::string path = dir_.Sub("f");
  ASSERT_OK_AND_ASSIGN(auto file, fs_.NewWritableFile(path, CreateMode::kAppend));
  EXPECT_EQ(file->Size(), 0u);
  ASSERT_OK(file->Close());
}

TEST_F(PosixFileSystemTest, OverwriteModeWritesFromTheStartKeepingTheSize) {
  const std::string path = dir_.Sub("f");
  Put(path, "0000000000");
  ASSERT_OK_AND_ASSIGN(auto file, fs_.NewWritableFile(path, CreateMode::kOverwrite));
  EXPECT_EQ(file->Size(), 0u);
  ASSERT_OK(file->Append("abc"));
  ASSERT_OK(file->Close());
  EXPECT_EQ(Get(path), "abc0000000");
}

TEST_F(PosixFileSystemTest, OverwriteModeOfMissingFileIsNotFound) {
  auto file = fs_.NewWritableFile(dir_.Sub("missing"), CreateMode::kOverwrite);
  ASSERT_FALSE(file.ok());
  EXPECT_TRUE(file.status().IsNotFound());
}

// Private, whatever the umask (file_system.h's privacy policy; private_tree_test has the rest).
TEST_F(PosixFileSystemTest, NewFilesHaveMode0600) {
  const std::string path = dir_.Sub("f");
  const mode_t old_umask = ::umask(0);
  auto r = fs_.NewWritableFile(path, CreateMode::kCreateNew);
  ::umask(old_umask);
  ASSERT_OK(r);
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

TEST_F(PosixFileSystemTest, AppendsReadBackInOrder) {
  const std::string path = dir_.Sub("f");
  ASSERT_OK_AND_ASSIGN(auto file, fs_.NewWritableFile(path, CreateMode::kCreateNew));
  std::string expected;
  for (int i = 0; i < 100; ++i) {
    const std::string record = "record " + std::to_string(i) + ";";
    ASSERT_OK(file->Append(record));
    expected += record;
  }
  ASSERT_OK(file->Append(""));  // an empty append is a no-op
  EXPECT_EQ(file->Size(), expected.size());
  ASSERT_OK(file->Close());
  EXPECT_EQ(Get(path), expected);
}

TEST_F(PosixFileSystemTest, LargeAppendIsWrittenWhole) {
  const std::string path = dir_.Sub("f");
  std::string big(8 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 131 + (i >> 12));
  ASSERT_OK_AND_ASSIGN(auto file, fs_.NewWritableFile(path, CreateMode::kCreateNew));
  ASSERT_OK(file->Append(big));
  ASSERT_OK(file->Close());
  EXPECT_EQ(Get(path), big);
}

TEST_F(PosixFileSystemTest, AppendZerosWritesZerosAfterTheDataAndAdvances) {
  const std::string path = dir_.Sub("f");
  ASSERT_OK_AND_ASSIGN(auto file, fs_.NewWritableFile(path, CreateMode::kCreateNew));
  ASSERT_OK(file->Append("head"));
  ASSERT_OK(file->AppendZeros(10000));  // not a multiple of the page size
  EXPECT_EQ(file->Size(), 10004u);
  ASSERT_OK(file->Append("tail"));
  ASSERT_OK(file->Close());
  EXPECT_EQ(Get(path), "head" + std::string(10000, '\0') + "tail");
}

TEST_F(PosixFileSystemTest, PreallocateGrowsFileButNotLogicalSize) {
  const std::string path = dir_.Sub("f");
  ASSERT_OK_AND_ASSIGN(auto file, fs_.NewWritableFile(path, CreateMode::kCreateNew));
  ASSERT_OK(file->Append("head"));
  ASSERT_OK(file->Preallocate(1 << 20));
  EXPECT_EQ(file->Size(), 4u);
  ASSERT_OK_AND_ASSIGN(uint64_t on_disk, fs_.FileSize(path));
  EXPECT_EQ(on_disk, uint64_t{1} << 20);
  ASSERT_OK(file->Close());
}

TEST_F(PosixFileSystemTest, AppendsAfterPreallocateLandAtLogicalOffset) {
  const std::string path = dir_.Sub("f");
  ASSERT_OK_AND_ASSIGN(auto file, fs_.NewWritableFile(path, CreateMode::kCreateNew));
  ASSERT_OK(file->Preallocate(4096));
  ASSERT_OK(file->Append("abc"));
  ASSERT_OK(file->Append("def"));
  EXPECT_EQ(file->Size(), 6u);
  ASSERT_OK(file->DataSync());
  ASSERT_OK(file->Close());
  EXPECT_EQ(StatSize(path), 4096) << "appends inside the preallocated range keep its size";
  const std::string contents = Get(path);
  ASSERT_EQ(contents.size(), 4096u);
  EXPECT_EQ(contents.substr(0, 6), "abcdef");
  EXPECT_EQ(contents.substr(6), std::string(4096 - 6, '\0'));
}

TEST_F(PosixFileSystemTest, StartWritebackLeavesTheContentsAndTheLogicalEndAlone) {
  const std::string path = dir_.Sub("f");
  ASSERT_OK_AND_ASSIGN(auto file, fs_.NewWritableFile(path, CreateMode::kCreateNew));
  ASSERT_OK(file->Preallocate(1 << 20));
  const std::string data(3 * 4096 + 100, 'w');
  ASSERT_OK(file->Append(data));
  ASSERT_OK(file->StartWriteback(0, uint64_t{3} * 4096));
  ASSERT_OK(file->StartWriteback(uint64_t{3} * 4096, 0));  // an empty range: nothing to do
  ASSERT_OK(file->StartWriteback(0, uint64_t{1} << 30));   // past the end: harmless
  EXPECT_EQ(file->Size(), data.size());
  ASSERT_OK(file->Append("tail"));
  ASSERT_OK(file->DataSync());
  ASSERT_OK(file->Close());
  EXPECT_EQ(Get(path).substr(0, data.size() + 4), data + "tail");
  EXPECT_EQ(file->StartWriteback(0, 4096).code(), StatusCode::kInvalidArgument) << "closed";
}

TEST_F(PosixFileSystemTest, PreallocateSmallerThanFileDoesNotShrinkIt) {
  const std::string path = dir_.Sub("f");
  ASSERT_OK_AND_ASSIGN(auto file, fs_.NewWritableFile(path, CreateMode::kCreateNew));
  ASSERT_OK(file->Append(std::string(10000, 'x')));
  ASSERT_OK(file->Preallocate(100));
  ASSERT_OK(file->Close());
  EXPECT_EQ(StatSize(path), 10000);
}

TEST_F(PosixFileSystemTest, AppendsPastPreallocatedRangeGrowTheFile) {
  const std::string path = dir_.Sub("f");
  ASSERT_OK_AND_ASSIGN(auto file, fs_.NewWritableFile(path, CreateMode::kCreateNew));
  ASSERT_OK(file->Preallocate(8));
  ASSERT_OK(file->Append("0123456789"));
  ASSERT_OK(file->Close());
  EXPECT_EQ(Get(path), "0123456789");
}

TEST_F(PosixFileSystemTest, SyncAndDataSyncSucceed) {
  const std::string path = dir_.Sub("f");
  ASSERT_OK_AND_ASSIGN(auto file, fs_.NewWritableFile(path, CreateMode::kCreateNew));
  ASSERT_OK(file->Append("data"));
  EXPECT_OK(file->DataSync());
  ASSERT_OK(file->Append("more"));
  EXPECT_OK(file->Sync());
  EXPECT_FALSE(file->failed());
  ASSERT_OK(file->Close());
}

TEST_F(PosixFileSystemTest, CloseTwiceIsHarmless) {
  ASSERT_OK_AND_ASSIGN(auto file, fs_.NewWritableFile(dir_.Sub("f"), CreateMode::kCreateNew));
  ASSERT_OK(file->Close());
  EXPECT_OK(file->Close());
}

TEST_F(PosixFileSystemTest, AppendAfterCloseIsInvalidArgument) {
  ASSERT_OK_AND_ASSIGN(auto file, fs_.NewWritableFile(dir_.Sub("f"), CreateMode::kCreateNew));
  ASSERT_OK(file->Close());
  EXPECT_EQ(file->Append("x").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(file->DataSync().code(), StatusCode::kInvalidArgument);
}

TEST_F(PosixFileSystemTest, WritableFileInMissingDirIsNotFoundNamingPath) {
  const std::string path = dir_.Sub("no/such/dir/f");
  auto r = fs_.NewWritableFile(path, CreateMode::kCreateNew);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsNotFound()) << r.status().ToString();
  EXPECT_EQ(r.status().sys_errno(), ENOENT);
  EXPECT_NE(r.status().message().find("open " + path), std::string::npos) << r.status().ToString();
}

// --- RandomAccessFile --------------------------------------------------------------------------

TEST_F(PosixFileSystemTest, OpenMissingFileIsNotFoundNamingPath) {
  const std::string path = dir_.Sub("missing");
  auto r = fs_.NewRandomAccessFile(path);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsNotFound());
  EXPECT_NE(r.status().message().find(path), std::string::npos) << r.status().ToString();
}

TEST_F(PosixFileSystemTest, RandomAccessReadsAtOffsetsAndShortAtEnd) {
  const std::string path = dir_.Sub("f");
  Put(path, "0123456789");
  ASSERT_OK_AND_ASSIGN(auto file, fs_.NewRandomAccessFile(path));
  ASSERT_OK_AND_ASSIGN(uint64_t size, file->Size());
  EXPECT_EQ(size, 10u);
  char buf[16];
  ASSERT_OK_AND_ASSIGN(size_t n, file->Read(3, 4, buf));
  EXPECT_EQ(std::string(buf, n), "3456");
  ASSERT_OK_AND_ASSIGN(n, file->Read(8, 16, buf));
  EXPECT_EQ(std::string(buf, n), "89");
  ASSERT_OK_AND_ASSIGN(n, file->Read(100, 16, buf));
  EXPECT_EQ(n, 0u);
}

TEST_F(PosixFileSystemTest, OpenHandleStillReadsAfterRemoveFile) {
  const std::string path = dir_.Sub("f");
  Put(path, "still here");
  ASSERT_OK_AND_ASSIGN(auto file, fs_.NewRandomAccessFile(path));
  ASSERT_OK(fs_.RemoveFile(path));
  char buf[16];
  ASSERT_OK_AND_ASSIGN(size_t n, file->Read(0, sizeof(buf), buf));
  EXPECT_EQ(std::string(buf, n), "still here");
}

TEST_F(PosixFileSystemTest, OpenHandleSeesAppendsOfWriter) {
  const std::string path = dir_.Sub("f");
  ASSERT_OK_AND_ASSIGN(auto writer, fs_.NewWritableFile(path, CreateMode::kCreateNew));
  ASSERT_OK_AND_ASSIGN(auto reader, fs_.NewRandomAccessFile(path));
  ASSERT_OK(writer->Append("visible before sync"));
  ASSERT_OK_AND_ASSIGN(uint64_t size, reader->Size());
  EXPECT_EQ(size, 19u);
}

// --- RandomRWFile ------------------------------------------------------------------------------

TEST_F(PosixFileSystemTest, RandomRWFileWithoutCreateOnMissingIsNotFound) {
  auto r = fs_.NewRandomRWFile(dir_.Sub("missing"), /*create=*/false);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsNotFound());
}

TEST_F(PosixFileSystemTest, RandomRWFileWritesReadsInPlace) {
  const std::string path = dir_.Sub("pages");
  ASSERT_OK_AND_ASSIGN(auto file, fs_.NewRandomRWFile(path, /*create=*/true));
  ASSERT_OK(file->Write(0, "aaaaaaaaaa"));
  ASSERT_OK(file->Write(3, "XYZ"));
  ASSERT_OK(file->Write(12, "end"));  // past the end: the gap reads as zeros
  ASSERT_OK_AND_ASSIGN(uint64_t size, file->Size());
  EXPECT_EQ(size, 15u);
  char buf[32];
  ASSERT_OK_AND_ASSIGN(size_t n, file->Read(0, sizeof(buf), buf));
  EXPECT_EQ(std::string(buf, n), std::string("aaaXYZaaaa\0\0end", 15));
  ASSERT_OK(file->DataSync());
  ASSERT_OK(file->Sync());
  ASSERT_OK(file->Close());
}

TEST_F(PosixFileSystemTest, RandomRWFileTruncateShrinksAndGrows) {
  const std::string path = dir_.Sub("pages");
  ASSERT_OK_AND_ASSIGN(auto file, fs_.NewRandomRWFile(path, /*create=*/true));
  ASSERT_OK(file->Write(0, "0123456789"));
  ASSERT_OK(file->Truncate(4));
  ASSERT_OK_AND_ASSIGN(uint64_t size, file->Size());
  EXPECT_EQ(size, 4u);
  ASSERT_OK(file->Truncate(6));
  char buf[16];
  ASSERT_OK_AND_ASSIGN(size_t n, file->Read(0, sizeof(buf), buf));
  EXPECT_EQ(std::string(buf, n), std::string("0123\0\0", 6));
  ASSERT_OK(file->Close());
}

TEST_F(PosixFileSystemTest, RandomRWFileKeepsExistingContents) {
  const std::string path = dir_.Sub("pages");
  Put(path, "keep me");
  ASSERT_OK_AND_ASSIGN(auto file, fs_.NewRandomRWFile(path, /*create=*/false));
  ASSERT_OK(file->Write(0, "K"));
  ASSERT_OK(file->Close());
  EXPECT_EQ(Get(path), "Keep me");
}

TEST_F(PosixFileSystemTest, RandomRWFileWriteAfterCloseIsInvalidArgument) {
  ASSERT_OK_AND_ASSIGN(auto file, fs_.NewRandomRWFile(dir_.Sub("p"), /*create=*/true));
  ASSERT_OK(file->Close());
  EXPECT_EQ(file->Write(0, "x").code(), StatusCode::kInvalidArgument);
  EXPECT_OK(file->Close());
}

// --- Directories and names ---------------------------------------------------------------------

TEST_F(PosixFileSystemTest, OpenDirectoryAndFsync) {
  ASSERT_OK_AND_ASSIGN(auto dir, fs_.OpenDirectory(dir_.path()));
  EXPECT_EQ(dir->path(), dir_.path());
  EXPECT_OK(dir->Fsync());
  EXPECT_FALSE(dir->failed());
}

TEST_F(PosixFileSystemTest, OpenDirectoryOnMissingIsNotFound) {
  auto r = fs_.OpenDirectory(dir_.Sub("missing"));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsNotFound());
}

TEST_F(PosixFileSystemTest, OpenDirectoryOnFileFailsNamingPath) {
  const std::string path = dir_.Sub("f");
  Put(path, "");
  auto r = fs_.OpenDirectory(path);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().sys_errno(), ENOTDIR);
  EXPECT_NE(r.status().message().find(path), std::string::npos);
}

TEST_F(PosixFileSystemTest, CreateDirThenItIsADirectoryWithMode0700) {
  const std::string path = dir_.Sub("d");
  const mode_t old_umask = ::umask(0);
  const Status s = fs_.CreateDir(path);
  ::umask(old_umask);
  ASSERT_OK(s);
  ASSERT_OK_AND_ASSIGN(bool is_dir, fs_.IsDirectory(path));
  EXPECT_TRUE(is_dir);
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
}

TEST_F(PosixFileSystemTest, CreateDirOnExistingIsAlreadyExists) {
  ASSERT_OK(fs_.CreateDir(dir_.Sub("d")));
  const Status s = fs_.CreateDir(dir_.Sub("d"));
  EXPECT_TRUE(s.IsAlreadyExists()) << s.ToString();
  EXPECT_NE(s.message().find("mkdir " + dir_.Sub("d")), std::string::npos) << s.ToString();
}

TEST_F(PosixFileSystemTest, RemoveDirOfEmptyDirRemovesIt) {
  ASSERT_OK(fs_.CreateDir(dir_.Sub("d")));
  ASSERT_OK(fs_.RemoveDir(dir_.Sub("d")));
  ASSERT_OK_AND_ASSIGN(bool exists, fs_.Exists(dir_.Sub("d")));
  EXPECT_FALSE(exists);
}

TEST_F(PosixFileSystemTest, RemoveDirOfNonEmptyDirFails) {
  ASSERT_OK(fs_.CreateDir(dir_.Sub("d")));
  Put(dir_.Sub("d/f"), "x");
  const Status s = fs_.RemoveDir(dir_.Sub("d"));
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(s.sys_errno() == ENOTEMPTY || s.sys_errno() == EEXIST) << s.ToString();
  EXPECT_NE(s.message().find(dir_.Sub("d")), std::string::npos) << s.ToString();
  ASSERT_OK_AND_ASSIGN(bool exists, fs_.Exists(dir_.Sub("d/f")));
  EXPECT_TRUE(exists);
}

TEST_F(PosixFileSystemTest, ListDirIsSortedBytewiseWithoutDotEntries) {
  for (const char* name : {"b", "a", "B", "a.tmp", "\xc3\xa9", "000", "z"}) {
    Put(dir_.Sub(name), "");
  }
  ASSERT_OK(fs_.CreateDir(dir_.Sub("sub")));
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> names, fs_.ListDir(dir_.path()));
  const std::vector<std::string> expected = {"000", "B", "a", "a.tmp", "b", "sub", "z", "\xc3\xa9"};
  EXPECT_EQ(names, expected);
}

TEST_F(PosixFileSystemTest, ListDirOfEmptyDirIsEmpty) {
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> names, fs_.ListDir(dir_.path()));
  EXPECT_TRUE(names.empty());
}

TEST_F(PosixFileSystemTest, ListDirOfMissingDirIsNotFound) {
  auto r = fs_.ListDir(dir_.Sub("missing"));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsNotFound());
  EXPECT_NE(r.status().message().find(dir_.Sub("missing")), std::string::npos);
}

TEST_F(PosixFileSystemTest, RenameMovesFile) {
  Put(dir_.Sub("from"), "payload");
  ASSERT_OK(fs_.Rename(dir_.Sub("from"), dir_.Sub("to")));
  EXPECT_EQ(Get(dir_.Sub("to")), "payload");
  ASSERT_OK_AND_ASSIGN(bool exists, fs_.Exists(dir_.Sub("from")));
  EXPECT_FALSE(exists);
}

TEST_F(PosixFileSystemTest, RenameReplacesExistingTarget) {
  Put(dir_.Sub("from"), "new");
  Put(dir_.Sub("to"), "old");
  ASSERT_OK(fs_.Rename(dir_.Sub("from"), dir_.Sub("to")));
  EXPECT_EQ(Get(dir_.Sub("to")), "new");
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> names, fs_.ListDir(dir_.path()));
  EXPECT_EQ(names, std::vector<std::string>{"to"});
}

TEST_F(PosixFileSystemTest, RenameOfMissingSourceNamesBothPaths) {
  const Status s = fs_.Rename(dir_.Sub("nope"), dir_.Sub("to"));
  EXPECT_TRUE(s.IsNotFound()) << s.ToString();
  EXPECT_NE(s.message().find(dir_.Sub("nope")), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find(dir_.Sub("to")), std::string::npos) << s.ToString();
}

TEST_F(PosixFileSystemTest, RemoveFileThenOpenIsNotFound) {
  Put(dir_.Sub("f"), "x");
  ASSERT_OK(fs_.RemoveFile(dir_.Sub("f")));
  auto r = fs_.NewRandomAccessFile(dir_.Sub("f"));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsNotFound());
}

TEST_F(PosixFileSystemTest, RemoveMissingFileIsNotFoundNamingPath) {
  const Status s = fs_.RemoveFile(dir_.Sub("f"));
  EXPECT_TRUE(s.IsNotFound());
  EXPECT_NE(s.message().find("unlink " + dir_.Sub("f")), std::string::npos) << s.ToString();
}

TEST_F(PosixFileSystemTest, FileSizeOfFileAndOfMissing) {
  Put(dir_.Sub("f"), "12345");
  ASSERT_OK_AND_ASSIGN(uint64_t size, fs_.FileSize(dir_.Sub("f")));
  EXPECT_EQ(size, 5u);
  auto r = fs_.FileSize(dir_.Sub("missing"));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsNotFound());
}

TEST_F(PosixFileSystemTest, ExistsForFileDirAndMissing) {
  Put(dir_.Sub("f"), "");
  ASSERT_OK(fs_.CreateDir(dir_.Sub("d")));
  ASSERT_OK_AND_ASSIGN(bool file_exists, fs_.Exists(dir_.Sub("f")));
  ASSERT_OK_AND_ASSIGN(bool dir_exists, fs_.Exists(dir_.Sub("d")));
  ASSERT_OK_AND_ASSIGN(bool missing_exists, fs_.Exists(dir_.Sub("missing")));
  ASSERT_OK_AND_ASSIGN(bool under_file_exists, fs_.Exists(dir_.Sub("f/x")));
  EXPECT_TRUE(file_exists);
  EXPECT_TRUE(dir_exists);
  EXPECT_FALSE(missing_exists);
  EXPECT_FALSE(under_file_exists) << "a path through a file does not exist (ENOTDIR)";
}

TEST_F(PosixFileSystemTest, IsDirectoryForFileDirAndMissing) {
  Put(dir_.Sub("f"), "");
  ASSERT_OK_AND_ASSIGN(bool file_is_dir, fs_.IsDirectory(dir_.Sub("f")));
  ASSERT_OK_AND_ASSIGN(bool dir_is_dir, fs_.IsDirectory(dir_.path()));
  EXPECT_FALSE(file_is_dir);
  EXPECT_TRUE(dir_is_dir);
  auto r = fs_.IsDirectory(dir_.Sub("missing"));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsNotFound());
}

TEST_F(PosixFileSystemTest, GetSpaceInfoIsNonzero) {
  ASSERT_OK_AND_ASSIGN(SpaceInfo info, fs_.GetSpaceInfo(dir_.path()));
  EXPECT_GT(info.total_bytes, 0u);
  EXPECT_GT(info.free_bytes, 0u);
  EXPECT_LE(info.free_bytes, info.total_bytes);
}

TEST_F(PosixFileSystemTest, GetSpaceInfoOfMissingPathIsNotFound) {
  auto r = fs_.GetSpaceInfo(dir_.Sub("missing"));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsNotFound());
}

TEST(DefaultFileSystemTest, IsOneLongLivedInstance) {
  FileSystem* fs = DefaultFileSystem();
  ASSERT_NE(fs, nullptr);
  EXPECT_EQ(fs, DefaultFileSystem());
  EXPECT_NE(dynamic_cast<PosixFileSystem*>(fs), nullptr);
}

// --- Descriptors are close-on-exec ---------------------------------------------------------------

// The descriptors this process has open, from /proc/self/fd (Linux), without the one that
// listing /proc/self/fd itself used.
std::set<int> OpenFds() {
  std::set<int> listed;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    listed.insert(std::stoi(entry.path().filename().string()));
  }
  std::set<int> open;
  for (int fd : listed) {
    if (::fcntl(fd, F_GETFD) >= 0) open.insert(fd);
  }
  return open;
}

TEST_F(PosixFileSystemTest, DescriptorsAreCloseOnExec) {
  Put(dir_.Sub("f"), "x");
  const std::set<int> before = OpenFds();
  ASSERT_OK_AND_ASSIGN(auto writable, fs_.NewWritableFile(dir_.Sub("w"), CreateMode::kCreateNew));
  ASSERT_OK_AND_ASSIGN(auto readable, fs_.NewRandomAccessFile(dir_.Sub("f")));
  ASSERT_OK_AND_ASSIGN(auto rw, fs_.NewRandomRWFile(dir_.Sub("rw"), true));
  ASSERT_OK_AND_ASSIGN(auto dir, fs_.OpenDirectory(dir_.path()));
  ASSERT_OK_AND_ASSIGN(auto lock, fs_.LockFile(dir_.Sub("LOCK")));
  int checked = 0;
  for (int fd : OpenFds()) {
    if (before.contains(fd)) continue;
    const int flags = ::fcntl(fd, F_GETFD);
    EXPECT_TRUE(flags & FD_CLOEXEC) << "fd " << fd;
    ++checked;
  }
  EXPECT_EQ(checked, 5);
}

// --- Locks -------------------------------------------------------------------------------------

TEST_F(PosixFileSystemTest, LockFileCreatesFileAndRecordsPid) {
  const std::string path = dir_.Sub("LOCK");
  ASSERT_OK_AND_ASSIGN(auto lock, fs_.LockFile(path));
  EXPECT_EQ(lock->path(), path);
  EXPECT_EQ(Get(path), std::to_string(::getpid()) + "\n");
}

TEST_F(PosixFileSystemTest, LockTwiceInProcessIsBusyNamingPath) {
  const std::string path = dir_.Sub("LOCK");
  ASSERT_OK_AND_ASSIGN(auto lock, fs_.LockFile(path));
  auto second = fs_.LockFile(path);
  ASSERT_FALSE(second.ok());
  EXPECT_TRUE(second.status().IsBusy()) << second.status().ToString();
  EXPECT_NE(second.status().message().find(path), std::string::npos);
  EXPECT_NE(second.status().message().find("pid " + std::to_string(::getpid())), std::string::npos)
      << second.status().ToString();
}

TEST_F(PosixFileSystemTest, LockReleasedOnDestructionThenLockableAgain) {
  const std::string path = dir_.Sub("LOCK");
  { ASSERT_OK_AND_ASSIGN(auto lock, fs_.LockFile(path)); }
  ASSERT_OK_AND_ASSIGN(auto again, fs_.LockFile(path));
  EXPECT_EQ(Get(path), std::to_string(::getpid()) + "\n");
}

TEST_F(PosixFileSystemTest, LockOverStalePidFileSucceedsAndRewritesPid) {
  const std::string path = dir_.Sub("LOCK");
  Put(path, "999999999999\n");
  ASSERT_OK_AND_ASSIGN(auto lock, fs_.LockFile(path));
  EXPECT_EQ(Get(path), std::to_string(::getpid()) + "\n");
}

TEST_F(PosixFileSystemTest, LockInMissingDirIsNotFound) {
  auto r = fs_.LockFile(dir_.Sub("missing/LOCK"));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsNotFound());
}

TEST_F(PosixFileSystemTest, LockConflictsWithAnotherProcess) {
  const std::string path = dir_.Sub("LOCK");
  ASSERT_OK_AND_ASSIGN(auto lock, fs_.LockFile(path));
  // flock(1) from util-linux tries the lock in a separate process; -n: fail instead of waiting.
  const std::string cmd = "flock -n -E 42 '" + path + "' true";
  const int rc = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(rc)) << cmd;
  EXPECT_EQ(WEXITSTATUS(rc), 42) << "another process got the lock we hold";
  lock.reset();
  EXPECT_EQ(WEXITSTATUS(std::system(cmd.c_str())), 0) << "released lock still held";
}

TEST_F(PosixFileSystemTest, LockHeldByAnotherProcessIsBusyNamingItsPid) {
  const std::string path = dir_.Sub("LOCK");
  int ready[2];
  int release[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(release), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // Only async-signal-safe calls here: the child of a (possibly threaded) test process.
    ::close(ready[0]);
    ::close(release[1]);
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0 || ::flock(fd, LOCK_EX | LOCK_NB) != 0) ::_exit(1);
    char pid[24];
    int len = 0;
    for (pid_t p = ::getpid(); p > 0; p /= 10) pid[len++] = static_cast<char>('0' + p % 10);
    for (int i = 0; i < len / 2; ++i) std::swap(pid[i], pid[len - 1 - i]);
    if (::write(fd, pid, static_cast<size_t>(len)) != len) ::_exit(2);
    if (::write(ready[1], "r", 1) != 1) ::_exit(3);
    char c;
    while (::read(release[0], &c, 1) > 0) {
    }
    ::_exit(0);
  }
  ::close(ready[1]);
  ::close(release[0]);
  char c;
  ASSERT_EQ(::read(ready[0], &c, 1), 1) << "child could not take the lock";
  auto r = fs_.LockFile(path);
  ::close(release[1]);  // lets the child exit, releasing its lock
  ::close(ready[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;

  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsBusy()) << r.status().ToString();
  EXPECT_NE(r.status().message().find(path + " is locked by another process (pid " +
                                      std::to_string(child) + ")"),
            std::string::npos)
      << r.status().ToString();
  ASSERT_OK_AND_ASSIGN(auto lock, fs_.LockFile(path));
}

// --- The sync failure latch (file_system.cc), driven through a scripted file -------------------

// A WritableFile whose Do* results the test sets, counting how often each is called.
class ScriptedWritableFile : public WritableFile {
 public:
  ScriptedWritableFile() : WritableFile("/scripted/wal.log", 0) {}

  Status write_result;
  Status sync_result;
  Status preallocate_result;
  Status writeback_result;
  int writes = 0;
  int syncs = 0;
  int writebacks = 0;

 protected:
  Status DoWrite(uint64_t, std::string_view) override {
    ++writes;
    return write_result;
  }
  Status DoSync(bool) override {
    ++syncs;
    return sync_result;
  }
  Status DoPreallocate(uint64_t) override { return preallocate_result; }
  Status DoStartWriteback(uint64_t, uint64_t) override {
    ++writebacks;
    return writeback_result;
  }
  Status DoClose() override { return Status::OK(); }
};

TEST(FailureLatchTest, FailedDataSyncReturnsTheOsError) {
  ScriptedWritableFile file;
  ASSERT_OK(file.Append("x"));
  file.sync_result = Status::FromErrno(EIO, "fdatasync /scripted/wal.log");
  const Status s = file.DataSync();
  EXPECT_TRUE(s.IsIOError()) << s.ToString();
  EXPECT_EQ(s.sys_errno(), EIO);
  EXPECT_TRUE(file.failed());
}

TEST(FailureLatchTest, AppendAfterFailedSyncIsFailedWithoutWriting) {
  ScriptedWritableFile file;
  file.sync_result = Status::FromErrno(EIO, "fdatasync /scripted/wal.log");
  ASSERT_FALSE(file.DataSync().ok());
  const Status s = file.Append("more");
  EXPECT_TRUE(s.IsFailed()) << s.ToString();
  EXPECT_EQ(s.sys_errno(), EIO);
  EXPECT_NE(s.message().find("/scripted/wal.log"), std::string::npos) << s.ToString();
  EXPECT_EQ(file.writes, 0);
  EXPECT_EQ(file.Size(), 0u);
}

TEST(FailureLatchTest, FailedWritebackLatchesAndLaterSyncsAreFailedWithoutCallingDoSync) {
  ScriptedWritableFile file;
  ASSERT_OK(file.Append("x"));
  file.writeback_result = Status::FromErrno(EIO, "sync_file_range /scripted/wal.log");
  const Status s = file.StartWriteback(0, 4096);
  EXPECT_EQ(s.sys_errno(), EIO) << s.ToString();
  EXPECT_TRUE(file.failed());
  EXPECT_TRUE(file.DataSync().IsFailed());
  EXPECT_EQ(file.syncs, 0);
  EXPECT_TRUE(file.StartWriteback(0, 4096).IsFailed());
  EXPECT_EQ(file.writebacks, 1);
}

TEST(FailureLatchTest, WritebackAfterFailedSyncIsFailedWithoutCallingIt) {
  ScriptedWritableFile file;
  file.sync_result = Status::FromErrno(EIO, "fdatasync /scripted/wal.log");
  ASSERT_FALSE(file.DataSync().ok());
  EXPECT_TRUE(file.StartWriteback(0, 4096).IsFailed());
  EXPECT_EQ(file.writebacks, 0);
}

TEST(FailureLatchTest, SecondSyncAfterFailureIsFailedWithoutCallingDoSync) {
  ScriptedWritableFile file;
  file.sync_result = Status::FromErrno(EIO, "fdatasync /scripted/wal.log");
  ASSERT_FALSE(file.DataSync().ok());
  EXPECT_EQ(file.syncs, 1);
  file.sync_result = Status::OK();  // a retry would now "succeed": exactly the trap
  EXPECT_TRUE(file.DataSync().IsFailed());
  EXPECT_TRUE(file.Sync().IsFailed());
  EXPECT_TRUE(file.Preallocate(4096).IsFailed());
  EXPECT_EQ(file.syncs, 1);
}

TEST(FailureLatchTest, FailedMessageCarriesTheOriginalError) {
  ScriptedWritableFile file;
  file.sync_result = Status::FromErrno(EIO, "fdatasync /scripted/wal.log");
  ASSERT_FALSE(file.Sync().ok());
  const Status s = file.DataSync();
  EXPECT_NE(s.message().find("fdatasync /scripted/wal.log"), std::string::npos) << s.ToString();
}

TEST(FailureLatchTest, NoSpaceFromWriteDoesNotLatch) {
  ScriptedWritableFile file;
  file.write_result = Status::FromErrno(ENOSPC, "pwrite /scripted/wal.log");
  const Status s = file.Append("abc");
  EXPECT_TRUE(s.IsNoSpace()) << s.ToString();
  EXPECT_FALSE(file.failed());
  EXPECT_EQ(file.Size(), 0u) << "a failed append does not advance the offset";
  file.write_result = Status::OK();
  ASSERT_OK(file.Append("abc"));
  EXPECT_EQ(file.Size(), 3u);
  EXPECT_OK(file.DataSync());
}

TEST(FailureLatchTest, NoSpaceFromPreallocateDoesNotLatch) {
  ScriptedWritableFile file;
  file.preallocate_result = Status::FromErrno(ENOSPC, "fallocate /scripted/wal.log");
  EXPECT_TRUE(file.Preallocate(1 << 30).IsNoSpace());
  EXPECT_FALSE(file.failed());
  EXPECT_OK(file.Append("x"));
}

TEST(FailureLatchTest, OtherWriteErrorLatches) {
  ScriptedWritableFile file;
  file.write_result = Status::FromErrno(EIO, "pwrite /scripted/wal.log");
  EXPECT_TRUE(file.Append("abc").IsIOError());
  EXPECT_TRUE(file.failed());
  file.write_result = Status::OK();
  EXPECT_TRUE(file.Append("abc").IsFailed());
  EXPECT_TRUE(file.DataSync().IsFailed());
  EXPECT_EQ(file.writes, 1);
  EXPECT_EQ(file.syncs, 0);
}

// A Directory whose fsync fails once, then would succeed.
class ScriptedDirectory : public Directory {
 public:
  ScriptedDirectory() : Directory("/scripted") {}
  Status fsync_result;
  int fsyncs = 0;

 protected:
  Status DoFsync() override {
    ++fsyncs;
    return fsync_result;
  }
};

TEST(FailureLatchTest, DirectoryFsyncFailureLatches) {
  ScriptedDirectory dir;
  dir.fsync_result = Status::FromErrno(EIO, "fsync /scripted");
  EXPECT_TRUE(dir.Fsync().IsIOError());
  dir.fsync_result = Status::OK();
  EXPECT_TRUE(dir.Fsync().IsFailed());
  EXPECT_EQ(dir.fsyncs, 1);
  EXPECT_TRUE(dir.failed());
}

}  // namespace
}  // namespace kvfs::sync
