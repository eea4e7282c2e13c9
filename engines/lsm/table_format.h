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

#include "sync/file_system.h"
#include "sync/status.h"

namespace kvfs::engines::lsm {

inline constexpr char kTableMagic[8] = {'K', 'V', 'F', 'S', 'S', 'S', 'T', '\0'};
inline constexpr uint32_t kTableFormatVersion = 1;
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

// Builds one block: entries with keys in strictly ascending order, each key sharing a prefix with
// the previous one: varint shared, varint unshared, varint value length, key suffix, value.
class BlockBuilder {
 public:
  void Add(std::string_view key, std::string_view value);
  // The contents (no trailer). Reset() before reuse.
  const std::string& contents() const { return buf_; }
  size_t size() const { return buf_.size(); }
  bool empty() const { return buf_.empty(); }
  const std::string& last_key() const { return last_key_; }
  void Reset() {
    buf_.clear();
    last_key_.clear();
  }

 private:
  std::string buf_;
  std::string last_key_;
};

// Appends `contents` and its CRC32C trailer to `out`.
void AppendBlockWithTrailer(std::string* out, std::string_view contents);

// `raw` is a block with its trailer, read from `offset` of `path`: returns the contents once the
// checksum matches.
Result<std::string_view> CheckBlock(std::string_view raw, const std::string& path, uint64_t offset);

// Reads and checks the block at `h` of `file` (`file_size` bytes long).
Result<std::string> ReadBlock(const sync::RandomAccessFile& file, uint64_t file_size,
                              const BlockHandle& h);

// Walks the entries of checked block contents. Keys must strictly ascend; anything malformed
// stops the walk with kCorruption naming `path`, the block's offset and the entry's.
class BlockCursor {
 public:
  BlockCursor(std::string_view contents, const std::string* path, uint64_t block_offset)
      : contents_(contents), path_(path), block_offset_(block_offset) {}
  // Moves to the next entry (the first, on the first call). False at the end or on damage.
  bool Next();
  std::string_view key() const { return key_; }
  std::string_view value() const { return value_; }
  const Status& status() const { return status_; }

 private:
  bool Fail(const char* why, size_t entry_offset);

  std::string_view contents_;
  const std::string* path_;
  uint64_t block_offset_;
  size_t pos_ = 0;
  bool started_ = false;
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
