// Data at rest is as private as the files it holds (README, "Security"): after a workload on
// every engine, merges and compactions included, every file and directory of a store is the
// user's alone (0600 / 0700) whatever the umask, on the real disk and on the simulated one; and
// a store that is not private, or not the user's, is refused before its engine opens anything,
// naming the path and the fix, and left as it was.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "engines/engine.h"
#include "fusefs/stores.h"
#include "sync/durable.h"
#include "sync/fault_file_system.h"
#include "sync/posix_file_system.h"
#include "sync/private_tree.h"
#include "tests/test_util.h"

namespace kvfs::fusefs {
namespace {

const Caller kUser{1000, 1000, 022};

using test::ScopedUmask;

config::Config OneStore(const std::string& dir, const std::string& engine) {
  auto c = config::SingleEngineConfig(dir, engine, engines::EngineNames());
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  c->stores[0].segment_size = config::kMinSegmentSize;  // several segments: merges have work
  return *c;
}

// Files of every size (inline, one chunk, many chunks), directories, renames, removals and
// xattrs; a sync; then a merge or compaction through the engine. In an append-only store
// (engines::IsAppendOnlyEngine) the overwrites are appends and a directory is renamed, not a
// file: the files the engine makes are what this checks.
void Workload(FileStore* files, int round, bool append_only) {
  const std::string r = std::to_string(round);
  auto dir = files->Mkdir(kRootId, "d" + r, 0755, kUser);
  ASSERT_TRUE(dir.ok()) << dir.status().ToString();
  for (int i = 0; i < 40; ++i) {
    auto f = files->Create(dir->id, "f" + std::to_string(i), 0600, kUser);
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    const size_t size = i % 4 == 0 ? 100 : i % 4 == 1 ? 4096 : i % 4 == 2 ? 20000 : 70000;
    ASSERT_TRUE(files->Write(f->id, 0, std::string(size, static_cast<char>('a' + i % 26))).ok());
    if (i % 5 == 0) ASSERT_OK(files->SetXattr(f->id, "user.k", "v" + r, 0));
  }
  // Overwrites make garbage for the merge to drop.
  for (int i = 0; i < 40; i += 2) {
    auto f = files->Lookup(dir->id, "f" + std::to_string(i));
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE(files->Write(f->id, append_only ? f->size : 0, std::string(5000, 'z')).ok());
  }
  if (append_only) {
    ASSERT_OK(files->Mkdir(dir->id, "sub", 0755, kUser));
    ASSERT_OK(files->Rename(dir->id, "sub", kRootId, "moved" + r, 0));
  } else {
    ASSERT_OK(files->Rename(dir->id, "f1", kRootId, "moved" + r, 0));
  }
  ASSERT_OK(files->Unlink(dir->id, "f3"));
  ASSERT_OK(files->SyncAll());
  ASSERT_OK(files->engine()->Compact());
}

// Every name under `dir` on `fs` (recursively), `dir` first.
std::vector<std::string> Tree(sync::FileSystem* fs, const std::string& dir) {
  std::vector<std::string> out{dir};
  for (size_t i = 0; i < out.size(); ++i) {
    auto st = fs->Stat(out[i]);
    if (!st.ok() || st->type != sync::FileStat::Type::kDirectory) continue;
    auto names = fs->ListDir(out[i]);
    EXPECT_TRUE(names.ok()) << names.status().ToString();
    if (!names.ok()) continue;
    for (const std::string& n : *names) out.push_back(sync::JoinPath(out[i], n));
  }
  return out;
}

class PrivateStoreTest : public testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    if (GetParam()) {
      fault_ = std::make_unique<sync::FaultFileSystem>(11);
      fs_ = fault_.get();
      root_ = "/var/lib/kvfs";
    } else {
      fs_ = sync::DefaultFileSystem();
      root_ = tmp_.Sub("root");  // created by kvfs, as the data root is on first use
    }
  }
  OpenStoresOptions Options(bool read_only = false) const {
    OpenStoresOptions o;
    o.fs = fs_;
    o.read_only = read_only;
    return o;
  }
  // The permission bits as the disk itself says: lstat(2) on the real disk (not the code under
  // test), the model's own record on the simulated one.
  uint32_t Mode(const std::string& path) const {
    if (GetParam()) {
      auto st = fs_->Stat(path);
      EXPECT_TRUE(st.ok()) << path;
      return st.ok() ? st->mode : 0;
    }
    struct stat st;
    EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
    return st.st_mode & 07777;
  }
  void Chmod(const std::string& path, uint32_t mode) {
    if (GetParam()) {
      ASSERT_OK(fault_->SetMode(path, mode));
    } else {
      ASSERT_EQ(::chmod(path.c_str(), mode), 0) << path;
    }
  }
  void Chown(const std::string& path, uint32_t uid) {
    if (GetParam()) {
      ASSERT_OK(fault_->SetOwner(path, uid));
    } else {
      ASSERT_EQ(::lchown(path.c_str(), uid, static_cast<gid_t>(-1)), 0) << path;
    }
  }
  // Opens the store of `engine` in `dir`, runs `round`s of the workload, closes it.
  void MakeStore(const std::string& dir, const std::string& engine, int rounds) {
    for (int round = 0; round < rounds; ++round) {
      auto stores = OpenStores(OneStore(dir, engine), Options());
      ASSERT_TRUE(stores.ok()) << stores.status().ToString();
      Workload((*stores)[0].files.get(), round, engines::IsAppendOnlyEngine(engine));
      ASSERT_OK(CloseStores(&*stores));
    }
  }
  // The message OpenStores refuses `dir` with (checking it is InvalidArgument), or "opened".
  std::string Refusal(const std::string& dir, const std::string& engine, bool read_only = false) {
    auto stores = OpenStores(OneStore(dir, engine), Options(read_only));
    if (stores.ok()) {
      EXPECT_OK(CloseStores(&*stores));
      return "opened";
    }
    EXPECT_EQ(stores.status().code(), StatusCode::kInvalidArgument) << stores.status().ToString();
    return stores.status().message();
  }

