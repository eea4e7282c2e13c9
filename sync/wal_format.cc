#include "sync/wal_format.h"

#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "sync/crc32c.h"

namespace kvfs::sync::wal {

// Header layout (64 bytes): magic(8) version(4) header_size(4) segment_number(8) first_lsn(8)
// prev_segment_number(8) prev_segment_end(8) capacity(8) reserved zeros(4) crc32c of bytes
// [0,60) (4). Capacity was reserved zeros before it was recorded: 0 reads as "unknown".
std::string EncodeSegmentHeader(const SegmentHeader& h) {
  std::string out(kSegmentMagic, sizeof(kSegmentMagic));
  PutFixed32(&out, kFormatVersion);
  PutFixed32(&out, static_cast<uint32_t>(kSegmentHeaderSize));
  PutFixed64(&out, h.segment_number);
  PutFixed64(&out, h.first_lsn);
  PutFixed64(&out, h.prev_segment_number);
  PutFixed64(&out, h.prev_segment_end);
  PutFixed64(&out, h.capacity);
  out.append(4, '\0');
  PutFixed32(&out, crc32c::Value(out.data(), out.size()));
  return out;
}

std::optional<SegmentHeader> DecodeSegmentHeader(std::string_view bytes) {
  if (bytes.size() < kSegmentHeaderSize) return std::nullopt;
  const char* p = bytes.data();
  if (std::memcmp(p, kSegmentMagic, sizeof(kSegmentMagic)) != 0) return std::nullopt;
  if (DecodeFixed32(p + 60) != crc32c::Value(p, 60)) return std::nullopt;
  if (DecodeFixed32(p + 8) != kFormatVersion) return std::nullopt;
  if (DecodeFixed32(p + 12) != kSegmentHeaderSize) return std::nullopt;
  SegmentHeader h;
  h.segment_number = DecodeFixed64(p + 16);
  h.first_lsn = DecodeFixed64(p + 24);
  h.prev_segment_number = DecodeFixed64(p + 32);
  h.prev_segment_end = DecodeFixed64(p + 40);
  h.capacity = DecodeFixed64(p + 48);
  return h;
}

// Record layout: crc32c(4) of bytes [4, 16 + length), length(4), lsn(8), payload.
void AppendRecord(std::string* out, uint64_t lsn, std::string_view payload) {
  const size_t start = out->size();
  char header[kRecordHeaderSize];
  EncodeFixed32(header, 0);  // CRC, filled in below
  EncodeFixed32(header + 4, static_cast<uint32_t>(payload.size()));
  EncodeFixed64(header + 8, lsn);
  out->append(header, kRecordHeaderSize);
  out->append(payload);
  const uint32_t crc = crc32c::Value(out->data() + start + 4, out->size() - start - 4);
  EncodeFixed32(out->data() + start, crc);
}

std::string EncodeFailureNote(const FailureNote& note) {
  std::string payload;
  PutFixed64(&payload, note.segment);
  payload += note.error;
  std::string out;
  AppendRecord(&out, note.first_unacknowledged_lsn, payload);
  return out;
}

std::optional<FailureNote> DecodeFailureNote(std::string_view bytes) {
  if (bytes.size() < kRecordHeaderSize + 8) return std::nullopt;
  const RecordHeader h = DecodeRecordHeader(bytes.data());
  const std::string_view payload = bytes.substr(kRecordHeaderSize);
  if (h.length != payload.size() || h.lsn == 0) return std::nullopt;
  if (!RecordChecksumMatches(h, bytes.data(), payload)) return std::nullopt;
  return FailureNote{DecodeFixed64(payload.data()), h.lsn, std::string(payload.substr(8))};
}

RecordHeader DecodeRecordHeader(const char* p) {
  return RecordHeader{DecodeFixed32(p), DecodeFixed32(p + 4), DecodeFixed64(p + 8)};
}

bool RecordChecksumMatches(const RecordHeader& h, const char* header_bytes,
                           std::string_view payload) {
  uint32_t crc = crc32c::Value(header_bytes + 4, kRecordHeaderSize - 4);
  crc = crc32c::Extend(crc, payload.data(), payload.size());
  return crc == h.crc;
}

std::string SegmentFileName(uint64_t segment_number) {
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%016" PRIu64 "%s", segment_number, kSegmentSuffix);
  return buf;
}

std::optional<uint64_t> ParseSegmentFileName(std::string_view name) {
  const std::string_view suffix(kSegmentSuffix);
  if (name.size() != 16 + suffix.size() || name.substr(16) != suffix) return std::nullopt;
  uint64_t n = 0;
  for (char c : name.substr(0, 16)) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  return n;
}

}  // namespace kvfs::sync::wal
