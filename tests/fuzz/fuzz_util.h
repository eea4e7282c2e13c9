// Helpers shared by the libFuzzer targets in this folder (see README.md here).
//
// A target may hold several files in one input: the pieces between kFileSeparator markers
// (each target's .dict names the marker, so the fuzzer inserts it). FUZZ_CHECK turns a broken
// property into a crash that libFuzzer reports with the input that caused it.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "sync/crc32c.h"
#include "sync/file_system.h"
#include "sync/status.h"
#include "sync/wal_format.h"

namespace kvfs::fuzz {

inline constexpr std::string_view kFileSeparator = "~~KVFS-FILE~~";

#define FUZZ_CHECK(cond, what)                                                             \
  do {                                                                                     \
    if (!(cond)) {                                                                         \
      std::fprintf(stderr, "%s:%d: property broken: %s (%s)\n", __FILE__, __LINE__, #cond, \
                   std::string(what).c_str());                                             \
      std::abort();                                                                        \
    }                                                                                      \
  } while (0)

inline std::string_view AsView(const uint8_t* data, size_t size) {
  return std::string_view(reinterpret_cast<const char*>(data), size);
}

// The pieces of `input` between separators: always at least one (possibly empty) piece.
inline std::vector<std::string_view> SplitFiles(std::string_view input) {
  std::vector<std::string_view> pieces;
  for (;;) {
    const size_t at = input.find(kFileSeparator);
    if (at == std::string_view::npos) break;
    pieces.push_back(input.substr(0, at));
    input.remove_prefix(at + kFileSeparator.size());
  }
  pieces.push_back(input);
  return pieces;
}

// Writes `bytes` as the whole file `path` (its directory must exist). Aborts on failure: the
// in-memory file system has no reason to fail here.
inline void WriteWholeFile(sync::FileSystem* fs, const std::string& path, std::string_view bytes) {
  auto file = fs->NewWritableFile(path, sync::CreateMode::kTruncate);
  FUZZ_CHECK(file.ok(), file.status().ToString());
  Status s = (*file)->Append(bytes);
  FUZZ_CHECK(s.ok(), s.ToString());
  s = (*file)->Close();
  FUZZ_CHECK(s.ok(), s.ToString());
}

// --- Checksum fix-ups ------------------------------------------------------------------------

inline void PutCrcAt(std::string* s, size_t at, uint32_t crc) {
  for (int i = 0; i < 4; ++i) (*s)[at + i] = static_cast<char>((crc >> (8 * i)) & 0xff);
}

// The write-batch entries in [begin, end) of `s` (engines/write_batch.h).
inline void FixBatchEntries(std::string* s, size_t begin, size_t end) {
  constexpr size_t kHeader = 13;  // crc(4) kind(1) key_length(4) value_length(4)
  size_t off = begin;
  while (end - off >= kHeader) {
    const uint64_t size = kHeader + uint64_t{sync::wal::DecodeFixed32(s->data() + off + 5)} +
                          sync::wal::DecodeFixed32(s->data() + off + 9);
    if (size > end - off) break;
    PutCrcAt(s, off, sync::crc32c::Value(s->data() + off + 4, size - 4));
    off += size;
  }
}

inline std::string FixBatch(std::string_view bytes) {
  std::string s(bytes);
  FixBatchEntries(&s, 0, s.size());
  return s;
}

// A log segment (sync/WAL_FORMAT.md): its header and its records up to the first zero-filled
// or overlong one; with `batches`, the write-batch entries in each payload first.
inline std::string FixWalSegment(std::string_view bytes, bool batches) {
  std::string s(bytes);
  if (s.size() < sync::wal::kSegmentHeaderSize) return s;
  PutCrcAt(&s, 60, sync::crc32c::Value(s.data(), 60));
  size_t off = sync::wal::kSegmentHeaderSize;
  while (s.size() - off >= sync::wal::kRecordHeaderSize) {
    const uint64_t length = sync::wal::DecodeFixed32(s.data() + off + 4);
    if (length > s.size() - off - sync::wal::kRecordHeaderSize) break;
    if (s.compare(off, 16, std::string(16, '\0')) == 0) break;
    const size_t payload = off + sync::wal::kRecordHeaderSize;
    if (batches) FixBatchEntries(&s, payload, payload + length);
    PutCrcAt(&s, off, sync::crc32c::Value(s.data() + off + 4, 12 + length));
    off = payload + length;
  }
  return s;
}

// A file whose last 4 bytes are the CRC32C of all before them (Bitcask hint and MANIFEST).
inline std::string FixTrailingCrc(std::string_view bytes) {
  std::string s(bytes);
  if (s.size() >= 4) PutCrcAt(&s, s.size() - 4, sync::crc32c::Value(s.data(), s.size() - 4));
  return s;
}

// A Bitcask merged data file (engines/bitcask/FORMAT.md): header, then record_crc(4) lsn(8)
// entry, each entry's CRC before the record's, which covers it.
inline std::string FixBitcaskData(std::string_view bytes) {
  std::string s(bytes);
  if (s.size() < 32) return s;
  PutCrcAt(&s, 24, sync::crc32c::Value(s.data(), 24));
  size_t pos = 32;
  while (s.size() - pos >= 12 + 13) {
    const size_t entry = pos + 12;
    const uint64_t size = 13 + uint64_t{sync::wal::DecodeFixed32(s.data() + entry + 5)} +
                          sync::wal::DecodeFixed32(s.data() + entry + 9);
    if (size > s.size() - entry) break;
    FixBatchEntries(&s, entry, entry + size);
    PutCrcAt(&s, pos, sync::crc32c::Value(s.data() + pos + 4, 12));
    pos = entry + size;
  }
  return s;
}

inline std::string JoinFiles(const std::vector<std::string>& files) {
  std::string out;
  for (size_t i = 0; i < files.size(); ++i) {
    if (i > 0) out.append(kFileSeparator);
    out.append(files[i]);
  }
  return out;
}

}  // namespace kvfs::fuzz
