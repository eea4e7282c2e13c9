#include "sync/wal_reader.h"

#include <algorithm>
#include <cstring>
#include <memory>

#include "sync/durable.h"
#include "sync/wal_format.h"

namespace kvfs::sync {
namespace {

// Serves exact-length reads of one file through a read-ahead window, so replaying many small
// records does not cost a pread each.
class BufferedFile {
 public:
  explicit BufferedFile(std::unique_ptr<RandomAccessFile> file) : file_(std::move(file)) {}

  // Reads up to `n` bytes at `offset`; fewer only at end of file.
  Result<std::string_view> Read(uint64_t offset, size_t n) {
    if (offset < window_start_ || offset + n > window_start_ + window_.size()) {
      const size_t want = std::max(n, kWindow);
      window_.resize(want);
      KVFS_ASSIGN_OR_RETURN(size_t got, file_->Read(offset, want, window_.data()));
      window_.resize(got);
      window_start_ = offset;
    }
    const size_t begin = static_cast<size_t>(offset - window_start_);
    const size_t avail = window_.size() - begin;
    return std::string_view(window_.data() + begin, std::min(n, avail));
  }

  const std::string& path() const { return file_->path(); }

 private:
  static constexpr size_t kWindow = size_t{1} << 20;
  std::unique_ptr<RandomAccessFile> file_;
  std::string window_;
  uint64_t window_start_ = 0;
};

struct SegmentFile {
  uint64_t number = 0;
  std::string path;
  uint64_t size = 0;
  std::optional<wal::SegmentHeader> header;
};

std::string At(const std::string& path, uint64_t offset) {
  return path + " at offset " + std::to_string(offset);
}

constexpr char kChecksumMismatch[] = "record checksum mismatch";

// Why a record at `offset` is not valid, or "" if it is. Fills `header` and `payload`.
struct RecordCheck {
  std::string problem;  // empty when valid
  bool zero_filled = false;
  bool lsn_mismatch = false;  // a valid checksum with an unexpected LSN
  wal::RecordHeader header;
  std::string_view payload;
};

Result<RecordCheck> CheckRecord(BufferedFile& f, uint64_t offset, uint64_t end) {
  RecordCheck c;
  if (end - offset < wal::kRecordHeaderSize) {
    c.problem = "record header cut short (" + std::to_string(end - offset) + " bytes left)";
    return c;
  }
  KVFS_ASSIGN_OR_RETURN(std::string_view hb, f.Read(offset, wal::kRecordHeaderSize));
  if (hb.size() < wal::kRecordHeaderSize) {
    c.problem = "file ends inside a record header";
    return c;
  }
  c.header = wal::DecodeRecordHeader(hb.data());
  if (c.header.crc == 0 && c.header.length == 0 && c.header.lsn == 0) {
    c.zero_filled = true;
    c.problem = "zero-filled space";
    return c;
  }
  const uint64_t room = end - offset - wal::kRecordHeaderSize;
  if (c.header.length > room || c.header.length > wal::kMaxRecordPayload) {
    c.problem = "record length " + std::to_string(c.header.length) + " runs past the end";
    return c;
  }
  // Copy the header: the next Read may move the window.
  char header_copy[wal::kRecordHeaderSize];
  std::copy(hb.begin(), hb.end(), header_copy);
  KVFS_ASSIGN_OR_RETURN(c.payload, f.Read(offset + wal::kRecordHeaderSize, c.header.length));
  if (c.payload.size() < c.header.length) {
    c.problem = "file ends inside a record";
    return c;
  }
  if (!wal::RecordChecksumMatches(c.header, header_copy, c.payload)) c.problem = kChecksumMismatch;
  return c;
}

// Counts the bytes in [from, size) up to and including the last non-zero one.
Result<uint64_t> NonZeroTail(BufferedFile& f, uint64_t from, uint64_t size) {
  uint64_t last_nonzero_end = from;
  for (uint64_t off = from; off < size;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(size - off, 1 << 20));
    KVFS_ASSIGN_OR_RETURN(std::string_view chunk, f.Read(off, n));
    if (chunk.empty()) break;
    // A preallocated tail is megabytes of zeros: the all-zero test (memcmp of the chunk with
    // itself shifted by one, vectorised by libc) is what runs; the byte loop only on damage.
    const bool all_zero =
        chunk[0] == 0 && std::memcmp(chunk.data(), chunk.data() + 1, chunk.size() - 1) == 0;
    for (size_t i = all_zero ? 0 : chunk.size(); i > 0; --i) {
      if (chunk[i - 1] != 0) {
        last_nonzero_end = off + i;
        break;
      }
    }
    off += chunk.size();
  }
  return last_nonzero_end - from;
}

// A record with a valid checksum found by scanning.
struct Found {
  uint64_t offset = 0;
  uint64_t lsn = 0;
};

// The first record in (from, end) with a valid checksum and an LSN of at least `min_lsn`, found
// by trying every byte offset: only damage pays for this. A record cannot start where its LSN
// field is outside what the bytes left could hold, which rules out most offsets at once.
Result<std::optional<Found>> FindValidRecord(BufferedFile& f, uint64_t from, uint64_t end,
                                             uint64_t min_lsn) {
  const uint64_t max_lsn = min_lsn + (end - from) / wal::kRecordHeaderSize + 1;
  for (uint64_t off = from + 1; off + wal::kRecordHeaderSize <= end; ++off) {
    KVFS_ASSIGN_OR_RETURN(std::string_view hb, f.Read(off, wal::kRecordHeaderSize));
    if (hb.size() < wal::kRecordHeaderSize) break;
    const wal::RecordHeader h = wal::DecodeRecordHeader(hb.data());
    if (h.lsn < min_lsn || h.lsn > max_lsn) continue;
    if (h.length > end - off - wal::kRecordHeaderSize) continue;
    KVFS_ASSIGN_OR_RETURN(RecordCheck c, CheckRecord(f, off, end));
    if (c.problem.empty()) return std::optional<Found>(Found{off, c.header.lsn});
  }
  return std::optional<Found>();
}

// How many records with valid checksums lie in [from, end), each found by FindValidRecord
// after the previous one (or read in sequence where they follow each other).
Result<uint64_t> CountValidRecords(BufferedFile& f, uint64_t from, uint64_t end, uint64_t min_lsn) {
  uint64_t count = 0;
  uint64_t off = from;
  uint64_t lsn = min_lsn;
  for (;;) {
    KVFS_ASSIGN_OR_RETURN(RecordCheck c, CheckRecord(f, off, end));
    if (!c.problem.empty()) {
      KVFS_ASSIGN_OR_RETURN(std::optional<Found> next, FindValidRecord(f, off, end, lsn));
      if (!next) return count;
      off = next->offset;
      continue;
    }
    ++count;
    lsn = c.header.lsn + 1;
    off += wal::RecordSize(c.header.length);
  }
}

// Why the bad record at `offset` of the newest segment is damage rather than a torn last write,
// or "" if a torn write explains it. A torn write (segments are zero-filled and synced before
// use, and a write lands as a prefix) leaves the bad record, at most one write's bytes, then
// zeros; so it never leaves a valid record after the bad one, never more non-zero bytes than one
// write, never a bad record whose last byte was written, and never a segment shorter than it
// was made.
Result<std::string> WhyDamage(BufferedFile& f, const SegmentFile& seg, uint64_t offset,
                              const RecordCheck& c, uint64_t lsn, uint64_t* nonzero_end) {
  KVFS_ASSIGN_OR_RETURN(uint64_t tail, NonZeroTail(f, offset, seg.size));
  *nonzero_end = offset + tail;
  if (seg.header->capacity > 0 && seg.size < seg.header->capacity) {
    return "the segment has " + std::to_string(seg.size) + " bytes but was made " +
           std::to_string(seg.header->capacity) + " bytes before use: it was cut short";
  }
  KVFS_ASSIGN_OR_RETURN(std::optional<Found> next, FindValidRecord(f, offset, *nonzero_end, lsn));
  if (next) {
    KVFS_ASSIGN_OR_RETURN(uint64_t n, CountValidRecords(f, next->offset, *nonzero_end, lsn));
    return std::to_string(n) + " record" + (n == 1 ? "" : "s") +
           " with valid checksums follow, the first at offset " + std::to_string(next->offset) +
           " (LSN " + std::to_string(next->lsn) + ")";
  }
  // One write is at most kMaxWriteBytes, or one larger record: trusted only if it fits.
  uint64_t write_bound = wal::kMaxWriteBytes;
  if (!c.zero_filled && wal::RecordSize(c.header.length) <= seg.size - offset) {
    write_bound = std::max<uint64_t>(write_bound, wal::RecordSize(c.header.length));
  }
  if (tail > write_bound) {
    return std::to_string(tail) + " non-zero bytes follow, more than one write leaves";
  }
  // The bytes up to the last non-zero one were written, as they are (a torn write is a prefix).
  // A torn write explains them only if some record with the expected LSN begins with them. Once
  // its length field was written, the record's LSN field is known too (the expected LSN), so:
  constexpr uint64_t kLengthEnd = 8, kLsnOffset = 8;
  if (!c.zero_filled && tail >= kLengthEnd) {
    KVFS_ASSIGN_OR_RETURN(std::string_view hb,
                          f.Read(offset, std::min<uint64_t>(tail, wal::kRecordHeaderSize)));
    char expected[wal::kRecordHeaderSize];
    std::copy(hb.begin(), hb.begin() + kLengthEnd, expected);
    wal::EncodeFixed64(expected + kLsnOffset, lsn);
    // 1. The LSN bytes that were written must be the expected LSN's.
    if (!std::equal(hb.begin() + kLsnOffset, hb.end(), expected + kLsnOffset)) {
      return "its LSN field was written and is not LSN " + std::to_string(lsn) +
             ": damaged after the write";
    }
    // 2. If no byte of the record is unknown but its LSN field's, the record is determined by
    // what was written and the expected LSN: a checksum that does not match it is damage. This
    // is the case of a record written to its last byte, and of an empty one whose LSN field
    // ends in zeros (a torn write ends in zeros, but so does such a header).
    const uint64_t size = wal::RecordSize(c.header.length);
    if (size <= std::max<uint64_t>(tail, wal::kRecordHeaderSize) && size <= seg.size - offset) {
      KVFS_ASSIGN_OR_RETURN(std::string_view payload,
                            f.Read(offset + wal::kRecordHeaderSize, c.header.length));
      wal::RecordHeader h = wal::DecodeRecordHeader(expected);
      if (payload.size() == c.header.length && !wal::RecordChecksumMatches(h, expected, payload)) {
        if (tail >= size) {
          return std::string(
              "the record was written to its last byte (a torn write ends in zeros)");
        }
        return "its bytes written and the expected LSN " + std::to_string(lsn) +
               " determine the whole record, and its checksum does not match";
      }
    }
  }
  // Once the length field was written: if the checksum matches the bytes written (and the
  // expected LSN) under another length, it is the length that was damaged, after a complete
  // write. (The LSN bytes written were checked above; those not written are the expected LSN's.)
  if (!c.zero_filled && tail >= kLengthEnd) {
    char header[wal::kRecordHeaderSize];
    KVFS_ASSIGN_OR_RETURN(std::string_view hb, f.Read(offset, wal::kRecordHeaderSize));
    std::copy(hb.begin(), hb.end(), header);
    wal::EncodeFixed64(header + kLsnOffset, lsn);
    // Payload bytes up to the zeros.
    const uint64_t written = tail > wal::kRecordHeaderSize ? tail - wal::kRecordHeaderSize : 0;
    // The payload may itself end in zeros: try a few lengths past the last non-zero byte.
    constexpr uint64_t kTrailingZeros = 64;
    const uint64_t room = seg.size - offset - wal::kRecordHeaderSize;
    for (uint64_t len = written; len <= std::min(written + kTrailingZeros, room); ++len) {
      if (len == c.header.length) continue;
      wal::EncodeFixed32(header + 4, static_cast<uint32_t>(len));
      KVFS_ASSIGN_OR_RETURN(std::string_view payload, f.Read(offset + wal::kRecordHeaderSize, len));
      wal::RecordHeader h = c.header;
      h.length = static_cast<uint32_t>(len);
      if (payload.size() == len && wal::RecordChecksumMatches(h, header, payload)) {
        return "its length field says " + std::to_string(c.header.length) +
               " but its checksum matches the " + std::to_string(len) +
               " bytes written: the length was damaged after a complete write";
      }
    }
  }
  return std::string();
}

}  // namespace

