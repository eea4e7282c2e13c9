#include "engines/lsm/format.h"

#include <cstdio>

namespace kvfs::engines::lsm {
namespace {

std::string NumberedName(uint64_t number, const char* suffix) {
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%06llu%s", static_cast<unsigned long long>(number), suffix);
  return buf;
}

std::optional<uint64_t> ParseNumbered(std::string_view name, std::string_view suffix) {
  if (name.size() <= suffix.size() || !name.ends_with(suffix)) return std::nullopt;
  name.remove_suffix(suffix.size());
  if (name.size() < 6 || name.size() > 19) return std::nullopt;
  uint64_t n = 0;
  for (char c : name) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  if (NumberedName(n, "") != name) return std::nullopt;  // one spelling per number
  return n;
}

}  // namespace

std::string TableFileName(uint64_t number) { return NumberedName(number, kTableSuffix); }
std::string BlobFileName(uint64_t number) { return NumberedName(number, kBlobSuffix); }
std::optional<uint64_t> ParseTableFileName(std::string_view name) {
  return ParseNumbered(name, kTableSuffix);
}
std::optional<uint64_t> ParseBlobFileName(std::string_view name) {
  return ParseNumbered(name, kBlobSuffix);
}

}  // namespace kvfs::engines::lsm
