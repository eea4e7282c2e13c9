// Bitcask's file helpers: the shared cache of read handles, a buffered front-to-back reader
// (scanning a merged data file at open), and the writer of a merge's new files.
//
// Thread safety: FileCache may be used from any thread; BufferedReader and MergeWriter belong
// to one thread.
#pragma once

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engines/bitcask/format.h"
#include "engines/bitcask/keydir.h"
#include "sync/durable.h"
#include "sync/file_system.h"
#include "sync/wal_format.h"

namespace kvfs::engines::bitcask {

// Open read handles, one per file, shared by every reader. A handle of a file that a merge has
// since removed keeps reading the old bytes (unlink semantics) until evicted.
class FileCache {
 public:
  FileCache(sync::FileSystem* fs, std::string wal_dir, std::string merged_dir)
      : fs_(fs), wal_dir_(std::move(wal_dir)), merged_dir_(std::move(merged_dir)) {}

  std::string PathOf(FileKind kind, uint64_t number) const {
    return kind == FileKind::kWal ? sync::JoinPath(wal_dir_, sync::wal::SegmentFileName(number))
                                  : sync::JoinPath(merged_dir_, bitcask::DataFileName(number));
  }

  Result<std::shared_ptr<sync::RandomAccessFile>> Get(FileKind kind, uint64_t number) {
    const Key k{kind, number};
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = files_.find(k);
      if (it != files_.end()) return it->second;
    }
    // Opened without the lock: two threads may both open; the first insert wins.
    KVFS_ASSIGN_OR_RETURN(std::unique_ptr<sync::RandomAccessFile> f,
                          fs_->NewRandomAccessFile(PathOf(kind, number)));
    std::shared_ptr<sync::RandomAccessFile> shared(std::move(f));
    std::lock_guard<std::mutex> lock(mu_);
    return files_.emplace(k, std::move(shared)).first->second;
  }

  void Evict(FileKind kind, uint64_t number) {
    std::lock_guard<std::mutex> lock(mu_);
    files_.erase(Key{kind, number});
  }

  // Evicts every log segment handle whose number `keep` rejects.
  template <typename Pred>
  void EvictWalUnless(Pred keep) {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = files_.begin(); it != files_.end();) {
      if (it->first.first == FileKind::kWal && !keep(it->first.second)) {
        it = files_.erase(it);
      } else {
        ++it;
      }
    }
  }

  void Clear() {
    std::lock_guard<std::mutex> lock(mu_);
    files_.clear();
  }

 private:
  using Key = std::pair<FileKind, uint64_t>;
  sync::FileSystem* const fs_;
  const std::string wal_dir_;
  const std::string merged_dir_;
  std::mutex mu_;                                                 // leaf lock
  std::map<Key, std::shared_ptr<sync::RandomAccessFile>> files_;  // guarded by mu_
};

// Reads a file front to back through a 1 MiB window (scanning a merged data file at open).
class BufferedReader {
 public:
  BufferedReader(const sync::RandomAccessFile* file, uint64_t size) : file_(file), size_(size) {}

  // The bytes [offset, offset + n), which must lie inside the file.
  Result<std::string_view> Read(uint64_t offset, size_t n) {
    if (offset < start_ || offset + n > start_ + buf_.size()) {
      const size_t want = static_cast<size_t>(
          std::min<uint64_t>(std::max<size_t>(n, size_t{1} << 20), size_ - offset));
      buf_.resize(want);
      KVFS_ASSIGN_OR_RETURN(size_t got, file_->Read(offset, want, buf_.data()));
      if (got < n) {
        return Status::Corruption(file_->path() + ": short read at offset " +
                                  std::to_string(offset));
      }
      buf_.resize(got);
      start_ = offset;
    }
    return std::string_view(buf_).substr(offset - start_, n);
  }

 private:
  const sync::RandomAccessFile* file_;
  uint64_t size_;
  std::string buf_;
  uint64_t start_ = 0;
};

