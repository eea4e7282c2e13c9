// The daemon's work without a mount: inode numbering, the virtual root and control directory
// (stats, config, metrics; their modes, secrets redacted), the errnos the FUSE replies carry,
// readdir offsets, opening stores (markers, sync modes), and what a mount by a user who is not
// root needs (daemon.h's UnprivilegedMountProblem).
#define FUSE_USE_VERSION 314
#include <fuse3/fuse_lowlevel.h>
#include <gtest/gtest.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "engines/engine.h"
#include "fusefs/daemon.h"
#include "fusefs/filesystem.h"
#include "fusefs/inode_map.h"
#include "fusefs/stats_report.h"
#include "fusefs/stores.h"
#include "tests/fusefs/stats_checks.h"
#include "tests/test_util.h"

namespace kvfs::fusefs {
namespace {

const Caller kUser{1000, 1000, 022};

template <typename T>
int ErrnoOfResult(const Result<T>& r) {
  return r.ok() ? 0 : ErrnoOf(r.status());
}

TEST(InodeMap, SingleStoreIsIdentityAndRootIsFuseRoot) {
  InodeMap m(/*single_store=*/true);
  EXPECT_EQ(m.StoreIno(0, kRootId), uint64_t{FUSE_ROOT_ID});
  EXPECT_EQ(m.StoreIno(0, 12345), 12345u);
  const InodeRef r = m.Decode(12345);
  EXPECT_EQ(r.kind, InodeKind::kStore);
  EXPECT_EQ(r.store, 0u);
  EXPECT_EQ(r.id, 12345u);
  EXPECT_EQ(m.Decode(InodeMap::VirtualIno(kStatsNode)).kind, InodeKind::kVirtual);
  EXPECT_EQ(m.Decode(0).kind, InodeKind::kInvalid);
}

TEST(InodeMap, MultiStoreRoundTripsAndKeepsStoresApart) {
  InodeMap m(/*single_store=*/false);
  EXPECT_EQ(m.Decode(FUSE_ROOT_ID).kind, InodeKind::kMountRoot);
  std::set<uint64_t> seen;
  for (size_t store = 0; store < 3; ++store) {
    for (uint64_t id : {kRootId, kFirstFreeId, kIdMask}) {
      const uint64_t ino = m.StoreIno(store, id);
      ASSERT_NE(ino, 0u);
      EXPECT_NE(ino, uint64_t{FUSE_ROOT_ID});
      EXPECT_TRUE(seen.insert(ino).second) << ino;
      const InodeRef r = m.Decode(ino);
      EXPECT_EQ(r.kind, InodeKind::kStore);
      EXPECT_EQ(r.store, store);
      EXPECT_EQ(r.id, id);
      EXPECT_LT(ino, kVirtualBase);
    }
  }
  EXPECT_EQ(m.StoreIno(0, kIdMask + 1), 0u) << "ids beyond 2^48 cannot be represented";
  const InodeRef v = m.Decode(InodeMap::VirtualIno(kConfigNode));
  EXPECT_EQ(v.kind, InodeKind::kVirtual);
  EXPECT_EQ(v.id, kConfigNode);
}

class FilesystemTest : public testing::Test {
 protected:
  // Mounts (without FUSE) the embedded default: one store per engine.
  void OpenMulti() {
    config_ = config::DefaultConfig(tmp_.Sub("data"), engines::EngineNames());
    Open(/*single=*/false);
  }
  void OpenSingle(const std::string& engine) {
    auto c = config::SingleEngineConfig(tmp_.Sub("data"), engine, engines::EngineNames());
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    config_ = *c;
    Open(/*single=*/true);
  }
  // `shown`: the config the Filesystem is given (default: config_, whose stores it opens).
  void Open(bool single, bool public_control = false, const config::Config* shown = nullptr) {
    fs_.reset();  // a second Open in one test: the stores are closed before they are reopened
    auto stores = OpenStores(config_, {});
    ASSERT_TRUE(stores.ok()) << stores.status().ToString();
    FsOptions o;
    o.single_store = single;
    o.mountpoint = "/mnt/test";
    o.public_control = public_control;
    fs_ = std::make_unique<Filesystem>(std::move(*stores), shown ? *shown : config_, o);
  }
  uint64_t StoreRoot(const std::string& name) {
    auto e = fs_->Lookup(FUSE_ROOT_ID, name);
    EXPECT_TRUE(e.ok()) << e.status().ToString();
    return e.ok() ? e->ino : 0;
  }
  std::vector<std::string> List(uint64_t dir_ino, bool plus = false) {
    auto d = fs_->OpenDir(dir_ino);
    EXPECT_TRUE(d.ok()) << d.status().ToString();
    std::vector<std::string> names;
    if (!d.ok()) return names;
    off_t off = 0;
    for (;;) {
      size_t got = 0;
      Status s =
          fs_->ReadDir(d->get(), off, plus, [&](std::string_view n, const Entry& e, off_t next) {
            if (got == 2) return false;  // a tiny reply buffer: two entries per call
            names.emplace_back(n);
            if (plus && e.ino != 0) fs_->Forget(e.ino, 1);
            off = next;
            ++got;
            return true;
          });
      EXPECT_OK(s);
      if (got == 0) break;
    }
    return names;
  }

  test::TempDir tmp_;
  config::Config config_;
  std::unique_ptr<Filesystem> fs_;
};

TEST_F(FilesystemTest, MountRootListsTheStoresAndHidesTheControlDirectory) {
  OpenMulti();
  std::vector<std::string> expected = {".", ".."};
  for (const std::string& e : engines::EngineNames()) expected.push_back(e);
  EXPECT_EQ(List(FUSE_ROOT_ID), expected);
  auto control = fs_->Lookup(FUSE_ROOT_ID, ".kvfs");
  ASSERT_TRUE(control.ok()) << control.status().ToString();
  EXPECT_TRUE(S_ISDIR(control->attr.st_mode));
  EXPECT_EQ(List(control->ino),
            (std::vector<std::string>{".", "..", "stats", "config", "metrics"}));
  EXPECT_EQ(ErrnoOfResult(fs_->Lookup(FUSE_ROOT_ID, "nosuch")), ENOENT);
}

TEST_F(FilesystemTest, TheMountRootAcceptsNoNewNames) {
  OpenMulti();
  const std::string store = engines::EngineNames()[0];
  EXPECT_EQ(ErrnoOfResult(fs_->Create(FUSE_ROOT_ID, "f", 0644, 0, kUser)), EPERM);
  EXPECT_EQ(ErrnoOfResult(fs_->Mkdir(FUSE_ROOT_ID, "d", 0755, kUser)), EPERM);
  EXPECT_EQ(ErrnoOfResult(fs_->Mkdir(FUSE_ROOT_ID, store, 0755, kUser)), EEXIST);
  EXPECT_EQ(ErrnoOfResult(fs_->Mkdir(FUSE_ROOT_ID, ".kvfs", 0755, kUser)), EEXIST);
  EXPECT_NE(ErrnoOf(fs_->Rmdir(FUSE_ROOT_ID, store)), 0);
  EXPECT_EQ(ErrnoOf(fs_->Unlink(FUSE_ROOT_ID, store)), EPERM);
}

TEST_F(FilesystemTest, FilesLiveInTheirStoreAndRenamesAcrossStoresAreExdev) {
  OpenMulti();
  const std::vector<std::string> names = engines::EngineNames();
  ASSERT_GE(names.size(), 2u);
  const uint64_t a = StoreRoot(names[0]);
  const uint64_t b = StoreRoot(names[1]);
  auto f = fs_->Create(a, "file", 0644, O_EXCL, kUser);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->attr.st_mode, S_IFREG | 0644u);
  EXPECT_EQ(f->attr.st_uid, 1000u);
  ASSERT_TRUE(fs_->Write(f->ino, 0, "hello").ok());
  auto data = fs_->Read(f->ino, 0, 100, nullptr);
  ASSERT_TRUE(data.ok());
  EXPECT_EQ(*data, "hello");
  EXPECT_EQ(ErrnoOfResult(fs_->Lookup(b, "file")), ENOENT);
  EXPECT_EQ(ErrnoOf(fs_->Rename(a, "file", b, "file", 0)), EXDEV);
  EXPECT_EQ(ErrnoOf(fs_->Rename(a, "file", FUSE_ROOT_ID, "file", 0)), EXDEV);
  EXPECT_OK(fs_->Rename(a, "file", a, "moved", 0));
  EXPECT_EQ(ErrnoOfResult(fs_->Create(a, "moved", 0644, O_EXCL, kUser)), EEXIST);
  // Without O_EXCL an existing file is opened, and O_TRUNC truncates it.
  auto again = fs_->Create(a, "moved", 0644, O_TRUNC, kUser);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->ino, f->ino);
  EXPECT_EQ(again->attr.st_size, 0);
  EXPECT_EQ(ErrnoOf(fs_->Rename(a, "moved", a, "x", RENAME_WHITEOUT)), EINVAL);
}

