// Bitcask's own files: merged data files, their hint files, and the MANIFEST. The layouts are
// specified in FORMAT.md beside this file; keep the two in step. (The active and recent data
// files are write-ahead-log segments, whose format is sync/WAL_FORMAT.md.)
//
// Every decoder checks a CRC32C before trusting a length, so damaged bytes are kCorruption
// naming the file (and offset), never a huge allocation or a wrong value.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sync/status.h"

namespace kvfs::engines::bitcask {

// --- Merged data file: header, then records until the end of the file. ---------------------
inline constexpr size_t kDataHeaderSize = 32;
// A record is crc32c(4) lsn(8) entry, where entry is a write-batch put entry (write_batch.h)
// and the record CRC covers the LSN and the entry's own CRC, so one check chains to the rest.
inline constexpr size_t kRecordPrefixSize = 12;

std::string EncodeDataHeader(uint64_t file_number);
// kCorruption naming `path` unless `bytes` starts with a valid header for `file_number`.
Status CheckDataHeader(std::string_view bytes, uint64_t file_number, const std::string& path);
// Appends one record holding `entry` (an encoded put entry) with `lsn`.
void AppendRecord(std::string* out, uint64_t lsn, std::string_view entry);
// The LSN of a record whose first kRecordPrefixSize + 4 bytes are at `p`, or nullopt if the
// record CRC does not match (the entry's own CRC is checked separately, by DecodeEntry).
std::optional<uint64_t> DecodeRecordPrefix(const char* p);

// --- Hint file: one per merged data file, everything needed to rebuild its keydir part. ------
struct HintEntry {
  std::string key;
  uint64_t entry_offset = 0;  // of the entry (not the record) in the data file
  uint64_t entry_size = 0;
  uint64_t lsn = 0;
};

// Builds a hint file incrementally (the merge adds one entry per record it writes).
class HintBuilder {
 public:
  explicit HintBuilder(uint64_t file_number);
  void Add(std::string_view key, uint64_t entry_offset, uint64_t entry_size, uint64_t lsn);
  // The complete file: header, entries, count and CRC footer.
  std::string Finish();

 private:
  std::string rep_;
  uint64_t count_ = 0;
};

// Decodes a whole hint file; kCorruption naming `path` if its CRC, header or framing is wrong.
Result<std::vector<HintEntry>> DecodeHintFile(std::string_view bytes, uint64_t file_number,
                                              const std::string& path);

// --- MANIFEST: which merged files are live, and the LSN they cover. --------------------------
struct Manifest {
  // Every log record with LSN < merged_lsn is represented in the merged files (its key's
  // latest value as of merged_lsn, or nothing if that was a delete).
  uint64_t merged_lsn = 0;
  uint64_t next_file_number = 1;  // merged files are numbered from here on, never reused
  std::vector<uint64_t> files;    // the live merged data files, ascending
};

std::string EncodeManifest(const Manifest& m);
Result<Manifest> DecodeManifest(std::string_view bytes, const std::string& path);

// "<16 decimal digits>.data" / ".hint", and the inverse (nullopt unless exactly that form).
std::string DataFileName(uint64_t number);
std::string HintFileName(uint64_t number);
std::optional<uint64_t> ParseDataFileName(std::string_view name);
std::optional<uint64_t> ParseHintFileName(std::string_view name);

}  // namespace kvfs::engines::bitcask
