// CRC32C (Castagnoli), the checksum of every kvfs on-disk record, computed by ISA-L
// (hardware-accelerated where the CPU has it). Values match the iSCSI / RFC 3720 definition:
// Value("123456789") == 0xE3069283.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace kvfs::sync::crc32c {

// The CRC32C of data[0, n) continuing from `crc` (the value of the bytes before it).
uint32_t Extend(uint32_t crc, const void* data, size_t n);

inline uint32_t Value(const void* data, size_t n) { return Extend(0, data, n); }
inline uint32_t Value(std::string_view s) { return Value(s.data(), s.size()); }

}  // namespace kvfs::sync::crc32c
