#include "engines/lsm/blob_file.h"

#include <cstring>

#include "engines/lsm/coding.h"
#include "sync/crc32c.h"

namespace kvfs::engines::lsm {

namespace crc32c = sync::crc32c;

namespace {
constexpr size_t kWriteBuffer = size_t{1} << 20;
}

std::string EncodeBlobHeader(uint64_t number) {
  std::string h(kBlobMagic, sizeof(kBlobMagic));
  PutFixed32(&h, kBlobFormatVersion);
  PutFixed64(&h, number);
  PutFixed32(&h, crc32c::Value(h));
  return h;
}

Status CheckBlobHeader(std::string_view bytes, uint64_t number, const std::string& path) {
  auto fail = [&](const std::string& why) {
    return Status::Corruption("blob file " + path + " at offset 0: header " + why);
  };
  if (bytes.size() < kBlobHeaderSize) return fail("cut short");
  if (std::memcmp(bytes.data(), kBlobMagic, sizeof(kBlobMagic)) != 0) {
    return fail("has a bad magic number (not a kvfs blob file)");
  }
  if (DecodeFixed32(bytes.data() + 20) != crc32c::Value(bytes.data(), 20)) {
    return fail("checksum mismatch");
  }
  if (DecodeFixed32(bytes.data() + 8) != kBlobFormatVersion) return fail("has an unknown version");
  if (DecodeFixed64(bytes.data() + 12) != number) {
    return fail("names file number " + std::to_string(DecodeFixed64(bytes.data() + 12)));
  }
  return Status::OK();
}

Result<std::string_view> ParseBlobRecord(std::string_view record, std::string_view key,
                                         uint64_t value_size, const std::string& path,
                                         uint64_t offset) {
  auto fail = [&](const std::string& why) {
    return Status::Corruption("blob file " + path + " at offset " + std::to_string(offset) +
                              ": record " + why);
  };
  if (record.size() != BlobRecordSize(key.size(), value_size)) return fail("cut short");
  if (DecodeFixed32(record.data()) != crc32c::Value(record.data() + 4, record.size() - 4)) {
    return fail("checksum mismatch");
  }
  if (DecodeFixed32(record.data() + 4) != key.size() ||
      DecodeFixed32(record.data() + 8) != value_size) {
    return fail("sizes differ from the table's reference");
  }
  if (record.substr(kBlobRecordHeaderSize, key.size()) != key) return fail("holds another key");
  return record.substr(kBlobRecordHeaderSize + key.size());
}

Result<std::unique_ptr<BlobWriter>> BlobWriter::Create(sync::FileSystem* fs,
                                                       const std::string& path, uint64_t number) {
  KVFS_ASSIGN_OR_RETURN(std::unique_ptr<sync::WritableFile> file,
                        fs->NewWritableFile(path, sync::CreateMode::kTruncate));
  std::unique_ptr<BlobWriter> w(new BlobWriter(std::move(file), number));
  w->buf_ = EncodeBlobHeader(number);
  w->offset_ = w->buf_.size();
  return w;
}

Result<BlobRef> BlobWriter::Add(std::string_view key, std::string_view value) {
  KVFS_RETURN_IF_ERROR(status_);
  const BlobRef ref{number_, offset_, value.size()};
  const size_t start = buf_.size();
  PutFixed32(&buf_, 0);  // CRC, filled in below
  PutFixed32(&buf_, static_cast<uint32_t>(key.size()));
  PutFixed32(&buf_, static_cast<uint32_t>(value.size()));
  buf_.append(key);
  buf_.append(value);
  const uint32_t crc = crc32c::Value(buf_.data() + start + 4, buf_.size() - start - 4);
  EncodeFixed32(buf_.data() + start, crc);
  const uint64_t n = BlobRecordSize(key.size(), value.size());
  offset_ += n;
  record_bytes_ += n;
  ++records_;
  if (buf_.size() >= kWriteBuffer) KVFS_RETURN_IF_ERROR(Flush());
  return ref;
}

Status BlobWriter::Flush() {
  if (status_.ok() && !buf_.empty()) status_ = file_->Append(buf_);
  buf_.clear();
  return status_;
}

Status BlobWriter::Finish() {
  KVFS_RETURN_IF_ERROR(Flush());
  KVFS_RETURN_IF_ERROR(file_->DataSync());
  return file_->Close();
}

Result<std::shared_ptr<BlobReader>> BlobReader::Open(sync::FileSystem* fs, const std::string& path,
                                                     uint64_t number) {
  std::shared_ptr<BlobReader> r(new BlobReader());
  KVFS_ASSIGN_OR_RETURN(r->file_, fs->NewRandomAccessFile(path));
  KVFS_ASSIGN_OR_RETURN(r->file_size_, r->file_->Size());
  r->number_ = number;
  char header[kBlobHeaderSize];
  KVFS_ASSIGN_OR_RETURN(size_t got, r->file_->Read(0, kBlobHeaderSize, header));
  KVFS_RETURN_IF_ERROR(CheckBlobHeader(std::string_view(header, got), number, path));
  return r;
}

Result<std::string> BlobReader::Read(std::string_view key, const BlobRef& ref) const {
  // Bounded by the file's size before anything is allocated: a garbage reference cannot ask
  // for more than the file holds.
  if (ref.offset < kBlobHeaderSize || ref.offset > file_size_ ||
      ref.size > file_size_ - ref.offset ||
      BlobRecordSize(key.size(), ref.size) > file_size_ - ref.offset) {
    return Status::Corruption("blob file " + path() + " at offset " + std::to_string(ref.offset) +
                              ": reference to a " + std::to_string(ref.size) +
                              "-byte value runs past the end of the file");
  }
  std::string record(BlobRecordSize(key.size(), ref.size), '\0');
  KVFS_ASSIGN_OR_RETURN(size_t got, file_->Read(ref.offset, record.size(), record.data()));
  if (got != record.size()) {
    return Status::Corruption("blob file " + path() + " at offset " + std::to_string(ref.offset) +
                              ": record cut short (file too short)");
  }
  KVFS_ASSIGN_OR_RETURN(std::string_view value,
                        ParseBlobRecord(record, key, ref.size, path(), ref.offset));
  // Move the value to the front rather than copying it out again.
  const size_t skip = record.size() - value.size();
  record.erase(0, skip);
  return record;
}

}  // namespace kvfs::engines::lsm
