// The LSM engine's building blocks, each on its own: skiplist and memtable, bloom filter,
// tables (build, read, iterate, every damaged byte), MANIFEST encoding, blob files.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <random>
#include <thread>

#include "engines/lsm/blob_file.h"
#include "engines/lsm/bloom.h"
#include "engines/lsm/key_compare.h"
#include "engines/lsm/manifest.h"
#include "engines/lsm/memtable.h"
#include "engines/lsm/table_builder.h"
#include "engines/lsm/table_reader.h"
#include "engines/lsm/version.h"
#include "sync/crc32c.h"
#include "sync/durable.h"
#include "sync/fault_file_system.h"
#include "tests/test_util.h"

namespace kvfs::engines::lsm {
namespace {

std::vector<BatchEntry> Puts(const std::vector<std::pair<std::string, std::string>>& kvs,
                             std::vector<std::string>* storage) {
  std::vector<BatchEntry> out;
  storage->clear();
  storage->reserve(kvs.size() * 2);
  for (const auto& [k, v] : kvs) {
    storage->push_back(k);
    const std::string_view key = storage->back();
    storage->push_back(v);
    out.push_back(BatchEntry{EntryKind::kPut, key, storage->back()});
  }
  return out;
}

TEST(LsmKeyCompare, OrdersAsBytewiseCompareDoes) {
  // Lengths around the 8-byte words, bytes from the ends of the range (0x00, 0x7f, 0x80, 0xff:
  // signedness), keys that are prefixes of each other and keys differing in one byte.
  std::mt19937_64 rng(7);
  const char alphabet[] = {'\x00', '\x01', '\x7f', '\x80', '\xff', 'a'};
  auto random_key = [&] {
    std::string k(rng() % 25, '\0');
    for (char& c : k) c = alphabet[rng() % sizeof(alphabet)];
    return k;
  };
  auto sign = [](int c) { return (c > 0) - (c < 0); };
  for (int i = 0; i < 20000; ++i) {
    const std::string a = random_key();
    std::string b = rng() % 2 ? random_key() : a;
    if (!b.empty() && rng() % 2) b[rng() % b.size()] = alphabet[rng() % sizeof(alphabet)];
    if (rng() % 4 == 0) b = b.substr(0, rng() % (b.size() + 1));
    ASSERT_EQ(sign(CompareKeys(a, b)), sign(std::string_view(a).compare(b)))
        << testing::PrintToString(a) << " vs " << testing::PrintToString(b);
    ASSERT_EQ(sign(CompareKeys(b, a)), -sign(CompareKeys(a, b)));
  }
}

TEST(LsmMemTable, GetReturnsTheNewestVersionAndTombstones) {
  MemTable m;
  std::vector<std::string> s1, s2;
  m.AddBatch(1, Puts({{"a", "1"}, {"b", "1"}}, &s1));
  m.AddBatch(2, Puts({{"a", "2"}}, &s2));
  const std::string del_key = "b";
  m.AddBatch(3, std::vector<BatchEntry>{BatchEntry{EntryKind::kDelete, del_key, {}}});
  std::string v;
  EXPECT_EQ(m.Get("a", &v), MemTable::Lookup::kFound);
  EXPECT_EQ(v, "2");
  EXPECT_EQ(m.Get("b", &v), MemTable::Lookup::kDeleted);
  EXPECT_EQ(m.Get("c", &v), MemTable::Lookup::kNotFound);
  EXPECT_EQ(m.entries(), 4u);
}

TEST(LsmMemTable, IteratorYieldsKeysAscendingNewestVersionFirst) {
  MemTable m;
  std::vector<std::string> s;
  std::mt19937_64 rng(1);
  std::map<std::string, int> count;
  for (uint64_t seq = 1; seq <= 500; ++seq) {
    const std::string k = "k" + std::to_string(rng() % 100);
    ++count[k];
    m.AddBatch(seq, Puts({{k, std::to_string(seq)}}, &s));
  }
  auto it = m.NewIterator();
  std::string prev_key;
  uint64_t prev_seq = 0;
  size_t n = 0;
  for (it->SeekToFirst(); it->Valid(); it->Next(), ++n) {
    const std::string key(it->key());
    if (key == prev_key) {
      EXPECT_LT(it->seq(), prev_seq) << key;
    } else {
      EXPECT_GT(key, prev_key);
    }
    EXPECT_EQ(it->value(), std::to_string(it->seq()));
    prev_key = key;
    prev_seq = it->seq();
  }
  EXPECT_EQ(n, 500u);
  it->Seek(count.rbegin()->first);
  ASSERT_TRUE(it->Valid());
  EXPECT_EQ(it->key(), count.rbegin()->first);
  it->Seek(count.rbegin()->first + "\x01");
  EXPECT_FALSE(it->Valid());
}

TEST(LsmMemTable, ReadersNeverSeeHalfABatchOrAVersionGoBack) {
  MemTable m;
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    std::vector<std::string> s;
    for (uint64_t seq = 1; seq <= 3000; ++seq) {
      m.AddBatch(seq, Puts({{"x", std::to_string(seq)}, {"y", std::to_string(seq)}}, &s));
    }
    stop = true;
  });
  uint64_t last = 0;
  while (!stop) {
    std::string x, y;
    if (m.Get("x", &x) != MemTable::Lookup::kFound) continue;
    ASSERT_EQ(m.Get("y", &y), MemTable::Lookup::kFound);
    // y is read after x, so it is at least as new; x never goes back.
    ASSERT_GE(std::stoull(y), std::stoull(x));
    ASSERT_GE(std::stoull(x), last);
    last = std::stoull(x);
  }
  writer.join();
}

