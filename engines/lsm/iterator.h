// InternalIterator: the ordered stream every LSM source offers (memtable, table, level, merge).
//
// Entries come in ascending bytewise key order. A memtable may hold several versions of a key
// (newest first); a table holds at most one. An iterator that hits damage becomes invalid with a
// non-OK status(), which every consumer must check: stopping quietly would let an older version
// from another source show through.
//
// Thread safety: one thread per iterator; the source must outlive it.
#pragma once

#include <cstdint>
#include <string_view>

#include "engines/lsm/format.h"
#include "sync/status.h"

namespace kvfs::engines::lsm {

class InternalIterator {
 public:
  InternalIterator() = default;
  InternalIterator(const InternalIterator&) = delete;
  InternalIterator& operator=(const InternalIterator&) = delete;
  virtual ~InternalIterator() = default;

  virtual bool Valid() const = 0;
  virtual void SeekToFirst() = 0;
  // To the first entry whose key is >= target.
  virtual void Seek(std::string_view target) = 0;
  virtual void Next() = 0;
  // Valid() only. The views stay valid until the next move.
  virtual std::string_view key() const = 0;
  virtual ValueKind kind() const = 0;
  virtual std::string_view value() const = 0;  // the value, an encoded BlobRef, or empty
  virtual uint64_t seq() const = 0;            // the LSN of the batch that wrote it
  virtual Status status() const = 0;
  // True if no key comes twice (a table, a level): a merge need not look for older versions
  // right after an entry.
  virtual bool unique_keys() const { return false; }
};

}  // namespace kvfs::engines::lsm