std::string WalReadReport::Summary() const {
  std::string s = std::to_string(segments.size()) + " segments, " + std::to_string(records_read) +
                  " records, next LSN " + std::to_string(next_lsn);
  if (dropped_bytes > 0 || !dropped_reason.empty()) {
    s += ", dropped " + std::to_string(dropped_bytes) + " bytes of torn tail (" + dropped_reason +
         ")";
  }
  if (torn_segment) s += ", ignored half-created segment " + std::to_string(*torn_segment);
  if (!stale_segments.empty()) {
    s += ", ignored " + std::to_string(stale_segments.size()) + " segments left by a checkpoint";
  }
  for (const WalDamage& d : damage) {
    s += "; skipped " + std::to_string(d.bytes) + " damaged bytes (" + d.reason + ")";
  }
  return s;
}

Status ReadWal(FileSystem* fs, const std::string& dir, uint64_t from_lsn, const WalReplayFn& replay,
               WalReadReport* report, const WalReadOptions& options) {
  return ReadWal(fs, dir, from_lsn,
                 WalRecordFn([&](const WalRecord& r) { return replay(r.lsn, r.payload); }), report,
                 options);
}

namespace {

// Reads the records of one segment in [offset, end) into `replay`, advancing *next_lsn. A bad
// record ends the read: in an older segment that is damage; in the newest one a torn last write
// (a clean end, its bytes reported as dropped) unless WhyDamage says otherwise. A salvage read
// skips damage to the next valid record instead, reporting each stretch it skipped.
Status ReadSegment(const SegmentFile& f, bool newest, uint64_t end, BufferedFile& file,
                   uint64_t from_lsn, const WalRecordFn& replay, const WalReadOptions& options,
                   uint64_t* next_lsn, WalReadReport* report, WalSegmentInfo* info) {
  uint64_t offset = wal::kSegmentHeaderSize;
  const std::optional<wal::FailureNote>& note = report->failure_note;
  const bool noted = newest && note && note->segment == f.number;
  while (offset < end) {
    if (noted && *next_lsn >= note->first_unacknowledged_lsn) {
      // The log failed here: nothing from this LSN on was acknowledged durable.
      KVFS_ASSIGN_OR_RETURN(report->dropped_bytes, NonZeroTail(file, offset, f.size));
      if (report->dropped_bytes > 0) {
        report->dropped_reason = At(f.path, offset) + ": the log failed at LSN " +
                                 std::to_string(note->first_unacknowledged_lsn) + " (" +
                                 note->error + "); nothing from it on was acknowledged durable";
        report->dropped_segment = f.number;
        report->dropped_offset = offset;
      }
      return Status::OK();
    }
    KVFS_ASSIGN_OR_RETURN(RecordCheck c, CheckRecord(file, offset, end));
    if (c.problem.empty() && c.header.lsn != *next_lsn &&
        !(options.salvage && c.header.lsn > *next_lsn)) {
      // A valid checksum cannot come from a torn write: this is damage even at the tail.
      c.problem = "record has LSN " + std::to_string(c.header.lsn) + ", expected " +
                  std::to_string(*next_lsn);
      c.lsn_mismatch = true;
    }
    if (!c.problem.empty()) {
      std::string why;
      uint64_t damage_end = end;
      if (c.lsn_mismatch) {
        why = "a record with a valid checksum cannot be torn";
      } else if (newest) {
        KVFS_ASSIGN_OR_RETURN(why, WhyDamage(file, f, offset, c, *next_lsn, &damage_end));
        if (why.empty()) {
          // A torn last write: the clean end of the log.
          report->dropped_bytes = damage_end - offset;
          if (report->dropped_bytes > 0) {
            report->dropped_reason = At(f.path, offset) + ": " + c.problem;
            report->dropped_segment = f.number;
            report->dropped_offset = offset;
          }
          return Status::OK();
        }
      }
      const std::string where = At(f.path, offset) + ": " + c.problem;
      if (!options.salvage) {
        std::string message = where;
        if (!why.empty()) message += "; " + why;
        if (newest)
          message += ": damage, not a torn tail (records after it may have been acknowledged)";
        return Status::Corruption(message);
      }
      KVFS_ASSIGN_OR_RETURN(std::optional<Found> next,
                            FindValidRecord(file, offset, damage_end, *next_lsn));
      WalDamage d{f.number,
                  offset,
                  (next ? next->offset : damage_end) - offset,
                  *next_lsn,
                  next ? next->lsn : 0,
                  where};
      report->damage.push_back(d);
      if (!next) return Status::OK();
      offset = next->offset;
      *next_lsn = next->lsn;
      continue;
    }
    ++report->records_read;
    ++info->records;
    if (*next_lsn >= from_lsn) {
      ++report->records_replayed;
      KVFS_RETURN_IF_ERROR(
          replay(WalRecord{*next_lsn, c.payload, f.number, offset + wal::kRecordHeaderSize}));
    }
    ++*next_lsn;
    offset += wal::RecordSize(c.header.length);
    info->valid_end = offset;
  }
  // Read to the file's end without a bad record: a newest segment shorter than it was made was
  // cut short at a record boundary (the records after it are gone, whatever they were).
  if (newest && f.header->capacity > 0 && f.size < f.header->capacity) {
    const std::string where = At(f.path, offset) + ": the segment has " + std::to_string(f.size) +
                              " bytes but was made " + std::to_string(f.header->capacity) +
                              " bytes before use: it was cut short";
    if (!options.salvage) return Status::Corruption(where);
    report->damage.push_back(WalDamage{f.number, offset, 0, *next_lsn, 0, where});
  }
  return Status::OK();
}

}  // namespace

