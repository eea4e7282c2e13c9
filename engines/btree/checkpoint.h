// The two small files that make a checkpoint atomic (FORMAT.md, "Checkpoints"):
//
//   <dir>/MANIFEST     the last completed checkpoint: its redo LSN R (every batch below R is in
//                      the page file, the log is replayed from R) and the page size. Replaced
//                      atomically (sync::WriteFileAtomically).
//   <dir>/doublewrite  the pages a checkpoint is about to write in place, with its redo LSN,
//                      written and DataSync'd before the first in-place write (as InnoDB's
//                      doublewrite buffer). A power cut that tears an in-place page write
//                      leaves this copy whole, and the open puts it back.
//
// Recovery rule: a doublewrite file that verifies and whose redo LSN is above the MANIFEST's
// belongs to a checkpoint that got as far as its in-place writes (some may be torn): its pages
// are the page file's state at its LSN. Any other doublewrite file (torn, or of the completed
// checkpoint) is ignored: the page file was not touched after it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "engines/btree/pager.h"
#include "sync/file_system.h"
#include "sync/status.h"

namespace kvfs::engines::btree {

inline constexpr char kPageFileName[] = "pages";
inline constexpr char kCheckpointFileName[] = "MANIFEST";
inline constexpr char kDoubleWriteFileName[] = "doublewrite";

struct CheckpointRecord {
  uint64_t redo_lsn = 0;
  uint32_t page_size = 0;
};

std::string EncodeCheckpoint(const CheckpointRecord& r);
// kCorruption naming `path` unless the bytes are one whole, verified record.
Result<CheckpointRecord> DecodeCheckpoint(std::string_view bytes, const std::string& path);

struct DoubleWrite {
  uint64_t redo_lsn = 0;
  uint32_t page_size = 0;
  PageImages pages;
};

// The doublewrite file's bytes for `pages` (each already sealed).
std::string EncodeDoubleWrite(uint64_t redo_lsn, size_t page_size, const PageImages& pages);
// The file's contents if it verifies whole (its checksum, and each page's), else nullopt: a
// doublewrite file that does not verify was being written when the power went out.
std::optional<DoubleWrite> DecodeDoubleWrite(std::string_view bytes);

}  // namespace kvfs::engines::btree
