// The non-virtual fronts of the file classes: where the sync failure policy lives.
#include "sync/file_system.h"

#include <algorithm>

namespace kvfs::sync {

Status FailureLatch::Check(const std::string& path) const {
  if (!failed()) return Status::OK();
  MutexLock lock(&mu_);
  return Status(StatusCode::kFailed,
                path + " refuses writes after an earlier failure (" + failure_.ToString() + ")",
                failure_.sys_errno() != 0 ? failure_.sys_errno() : EIO);
}

void FailureLatch::Latch(const Status& s) {
  MutexLock lock(&mu_);
  if (failure_.ok()) failure_ = s;
  failed_.store(true, std::memory_order_release);
}

Status FailureLatch::RecordWrite(Status s) {
  if (s.ok() || s.IsNoSpace()) return s;
  Latch(s);
  return s;
}

Status FailureLatch::RecordSync(Status s) {
  if (s.ok()) return s;
  if (s.IsNoSpace()) {
    // The space may come back; the pages this sync did not write will not.
    s = Status(StatusCode::kIOError, s.message() + " (a failed sync is never retried)",
               s.sys_errno());
  }
  Latch(s);
  return s;
}

uint64_t SyncFailures::generation() const {
  MutexLock lock(&mu_);
  return generation_;
}

void SyncFailures::Record(const std::string& path, const Status& s, uint64_t generation) {
  MutexLock lock(&mu_);
  if (generation == generation_) failed_.emplace(path, s);
}

Status SyncFailures::Find(const std::string& path) const {
  MutexLock lock(&mu_);
  auto it = failed_.find(path);
  if (it == failed_.end()) return Status::OK();
  return Status(StatusCode::kFailed,
                "a sync of " + path + " failed earlier in this process (" + it->second.ToString() +
                    "): its unwritten pages may be lost, so no later sync of it counts",
                it->second.sys_errno() != 0 ? it->second.sys_errno() : EIO);
}

void SyncFailures::Forget(const std::string& path) {
  MutexLock lock(&mu_);
  failed_.erase(path);
}

void SyncFailures::Move(const std::string& from, const std::string& to) {
  MutexLock lock(&mu_);
  failed_.erase(to);
  auto it = failed_.find(from);
  if (it == failed_.end()) return;
  Status s = std::move(it->second);
  failed_.erase(it);
  failed_.emplace(to, std::move(s));
}

void SyncFailures::Clear() {
  MutexLock lock(&mu_);
  failed_.clear();
  ++generation_;
}

Status WritableFile::Append(std::string_view data) {
  if (closed_) return Status::InvalidArgument("append to closed file " + path_);
  KVFS_RETURN_IF_ERROR(latch_.Check(path_));
  if (data.empty()) return Status::OK();
  KVFS_RETURN_IF_ERROR(latch_.RecordWrite(DoWrite(offset_, data)));
  offset_ += data.size();
  return Status::OK();
}

Status WritableFile::AppendZeros(uint64_t n) {
  if (closed_) return Status::InvalidArgument("append to closed file " + path_);
  KVFS_RETURN_IF_ERROR(latch_.Check(path_));
  if (n == 0) return Status::OK();
  KVFS_RETURN_IF_ERROR(latch_.RecordWrite(DoWriteZeros(offset_, n)));
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

Status WritableFile::AfterSync(Status s) {
  s = latch_.RecordSync(std::move(s));
  if (!s.ok() && sync_failures_ != nullptr) sync_failures_->Record(path_, s, sync_generation_);
  return s;
}

Status WritableFile::DataSync() {
  if (closed_) return Status::InvalidArgument("sync of closed file " + path_);
  KVFS_RETURN_IF_ERROR(latch_.Check(path_));
  return AfterSync(DoSync(/*data_only=*/true));
}

Status WritableFile::Sync() {
  if (closed_) return Status::InvalidArgument("sync of closed file " + path_);
  KVFS_RETURN_IF_ERROR(latch_.Check(path_));
  return AfterSync(DoSync(/*data_only=*/false));
}

Status WritableFile::Preallocate(uint64_t length) {
  if (closed_) return Status::InvalidArgument("preallocate of closed file " + path_);
  KVFS_RETURN_IF_ERROR(latch_.Check(path_));
  return latch_.RecordWrite(DoPreallocate(length));
}

Status WritableFile::StartWriteback(uint64_t offset, uint64_t n) {
  if (closed_) return Status::InvalidArgument("writeback of closed file " + path_);
  KVFS_RETURN_IF_ERROR(latch_.Check(path_));
  if (n == 0) return Status::OK();
  return latch_.RecordWrite(DoStartWriteback(offset, n));
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
  return latch_.RecordWrite(DoWrite(offset, data));
}

Status RandomRWFile::Truncate(uint64_t size) {
  if (closed_) return Status::InvalidArgument("truncate of closed file " + path_);
  KVFS_RETURN_IF_ERROR(latch_.Check(path_));
  return latch_.RecordWrite(DoTruncate(size));
}

Status RandomRWFile::AfterSync(Status s) {
  s = latch_.RecordSync(std::move(s));
  if (!s.ok() && sync_failures_ != nullptr) sync_failures_->Record(path_, s, sync_generation_);
  return s;
}

Status RandomRWFile::DataSync() {
  if (closed_) return Status::InvalidArgument("sync of closed file " + path_);
  KVFS_RETURN_IF_ERROR(latch_.Check(path_));
  return AfterSync(DoSync(/*data_only=*/true));
}

Status RandomRWFile::Sync() {
  if (closed_) return Status::InvalidArgument("sync of closed file " + path_);
  KVFS_RETURN_IF_ERROR(latch_.Check(path_));
  return AfterSync(DoSync(/*data_only=*/false));
}

Status RandomRWFile::Close() {
  if (closed_) return Status::OK();
  closed_ = true;
  return DoClose();
}

Status Directory::Fsync() {
  KVFS_RETURN_IF_ERROR(latch_.Check(path_));
  Status s = latch_.RecordSync(DoFsync());
  if (!s.ok() && sync_failures_ != nullptr) sync_failures_->Record(path_, s, sync_generation_);
  return s;
}

// --- FileSystem's fronts ----------------------------------------------------------------------

Result<std::unique_ptr<WritableFile>> FileSystem::NewWritableFile(const std::string& path,
                                                                  CreateMode mode) {
  KVFS_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> f, DoNewWritableFile(path, mode));
  f->sync_failures_ = &sync_failures_;
  f->sync_generation_ = sync_failures_.generation();
  // Truncating or creating a new file makes it another file: nothing old is left to lose.
  if (mode == CreateMode::kTruncate || mode == CreateMode::kCreateNew) {
    sync_failures_.Forget(path);
  } else if (Status earlier = sync_failures_.Find(path); !earlier.ok()) {
    f->latch_.RecordSync(earlier).PermitUnchecked();
  }
  return f;
}

Result<std::unique_ptr<RandomRWFile>> FileSystem::NewRandomRWFile(const std::string& path,
                                                                  bool create) {
  KVFS_ASSIGN_OR_RETURN(std::unique_ptr<RandomRWFile> f, DoNewRandomRWFile(path, create));
  f->sync_failures_ = &sync_failures_;
  f->sync_generation_ = sync_failures_.generation();
  if (Status earlier = sync_failures_.Find(path); !earlier.ok()) {
    f->latch_.RecordSync(earlier).PermitUnchecked();
  }
  return f;
}

Result<std::unique_ptr<Directory>> FileSystem::OpenDirectory(const std::string& path) {
  KVFS_ASSIGN_OR_RETURN(std::unique_ptr<Directory> d, DoOpenDirectory(path));
  d->sync_failures_ = &sync_failures_;
  d->sync_generation_ = sync_failures_.generation();
  if (Status earlier = sync_failures_.Find(path); !earlier.ok()) {
    d->latch_.RecordSync(earlier).PermitUnchecked();
  }
  return d;
}

Status FileSystem::RemoveDir(const std::string& path) {
  KVFS_RETURN_IF_ERROR(DoRemoveDir(path));
  sync_failures_.Forget(path);
  return Status::OK();
}

Status FileSystem::Rename(const std::string& from, const std::string& to) {
  KVFS_RETURN_IF_ERROR(DoRename(from, to));
  sync_failures_.Move(from, to);
  return Status::OK();
}

Status FileSystem::RemoveFile(const std::string& path) {
  KVFS_RETURN_IF_ERROR(DoRemoveFile(path));
  sync_failures_.Forget(path);
  return Status::OK();
}

}  // namespace kvfs::sync