TEST(LsmBloom, NoFalseNegativesAndFewFalsePositives) {
  for (const int keys : {1, 10, 1000, 100000}) {
    BloomBuilder b(10);
    for (int i = 0; i < keys; ++i) b.AddKey("key" + std::to_string(i));
    const std::string f = b.Finish();
    ASSERT_TRUE(BloomIsWellFormed(f));
    // Blocked: whole 64-byte lines, about 10 bits per key, the flag byte last.
    EXPECT_EQ((f.size() - 1) % 64, 0U);
    EXPECT_LE(f.size() - 1, std::max<size_t>(64, keys * 10 / 8 + 64));
    EXPECT_EQ(static_cast<unsigned char>(f.back()), 0x80 | 6);
    for (int i = 0; i < keys; ++i) ASSERT_TRUE(BloomMayContain(f, "key" + std::to_string(i)));
    if (keys < 1000) continue;
    int fp = 0;
    const int probes = 100000;
    for (int i = 0; i < probes; ++i) fp += BloomMayContain(f, "other" + std::to_string(i));
    EXPECT_LT(fp, probes * 2 / 100) << "false-positive rate above 2% with " << keys << " keys";
  }
  EXPECT_FALSE(BloomIsWellFormed("short"));
  // A blocked filter's bits come in whole lines; a probe count of 0 or above 30 is no filter.
  EXPECT_FALSE(BloomIsWellFormed(std::string(63, '\0') + static_cast<char>(0x86)));
  EXPECT_FALSE(BloomIsWellFormed(std::string(64, '\0') + static_cast<char>(0x80)));
  EXPECT_FALSE(BloomIsWellFormed(std::string(64, '\0') + static_cast<char>(0x80 | 31)));
  EXPECT_TRUE(BloomIsWellFormed(std::string(64, '\0') + static_cast<char>(0x80 | 6)));
}

// Tables of format version 1 carry the legacy filter (bits mod nbits, no flag); they must keep
// answering without false negatives. The filter is built here from FORMAT.md's description.
TEST(LsmBloom, ReadsTheLegacyFilterOfFormatVersion1) {
  const int keys = 2000;
  const uint32_t k = 7;
  const uint64_t nbits = uint64_t{10} * keys;
  std::string f(nbits / 8, '\0');
  for (int i = 0; i < keys; ++i) {
    uint64_t h = BloomHash("key" + std::to_string(i));
    const uint64_t delta = (h >> 31) | (h << 33);
    for (uint32_t p = 0; p < k; ++p, h += delta)
      f[(h % nbits) / 8] |= static_cast<char>(1 << (h % 8));
  }
  f.push_back(static_cast<char>(k));
  ASSERT_TRUE(BloomIsWellFormed(f));
  for (int i = 0; i < keys; ++i) ASSERT_TRUE(BloomMayContain(f, "key" + std::to_string(i)));
  int fp = 0;
  for (int i = 0; i < 10000; ++i) fp += BloomMayContain(f, "other" + std::to_string(i));
  EXPECT_LT(fp, 300) << "the legacy filter answers true too often: misread?";
}