  test::TempDir tmp_;
  std::unique_ptr<sync::FaultFileSystem> fault_;
  sync::FileSystem* fs_ = nullptr;
  std::string root_;
};

TEST_P(PrivateStoreTest, EveryEnginesFilesArePrivateAfterAWorkloadWithAnOpenUmask) {
  const ScopedUmask mask(0);  // takes nothing away: what is private is the seam's doing
  for (const std::string& engine : engines::EngineNames()) {
    SCOPED_TRACE(engine);
    const std::string dir = root_ + "/" + engine;
    MakeStore(dir, engine, /*rounds=*/2);  // the second open recovers, merges, compacts again
    const std::vector<std::string> names = Tree(fs_, dir);
    std::string listing;
    for (const std::string& n : names) listing += n + "\n";
    SCOPED_TRACE(listing);
    EXPECT_GE(names.size(), 6u) << "the workload made too few files to show anything";
    for (const std::string& n : names) {
      auto st = fs_->Stat(n);
      ASSERT_TRUE(st.ok()) << n;
      const bool is_dir = st->type == sync::FileStat::Type::kDirectory;
      EXPECT_TRUE(is_dir || st->type == sync::FileStat::Type::kFile) << n;
      EXPECT_EQ(Mode(n), is_dir ? 0700u : 0600u) << n;
      EXPECT_EQ(st->uid, ::geteuid()) << n;
    }
    EXPECT_OK(sync::CheckPrivateTree(fs_, dir, ::geteuid()));
  }
  EXPECT_EQ(Mode(root_), 0700u) << "the data root kvfs created";
}

TEST_P(PrivateStoreTest, ALooseStoreIsRefusedNamingPathModeAndFixAndIsLeftAsItIs) {
  for (const std::string& engine : engines::EngineNames()) {
    SCOPED_TRACE(engine);
    const std::string dir = root_ + "/" + engine;
    MakeStore(dir, engine, 1);
    Chmod(dir, 0755);
    for (const bool read_only : {false, true}) {
      const std::string msg = Refusal(dir, engine, read_only);
      EXPECT_EQ(msg.find("store " + engine + " (" + dir + "): " + dir + " has mode 0755"), 0u)
          << msg;
      EXPECT_NE(msg.find("fix it with: chmod -R go-rwx " + dir), std::string::npos) << msg;
    }
    EXPECT_EQ(Mode(dir), 0755u) << "refused, not repaired";
    Chmod(dir, 0700);
    // A file deep inside, and a group bit alone, are just as loose.
    const std::vector<std::string> names = Tree(fs_, dir);
    const std::string deepest = names.back();
    Chmod(deepest, 0640);
    const std::string msg = Refusal(dir, engine);
    EXPECT_EQ(msg.find("store " + engine + " (" + dir + "): " + deepest + " has mode 0640"), 0u)
        << msg;
    EXPECT_EQ(Mode(deepest), 0640u);
    Chmod(deepest, 0600);
    EXPECT_EQ(Refusal(dir, engine), "opened") << "private again: opens as before";
  }
}

TEST_P(PrivateStoreTest, AStoreOwnedByAnotherUserIsRefusedNamingOwnerAndUser) {
  if (!GetParam() && ::geteuid() != 0) GTEST_SKIP() << "chown needs root";
  const std::string engine = engines::EngineNames()[0];
  const std::string dir = root_ + "/" + engine;
  MakeStore(dir, engine, 1);
  Chown(dir, 65534);
  const std::string msg = Refusal(dir, engine);
  EXPECT_EQ(msg.find("store " + engine + " (" + dir + "): " + dir + " is owned by uid 65534"), 0u)
      << msg;
  EXPECT_NE(msg.find("but kvfs runs as uid " + std::to_string(::geteuid())), std::string::npos)
      << msg;
  EXPECT_NE(msg.find("chown -R " + std::to_string(::geteuid()) + " " + dir), std::string::npos)
      << msg;
  Chown(dir, ::geteuid());
  EXPECT_EQ(Refusal(dir, engine), "opened");
}

INSTANTIATE_TEST_SUITE_P(Disks, PrivateStoreTest, testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Fault" : "Posix"; });

// A store's directory given as a symbolic link is refused: the check would walk one tree while
// the engine might open another. The fix is to name the directory itself.
TEST(PrivateStore, AStoreDirectoryThatIsASymbolicLinkIsRefused) {
  test::TempDir tmp;
  const std::string engine = engines::EngineNames()[0];
  {
    auto stores = OpenStores(OneStore(tmp.Sub("real"), engine), {});
    ASSERT_TRUE(stores.ok()) << stores.status().ToString();
    ASSERT_OK(CloseStores(&*stores));
  }
  ASSERT_EQ(::symlink(tmp.Sub("real").c_str(), tmp.Sub("link").c_str()), 0);
  auto stores = OpenStores(OneStore(tmp.Sub("link"), engine), {});
  ASSERT_FALSE(stores.ok());
  EXPECT_NE(stores.status().message().find(tmp.Sub("link") + " is a symbolic link"),
            std::string::npos)
      << stores.status().ToString();
}

}  // namespace
}  // namespace kvfs::fusefs
