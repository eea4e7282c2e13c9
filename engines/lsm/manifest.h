// The MANIFEST: which tables (at which levels) and blob files make up the store, the log LSN
// from which recovery replays, and the next file number (FORMAT.md, "MANIFEST").
//
// It is a snapshot, not a log: every change (flush, compaction, blob GC) writes the whole state
// to MANIFEST.tmp, fdatasyncs it, renames it over MANIFEST and fsyncs the directory
// (sync::WriteFileAtomically). A crash leaves the old or the new file, both complete and
// CRC-checked. It stays small (about 60 bytes per table), so rewriting it is cheap next to the
// table a flush has just written.
//
//   magic "KVFSLSMM" (8), format version (4), body length (8), CRC32C of the body (4), body
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "sync/status.h"

namespace kvfs::engines::lsm {

inline constexpr char kManifestMagic[8] = {'K', 'V', 'F', 'S', 'L', 'S', 'M', 'M'};
inline constexpr uint32_t kManifestVersion = 1;
inline constexpr size_t kManifestHeaderSize = 24;

struct TableMeta {
  uint64_t number = 0;
  int level = 0;
  uint64_t file_size = 0;
  uint64_t entries = 0;
  std::string smallest;  // first and last key
  std::string largest;
  uint64_t smallest_seq = 0;  // lowest and highest LSN of its entries
  uint64_t largest_seq = 0;
  std::vector<uint64_t> blob_files;  // blob files its entries refer to, ascending
};

struct BlobMeta {
  uint64_t number = 0;
  uint64_t file_size = 0;
  uint64_t total_bytes = 0;    // bytes of its records
  uint64_t garbage_bytes = 0;  // bytes of records no table refers to any more
};

struct ManifestData {
  uint64_t log_lsn = 0;  // every batch with a lower LSN is in the tables
  uint64_t next_file_number = 1;
  std::vector<TableMeta> tables;
  std::vector<BlobMeta> blobs;
};

std::string EncodeManifest(const ManifestData& m);
// Checks the header, the checksum and every field (levels, key order, overlaps within a level
// >= 1, file numbers below next_file_number and unique, blob references to listed blob files);
// kCorruption naming `path` and the byte offset otherwise.
Result<ManifestData> DecodeManifest(std::string_view bytes, const std::string& path);

}  // namespace kvfs::engines::lsm