// The merge under every read: children ranked newest first, a memtable (several versions of a
// key, newest first) beside tables (one each). newest_only yields each key once, from the
// newest child holding it; without it every entry comes out, newest first per key.
TEST(LsmMergingIterator, YieldsTheNewestVersionOfEachKeyOrEveryEntry) {
  sync::FaultFileSystem fs(5);
  ASSERT_OK(sync::CreateDirDurably(&fs, "/m"));
  std::mt19937_64 rng(9);
  auto key = [](int i) {
    char b[16];
    std::snprintf(b, sizeof(b), "key%04d", i);
    return std::string(b);
  };
  // Child 0: a memtable with up to three versions per key; children 1 and 2: tables.
  MemTable mem;
  std::vector<std::vector<std::string>> storage(3);
  for (int batch = 3; batch >= 1; --batch) {
    std::vector<std::pair<std::string, std::string>> puts;
    for (int i = 0; i < 300; ++i) {
      if (rng() % 3 == 0) puts.emplace_back(key(i), "m" + std::to_string(batch));
    }
    mem.AddBatch(100 + batch, Puts(puts, &storage[batch - 1]));
  }
  std::vector<std::shared_ptr<TableReader>> tables;
  for (int t = 1; t <= 2; ++t) {
    const std::string path = "/m/00000" + std::to_string(t) + ".sst";
    ASSERT_OK_AND_ASSIGN(auto file, fs.NewWritableFile(path, sync::CreateMode::kTruncate));
    TableBuilder b(file.get(), 256, 10);
    for (int i = 0; i < 300; ++i) {
      if (rng() % 2 == 0) b.Add(key(i), ValueKind::kValue, 10 - t, "t" + std::to_string(t));
    }
    ASSERT_OK(b.Finish());
    ASSERT_OK(file->Close());
    ASSERT_OK_AND_ASSIGN(auto r, TableReader::Open(&fs, path, t, nullptr));
    tables.push_back(r);
  }
  // The model: every child's entries per key, in rank order.
  std::map<std::string, std::vector<std::string>> model;
  {
    auto m = mem.NewIterator();
    for (m->SeekToFirst(); m->Valid(); m->Next()) {
      model[std::string(m->key())].push_back(std::string(m->value()));
    }
    for (const auto& t : tables) {
      auto it = t->NewIterator();
      for (it->SeekToFirst(); it->Valid(); it->Next()) {
        model[std::string(it->key())].push_back(std::string(it->value()));
      }
    }
  }
  for (const bool newest_only : {true, false}) {
    std::vector<std::unique_ptr<InternalIterator>> children;
    children.push_back(mem.NewIterator());
    for (const auto& t : tables) children.push_back(t->NewIterator());
    auto it = NewMergingIterator(std::move(children), newest_only);
    std::vector<std::pair<std::string, std::string>> got, want;
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      got.emplace_back(std::string(it->key()), std::string(it->value()));
    }
    ASSERT_OK(it->status());
    for (const auto& [k, vs] : model) {
      for (const std::string& v : vs) {
        want.emplace_back(k, v);
        if (newest_only) break;
      }
    }
    EXPECT_EQ(got, want) << (newest_only ? "newest only" : "every entry");
    // A seek lands on the first key at or after its target, and goes on from there.
    it->Seek(key(150));
    ASSERT_TRUE(it->Valid());
    EXPECT_EQ(it->key(), model.lower_bound(key(150))->first);
  }
}

class LsmTableTest : public testing::Test {
 protected:
  void SetUp() override { ASSERT_OK(sync::CreateDirDurably(&fs_, "/t")); }

