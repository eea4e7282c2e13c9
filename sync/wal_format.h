// The on-disk format of the write-ahead log: constants and the encoders/decoders shared by the
// writer (wal.cc) and the reader (wal_reader.cc). The format is specified in WAL_FORMAT.md,
// beside this file; keep the two in step.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kvfs::sync::wal {

inline constexpr char kSegmentMagic[8] = {'K', 'V', 'F', 'S', 'W', 'A', 'L', '\0'};
inline constexpr uint32_t kFormatVersion = 1;
inline constexpr size_t kSegmentHeaderSize = 64;
inline constexpr size_t kRecordHeaderSize = 16;  // crc32c(4) length(4) lsn(8)
// Upper bound on one record's payload; the reader also refuses any length past the end of the
// segment, so a corrupt length never causes a large allocation.
inline constexpr uint64_t kMaxRecordPayload = uint64_t{1} << 30;
// The most the writer puts in one write, unless a single record is larger (then that record
// alone). A torn last write can leave at most this many bytes after the last valid record, so
// the reader takes more non-zero bytes than this for damage, not for a torn tail.
inline constexpr uint64_t kMaxWriteBytes = uint64_t{4} << 20;
inline constexpr const char* kSegmentSuffix = ".wal";

struct SegmentHeader {
  uint64_t segment_number = 0;
  uint64_t first_lsn = 0;  // LSN of the first record in this segment (or of the next append)
  // Where the previous segment's records end: a crash may have left a torn tail after them,
  // which a reader must skip rather than take for corruption. 0/0 for the first segment ever.
  uint64_t prev_segment_number = 0;
  uint64_t prev_segment_end = 0;
  // The size the segment was made (zero-filled and synced) before its header was written; 0
  // when unknown (space not reserved in advance, or a log written before this field). A
  // zero-filled segment never shrinks, so a newest segment shorter than this was cut short.
  uint64_t capacity = 0;
};

std::string EncodeSegmentHeader(const SegmentHeader& h);
// nullopt if the bytes are not a valid header (short, wrong magic or version, bad CRC).
std::optional<SegmentHeader> DecodeSegmentHeader(std::string_view bytes);

// The failure note (WAL_FORMAT.md, "Failure note"): written in the log directory when the log
// fails on a sync error, removed by the next open once the failed segment is sealed. Records
// from `first_unacknowledged_lsn` on in segment `segment` were never acknowledged durable,
// whatever a later read of them shows, so recovery ends the log before them.
inline constexpr char kFailureNoteName[] = "FAILED";
struct FailureNote {
  uint64_t segment = 0;
  uint64_t first_unacknowledged_lsn = 0;
  std::string error;  // what failed, for the operator
};
// One framed record: the LSN field holds first_unacknowledged_lsn, the payload the segment
// number (8 bytes) and the error text.
std::string EncodeFailureNote(const FailureNote& note);
// nullopt unless `bytes` is exactly one valid note.
std::optional<FailureNote> DecodeFailureNote(std::string_view bytes);

// Appends one framed record to `out`.
void AppendRecord(std::string* out, uint64_t lsn, std::string_view payload);
inline uint64_t RecordSize(size_t payload_size) { return kRecordHeaderSize + payload_size; }

struct RecordHeader {
  uint32_t crc = 0;
  uint32_t length = 0;
  uint64_t lsn = 0;
};
RecordHeader DecodeRecordHeader(const char* p);  // p has kRecordHeaderSize bytes
// True if the record's CRC covers its length, LSN and payload correctly.
bool RecordChecksumMatches(const RecordHeader& h, const char* header_bytes,
                           std::string_view payload);

// "<dir>/<number, 16 decimal digits>.wal", and its inverse (nullopt if not a segment name).
std::string SegmentFileName(uint64_t segment_number);
std::optional<uint64_t> ParseSegmentFileName(std::string_view name);

// Little-endian fixed-width helpers, inline: every record and batch entry is encoded with them.
inline void EncodeFixed32(char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
inline void EncodeFixed64(char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
inline void PutFixed32(std::string* out, uint32_t v) {
  char b[4];
  EncodeFixed32(b, v);
  out->append(b, 4);
}
inline void PutFixed64(std::string* out, uint64_t v) {
  char b[8];
  EncodeFixed64(b, v);
  out->append(b, 8);
}
inline uint32_t DecodeFixed32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) {
    v |= static_cast<uint32_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  }
  return v;
}
inline uint64_t DecodeFixed64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) {
    v |= static_cast<uint64_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  }
  return v;
}

}  // namespace kvfs::sync::wal
