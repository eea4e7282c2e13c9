#include "engines/lsm/table_format.h"

#include <algorithm>
#include <cstring>

#include "engines/lsm/coding.h"
#include "engines/lsm/format.h"
#include "engines/lsm/key_compare.h"
#include "sync/crc32c.h"

namespace kvfs::engines::lsm {

namespace crc32c = sync::crc32c;

std::string EncodeFooter(const Footer& f) {
  std::string out;
  PutFixed64(&out, f.index.offset);
  PutFixed64(&out, f.index.size);
  PutFixed64(&out, f.filter.offset);
  PutFixed64(&out, f.filter.size);
  PutFixed64(&out, f.entries);
  PutFixed32(&out, kTableFormatVersion);
  PutFixed32(&out, crc32c::Value(out));
  out.append(kTableMagic, sizeof(kTableMagic));
  return out;
}

Result<Footer> DecodeFooter(std::string_view bytes, uint64_t file_size, const std::string& path) {
  const uint64_t footer_offset = file_size >= kFooterSize ? file_size - kFooterSize : 0;
  auto fail = [&](const std::string& why) {
    return Status::Corruption("table " + path + " at offset " + std::to_string(footer_offset) +
                              ": footer " + why);
  };
  if (file_size < kFooterSize || bytes.size() != kFooterSize) return fail("cut short");
  if (std::memcmp(bytes.data() + 48, kTableMagic, sizeof(kTableMagic)) != 0) {
    return fail("has a bad magic number (not a kvfs table)");
  }
  if (DecodeFixed32(bytes.data() + 44) != crc32c::Value(bytes.data(), 44)) {
    return fail("checksum mismatch");
  }
  const uint32_t version = DecodeFixed32(bytes.data() + 40);
  if (version < kOldestTableFormatVersion || version > kTableFormatVersion) {
    return fail("has unknown format version " + std::to_string(version));
  }
  Footer f;
  f.index = {DecodeFixed64(bytes.data()), DecodeFixed64(bytes.data() + 8)};
  f.filter = {DecodeFixed64(bytes.data() + 16), DecodeFixed64(bytes.data() + 24)};
  f.entries = DecodeFixed64(bytes.data() + 32);
  for (const BlockHandle& h : {f.index, f.filter}) {
    if (h.offset > footer_offset || h.size > footer_offset - h.offset ||
        footer_offset - h.offset - h.size < kBlockTrailerSize) {
      return fail("points past the end of the file");
    }
  }
  return f;
}

void BlockBuilder::Add(std::string_view key, std::string_view value) {
  size_t shared = 0;
  if (entries_ % kRestartInterval == 0) {
    restarts_.push_back(static_cast<uint32_t>(buf_.size()));
  } else {
    const size_t max_shared = std::min(key.size(), last_key_.size());
    while (shared < max_shared && key[shared] == last_key_[shared]) ++shared;
  }
  PutVarint64(&buf_, shared);
  PutVarint64(&buf_, key.size() - shared);
  PutVarint64(&buf_, value.size());
  buf_.append(key.substr(shared));
  buf_.append(value);
  last_key_.assign(key);
  ++entries_;
}

const std::string& BlockBuilder::Finish() {
  for (uint32_t r : restarts_) PutFixed32(&buf_, r);
  PutFixed32(&buf_, static_cast<uint32_t>(restarts_.size()));
  return buf_;
}

void AppendBlockWithTrailer(std::string* out, std::string_view contents) {
  out->append(contents);
  PutFixed32(out, crc32c::Value(contents));
}

Result<std::string_view> CheckBlock(std::string_view raw, const std::string& path,
                                    uint64_t offset) {
  if (raw.size() < kBlockTrailerSize) {
    return Status::Corruption("table " + path + " at offset " + std::to_string(offset) +
                              ": block cut short");
  }
  const std::string_view contents = raw.substr(0, raw.size() - kBlockTrailerSize);
  if (DecodeFixed32(raw.data() + contents.size()) != crc32c::Value(contents)) {
    return Status::Corruption("table " + path + " at offset " + std::to_string(offset) +
                              ": block checksum mismatch");
  }
  return contents;
}

Result<std::string> ReadBlock(const sync::RandomAccessFile& file, uint64_t file_size,
                              const BlockHandle& h) {
  if (h.offset > file_size || h.size > file_size - h.offset ||
      file_size - h.offset - h.size < kBlockTrailerSize) {
    return Status::Corruption("table " + file.path() + " at offset " + std::to_string(h.offset) +
                              ": block of " + std::to_string(h.size) +
                              " bytes runs past the end of the file");
  }
  std::string raw(h.size + kBlockTrailerSize, '\0');
  KVFS_ASSIGN_OR_RETURN(size_t got, file.Read(h.offset, raw.size(), raw.data()));
  if (got != raw.size()) {
    return Status::Corruption("table " + file.path() + " at offset " + std::to_string(h.offset) +
                              ": block cut short (file too short)");
  }
  KVFS_RETURN_IF_ERROR(CheckBlock(raw, file.path(), h.offset).status());
  raw.resize(h.size);
  return raw;
}

BlockCursor::BlockCursor(std::string_view contents, const std::string* path, uint64_t block_offset,
                         Trust trust)
    : path_(path) {
  Reset(contents, block_offset, trust);
}

void BlockCursor::Reset(std::string_view contents, uint64_t block_offset, Trust trust) {
  contents_ = contents;
  block_offset_ = block_offset;
  verified_ = trust == Trust::kVerified;
  data_end_ = 0;
  num_restarts_ = next_restart_ = 0;
  pos_ = 0;
  started_ = false;
  key_.clear();  // keeps its capacity: a scan moving block to block allocates no key
  value_ = {};
  status_ = Status::OK();
  if (contents.size() < 4) {
    Fail("block too short for its restart count", 0);
    return;
  }
  const uint32_t n = DecodeFixed32(contents.data() + contents.size() - 4);
  if (n > (contents.size() - 4) / 4) {
    Fail("restart count larger than the block", contents.size() - 4);
    return;
  }
  num_restarts_ = n;
  data_end_ = contents.size() - 4 - 4 * size_t{n};
  if (verified_) return;
  // Ascending offsets inside the entries, the first at 0: binary search relies on it.
  if ((n == 0) != (data_end_ == 0) || (n > 0 && RestartOffset(0) != 0)) {
    Fail("restart array does not match the entries", data_end_);
    return;
  }
  for (uint32_t i = 1; i < n; ++i) {
    if (RestartOffset(i) <= RestartOffset(i - 1) || RestartOffset(i) >= data_end_) {
      Fail("restart offsets not ascending inside the block", data_end_ + 4 * size_t{i});
      return;
    }
  }
}

uint32_t BlockCursor::RestartOffset(uint32_t i) const {
  return DecodeFixed32(contents_.data() + data_end_ + 4 * size_t{i});
}

bool BlockCursor::Fail(const char* why, size_t entry_offset) {
  status_ = Status::Corruption("table " + *path_ + " at offset " +
                               std::to_string(block_offset_ + entry_offset) + " (block at " +
                               std::to_string(block_offset_) + "): " + why);
  key_.clear();
  value_ = {};
  pos_ = data_end_ = 0;
  num_restarts_ = 0;
  return false;
}

bool BlockCursor::Next() {
  if (!status_.ok() || pos_ >= data_end_) {
    if (status_.ok() && !verified_ && started_ && next_restart_ != num_restarts_) {
      return Fail("restart point not at an entry", data_end_);
    }
    return false;
  }
  const size_t entry_offset = pos_;
  std::string_view in = contents_.substr(pos_, data_end_ - pos_);
  uint32_t shared, unshared, value_size;
  // The usual entry header: three one-byte varints (a scan decodes one per row).
  const auto* h = reinterpret_cast<const unsigned char*>(in.data());
  if (in.size() >= 3 && (h[0] | h[1] | h[2]) < 0x80) {
    shared = h[0];
    unshared = h[1];
    value_size = h[2];
    in.remove_prefix(3);
  } else if (!GetVarint32(&in, &shared) || !GetVarint32(&in, &unshared) ||
             !GetVarint32(&in, &value_size)) {
    return Fail("entry header cut short", entry_offset);
  }
  if (!verified_) {
    const bool at_restart = next_restart_ < num_restarts_ && RestartOffset(next_restart_) == pos_;
    if (at_restart) {
      if (shared != 0) return Fail("entry at a restart point shares a prefix", entry_offset);
      ++next_restart_;
    } else if (next_restart_ < num_restarts_ && RestartOffset(next_restart_) < pos_) {
      return Fail("restart point not at an entry", entry_offset);
    }
  }
  if (shared > (started_ ? key_.size() : 0)) {
    return Fail("entry shares more than the previous key", entry_offset);
  }
  if (unshared > in.size() || value_size > in.size() - unshared) {
    return Fail("entry runs past the end of its block", entry_offset);
  }
  const std::string_view suffix = in.substr(0, unshared);
  if (!verified_ && started_ && suffix.compare(std::string_view(key_).substr(shared)) <= 0) {
    return Fail("keys out of order", entry_offset);
  }
  key_.resize(shared);
  key_.append(suffix);
  if (key_.empty()) return Fail("empty key", entry_offset);
  value_ = in.substr(unshared, value_size);
  pos_ = data_end_ - (in.size() - unshared - value_size);
  started_ = true;
  return true;
}

bool BlockCursor::RestartKey(uint32_t i, std::string_view* key) {
  const size_t offset = RestartOffset(i);
  std::string_view in = contents_.substr(offset, data_end_ - offset);
  uint32_t shared, unshared, value_size;
  if (!GetVarint32(&in, &shared) || !GetVarint32(&in, &unshared) ||
      !GetVarint32(&in, &value_size) || shared != 0 || unshared > in.size()) {
    return Fail("malformed entry at a restart point", offset);
  }
  *key = in.substr(0, unshared);
  return true;
}

bool BlockCursor::Seek(std::string_view target) {
  if (!status_.ok() || num_restarts_ == 0) return false;
  // The last restart point whose key is below the target: the target, if here, is at or after it.
  uint32_t lo = 0, hi = num_restarts_ - 1;
  while (lo < hi) {
    const uint32_t mid = lo + (hi - lo + 1) / 2;
    std::string_view k;
    if (!RestartKey(mid, &k)) return false;
    if (CompareKeys(k, target) < 0) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  pos_ = RestartOffset(lo);
  next_restart_ = lo;
  started_ = false;
  key_.clear();
  while (Next()) {
    if (CompareKeys(key_, target) >= 0) return true;
  }
  return false;
}

void EncodeDataValue(std::string* out, uint8_t kind, uint64_t seq, std::string_view payload) {
  out->push_back(static_cast<char>(kind));
  PutVarint64(out, seq);
  out->append(payload);
}

bool DecodeDataValue(std::string_view in, uint8_t* kind, uint64_t* seq, std::string_view* payload) {
  if (in.empty()) return false;
  *kind = static_cast<uint8_t>(in[0]);
  in.remove_prefix(1);
  if (!IsValidKind(*kind) || !GetVarint64(&in, seq)) return false;
  *payload = in;
  return true;
}

void EncodeHandle(std::string* out, const BlockHandle& h) {
  PutVarint64(out, h.offset);
  PutVarint64(out, h.size);
}

bool DecodeHandle(std::string_view in, BlockHandle* h) {
  return GetVarint64(&in, &h->offset) && GetVarint64(&in, &h->size) && in.empty();
}

}  // namespace kvfs::engines::lsm