  // Entries "k%05d" for i in [0, n) step 2, kinds cycling value/deletion/blob.
  void Build(int n, uint32_t block_size = 256) {
    ASSERT_OK_AND_ASSIGN(auto file, fs_.NewWritableFile(path_, sync::CreateMode::kTruncate));
    TableBuilder b(file.get(), block_size, 10);
    for (int i = 0; i < n; i += 2) {
      const ValueKind kind = static_cast<ValueKind>(1 + (i / 2) % 3);
      b.Add(Key(i), kind, 1000 + i, Payload(i, kind));
    }
    ASSERT_OK(b.Finish());
    ASSERT_OK(file->DataSync());
    ASSERT_OK(file->Close());
    EXPECT_EQ(b.entries(), static_cast<uint64_t>((n + 1) / 2));
    if (n > 0) {
      EXPECT_EQ(b.smallest(), Key(0));
    }
  }
  static std::string Key(int i) {
    char buf[16];
    std::snprintf(buf, sizeof(buf), "k%05d", i);
    return buf;
  }
  static std::string Payload(int i, ValueKind kind) {
    if (kind == ValueKind::kDeletion) return "";
    if (kind == ValueKind::kBlob) return EncodeBlobRef(BlobRef{7, 24 + uint64_t(i), 5000});
    return "value-" + std::to_string(i) + std::string(i % 50, 'v');
  }

  sync::FaultFileSystem fs_{3};
  const std::string path_ = "/t/000001.sst";
};

TEST_F(LsmTableTest, EveryEntryReadsBackAndMissingKeysAreAbsent) {
  Build(600);
  ASSERT_OK_AND_ASSIGN(auto t, TableReader::Open(&fs_, path_, 1, nullptr));
  EXPECT_GT(t->DataBlocksForTesting().size(), 5u);
  for (int i = 0; i < 600; ++i) {
    ASSERT_OK_AND_ASSIGN(auto e, t->Get(Key(i), BloomHash(Key(i))));
    if (i % 2 == 1) {
      EXPECT_FALSE(e.has_value()) << i;
      continue;
    }
    ASSERT_TRUE(e.has_value()) << i;
    EXPECT_EQ(e->kind, static_cast<ValueKind>(1 + (i / 2) % 3));
    EXPECT_EQ(e->seq, 1000u + i);
    EXPECT_EQ(e->payload, Payload(i, e->kind));
  }
  ASSERT_OK_AND_ASSIGN(auto past, t->Get("z", BloomHash("z")));
  EXPECT_FALSE(past.has_value());
}

constexpr TableReader::ReadMode kBothReadModes[] = {TableReader::ReadMode::kCached,
                                                    TableReader::ReadMode::kSequential};

TEST_F(LsmTableTest, IteratorWalksInOrderAndSeeks) {
  Build(600);
  BlockCache cache(1 << 20);
  ASSERT_OK_AND_ASSIGN(auto t, TableReader::Open(&fs_, path_, 1, &cache));
  for (const TableReader::ReadMode mode : kBothReadModes) {
    auto it = t->NewIterator(mode);
    int i = 0;
    for (it->SeekToFirst(); it->Valid(); it->Next(), i += 2) {
      ASSERT_EQ(it->key(), Key(i));
      const ValueKind kind = static_cast<ValueKind>(1 + (i / 2) % 3);
      ASSERT_EQ(it->kind(), kind);
      ASSERT_EQ(it->seq(), 1000u + i);
      ASSERT_EQ(it->value(), Payload(i, kind));
    }
    ASSERT_OK(it->status());
    EXPECT_EQ(i, 600);
    it->Seek(Key(301));
    ASSERT_TRUE(it->Valid());
    EXPECT_EQ(it->key(), Key(302));
    it->Seek("a");
    EXPECT_EQ(it->key(), Key(0));
    it->Seek("z");
    EXPECT_FALSE(it->Valid());
    EXPECT_OK(it->status());
  }
}

