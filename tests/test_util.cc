#include "tests/test_util.h"

#include <chrono>
#include <cstdlib>
#include <filesystem>

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

}  // namespace kvfs::test
