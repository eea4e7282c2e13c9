#include "engines/bitcask/format.h"

#include <cstdio>
#include <cstring>

#include "sync/crc32c.h"
#include "sync/wal_format.h"

namespace kvfs::engines::bitcask {

using sync::wal::DecodeFixed32;
using sync::wal::DecodeFixed64;
using sync::wal::PutFixed32;
using sync::wal::PutFixed64;

namespace {

constexpr char kDataMagic[8] = {'K', 'V', 'F', 'S', 'B', 'C', 'D', '\0'};
constexpr char kHintMagic[8] = {'K', 'V', 'F', 'S', 'B', 'C', 'H', '\0'};
constexpr char kManifestMagic[8] = {'K', 'V', 'F', 'S', 'B', 'C', 'M', '\0'};
constexpr uint32_t kVersion = 1;
constexpr size_t kHintHeaderSize = 24;  // magic(8) version(4) zero(4) file number(8)
constexpr size_t kHintEntryFixed = 24;  // key_size(4) entry_size(4) entry_offset(8) lsn(8)
constexpr size_t kHintFooterSize = 12;  // count(8) crc32c(4)
constexpr size_t kManifestFixed = 32;   // magic(8) version(4) count(4) lsn(8) next number(8)

std::optional<uint64_t> ParseNumbered(std::string_view name, std::string_view suffix) {
  if (name.size() != 16 + suffix.size() || name.substr(16) != suffix) return std::nullopt;
  uint64_t n = 0;
  for (size_t i = 0; i < 16; ++i) {
    if (name[i] < '0' || name[i] > '9') return std::nullopt;
    n = n * 10 + static_cast<uint64_t>(name[i] - '0');
  }
  return n;
}

std::string Numbered(uint64_t number, const char* suffix) {
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%016llu%s", static_cast<unsigned long long>(number), suffix);
  return buf;
}

}  // namespace

std::string DataFileName(uint64_t number) { return Numbered(number, ".data"); }
std::string HintFileName(uint64_t number) { return Numbered(number, ".hint"); }
std::optional<uint64_t> ParseDataFileName(std::string_view name) {
  return ParseNumbered(name, ".data");
}
std::optional<uint64_t> ParseHintFileName(std::string_view name) {
  return ParseNumbered(name, ".hint");
}

std::string EncodeDataHeader(uint64_t file_number) {
  std::string h(kDataMagic, sizeof(kDataMagic));
  PutFixed32(&h, kVersion);
  PutFixed32(&h, 0);
  PutFixed64(&h, file_number);
  PutFixed32(&h, sync::crc32c::Value(h.data(), h.size()));
  PutFixed32(&h, 0);
  return h;
}

Status CheckDataHeader(std::string_view bytes, uint64_t file_number, const std::string& path) {
  if (bytes.size() < kDataHeaderSize) {
    return Status::Corruption("merged data file " + path + ": header cut short");
  }
  if (std::memcmp(bytes.data(), kDataMagic, sizeof(kDataMagic)) != 0 ||
      DecodeFixed32(bytes.data() + 24) != sync::crc32c::Value(bytes.data(), 24)) {
    return Status::Corruption("merged data file " + path + ": bad header (magic or checksum)");
  }
  if (DecodeFixed32(bytes.data() + 8) != kVersion) {
    return Status::Corruption("merged data file " + path + ": unknown format version " +
                              std::to_string(DecodeFixed32(bytes.data() + 8)));
  }
  if (DecodeFixed64(bytes.data() + 16) != file_number) {
    return Status::Corruption("merged data file " + path + ": header names file " +
                              std::to_string(DecodeFixed64(bytes.data() + 16)));
  }
  return Status::OK();
}

void AppendRecord(std::string* out, uint64_t lsn, std::string_view entry) {
  char covered[12];
  std::string lsn_bytes;
  PutFixed64(&lsn_bytes, lsn);
  std::memcpy(covered, lsn_bytes.data(), 8);
  std::memcpy(covered + 8, entry.data(), 4);  // the entry's own CRC
  PutFixed32(out, sync::crc32c::Value(covered, sizeof(covered)));
  out->append(lsn_bytes);
  out->append(entry);
}

std::optional<uint64_t> DecodeRecordPrefix(const char* p) {
  if (DecodeFixed32(p) != sync::crc32c::Value(p + 4, 12)) return std::nullopt;
  return DecodeFixed64(p + 4);
}

HintBuilder::HintBuilder(uint64_t file_number) {
  rep_.assign(kHintMagic, sizeof(kHintMagic));
  PutFixed32(&rep_, kVersion);
  PutFixed32(&rep_, 0);
  PutFixed64(&rep_, file_number);
}

void HintBuilder::Add(std::string_view key, uint64_t entry_offset, uint64_t entry_size,
                      uint64_t lsn) {
  PutFixed32(&rep_, static_cast<uint32_t>(key.size()));
  PutFixed32(&rep_, static_cast<uint32_t>(entry_size));
  PutFixed64(&rep_, entry_offset);
  PutFixed64(&rep_, lsn);
  rep_.append(key);
  ++count_;
}

std::string HintBuilder::Finish() {
  std::string out = std::move(rep_);
  PutFixed64(&out, count_);
  PutFixed32(&out, sync::crc32c::Value(out.data(), out.size()));
  rep_.clear();
  count_ = 0;
  return out;
}

Result<std::vector<HintEntry>> DecodeHintFile(std::string_view bytes, uint64_t file_number,
                                              const std::string& path) {
  auto bad = [&](const std::string& why) {
    return Status::Corruption("hint file " + path + ": " + why);
  };
  if (bytes.size() < kHintHeaderSize + kHintFooterSize) return bad("cut short");
  const size_t body = bytes.size() - 4;
  if (DecodeFixed32(bytes.data() + body) != sync::crc32c::Value(bytes.data(), body)) {
    return bad("checksum mismatch");
  }
  if (std::memcmp(bytes.data(), kHintMagic, sizeof(kHintMagic)) != 0) return bad("bad magic");
  if (DecodeFixed32(bytes.data() + 8) != kVersion) return bad("unknown format version");
  if (DecodeFixed64(bytes.data() + 16) != file_number) return bad("names another data file");
  const uint64_t count = DecodeFixed64(bytes.data() + body - 8);
  const size_t end = body - 8;
  std::vector<HintEntry> out;
  size_t pos = kHintHeaderSize;
  while (pos < end) {
    if (end - pos < kHintEntryFixed) return bad("entry cut short at offset " + std::to_string(pos));
    const char* p = bytes.data() + pos;
    const uint32_t key_size = DecodeFixed32(p);
    if (key_size > end - pos - kHintEntryFixed) {
      return bad("key runs past the end at offset " + std::to_string(pos));
    }
    HintEntry e;
    e.entry_size = DecodeFixed32(p + 4);
    e.entry_offset = DecodeFixed64(p + 8);
    e.lsn = DecodeFixed64(p + 16);
    e.key.assign(p + kHintEntryFixed, key_size);
    out.push_back(std::move(e));
    pos += kHintEntryFixed + key_size;
  }
  if (out.size() != count) return bad("entry count does not match its footer");
  return out;
}

std::string EncodeManifest(const Manifest& m) {
  std::string out(kManifestMagic, sizeof(kManifestMagic));
  PutFixed32(&out, kVersion);
  PutFixed32(&out, static_cast<uint32_t>(m.files.size()));
  PutFixed64(&out, m.merged_lsn);
  PutFixed64(&out, m.next_file_number);
  for (uint64_t f : m.files) PutFixed64(&out, f);
  PutFixed32(&out, sync::crc32c::Value(out.data(), out.size()));
  return out;
}

Result<Manifest> DecodeManifest(std::string_view bytes, const std::string& path) {
  auto bad = [&](const std::string& why) {
    return Status::Corruption("MANIFEST " + path + ": " + why);
  };
  if (bytes.size() < kManifestFixed + 4) return bad("cut short");
  const size_t body = bytes.size() - 4;
  if (DecodeFixed32(bytes.data() + body) != sync::crc32c::Value(bytes.data(), body)) {
    return bad("checksum mismatch");
  }
  if (std::memcmp(bytes.data(), kManifestMagic, sizeof(kManifestMagic)) != 0) {
    return bad("bad magic");
  }
  if (DecodeFixed32(bytes.data() + 8) != kVersion) return bad("unknown format version");
  const uint32_t count = DecodeFixed32(bytes.data() + 12);
  if (body != kManifestFixed + uint64_t{count} * 8) return bad("file count does not match size");
  Manifest m;
  m.merged_lsn = DecodeFixed64(bytes.data() + 16);
  m.next_file_number = DecodeFixed64(bytes.data() + 24);
  for (uint32_t i = 0; i < count; ++i) {
    const uint64_t f = DecodeFixed64(bytes.data() + kManifestFixed + size_t{8} * i);
    if (f >= m.next_file_number || (!m.files.empty() && f <= m.files.back())) {
      return bad("file numbers out of order");
    }
    m.files.push_back(f);
  }
  return m;
}

}  // namespace kvfs::engines::bitcask