// mknod(2) of every type the kernel passes on: the type bits and rdev come back in the stat, as
// they came, and again on a later getattr and after a reopen.
TEST_F(FilesystemTest, MknodKeepsEveryFileTypeAndItsDeviceNumber) {
  OpenSingle(engines::EngineNames()[0]);
  const struct {
    const char* name;
    mode_t mode;
    uint64_t rdev;
  } kinds[] = {
      {"plain", S_IFREG | 0600, 0},
      {"zero", 0640, 0},  // type 0: a regular file
      {"fifo", S_IFIFO | 0644, 0},
      {"sock", S_IFSOCK | 0755, 0},
      {"chr", S_IFCHR | 0620, makedev(1, 3)},
      {"blk", S_IFBLK | 0660, makedev(259, 70000)},
  };
  for (const auto& k : kinds) {
    auto e = fs_->MakeNode(FUSE_ROOT_ID, k.name, k.mode, k.rdev, kUser);
    ASSERT_TRUE(e.ok()) << k.name << ": " << e.status().ToString();
    const mode_t type = (k.mode & S_IFMT) == 0 ? S_IFREG : k.mode & S_IFMT;
    EXPECT_EQ(e->attr.st_mode, type | (k.mode & 07777 & ~kUser.umask)) << k.name;
    EXPECT_EQ(e->attr.st_rdev, k.rdev) << k.name;
    EXPECT_EQ(e->attr.st_size, 0) << k.name;
    EXPECT_EQ(e->attr.st_nlink, 1u) << k.name;
    auto st = fs_->GetAttr(e->ino);
    ASSERT_TRUE(st.ok());
    EXPECT_EQ(st->st_mode, e->attr.st_mode) << k.name;
    EXPECT_EQ(st->st_rdev, k.rdev) << k.name;
  }
  EXPECT_EQ(ErrnoOfResult(fs_->MakeNode(FUSE_ROOT_ID, "fifo", S_IFIFO | 0644, 0, kUser)), EEXIST);
  EXPECT_EQ(ErrnoOfResult(fs_->MakeNode(FUSE_ROOT_ID, "dir", S_IFDIR | 0755, 0, kUser)), EINVAL);
  auto fifo = fs_->Lookup(FUSE_ROOT_ID, "fifo");
  ASSERT_TRUE(fifo.ok());
  EXPECT_EQ(ErrnoOfResult(fs_->Read(fifo->ino, 0, 10, nullptr)), EINVAL);
  EXPECT_EQ(ErrnoOfResult(fs_->Write(fifo->ino, 0, "x")), EINVAL);
}

// link(2) within a store gives the same inode under a new name; across stores, into the mount's
// root, onto the control directory's name or of a control file it is refused.
TEST_F(FilesystemTest, HardLinksStayWithinTheirStore) {
  OpenMulti();
  const std::vector<std::string> names = engines::EngineNames();
  ASSERT_GE(names.size(), 2u);
  const uint64_t a = StoreRoot(names[0]);
  const uint64_t b = StoreRoot(names[1]);
  auto f = fs_->Create(a, "file", 0644, O_EXCL, kUser);
  ASSERT_TRUE(f.ok());
  auto g = fs_->Link(f->ino, a, "again");
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  EXPECT_EQ(g->ino, f->ino);
  EXPECT_EQ(g->attr.st_nlink, 2u);
  auto st = fs_->GetAttr(f->ino);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->st_nlink, 2u);
  EXPECT_EQ(ErrnoOfResult(fs_->Link(f->ino, b, "file")), EXDEV);
  EXPECT_EQ(ErrnoOfResult(fs_->Link(f->ino, FUSE_ROOT_ID, "file")), EXDEV);
  EXPECT_EQ(ErrnoOfResult(fs_->Link(f->ino, a, "again")), EEXIST);
  auto stats = fs_->Lookup(FUSE_ROOT_ID, ".kvfs");
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(ErrnoOfResult(fs_->Link(stats->ino, a, "stats")), EPERM);
  EXPECT_EQ(fs_->CollectStats().stores[0].files.links, 2u);  // the calls that reached it
}

// fallocate's modes as the daemon sorts them (the kernel refuses most bad input first), and
// lseek's SEEK_DATA/SEEK_HOLE on store and control files.
TEST_F(FilesystemTest, FallocateModesAndSeekWhences) {
  OpenSingle(engines::EngineNames()[0]);
  auto f = fs_->Create(FUSE_ROOT_ID, "f", 0644, O_EXCL, kUser);
  ASSERT_TRUE(f.ok());
  EXPECT_OK(fs_->Fallocate(f->ino, 0, 0, 1 << 20));
  EXPECT_EQ(fs_->GetAttr(f->ino)->st_size, 1 << 20);
  EXPECT_EQ(fs_->GetAttr(f->ino)->st_blocks, 0);
  EXPECT_OK(fs_->Fallocate(f->ino, FALLOC_FL_KEEP_SIZE, 0, 2 << 20));
  EXPECT_OK(fs_->Fallocate(f->ino, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096));
  EXPECT_OK(fs_->Fallocate(f->ino, FALLOC_FL_ZERO_RANGE, 0, 4096));
  EXPECT_EQ(ErrnoOf(fs_->Fallocate(f->ino, FALLOC_FL_PUNCH_HOLE, 0, 4096)), EOPNOTSUPP);
  EXPECT_EQ(ErrnoOf(fs_->Fallocate(f->ino, FALLOC_FL_COLLAPSE_RANGE, 0, 4096)), EOPNOTSUPP);
  EXPECT_EQ(ErrnoOf(fs_->Fallocate(f->ino, FALLOC_FL_INSERT_RANGE, 0, 4096)), EOPNOTSUPP);
  EXPECT_EQ(ErrnoOf(fs_->Fallocate(f->ino, 0, 0, uint64_t{1} << 60)), ENOSPC);
  ASSERT_TRUE(fs_->Write(f->ino, 8192, "data").ok());
  EXPECT_EQ(*fs_->Lseek(f->ino, 0, SEEK_DATA), 8192u);
  EXPECT_EQ(*fs_->Lseek(f->ino, 8192, SEEK_HOLE), 12288u);
  EXPECT_EQ(ErrnoOfResult(fs_->Lseek(f->ino, 2 << 20, SEEK_DATA)), ENXIO);
  EXPECT_EQ(ErrnoOfResult(fs_->Lseek(f->ino, 0, SEEK_END)), EINVAL);
  auto stats = fs_->Lookup(FUSE_ROOT_ID, ".kvfs");
  ASSERT_TRUE(stats.ok());
  auto config = fs_->Lookup(stats->ino, "config");
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(ErrnoOf(fs_->Fallocate(config->ino, 0, 0, 10)), EPERM);
  EXPECT_EQ(*fs_->Lseek(config->ino, 0, SEEK_DATA), 0u);
}

