// The write-batch codec: what Apply logs and what Bitcask reads single values back from. One
// test per behaviour and per way the bytes can be damaged.
#include "engines/write_batch.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/test_util.h"

namespace kvfs::engines {
namespace {

struct Decoded {
  EntryKind kind;
  std::string key;
  std::string value;
  uint64_t offset;
  uint64_t size;
};

Result<std::vector<Decoded>> DecodeAll(std::string_view encoded) {
  std::vector<Decoded> out;
  Status s = ForEachEntry(encoded, "batch", [&](const BatchEntry& e) {
    out.push_back({e.kind, std::string(e.key), std::string(e.value), e.offset, e.size});
    return Status::OK();
  });
  if (!s.ok()) return s;
  return out;
}

TEST(WriteBatch, EmptyBatchEncodesToNothing) {
  WriteBatch b;
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(b.count(), 0u);
  EXPECT_EQ(b.encoded(), "");
  ASSERT_OK_AND_ASSIGN(auto entries, DecodeAll(b.encoded()));
  EXPECT_TRUE(entries.empty());
}

TEST(WriteBatch, RoundTripKeepsOrderKindsKeysValuesOffsetsAndSizes) {
  WriteBatch b;
  b.Put("a", "1");
  b.Delete("b");
  b.Put("a", "");  // same key twice, empty value
  b.Put(std::string(1000, 'k'), std::string(5000, 'v'));
  EXPECT_EQ(b.count(), 4u);
  ASSERT_OK_AND_ASSIGN(auto e, DecodeAll(b.encoded()));
  ASSERT_EQ(e.size(), 4u);
  EXPECT_EQ(e[0].kind, EntryKind::kPut);
  EXPECT_EQ(e[0].key, "a");
  EXPECT_EQ(e[0].value, "1");
  EXPECT_EQ(e[1].kind, EntryKind::kDelete);
  EXPECT_EQ(e[1].key, "b");
  EXPECT_EQ(e[1].value, "");
  EXPECT_EQ(e[2].kind, EntryKind::kPut);
  EXPECT_EQ(e[2].value, "");
  EXPECT_EQ(e[3].key, std::string(1000, 'k'));
  EXPECT_EQ(e[3].value, std::string(5000, 'v'));
  uint64_t offset = 0;
  for (const Decoded& d : e) {
    EXPECT_EQ(d.offset, offset);
    EXPECT_EQ(d.size, kEntryHeaderSize + d.key.size() + d.value.size());
    offset += d.size;
  }
  EXPECT_EQ(offset, b.encoded().size());
}

TEST(WriteBatch, BinaryKeysAndValuesRoundTrip) {
  const std::string key("\0\xff\x01k", 4);
  const std::string value("\0\0\x80v\0", 5);
  WriteBatch b;
  b.Put(key, value);
  ASSERT_OK_AND_ASSIGN(auto e, DecodeAll(b.encoded()));
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].key, key);
  EXPECT_EQ(e[0].value, value);
}

TEST(WriteBatch, EachEntryDecodesAloneAtItsOffset) {
  // What Bitcask does: read one entry from the log by (offset, size) and verify it alone.
  WriteBatch b;
  b.Put("first", "one");
  b.Put("second", "two");
  ASSERT_OK_AND_ASSIGN(auto all, DecodeAll(b.encoded()));
  const std::string_view enc = b.encoded();
  ASSERT_OK_AND_ASSIGN(BatchEntry second,
                       DecodeEntry(enc.substr(all[1].offset, all[1].size), "second"));
  EXPECT_EQ(second.key, "second");
  EXPECT_EQ(second.value, "two");
  EXPECT_EQ(second.size, all[1].size);
}

TEST(WriteBatch, ClearEmptiesTheBatch) {
  WriteBatch b;
  b.Put("k", "v");
  b.Clear();
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(b.encoded(), "");
  b.Delete("x");
  ASSERT_OK_AND_ASSIGN(auto e, DecodeAll(b.encoded()));
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].key, "x");
}

TEST(WriteBatch, EncodeEntryMatchesWhatTheBatchWrites) {
  std::string out;
  EncodeEntry(&out, EntryKind::kPut, "k", "v");
  WriteBatch b;
  b.Put("k", "v");
  EXPECT_EQ(out, b.encoded());
}

TEST(WriteBatch, EveryFlippedByteIsCorruption) {
  WriteBatch b;
  b.Put("key", "value");
  const std::string good = b.encoded();
  for (size_t i = 0; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] ^= 0x01;
    auto r = DecodeAll(bad);
    EXPECT_FALSE(r.ok()) << "flipped byte " << i;
    if (!r.ok()) {
      EXPECT_TRUE(r.status().IsCorruption()) << r.status().ToString();
    }
  }
}

