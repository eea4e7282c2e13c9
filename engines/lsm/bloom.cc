#include "engines/lsm/bloom.h"

#include <xxhash.h>

#include <algorithm>

namespace kvfs::engines::lsm {

uint64_t BloomHash(std::string_view key) { return XXH3_64bits(key.data(), key.size()); }

std::string BloomBuilder::Finish() const {
  // k = bits_per_key * ln 2 minimises the false-positive rate (about 1% at 10 bits per key).
  const uint32_t k = std::clamp<uint32_t>(bits_per_key_ * 69 / 100, 1, 30);
  const uint64_t bits = std::max<uint64_t>(64, hashes_.size() * uint64_t{bits_per_key_});
  const uint64_t bytes = (bits + 7) / 8;
  const uint64_t nbits = bytes * 8;
  std::string filter(bytes, '\0');
  for (uint64_t h : hashes_) {
    const uint64_t delta = (h >> 31) | (h << 33);
    for (uint32_t i = 0; i < k; ++i) {
      const uint64_t bit = h % nbits;
      filter[bit / 8] = static_cast<char>(filter[bit / 8] | (1 << (bit % 8)));
      h += delta;
    }
  }
  filter.push_back(static_cast<char>(k));
  return filter;
}

bool BloomIsWellFormed(std::string_view filter) {
  if (filter.size() < 9) return false;
  const auto k = static_cast<unsigned char>(filter.back());
  return k >= 1 && k <= 30;
}

bool BloomMayContainHash(std::string_view filter, uint64_t h) {
  if (!BloomIsWellFormed(filter)) return true;
  const uint32_t k = static_cast<unsigned char>(filter.back());
  const uint64_t nbits = (filter.size() - 1) * 8;
  const uint64_t delta = (h >> 31) | (h << 33);
  for (uint32_t i = 0; i < k; ++i) {
    const uint64_t bit = h % nbits;
    if ((filter[bit / 8] & (1 << (bit % 8))) == 0) return false;
    h += delta;
  }
  return true;
}

bool BloomMayContain(std::string_view filter, std::string_view key) {
  return BloomMayContainHash(filter, BloomHash(key));
}

}  // namespace kvfs::engines::lsm