TEST_F(FilesystemTest, SingleStoreReservesDotKvfsAtTheRoot) {
  OpenSingle(engines::EngineNames()[0]);
  auto root = fs_->GetAttr(FUSE_ROOT_ID);
  ASSERT_TRUE(root.ok());
  EXPECT_TRUE(S_ISDIR(root->st_mode));
  auto control = fs_->Lookup(FUSE_ROOT_ID, ".kvfs");
  ASSERT_TRUE(control.ok());
  EXPECT_EQ(control->ino, InodeMap::VirtualIno(kControlDirNode));
  EXPECT_EQ(ErrnoOfResult(fs_->Mkdir(FUSE_ROOT_ID, ".kvfs", 0755, kUser)), EEXIST);
  EXPECT_EQ(ErrnoOfResult(fs_->Create(FUSE_ROOT_ID, ".kvfs", 0644, 0, kUser)), EEXIST);
  ASSERT_TRUE(fs_->Create(FUSE_ROOT_ID, "f", 0644, 0, kUser).ok());
  EXPECT_EQ(ErrnoOf(fs_->Rename(FUSE_ROOT_ID, "f", FUSE_ROOT_ID, ".kvfs", 0)), EPERM);
  EXPECT_EQ(ErrnoOf(fs_->Rename(FUSE_ROOT_ID, ".kvfs", FUSE_ROOT_ID, "g", 0)), EPERM);
  // Below the root the name is an ordinary one.
  auto d = fs_->Mkdir(FUSE_ROOT_ID, "d", 0755, kUser);
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(fs_->Mkdir(d->ino, ".kvfs", 0755, kUser).ok());
  EXPECT_EQ(List(FUSE_ROOT_ID), (std::vector<std::string>{".", "..", "d", "f"}));
  EXPECT_EQ(ErrnoOf(fs_->Rmdir(FUSE_ROOT_ID, ".kvfs")), EPERM);
}

TEST_F(FilesystemTest, ReaddirResumesAfterTheLastNameWhileEntriesChange) {
  OpenSingle(engines::EngineNames()[0]);
  for (const char* n : {"a", "b", "c", "d", "e"}) {
    ASSERT_TRUE(fs_->Create(FUSE_ROOT_ID, n, 0644, 0, kUser).ok());
  }
  auto d = fs_->OpenDir(FUSE_ROOT_ID);
  ASSERT_TRUE(d.ok());
  std::vector<std::string> names;
  off_t off = 0;
  auto read_some = [&](size_t max) {
    size_t got = 0;
    EXPECT_OK(fs_->ReadDir(d->get(), off, false, [&](std::string_view n, const Entry&, off_t next) {
      if (got == max) return false;
      names.emplace_back(n);
      off = next;
      ++got;
      return true;
    }));
    return got;
  };
  EXPECT_EQ(read_some(3), 3u);  // ".", "..", "a"
  const off_t after_a = off;
  EXPECT_EQ(read_some(1), 1u);  // "b"
  // "b" (already listed) and "c" (not yet) go, "bb" and "z" come.
  EXPECT_OK(fs_->Unlink(FUSE_ROOT_ID, "b"));
  EXPECT_OK(fs_->Unlink(FUSE_ROOT_ID, "c"));
  ASSERT_TRUE(fs_->Create(FUSE_ROOT_ID, "bb", 0644, 0, kUser).ok());
  ASSERT_TRUE(fs_->Create(FUSE_ROOT_ID, "z", 0644, 0, kUser).ok());
  while (read_some(2) > 0) {
  }
  EXPECT_EQ(names, (std::vector<std::string>{".", "..", "a", "b", "bb", "d", "e", "z"}));
  // An offset handed out earlier still resumes after its name (seekdir / telldir).
  names.clear();
  off = after_a;
  while (read_some(10) > 0) {
  }
  EXPECT_EQ(names, (std::vector<std::string>{"bb", "d", "e", "z"}));
  off = 12345;  // never handed out
  EXPECT_EQ(ErrnoOf(fs_->ReadDir(d->get(), off, false,
                                 [](std::string_view, const Entry&, off_t) { return true; })),
            EINVAL);
}

TEST_F(FilesystemTest, ReaddirplusEntriesCarryALookupReferenceEach) {
  OpenSingle(engines::EngineNames()[0]);
  for (const char* n : {"a", "b"}) {
    auto e = fs_->Create(FUSE_ROOT_ID, n, 0644, 0, kUser);
    ASSERT_TRUE(e.ok());
    fs_->Forget(e->ino, 1);
  }
  const uint64_t before = fs_->store(0)->stats().known_nodes;
  auto d = fs_->OpenDir(FUSE_ROOT_ID);
  ASSERT_TRUE(d.ok());
  std::vector<uint64_t> inos;
  EXPECT_OK(fs_->ReadDir(d->get(), 0, true, [&](std::string_view, const Entry& e, off_t) {
    if (e.ino != 0) inos.push_back(e.ino);
    return true;
  }));
  ASSERT_EQ(inos.size(), 2u);
  EXPECT_EQ(fs_->store(0)->stats().known_nodes, before + 2);
  for (uint64_t ino : inos) fs_->Forget(ino, 1);
  EXPECT_EQ(fs_->store(0)->stats().known_nodes, before);
}

TEST_F(FilesystemTest, XattrsRoundTripAndPosixAclsAreRefused) {
  OpenSingle(engines::EngineNames()[0]);
  auto f = fs_->Create(FUSE_ROOT_ID, "f", 0644, 0, kUser);
  ASSERT_TRUE(f.ok());
  EXPECT_OK(fs_->SetXattr(f->ino, "user.color", "blue", 0));
  auto v = fs_->GetXattr(f->ino, "user.color");
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, "blue");
  auto list = fs_->ListXattr(f->ino);
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(*list, std::string("user.color\0", 11));
  EXPECT_EQ(ErrnoOfResult(fs_->GetXattr(f->ino, "user.none")), ENODATA);
  EXPECT_EQ(ErrnoOf(fs_->SetXattr(f->ino, "system.posix_acl_access", "x", 0)), EOPNOTSUPP);
  // Not kept, so not there: EOPNOTSUPP (tools remember it per file system), not ENODATA.
  EXPECT_EQ(ErrnoOfResult(fs_->GetXattr(f->ino, "system.posix_acl_access")), EOPNOTSUPP);
  EXPECT_EQ(ErrnoOfResult(fs_->GetXattr(f->ino, "security.selinux")), EOPNOTSUPP);
  EXPECT_EQ(ErrnoOf(fs_->SetXattr(f->ino, "security.capability", "x", 0)), EOPNOTSUPP);
  EXPECT_EQ(ErrnoOf(fs_->RemoveXattr(f->ino, "security.capability")), EOPNOTSUPP);
  // As a local file system answers: a name in no namespace is EOPNOTSUPP, a namespace with no
  // name after it EINVAL.
  EXPECT_EQ(ErrnoOf(fs_->SetXattr(f->ino, "color", "x", 0)), EOPNOTSUPP);
  EXPECT_EQ(ErrnoOfResult(fs_->GetXattr(f->ino, "color")), EOPNOTSUPP);
  EXPECT_EQ(ErrnoOf(fs_->RemoveXattr(f->ino, "usercolor")), EOPNOTSUPP);
  EXPECT_EQ(ErrnoOf(fs_->SetXattr(f->ino, "user.", "x", 0)), EINVAL);
  EXPECT_EQ(ErrnoOf(fs_->SetXattr(f->ino, "trusted.", "x", 0)), EINVAL);
  EXPECT_OK(fs_->SetXattr(f->ino, "trusted.color", "red", 0));
  EXPECT_OK(fs_->RemoveXattr(f->ino, "user.color"));
  EXPECT_EQ(ErrnoOfResult(fs_->GetXattr(f->ino, "user.color")), ENODATA);
}

