// Bloom filter over a table's keys (one filter per table), hashed with xxHash (XXH3, 64 bits).
//
// Encoding (FORMAT.md, "Filter block"), told apart by the last byte:
// - blocked (what BloomBuilder writes): 64-byte lines (at least one), then `0x80 | k`. A key
//   with hash h sets k bits in one line, line ((h >> 32) * lines) >> 32; probe i is bit
//   (a_i >> 23) of it, a_0 the low 32 bits of h and a_(i+1) = a_i * 0x9e3779b9 mod 2^32. A
//   lookup touches one cache line and divides nothing.
// - legacy (tables of format version 1): the bit array (a whole number of bytes, at least 8),
//   then k (1..30). Probe i tests bit (h + i * delta) mod nbits, delta = h rotated by 31 bits.
//
// Thread safety: a builder belongs to one thread; MayContain is a pure function.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kvfs::engines::lsm {

uint64_t BloomHash(std::string_view key);

class BloomBuilder {
 public:
  explicit BloomBuilder(uint32_t bits_per_key) : bits_per_key_(bits_per_key) {}
  void AddKey(std::string_view key) { hashes_.push_back(BloomHash(key)); }
  std::string Finish() const;

 private:
  uint32_t bits_per_key_;
  std::vector<uint64_t> hashes_;
};

// False only if `key` was certainly not added. A filter with an impossible probe count (which a
// valid table never has: the table reader rejects it at open) answers true.
bool BloomMayContain(std::string_view filter, std::string_view key);
bool BloomMayContainHash(std::string_view filter, uint64_t hash);

// True if the encoding is well formed (size and probe count).
bool BloomIsWellFormed(std::string_view filter);

}  // namespace kvfs::engines::lsm
