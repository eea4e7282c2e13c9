// WriteBatch: an ordered list of puts and deletes that an engine applies atomically.
//
// Its encoding is what engines write as one write-ahead-log record, so a batch is in the log
// whole or not at all. Each entry carries its own CRC32C, so an engine that reads a single
// value back from the log (Bitcask) can verify that value without reading the whole batch:
//
//   entry := crc32c(4, of everything after it) kind(1: 1 put, 2 delete)
//            key_length(4) value_length(4) key value
//
// All integers little-endian. A batch's encoding is the concatenation of its entries.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "sync/status.h"

namespace kvfs::engines {

enum class EntryKind : uint8_t { kPut = 1, kDelete = 2 };

inline constexpr size_t kEntryHeaderSize = 13;  // crc(4) kind(1) key_length(4) value_length(4)
inline constexpr size_t kMaxKeySize = size_t{64} * 1024;

// Keys are 1 to kMaxKeySize bytes, or to a smaller limit an engine sets (the event store keeps
// room in Bitcask's keys for its own prefix).
inline bool IsValidKey(std::string_view key, size_t max_key_size = kMaxKeySize) {
  return !key.empty() && key.size() <= max_key_size;
}

struct BatchEntry {
  EntryKind kind;
  std::string_view key;
  std::string_view value;  // empty for deletes
  uint64_t offset = 0;     // of the entry within the encoding
  uint64_t size = 0;       // of the whole entry
};

// Keys must be non-empty and at most kMaxKeySize bytes; Engine::Apply refuses a batch with any
// other key (kInvalidArgument) before writing anything.
class WriteBatch {
 public:
  void Put(std::string_view key, std::string_view value);
  void Delete(std::string_view key);
  void Clear();

  size_t count() const { return count_; }
  bool empty() const { return count_ == 0; }
  // The encoding, ready to be one log record.
  const std::string& encoded() const { return rep_; }

 private:
  void Add(EntryKind kind, std::string_view key, std::string_view value);
  std::string rep_;
  size_t count_ = 0;
};

// Appends one entry's encoding to `out`.
void EncodeEntry(std::string* out, EntryKind kind, std::string_view key, std::string_view value);

// Decodes one entry at the start of `bytes`; kCorruption (naming `where`) if it is cut short or
// its checksum does not match.
Result<BatchEntry> DecodeEntry(std::string_view bytes, std::string_view where);

// Visits every entry of an encoded batch in order; kCorruption naming `where` and the offset
// on any damage. The callback's views point into `encoded`.
Status ForEachEntry(std::string_view encoded, std::string_view where,
                    const std::function<Status(const BatchEntry&)>& fn);

// kInvalidArgument for a key that is empty or longer than `max_key_size`, naming its size.
Status InvalidKeyError(std::string_view key, size_t max_key_size = kMaxKeySize);

// Appends every entry of `batch` to `out` in order, for Engine::Apply, which validates a whole
// batch before it writes anything: InvalidKeyError for the first bad key. The views point into
// `batch`. A template so that an engine keeps its own container (the LSM's holds one entry
// inline: most batches from the daemon have one).
template <typename Entries>
Status AppendValidEntries(const WriteBatch& batch, Entries* out,
                          size_t max_key_size = kMaxKeySize) {
  out->reserve(out->size() + batch.count());
  return ForEachEntry(batch.encoded(), "write batch", [out, max_key_size](const BatchEntry& e) {
    if (!IsValidKey(e.key, max_key_size)) return InvalidKeyError(e.key, max_key_size);
    out->push_back(e);
    return Status::OK();
  });
}

}  // namespace kvfs::engines
