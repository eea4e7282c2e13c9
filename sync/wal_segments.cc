#include "sync/wal_segments.h"

#include <algorithm>
#include <utility>

#include "sync/durable.h"
#include "sync/wal_format.h"

namespace kvfs::sync {

WalSegments::WalSegments(FileSystem* fs, std::string dir, std::unique_ptr<Directory> dir_handle,
                         std::vector<Segment> live, uint64_t first_number, uint64_t first_size,
                         uint64_t max_size, Preallocation preallocation)
    : fs_(fs),
      dir_(std::move(dir)),
      first_number_(first_number),
      first_size_(first_size),
      max_size_(max_size),
      preallocation_(preallocation),
      dir_handle_(std::move(dir_handle)),
      live_(std::move(live)) {}

std::string WalSegments::Path(uint64_t number) const {
  return JoinPath(dir_, wal::SegmentFileName(number));
}

// The segment an Open starts is small (its zero-fill was most of the time a store took to
// open), and a busy log still reaches full segments after a few rotations.
uint64_t WalSegments::Capacity(uint64_t number) const {
  const uint64_t min_size = wal::kSegmentHeaderSize + wal::kRecordHeaderSize;
  uint64_t size = std::clamp(first_size_, min_size, max_size_);
  for (uint64_t n = first_number_; n < number && size < max_size_; ++n) size *= 2;
  return std::min(size, max_size_);
}

Status WalSegments::Prepare(uint64_t number) {
  const std::string path = Path(number);
  KVFS_ASSIGN_OR_RETURN(auto file, fs_->NewWritableFile(path, CreateMode::kCreateNew));
  Status s;
  switch (preallocation_) {
    case Preallocation::kNone:
      break;
    case Preallocation::kFallocate:
      s = file->Preallocate(Capacity(number));
      break;
    case Preallocation::kZeroFill:
      s = file->AppendZeros(Capacity(number));
      break;
  }
  // fsync, not fdatasync: the new inode and its size must be durable.
  if (s.ok()) s = file->Sync();
  if (s.ok()) s = file->Close();
  if (s.ok()) {
    MutexLock lock(&dir_mu_);
    s = dir_handle_->Fsync();
  }
  if (!s.ok()) {
    file->Close().PermitUnchecked();
    // Never referenced; removing it gives the space back after ENOSPC.
    fs_->RemoveFile(path).PermitUnchecked();
  }
  return s;
}

Result<std::unique_ptr<WritableFile>> WalSegments::Activate(uint64_t number, uint64_t first_lsn,
                                                            uint64_t prev_number,
                                                            uint64_t prev_end) {
  KVFS_ASSIGN_OR_RETURN(auto file, fs_->NewWritableFile(Path(number), CreateMode::kOverwrite));
  // The size it was made, when space was reserved: the reader takes a newest segment that is
  // shorter for one cut short, not for a torn tail.
  const uint64_t capacity = preallocation_ == Preallocation::kNone ? 0 : Capacity(number);
  KVFS_RETURN_IF_ERROR(
      file->Append(wal::EncodeSegmentHeader({number, first_lsn, prev_number, prev_end, capacity})));
  KVFS_RETURN_IF_ERROR(file->DataSync());
  return file;
}

void WalSegments::Add(uint64_t number, uint64_t first_lsn) {
  MutexLock lock(&list_mu_);
  live_.push_back(Segment{number, first_lsn});
  ++counts_.created;
}

Status WalSegments::DeleteCheckpointed(uint64_t lsn, bool* dir_sync_failed) {
  *dir_sync_failed = false;
  // Held throughout: concurrent checkpoints delete in turn, oldest first.
  MutexLock dir_lock(&dir_mu_);
  std::vector<uint64_t> victims;
  {
    MutexLock lock(&list_mu_);
    // Segment i holds LSNs below segment i+1's first LSN; never touch the active (last) one.
    size_t n = 0;
    while (n + 1 < live_.size() && live_[n + 1].first_lsn <= lsn) ++n;
    for (size_t i = 0; i < n; ++i) victims.push_back(live_[i].number);
    live_.erase(live_.begin(), live_.begin() + static_cast<std::ptrdiff_t>(n));
  }
  if (victims.empty()) return Status::OK();
  // Oldest first, so a crash part-way leaves a gap that the reader recognises.
  for (uint64_t n : victims) KVFS_RETURN_IF_ERROR(fs_->RemoveFile(Path(n)));
  Status s = dir_handle_->Fsync();
  if (!s.ok()) {
    *dir_sync_failed = true;
    return s;
  }
  MutexLock lock(&list_mu_);
  counts_.deleted += victims.size();
  return Status::OK();
}

void WalSegments::RemoveUnused(uint64_t number) {
  MutexLock dir_lock(&dir_mu_);
  if (fs_->RemoveFile(Path(number)).ok()) dir_handle_->Fsync().PermitUnchecked();
}

Status WalSegments::WriteFailureNote(const wal::FailureNote& note) {
  MutexLock dir_lock(&dir_mu_);
  return WriteFileAtomically(fs_, JoinPath(dir_, wal::kFailureNoteName),
                             wal::EncodeFailureNote(note));
}

Status WalSegments::RemoveFailureNote() {
  MutexLock dir_lock(&dir_mu_);
  KVFS_RETURN_IF_ERROR(fs_->RemoveFile(JoinPath(dir_, wal::kFailureNoteName)));
  return dir_handle_->Fsync();
}

WalSegments::Counts WalSegments::counts() const {
  MutexLock lock(&list_mu_);
  return counts_;
}

}  // namespace kvfs::sync
