// Reading a write-ahead log directory: recovery and offline checking.
//
// ReadWal never modifies anything, so `kvfs check` can run it on a live copy. It returns the
// records in LSN order together with what the writer needs to continue the log. The rules
// (WAL_FORMAT.md has the full story):
// - every segment but the newest is read exactly up to the end recorded in the next segment's
//   header; any bad record, LSN gap or short file before that end is kCorruption naming the
//   segment and the byte offset, never skipped;
// - the newest segment is read until the first record that is not valid: a torn or zero-filled
//   tail left by a crash. That is a clean end; the bytes dropped are reported;
// - a newest segment whose header is invalid was being created when the power went out (no
//   record in it was ever acknowledged); it is reported in `torn_segment` and ignored;
// - older segments left behind by a checkpoint interrupted by a crash (a gap in the numbers
//   before the newest run of consecutive segments) are reported in `stale_segments` and
//   ignored, provided the caller does not need their records (`from_lsn`).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sync/file_system.h"

namespace kvfs::sync {

// One record as the reader delivers it. `payload` is valid only during the call.
struct WalRecord {
  uint64_t lsn = 0;
  std::string_view payload;
  uint64_t segment = 0;         // the segment file's number
  uint64_t payload_offset = 0;  // where the payload starts in that file
};

// Called once per record with LSN >= from_lsn, in LSN order. A non-OK return stops the read
// and is returned from ReadWal. Two shapes: most callers want the payload, an engine that
// reads values back from the log (Bitcask) wants its position too.
using WalReplayFn = std::function<Status(uint64_t lsn, std::string_view payload)>;
using WalRecordFn = std::function<Status(const WalRecord& record)>;

struct WalSegmentInfo {
  uint64_t number = 0;
  uint64_t first_lsn = 0;
  uint64_t valid_end = 0;  // byte offset just past the last valid record
  uint64_t records = 0;
};

struct WalReadReport {
  std::vector<WalSegmentInfo> segments;  // the live segments, oldest first
  uint64_t records_read = 0;             // every valid record, replayed or not
  uint64_t records_replayed = 0;         // those with LSN >= from_lsn
  uint64_t next_lsn = 1;                 // the LSN the next appended record gets
  // The newest segment's tail: non-zero bytes after its last valid record (a torn write) and
  // why reading stopped there. Zero-filled preallocated space is not counted as dropped.
  uint64_t dropped_bytes = 0;
  std::string dropped_reason;
  std::optional<uint64_t> torn_segment;  // newest segment with an invalid header, ignored
  std::vector<uint64_t> stale_segments;  // left by an interrupted checkpoint, ignored

  // One line for logs: "3 segments, 1200 records, next LSN 1201, dropped 17 bytes (...)".
  std::string Summary() const;
};

// Reads the log in `dir`. An empty or missing directory is an empty log (next_lsn 1). It is
// kCorruption if records the caller needs (LSN >= from_lsn, from_lsn > 0) are missing because
// the oldest live segment starts after from_lsn.
Status ReadWal(FileSystem* fs, const std::string& dir, uint64_t from_lsn, const WalRecordFn& replay,
               WalReadReport* report);
Status ReadWal(FileSystem* fs, const std::string& dir, uint64_t from_lsn, const WalReplayFn& replay,
               WalReadReport* report);

}  // namespace kvfs::sync
