#include "sync/wal_active_segment.h"

#include <utility>

#include "sync/wal_format.h"

namespace kvfs::sync {

Status ActiveSegment::Replace(std::unique_ptr<WritableFile> file, uint64_t number,
                              uint64_t capacity) {
  if (file_) KVFS_RETURN_IF_ERROR(file_->Close());
  file_ = std::move(file);
  number_ = number;
  capacity_ = capacity;
  sealed_ = false;
  writeback_from_ = 0;  // the header is durable: starting from 0 costs nothing
  return Status::OK();
}

bool ActiveSegment::Fits(uint64_t pending, uint64_t record_size) const {
  if (sealed_) return false;
  const uint64_t used = file_->Size() + pending;
  const bool has_records = used > wal::kSegmentHeaderSize;
  return used + record_size <= capacity_ || !has_records;
}

Status ActiveSegment::Seal() {
  sealed_ = true;
  return file_->DataSync();
}

// Whole pages only: the page holding the end is written to again by the next group, which
// could have to wait for its writeback to end. Why hint at all: without the hints a segment
// reaches its rotation with all of it dirty, and the writer waits for the seal's fdatasync to
// write it all (docs/decisions.md has the numbers).
Status ActiveSegment::HintWriteback(uint64_t every) {
  if (every == 0) return Status::OK();
  constexpr uint64_t kPage = 4096;
  const uint64_t end = file_->Size() / kPage * kPage;
  if (end < writeback_from_ + every) return Status::OK();
  const uint64_t from = writeback_from_;
  writeback_from_ = end;
  return file_->StartWriteback(from, end - from);
}

}  // namespace kvfs::sync
