// Version: one immutable set of live tables (per level) and blob files, as named by a MANIFEST.
//
// Level 0 holds flushed tables, which may overlap; they are ordered newest first (by their
// highest LSN: distinct flushes cover disjoint LSN ranges). Levels 1 and deeper are sorted runs:
// tables ordered by key, never overlapping. For any key, a shallower level holds newer data than
// a deeper one, so a lookup stops at the first level that has the key.
//
// Changes never modify a Version: ApplyEdit builds the next one. Readers hold a shared_ptr to
// the version they started with, which keeps its tables' and blob files' open handles (and so
// their bytes, even once deleted) alive until they finish.
//
// Thread safety: a Version is immutable once built; share it freely.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "engines/lsm/blob_file.h"
#include "engines/lsm/format.h"
#include "engines/lsm/iterator.h"
#include "engines/lsm/manifest.h"
#include "engines/lsm/table_reader.h"

namespace kvfs::engines::lsm {

struct Table {
  TableMeta meta;
  std::shared_ptr<TableReader> reader;
};
using TablePtr = std::shared_ptr<const Table>;

struct BlobFile {
  BlobMeta meta;
  std::shared_ptr<BlobReader> reader;
};

class Version {
 public:
  std::array<std::vector<TablePtr>, kNumLevels> levels;
  std::map<uint64_t, BlobFile> blobs;
  uint64_t log_lsn = 0;

  ManifestData ToManifest(uint64_t next_file_number) const;
  uint64_t LevelBytes(int level) const;
  uint64_t TableCount() const;
  uint64_t EntryCount() const;

  struct Found {
    ValueKind kind;
    std::string payload;
  };
  // The newest table entry for `key`, if any table has one.
  Result<std::optional<Found>> Get(std::string_view key) const;
  // The value of a kBlob entry of `key`, read from its blob file.
  Result<std::string> ReadBlob(std::string_view key, std::string_view encoded_ref) const;
  // True if a table in a level deeper than `level` has `key` in its key range (-1: any level).
  bool KeyRangeBelowHas(int level, std::string_view key) const;
  // The tables of `level` whose key ranges intersect [smallest, largest].
  std::vector<TablePtr> Overlapping(int level, std::string_view smallest,
                                    std::string_view largest) const;
  // An iterator per level 0 table (newest first), then one per non-empty deeper level.
  // The iterators refer to this Version, which must outlive them.
  void AddIterators(std::vector<std::unique_ptr<InternalIterator>>* out) const;
};

struct VersionEdit {
  std::optional<uint64_t> log_lsn;
  std::vector<TablePtr> added;  // each at its meta.level
  std::set<uint64_t> removed;   // table numbers
  std::vector<BlobFile> added_blobs;
  std::map<uint64_t, uint64_t> garbage;  // blob file number -> bytes that became dead
};

// The version after `edit`. Blob files all of whose bytes are dead (and that no table refers
// to) are left out; their numbers are appended to *dead_blobs for deletion once the MANIFEST
// without them is durable.
std::shared_ptr<Version> ApplyEdit(const Version& base, const VersionEdit& edit,
                                   std::vector<uint64_t>* dead_blobs);

// Iterates a sorted run of non-overlapping tables (one level >= 1) as one stream, opening each
// table's iterator only when reached. `tables` must outlive the iterator (a Version the caller
// holds, or a compaction job's run): not copying it keeps a scan from touching every table's
// reference count. `mode`: how the tables' iterators read their blocks.
std::unique_ptr<InternalIterator> NewLevelIterator(
    const std::vector<TablePtr>* tables,
    TableReader::ReadMode mode = TableReader::ReadMode::kCached);

// Merges child iterators into one ascending stream. Children are ranked: for equal keys, the
// lower index is newer and comes first. With `newest_only`, only the first (newest) entry of
// each key is produced: what reads want. Without it, every entry comes out (compactions count
// the shadowed ones). Any child's error stops the stream with that status.
std::unique_ptr<InternalIterator> NewMergingIterator(
    std::vector<std::unique_ptr<InternalIterator>> children, bool newest_only);

}  // namespace kvfs::engines::lsm
