// The write-ahead log reader on arbitrary segment files.
//
// Input: one or more segment files separated by kFileSeparator. Each piece is stored in an
// in-memory FaultFileSystem as /wal/<number>.wal, the number taken from its header when the
// header decodes (so pieces chain into a real log), else one past the previous piece's.
// Then:
// - ReadWal must return (OK or an error), and every record it delivers must be exactly what
//   the file holds at that position: length, LSN and a matching CRC32C; LSNs ascend;
// - when ReadWal accepts the log, Wal::Open must accept it too and replay the same records;
//   one more record appended and the log closed, ReadWal must read the old records plus it;
// - segment headers round-trip: decode(encode(h)) == h.
// Every input runs as is and again with its checksums recomputed (fuzz_util.h).
#include <map>
#include <string>
#include <vector>

#include "sync/fault_file_system.h"
#include "sync/wal.h"
#include "sync/wal_format.h"
#include "sync/wal_reader.h"
#include "tests/fuzz/fuzz_util.h"

namespace kvfs::fuzz {
namespace {

namespace wal = sync::wal;

struct Seen {
  uint64_t lsn;
  std::string payload;
  bool operator==(const Seen&) const = default;
};

void CheckHeaderRoundTrip(std::string_view piece) {
  const auto h = wal::DecodeSegmentHeader(piece);
  if (!h) return;
  const std::string enc = wal::EncodeSegmentHeader(*h);
  const auto again = wal::DecodeSegmentHeader(enc);
  FUZZ_CHECK(again && again->segment_number == h->segment_number &&
                 again->first_lsn == h->first_lsn &&
                 again->prev_segment_number == h->prev_segment_number &&
                 again->prev_segment_end == h->prev_segment_end,
             "segment header round trip");
  // The reserved bytes are covered by the CRC but not checked; with them zero the encoding
  // is the input.
  if (piece.substr(48, 12) == std::string(12, '\0')) {
    FUZZ_CHECK(enc == piece.substr(0, wal::kSegmentHeaderSize), "header re-encoding");
  }
}

// Reads the log and checks every record against the raw file bytes.
Status ReadChecked(sync::FileSystem* fs, const std::map<uint64_t, std::string>& files,
                   std::vector<Seen>* seen, sync::WalReadReport* report) {
  uint64_t prev_lsn = 0, prev_segment = 0;
  Status s = sync::ReadWal(
      fs, "/wal", 0, sync::WalRecordFn([&](const sync::WalRecord& r) -> Status {
        auto it = files.find(r.segment);
        FUZZ_CHECK(it != files.end(), "record from an unknown segment");
        const std::string& bytes = it->second;
        FUZZ_CHECK(r.payload_offset >= wal::kSegmentHeaderSize + wal::kRecordHeaderSize,
                   "payload inside the segment header");
        FUZZ_CHECK(
            r.payload_offset <= bytes.size() && r.payload.size() <= bytes.size() - r.payload_offset,
            "payload past the end of the file");
        const char* hb = bytes.data() + r.payload_offset - wal::kRecordHeaderSize;
        const wal::RecordHeader h = wal::DecodeRecordHeader(hb);
        FUZZ_CHECK(h.length == r.payload.size(), "length field");
        FUZZ_CHECK(h.lsn == r.lsn, "lsn field");
        FUZZ_CHECK(wal::RecordChecksumMatches(h, hb, r.payload), "delivered a bad CRC");
        FUZZ_CHECK(bytes.compare(r.payload_offset, r.payload.size(), r.payload) == 0,
                   "payload differs from the file");
        FUZZ_CHECK(r.lsn > prev_lsn || seen->empty(), "LSNs not ascending");
        if (!seen->empty() && r.segment == prev_segment) {
          FUZZ_CHECK(r.lsn == prev_lsn + 1, "LSN gap within a segment");
        }
        prev_lsn = r.lsn;
        prev_segment = r.segment;
        seen->push_back(Seen{r.lsn, std::string(r.payload)});
        return Status::OK();
      }),
      report);
  if (!s.ok()) return s;
  FUZZ_CHECK(report->records_read == seen->size() && report->records_replayed == seen->size(),
             report->Summary());
  // Past the last record, or further: a newer segment may start past it (Wal::Open's floor).
  FUZZ_CHECK(seen->empty() || report->next_lsn > seen->back().lsn, report->Summary());
  FUZZ_CHECK(report->segments.empty() || report->next_lsn >= report->segments.back().first_lsn,
             report->Summary());
  for (const sync::WalSegmentInfo& info : report->segments) {
    auto it = files.find(info.number);
    FUZZ_CHECK(it != files.end() && info.valid_end <= it->second.size(), report->Summary());
  }
  return s;
}

}  // namespace
}  // namespace kvfs::fuzz

namespace kvfs::fuzz {
namespace {

void Run(const std::vector<std::string>& pieces) {
  std::map<uint64_t, std::string> files;
  uint64_t number = 0;
  for (std::string_view piece : pieces) {
    CheckHeaderRoundTrip(piece);
    const auto h = sync::wal::DecodeSegmentHeader(piece);
    number = h ? h->segment_number : number + 1;
    files[number] = std::string(piece);
  }
  sync::FaultFileSystem fs(1);
  FUZZ_CHECK(fs.CreateDir("/wal").ok(), "mkdir");
  for (const auto& [n, bytes] : files) {
    WriteWholeFile(&fs, "/wal/" + sync::wal::SegmentFileName(n), bytes);
  }

  std::vector<Seen> seen;
  sync::WalReadReport report;
  if (!ReadChecked(&fs, files, &seen, &report).ok()) return;

  // What the reader accepts, the writer recovers, identically, and continues.
  sync::WalOptions options;
  options.segment_size = 4096;
  options.sync_mode = sync::SyncMode::kNone;
  options.preallocation = sync::Preallocation::kNone;
  std::vector<Seen> replayed;
  auto log = sync::Wal::Open(&fs, "/wal", options, 0,
                             sync::WalReplayFn([&](uint64_t lsn, std::string_view p) {
                               replayed.push_back(Seen{lsn, std::string(p)});
                               return Status::OK();
                             }));
  FUZZ_CHECK(log.ok(), "ReadWal accepted what Wal::Open refuses: " + log.status().ToString());
  FUZZ_CHECK(replayed == seen, "Wal::Open replayed other records than ReadWal");
  auto lsn = (*log)->Append("fuzz");
  FUZZ_CHECK(lsn.ok(), lsn.status().ToString());
  FUZZ_CHECK(*lsn == report.next_lsn, "appended LSN");
  Status s = (*log)->Close();
  FUZZ_CHECK(s.ok(), s.ToString());
  log->reset();

  std::vector<Seen> after;
  sync::WalReadReport report2;
  s = sync::ReadWal(&fs, "/wal", 0, sync::WalReplayFn([&](uint64_t l, std::string_view p) {
    after.push_back(Seen{l, std::string(p)});
    return Status::OK();
  }),
                    &report2);
  FUZZ_CHECK(s.ok(), "reopened log unreadable: " + s.ToString());
  seen.push_back(Seen{*lsn, "fuzz"});
  FUZZ_CHECK(after == seen, "records after recovery and one append: " + report2.Summary());
}

}  // namespace
}  // namespace kvfs::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kvfs::fuzz;
  std::vector<std::string> raw, fixed;
  for (std::string_view piece : SplitFiles(AsView(data, size))) {
    raw.emplace_back(piece);
    fixed.push_back(FixWalSegment(piece, /*batches=*/false));
  }
  Run(raw);
  if (fixed != raw) Run(fixed);
  return 0;
}
