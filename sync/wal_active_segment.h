// ActiveSegment: the segment the WAL appends records to, with what the write leader tracks
// about it: its number, where its records must end, whether it is sealed, and how much of it
// has been handed to writeback.
//
// Thread safety: none of its own. It belongs to the WAL's write leader (see wal.h for who that
// is at each moment); the one exception is that a sync leader may sync file() while no
// rotation can Replace it.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>

#include "sync/file_system.h"
#include "sync/status.h"

namespace kvfs::sync {

class ActiveSegment {
 public:
  // Closes the current file, if any, and takes over `file`: segment `number`, whose header is
  // written and durable, with records to end at `capacity`. If the close fails, nothing
  // changes and its error is returned.
  Status Replace(std::unique_ptr<WritableFile> file, uint64_t number, uint64_t capacity);

  // Whether a file is held (false before the first Replace and after Close).
  bool open() const { return file_ != nullptr; }
  uint64_t number() const { return number_; }
  uint64_t capacity() const { return capacity_; }
  // Bytes written to the file, header included. Requires open().
  uint64_t size() const { return file_->Size(); }
  WritableFile* file() const { return file_.get(); }

  // Whether a record of `record_size` bytes may follow `pending` bytes not yet appended. Never
  // once sealed; past the capacity only when the segment holds no record yet (a record larger
  // than a fresh segment is written anyway, and the file grows).
  bool Fits(uint64_t pending, uint64_t record_size) const;
  Status Append(std::string_view data) { return file_->Append(data); }
  // Marks the segment sealed (its end goes into the next segment's header, so nothing more may
  // go in), then fdatasyncs it. Sealed even if the sync fails.
  Status Seal();
  // Asks the OS to start writing back the whole pages written since the last hint, once there
  // are at least `every` bytes of them (0: never). See WalOptions::writeback_bytes.
  Status HintWriteback(uint64_t every);
  Status Close() { return file_->Close(); }

 private:
  std::unique_ptr<WritableFile> file_;
  uint64_t number_ = 0;
  uint64_t capacity_ = 0;        // where records end
  bool sealed_ = false;          // nothing more may go in
  uint64_t writeback_from_ = 0;  // bytes before this were hinted (or are durable)
};

}  // namespace kvfs::sync