TEST(WriteBatch, ChecksumMismatchIsCorruptionNamingWhere) {
  WriteBatch b;
  b.Put("key", "value");
  std::string bad = b.encoded();
  bad.back() ^= 0x40;  // a value byte
  auto r = DecodeEntry(bad, "seg 7 offset 99");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsCorruption());
  EXPECT_NE(r.status().message().find("seg 7 offset 99"), std::string::npos);
  EXPECT_NE(r.status().message().find("checksum"), std::string::npos);
}

TEST(WriteBatch, WithoutWhereTheCallerNamesThePlace) {
  WriteBatch b;
  b.Put("key", "value");
  std::string bad = b.encoded();
  bad.back() ^= 0x40;
  auto r = DecodeEntry(bad, "");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "entry checksum mismatch");
  Status named = ForEachEntry(bad, "", [](const BatchEntry&) {
                   return Status::OK();
                 }).WithContext("wal/0007.log record LSN 3 at offset 512");
  EXPECT_EQ(named.message(),
            "wal/0007.log record LSN 3 at offset 512: entry at offset 0: entry checksum mismatch");
}

TEST(WriteBatch, HeaderCutShortIsCorruption) {
  WriteBatch b;
  b.Put("key", "value");
  for (size_t n = 1; n < kEntryHeaderSize; ++n) {
    auto r = DecodeEntry(std::string_view(b.encoded()).substr(0, n), "x");
    ASSERT_FALSE(r.ok());
    EXPECT_TRUE(r.status().IsCorruption());
    EXPECT_NE(r.status().message().find("cut short"), std::string::npos);
  }
}

TEST(WriteBatch, EntryRunningPastTheEndIsCorruption) {
  WriteBatch b;
  b.Put("key", "value");
  const std::string_view enc = b.encoded();
  auto r = DecodeEntry(enc.substr(0, enc.size() - 1), "x");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsCorruption());
  EXPECT_NE(r.status().message().find("past the end"), std::string::npos);
}

TEST(WriteBatch, HugeLengthFieldIsCorruptionNotAnAllocation) {
  WriteBatch b;
  b.Put("key", "value");
  std::string bad = b.encoded();
  for (int i = 0; i < 4; ++i) bad[9 + i] = '\xff';  // value_length = 4 GiB - 1
  auto r = DecodeEntry(bad, "x");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsCorruption());
}

TEST(WriteBatch, UnknownKindIsCorruption) {
  WriteBatch b;
  b.Put("key", "value");
  std::string bad = b.encoded();
  bad[4] = 7;
  auto r = DecodeEntry(bad, "x");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsCorruption());
  EXPECT_NE(r.status().message().find("unknown entry kind 7"), std::string::npos);
}

TEST(WriteBatch, DamageInALaterEntryNamesItsOffset) {
  WriteBatch b;
  b.Put("a", "1");
  b.Put("b", "2");
  std::string bad = b.encoded();
  const size_t second = kEntryHeaderSize + 2;
  bad[second + kEntryHeaderSize] ^= 0x01;  // the second entry's key
  int seen = 0;
  Status s = ForEachEntry(bad, "batch", [&](const BatchEntry&) {
    ++seen;
    return Status::OK();
  });
  EXPECT_TRUE(s.IsCorruption());
  EXPECT_EQ(seen, 1);  // the first entry was delivered before the damage was found
  EXPECT_NE(s.message().find("offset " + std::to_string(second)), std::string::npos)
      << s.ToString();
}

TEST(WriteBatch, TrailingGarbageIsCorruption) {
  WriteBatch b;
  b.Put("a", "1");
  std::string bad = b.encoded() + "xyz";
  EXPECT_TRUE(
      ForEachEntry(bad, "batch", [](const BatchEntry&) { return Status::OK(); }).IsCorruption());
}

TEST(WriteBatch, CallbackErrorStopsTheWalkAndIsReturned) {
  WriteBatch b;
  b.Put("a", "1");
  b.Put("b", "2");
  int seen = 0;
  Status s = ForEachEntry(b.encoded(), "batch", [&](const BatchEntry&) {
    ++seen;
    return Status::Busy("stop");
  });
  EXPECT_TRUE(s.IsBusy());
  EXPECT_EQ(seen, 1);
}

}  // namespace
}  // namespace kvfs::engines
