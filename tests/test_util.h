// Helpers shared by every kvfs test binary.
#pragma once

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <string>

#include "sync/file_system.h"
#include "sync/status.h"

#define ASSERT_OK(expr)                                               \
  do {                                                                \
    const ::kvfs::Status kvfs_s_ = ::kvfs::test::AsStatus(expr);      \
    ASSERT_TRUE(kvfs_s_.ok()) << #expr << ": " << kvfs_s_.ToString(); \
  } while (0)
#define EXPECT_OK(expr)                                               \
  do {                                                                \
    const ::kvfs::Status kvfs_s_ = ::kvfs::test::AsStatus(expr);      \
    EXPECT_TRUE(kvfs_s_.ok()) << #expr << ": " << kvfs_s_.ToString(); \
  } while (0)

// ASSERT_OK_AND_ASSIGN(auto file, fs.NewWritableFile(...));
#define ASSERT_OK_AND_ASSIGN(lhs, rexpr) \
  ASSERT_OK_AND_ASSIGN_IMPL(KVFS_CONCAT(kvfs_test_result_, __LINE__), lhs, rexpr)
// NOLINTBEGIN(bugprone-macro-parentheses): `tmp` and `lhs` are (or may be) declarations.
#define ASSERT_OK_AND_ASSIGN_IMPL(tmp, lhs, rexpr)                    \
  auto tmp = (rexpr);                                                 \
  ASSERT_TRUE(tmp.ok()) << #rexpr << ": " << tmp.status().ToString(); \
  lhs = std::move(tmp).value()
// NOLINTEND(bugprone-macro-parentheses)

namespace kvfs::test {

// Sets the process umask for one scope and puts the old one back, even when an ASSERT returns.
class ScopedUmask {
 public:
  explicit ScopedUmask(mode_t mask) : old_(::umask(mask)) {}
  ~ScopedUmask() { ::umask(old_); }
  ScopedUmask(const ScopedUmask&) = delete;
  ScopedUmask& operator=(const ScopedUmask&) = delete;

 private:
  const mode_t old_;
};

inline Status AsStatus(const Status& s) { return s; }
template <typename T>
Status AsStatus(const Result<T>& r) {
  return r.ok() ? Status::OK() : r.status();
}

// A private directory under $TMPDIR (or /tmp), removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// The seed for randomized tests: $KVFS_TEST_SEED if set (to replay a failure), else one drawn
// from the clock. Tests print it in their failure messages.
uint64_t TestSeed();

// Flips one byte of a file in place and syncs it (so the damage survives a modelled crash):
// how tests damage data on disk.
void FlipByte(sync::FileSystem* fs, const std::string& path, uint64_t offset);
// Overwrites [offset, offset + n) of a file with zeros and syncs it.
void ZeroRange(sync::FileSystem* fs, const std::string& path, uint64_t offset, uint64_t n);
// Replaces a file durably with its first `size` bytes.
void CutShort(sync::FileSystem* fs, const std::string& path, uint64_t size);

}  // namespace kvfs::test
