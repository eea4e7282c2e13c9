#include "engines/events/format.h"

#include <cstdio>

#include "sync/crc32c.h"
#include "sync/wal_format.h"

namespace kvfs::engines::events {
namespace {

void PutBE(std::string* out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t GetBE(std::string_view s, size_t pos, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | static_cast<uint8_t>(s[pos + i]);
  return v;
}

}  // namespace

std::string UserKey(std::string_view key) {
  if (key.empty() || key[0] != '\0') return std::string(key);
  std::string k(1, '\0');
  k.append(key);
  return k;
}

std::string TagPrefix(char tag) { return std::string{'\0', tag}; }

std::string EventPrefix(uint64_t id) {
  std::string k = TagPrefix(kEventTag);
  PutBE(&k, id, 8);
  return k;
}

std::string EventKey(uint64_t id, const EventInfo& e) {
  std::string k = EventPrefix(id);
  k.reserve(kEventKeySize);
  PutBE(&k, e.number, 8);
  PutBE(&k, e.offset, 8);
  PutBE(&k, e.size, 4);
  PutBE(&k, static_cast<uint64_t>(e.timestamp_ns), 8);
  return k;
}

Result<std::pair<uint64_t, EventInfo>> DecodeEventKey(std::string_view key) {
  if (key.size() != kEventKeySize || key.substr(0, 2) != TagPrefix(kEventTag)) {
    return Status::Corruption("event key of " + std::to_string(key.size()) + " bytes (" +
                              std::to_string(kEventKeySize) + " expected)");
  }
  EventInfo e;
  const uint64_t id = GetBE(key, 2, 8);
  e.number = GetBE(key, 10, 8);
  e.offset = GetBE(key, 18, 8);
  e.size = static_cast<uint32_t>(GetBE(key, 26, 4));
  e.timestamp_ns = static_cast<int64_t>(GetBE(key, 30, 8));
  return std::make_pair(id, e);
}

std::string EventValue(std::string_view key, std::string_view payload) {
  std::string v;
  v.reserve(4 + payload.size());
  uint32_t crc = sync::crc32c::Extend(sync::crc32c::Value(key), payload.data(), payload.size());
  char buf[4];
  sync::wal::EncodeFixed32(buf, crc);
  v.append(buf, 4);
  v.append(payload);
  return v;
}

Result<std::string_view> CheckEventValue(std::string_view key, std::string_view value,
                                         std::string_view where) {
  KVFS_ASSIGN_OR_RETURN(auto decoded, DecodeEventKey(key));
  const EventInfo& e = decoded.second;
  if (value.size() != 4 + uint64_t{e.size}) {
    return Status::Corruption(std::string(where) + ": event " + std::to_string(e.number) +
                              " holds " + std::to_string(value.size()) + " bytes, its key says " +
                              std::to_string(4 + uint64_t{e.size}));
  }
  const std::string_view payload = value.substr(4);
  const uint32_t crc =
      sync::crc32c::Extend(sync::crc32c::Value(key), payload.data(), payload.size());
  if (crc != sync::wal::DecodeFixed32(value.data())) {
    return Status::Corruption(std::string(where) + ": event " + std::to_string(e.number) +
                              " fails its CRC32C");
  }
  return payload;
}

std::string StreamKey(std::string_view name) {
  std::string k = TagPrefix(kStreamTag);
  k.append(name);
  return k;
}

std::string StreamValue(uint64_t id, int64_t created_ns) {
  std::string v(1, static_cast<char>(kStreamVersion));
  char buf[8];
  sync::wal::EncodeFixed64(buf, id);
  v.append(buf, 8);
  sync::wal::EncodeFixed64(buf, static_cast<uint64_t>(created_ns));
  v.append(buf, 8);
  return v;
}

Result<StreamRecord> DecodeStreamValue(std::string_view value, std::string_view name) {
  if (value.size() != kStreamValueSize || static_cast<uint8_t>(value[0]) != kStreamVersion) {
    return Status::Corruption("stream record of '" + Printable(name) +
                              "': " + std::to_string(value.size()) + " bytes, version " +
                              (value.empty() ? "none" : std::to_string(uint8_t(value[0]))));
  }
  StreamRecord r;
  r.id = sync::wal::DecodeFixed64(value.data() + 1);
  r.created_ns = static_cast<int64_t>(sync::wal::DecodeFixed64(value.data() + 9));
  if (r.id == 0) return Status::Corruption("stream record of '" + Printable(name) + "': id 0");
  return r;
}

std::string DeadKey(uint64_t id) {
  std::string k = TagPrefix(kDeadTag);
  PutBE(&k, id, 8);
  return k;
}

Result<uint64_t> DecodeDeadKey(std::string_view key) {
  if (key.size() != 10 || key.substr(0, 2) != TagPrefix(kDeadTag)) {
    return Status::Corruption("dead-stream key of " + std::to_string(key.size()) + " bytes");
  }
  return GetBE(key, 2, 8);
}

std::string Printable(std::string_view name) {
  std::string out;
  for (char c : name) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f && c != '\\') {
      out.push_back(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", u);
      out += buf;
    }
  }
  return out;
}

}  // namespace kvfs::engines::events
