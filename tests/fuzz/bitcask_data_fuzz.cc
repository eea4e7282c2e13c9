// Bitcask recovery on arbitrary merged data, hint and log files: the store's real open path
// (LoadMergedFile's scan, the hint checks against the data file, the log replay into the
// keydir) and its reads, on an in-memory FaultFileSystem.
//
// Input: kFileSeparator-separated pieces: the merged data file 1, then optionally its hint
// file, then optionally log segments (named as in wal_reader_fuzz). A valid MANIFEST naming
// file 1 is written alongside. The store is opened read-only twice, scanning the data file and
// (when there is a hint piece) trusting the hint. Properties:
// - open returns; reads return (a value, NotFound or Corruption), never crash or hang;
// The input runs as is and again with its checksums recomputed (fuzz_util.h).
// - opened by scanning, every key the data file put there reads back through Get, and a full
//   Scan visits keys in strictly ascending order with the values Get returns.
#include <memory>
#include <string>
#include <vector>

#include "engines/bitcask/bitcask.h"
#include "engines/bitcask/format.h"
#include "sync/fault_file_system.h"
#include "sync/wal_format.h"
#include "tests/fuzz/fuzz_util.h"

namespace kvfs::fuzz {
namespace {

namespace bitcask = engines::bitcask;

void OpenAndRead(sync::FileSystem* fs, bool use_hints) {
  engines::EngineOptions options;
  options.read_only = true;
  options.background_work = false;
  engines::BitcaskOptions bopts;
  bopts.use_hints = use_hints;
  engines::BitcaskRecoveryReport report;
  auto engine = engines::OpenBitcaskWith(fs, "/db", options, bopts, &report);
  if (!engine.ok()) {
    FUZZ_CHECK(engine.status().IsCorruption(), engine.status().ToString());
    return;
  }
  std::vector<std::pair<std::string, std::string>> scanned;
  Status scan =
      (*engine)->Scan(engines::ScanOptions{}, [&](std::string_view k, std::string_view v) {
        scanned.emplace_back(k, v);
        return true;
      });
  // A trusted hint may point at bytes that are no entry: reads of them are Corruption. A
  // scanned data file was verified record by record, so everything in it reads back.
  const bool all_verified = !use_hints || report.hint_files_used == 0;
  if (!scan.ok()) {
    FUZZ_CHECK(scan.IsCorruption() && !all_verified, scan.ToString());
    return;
  }
  for (size_t i = 0; i < scanned.size(); ++i) {
    FUZZ_CHECK(i == 0 || scanned[i - 1].first < scanned[i].first, "Scan order");
    auto got = (*engine)->Get(scanned[i].first);
    FUZZ_CHECK(got.ok(), got.status().ToString());
    FUZZ_CHECK(*got == scanned[i].second, "Get and Scan disagree");
  }
  Status closed = (*engine)->Close();
  FUZZ_CHECK(closed.ok(), closed.ToString());
}

}  // namespace
}  // namespace kvfs::fuzz

namespace kvfs::fuzz {
namespace {

void Run(const std::vector<std::string>& pieces) {
  sync::FaultFileSystem fs(1);
  for (const char* dir : {"/db", "/db/merged", "/db/wal"}) {
    FUZZ_CHECK(fs.CreateDir(dir).ok(), dir);
  }
  bitcask::Manifest manifest;
  manifest.next_file_number = 2;
  manifest.files = {1};
  WriteWholeFile(&fs, "/db/MANIFEST", bitcask::EncodeManifest(manifest));
  WriteWholeFile(&fs, "/db/merged/" + bitcask::DataFileName(1), pieces[0]);
  const bool have_hint = pieces.size() > 1;
  if (have_hint) WriteWholeFile(&fs, "/db/merged/" + bitcask::HintFileName(1), pieces[1]);
  uint64_t number = 0;
  for (size_t i = 2; i < pieces.size(); ++i) {
    const auto h = sync::wal::DecodeSegmentHeader(pieces[i]);
    number = h ? h->segment_number : number + 1;
    WriteWholeFile(&fs, "/db/wal/" + sync::wal::SegmentFileName(number), pieces[i]);
  }

  OpenAndRead(&fs, /*use_hints=*/false);
  if (have_hint) OpenAndRead(&fs, /*use_hints=*/true);
}

}  // namespace
}  // namespace kvfs::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kvfs::fuzz;
  std::vector<std::string> raw, fixed;
  for (std::string_view piece : SplitFiles(AsView(data, size))) {
    raw.emplace_back(piece);
    fixed.push_back(fixed.empty()       ? FixBitcaskData(piece)
                    : fixed.size() == 1 ? FixTrailingCrc(piece)
                                        : FixWalSegment(piece, /*batches=*/true));
  }
  Run(raw);
  if (fixed != raw) Run(fixed);
  return 0;
}
