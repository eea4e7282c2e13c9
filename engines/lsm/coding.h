// Little-endian fixed-width and varint encoders/decoders shared by the LSM engine's file formats
// (tables, blob files, MANIFEST). Decoders take a cursor (a string_view they advance) and return
// false instead of reading past its end, so a parser of untrusted bytes never overruns.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "sync/wal_format.h"

namespace kvfs::engines::lsm {

// The fixed-width ones are the WAL's, so every format of the store encodes integers one way.
using sync::wal::DecodeFixed32;
using sync::wal::DecodeFixed64;
using sync::wal::EncodeFixed32;
using sync::wal::EncodeFixed64;
using sync::wal::PutFixed32;
using sync::wal::PutFixed64;

inline void PutVarint64(std::string* out, uint64_t v) {
  char b[10];
  int n = 0;
  while (v >= 0x80) {
    b[n++] = static_cast<char>(v | 0x80);
    v >>= 7;
  }
  b[n++] = static_cast<char>(v);
  out->append(b, n);
}

inline void PutLengthPrefixed(std::string* out, std::string_view s) {
  PutVarint64(out, s.size());
  out->append(s);
}

// At most 10 bytes; false if `in` ends first or the encoding is longer than 64 bits.
inline bool GetVarint64(std::string_view* in, uint64_t* v) {
  // Most varints in a table (key lengths, value sizes) are one byte.
  if (!in->empty() && static_cast<unsigned char>(in->front()) < 0x80) {
    *v = static_cast<unsigned char>(in->front());
    in->remove_prefix(1);
    return true;
  }
  uint64_t result = 0;
  for (int shift = 0, i = 0; i < 10 && i < static_cast<int>(in->size()); ++i, shift += 7) {
    const auto byte = static_cast<unsigned char>((*in)[i]);
    if (shift == 63 && byte > 1) return false;
    result |= uint64_t{byte & 0x7fu} << shift;
    if ((byte & 0x80) == 0) {
      in->remove_prefix(i + 1);
      *v = result;
      return true;
    }
  }
  return false;
}

inline bool GetVarint32(std::string_view* in, uint32_t* v) {
  uint64_t x;
  if (!GetVarint64(in, &x) || x > UINT32_MAX) return false;
  *v = static_cast<uint32_t>(x);
  return true;
}

inline bool GetFixed32(std::string_view* in, uint32_t* v) {
  if (in->size() < 4) return false;
  *v = DecodeFixed32(in->data());
  in->remove_prefix(4);
  return true;
}

inline bool GetFixed64(std::string_view* in, uint64_t* v) {
  if (in->size() < 8) return false;
  *v = DecodeFixed64(in->data());
  in->remove_prefix(8);
  return true;
}

// The view stays inside the input: a garbage length fails instead of allocating.
inline bool GetLengthPrefixed(std::string_view* in, std::string_view* s) {
  uint64_t n;
  if (!GetVarint64(in, &n) || n > in->size()) return false;
  *s = in->substr(0, n);
  in->remove_prefix(n);
  return true;
}

}  // namespace kvfs::engines::lsm
