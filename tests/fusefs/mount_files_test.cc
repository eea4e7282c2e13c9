// Every file type and every call a local file system answers (issue 21), through a real mount,
// with the kernel as the oracle: each script of system calls runs once in a plain directory on
// the local disk (the test's private directory, ext4 here) and once in the mount, and what each
// call returned (success or the errno's name) and what stat then showed (type, mode, nlink,
// rdev, whether ctime moved) must be the same, line for line. Real tools (find, cp -a, tar,
// rsync -a) are compared the same way, and everything is read again after a remount.
//
// Every engine (engines::EngineNames()); skipped (loudly) only without /dev/fuse or root.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engines/engine.h"
#include "tests/fusefs/mount_fixture.h"

namespace kvfs::mount_test {
namespace {

std::string ErrnoName(int e) {
  if (e == 0) return "success";
  const char* n = ::strerrorname_np(e);
  return n != nullptr ? n : "errno " + std::to_string(e);
}

// A script's record of what the calls did, one line each.
class Log {
 public:
  explicit Log(std::string base) : base_(std::move(base)) {}
  std::string P(const std::string& rel) const { return rel == "." ? base_ : base_ + "/" + rel; }
  // "label: success" or "label: ENOENT".
  void Call(const std::string& label, long rc) {
    out_ += label + ": " + (rc == -1 ? ErrnoName(errno) : std::string("success")) + "\n";
  }
  // The link count of `rel` (lstat), or the errno.
  void Nlink(const std::string& rel) {
    struct stat st;
    if (::lstat(P(rel).c_str(), &st) != 0) return Call("nlink " + rel, -1);
    out_ += "nlink " + rel + ": " + std::to_string(st.st_nlink) + "\n";
  }
  void Text(const std::string& line) { out_ += line + "\n"; }
  const std::string& text() const { return out_; }

 private:
  std::string base_;
  std::string out_;
};

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  for (size_t nl; (nl = text.find('\n', start)) != std::string::npos; start = nl + 1) {
    lines.push_back(text.substr(start, nl - start));
  }
  if (start < text.size()) lines.push_back(text.substr(start));
  return lines;
}

long Touch(const std::string& path) {
  const int fd = ::open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) return -1;
  ::close(fd);
  return 0;
}

long Exchange(const std::string& a, const std::string& b) {
  return ::renameat2(AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), RENAME_EXCHANGE);
}

// --- scripts ---------------------------------------------------------------------------------

// A directory's link count through mkdir, rmdir and rename within and across directories.
void DirectoryLinks(Log* l) {
  l->Call("mkdir d", ::mkdir(l->P("d").c_str(), 0755));
  l->Nlink(".");
  l->Nlink("d");
  for (const char* n : {"d/a", "d/b", "d/c"})
    l->Call(std::string("mkdir ") + n, ::mkdir(l->P(n).c_str(), 0755));
  l->Call("create d/f", Touch(l->P("d/f")));
  l->Call("symlink d/l", ::symlink("f", l->P("d/l").c_str()));
  l->Nlink("d");
  l->Nlink("d/f");
  l->Call("mkdir e", ::mkdir(l->P("e").c_str(), 0755));
  l->Call("rename d/a e/a", ::rename(l->P("d/a").c_str(), l->P("e/a").c_str()));
  for (const char* n : {".", "d", "e", "e/a"}) l->Nlink(n);
  l->Call("rename d/b d/b2", ::rename(l->P("d/b").c_str(), l->P("d/b2").c_str()));
  l->Nlink("d");
  l->Call("mkdir e/empty", ::mkdir(l->P("e/empty").c_str(), 0755));
  l->Call("rename d/b2 over e/empty", ::rename(l->P("d/b2").c_str(), l->P("e/empty").c_str()));
  for (const char* n : {"d", "e"}) l->Nlink(n);
  l->Call("mkdir d/x", ::mkdir(l->P("d/x").c_str(), 0755));
  l->Call("rename d/c over d/x", ::rename(l->P("d/c").c_str(), l->P("d/x").c_str()));
  l->Nlink("d");
  l->Call("exchange d/f e/empty", Exchange(l->P("d/f"), l->P("e/empty")));
  for (const char* n : {"d", "e", "d/f", "e/empty"}) l->Nlink(n);
  l->Call("exchange d/x e/a", Exchange(l->P("d/x"), l->P("e/a")));
  for (const char* n : {"d", "e"}) l->Nlink(n);
  l->Call("mkdir e/a/deep", ::mkdir(l->P("e/a/deep").c_str(), 0755));
  l->Call("rename e/a d/moved", ::rename(l->P("e/a").c_str(), l->P("d/moved").c_str()));
  for (const char* n : {"d", "e", "d/moved"}) l->Nlink(n);
  l->Call("rmdir d (not empty)", ::rmdir(l->P("d").c_str()));
  l->Call("rmdir d/moved/deep", ::rmdir(l->P("d/moved/deep").c_str()));
  l->Call("rmdir d/x", ::rmdir(l->P("d/x").c_str()));
  for (const char* n : {".", "d", "e", "d/moved"}) l->Nlink(n);
}

