// Recovery's judgement of the newest segment's end: a torn last write is a clean end, reported;
// damage to records that may have been acknowledged is an error naming the segment and the
// offset, and Wal::Open refuses it before it writes anything. A salvage read skips damage and
// says exactly what it skipped. One test per rule of WAL_FORMAT.md's "Recovery".
#include "sync/wal_reader.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "sync/durable.h"
#include "sync/fault_file_system.h"
#include "sync/wal.h"
#include "sync/wal_format.h"
#include "tests/test_util.h"

namespace kvfs::sync {
namespace {

constexpr char kDir[] = "/db/wal";

std::string Path(const std::string& name) { return JoinPath(kDir, name); }

// A log of `n` records of `size` bytes each, all acknowledged durable (sync mode always), in one
// segment; the log is left as a crash would leave it (no clean close). Returns the segment.
std::string WriteLog(FaultFileSystem* fs, int n, size_t size = 100, uint64_t segment = 1 << 20) {
  EXPECT_OK(CreateDirDurably(fs, "/db"));
  WalOptions o;
  o.sync_mode = SyncMode::kAlways;
  o.segment_size = o.first_segment_size = segment;
  auto wal = Wal::Open(fs, kDir, o, 0, [](uint64_t, std::string_view) { return Status::OK(); });
  EXPECT_TRUE(wal.ok()) << wal.status().ToString();
  for (int i = 0; i < n; ++i) {
    EXPECT_OK((*wal)->Append(std::string(size, static_cast<char>('a' + i % 26))));
  }
  (*wal)->SimulateProcessCrashForTesting();
  auto names = fs->ListDir(kDir);
  EXPECT_TRUE(names.ok());
  for (const std::string& name : *names) {
    if (wal::ParseSegmentFileName(name)) return name;
  }
  return "";
}

// Where record `i` (0-based) of WriteLog's segment starts.
uint64_t RecordAt(int i, size_t size = 100) {
  return wal::kSegmentHeaderSize + static_cast<uint64_t>(i) * wal::RecordSize(size);
}

struct ReadResult {
  Status status;
  std::vector<std::string> payloads;
  WalReadReport report;
};

ReadResult Read(FileSystem* fs, WalReadOptions options = {}) {
  ReadResult r;
  r.status = ReadWal(
      fs, kDir, 0,
      [&](uint64_t, std::string_view p) {
        r.payloads.emplace_back(p);
        return Status::OK();
      },
      &r.report, options);
  return r;
}

void ExpectDamageNamed(const Status& s, const std::string& segment, uint64_t offset,
                       const std::string& why) {
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  EXPECT_NE(s.message().find(segment), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find("offset " + std::to_string(offset)), std::string::npos)
      << s.ToString();
  EXPECT_NE(s.message().find(why), std::string::npos) << s.ToString();
}

// A write torn by a power cut: a prefix of it reached the disk, the rest is the zeros the
// segment was made of. The log ends cleanly before it, and says where and how much it dropped.
TEST(WalRecovery, ATornLastWriteIsACleanEndReportedWithSegmentOffsetAndBytes) {
  FaultFileSystem fs(1);
  const std::string seg = WriteLog(&fs, 5);
  test::ZeroRange(&fs, Path(seg), RecordAt(4) + 40, wal::RecordSize(100) - 40);
  ReadResult r = Read(&fs);
  ASSERT_OK(r.status);
  EXPECT_EQ(r.payloads.size(), 4u);
  EXPECT_EQ(r.report.dropped_bytes, 40u);
  EXPECT_EQ(r.report.dropped_segment, *wal::ParseSegmentFileName(seg));
  EXPECT_EQ(r.report.dropped_offset, RecordAt(4));
  EXPECT_NE(r.report.dropped_reason.find(seg), std::string::npos) << r.report.dropped_reason;
}

// The five-file example: one flipped bit in the third of five acknowledged records. Records
// with valid checksums follow it, so it is damage, never the end of the log.
TEST(WalRecovery, DamageWithValidRecordsAfterItIsAnErrorCountingThem) {
  FaultFileSystem fs(2);
  const std::string seg = WriteLog(&fs, 5);
  test::FlipByte(&fs, Path(seg), RecordAt(2) + wal::kRecordHeaderSize + 50);
  ReadResult r = Read(&fs);
  ExpectDamageNamed(r.status, seg, RecordAt(2),
                    "2 records with valid checksums follow, the first at offset " +
                        std::to_string(RecordAt(3)) + " (LSN 4)");
}

// A range of zeros inside an acknowledged record, with records after it.
TEST(WalRecovery, AZeroedRangeInsideARecordIsDamage) {
  FaultFileSystem fs(3);
  const std::string seg = WriteLog(&fs, 5);
  test::ZeroRange(&fs, Path(seg), RecordAt(1), 30);
  ReadResult r = Read(&fs);
  ExpectDamageNamed(r.status, seg, RecordAt(1), "3 records with valid checksums follow");
}

// The last record is damaged but every byte of it was written: a torn write ends in the
// segment's zeros, so this is no torn write.
TEST(WalRecovery, AFlippedByteInAFullyWrittenLastRecordIsDamage) {
  FaultFileSystem fs(4);
  const std::string seg = WriteLog(&fs, 5);
  test::FlipByte(&fs, Path(seg), RecordAt(4) + wal::kRecordHeaderSize + 2);
  ReadResult r = Read(&fs);
  ExpectDamageNamed(r.status, seg, RecordAt(4), "written to its last byte");
}

// The last record's length field is damaged so that it claims more bytes than were written: it
// then looks like a torn write, but its checksum matches the bytes that are there.
TEST(WalRecovery, ADamagedLengthOfACompleteLastRecordIsDamage) {
  FaultFileSystem fs(9);
  const std::string seg = WriteLog(&fs, 5);
  test::FlipByte(&fs, Path(seg), RecordAt(4) + 5);  // the length's second byte
  ReadResult r = Read(&fs);
  ExpectDamageNamed(r.status, seg, RecordAt(4), "the length was damaged");
}

// Every single byte of the last record flipped in turn: each one is damage, none a torn tail.
TEST(WalRecovery, EveryFlippedByteOfTheLastRecordIsDamage) {
  FaultFileSystem fs(10);
  const std::string seg = WriteLog(&fs, 5);
  for (uint64_t at = RecordAt(4); at < RecordAt(5); ++at) {
    test::FlipByte(&fs, Path(seg), at);
    ReadResult r = Read(&fs);
    EXPECT_TRUE(r.status.IsCorruption())
        << "byte " << at - RecordAt(4) << " of the last record: OK with " << r.payloads.size()
        << " records";
    test::FlipByte(&fs, Path(seg), at);  // back as it was
  }
}

// An empty last record is only its header, whose LSN field ends in zero bytes (LSN 5: one
// non-zero byte; LSN 256: its low byte zero too): its last bytes are zeros as a torn write's are,
// yet every flipped byte of it is damage, because the bytes written and the expected LSN
// determine the whole record. Each prefix of it followed by zeros is a torn write: a clean end.
TEST(WalRecovery, AnEmptyLastRecordIsDamageWhenFlippedAndACleanEndWhenTorn) {
  for (int n : {5, 256}) {
    SCOPED_TRACE(std::to_string(n) + " records");
    FaultFileSystem fs(11);
    const std::string seg = WriteLog(&fs, n, 0);
    const uint64_t last = RecordAt(n - 1, 0);
    for (uint64_t at = last; at < last + wal::kRecordHeaderSize; ++at) {
      test::FlipByte(&fs, Path(seg), at);
      ReadResult r = Read(&fs);
      EXPECT_TRUE(r.status.IsCorruption())
          << "byte " << at - last << " of the empty last record: OK with " << r.payloads.size()
          << " records; " << r.report.Summary();
      test::FlipByte(&fs, Path(seg), at);  // back as it was
    }
    ASSERT_OK_AND_ASSIGN(std::string whole, ReadFileToString(&fs, Path(seg)));
    for (uint64_t keep = 1; keep < wal::kRecordHeaderSize; ++keep) {
      test::ZeroRange(&fs, Path(seg), last + keep, wal::kRecordHeaderSize - keep);
      ReadResult r = Read(&fs);
      EXPECT_TRUE(r.status.ok()) << keep << " bytes written: " << r.status.ToString();
      // Zeroing bytes that were zeros already leaves the record whole.
      const bool unchanged =
          whole.find_first_not_of('\0', last + keep) >= last + wal::kRecordHeaderSize;
      EXPECT_EQ(r.payloads.size(), static_cast<size_t>(unchanged ? n : n - 1))
          << keep << " bytes written";
      ASSERT_OK(WriteFileAtomically(&fs, Path(seg), whole));
    }
  }
}

// The newest segment cut short inside its records: it was made full size (zeros) and synced
// before use, so a file shorter than that lost bytes, whatever they held.
TEST(WalRecovery, ANewestSegmentCutShortIsDamage) {
  FaultFileSystem fs(11);
  const std::string seg = WriteLog(&fs, 5);
  test::CutShort(&fs, Path(seg), RecordAt(2) + 50);
  ReadResult r = Read(&fs);
  ExpectDamageNamed(r.status, seg, RecordAt(2), "cut short");
}

// More non-zero bytes after the bad record than the writer ever puts in one write.
TEST(WalRecovery, MoreNonZeroBytesThanOneWriteIsDamage) {
  FaultFileSystem fs(5);
  const uint64_t segment = 3 * wal::kMaxWriteBytes;
  const std::string seg = WriteLog(&fs, 3, 100, segment);
  // Garbage (no valid record in it) from record 2 on, reaching past one write's worth.
  auto f = fs.NewRandomRWFile(Path(seg), false);
  ASSERT_OK(f);
  ASSERT_OK((*f)->Write(RecordAt(2), std::string(wal::kMaxWriteBytes + 100, '\x01')));
  ASSERT_OK((*f)->Sync());
  ReadResult r = Read(&fs);
  ExpectDamageNamed(r.status, seg, RecordAt(2), "more than one write leaves");
}

// The newest segment's header is damaged while records follow it: not a segment that was being
// created (that one holds only zeros), so the records in it must not be dropped.
TEST(WalRecovery, ADamagedNewestHeaderWithRecordsAfterItIsDamage) {
  FaultFileSystem fs(6);
  const std::string seg = WriteLog(&fs, 3);
  test::FlipByte(&fs, Path(seg), 20);
  ReadResult r = Read(&fs);
  EXPECT_TRUE(r.status.IsCorruption()) << r.status.ToString();
  EXPECT_NE(r.status.message().find(seg), std::string::npos) << r.status.ToString();
  EXPECT_NE(r.status.message().find("invalid segment header"), std::string::npos);
}

// Cut exactly at a record boundary, so every record left verifies: still shorter than made.
TEST(WalRecovery, ANewestSegmentCutAtARecordBoundaryIsDamage) {
  FaultFileSystem fs(13);
  const std::string seg = WriteLog(&fs, 5);
  test::CutShort(&fs, Path(seg), RecordAt(3));
  ReadResult r = Read(&fs);
  ExpectDamageNamed(r.status, seg, RecordAt(3), "cut short");
}

// The newest segment cut inside its header: a header is written only into a segment already
// zero-filled to full size, so a short file holding part of one is no half-created segment.
TEST(WalRecovery, ANewestSegmentCutInsideItsHeaderIsDamage) {
  FaultFileSystem fs(12);
  const std::string seg = WriteLog(&fs, 3);
  test::CutShort(&fs, Path(seg), 40);
  ReadResult r = Read(&fs);
  EXPECT_TRUE(r.status.IsCorruption()) << r.status.ToString();
  EXPECT_NE(r.status.message().find("cut short"), std::string::npos) << r.status.ToString();
}

// Wal::Open never makes a loss permanent: on damage it fails before writing a new segment (whose
// header would record the damaged segment's end), and leaves every byte as it found it.
TEST(WalRecovery, OpenRefusesDamageAndWritesNothing) {
  FaultFileSystem fs(7);
  const std::string seg = WriteLog(&fs, 5);
  test::FlipByte(&fs, Path(seg), RecordAt(1) + 20);
  ASSERT_OK_AND_ASSIGN(std::string before, ReadFileToString(&fs, Path(seg)));
  ASSERT_OK_AND_ASSIGN(auto names_before, fs.ListDir(kDir));
  auto wal = Wal::Open(&fs, kDir, WalOptions(), 0,
                       [](uint64_t, std::string_view) { return Status::OK(); });
  ASSERT_FALSE(wal.ok());
  ExpectDamageNamed(wal.status(), seg, RecordAt(1), "with valid checksums follow");
  ASSERT_OK_AND_ASSIGN(std::string after, ReadFileToString(&fs, Path(seg)));
  EXPECT_EQ(after, before);
  ASSERT_OK_AND_ASSIGN(auto names_after, fs.ListDir(kDir));
  EXPECT_EQ(names_after, names_before);
}

// A salvage read keeps every record that verifies and says exactly what it skipped: where, how
// many bytes, which LSNs.
TEST(WalRecovery, ASalvageReadSkipsDamageAndReportsIt) {
  FaultFileSystem fs(8);
  const std::string seg = WriteLog(&fs, 6);
  test::FlipByte(&fs, Path(seg), RecordAt(2) + 30);
  WalReadOptions salvage;
  salvage.salvage = true;
  ReadResult r = Read(&fs, salvage);
  ASSERT_OK(r.status);
  ASSERT_EQ(r.payloads.size(), 5u);
  EXPECT_EQ(r.payloads[2], std::string(100, 'd'));  // record 3 (LSN 4) follows the gap
  ASSERT_EQ(r.report.damage.size(), 1u);
  const WalDamage& d = r.report.damage[0];
  EXPECT_EQ(d.segment, *wal::ParseSegmentFileName(seg));
  EXPECT_EQ(d.offset, RecordAt(2));
  EXPECT_EQ(d.bytes, wal::RecordSize(100));
  EXPECT_EQ(d.first_missing_lsn, 3u);
  EXPECT_EQ(d.next_lsn, 4u);
  EXPECT_EQ(r.report.next_lsn, 7u);
}

// Any single damaged byte (or zeroed run) inside the records of any segment is an error; damage
// past the last record (in the zeros) loses nothing. Never a silent prefix.
TEST(WalRecovery, DamageInsideAnyRecordIsAlwaysAnError) {
  const uint64_t seed = test::TestSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  FaultFileSystem fs(seed);
  const int kRecords = 40;
  const std::string seg = WriteLog(&fs, kRecords);
  const uint64_t records_end = RecordAt(kRecords);
  ASSERT_OK_AND_ASSIGN(std::string original, ReadFileToString(&fs, Path(seg)));
  // Zeros at the very end of the last record are what a torn write leaves, so zeroed runs stay
  // before the last record; flipped bytes may land anywhere in the records.
  const uint64_t last = RecordAt(kRecords - 1);
  for (int trial = 0; trial < 300; ++trial) {
    if (trial % 2 == 0) {
      const uint64_t at = wal::kSegmentHeaderSize + rng() % (records_end - wal::kSegmentHeaderSize);
      test::FlipByte(&fs, Path(seg), at);
    } else {
      const uint64_t at = wal::kSegmentHeaderSize + rng() % (last - wal::kSegmentHeaderSize);
      test::ZeroRange(&fs, Path(seg), at, std::min<uint64_t>(1 + rng() % 64, last - at));
    }
    ReadResult r = Read(&fs);
    // A zeroed run may hit bytes that were zero already (none are, in these payloads and
    // headers, except LSNs' and lengths' high bytes): then nothing changed.
    ASSERT_OK_AND_ASSIGN(std::string now, ReadFileToString(&fs, Path(seg)));
    if (now != original) {
      EXPECT_TRUE(r.status.IsCorruption())
          << "trial " << trial << " read as OK with " << r.payloads.size() << " records";
    }
    ASSERT_OK(WriteFileAtomically(&fs, Path(seg), original));
  }
}

}  // namespace
}  // namespace kvfs::sync