// A compaction's iterator reads kSequentialReadBytes of blocks at a time: a table several
// times that size crosses reads mid-way through the data, at blocks that straddle a read's end.
TEST_F(LsmTableTest, SequentialIteratorReadsAcrossItsReadBuffers) {
  const int n = 90000;  // Key() has five digits
  Build(n, 1000);
  ASSERT_OK_AND_ASSIGN(uint64_t size, fs_.FileSize(path_));
  ASSERT_GT(size, 3 * TableReader::kSequentialReadBytes);
  ASSERT_OK_AND_ASSIGN(auto t, TableReader::Open(&fs_, path_, 1, nullptr));
  auto it = t->NewIterator(TableReader::ReadMode::kSequential);
  int i = 0;
  for (it->SeekToFirst(); it->Valid(); it->Next(), i += 2) {
    ASSERT_EQ(it->key(), Key(i));
    ASSERT_EQ(it->value(), Payload(i, it->kind()));
  }
  ASSERT_OK(it->status());
  EXPECT_EQ(i, n);
  // A seek far into the table, then on across the next read.
  it->Seek(Key(n / 2 + 1));
  for (i = n / 2 + 2; it->Valid(); it->Next(), i += 2) ASSERT_EQ(it->key(), Key(i));
  ASSERT_OK(it->status());
  EXPECT_EQ(i, n);
}

// The footer's version: 1 (legacy filter) and 2 open; anything else is named, not guessed at.
TEST_F(LsmTableTest, OpensFormatVersionsItKnowsAndNamesOthers) {
  Build(100);
  ASSERT_OK_AND_ASSIGN(std::string bytes, sync::ReadFileToString(&fs_, path_));
  for (const uint32_t version : {0u, 1u, 2u, 3u}) {
    std::string footer = bytes.substr(bytes.size() - kFooterSize);
    for (int b = 0; b < 4; ++b) footer[40 + b] = static_cast<char>(version >> (8 * b));
    const uint32_t crc = sync::crc32c::Value(footer.data(), 44);
    for (int b = 0; b < 4; ++b) footer[44 + b] = static_cast<char>(crc >> (8 * b));
    ASSERT_OK(sync::WriteFileAtomically(&fs_, path_,
                                        bytes.substr(0, bytes.size() - kFooterSize) + footer));
    auto t = TableReader::Open(&fs_, path_, 1, nullptr);
    if (version == 1 || version == 2) {
      ASSERT_OK(t.status());
      ASSERT_OK_AND_ASSIGN(auto e, (*t)->Get(Key(0), BloomHash(Key(0))));
      EXPECT_TRUE(e.has_value());
      continue;
    }
    ASSERT_FALSE(t.ok()) << version;
    EXPECT_TRUE(t.status().IsCorruption());
    EXPECT_NE(t.status().message().find("unknown format version " + std::to_string(version)),
              std::string::npos)
        << t.status().ToString();
  }
}

TEST_F(LsmTableTest, EmptyTableOpens) {
  Build(0);
  ASSERT_OK_AND_ASSIGN(auto t, TableReader::Open(&fs_, path_, 1, nullptr));
  EXPECT_EQ(t->entries(), 0u);
  auto it = t->NewIterator();
  it->SeekToFirst();
  EXPECT_FALSE(it->Valid());
}

// Every byte of the table flipped in turn: opening, every Get and a full iteration either
// succeed with exactly the original contents or fail with kCorruption naming the file and an
// offset. Never a crash, never a wrong value.
TEST_F(LsmTableTest, EveryDamagedByteIsCorruptionNamingFileAndOffsetNeverWrongData) {
  Build(120, 128);
  ASSERT_OK_AND_ASSIGN(uint64_t size, fs_.FileSize(path_));
  ASSERT_OK_AND_ASSIGN(std::string original, sync::ReadFileToString(&fs_, path_));
  int detected = 0;
  for (uint64_t off = 0; off < size; ++off) {
    SCOPED_TRACE("flipped byte " + std::to_string(off));
    test::FlipByte(&fs_, path_, off);
    auto check = [&](const Status& s) {
      ASSERT_TRUE(s.IsCorruption()) << s.ToString();
      EXPECT_NE(s.message().find(path_), std::string::npos) << s.ToString();
      EXPECT_NE(s.message().find("offset"), std::string::npos) << s.ToString();
      ++detected;
    };
    auto t = TableReader::Open(&fs_, path_, 1, nullptr);
    if (!t.ok()) {
      check(t.status());
    } else {
      bool failed = false;
      for (int i = 0; i < 120 && !failed; ++i) {
        auto e = (*t)->Get(Key(i), BloomHash(Key(i)));
        if (!e.ok()) {
          check(e.status());
          failed = true;
        } else if (e->has_value()) {
          ASSERT_EQ(i % 2, 0);
          ASSERT_EQ((*e)->payload, Payload(i, (*e)->kind));
          ASSERT_EQ((*e)->seq, 1000u + i);
        }
        // A miss is allowed only where the bloom filter was damaged into a false negative
        // (the filter block's CRC makes that impossible) or the key was never there.
        if (e.ok() && !e->has_value()) {
          ASSERT_EQ(i % 2, 1) << "lost " << Key(i);
        }
      }
      for (const TableReader::ReadMode mode : kBothReadModes) {
        auto it = (*t)->NewIterator(mode);
        int i = 0;
        for (it->SeekToFirst(); it->Valid(); it->Next(), i += 2) {
          ASSERT_EQ(it->key(), Key(i));
          ASSERT_EQ(it->value(), Payload(i, it->kind()));
        }
        if (!it->status().ok()) check(it->status());
      }
    }
    ASSERT_OK(sync::WriteFileAtomically(&fs_, path_, original));
  }
  EXPECT_GT(detected, static_cast<int>(size) / 2);
}

