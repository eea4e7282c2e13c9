// TableReader: an open, verified sorted table.
//
// Open reads the footer, the index and the bloom filter, checking each block's CRC32C and every
// length against the file's size, and keeps index and filter in memory. Data blocks are read on
// demand (through the block cache), each checked again before use. Any damage is kCorruption
// naming the file and the byte offset; nothing is trusted before it is checked.
//
// Thread safety: a TableReader is immutable after Open; any number of threads may Get and
// iterate at once. Iterators keep their reader alive.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engines/lsm/block_cache.h"
#include "engines/lsm/format.h"
#include "engines/lsm/iterator.h"
#include "engines/lsm/table_format.h"
#include "sync/file_system.h"

namespace kvfs::engines::lsm {

class TableReader : public std::enable_shared_from_this<TableReader> {
 public:
  // `cache` may be null (no caching); it must outlive the reader.
  static Result<std::shared_ptr<TableReader>> Open(sync::FileSystem* fs, const std::string& path,
                                                   uint64_t number, BlockCache* cache);
  static Result<std::shared_ptr<TableReader>> Open(std::shared_ptr<sync::RandomAccessFile> file,
                                                   uint64_t file_size, uint64_t number,
                                                   BlockCache* cache);

  struct Entry {
    ValueKind kind;
    uint64_t seq;
    std::string payload;  // the value, or an encoded BlobRef
  };
  // The entry for `key`, nullopt if the table has none. `hash` is BloomHash(key).
  Result<std::optional<Entry>> Get(std::string_view key, uint64_t hash) const;
  bool MayContain(uint64_t hash) const;

  // How an iterator gets its data blocks. kCached: through the block cache (lookups and scans;
  // a seek's first blocks are kept). kSequential: a compaction's, which reads every block once,
  // in order: many blocks per read (kSequentialReadBytes), none looked up in or added to the
  // cache, each checked (CRC, entries, keys against the index) as the walk reaches it.
  enum class ReadMode { kCached, kSequential };
  static constexpr size_t kSequentialReadBytes = size_t{256} << 10;
  std::unique_ptr<InternalIterator> NewIterator(ReadMode mode = ReadMode::kCached) const;

  const std::string& path() const { return file_->path(); }
  uint64_t number() const { return number_; }
  uint64_t file_size() const { return file_size_; }
  uint64_t entries() const { return entries_; }

  // Read-triggered compaction (LevelDB's "allowed seeks", applied to scans): a scan pays a seek
  // in every level-0 table, so each table may be sought max(100, file size / 16 KiB) times (a
  // seek costing about what compacting 16 KiB does) before compacting it pays for itself. True
  // exactly once: for the charge that uses the last one.
  bool ChargeScanSeek() const { return seeks_left_.fetch_sub(1, std::memory_order_relaxed) == 1; }

  // Tests: the data blocks' handles, in order.
  std::vector<BlockHandle> DataBlocksForTesting() const;

 private:
  friend class TableIterator;
  // The index, decoded at open. Its keys (each block's last key) live in one buffer, so a
  // binary search over them touches few cache lines.
  struct IndexEntry {
    uint32_t key_offset;
    uint32_t key_size;
    BlockHandle handle;
  };
  std::string_view IndexKey(size_t i) const {
    return std::string_view(index_keys_).substr(index_[i].key_offset, index_[i].key_size);
  }
  // The first block whose last key is >= `key` (index_.size() if none).
  size_t FindBlock(std::string_view key) const;
  TableReader() = default;
  // Block i, read and checked (CRC, entries, keys within its index range) on a cache miss.
  // `fill_cache` false: a block read from the file is not kept (long scans: they would push
  // out blocks that lookups reuse, for blocks they read once).
  Result<BlockCache::Block> DataBlock(size_t i, bool fill_cache = true) const;
  Status CheckAgainstIndex(size_t i, std::string_view contents) const;

  std::shared_ptr<sync::RandomAccessFile> file_;
  uint64_t file_size_ = 0;
  uint64_t number_ = 0;
  mutable std::atomic<int64_t> seeks_left_{0};
  uint64_t entries_ = 0;
  BlockCache* cache_ = nullptr;
  std::shared_ptr<BlockCache::Slots> slots_;  // null without a cache
  std::vector<IndexEntry> index_;
  std::string index_keys_;
  std::string filter_;
};

}  // namespace kvfs::engines::lsm