// Writes the files of one merge into merged/: records into "<n>.data.tmp" and the hint into
// "<n>.hint.tmp"; each finished pair is fdatasync'd and renamed to its final name. The caller
// fsyncs the directory once at the end, before the MANIFEST names any of them.
class MergeWriter {
 public:
  MergeWriter(sync::FileSystem* fs, std::string dir, uint64_t file_size, uint64_t first_number)
      : fs_(fs), dir_(std::move(dir)), file_size_(file_size), next_number_(first_number) {}

  // Appends one put entry (its bytes as read and verified) with its LSN; `loc` gets its place.
  Status Add(std::string_view key, uint64_t lsn, std::string_view entry, Location* loc) {
    if (file_ == nullptr) KVFS_RETURN_IF_ERROR(StartFile());
    const uint64_t record_offset = file_->Size() + buf_.size();
    bitcask::AppendRecord(&buf_, lsn, entry);
    loc->kind = FileKind::kMerged;
    loc->file = number_;
    loc->offset = record_offset + kRecordPrefixSize;
    loc->size = static_cast<uint32_t>(entry.size());
    loc->lsn = lsn;
    loc->tombstone = false;
    hint_.Add(key, loc->offset, entry.size(), lsn);
    bytes_ += entry.size();
    if (buf_.size() >= (size_t{1} << 20)) KVFS_RETURN_IF_ERROR(Flush());
    if (file_->Size() + buf_.size() >= file_size_) KVFS_RETURN_IF_ERROR(FinishFile());
    return Status::OK();
  }

  Status Finish() { return file_ != nullptr ? FinishFile() : Status::OK(); }

  // After a failure before anything refers to the files: removes what was written (best
  // effort; whatever survives a crash is removed at the next open as not named by MANIFEST).
  void Abandon() {
    if (file_ != nullptr) file_->Close().PermitUnchecked();
    file_.reset();
    for (const std::string& p : written_) fs_->RemoveFile(p).PermitUnchecked();
  }

  const std::vector<uint64_t>& files() const { return files_; }
  uint64_t next_number() const { return next_number_; }
  uint64_t bytes() const { return bytes_; }

 private:
  std::string Path(const std::string& name) const { return sync::JoinPath(dir_, name); }

  Status StartFile() {
    number_ = next_number_++;
    const std::string tmp = Path(bitcask::DataFileName(number_) + ".tmp");
    written_.push_back(tmp);
    KVFS_ASSIGN_OR_RETURN(file_, fs_->NewWritableFile(tmp, sync::CreateMode::kTruncate));
    hint_ = bitcask::HintBuilder(number_);
    buf_ = bitcask::EncodeDataHeader(number_);
    return Status::OK();
  }

  Status Flush() {
    Status s = file_->Append(buf_);
    buf_.clear();
    return s;
  }

  Status FinishFile() {
    KVFS_RETURN_IF_ERROR(Flush());
    KVFS_RETURN_IF_ERROR(file_->DataSync());
    KVFS_RETURN_IF_ERROR(file_->Close());
    file_.reset();
    const std::string data = Path(bitcask::DataFileName(number_));
    const std::string hint = Path(bitcask::HintFileName(number_));
    {
      const std::string hint_tmp = hint + ".tmp";
      written_.push_back(hint_tmp);
      KVFS_ASSIGN_OR_RETURN(auto f, fs_->NewWritableFile(hint_tmp, sync::CreateMode::kTruncate));
      KVFS_RETURN_IF_ERROR(f->Append(hint_.Finish()));
      KVFS_RETURN_IF_ERROR(f->DataSync());
      KVFS_RETURN_IF_ERROR(f->Close());
      KVFS_RETURN_IF_ERROR(fs_->Rename(hint_tmp, hint));
      written_.push_back(hint);
    }
    KVFS_RETURN_IF_ERROR(fs_->Rename(data + ".tmp", data));
    written_.push_back(data);
    files_.push_back(number_);
    return Status::OK();
  }

  sync::FileSystem* const fs_;
  const std::string dir_;
  const uint64_t file_size_;
  uint64_t next_number_;
  uint64_t number_ = 0;
  std::unique_ptr<sync::WritableFile> file_;
  std::string buf_;
  bitcask::HintBuilder hint_{0};
  std::vector<uint64_t> files_;
  std::vector<std::string> written_;
  uint64_t bytes_ = 0;
};

}  // namespace kvfs::engines::bitcask