TEST(LsmBlock, SeekFindsEveryKeyAndTheGapsBetweenThem) {
  BlockBuilder b;
  for (int i = 0; i < 100; i += 2) b.Add("key" + std::to_string(1000 + i), "v" + std::to_string(i));
  const std::string contents = b.Finish();
  const std::string path = "/t/x.sst";
  BlockCursor first(contents, &path, 0);
  ASSERT_TRUE(first.Seek("a"));
  EXPECT_EQ(first.key(), "key1000");
  for (int i = 0; i < 101; ++i) {
    BlockCursor c(contents, &path, 0);
    const bool found = c.Seek("key" + std::to_string(1000 + i));
    if (i >= 99) {
      EXPECT_FALSE(found) << i;
      EXPECT_OK(c.status());
      continue;
    }
    ASSERT_TRUE(found) << i;
    const int want = (i + 1) / 2 * 2;  // the next even one at or after i
    EXPECT_EQ(c.key(), "key" + std::to_string(1000 + want));
    EXPECT_EQ(c.value(), "v" + std::to_string(want));
    // The walk goes on from there to the end.
    int rest = 0;
    while (c.Next()) ++rest;
    EXPECT_OK(c.status());
    EXPECT_EQ(rest, 49 - want / 2);
  }
}

// Restart points are what binary search trusts: each malformed one stops a walk with kCorruption.
TEST(LsmBlock, MalformedRestartArraysAreCorruption) {
  BlockBuilder b;
  for (int i = 0; i < 40; ++i) b.Add("key" + std::to_string(100 + i), "value");
  const std::string good = b.Finish();  // restarts at entries 0, 16, 32
  const std::string path = "/t/x.sst";
  auto walk = [&](const std::string& contents) {
    BlockCursor c(contents, &path, 0);
    while (c.Next()) {
    }
    return c.status();
  };
  ASSERT_OK(walk(good));
  const size_t count_at = good.size() - 4;
  const size_t restart1_at = count_at - 8;  // the second of three offsets
  auto with_fixed32 = [&](size_t at, uint32_t v) {
    std::string bad = good;
    for (int k = 0; k < 4; ++k) bad[at + k] = static_cast<char>(v >> (8 * k));
    return bad;
  };
  auto offset_of = [&](size_t at) {
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) v |= uint32_t{static_cast<uint8_t>(good[at + k])} << (8 * k);
    return v;
  };
  const uint32_t restart1 = offset_of(restart1_at);
  for (const std::string& bad : {
           with_fixed32(count_at, 1000),              // more restarts than the block holds
           with_fixed32(count_at, 2),                 // entries and offsets disagree
           with_fixed32(restart1_at, restart1 + 1),   // inside an entry
           with_fixed32(restart1_at, restart1 - 30),  // at an earlier entry's middle
           with_fixed32(restart1_at, 0),              // not ascending
           good.substr(0, 3),                         // no restart count
       }) {
    const Status s = walk(bad);
    EXPECT_TRUE(s.IsCorruption()) << s.ToString();
    BlockCursor c(bad, &path, 0);
    c.Seek("key120");  // whatever it finds, it must not crash; a walk reports the damage
  }
}