TEST_F(FilesystemTest, OpenOfAStoreFileIsEnosysSoTheKernelStopsAsking) {
  OpenSingle(engines::EngineNames()[0]);
  auto f = fs_->Create(FUSE_ROOT_ID, "f", 0644, 0, kUser);
  ASSERT_TRUE(f.ok());
  std::unique_ptr<OpenFile> open_file;
  EXPECT_EQ(ErrnoOf(fs_->Open(f->ino, O_RDWR, &open_file)), ENOSYS);
  EXPECT_EQ(open_file, nullptr);
  // fsync and fsyncdir always answer (never ENOSYS).
  EXPECT_OK(fs_->Fsync(f->ino, true));
  EXPECT_OK(fs_->Fsync(f->ino, false));
  EXPECT_OK(fs_->FsyncDir(FUSE_ROOT_ID));
}

TEST_F(FilesystemTest, StatsAndConfigAreServedFromTheControlDirectory) {
  OpenMulti();
  auto control = fs_->Lookup(FUSE_ROOT_ID, ".kvfs");
  ASSERT_TRUE(control.ok());
  auto stats = fs_->Lookup(control->ino, "stats");
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->attr_timeout, 0) << "never cached";
  std::unique_ptr<OpenFile> open_file;
  ASSERT_OK(fs_->Open(stats->ino, O_RDONLY, &open_file));
  ASSERT_NE(open_file, nullptr);
  const nlohmann::json json = test::ParseJson(open_file->snapshot);
  ASSERT_FALSE(json.is_discarded()) << open_file->snapshot;
  EXPECT_EQ(json["mountpoint"], "/mnt/test");
  EXPECT_EQ(json["single_store"], false);
  std::vector<std::string> names;
  for (const nlohmann::json& store : json["stores"]) {
    names.push_back(store["name"]);
    EXPECT_TRUE(store["wal"].is_object()) << store;
    EXPECT_EQ(store["wal"]["failed"], false) << store;
  }
  EXPECT_EQ(names, engines::EngineNames());
  EXPECT_EQ(ErrnoOf(fs_->Open(stats->ino, O_WRONLY, &open_file)), EACCES);
  EXPECT_EQ(ErrnoOfResult(fs_->Write(stats->ino, 0, "x")), EPERM);
  // Without an open (no_open), reads serve the snapshot the last lookup took; its size is the
  // one getattr reports.
  auto attr = fs_->GetAttr(stats->ino);
  ASSERT_TRUE(attr.ok());
  auto body = fs_->Read(stats->ino, 0, 1 << 20, nullptr);
  ASSERT_TRUE(body.ok());
  EXPECT_EQ(static_cast<off_t>(body->size()), attr->st_size);

  auto cfg = fs_->Lookup(control->ino, "config");
  ASSERT_TRUE(cfg.ok());
  auto toml = fs_->Read(cfg->ino, 0, 1 << 20, nullptr);
  ASSERT_TRUE(toml.ok());
  auto parsed = config::ParseConfig(*toml, "config", engines::EngineNames());
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(*parsed, config_);
}

// /.kvfs and its files are the mounting user's alone (0500, 0400), unless the mount makes them
// public (-o kvfs_public_control: 0555, 0444). The kernel enforces the modes.
TEST_F(FilesystemTest, TheControlFilesAreTheMountingUsersAloneUnlessPublic) {
  for (const bool pub : {false, true}) {
    SCOPED_TRACE(pub ? "kvfs_public_control" : "default");
    config_ = config::DefaultConfig(tmp_.Sub("data"), engines::EngineNames());
    Open(/*single=*/false, pub);
    auto control = fs_->Lookup(FUSE_ROOT_ID, ".kvfs");
    ASSERT_TRUE(control.ok()) << control.status().ToString();
    EXPECT_EQ(control->attr.st_mode, S_IFDIR | (pub ? 0555u : 0500u));
    EXPECT_EQ(control->attr.st_uid, ::geteuid());
    EXPECT_EQ(control->attr.st_gid, ::getegid());
    for (const char* name : {"stats", "config", "metrics"}) {
      auto f = fs_->Lookup(control->ino, name);
      ASSERT_TRUE(f.ok()) << name;
      EXPECT_EQ(f->attr.st_mode, S_IFREG | (pub ? 0444u : 0400u)) << name;
      EXPECT_EQ(f->attr.st_uid, ::geteuid()) << name;
      auto attr = fs_->GetAttr(f->ino);
      ASSERT_TRUE(attr.ok());
      EXPECT_EQ(attr->st_mode, f->attr.st_mode) << name;
    }
    auto root_attr = fs_->GetAttr(control->ino);
    ASSERT_TRUE(root_attr.ok());
    EXPECT_EQ(root_attr->st_mode, control->attr.st_mode);
  }
}

// /.kvfs/config shows the configuration in force, but never the value of a secret: a Config
// built here carries engine options with secrets (no engine takes options yet; the mount-level
// test comes with the first engine that does).
TEST_F(FilesystemTest, TheConfigFileNeverShowsASecret) {
  config_ = config::DefaultConfig(tmp_.Sub("data"), engines::EngineNames());
  config::Config shown = config_;
  shown.stores[0].options = {{"endpoints", "https://10.0.0.1:2379"},
                             {"password", "hunter2"},
                             {"API_KEY", "k3y-value"},
                             {"client_secret", "s3cr3t-value"}};
  Open(/*single=*/false, /*public_control=*/false, &shown);
  auto control = fs_->Lookup(FUSE_ROOT_ID, ".kvfs");
  ASSERT_TRUE(control.ok());
  auto cfg = fs_->Lookup(control->ino, "config");
  ASSERT_TRUE(cfg.ok());
  std::unique_ptr<OpenFile> open_file;
  ASSERT_OK(fs_->Open(cfg->ino, O_RDONLY, &open_file));
  auto read = fs_->Read(cfg->ino, 0, 1 << 20, nullptr);
  ASSERT_TRUE(read.ok());
  for (const std::string& text : {open_file->snapshot, *read}) {
    for (const char* secret : {"hunter2", "k3y-value", "s3cr3t-value"}) {
      EXPECT_EQ(text.find(secret), std::string::npos) << secret << " shown in\n" << text;
    }
    EXPECT_NE(text.find("password = \"<redacted>\"\n"), std::string::npos) << text;
    EXPECT_NE(text.find("API_KEY = \"<redacted>\"\n"), std::string::npos) << text;
    EXPECT_NE(text.find("endpoints = \"https://10.0.0.1:2379\"\n"), std::string::npos) << text;
    EXPECT_EQ(static_cast<off_t>(text.size()), cfg->attr.st_size);
  }
}