// The link counts DirectoryLinks leaves, read again (after a remount, in the mount).
void DirectoryLinksAfter(Log* l) {
  for (const char* n : {".", "d", "e", "d/f", "e/empty", "d/moved"}) l->Nlink(n);
}

// --- the fixture -----------------------------------------------------------------------------

class MountFilesTest : public testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (const std::string why = FuseSkipReason(); !why.empty()) {
      GTEST_SKIP() << "MOUNT TESTS SKIPPED: " << why;
    }
    MountOptions o;
    o.engine = GetParam();
    m_ = std::make_unique<KvfsMount>(o);
    ASSERT_EQ(::mkdir(m_->Sub("local").c_str(), 0755), 0);
    ASSERT_TRUE(m_->Mount());
  }

  // Runs `script` in a fresh directory `name` on the local disk and in the mount, and expects
  // the same lines from both.
  void Compare(const std::string& name, const std::function<void(Log*)>& script) {
    ASSERT_EQ(::mkdir(Local(name).c_str(), 0755), 0);
    ASSERT_EQ(::mkdir(Mounted(name).c_str(), 0755), 0);
    Again(name, script);
  }
  // The same in the directories Compare made (a script reading what an earlier one left).
  void Again(const std::string& name, const std::function<void(Log*)>& script) {
    Log local(Local(name)), mounted(Mounted(name));
    script(&local);
    script(&mounted);
    EXPECT_EQ(Lines(mounted.text()), Lines(local.text()))
        << "through the mount (left) vs the local disk (right)";
  }
  std::string Local(const std::string& name) const { return m_->Sub("local/" + name); }
  std::string Mounted(const std::string& name) const { return m_->At(name); }
  KvfsMount& m() { return *m_; }

  std::unique_ptr<KvfsMount> m_;
};

TEST_P(MountFilesTest, DirectoryLinkCountsAreExt4sThroughMkdirRmdirAndRenames) {
  Compare("links", DirectoryLinks);
  // find(1) skips the entries of a directory whose link count says it has no subdirectories
  // left to visit: a count too low hides directories from it.
  const CmdResult local = Sh("cd " + Quote(Local("links")) + " && find . -type d | LC_ALL=C sort");
  const CmdResult mounted =
      Sh("cd " + Quote(Mounted("links")) + " && find . -type d | LC_ALL=C sort");
  EXPECT_EQ(mounted.output, local.output);
  ASSERT_TRUE(m().Remount());
  Again("links", DirectoryLinksAfter);
  ASSERT_TRUE(m().Unmount());
  const CmdResult check =
      Exec({KvfsBinary(), "check", "--engine", GetParam(), "--data", m().data()});
  EXPECT_EQ(check.exit_code, 0) << check.Describe();
}

INSTANTIATE_TEST_SUITE_P(Engines, MountFilesTest, testing::ValuesIn(engines::EngineNames()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace kvfs::mount_test