// Found by tests/fuzz/lsm_table_fuzz: a table whose blocks and index were each checksummed but
// disagreed (a block's keys beyond its index entry's last key) made Get miss keys a scan saw.
TEST_F(LsmTableTest, ABlockOutsideItsIndexRangeIsCorruptionNotAMiss) {
  std::string file;
  BlockBuilder index;
  BloomBuilder bloom(10);
  for (int block = 0; block < 2; ++block) {
    BlockBuilder data;
    std::string last;
    for (int i = 0; i < 10; ++i) {
      last = Key(block * 100 + i);
      std::string value;
      EncodeDataValue(&value, static_cast<uint8_t>(ValueKind::kValue), 1, "v");
      data.Add(last, value);
      bloom.AddKey(last);
    }
    const BlockHandle h{file.size(), data.size()};
    AppendBlockWithTrailer(&file, data.Finish());
    std::string handle;
    EncodeHandle(&handle, h);
    // The first block's index entry claims it ends at its fifth key.
    index.Add(block == 0 ? Key(4) : last, handle);
  }
  Footer f;
  f.entries = 20;
  f.filter = {file.size(), 0};
  const std::string filter = bloom.Finish();
  f.filter.size = filter.size();
  AppendBlockWithTrailer(&file, filter);
  const std::string& index_contents = index.Finish();
  f.index = {file.size(), index_contents.size()};
  AppendBlockWithTrailer(&file, index_contents);
  file += EncodeFooter(f);
  ASSERT_OK(sync::WriteFileAtomically(&fs_, path_, file));

  ASSERT_OK_AND_ASSIGN(auto t, TableReader::Open(&fs_, path_, 1, nullptr));
  // Every read of the first block finds the damage: a Get of a key it holds, and a scan (so no
  // key of it is ever yielded). A Get the index sends elsewhere (Key(7) goes to the second
  // block) cannot see it without reading every block, as with any lookup through an index.
  auto got = t->Get(Key(2), BloomHash(Key(2)));
  ASSERT_FALSE(got.ok());
  EXPECT_TRUE(got.status().IsCorruption()) << got.status().ToString();
  EXPECT_NE(got.status().message().find(path_ + " at offset 0"), std::string::npos)
      << got.status().ToString();
  for (const TableReader::ReadMode mode : kBothReadModes) {
    auto it = t->NewIterator(mode);
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
    }
    EXPECT_TRUE(it->status().IsCorruption()) << it->status().ToString();
  }
}

TEST_F(LsmTableTest, TruncatedTableFailsToOpen) {
  Build(100);
  ASSERT_OK_AND_ASSIGN(std::string bytes, sync::ReadFileToString(&fs_, path_));
  for (size_t n : {size_t{0}, size_t{10}, bytes.size() / 2, bytes.size() - 1}) {
    ASSERT_OK(sync::WriteFileAtomically(&fs_, path_, bytes.substr(0, n)));
    auto t = TableReader::Open(&fs_, path_, 1, nullptr);
    ASSERT_FALSE(t.ok()) << n;
    EXPECT_TRUE(t.status().IsCorruption()) << t.status().ToString();
  }
}

ManifestData SampleManifest() {
  ManifestData m;
  m.log_lsn = 1234;
  m.next_file_number = 20;
  TableMeta a;
  a.number = 3;
  a.level = 0;
  a.file_size = 4000;
  a.entries = 10;
  a.smallest = "a";
  a.largest = "m";
  a.smallest_seq = 5;
  a.largest_seq = 9;
  a.blob_files = {4};
  TableMeta b = a;
  b.number = 7;
  b.level = 2;
  b.blob_files = {};
  m.tables = {a, b};
  m.blobs = {BlobMeta{4, 9000, 8000, 100}};
  return m;
}

TEST(LsmManifest, RoundTrips) {
  const ManifestData m = SampleManifest();
  ASSERT_OK_AND_ASSIGN(ManifestData d, DecodeManifest(EncodeManifest(m), "/x/MANIFEST"));
  EXPECT_EQ(d.log_lsn, 1234u);
  EXPECT_EQ(d.next_file_number, 20u);
  ASSERT_EQ(d.tables.size(), 2u);
  EXPECT_EQ(d.tables[0].largest, "m");
  EXPECT_EQ(d.tables[0].blob_files, std::vector<uint64_t>{4});
  EXPECT_EQ(d.tables[1].level, 2);
  ASSERT_EQ(d.blobs.size(), 1u);
  EXPECT_EQ(d.blobs[0].garbage_bytes, 100u);
}