TEST_F(FilesystemTest, MetricsShowTheStatsNumbersInPrometheusFormat) {
  OpenMulti();
  for (const std::string& e : engines::EngineNames()) {
    auto f = fs_->Create(StoreRoot(e), "f", 0644, 0, kUser);
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    ASSERT_TRUE(fs_->Write(f->ino, 0, "counted").ok());
  }
  EXPECT_OK(fs_->FsyncDir(FUSE_ROOT_ID));  // nothing left for a timer to sync meanwhile
  auto control = fs_->Lookup(FUSE_ROOT_ID, ".kvfs");
  ASSERT_TRUE(control.ok());
  auto metrics = fs_->Lookup(control->ino, "metrics");
  ASSERT_TRUE(metrics.ok()) << metrics.status().ToString();
  EXPECT_EQ(metrics->entry_timeout, 0) << "looked up again by every path walk";
  EXPECT_EQ(metrics->attr_timeout, 0) << "never cached";
  EXPECT_EQ(fs_->AttrTimeout(metrics->ino), 0);
  EXPECT_EQ(metrics->attr.st_mode, S_IFREG | 0400u);
  std::unique_ptr<OpenFile> text, json_text;
  ASSERT_OK(fs_->Open(metrics->ino, O_RDONLY, &text));
  ASSERT_NE(text, nullptr);
  auto stats = fs_->Lookup(control->ino, "stats");
  ASSERT_TRUE(stats.ok());
  ASSERT_OK(fs_->Open(stats->ino, O_RDONLY, &json_text));

  test::Exposition exposition;
  ASSERT_TRUE(test::ParseExposition(text->snapshot, &exposition));
  EXPECT_EQ(exposition.types["kvfs_file_writes_total"], "counter");
  EXPECT_EQ(exposition.types["kvfs_wal_syncs_total"], "counter");
  EXPECT_EQ(exposition.types["kvfs_engine_written_bytes_total"], "counter");
  EXPECT_EQ(exposition.types["kvfs_engine_live_keys"], "gauge");
  EXPECT_EQ(exposition.types["kvfs_store_failed"], "gauge");
  EXPECT_EQ(exposition.types.size(), exposition.helps.size()) << "a HELP for every family";
  const nlohmann::json json = test::ParseJson(json_text->snapshot);
  ASSERT_FALSE(json.is_discarded()) << json_text->snapshot;
  EXPECT_TRUE(test::MetricsAgreeWithStats(json, exposition, /*uptime_slack_s=*/1))
      << text->snapshot << json_text->snapshot;
  EXPECT_EQ(test::SumOverStores(json, "files", "writes"),
            static_cast<int64_t>(engines::EngineNames().size()));
  const std::string first = engines::EngineNames()[0];
  EXPECT_NE(text->snapshot.find("kvfs_file_writes_total{store=\"" + first + "\",engine=\"" + first +
                                "\"} 1\n"),
            std::string::npos)
      << text->snapshot;

  // Read-only, listed, and regenerated on each open.
  std::unique_ptr<OpenFile> refused;
  EXPECT_EQ(ErrnoOf(fs_->Open(metrics->ino, O_WRONLY, &refused)), EACCES);
  EXPECT_EQ(ErrnoOfResult(fs_->Write(metrics->ino, 0, "x")), EPERM);
  ASSERT_TRUE(fs_->Create(StoreRoot(first), "g", 0644, 0, kUser).ok());
  std::unique_ptr<OpenFile> again;
  ASSERT_OK(fs_->Open(metrics->ino, O_RDONLY, &again));
  EXPECT_NE(again->snapshot.find("kvfs_file_creates_total{store=\"" + first + "\",engine=\"" +
                                 first + "\"} 2\n"),
            std::string::npos)
      << again->snapshot;
  auto attr = fs_->GetAttr(metrics->ino);
  ASSERT_TRUE(attr.ok());
  EXPECT_EQ(static_cast<size_t>(attr->st_size), again->snapshot.size());
}

// Every number of a snapshot, each different, must reach the metric of its name with its value;
// the JSON keeps the field names and order scripts read.
TEST(StatsReport, JsonAndMetricsShowTheSameNumbersUnderTheSameNames) {
  StatsSnapshot snap;
  snap.pid = 4242;
  snap.mountpoint = "/mnt/a \"quoted\" \\ mount";
  snap.uptime_s = 77;
  snap.no_open = true;
  uint64_t next = 1000;
  // Each counter struct is plain uint64_t fields (WalStats then a bool): give each its own value.
  const auto fill = [&](void* fields, size_t bytes) {
    ASSERT_EQ(bytes % sizeof(uint64_t), 0u);
    for (size_t off = 0; off < bytes; off += sizeof(uint64_t)) {
      const uint64_t v = next++;
      std::memcpy(static_cast<char*>(fields) + off, &v, sizeof(v));
    }
  };
  for (const char* name : {"plain", "we\"ird\\name\nline"}) {
    StoreStatsSnapshot s;
    s.name = name;
    s.engine = "lsm";
    s.data_dir = ValidUtf8("/data/\xff/x");
    s.sync = "batch";
    s.failed = true;
    fill(&s.files, sizeof(s.files));
    fill(&s.engine_stats, offsetof(engines::EngineStats, wal));
    fill(&s.engine_stats.wal, offsetof(sync::WalStats, failed));
    snap.stores.push_back(s);
  }
  const std::string text = StatsPrometheus(snap);
  test::Exposition exposition;
  ASSERT_TRUE(test::ParseExposition(text, &exposition));
  const nlohmann::json json = test::ParseJson(StatsJson(snap));
  ASSERT_FALSE(json.is_discarded()) << StatsJson(snap);
  EXPECT_TRUE(test::MetricsAgreeWithStats(json, exposition)) << text << json.dump(2);
  EXPECT_NE(text.find("{store=\"we\\\"ird\\\\name\\nline\",engine=\"lsm\"}"), std::string::npos)
      << text;
  EXPECT_EQ(json["stores"][0]["data_dir"], "/data/\xef\xbf\xbd/x") << "U+FFFD for a bad byte";

  // The field names and their order, as /.kvfs/stats has always written them.
  const auto keys = [](const std::string& object_text) {
    const nlohmann::ordered_json object = nlohmann::ordered_json::parse(object_text);
    std::vector<std::string> out;
    for (const auto& [k, v] : object.items()) out.push_back(k);
    return out;
  };
  const nlohmann::ordered_json ordered = nlohmann::ordered_json::parse(StatsJson(snap));
  EXPECT_EQ(keys(ordered.dump()),
            (std::vector<std::string>{"pid", "mountpoint", "uptime_s", "single_store", "no_open",
                                      "writeback_cache", "stores"}));
  const nlohmann::ordered_json& store = ordered["stores"][0];
  EXPECT_EQ(keys(store.dump()),
            (std::vector<std::string>{"name", "engine", "data_dir", "sync", "failed", "files",
                                      "engine_stats", "wal", "recovery"}));
  EXPECT_EQ(
      keys(store["files"].dump()),
      (std::vector<std::string>{
          "lookups",    "getattrs",    "setattrs",    "readdirs", "creates",    "mkdirs",
          "symlinks",   "links",       "unlinks",     "rmdirs",   "renames",    "reads",
          "read_bytes", "writes",      "write_bytes", "fsyncs",   "fdatasyncs", "fsyncdirs",
          "errors",     "sync_errors", "known_nodes", "orphans",  "purges",     "purged_keys"}));
  EXPECT_EQ(
      keys(store["engine_stats"].dump()),
      (std::vector<std::string>{"gets", "puts", "deletes", "batches", "scans", "bytes_written",
                                "bytes_read", "syncs", "compactions", "live_keys", "errors"}));
  EXPECT_EQ(
      keys(store["wal"].dump()),
      (std::vector<std::string>{"appends", "bytes_appended", "writes", "syncs", "synced_requests",
                                "max_group", "segments_created", "segments_deleted", "last_lsn",
                                "durable_lsn", "sync_micros", "gather_micros", "failed"}));
  // Each value where its name says: the fields were filled in declaration order, which is the
  // JSON's order, so every group counts up by one from the first store's 1000.
  uint64_t expected = 1000;
  for (const nlohmann::ordered_json& s : ordered["stores"]) {
    for (const char* group : {"files", "engine_stats", "wal"}) {
      for (const auto& [field, value] : s[group].items()) {
        if (value.is_boolean()) continue;
        EXPECT_EQ(value, expected++) << s["name"] << " " << group << "." << field;
      }
    }
  }
}

