#include "engines/write_batch.h"

#include "sync/crc32c.h"
#include "sync/wal_format.h"

namespace kvfs::engines {

using sync::wal::DecodeFixed32;
using sync::wal::EncodeFixed32;

void EncodeEntry(std::string* out, EntryKind kind, std::string_view key, std::string_view value) {
  const size_t start = out->size();
  // One allocation for the entry, not one per field (docs/decisions.md, "Measured small
  // choices"); reserve grows geometrically, so a long batch still reallocates O(log n) times.
  out->reserve(start + kEntryHeaderSize + key.size() + value.size());
  char header[kEntryHeaderSize];
  EncodeFixed32(header, 0);  // CRC, filled in below
  header[4] = static_cast<char>(kind);
  EncodeFixed32(header + 5, static_cast<uint32_t>(key.size()));
  EncodeFixed32(header + 9, static_cast<uint32_t>(value.size()));
  out->append(header, kEntryHeaderSize);
  out->append(key);
  out->append(value);
  const uint32_t crc = sync::crc32c::Value(out->data() + start + 4, out->size() - start - 4);
  EncodeFixed32(out->data() + start, crc);
}

Result<BatchEntry> DecodeEntry(std::string_view bytes, std::string_view where) {
  // An empty `where` leaves the naming of the place to the caller (see ForEachEntry).
  const auto damaged = [where](const std::string& what) {
    return Status::Corruption(where.empty() ? what : std::string(where) + ": " + what);
  };
  if (bytes.size() < kEntryHeaderSize) return damaged("entry header cut short");
  const uint32_t crc = DecodeFixed32(bytes.data());
  const auto kind = static_cast<EntryKind>(static_cast<uint8_t>(bytes[4]));
  const uint64_t key_size = DecodeFixed32(bytes.data() + 5);
  const uint64_t value_size = DecodeFixed32(bytes.data() + 9);
  if (kind != EntryKind::kPut && kind != EntryKind::kDelete) {
    return damaged("unknown entry kind " + std::to_string(static_cast<int>(kind)));
  }
  const uint64_t size = kEntryHeaderSize + key_size + value_size;
  if (size > bytes.size()) {
    return damaged("entry of " + std::to_string(size) + " bytes runs past the end");
  }
  if (sync::crc32c::Value(bytes.data() + 4, size - 4) != crc) {
    return damaged("entry checksum mismatch");
  }
  BatchEntry e;
  e.kind = kind;
  e.key = bytes.substr(kEntryHeaderSize, key_size);
  e.value = bytes.substr(kEntryHeaderSize + key_size, value_size);
  e.size = size;
  return e;
}

Status ForEachEntry(std::string_view encoded, std::string_view where,
                    const std::function<Status(const BatchEntry&)>& fn) {
  uint64_t offset = 0;
  while (offset < encoded.size()) {
    Result<BatchEntry> entry = DecodeEntry(encoded.substr(offset), where);
    if (!entry.ok()) {
      // Name the place only on damage: building it for every entry would cost an
      // allocation per entry on every Apply and every replayed batch.
      return entry.status().WithContext("entry at offset " + std::to_string(offset));
    }
    entry->offset = offset;
    KVFS_RETURN_IF_ERROR(fn(*entry));
    offset += entry->size;
  }
  return Status::OK();
}

Status InvalidKeyError(std::string_view key, size_t max_key_size) {
  return Status::InvalidArgument("key of " + std::to_string(key.size()) +
                                 " bytes: keys must be 1 to " + std::to_string(max_key_size) +
                                 " bytes");
}

void WriteBatch::Add(EntryKind kind, std::string_view key, std::string_view value) {
  EncodeEntry(&rep_, kind, key, value);
  ++count_;
}

void WriteBatch::Put(std::string_view key, std::string_view value) {
  Add(EntryKind::kPut, key, value);
}

void WriteBatch::Delete(std::string_view key) { Add(EntryKind::kDelete, key, {}); }

void WriteBatch::Clear() {
  rep_.clear();
  count_ = 0;
}

}  // namespace kvfs::engines
