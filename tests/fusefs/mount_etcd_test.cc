// The kvfs daemon over the etcd engine, mounted for real on a 3-member etcd cluster on loopback
// (tests/engines/etcd_cluster.h): files written through the mount live in the cluster, so a
// daemon started on another (empty) data directory with the same prefix serves them; and a
// second daemon mounted beside the first reads a file the first wrote and closed.
// Needs root, /dev/fuse and etcd (skipped, saying which is missing, otherwise).
#include <gtest/gtest.h>

#include <string>

#include "tests/engines/etcd_cluster.h"
#include "tests/fusefs/mount_fixture.h"
#include "tests/test_util.h"

namespace kvfs::mount_test {
namespace {

std::string EtcdConfig(const std::string& data, const std::string& endpoints,
                       const std::string& prefix) {
  return "[[store]]\nname = \"e\"\nengine = \"etcd\"\ndata_dir = \"" + data +
         "\"\n[store.options]\nendpoints = \"" + endpoints + "\"\nprefix = \"" + prefix +
         "\"\ntimeout_ms = \"5000\"\n";
}

class MountEtcdTest : public testing::Test {
 protected:
  void SetUp() override {
    if (const std::string why = FuseSkipReason(); !why.empty()) GTEST_SKIP() << why;
    if (test::EtcdBinary().empty()) {
      GTEST_SKIP() << "no etcd binary on PATH: install etcd-server (scripts/setup-deps does)";
    }
    ASSERT_OK(cluster_.Start());
  }

  // A mount of the store under `prefix`, with its own private (empty) data directory.
  std::unique_ptr<KvfsMount> NewMount(const std::string& prefix,
                                      std::vector<std::string> fuse_options = {}) {
    MountOptions o;
    o.pass_data = false;
    o.fuse_options = std::move(fuse_options);
    auto m = std::make_unique<KvfsMount>(o);
    m->options().config = m->Sub("kvfs.toml");
    EXPECT_TRUE(
        WriteFile(m->options().config, EtcdConfig(m->data(), cluster_.endpoints(), prefix)));
    return m;
  }

  test::EtcdCluster cluster_;
};

TEST_F(MountEtcdTest, FilesLiveInTheClusterAndAnotherDataDirectoryServesThem) {
  auto a = NewMount("tree/");
  ASSERT_TRUE(a->Mount());
  const std::string src = a->Sub("src");
  const CmdResult made =
      Sh("set -e; cd " + Quote(a->At("e")) +
         "; mkdir -p d/sub; echo hello > d/sub/small; head -c 3000000 /dev/urandom > " +
         Quote(src) + "; cp " + Quote(src) +
         " big; mv d/sub/small d/moved; ln -s moved d/link; echo gone > x;"
         " rm x; truncate -s 10000 big2; sync");
  ASSERT_EQ(made.exit_code, 0) << made.Describe();
  ASSERT_TRUE(a->Unmount());

  auto b = NewMount("tree/");  // another data directory: nothing local carries over
  ASSERT_TRUE(b->Mount());
  const CmdResult seen = Sh("set -e; cd " + Quote(b->At("e")) + "; cmp big " + Quote(src) +
                            "; test \"$(cat d/moved)\" = hello; test \"$(cat d/link)\" = hello;"
                            " test ! -e x; test ! -e d/sub/small; test $(stat -c %s big2) = 10000;"
                            " ls -a d/sub | wc -l");
  ASSERT_EQ(seen.exit_code, 0) << seen.Describe();
  EXPECT_EQ(seen.output, "2\n") << "d/sub should hold only . and ..";
  ASSERT_TRUE(b->Unmount());

  auto other = NewMount("other/");  // another prefix: another store
  ASSERT_TRUE(other->Mount());
  const CmdResult empty = Sh("ls -A " + Quote(other->At("e")) + " | wc -l");
  EXPECT_EQ(empty.output, "0\n") << empty.Describe();
  ASSERT_TRUE(other->Unmount());
}

// Close-to-open between two daemons on one store: a file written and closed through one mount
// is read whole through the other, which had not looked it up before. (Only one daemon
// writes: the file layer allocates file ids and caches nodes as the store's only writer.)
TEST_F(MountEtcdTest, ASecondDaemonReadsAFileTheFirstWroteAndClosed) {
  auto writer = NewMount("shared/");
  auto reader = NewMount("shared/", {"kvfs_timeout=0"});
  ASSERT_TRUE(writer->Mount());
  ASSERT_TRUE(reader->Mount());
  const std::string src = writer->Sub("src");
  const CmdResult wrote =
      Sh("set -e; head -c 200000 /dev/urandom > " + Quote(src) + "; mkdir " +
         Quote(writer->At("e/dir")) + "; cp " + Quote(src) + " " + Quote(writer->At("e/dir/f")));
  ASSERT_EQ(wrote.exit_code, 0) << wrote.Describe();
  const CmdResult read = Sh("cmp " + Quote(src) + " " + Quote(reader->At("e/dir/f")));
  EXPECT_EQ(read.exit_code, 0) << read.Describe();
  ASSERT_TRUE(reader->Unmount());
  ASSERT_TRUE(writer->Unmount());
}

// Faults under a mount: with the member it was talking to killed, the daemon's writes go on
// (the engine fails over); a file fsynced, then the daemon SIGKILLed, is there whole when the
// store is mounted again (from another data directory, with the member back): every
// acknowledged write was already on a quorum of members.
TEST_F(MountEtcdTest, AMemberKilledThenTheDaemonKilledLosesNothingSynced) {
  auto a = NewMount("crash/");
  ASSERT_TRUE(a->Mount());
  const std::string src = a->Sub("src");
  ASSERT_EQ(Sh("head -c 500000 /dev/urandom > " + Quote(src)).exit_code, 0);
  ASSERT_EQ(Sh("cp " + Quote(src) + " " + Quote(a->At("e/before"))).exit_code, 0);
  cluster_.Kill(0);
  const CmdResult wrote =
      Sh("set -e; cp " + Quote(src) + " " + Quote(a->At("e/after")) + "; mkdir " +
         Quote(a->At("e/dir")) + "; sync -f " + Quote(a->At("e/after")));
  ASSERT_EQ(wrote.exit_code, 0) << wrote.Describe();
  ASSERT_TRUE(a->KillDaemon());
  ASSERT_OK(cluster_.Restart(0));
  auto b = NewMount("crash/");
  ASSERT_TRUE(b->Mount());
  const CmdResult seen =
      Sh("set -e; cmp " + Quote(src) + " " + Quote(b->At("e/before")) + "; cmp " + Quote(src) +
         " " + Quote(b->At("e/after")) + "; test -d " + Quote(b->At("e/dir")));
  EXPECT_EQ(seen.exit_code, 0) << seen.Describe();
  ASSERT_TRUE(b->Unmount());
}

}  // namespace
}  // namespace kvfs::mount_test
