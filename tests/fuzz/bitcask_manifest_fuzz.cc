// The Bitcask MANIFEST decoder on arbitrary bytes, and its round trip.
//
// - DecodeManifest returns; what it accepts satisfies the format's rules (file numbers
//   strictly ascending and below next_file_number) and re-encodes to exactly the input (the
//   format has no slack: every byte is a field or the CRC). The input runs as is and again with
//   its CRC recomputed (fuzz_util.h).
// - A MANIFEST built from the input decodes to itself.
#include <fuzzer/FuzzedDataProvider.h>

#include "engines/bitcask/format.h"
#include "tests/fuzz/fuzz_util.h"

namespace kvfs::fuzz {
namespace {

namespace bitcask = engines::bitcask;

void CheckDecode(std::string_view input) {
  auto m = bitcask::DecodeManifest(input, "MANIFEST");
  if (m.ok()) {
    for (size_t i = 0; i < m->files.size(); ++i) {
      FUZZ_CHECK(m->files[i] < m->next_file_number, "file number not below next_file_number");
      FUZZ_CHECK(i == 0 || m->files[i - 1] < m->files[i], "file numbers not ascending");
    }
    FUZZ_CHECK(bitcask::EncodeManifest(*m) == input, "accepted MANIFEST re-encodes differently");
  } else {
    FUZZ_CHECK(m.status().IsCorruption(), m.status().ToString());
  }
}

}  // namespace
}  // namespace kvfs::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kvfs;
  using namespace kvfs::fuzz;
  const std::string_view input = AsView(data, size);
  CheckDecode(input);
  const std::string fixed = FixTrailingCrc(input);
  if (fixed != input) CheckDecode(fixed);

  FuzzedDataProvider in(data, size);
  bitcask::Manifest built;
  built.merged_lsn = in.ConsumeIntegral<uint64_t>();
  uint64_t next = in.ConsumeIntegralInRange<uint64_t>(0, uint64_t{1} << 62);
  while (in.remaining_bytes() > 0 && built.files.size() < 512) {
    next += in.ConsumeIntegralInRange<uint64_t>(1, 1000);
    built.files.push_back(next);
  }
  built.next_file_number = next + 1;
  auto back = bitcask::DecodeManifest(bitcask::EncodeManifest(built), "built");
  FUZZ_CHECK(back.ok(), back.status().ToString());
  FUZZ_CHECK(back->merged_lsn == built.merged_lsn &&
                 back->next_file_number == built.next_file_number && back->files == built.files,
             "MANIFEST round trip");
  return 0;
}
