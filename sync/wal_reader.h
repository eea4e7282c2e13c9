// Reading a write-ahead log directory: recovery and offline checking.
//
// ReadWal never modifies anything, so `kvfs check` can run it on a live copy. It returns the
// records in LSN order together with what the writer needs to continue the log. The rules
// (WAL_FORMAT.md has the full story):
// - every segment but the newest is read exactly up to the end recorded in the next segment's
//   header; any bad record, LSN gap or short file before that end is kCorruption naming the
//   segment and the byte offset, never skipped;
// - the newest segment is read until the first record that is not valid. That is a clean end
//   (the bytes dropped are reported, with the segment and offset) only if it is provably a
//   torn last write: segments are zero-filled before use and a write lands as a prefix, so a
//   torn write leaves a bad record, at most kMaxWriteBytes of that write, then zeros. Anything
//   else is damage to records that may have been acknowledged, and kCorruption naming the
//   segment, the offset and what follows: a record with a valid checksum after the bad one, more
//   non-zero bytes than one write, a bad record whose every byte was written (a torn write
//   ends in zeros), or a segment shorter than it was made;
// - a failure note (wal_format.h) naming the newest segment ends it before the note's first
//   unacknowledged LSN, whatever follows: those records were never acknowledged durable, and
//   after a failed sync some may be missing while later ones are there;
// - a newest segment whose header is invalid and that holds nothing but zeros after it was
//   being created when the power went out (no record in it was ever acknowledged); it is
//   reported in `torn_segment` and ignored. With non-zero bytes after it, the header is damaged;
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
#include "sync/wal_format.h"

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

// A stretch of the log that a salvage read skipped: what the records there were is unknown.
struct WalDamage {
  uint64_t segment = 0;
  uint64_t offset = 0;  // where the skipped bytes start
  uint64_t bytes = 0;   // how many were skipped
  // LSNs of the records missing: [first_missing_lsn, next_lsn) (empty when no later record
  // says which LSN comes next, as at the end of the log).
  uint64_t first_missing_lsn = 0;
  uint64_t next_lsn = 0;
  std::string reason;  // "<path> at offset N: <problem>"
};

struct WalReadOptions {
  // Offline salvage only (never to open a log for writing): damage does not stop the read.
  // Each damaged stretch is skipped up to the next record with a valid checksum (a whole
  // segment whose header is damaged is skipped), reported in WalReadReport::damage, and the
  // read goes on; LSNs may then jump. The caller decides what a state with holes is worth.
  bool salvage = false;
};

struct WalReadReport {
  std::vector<WalSegmentInfo> segments;  // the live segments, oldest first
  uint64_t records_read = 0;             // every valid record, replayed or not
  uint64_t records_replayed = 0;         // those with LSN >= from_lsn
  uint64_t next_lsn = 1;                 // the LSN the next appended record gets
  // The newest segment's tail: non-zero bytes after its last valid record (a torn write) and
  // why reading stopped there. Zero-filled preallocated space is not counted as dropped.
  uint64_t dropped_bytes = 0;
  std::string dropped_reason;    // "<path> at offset N: <problem>"
  uint64_t dropped_segment = 0;  // where the dropped bytes are (when dropped_bytes > 0)
  uint64_t dropped_offset = 0;
  std::vector<WalDamage> damage;  // salvage reads only: every stretch skipped
  // The failure note (wal_format.h) the directory held, if any: when it names the newest
  // segment, the log ended before its first unacknowledged LSN.
  std::optional<wal::FailureNote> failure_note;
  std::optional<uint64_t> torn_segment;  // newest segment with an invalid header, ignored
  std::vector<uint64_t> stale_segments;  // left by an interrupted checkpoint, ignored

  // One line for logs: "3 segments, 1200 records, next LSN 1201, dropped 17 bytes (...)".
  std::string Summary() const;
};

// Reads the log in `dir`. An empty or missing directory is an empty log (next_lsn 1). It is
// kCorruption if records the caller needs (LSN >= from_lsn, from_lsn > 0) are missing because
// the oldest live segment starts after from_lsn.
Status ReadWal(FileSystem* fs, const std::string& dir, uint64_t from_lsn, const WalRecordFn& replay,
               WalReadReport* report, const WalReadOptions& options = {});
Status ReadWal(FileSystem* fs, const std::string& dir, uint64_t from_lsn, const WalReplayFn& replay,
               WalReadReport* report, const WalReadOptions& options = {});

}  // namespace kvfs::sync
