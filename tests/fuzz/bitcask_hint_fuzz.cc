// The Bitcask hint-file decoder on arbitrary bytes, and its round trip.
//
// - DecodeHintFile returns, allocating no more than the input justifies; what it accepts has
//   its footer's entry count and, rebuilt with HintBuilder, gives back the input (bytes 12..15
//   are reserved zeros that the decoder does not check; the rest has no slack). The input runs
//   as is and again with its CRC recomputed (fuzz_util.h).
// - A hint file built from the input decodes to exactly the entries added.
// (Whether accepted entries fit their data file is checked at open: bitcask_data_fuzz.)
#include <fuzzer/FuzzedDataProvider.h>

#include <vector>

#include "engines/bitcask/format.h"
#include "sync/wal_format.h"
#include "tests/fuzz/fuzz_util.h"

namespace kvfs::fuzz {
namespace {

namespace bitcask = engines::bitcask;

void CheckDecode(std::string_view input) {
  // The file number the decoder expects: the one in the header, so the rest gets exercised.
  const uint64_t number = input.size() >= 24 ? sync::wal::DecodeFixed64(input.data() + 16) : 1;
  auto entries = bitcask::DecodeHintFile(input, number, "hint");
  if (entries.ok()) {
    bitcask::HintBuilder rebuilt(number);
    for (const bitcask::HintEntry& e : *entries) {
      FUZZ_CHECK(e.entry_size <= UINT32_MAX, "entry size wider than its field");
      rebuilt.Add(e.key, e.entry_offset, e.entry_size, e.lsn);
    }
    if (input.substr(12, 4) == std::string_view("\0\0\0\0", 4)) {
      FUZZ_CHECK(rebuilt.Finish() == input, "accepted hint file rebuilds differently");
    }
  } else {
    FUZZ_CHECK(entries.status().IsCorruption(), entries.status().ToString());
  }
}

}  // namespace
}  // namespace kvfs::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kvfs;
  using namespace kvfs::fuzz;
  namespace bitcask = engines::bitcask;
  const std::string_view input = AsView(data, size);
  CheckDecode(input);
  const std::string fixed = FixTrailingCrc(input);
  if (fixed != input) CheckDecode(fixed);

  FuzzedDataProvider in(data, size);
  const uint64_t built_number = in.ConsumeIntegral<uint64_t>();
  bitcask::HintBuilder builder(built_number);
  std::vector<bitcask::HintEntry> added;
  while (in.remaining_bytes() > 0 && added.size() < 256) {
    bitcask::HintEntry e;
    e.entry_size = in.ConsumeIntegral<uint32_t>();
    e.entry_offset = in.ConsumeIntegral<uint64_t>();
    e.lsn = in.ConsumeIntegral<uint64_t>();
    e.key = in.ConsumeRandomLengthString(300);
    builder.Add(e.key, e.entry_offset, e.entry_size, e.lsn);
    added.push_back(std::move(e));
  }
  auto back = bitcask::DecodeHintFile(builder.Finish(), built_number, "built");
  FUZZ_CHECK(back.ok(), back.status().ToString());
  FUZZ_CHECK(back->size() == added.size(), "entry count");
  for (size_t i = 0; i < added.size(); ++i) {
    const bitcask::HintEntry &a = added[i], &b = (*back)[i];
    FUZZ_CHECK(a.key == b.key && a.entry_offset == b.entry_offset && a.entry_size == b.entry_size &&
                   a.lsn == b.lsn,
               "hint entry " + std::to_string(i) + " round trip");
  }
  return 0;
}