// What each store's open recovered (Engine::recovery()) is in both files, facts included:
// the operator sees a torn tail the open dropped, and where.
TEST(StatsReport, TheRecoveryReportIsInTheJsonAndTheMetrics) {
  StatsSnapshot snap;
  snap.mountpoint = "/m";
  for (const char* engine : {"lsm", "bitcask"}) {
    StoreStatsSnapshot s;
    s.name = std::string("store-") + engine;
    s.engine = engine;
    s.recovery.log.records_replayed = 7;
    s.recovery.log.records_read = 9;
    s.recovery.log.dropped_bytes = 17;
    s.recovery.log.dropped_segment = 3;
    s.recovery.log.dropped_offset = 4160;
    s.recovery.log.dropped_reason = "/d/wal/0000000000000003.wal at offset 4160: checksum";
    s.recovery.AddFact(engine == std::string("lsm") ? "tables" : "hint_files_used", 4);
    s.recovery.warnings.push_back("hint file rejected");
    snap.stores.push_back(s);
  }
  const nlohmann::json json = test::ParseJson(StatsJson(snap));
  ASSERT_FALSE(json.is_discarded());
  const nlohmann::json& r = json["stores"][0]["recovery"];
  EXPECT_EQ(r["records_replayed"], 7);
  EXPECT_EQ(r["records_read"], 9);
  EXPECT_EQ(r["dropped_bytes"], 17);
  EXPECT_EQ(r["dropped_segment"], 3);
  EXPECT_EQ(r["dropped_offset"], 4160);
  EXPECT_EQ(r["facts"]["tables"], 4);
  EXPECT_EQ(r["warnings"].size(), 1u);
  EXPECT_NE(r["summary"].get<std::string>().find("dropped 17 bytes"), std::string::npos) << r;
  test::Exposition exposition;
  const std::string text = StatsPrometheus(snap);
  ASSERT_TRUE(test::ParseExposition(text, &exposition));
  EXPECT_TRUE(test::MetricsAgreeWithStats(json, exposition)) << text;
  EXPECT_NE(text.find("kvfs_recovery_dropped_bytes{store=\"store-lsm\",engine=\"lsm\"} 17\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("kvfs_recovery_fact{store=\"store-bitcask\",engine=\"bitcask\","
                      "fact=\"hint_files_used\"} 4\n"),
            std::string::npos)
      << text;
}

TEST(StatsReport, ClosedStoresLeaveTheMountsOwnNumbers) {
  StatsSnapshot snap;
  snap.mountpoint = "/m";
  const nlohmann::json json = test::ParseJson(StatsJson(snap));
  ASSERT_FALSE(json.is_discarded());
  EXPECT_TRUE(json["stores"].is_array());
  EXPECT_TRUE(json["stores"].empty());
  test::Exposition exposition;
  ASSERT_TRUE(test::ParseExposition(StatsPrometheus(snap), &exposition));
  EXPECT_TRUE(test::MetricsAgreeWithStats(json, exposition));
}

TEST(StatsReport, ValidUtf8KeepsGoodTextAndReplacesBadBytes) {
  EXPECT_EQ(ValidUtf8("plain /path"), "plain /path");
  EXPECT_EQ(ValidUtf8("caf\xc3\xa9 \xe2\x82\xac"), "caf\xc3\xa9 \xe2\x82\xac");
  EXPECT_EQ(ValidUtf8("a\xff"
                      "b"),
            "a\xef\xbf\xbd"
            "b");
  EXPECT_EQ(ValidUtf8(std::string("nul\0in", 6)), std::string("nul\0in", 6));
}

TEST_F(FilesystemTest, AfterShutdownEveryOperationFailsWithEio) {
  OpenSingle(engines::EngineNames()[0]);
  EXPECT_OK(fs_->Shutdown());
  EXPECT_OK(fs_->Shutdown());  // once only
  EXPECT_EQ(ErrnoOfResult(fs_->GetAttr(FUSE_ROOT_ID)), EIO);
  EXPECT_EQ(ErrnoOfResult(fs_->Lookup(FUSE_ROOT_ID, "x")), EIO);
}

TEST_F(FilesystemTest, StatfsReportsTheDataDirsFileSystem) {
  OpenMulti();
  auto sv = fs_->StatFs(FUSE_ROOT_ID);
  ASSERT_TRUE(sv.ok()) << sv.status().ToString();
  EXPECT_EQ(sv->f_bsize, 4096u);
  EXPECT_EQ(sv->f_namemax, 255u);
  EXPECT_GT(sv->f_blocks, 0u);
}

// --- stores ----------------------------------------------------------------------------------

TEST(Stores, TheMarkerRecordsTheEngineAndRefusesAnother) {
  test::TempDir tmp;
  const std::vector<std::string> names = engines::EngineNames();
  ASSERT_GE(names.size(), 2u);
  auto c = config::SingleEngineConfig(tmp.Sub("d"), names[0], names);
  ASSERT_TRUE(c.ok());
  {
    auto stores = OpenStores(*c, {});
    ASSERT_TRUE(stores.ok()) << stores.status().ToString();
    EXPECT_OK(CloseStores(&*stores));
  }
  std::ifstream in(tmp.Sub("d/KVFS_STORE"));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text, "engine = \"" + names[0] + "\"\nlayout = 1\n") << "TOML";

  auto other = config::SingleEngineConfig(tmp.Sub("d"), names[1], names);
  ASSERT_TRUE(other.ok());
  auto refused = OpenStores(*other, {});
  ASSERT_FALSE(refused.ok());
  const std::string msg = refused.status().message();
  EXPECT_NE(msg.find(tmp.Sub("d")), std::string::npos) << msg;
  EXPECT_NE(msg.find(names[0]), std::string::npos) << msg;
  EXPECT_NE(msg.find(names[1]), std::string::npos) << msg;
}

// Writes `text` as the marker of a new data directory `dir`, both private to this user, as a
// store must be to open (sync/private_tree.h).
void WriteMarker(const std::string& dir, const std::string& text) {
  std::filesystem::create_directories(dir);
  std::filesystem::permissions(dir, std::filesystem::perms::owner_all);
  {
    std::ofstream out(dir + "/KVFS_STORE", std::ios::binary);
    out << text;
  }
  std::filesystem::permissions(dir + "/KVFS_STORE", std::filesystem::perms::owner_read |
                                                        std::filesystem::perms::owner_write);
}

