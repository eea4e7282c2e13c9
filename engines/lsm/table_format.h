// The sorted-table file format (FORMAT.md, "Tables"): blocks, their checksums, the footer.
//
// Every parser here works on a byte buffer and validates lengths and checksums before using
// them, returning kCorruption naming the file and the byte offset; none allocates more than the
// bytes it was given (a table's blocks are bounded by its file size).
//
// Thread safety: BlockBuilder and BlockCursor belong to one thread; the functions are pure.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "sync/file_system.h"
#include "sync/status.h"

namespace kvfs::engines::lsm {

inline constexpr char kTableMagic[8] = {'K', 'V', 'F', 'S', 'S', 'S', 'T', '\0'};
// Written by this version; 1 (the legacy bloom filter, bloom.h) is still read.
inline constexpr uint32_t kTableFormatVersion = 2;
inline constexpr uint32_t kOldestTableFormatVersion = 1;
inline constexpr size_t kFooterSize = 56;
inline constexpr size_t kBlockTrailerSize = 4;  // crc32c of the block's contents

// Where a block's contents are: [offset, offset + size), its 4-byte trailer right after.
struct BlockHandle {
  uint64_t offset = 0;
  uint64_t size = 0;
};

struct Footer {
  BlockHandle index;
  BlockHandle filter;
  uint64_t entries = 0;
};

// Fixed 56 bytes: index offset, index size, filter offset, filter size, entry count (8 each),
// format version (4), CRC32C of the 44 bytes before it (4), magic (8).
std::string EncodeFooter(const Footer& f);
// `bytes` are the last kFooterSize bytes of a file of `file_size` bytes; both handles must lie
// before the footer.
Result<Footer> DecodeFooter(std::string_view bytes, uint64_t file_size, const std::string& path);

// Builds one block (FORMAT.md, "Tables"): entries with keys in strictly ascending order, each
// `varint shared, varint unshared, varint value length, key suffix, value`, where `shared` is
// the prefix shared with the previous key, 0 at every kRestartInterval-th entry (a restart
// point); then the restart points' offsets (fixed32 each) and their count (fixed32).
class BlockBuilder {
 public:
  static constexpr uint32_t kRestartInterval = 16;

  void Add(std::string_view key, std::string_view value);
  // Appends the restart array and returns the block's contents (no trailer); Reset() before
  // the next Add.
  const std::string& Finish();
  // The size the finished block will have.
  size_t size() const { return buf_.size() + 4 * (restarts_.size() + 1); }
  bool empty() const { return entries_ == 0; }
  const std::string& last_key() const { return last_key_; }
  void Reset() {
    buf_.clear();
    restarts_.clear();
    last_key_.clear();
    entries_ = 0;
  }

 private:
  std::string buf_;
  std::vector<uint32_t> restarts_;
  std::string last_key_;
  uint32_t entries_ = 0;
};

// Appends `contents` and its CRC32C trailer to `out`.
void AppendBlockWithTrailer(std::string* out, std::string_view contents);

// `raw` is a block with its trailer, read from `offset` of `path`: returns the contents once the
// checksum matches.
Result<std::string_view> CheckBlock(std::string_view raw, const std::string& path, uint64_t offset);

// Reads and checks the block at `h` of `file` (`file_size` bytes long).
Result<std::string> ReadBlock(const sync::RandomAccessFile& file, uint64_t file_size,
                              const BlockHandle& h);

// Walks the entries of checked block contents. Keys must strictly ascend and every restart
// point must start an entry that shares nothing: a walk from the first entry to the end checks
// both, so a block walked whole once (TableReader does, before caching it) may then be Sought.
// Anything malformed stops the cursor with kCorruption naming `path`, the block's offset and the
// entry's.
class BlockCursor {
 public:
  // kVerified: the block was walked whole before (TableReader::DataBlock's blocks): the cursor
  // skips the order and restart checks, keeping only the bounds checks that keep it in memory.
  enum class Trust { kUnchecked, kVerified };
  BlockCursor(std::string_view contents, const std::string* path, uint64_t block_offset,
              Trust trust = Trust::kUnchecked);
  // Starts over on another block of the same file, as if newly constructed.
  void Reset(std::string_view contents, uint64_t block_offset, Trust trust = Trust::kUnchecked);
  // Moves to the next entry (the first, on the first call). False at the end or on damage.
  bool Next();
  // Moves to the first entry whose key is >= `target` (binary search over the restart points,
  // then forward). False if there is none, or on damage.
  bool Seek(std::string_view target);
  std::string_view key() const { return key_; }
  std::string_view value() const { return value_; }
  const Status& status() const { return status_; }

 private:
  bool Fail(const char* why, size_t entry_offset);
  uint32_t RestartOffset(uint32_t i) const;
  // The key of the entry at restart point i (which shares nothing), or false on damage.
  bool RestartKey(uint32_t i, std::string_view* key);

  std::string_view contents_;
  const std::string* path_;
  uint64_t block_offset_;
  bool verified_;
  size_t data_end_ = 0;  // where the restart array begins
  uint32_t num_restarts_ = 0;
  uint32_t next_restart_ = 0;  // the restart point the walk reaches next
  size_t pos_ = 0;             // offset of the next entry
  bool started_ = false;       // key_ holds the previous entry's key
  std::string key_;
  std::string_view value_;
  Status status_;
};

// Data-block values: kind (1 byte), seq (varint), then the value or the encoded BlobRef.
void EncodeDataValue(std::string* out, uint8_t kind, uint64_t seq, std::string_view payload);
bool DecodeDataValue(std::string_view in, uint8_t* kind, uint64_t* seq, std::string_view* payload);
// Index-block values: the data block's handle, two varints.
void EncodeHandle(std::string* out, const BlockHandle& h);
bool DecodeHandle(std::string_view in, BlockHandle* h);

}  // namespace kvfs::engines::lsm
