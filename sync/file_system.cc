// The non-virtual fronts of the file classes: where the sync failure policy lives.
#include "sync/file_system.h"

#include <algorithm>

namespace kvfs::sync {

Status FailureLatch::Check(const std::string& path) const {
  if (!failed()) return Status::OK();
  std::lock_guard<std::mutex> lock(mu_);
  return Status(StatusCode::kFailed,
                path + " refuses writes after an earlier failure (" + failure_.ToString() + ")",
                failure_.sys_errno() != 0 ? failure_.sys_errno() : EIO);
}

Status FailureLatch::Record(Status s) {
  if (s.ok() || s.IsNoSpace()) return s;
  std::lock_guard<std::mutex> lock(mu_);
  if (failure_.ok()) failure_ = s;
  failed_.store(true, std::memory_order_release);
  return s;
}

Status WritableFile::Append(std::string_view data) {
  if (closed_) return Status::InvalidArgument("append to closed file " + path_);
  KVFS_RETURN_IF_ERROR(latch_.Check(path_));
  if (data.empty()) return Status::OK();
  KVFS_RETURN_IF_ERROR(latch_.Record(DoWrite(offset_, data)));
  offset_ += data.size();
  return Status::OK();
}

Status WritableFile::AppendZeros(uint64_t n) {
  if (closed_) return Status::InvalidArgument("append to closed file " + path_);
  KVFS_RETURN_IF_ERROR(latch_.Check(path_));
  if (n == 0) return Status::OK();
  KVFS_RETURN_IF_ERROR(latch_.Record(DoWriteZeros(offset_, n)));
  offset_ += n;
  return Status::OK();
}

Status WritableFile::DoWriteZeros(uint64_t offset, uint64_t n) {
  const std::string zeros(std::min<uint64_t>(n, 1 << 20), '\0');
  for (uint64_t done = 0; done < n;) {
    const uint64_t m = std::min<uint64_t>(zeros.size(), n - done);
    KVFS_RETURN_IF_ERROR(DoWrite(offset + done, std::string_view(zeros.data(), m)));
    done += m;
  }
  return Status::OK();
}

Status WritableFile::DataSync() {
  if (closed_) return Status::InvalidArgument("sync of closed file " + path_);
  KVFS_RETURN_IF_ERROR(latch_.Check(path_));
  return latch_.Record(DoSync(/*data_only=*/true));
}

Status WritableFile::Sync() {
  if (closed_) return Status::InvalidArgument("sync of closed file " + path_);
  KVFS_RETURN_IF_ERROR(latch_.Check(path_));
  return latch_.Record(DoSync(/*data_only=*/false));
}

Status WritableFile::Preallocate(uint64_t length) {
  if (closed_) return Status::InvalidArgument("preallocate of closed file " + path_);
  KVFS_RETURN_IF_ERROR(latch_.Check(path_));
  return latch_.Record(DoPreallocate(length));
}

Status WritableFile::StartWriteback(uint64_t offset, uint64_t n) {
  if (closed_) return Status::InvalidArgument("writeback of closed file " + path_);
  KVFS_RETURN_IF_ERROR(latch_.Check(path_));
  if (n == 0) return Status::OK();
  return latch_.Record(DoStartWriteback(offset, n));
}

Status WritableFile::Close() {
  if (closed_) return Status::OK();
  closed_ = true;
  return DoClose();
}

Status RandomRWFile::Write(uint64_t offset, std::string_view data) {
  if (closed_) return Status::InvalidArgument("write to closed file " + path_);
  KVFS_RETURN_IF_ERROR(latch_.Check(path_));
  if (data.empty()) return Status::OK();
  return latch_.Record(DoWrite(offset, data));
}

Status RandomRWFile::Truncate(uint64_t size) {
  if (closed_) return Status::InvalidArgument("truncate of closed file " + path_);
  KVFS_RETURN_IF_ERROR(latch_.Check(path_));
  return latch_.Record(DoTruncate(size));
}

Status RandomRWFile::DataSync() {
  if (closed_) return Status::InvalidArgument("sync of closed file " + path_);
  KVFS_RETURN_IF_ERROR(latch_.Check(path_));
  return latch_.Record(DoSync(/*data_only=*/true));
}

Status RandomRWFile::Sync() {
  if (closed_) return Status::InvalidArgument("sync of closed file " + path_);
  KVFS_RETURN_IF_ERROR(latch_.Check(path_));
  return latch_.Record(DoSync(/*data_only=*/false));
}

Status RandomRWFile::Close() {
  if (closed_) return Status::OK();
  closed_ = true;
  return DoClose();
}

Status Directory::Fsync() {
  KVFS_RETURN_IF_ERROR(latch_.Check(path_));
  return latch_.Record(DoFsync());
}

}  // namespace kvfs::sync