Status ReadWal(FileSystem* fs, const std::string& dir, uint64_t from_lsn, const WalRecordFn& replay,
               WalReadReport* report, const WalReadOptions& options) {
  *report = WalReadReport();
  KVFS_ASSIGN_OR_RETURN(bool exists, fs->Exists(dir));
  if (!exists) return Status::OK();
  KVFS_ASSIGN_OR_RETURN(std::vector<std::string> names, fs->ListDir(dir));

  if (std::binary_search(names.begin(), names.end(), wal::kFailureNoteName)) {
    const std::string path = JoinPath(dir, wal::kFailureNoteName);
    KVFS_ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(fs, path));
    report->failure_note = wal::DecodeFailureNote(bytes);
    if (!report->failure_note) {
      return Status::Corruption(path + ": damaged failure note (" + std::to_string(bytes.size()) +
                                " bytes)");
    }
  }

  std::vector<SegmentFile> files;
  for (const std::string& name : names) {
    auto number = wal::ParseSegmentFileName(name);
    if (!number) continue;  // the lock file, temp files of other components
    SegmentFile f;
    f.number = *number;
    f.path = JoinPath(dir, name);
    KVFS_ASSIGN_OR_RETURN(f.size, fs->FileSize(f.path));
    KVFS_ASSIGN_OR_RETURN(auto file, fs->NewRandomAccessFile(f.path));
    std::string hb(wal::kSegmentHeaderSize, '\0');
    KVFS_ASSIGN_OR_RETURN(size_t got, file->Read(0, hb.size(), hb.data()));
    f.header = wal::DecodeSegmentHeader(std::string_view(hb.data(), got));
    files.push_back(std::move(f));
  }
  std::sort(files.begin(), files.end(),
            [](const SegmentFile& a, const SegmentFile& b) { return a.number < b.number; });

  // A newest segment with a bad header and nothing but zeros after it was being created when
  // power went out; no record in it was acknowledged, because its header is synced before its
  // first record is written. With anything written after the header, the header is damaged.
  // A header is written only into a segment already zero-filled to its full size, so a file
  // shorter than a header holding some of one was cut short. (An empty file cannot be told
  // from one just created.) Anywhere else a bad header is damage.
  if (!files.empty() && !files.back().header) {
    const SegmentFile& f = files.back();
    KVFS_ASSIGN_OR_RETURN(auto raw, fs->NewRandomAccessFile(f.path));
    BufferedFile file(std::move(raw));
    uint64_t written = 0;
    std::string why;
    if (f.size > wal::kSegmentHeaderSize) {
      KVFS_ASSIGN_OR_RETURN(written, NonZeroTail(file, wal::kSegmentHeaderSize, f.size));
      why = std::to_string(written) +
            " bytes written after it (records, which may have been acknowledged)";
    } else {
      KVFS_ASSIGN_OR_RETURN(written, NonZeroTail(file, 0, f.size));
      why = "the file is " + std::to_string(f.size) +
            " bytes, cut short: a header is written only into a segment made full size";
    }
    if (written > 0) {
      const std::string where = f.path + ": invalid segment header, " + why;
      if (!options.salvage) return Status::Corruption(where);
      report->damage.push_back(WalDamage{f.number, 0, f.size, 0, 0, where});
    } else {
      report->torn_segment = f.number;
    }
    files.pop_back();
  }
  // Older segments with a damaged header: a salvage read skips them whole.
  if (options.salvage) {
    std::erase_if(files, [&](const SegmentFile& f) {
      if (f.header && f.header->segment_number == f.number && f.header->first_lsn != 0) {
        return false;
      }
      report->damage.push_back(
          WalDamage{f.number, 0, f.size, 0, 0, f.path + ": invalid segment header"});
      return true;
    });
  }
  for (const SegmentFile& f : files) {
    if (!f.header) return Status::Corruption(f.path + ": invalid segment header");
    if (f.header->segment_number != f.number) {
      return Status::Corruption(f.path + ": header names segment " +
                                std::to_string(f.header->segment_number));
    }
    // LSNs start at 1 (the writer never starts a segment at 0): a checksummed header that
    // says 0 is damage, not a log to continue from LSN 0.
    if (f.header->first_lsn == 0) return Status::Corruption(f.path + ": header has first LSN 0");
  }
  // Only a checkpoint deletes segments, oldest first, so a gap means the segments before it
  // were being deleted when power went out: all their records are below the checkpoint.
  size_t first_live = 0;
  for (size_t i = 1; i < files.size(); ++i) {
    if (files[i].number != files[i - 1].number + 1 && !options.salvage) first_live = i;
  }
  for (size_t i = 0; i < first_live; ++i) report->stale_segments.push_back(files[i].number);
  files.erase(files.begin(), files.begin() + static_cast<std::ptrdiff_t>(first_live));

  if (files.empty()) {
    if (from_lsn > 1 && !options.salvage) {
      return Status::Corruption(dir + ": log has no segments but records from LSN " +
                                std::to_string(from_lsn) + " are needed");
    }
    return Status::OK();
  }
  // LSNs start at 1, so a caller that needs everything (from_lsn 0) needs LSN 1 on.
  const uint64_t needed = std::max<uint64_t>(from_lsn, 1);
  if (files.front().header->first_lsn > needed && !options.salvage) {
    const uint64_t prev = files.front().header->prev_segment_number;
    return Status::Corruption(
        (prev != 0 ? JoinPath(dir, wal::SegmentFileName(prev)) + " is missing: " : std::string()) +
        "the oldest segment, " + files.front().path + ", starts at LSN " +
        std::to_string(files.front().header->first_lsn) + " but records from LSN " +
        std::to_string(needed) + " are needed");
  }

  uint64_t next_lsn = files.front().header->first_lsn;
  for (size_t i = 0; i < files.size(); ++i) {
    const SegmentFile& f = files[i];
    const bool newest = i + 1 == files.size();
    uint64_t end = f.size;
    if (!newest) {
      const wal::SegmentHeader& next = *files[i + 1].header;
      if (next.prev_segment_number != f.number && !options.salvage) {
        return Status::Corruption(files[i + 1].path + ": header links to segment " +
                                  std::to_string(next.prev_segment_number) + ", expected " +
                                  std::to_string(f.number));
      }
      end = next.prev_segment_end;
      if (end > f.size || end < wal::kSegmentHeaderSize) {
        const std::string where = f.path + ": the next segment says its records end at " +
                                  std::to_string(end) + " but the file has " +
                                  std::to_string(f.size) + " bytes";
        if (!options.salvage) return Status::Corruption(where);
        end = std::clamp<uint64_t>(end, wal::kSegmentHeaderSize, f.size);
        report->damage.push_back(WalDamage{f.number, end, 0, next_lsn, 0, where});
      }
    }
    if (f.header->first_lsn < next_lsn) {
      return Status::Corruption(f.path + ": starts at LSN " + std::to_string(f.header->first_lsn) +
                                ", before LSN " + std::to_string(next_lsn) +
                                " already read from the previous segment");
    }
    // A later segment may start past the previous one's end (Wal::Open's LSN floor).
    next_lsn = f.header->first_lsn;

    KVFS_ASSIGN_OR_RETURN(auto raw, fs->NewRandomAccessFile(f.path));
    BufferedFile file(std::move(raw));
    WalSegmentInfo info{f.number, f.header->first_lsn, wal::kSegmentHeaderSize, 0};
    KVFS_RETURN_IF_ERROR(
        ReadSegment(f, newest, end, file, from_lsn, replay, options, &next_lsn, report, &info));
    report->segments.push_back(info);
  }
  report->next_lsn = next_lsn;
  return Status::OK();
}

}  // namespace kvfs::sync
