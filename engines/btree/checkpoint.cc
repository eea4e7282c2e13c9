#include "engines/btree/checkpoint.h"

#include <cstring>

#include "sync/crc32c.h"

namespace kvfs::engines::btree {
namespace {

constexpr char kCheckpointMagic[8] = {'k', 'v', 'f', 's', 'B', 'T', 'C', 'K'};
constexpr char kDoubleWriteMagic[8] = {'k', 'v', 'f', 's', 'B', 'T', 'D', 'W'};
constexpr size_t kCheckpointSize = 24;     // magic(8) redo_lsn(8) page_size(4) crc(4)
constexpr size_t kDoubleWriteHeader = 32;  // magic(8) redo_lsn(8) count(4) page_size(4)
                                           // reserved(4) crc(4)

}  // namespace

std::string EncodeCheckpoint(const CheckpointRecord& r) {
  std::string out(kCheckpointSize, '\0');
  std::memcpy(out.data(), kCheckpointMagic, 8);
  EncodeFixed64(out.data() + 8, r.redo_lsn);
  EncodeFixed32(out.data() + 16, r.page_size);
  EncodeFixed32(out.data() + 20, sync::crc32c::Value(out.data(), 20));
  return out;
}

Result<CheckpointRecord> DecodeCheckpoint(std::string_view bytes, const std::string& path) {
  if (bytes.size() != kCheckpointSize || std::memcmp(bytes.data(), kCheckpointMagic, 8) != 0 ||
      DecodeFixed32(bytes.data() + 20) != sync::crc32c::Value(bytes.data(), 20)) {
    return Status::Corruption(path + " at offset 0: not a valid checkpoint record (" +
                              std::to_string(bytes.size()) + " bytes)");
  }
  CheckpointRecord r;
  r.redo_lsn = DecodeFixed64(bytes.data() + 8);
  r.page_size = DecodeFixed32(bytes.data() + 16);
  if (r.page_size < kMinPageSize || r.page_size > kMaxPageSize ||
      (r.page_size & (r.page_size - 1)) != 0) {
    return Status::Corruption(path + " at offset 16: bad page size " + std::to_string(r.page_size));
  }
  return r;
}

std::string EncodeDoubleWrite(uint64_t redo_lsn, size_t page_size, const PageImages& pages) {
  std::string out(kDoubleWriteHeader, '\0');
  out.reserve(kDoubleWriteHeader + pages.size() * (4 + page_size));
  std::memcpy(out.data(), kDoubleWriteMagic, 8);
  EncodeFixed64(out.data() + 8, redo_lsn);
  EncodeFixed32(out.data() + 16, static_cast<uint32_t>(pages.size()));
  EncodeFixed32(out.data() + 20, static_cast<uint32_t>(page_size));
  for (const auto& [pgno, image] : pages) {
    char b[4];
    EncodeFixed32(b, pgno);
    out.append(b, 4);
  }
  for (const auto& [pgno, image] : pages) out.append(*image);
  uint32_t crc = sync::crc32c::Value(out.data(), 28);
  crc = sync::crc32c::Extend(crc, out.data() + kDoubleWriteHeader, out.size() - kDoubleWriteHeader);
  EncodeFixed32(out.data() + 28, crc);
  return out;
}

std::optional<DoubleWrite> DecodeDoubleWrite(std::string_view bytes) {
  if (bytes.size() < kDoubleWriteHeader || std::memcmp(bytes.data(), kDoubleWriteMagic, 8) != 0) {
    return std::nullopt;
  }
  DoubleWrite dw;
  dw.redo_lsn = DecodeFixed64(bytes.data() + 8);
  const uint64_t count = DecodeFixed32(bytes.data() + 16);
  dw.page_size = DecodeFixed32(bytes.data() + 20);
  if (dw.page_size < kMinPageSize || dw.page_size > kMaxPageSize ||
      bytes.size() != kDoubleWriteHeader + count * (4 + uint64_t{dw.page_size})) {
    return std::nullopt;
  }
  uint32_t crc = sync::crc32c::Value(bytes.data(), 28);
  crc = sync::crc32c::Extend(crc, bytes.data() + kDoubleWriteHeader,
                             bytes.size() - kDoubleWriteHeader);
  if (crc != DecodeFixed32(bytes.data() + 28)) return std::nullopt;
  const char* table = bytes.data() + kDoubleWriteHeader;
  const char* images = table + 4 * count;
  for (uint64_t i = 0; i < count; ++i) {
    const PageNo pgno = DecodeFixed32(table + 4 * i);
    const char* image = images + i * dw.page_size;
    // The whole file's checksum covers these; each page must also be a sound page of its own.
    if (!CheckPage(image, dw.page_size, pgno, dw.redo_lsn, "doublewrite", 0).ok()) {
      return std::nullopt;
    }
    dw.pages.emplace_back(pgno, std::make_shared<const std::string>(image, dw.page_size));
  }
  return dw;
}

}  // namespace kvfs::engines::btree
