// The privacy policy of file_system.h on both implementations (every directory created 0700,
// every file 0600, whatever the umask; Stat reads modes and owners), and CheckPrivateTree's
// refusals (private_tree.h), on the real disk and on the simulated one.
#include "sync/private_tree.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "sync/durable.h"
#include "sync/fault_file_system.h"
#include "sync/posix_file_system.h"
#include "tests/test_util.h"

namespace kvfs::sync {
namespace {

using test::ScopedUmask;

// The permission bits of `path` as lstat(2) sees them, read without the code under test.
uint32_t ModeOnDisk(const std::string& path) {
  struct stat st;
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

// Every way the seam can create a name, each under `root` (which must exist): the names it
// made and whether each is a directory.
struct Made {
  std::string path;
  bool dir;
};
std::vector<Made> CreateEverything(FileSystem* fs, const std::string& root) {
  std::vector<Made> made;
  auto dir = [&](const std::string& rel, const std::function<Status(const std::string&)>& make) {
    const std::string p = root + "/" + rel;
    EXPECT_OK(make(p));
    made.push_back({p, true});
  };
  auto file = [&](const std::string& rel, const std::function<Status(const std::string&)>& make) {
    const std::string p = root + "/" + rel;
    EXPECT_OK(make(p));
    made.push_back({p, false});
  };
  dir("mkdir", [&](const std::string& p) { return fs->CreateDir(p); });
  dir("a", [&](const std::string& p) { return CreateDirDurably(fs, p + "/b/c"); });
  made.push_back({root + "/a/b", true});
  made.push_back({root + "/a/b/c", true});
  for (CreateMode mode : {CreateMode::kCreateNew, CreateMode::kTruncate, CreateMode::kAppend}) {
    file("writable" + std::to_string(static_cast<int>(mode)), [&](const std::string& p) {
      auto f = fs->NewWritableFile(p, mode);
      if (!f.ok()) return f.status();
      KVFS_RETURN_IF_ERROR((*f)->Append("bytes"));
      return (*f)->Close();
    });
  }
  file("rw", [&](const std::string& p) {
    auto f = fs->NewRandomRWFile(p, /*create=*/true);
    if (!f.ok()) return f.status();
    return (*f)->Close();
  });
  file("LOCK", [&](const std::string& p) { return fs->LockFile(p).status(); });
  file("durable", [&](const std::string& p) {
    auto f = CreateFileDurably(fs, p);
    if (!f.ok()) return f.status();
    return (*f)->Close();
  });
  file("MANIFEST", [&](const std::string& p) { return WriteFileAtomically(fs, p, "replaced"); });
  return made;
}

void ExpectPrivate(FileSystem* fs, const std::vector<Made>& made) {
  for (const Made& m : made) {
    Result<FileStat> st = fs->Stat(m.path);
    ASSERT_TRUE(st.ok()) << m.path << ": " << st.status().ToString();
    EXPECT_EQ(st->type, m.dir ? FileStat::Type::kDirectory : FileStat::Type::kFile) << m.path;
    EXPECT_EQ(st->mode, m.dir ? 0700u : 0600u) << m.path;
    EXPECT_EQ(st->uid, ::geteuid()) << m.path;
  }
}

// --- the real disk ------------------------------------------------------------------------

TEST(PrivateModes, EveryNameThePosixSeamCreatesIsPrivateUnderAnOpenUmask) {
  test::TempDir tmp;
  PosixFileSystem fs;
  const ScopedUmask mask(0);  // a umask that takes nothing away: the seam's own modes show
  const std::vector<Made> made = CreateEverything(&fs, tmp.path());
  ExpectPrivate(&fs, made);
  for (const Made& m : made) EXPECT_EQ(ModeOnDisk(m.path), m.dir ? 0700u : 0600u) << m.path;
}

TEST(PrivateModes, OwnerBitsAUmaskTookAwayAreGivenBack) {
  test::TempDir tmp;
  PosixFileSystem fs;
  const ScopedUmask mask(0277);  // would leave 0400 files and 0500 directories
  const std::vector<Made> made = CreateEverything(&fs, tmp.path());
  for (const Made& m : made) EXPECT_EQ(ModeOnDisk(m.path), m.dir ? 0700u : 0600u) << m.path;
}

TEST(PrivateModes, AnOpenThatMayCreateLeavesAFoundFilePrivateButOverwriteChangesNothing) {
  test::TempDir tmp;
  PosixFileSystem fs;
  const std::string loose = tmp.Sub("loose"), kept = tmp.Sub("kept");
  for (const std::string& p : {loose, kept}) {
    const int fd = ::open(p.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    ::close(fd);
    ASSERT_EQ(::chmod(p.c_str(), 0644), 0);
  }
  ASSERT_OK_AND_ASSIGN(auto appended, fs.NewWritableFile(loose, CreateMode::kAppend));
  ASSERT_OK(appended->Close());
  EXPECT_EQ(ModeOnDisk(loose), 0600u);
  ASSERT_OK_AND_ASSIGN(auto overwritten, fs.NewWritableFile(kept, CreateMode::kOverwrite));
  ASSERT_OK(overwritten->Close());
  EXPECT_EQ(ModeOnDisk(kept), 0644u) << "kOverwrite creates nothing, so it changes no mode";
}

TEST(PrivateModes, PosixStatDescribesFilesDirectoriesAndLinksWithoutFollowingThem) {
  test::TempDir tmp;
  PosixFileSystem fs;
  ASSERT_EQ(::mkdir(tmp.Sub("d").c_str(), 0750), 0);
  ASSERT_EQ(::chmod(tmp.Sub("d").c_str(), 0750), 0);
  ASSERT_EQ(::symlink("d", tmp.Sub("link").c_str()), 0);
  ASSERT_OK_AND_ASSIGN(FileStat d, fs.Stat(tmp.Sub("d")));
  EXPECT_EQ(d, (FileStat{FileStat::Type::kDirectory, 0750, ::geteuid()}));
  ASSERT_OK_AND_ASSIGN(FileStat link, fs.Stat(tmp.Sub("link")));
  EXPECT_EQ(link.type, FileStat::Type::kSymlink);
  ASSERT_EQ(::mkfifo(tmp.Sub("fifo").c_str(), 0600), 0);
  ASSERT_OK_AND_ASSIGN(FileStat fifo, fs.Stat(tmp.Sub("fifo")));
  EXPECT_EQ(fifo.type, FileStat::Type::kOther);
  EXPECT_TRUE(fs.Stat(tmp.Sub("nosuch")).status().IsNotFound());
}

// --- the simulated disk -------------------------------------------------------------------

TEST(PrivateModes, EveryNameTheFaultSeamCreatesIsPrivateAndSurvivesACrash) {
  FaultFileSystem fs(1);
  ASSERT_OK(CreateDirDurably(&fs, "/root"));
  const std::vector<Made> made = CreateEverything(&fs, "/root");
  ExpectPrivate(&fs, made);
  ASSERT_OK_AND_ASSIGN(FileStat root, fs.Stat("/"));
  EXPECT_EQ(root.mode, 0755u) << "the machine's root, not made by a create";
  ASSERT_OK(fs.SetMode("/root/MANIFEST", 0644));
  ASSERT_OK(fs.SetOwner("/root/MANIFEST", 4242));
  ASSERT_OK_AND_ASSIGN(FileStat changed, fs.Stat("/root/MANIFEST"));
  EXPECT_EQ(changed, (FileStat{FileStat::Type::kFile, 0644, 4242}));
  fs.Crash(CrashMode::kDropUnsynced);
  ASSERT_OK_AND_ASSIGN(FileStat after, fs.Stat("/root/MANIFEST"));
  EXPECT_EQ(after, changed) << "modes and owners are not part of the crash model";
  EXPECT_TRUE(fs.Stat("/root/nosuch").status().IsNotFound());
  EXPECT_TRUE(fs.SetMode("/root/nosuch", 0600).IsNotFound());
}

// --- CheckPrivateTree ---------------------------------------------------------------------

// A store-like tree on `fs` under `dir`: files at two depths and an empty directory.
void MakeTree(FileSystem* fs, const std::string& dir) {
  ASSERT_OK(CreateDirDurably(fs, dir + "/wal"));
  ASSERT_OK(CreateDirDurably(fs, dir + "/merged"));
  ASSERT_OK(WriteFileAtomically(fs, dir + "/MANIFEST", "m"));
  ASSERT_OK(WriteFileAtomically(fs, dir + "/wal/000001.wal", "w"));
  ASSERT_OK(WriteFileAtomically(fs, dir + "/wal/000002.wal", "w"));
}

// The refusal's message, or "OK".
std::string Check(FileSystem* fs, const std::string& dir, uint32_t uid = ::geteuid()) {
  Status s = CheckPrivateTree(fs, dir, uid);
  if (s.ok()) return "OK";
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_EQ(s.sys_errno(), EACCES) << s.ToString();
  return s.message();
}

// Both disks, through one interface: make a name loose or someone else's.
struct Disk {
  std::string name;
  std::unique_ptr<FileSystem> fs;
  std::string dir;
  std::function<void(const std::string&, uint32_t)> chmod;
  std::function<void(const std::string&, uint32_t)> chown;
};

class CheckPrivateTreeTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    if (GetParam()) {
      auto fault = std::make_unique<FaultFileSystem>(7);
      FaultFileSystem* f = fault.get();
      disk_.fs = std::move(fault);
      disk_.dir = "/data/store";
      disk_.chmod = [f](const std::string& p, uint32_t m) { ASSERT_OK(f->SetMode(p, m)); };
      disk_.chown = [f](const std::string& p, uint32_t u) { ASSERT_OK(f->SetOwner(p, u)); };
    } else {
      disk_.fs = std::make_unique<PosixFileSystem>();
      disk_.dir = tmp_.Sub("store");
      disk_.chmod = [](const std::string& p, uint32_t m) { ASSERT_EQ(::chmod(p.c_str(), m), 0); };
      disk_.chown = [](const std::string& p, uint32_t u) {
        ASSERT_EQ(::lchown(p.c_str(), u, static_cast<gid_t>(-1)), 0) << "needs root";
      };
    }
    MakeTree(disk_.fs.get(), disk_.dir);
  }
  std::string At(const std::string& rel) const { return disk_.dir + "/" + rel; }

  test::TempDir tmp_;
  Disk disk_;
};

TEST_P(CheckPrivateTreeTest, APrivateTreeOwnedByItsUserPasses) {
  EXPECT_EQ(Check(disk_.fs.get(), disk_.dir), "OK");
}

TEST_P(CheckPrivateTreeTest, ALooseDirectoryIsRefusedNamingPathModeAndFix) {
  disk_.chmod(disk_.dir, 0755);
  const std::string msg = Check(disk_.fs.get(), disk_.dir);
  EXPECT_EQ(msg.find(disk_.dir + " has mode 0755"), 0u) << msg;
  EXPECT_NE(msg.find("chmod -R go-rwx " + disk_.dir), std::string::npos) << msg;
}

TEST_P(CheckPrivateTreeTest, EveryGroupOrOtherBitAnywhereIsRefused) {
  for (const uint32_t bit : {0040u, 0020u, 0010u, 0004u, 0002u, 0001u}) {
    for (const std::string rel : {"wal", "wal/000002.wal", "MANIFEST", "merged"}) {
      SCOPED_TRACE(rel + " with bit " + std::to_string(bit));
      const bool dir = rel == "wal" || rel == "merged";
      const uint32_t mode = (dir ? 0700u : 0600u) | bit;
      disk_.chmod(At(rel), mode);
      const std::string msg = Check(disk_.fs.get(), disk_.dir);
      char octal[16];
      std::snprintf(octal, sizeof(octal), "%04o", mode);
      EXPECT_EQ(msg.find(At(rel) + " has mode " + octal), 0u) << msg;
      disk_.chmod(At(rel), dir ? 0700u : 0600u);
    }
  }
  EXPECT_EQ(Check(disk_.fs.get(), disk_.dir), "OK");
}

TEST_P(CheckPrivateTreeTest, TheFirstOffenderInByteOrderIsNamedADirectoryBeforeItsFiles) {
  disk_.chmod(At("wal/000002.wal"), 0644);
  disk_.chmod(At("wal/000001.wal"), 0644);
  disk_.chmod(At("wal"), 0755);
  EXPECT_EQ(Check(disk_.fs.get(), disk_.dir).find(At("wal") + " has"), 0u);
  disk_.chmod(At("wal"), 0700);
  EXPECT_EQ(Check(disk_.fs.get(), disk_.dir).find(At("wal/000001.wal") + " has"), 0u);
}

TEST_P(CheckPrivateTreeTest, AnotherOwnerIsRefusedNamingOwnerAndUser) {
  if (!GetParam() && ::geteuid() != 0) GTEST_SKIP() << "chown needs root";
  disk_.chown(At("wal/000001.wal"), 65534);
  const std::string msg = Check(disk_.fs.get(), disk_.dir);
  EXPECT_EQ(msg.find(At("wal/000001.wal") + " is owned by uid 65534"), 0u) << msg;
  EXPECT_NE(msg.find("kvfs runs as uid " + std::to_string(::geteuid())), std::string::npos) << msg;
  EXPECT_NE(msg.find("chown -R " + std::to_string(::geteuid()) + " " + disk_.dir),
            std::string::npos)
      << msg;
  // The same tree, checked for the user who owns that file: now everything else is the other's.
  const std::string other = Check(disk_.fs.get(), disk_.dir, 65534);
  EXPECT_EQ(other.find(disk_.dir + " is owned by uid " + std::to_string(::geteuid())), 0u) << other;
}

TEST_P(CheckPrivateTreeTest, AMissingDirectoryIsNotFound) {
  EXPECT_TRUE(CheckPrivateTree(disk_.fs.get(), At("nosuch"), ::geteuid()).IsNotFound());
}

INSTANTIATE_TEST_SUITE_P(Disks, CheckPrivateTreeTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Fault" : "Posix"; });

TEST(CheckPrivateTree, LinksAndSpecialFilesAreRefusedAndNotFollowed) {
  test::TempDir tmp;
  PosixFileSystem fs;
  MakeTree(&fs, tmp.Sub("store"));
  ASSERT_EQ(::mkdir(tmp.Sub("elsewhere").c_str(), 0700), 0);
  ASSERT_EQ(::symlink(tmp.Sub("elsewhere").c_str(), tmp.Sub("store/merged2").c_str()), 0);
  std::string msg = Check(&fs, tmp.Sub("store"));
  EXPECT_EQ(msg.find(tmp.Sub("store/merged2") + " is a symbolic link"), 0u) << msg;
  ASSERT_EQ(::unlink(tmp.Sub("store/merged2").c_str()), 0);
  ASSERT_EQ(::mkfifo(tmp.Sub("store/wal/fifo").c_str(), 0600), 0);
  msg = Check(&fs, tmp.Sub("store"));
  EXPECT_EQ(msg.find(tmp.Sub("store/wal/fifo") + " is not a regular file or a directory"), 0u)
      << msg;
  ASSERT_EQ(::unlink(tmp.Sub("store/wal/fifo").c_str()), 0);
  // The store's directory itself given as a link is refused too: the check would otherwise
  // walk one tree and the engine might open another.
  ASSERT_EQ(::symlink(tmp.Sub("store").c_str(), tmp.Sub("alias").c_str()), 0);
  msg = Check(&fs, tmp.Sub("alias"));
  EXPECT_EQ(msg.find(tmp.Sub("alias") + " is a symbolic link"), 0u) << msg;
  EXPECT_EQ(Check(&fs, tmp.Sub("store")), "OK");
}

// A FaultFileSystem on which one name vanishes between its directory's listing and its lstat,
// as when another process removes a file while the check walks.
class VanishingFileSystem : public FaultFileSystem {
 public:
  using FaultFileSystem::FaultFileSystem;
  std::string vanishing;
  Result<FileStat> Stat(const std::string& path) override {
    if (path == vanishing) return Status::NotFound("lstat " + path + ": removed meanwhile");
    return FaultFileSystem::Stat(path);
  }
};

TEST(CheckPrivateTree, ANameRemovedDuringTheWalkIsSkipped) {
  VanishingFileSystem fs(3);
  MakeTree(&fs, "/s");
  ASSERT_OK(fs.SetMode("/s/wal/000002.wal", 0644));
  fs.vanishing = "/s/wal/000001.wal";
  const std::string msg = Check(&fs, "/s");
  EXPECT_EQ(msg.find("/s/wal/000002.wal has mode 0644"), 0u) << msg;
  fs.vanishing = "/s";
  EXPECT_TRUE(CheckPrivateTree(&fs, "/s", ::geteuid()).IsNotFound()) << "but not the top";
}

}  // namespace
}  // namespace kvfs::sync
