// TableBuilder: writes one sorted table (FORMAT.md, "Tables") to a file the caller created.
//
// The caller adds entries in strictly ascending key order, calls Finish, then syncs, closes and
// renames the file into place itself (the flush and compaction own the durability protocol).
//
// Thread safety: one thread per builder.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "engines/lsm/bloom.h"
#include "engines/lsm/format.h"
#include "engines/lsm/table_format.h"
#include "sync/file_system.h"

namespace kvfs::engines::lsm {

class TableBuilder {
 public:
  TableBuilder(sync::WritableFile* file, uint32_t block_size, uint32_t bloom_bits_per_key)
      : file_(file), block_size_(block_size), bloom_(bloom_bits_per_key) {}
  TableBuilder(const TableBuilder&) = delete;
  TableBuilder& operator=(const TableBuilder&) = delete;

  // `key` must sort after every key added before.
  void Add(std::string_view key, ValueKind kind, uint64_t seq, std::string_view payload);
  // Writes the last data block, the filter, the index and the footer. Does not sync.
  Status Finish();

  Status status() const { return status_; }
  uint64_t entries() const { return entries_; }
  // Bytes written so far plus the block being built: where a compaction splits its output.
  uint64_t EstimatedSize() const { return offset_ + pending_.size() + data_.size(); }
  uint64_t file_size() const { return offset_; }  // after Finish
  const std::string& smallest() const { return smallest_; }
  const std::string& largest() const { return data_.empty() ? largest_ : data_.last_key(); }
  uint64_t smallest_seq() const { return smallest_seq_; }
  uint64_t largest_seq() const { return largest_seq_; }

 private:
  void FinishDataBlock();
  void WritePending(bool force);
  BlockHandle AddBlock(std::string_view contents);

  sync::WritableFile* const file_;
  const uint32_t block_size_;
  BlockBuilder data_;
  BlockBuilder index_;
  BloomBuilder bloom_;
  std::string pending_;  // encoded blocks not yet appended to the file
  uint64_t offset_ = 0;  // file offset of pending_'s first byte
  uint64_t entries_ = 0;
  std::string smallest_, largest_;
  uint64_t smallest_seq_ = UINT64_MAX, largest_seq_ = 0;
  std::string scratch_;
  Status status_;
};

}  // namespace kvfs::engines::lsm
