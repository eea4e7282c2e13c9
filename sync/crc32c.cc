#include "sync/crc32c.h"

#include <isa-l/crc.h>

#include <climits>

namespace kvfs::sync::crc32c {

uint32_t Extend(uint32_t crc, const void* data, size_t n) {
  // ISA-L keeps the CRC register un-inverted between calls: the standard value is
  // ~crc32_iscsi(buf, len, ~init). Its length is an int, so feed large buffers in pieces.
  auto* p = static_cast<unsigned char*>(const_cast<void*>(data));
  uint32_t reg = ~crc;
  while (n > 0) {
    const size_t piece = n > static_cast<size_t>(INT_MAX) ? static_cast<size_t>(1) << 30 : n;
    reg = crc32_iscsi(p, static_cast<int>(piece), reg);
    p += piece;
    n -= piece;
  }
  return ~reg;
}

}  // namespace kvfs::sync::crc32c
