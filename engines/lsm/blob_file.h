// Blob files: large values kept out of the tree (key-value separation, FORMAT.md "Blob files").
//
// A flush writes the large values of its memtable to one new blob file and puts a BlobRef in the
// table instead; compactions move the references, never the values, except when a blob file is
// being garbage-collected (then its live values are copied to a new blob file). A blob file is
// written whole, synced and renamed into place before any table or MANIFEST names it, and is
// never modified afterwards.
//
//   header: magic "KVFSBLB\0" (8), format version (4), file number (8), CRC32C of those (4)
//   record: CRC32C of the rest of the record (4), key size (4), value size (4), key, value
//
// Reading a value checks its record's CRC, sizes and key against the reference: a damaged or
// misdirected reference is kCorruption naming the file and offset, never another key's value.
//
// Thread safety: a writer belongs to one thread; a reader may be used from any number at once.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "engines/lsm/format.h"
#include "sync/file_system.h"

namespace kvfs::engines::lsm {

inline constexpr char kBlobMagic[8] = {'K', 'V', 'F', 'S', 'B', 'L', 'B', '\0'};
inline constexpr uint32_t kBlobFormatVersion = 1;
inline constexpr size_t kBlobHeaderSize = 24;
inline constexpr size_t kBlobRecordHeaderSize = 12;

inline uint64_t BlobRecordSize(uint64_t key_size, uint64_t value_size) {
  return kBlobRecordHeaderSize + key_size + value_size;
}

std::string EncodeBlobHeader(uint64_t number);
Status CheckBlobHeader(std::string_view bytes, uint64_t number, const std::string& path);
// `record` is the BlobRecordSize(key, ref size) bytes at `offset` of `path`: the value, once the
// record checks out (checksum, sizes, key).
Result<std::string_view> ParseBlobRecord(std::string_view record, std::string_view key,
                                         uint64_t value_size, const std::string& path,
                                         uint64_t offset);

class BlobWriter {
 public:
  // Creates `path` (kTruncate: a leftover from a crash is overwritten) and writes the header.
  static Result<std::unique_ptr<BlobWriter>> Create(sync::FileSystem* fs, const std::string& path,
                                                    uint64_t number);
  Result<BlobRef> Add(std::string_view key, std::string_view value);
  // Writes what is buffered, fdatasyncs and closes.
  Status Finish();

  uint64_t number() const { return number_; }
  uint64_t file_size() const { return offset_; }
  uint64_t record_bytes() const { return record_bytes_; }
  uint64_t records() const { return records_; }

 private:
  BlobWriter(std::unique_ptr<sync::WritableFile> file, uint64_t number)
      : file_(std::move(file)), number_(number) {}
  Status Flush();

  std::unique_ptr<sync::WritableFile> file_;
  const uint64_t number_;
  std::string buf_;
  uint64_t offset_ = 0;  // logical end: bytes written plus buffered
  uint64_t record_bytes_ = 0;
  uint64_t records_ = 0;
  Status status_;
};

class BlobReader {
 public:
  // Opens and checks the header.
  static Result<std::shared_ptr<BlobReader>> Open(sync::FileSystem* fs, const std::string& path,
                                                  uint64_t number);
  // The value `ref` points at, which must be a record of `key`.
  Result<std::string> Read(std::string_view key, const BlobRef& ref) const;

  const std::string& path() const { return file_->path(); }
  uint64_t number() const { return number_; }
  uint64_t file_size() const { return file_size_; }

 private:
  BlobReader() = default;
  std::unique_ptr<sync::RandomAccessFile> file_;
  uint64_t number_ = 0;
  uint64_t file_size_ = 0;
};

}  // namespace kvfs::engines::lsm
