#include "engines/lsm/bloom.h"

#include <xxhash.h>

#include <algorithm>

namespace kvfs::engines::lsm {

namespace {

constexpr uint64_t kLineBytes = 64;
constexpr uint32_t kLineBits = kLineBytes * 8;  // 512: a probe takes 9 bits of the hash
constexpr uint8_t kBlockedFlag = 0x80;
constexpr uint32_t kProbeMultiplier = 0x9e3779b9;  // odd: each probe gets fresh high bits

uint32_t ProbesFor(uint32_t bits_per_key) {
  // k = bits_per_key * ln 2 minimises the false-positive rate (about 1% at 10 bits per key).
  return std::clamp<uint32_t>(bits_per_key * 69 / 100, 1, 30);
}

// The line holding a key's bits: the high half of the hash scaled onto [0, lines) by a
// multiply and shift, which needs no division (a 64-bit division per probe was a tenth of a
// compaction's time on some CPUs).
uint64_t LineOf(uint64_t h, uint64_t lines) { return ((h >> 32) * lines) >> 32; }

bool LegacyMayContain(std::string_view filter, uint64_t h, uint32_t k) {
  const uint64_t nbits = (filter.size() - 1) * 8;
  const uint64_t delta = (h >> 31) | (h << 33);
  for (uint32_t i = 0; i < k; ++i) {
    const uint64_t bit = h % nbits;
    if ((filter[bit / 8] & (1 << (bit % 8))) == 0) return false;
    h += delta;
  }
  return true;
}

}  // namespace

uint64_t BloomHash(std::string_view key) { return XXH3_64bits(key.data(), key.size()); }

std::string BloomBuilder::Finish() const {
  const uint32_t k = ProbesFor(bits_per_key_);
  const uint64_t bits = hashes_.size() * uint64_t{bits_per_key_};
  const uint64_t lines = std::max<uint64_t>(1, (bits + kLineBits - 1) / kLineBits);
  std::string filter(lines * kLineBytes, '\0');
  for (const uint64_t h : hashes_) {
    char* line = filter.data() + LineOf(h, lines) * kLineBytes;
    uint32_t a = static_cast<uint32_t>(h);
    for (uint32_t i = 0; i < k; ++i, a *= kProbeMultiplier) {
      const uint32_t bit = a >> 23;
      line[bit / 8] = static_cast<char>(line[bit / 8] | (1 << (bit % 8)));
    }
  }
  filter.push_back(static_cast<char>(kBlockedFlag | k));
  return filter;
}

bool BloomIsWellFormed(std::string_view filter) {
  if (filter.size() < 9) return false;
  const auto last = static_cast<unsigned char>(filter.back());
  const uint32_t k = last & ~kBlockedFlag;
  if (k < 1 || k > 30) return false;
  return (last & kBlockedFlag) == 0 || (filter.size() - 1) % kLineBytes == 0;
}

bool BloomMayContainHash(std::string_view filter, uint64_t h) {
  if (!BloomIsWellFormed(filter)) return true;
  const auto last = static_cast<unsigned char>(filter.back());
  const uint32_t k = last & ~kBlockedFlag;
  if ((last & kBlockedFlag) == 0) return LegacyMayContain(filter, h, k);
  const uint64_t lines = (filter.size() - 1) / kLineBytes;
  const char* line = filter.data() + LineOf(h, lines) * kLineBytes;
  uint32_t a = static_cast<uint32_t>(h);
  for (uint32_t i = 0; i < k; ++i, a *= kProbeMultiplier) {
    const uint32_t bit = a >> 23;
    if ((line[bit / 8] & (1 << (bit % 8))) == 0) return false;
  }
  return true;
}

bool BloomMayContain(std::string_view filter, std::string_view key) {
  return BloomMayContainHash(filter, BloomHash(key));
}

}  // namespace kvfs::engines::lsm
