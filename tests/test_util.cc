#include "tests/test_util.h"

#include <chrono>
#include <cstdlib>
#include <filesystem>

#include "sync/durable.h"

namespace kvfs::test {

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/kvfs-test-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp " << tmpl << " failed";
  }
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

uint64_t TestSeed() {
  if (const char* s = std::getenv("KVFS_TEST_SEED"); s && *s) return std::strtoull(s, nullptr, 0);
  return static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
}

void FlipByte(sync::FileSystem* fs, const std::string& path, uint64_t offset) {
  auto f = fs->NewRandomRWFile(path, false);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  char c;
  ASSERT_OK((*f)->Read(offset, 1, &c));
  c ^= 0x5a;
  ASSERT_OK((*f)->Write(offset, std::string_view(&c, 1)));
  ASSERT_OK((*f)->Sync());
}

void ZeroRange(sync::FileSystem* fs, const std::string& path, uint64_t offset, uint64_t n) {
  auto f = fs->NewRandomRWFile(path, false);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  ASSERT_OK((*f)->Write(offset, std::string(n, '\0')));
  ASSERT_OK((*f)->Sync());
}

void CutShort(sync::FileSystem* fs, const std::string& path, uint64_t size) {
  auto bytes = sync::ReadFileToString(fs, path);
  ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
  bytes->resize(size);
  ASSERT_OK(sync::WriteFileAtomically(fs, path, *bytes));
}

}  // namespace kvfs::test
