// CompareKeys: the LSM engine's key order, bytewise (std::string_view::compare's), inlined.
//
// Keys are short, so the cost of a libc memcmp call per comparison dominates seeks and merges
// (docs/decisions.md, "Measured small choices"). Comparing eight bytes at a time as big-endian
// words gives the same order without the call.
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace kvfs::engines::lsm {

// <0, 0 or >0 as a orders before, with or after b (unsigned bytes; a prefix first).
inline int CompareKeys(std::string_view a, std::string_view b) {
  const size_t n = std::min(a.size(), b.size());
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t x, y;
    std::memcpy(&x, a.data() + i, 8);
    std::memcpy(&y, b.data() + i, 8);
    if (x != y) {
      if constexpr (std::endian::native == std::endian::little) {
        x = __builtin_bswap64(x);
        y = __builtin_bswap64(y);
      }
      return x < y ? -1 : 1;
    }
  }
  for (; i < n; ++i) {
    const auto p = static_cast<unsigned char>(a[i]);
    const auto q = static_cast<unsigned char>(b[i]);
    if (p != q) return p < q ? -1 : 1;
  }
  return a.size() < b.size() ? -1 : (a.size() > b.size() ? 1 : 0);
}

}  // namespace kvfs::engines::lsm