TEST(LsmManifest, EveryDamagedOrMissingByteIsCorruptionNamingIt) {
  const std::string bytes = EncodeManifest(SampleManifest());
  for (size_t i = 0; i < bytes.size(); ++i) {
    std::string bad = bytes;
    bad[i] ^= 0x21;
    auto d = DecodeManifest(bad, "/x/MANIFEST");
    ASSERT_FALSE(d.ok()) << "byte " << i;
    EXPECT_TRUE(d.status().IsCorruption());
    EXPECT_NE(d.status().message().find("/x/MANIFEST at offset"), std::string::npos)
        << d.status().ToString();
    ASSERT_FALSE(DecodeManifest(bytes.substr(0, i), "/x/MANIFEST").ok()) << "cut at " << i;
  }
}

TEST(LsmManifest, InconsistentContentsAreRefused) {
  ManifestData m = SampleManifest();
  m.tables[1].level = 1;
  m.tables[0].level = 1;  // both in level 1, overlapping
  EXPECT_TRUE(DecodeManifest(EncodeManifest(m), "M").status().IsCorruption());
  m = SampleManifest();
  m.tables[0].blob_files = {5};  // unlisted blob file
  EXPECT_TRUE(DecodeManifest(EncodeManifest(m), "M").status().IsCorruption());
  m = SampleManifest();
  m.next_file_number = 5;  // numbers at or past it
  EXPECT_TRUE(DecodeManifest(EncodeManifest(m), "M").status().IsCorruption());
}

TEST(LsmBlobFile, ValuesReadBackAndDamageIsCorruptionNamingFileAndOffset) {
  sync::FaultFileSystem fs(5);
  ASSERT_OK(sync::CreateDirDurably(&fs, "/b"));
  const std::string path = "/b/000009.blob";
  std::vector<BlobRef> refs;
  {
    ASSERT_OK_AND_ASSIGN(auto w, BlobWriter::Create(&fs, path, 9));
    for (int i = 0; i < 20; ++i) {
      ASSERT_OK_AND_ASSIGN(BlobRef r,
                           w->Add("key" + std::to_string(i), std::string(5000 + i, 'a' + i)));
      refs.push_back(r);
    }
    ASSERT_OK(w->Finish());
    EXPECT_EQ(w->records(), 20u);
  }
  ASSERT_OK_AND_ASSIGN(auto r, BlobReader::Open(&fs, path, 9));
  for (int i = 0; i < 20; ++i) {
    ASSERT_OK_AND_ASSIGN(std::string v, r->Read("key" + std::to_string(i), refs[i]));
    EXPECT_EQ(v, std::string(5000 + i, 'a' + i));
  }
  // The wrong key, a reference past the end, a huge size: corruption, no allocation.
  EXPECT_TRUE(r->Read("key2", refs[1]).status().IsCorruption());
  EXPECT_TRUE(r->Read("key1", BlobRef{9, 1u << 30, 10}).status().IsCorruption());
  Status huge = r->Read("key1", BlobRef{9, refs[1].offset, uint64_t{1} << 60}).status();
  EXPECT_TRUE(huge.IsCorruption()) << huge.ToString();
  EXPECT_NE(huge.message().find(path), std::string::npos);
  // A flipped value byte.
  test::FlipByte(&fs, path, refs[3].offset + kBlobRecordHeaderSize + 4 + 100);
  Status s = r->Read("key3", refs[3]).status();
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  EXPECT_NE(s.message().find(path + " at offset " + std::to_string(refs[3].offset)),
            std::string::npos)
      << s.ToString();
  // A damaged header, or the wrong file number.
  EXPECT_TRUE(BlobReader::Open(&fs, path, 10).status().IsCorruption());
  test::FlipByte(&fs, path, 2);
  EXPECT_TRUE(BlobReader::Open(&fs, path, 9).status().IsCorruption());
}

}  // namespace
}  // namespace kvfs::engines::lsm