std::string ReadMarker(const std::string& dir) {
  std::ifstream in(dir + "/KVFS_STORE", std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

TEST(Stores, AMarkerAnOlderKvfsWroteStillOpensAndStaysAsItIs) {
  const std::vector<std::string> names = engines::EngineNames();
  ASSERT_GE(names.size(), 2u);
  for (const std::string& engine : names) {
    test::TempDir tmp;
    const std::string old_text = "engine = " + engine + "\nlayout = 1\n";
    WriteMarker(tmp.Sub("d"), old_text);
    auto c = config::SingleEngineConfig(tmp.Sub("d"), engine, names);
    ASSERT_TRUE(c.ok());
    auto stores = OpenStores(*c, {});
    ASSERT_TRUE(stores.ok()) << engine << ": " << stores.status().ToString();
    EXPECT_OK(CloseStores(&*stores));
    EXPECT_EQ(ReadMarker(tmp.Sub("d")), old_text);
    // And it still names its engine: another is refused, naming both.
    const std::string other = engine == names[0] ? names[1] : names[0];
    auto wrong = config::SingleEngineConfig(tmp.Sub("d"), other, names);
    ASSERT_TRUE(wrong.ok());
    auto refused = OpenStores(*wrong, {});
    ASSERT_FALSE(refused.ok());
    EXPECT_TRUE(refused.status().code() == StatusCode::kInvalidArgument)
        << refused.status().ToString();
    EXPECT_NE(refused.status().message().find(engine), std::string::npos);
    EXPECT_NE(refused.status().message().find(other), std::string::npos);
  }
}

TEST(Stores, AMarkerIsTomlHoweverItIsLaidOut) {
  test::TempDir tmp;
  const std::string engine = engines::EngineNames()[0];
  const std::string text =
      "# kvfs store\nlayout = 1   # the marker's version\nengine = '" + engine + "'\n";
  auto c = config::SingleEngineConfig(tmp.Sub("d"), engine, engines::EngineNames());
  ASSERT_TRUE(c.ok());
  {
    auto made = OpenStores(*c, {});  // a store with its tree: a TOML marker promises one
    ASSERT_TRUE(made.ok()) << made.status().ToString();
    EXPECT_OK(CloseStores(&*made));
  }
  WriteMarker(tmp.Sub("d"), text);
  auto stores = OpenStores(*c, {});
  ASSERT_TRUE(stores.ok()) << stores.status().ToString();
  EXPECT_OK(CloseStores(&*stores));
  EXPECT_EQ(ReadMarker(tmp.Sub("d")), text);
}

// The marker is written once the file tree is durable, so a marked store whose engine has no
// tree lost its data files (a removed log segment): refused, never started afresh and empty.
TEST(Stores, AMarkedStoreWhoseTreeIsGoneIsRefusedNotStartedAfresh) {
  for (const std::string& engine : engines::EngineNames()) {
    SCOPED_TRACE(engine);
    test::TempDir tmp;
    auto c = config::SingleEngineConfig(tmp.Sub("d"), engine, engines::EngineNames());
    ASSERT_TRUE(c.ok());
    {
      auto made = OpenStores(*c, {});
      ASSERT_TRUE(made.ok()) << made.status().ToString();
      EXPECT_OK(CloseStores(&*made));
    }
    // Everything but the marker gone, as if the engine's files were lost.
    for (const auto& f : std::filesystem::directory_iterator(tmp.Sub("d"))) {
      if (f.path().filename() != "KVFS_STORE") std::filesystem::remove_all(f.path());
    }
    auto refused = OpenStores(*c, {});
    ASSERT_FALSE(refused.ok());
    EXPECT_TRUE(refused.status().IsCorruption()) << refused.status().ToString();
    EXPECT_NE(refused.status().message().find("marker says it holds a kvfs file tree"),
              std::string::npos)
        << refused.status().ToString();
  }
}

TEST(Stores, ATomlMarkerNamingAnotherEngineIsRefused) {
  test::TempDir tmp;
  const std::vector<std::string> names = engines::EngineNames();
  WriteMarker(tmp.Sub("d"), "engine = \"" + names[1] + "\"\nlayout = 1\n");
  auto c = config::SingleEngineConfig(tmp.Sub("d"), names[0], names);
  ASSERT_TRUE(c.ok());
  auto refused = OpenStores(*c, {});
  ASSERT_FALSE(refused.ok());
  EXPECT_TRUE(refused.status().code() == StatusCode::kInvalidArgument)
      << refused.status().ToString();
  const std::string msg = refused.status().message();
  EXPECT_NE(msg.find(tmp.Sub("d")), std::string::npos) << msg;
  EXPECT_NE(msg.find(names[0]), std::string::npos) << msg;
  EXPECT_NE(msg.find(names[1]), std::string::npos) << msg;
}

TEST(Stores, AnyOtherMarkerIsCorruptionNamingTheFile) {
  const std::string engine = engines::EngineNames()[0];
  const std::string garbage[] = {
      "garbage",
      "\x01\x02\xff binary",
      "",
      "engine = " + engine + "\r\nlayout = 1\r\n",      // an old marker, but not its bytes
      "engine = " + engine + "\nlayout = 1\n\n",        // the same
      "engine = nosuch\nlayout = 1\n",                  // the old form of no known engine
      "engine = \"" + engine + "\"\nlayout = 2\n",      // a layout this kvfs does not read
      "engine = \"" + engine + "\"\n",                  // no layout
      "engine = \"" + engine + "\"\nlayout = \"1\"\n",  // a layout that is not a number
      "layout = 1\n",                                   // no engine
      "engine = \"\"\nlayout = 1\n",                    // an empty engine
      "engine = 5\nlayout = 1\n",                       // an engine that is not a string
  };
  for (const std::string& text : garbage) {
    test::TempDir tmp;
    WriteMarker(tmp.Sub("d"), text);
    auto c = config::SingleEngineConfig(tmp.Sub("d"), engine, engines::EngineNames());
    ASSERT_TRUE(c.ok());
    auto refused = OpenStores(*c, {});
    ASSERT_FALSE(refused.ok()) << text;
    EXPECT_TRUE(refused.status().IsCorruption()) << text << ": " << refused.status().ToString();
    EXPECT_NE(refused.status().message().find(tmp.Sub("d/KVFS_STORE")), std::string::npos)
        << refused.status().ToString();
    EXPECT_EQ(ReadMarker(tmp.Sub("d")), text) << "left as it was";
  }
}

TEST(Stores, ASecondOpenOfTheSameDirIsBusy) {
  test::TempDir tmp;
  auto c =
      config::SingleEngineConfig(tmp.Sub("d"), engines::EngineNames()[0], engines::EngineNames());
  ASSERT_TRUE(c.ok());
  auto first = OpenStores(*c, {});
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  auto second = OpenStores(*c, {});
  ASSERT_FALSE(second.ok());
  EXPECT_TRUE(second.status().IsBusy()) << second.status().ToString();
  EXPECT_NE(second.status().message().find("pid"), std::string::npos) << second.status().ToString();
  EXPECT_OK(CloseStores(&*first));
}

TEST(Stores, ReadOnlyOpenOfAMissingDirIsNotFoundAndCreatesNothing) {
  test::TempDir tmp;
  auto c =
      config::SingleEngineConfig(tmp.Sub("d"), engines::EngineNames()[0], engines::EngineNames());
  ASSERT_TRUE(c.ok());
  OpenStoresOptions o;
  o.read_only = true;
  auto stores = OpenStores(*c, o);
  ASSERT_FALSE(stores.ok());
  EXPECT_TRUE(stores.status().IsNotFound()) << stores.status().ToString();
  EXPECT_FALSE(std::filesystem::exists(tmp.Sub("d")));
}

TEST(Stores, SyncAlwaysIsTheFileStoresJobAndSurvivesReopen) {
  test::TempDir tmp;
  auto c =
      config::SingleEngineConfig(tmp.Sub("d"), engines::EngineNames()[0], engines::EngineNames());
  ASSERT_TRUE(c.ok());
  c->stores[0].sync = config::SyncMode::kAlways;
  {
    auto stores = OpenStores(*c, {});
    ASSERT_TRUE(stores.ok()) << stores.status().ToString();
    FileStore* files = (*stores)[0].files.get();
    auto f = files->Create(kRootId, "f", 0644, kUser);
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE(files->Write(f->id, 0, "durable").ok());
    // Every mutation was synced: the log has nothing pending.
    const sync::WalStats wal = files->engine()->stats().wal;
    EXPECT_EQ(wal.durable_lsn, wal.last_lsn);
    EXPECT_OK(CloseStores(&*stores));
  }
  OpenStoresOptions ro;
  ro.read_only = true;
  auto again = OpenStores(*c, ro);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  auto attr = (*again)[0].files->Resolve("f");
  ASSERT_TRUE(attr.ok());
  EXPECT_EQ(*(*again)[0].files->Read(attr->id, 0, 100), "durable");
  EXPECT_OK(CloseStores(&*again));
}

// --- a mount by a user who is not root (daemon.h) ----------------------------------------

class UnprivilegedMountTest : public testing::Test {
 protected:
  void SetUp() override {
    struct stat st;
    if (::stat("/usr/bin/fusermount3", &st) != 0 || st.st_uid != 0 || !(st.st_mode & S_ISUID)) {
      GTEST_SKIP() << "no setuid-root /usr/bin/fusermount3 here";
    }
    paths_.dev_fuse = tmp_.Sub("fuse");
    WriteFileMode(paths_.dev_fuse, "", 0666);
    paths_.fuse_conf = tmp_.Sub("fuse.conf");
    WriteFileMode(paths_.fuse_conf, "# the Debian default\n#user_allow_other\n", 0644);
    mnt_ = tmp_.Sub("mnt");
    ASSERT_EQ(::mkdir(mnt_.c_str(), 0777), 0);
    ASSERT_EQ(::chmod(mnt_.c_str(), 0777), 0);
    ASSERT_EQ(::chmod(tmp_.path().c_str(), 0755), 0);  // uid 65534 may walk in (last test)
  }
  static void WriteFileMode(const std::string& path, const std::string& text, mode_t mode) {
    std::ofstream(path, std::ios::binary) << text;
    ASSERT_EQ(::chmod(path.c_str(), mode), 0) << path;
  }
  std::string Problem(const std::vector<std::string>& options = {}) const {
    return UnprivilegedMountProblem(65534, mnt_, options, paths_);
  }

  test::TempDir tmp_;
  UnprivilegedMountPaths paths_;
  std::string mnt_;
};

TEST_F(UnprivilegedMountTest, RootIsNeverStoppedAndAPlainMountPasses) {
  EXPECT_EQ(Problem(), "");
  UnprivilegedMountPaths nothing;
  nothing.dev_fuse = tmp_.Sub("nosuch");
  nothing.fusermount = tmp_.Sub("nosuch");
  nothing.fuse_conf = tmp_.Sub("nosuch");
  EXPECT_EQ(UnprivilegedMountProblem(0, tmp_.Sub("nosuch"), {"allow_other"}, nothing), "");
}

TEST_F(UnprivilegedMountTest, AMissingDeviceSaysWhereItComesFrom) {
  paths_.dev_fuse = tmp_.Sub("nosuch");
  const std::string msg = Problem();
  EXPECT_EQ(msg.find("there is no " + paths_.dev_fuse + ": the fuse kernel module is not loaded"),
            0u)
      << msg;
  EXPECT_NE(msg.find("--device /dev/fuse"), std::string::npos) << msg;
}

TEST_F(UnprivilegedMountTest, AFusermountThatIsNotSetuidRootIsNamedWithItsFix) {
  paths_.fusermount = tmp_.Sub("fusermount3");
  WriteFileMode(paths_.fusermount, "#!/bin/sh\n", 0755);
  const std::string msg = Problem();
  EXPECT_EQ(msg.find(paths_.fusermount + " is not setuid root (mode 0755, owner uid "), 0u) << msg;
  EXPECT_NE(msg.find("chmod u+s " + paths_.fusermount), std::string::npos) << msg;
}

TEST_F(UnprivilegedMountTest, NoFusermountAnywhereSaysToInstallIt) {
  paths_.fusermount = tmp_.Sub("nosuch");
  const std::string old_path = std::getenv("PATH") ? std::getenv("PATH") : "";
  ::setenv("PATH", tmp_.path().c_str(), 1);
  const std::string msg = Problem();
  ::setenv("PATH", old_path.c_str(), 1);
  EXPECT_EQ(msg.find("fusermount3 is not installed"), 0u) << msg;
  EXPECT_NE(msg.find("apt-get install fuse3"), std::string::npos) << msg;
}

TEST_F(UnprivilegedMountTest, AllowOtherNeedsAWholeUserAllowOtherLineInFuseConf) {
  EXPECT_EQ(Problem({"ro"}), "") << "no allow_other: fuse.conf does not matter";
  const std::string needs =
      "-o allow_other as uid 65534 needs the line user_allow_other in " + paths_.fuse_conf;
  std::string msg = Problem({"allow_other"});
  EXPECT_EQ(msg.find(needs), 0u) << msg;
  EXPECT_NE(msg.find("echo user_allow_other >> " + paths_.fuse_conf), std::string::npos) << msg;
  EXPECT_EQ(Problem({"allow_root"}).find("-o allow_root as uid 65534 needs"), 0u);
  struct Case {
    std::string text;
    bool allows;
  };
  const Case cases[] = {
      {"user_allow_other\n", true},
      {"# comment\n  user_allow_other\t # allowed\nmount_max = 1000\n", true},
      {"mount_max = 1000\nuser_allow_other", false},  // no newline: fusermount3 skips the line
      {"user_allow_others\n", false},
      {"#user_allow_other\n", false},
      {"user_allow_other = 1\n", false},
  };
  for (const Case& c : cases) {
    WriteFileMode(paths_.fuse_conf, c.text, 0644);
    EXPECT_EQ(Problem({"allow_other"}).empty(), c.allows) << c.text;
  }
  ASSERT_EQ(::unlink(paths_.fuse_conf.c_str()), 0);
  EXPECT_EQ(Problem({"allow_other"}).find(needs), 0u) << "no fuse.conf at all";
}

// Access to the device and the mountpoint is the user's own, so it is judged by a process that
// is that user (here uid 65534).
TEST_F(UnprivilegedMountTest, TheDeviceAndTheMountpointAreJudgedAsTheUser) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to become uid 65534";
  const auto as_nobody = [&](const UnprivilegedMountPaths& paths, const std::string& mnt) {
    int fds[2];
    EXPECT_EQ(::pipe(fds), 0);
    const pid_t child = ::fork();
    if (child == 0) {
      ::close(fds[0]);
      if (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0) {
        ::_exit(2);
      }
      const std::string msg = UnprivilegedMountProblem(::geteuid(), mnt, {}, paths);
      const bool written =
          ::write(fds[1], msg.data(), msg.size()) == static_cast<ssize_t>(msg.size());
      ::_exit(written ? 0 : 3);
    }
    ::close(fds[1]);
    std::string out;
    char buf[4096];
    for (ssize_t n; (n = ::read(fds[0], buf, sizeof(buf))) > 0;) out.append(buf, n);
    ::close(fds[0]);
    int status = 0;
    ::waitpid(child, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    return out;
  };
  EXPECT_EQ(as_nobody(paths_, mnt_), "");
  ASSERT_EQ(::chmod(paths_.dev_fuse.c_str(), 0600), 0);  // /dev/fuse as Debian ships it
  std::string msg = as_nobody(paths_, mnt_);
  EXPECT_EQ(msg.find(paths_.dev_fuse + " (mode 0600, owner uid 0) cannot be opened by uid 65534"),
            0u)
      << msg;
  EXPECT_NE(msg.find("chmod 0666 " + paths_.dev_fuse), std::string::npos) << msg;
  ASSERT_EQ(::chmod(paths_.dev_fuse.c_str(), 0666), 0);
  ASSERT_EQ(::chmod(mnt_.c_str(), 0755), 0);
  msg = as_nobody(paths_, mnt_);
  EXPECT_EQ(msg.find("mountpoint " + mnt_ + " is not writable by uid 65534"), 0u) << msg;
}

}  // namespace
}  // namespace kvfs::fusefs
