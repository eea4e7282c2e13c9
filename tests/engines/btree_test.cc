// The B-tree engine's components: node splits and merges against a model (small pages, long
// keys and values that spill), the buffer pool's bound and eviction, the free list under a
// steady overwrite, checkpoints (the log folded in and checkpointed, the WAL rule), damage named
// with file and offset, and torn in-place page writes repaired from the doublewrite file.
#include "engines/btree/btree.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <functional>
#include <latch>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "engines/btree/page.h"
#include "engines/btree/pager.h"
#include "sync/durable.h"
#include "sync/fault_file_system.h"
#include "tests/test_util.h"

namespace kvfs::engines {
namespace {

using btree::PageNo;

constexpr char kDir[] = "/data/store";

EngineOptions Options(sync::SyncMode mode = sync::SyncMode::kAlways) {
  EngineOptions o;
  o.sync_mode = mode;
  o.segment_size = 64 << 10;
  o.background_work = false;
  return o;
}

BtreeOptions SmallPages() {
  BtreeOptions b;
  b.page_size = 512;  // max local payload 96 bytes: splits, spills and merges come quickly
  return b;
}

std::map<std::string, std::string> ScanAll(Engine& e) {
  std::map<std::string, std::string> out;
  EXPECT_OK(e.Scan({}, [&](std::string_view k, std::string_view v) {
    out.emplace(std::string(k), std::string(v));
    return true;
  }));
  return out;
}

class BtreeTest : public testing::Test {
 protected:
  void SetUp() override { ASSERT_OK(sync::CreateDirDurably(&fs_, "/data")); }

  Result<std::unique_ptr<Engine>> Open(const BtreeOptions& b = SmallPages(),
                                       EngineOptions o = Options(),
                                       BtreeRecoveryReport* report = nullptr) {
    return OpenBtreeWith(&fs_, kDir, o, b, report);
  }

  sync::FaultFileSystem fs_{11};
};

std::string RandomKey(std::mt19937_64& rng) {
  const uint64_t r = rng();
  switch (r % 10) {
    case 0:  // a key longer than a cell's local part: it spills and compares through overflow
      return "long/" + std::string(150 + r % 200, static_cast<char>('a' + r % 3)) +
             std::to_string(r % 50);
    case 1:
      return "p/" + std::to_string(r % 40);  // prefixes of one another
    default:
      return "k/" + std::to_string(r % 400);
  }
}

std::string RandomValue(std::mt19937_64& rng) {
  const uint64_t r = rng();
  const size_t n = r % 8 == 0 ? 300 + r % 2000 : r % 60;
  return std::string(n, static_cast<char>('a' + r % 26));
}

TEST_F(BtreeTest, SplitsAndMergesKeepEveryInvariantAndMatchAModel) {
  const uint64_t seed = test::TestSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  ASSERT_OK_AND_ASSIGN(auto e, Open());
  std::map<std::string, std::string> model;
  for (int round = 0; round < 6; ++round) {
    // Grow (splits, new roots), then shrink (merges, the root giving way).
    const int deletes_in_100 = round % 2 == 0 ? 20 : 80;
    for (int i = 0; i < 700; ++i) {
      WriteBatch b;
      const std::string key = RandomKey(rng);
      if (static_cast<int>(rng() % 100) < deletes_in_100) {
        b.Delete(key);
        model.erase(key);
      } else {
        const std::string v = RandomValue(rng);
        b.Put(key, v);
        model[key] = v;
      }
      ASSERT_OK(e->Apply(b));
      if (i % 100 == 0) ASSERT_OK(e->Verify());
    }
    ASSERT_OK(e->Verify());
    ASSERT_EQ(ScanAll(*e), model) << "round " << round;
    for (const auto& [k, v] : model) ASSERT_EQ(*e->Get(k), v);
    EXPECT_EQ(e->stats().live_keys, model.size());
    if (round == 2) ASSERT_OK(e->Compact());
  }
  // Everything deleted: every page but the meta page is free, and the tree is empty.
  for (const auto& [k, v] : model) ASSERT_OK(e->Delete(k));
  ASSERT_OK(e->Verify());
  ASSERT_OK(e->Close());
  e.reset();
  BtreeRecoveryReport r;
  ASSERT_OK_AND_ASSIGN(e, Open(SmallPages(), Options(), &r));
  EXPECT_EQ(r.height, 0u);
  EXPECT_EQ(r.live_keys, 0u);
  EXPECT_EQ(r.free_pages, r.pages - 1);
  EXPECT_TRUE(ScanAll(*e).empty());
}

TEST_F(BtreeTest, ScansFollowTheLeafLinksAcrossChunksAndPrefixes) {
  ASSERT_OK_AND_ASSIGN(auto e, Open());
  std::map<std::string, std::string> model;
  for (int i = 0; i < 1000; ++i) {
    const std::string k = (i % 2 ? "a/" : "b/") + std::to_string(100000 + i);
    model[k] = std::to_string(i);
    ASSERT_OK(e->Put(k, model[k]));
  }
  ScanOptions o;
  o.prefix = "b/";
  o.start_after = "b/100500";
  std::vector<std::string> keys;
  ASSERT_OK(e->Scan(o, [&](std::string_view k, std::string_view) {
    keys.emplace_back(k);
    return true;
  }));
  std::vector<std::string> want;
  for (const auto& [k, v] : model) {
    if (k.starts_with("b/") && k > "b/100500") want.push_back(k);
  }
  EXPECT_EQ(keys, want);
}

TEST(BtreePagerTest, ThePoolStaysWithinItsCapacityAndNeverEvictsADirtyPage) {
  sync::FaultFileSystem fs(3);
  ASSERT_OK(sync::CreateDirDurably(&fs, "/d"));
  constexpr size_t kPs = 512;
  btree::Pager pager(&fs, "/d/pages", kPs, 16);
  ASSERT_OK(pager.Open(/*read_only=*/false, /*torn_tail_restored=*/false,
                       /*must_hold_pages=*/false));
  std::vector<std::pair<PageNo, std::shared_ptr<std::string>>> images;
  for (PageNo pg = 0; pg < 100; ++pg) {
    auto img = std::make_shared<std::string>(kPs, '\0');
    btree::InitPage(img->data(), kPs, btree::PageType::kOverflow, pg);
    (*img)[200] = static_cast<char>(pg);
    images.emplace_back(pg, img);
  }
  pager.Install(&images, 5);
  // Dirty pages are kept past the bound: nothing has written them yet (no-steal).
  EXPECT_EQ(pager.stats().resident, 100u);
  EXPECT_EQ(pager.dirty_count(), 100u);
  const btree::PageImages dirty = pager.DirtyPages();
  ASSERT_EQ(dirty.size(), 100u);
  pager.set_lsn_bound(6);
  btree::PageImages sealed;  // what a checkpoint writes: the images with their CRC
  for (const auto& [pg, image] : dirty) {
    auto copy = std::make_shared<std::string>(*image);
    btree::SealPage(copy->data(), kPs, btree::LsnOf(copy->data()));
    sealed.emplace_back(pg, std::move(copy));
  }
  ASSERT_OK(pager.WriteInPlace(sealed));
  pager.MarkClean(dirty);
  EXPECT_EQ(pager.dirty_count(), 0u);
  EXPECT_LE(pager.stats().resident, 16u);
  for (int pass = 0; pass < 2; ++pass) {
    for (PageNo pg = 0; pg < 100; ++pg) {
      ASSERT_OK_AND_ASSIGN(btree::PageRef p, pager.Get(pg));
      EXPECT_EQ((*p)[200], static_cast<char>(pg));
      EXPECT_LE(pager.stats().resident, 16u);
    }
  }
  EXPECT_GE(pager.stats().evictions, 84u + 100u);
  EXPECT_GE(pager.stats().misses, 100u);
  // One dirty page among clean ones survives every sweep.
  std::vector<std::pair<PageNo, std::shared_ptr<std::string>>> one;
  auto img = std::make_shared<std::string>(*dirty[7].second);
  (*img)[200] = 'X';
  one.emplace_back(7, img);
  pager.Install(&one, 6);
  for (PageNo pg = 20; pg < 100; ++pg) ASSERT_OK(pager.Get(pg).status());
  const btree::PageImages still = pager.DirtyPages();
  ASSERT_EQ(still.size(), 1u);
  EXPECT_EQ((*still[0].second)[200], 'X');
  ASSERT_OK_AND_ASSIGN(btree::PageRef seven, pager.Get(7));
  EXPECT_EQ((*seven)[200], 'X');
}

TEST_F(BtreeTest, TheFileDoesNotGrowUnderASteadyOverwrite) {
  BtreeOptions b;  // 4 KiB pages, the daemon's chunks
  EngineOptions o = Options(sync::SyncMode::kNone);
  o.cache_size = 1 << 20;
  BtreeRecoveryReport r;
  ASSERT_OK_AND_ASSIGN(auto e, Open(b, o));
  std::mt19937_64 rng(5);
  auto key = [](int i) { return "c/" + std::to_string(1000000 + i) + "/00000000"; };
  for (int i = 0; i < 300; ++i) ASSERT_OK(e->Put(key(i), std::string(4096, 'a')));
  ASSERT_OK(e->Close());
  e.reset();
  ASSERT_OK_AND_ASSIGN(e, Open(b, o, &r));
  const uint64_t first = r.pages;
  for (int round = 0; round < 10; ++round) {
    // A tenth of the keys deleted (their overflow pages and emptied leaves freed), then every
    // key rewritten in a random order (overwrites reuse their pages, the rest comes off the
    // free list).
    for (int n = 0; n < 30; ++n) ASSERT_OK(e->Delete(key(static_cast<int>(rng() % 300))));
    std::vector<int> order(300);
    for (int i = 0; i < 300; ++i) order[i] = i;
    std::shuffle(order.begin(), order.end(), rng);
    for (int i : order) {
      ASSERT_OK(e->Put(key(i), std::string(4096, static_cast<char>('a' + round))));
    }
  }
  ASSERT_OK(e->Close());
  e.reset();
  ASSERT_OK_AND_ASSIGN(e, Open(b, o, &r));
  // 300 chunk pages, a few leaves and an internal page: the file holds what is live.
  EXPECT_LE(r.pages, first + 2) << "pages grew from " << first << " to " << r.pages;
  EXPECT_LE(r.pages, 300u + 20u);
  ASSERT_OK_AND_ASSIGN(uint64_t size, fs_.FileSize(std::string(kDir) + "/pages"));
  EXPECT_LE(size, r.pages * 4096);
  ASSERT_OK(e->Verify());
}

TEST_F(BtreeTest, ACheckpointFoldsTheLogIntoThePageFile) {
  EngineOptions o = Options();
  o.segment_size = 4096;  // the log rotates, so the checkpoint has segments to drop
  {
    BtreeOptions b = SmallPages();
    b.checkpoint_log_bytes = 1 << 30;  // only Compact checkpoints
    ASSERT_OK_AND_ASSIGN(auto e, Open(b, o));
    for (int i = 0; i < 400; ++i) ASSERT_OK(e->Put("k" + std::to_string(i), std::string(50, 'v')));
    const uint64_t segments_before = e->stats().wal.segments_created;
    ASSERT_OK(e->Compact());
    EXPECT_GT(e->stats().wal.segments_deleted, 0u) << segments_before;
    ASSERT_OK(e->Put("after", "1"));
    fs_.CrashAtSync(1, sync::CrashMode::kDropUnsynced);  // power lost with the store open
  }
  fs_.Crash(sync::CrashMode::kDropUnsynced);
  BtreeRecoveryReport r;
  ASSERT_OK_AND_ASSIGN(auto e, Open(SmallPages(), o, &r));
  EXPECT_GT(r.checkpoint_lsn, 400u);
  EXPECT_EQ(e->recovery().log.records_replayed, 1u) << e->recovery().Summary();
  EXPECT_EQ(*e->Get("after"), "1");
  EXPECT_EQ(*e->Get("k399"), std::string(50, 'v'));
  ASSERT_OK(e->Verify());
}

// A file system that calls `on_page_write` with the highest page LSN of every write to the page
// file, before the write.
class PageWriteSpyFs : public sync::FaultFileSystem {
 public:
  using sync::FaultFileSystem::FaultFileSystem;
  std::function<void(uint64_t)> on_page_write;

 protected:
  class Spy : public sync::RandomRWFile {
   public:
    Spy(PageWriteSpyFs* fs, std::unique_ptr<sync::RandomRWFile> inner)
        : RandomRWFile(inner->path()), fs_(fs), inner_(std::move(inner)) {}

   protected:
    Result<size_t> DoRead(uint64_t offset, size_t n, char* scratch) const override {
      return inner_->Read(offset, n, scratch);
    }
    Status DoWrite(uint64_t offset, std::string_view data) override {
      uint64_t max_lsn = 0;
      for (size_t at = 0; at + 512 <= data.size(); at += 512) {
        max_lsn = std::max(max_lsn, btree::LsnOf(data.data() + at));
      }
      if (fs_->on_page_write) fs_->on_page_write(max_lsn);
      return inner_->Write(offset, data);
    }
    Status DoTruncate(uint64_t size) override { return inner_->Truncate(size); }
    Status DoSync(bool data_only) override {
      return data_only ? inner_->DataSync() : inner_->Sync();
    }
    Result<uint64_t> DoSize() const override { return inner_->Size(); }
    Status DoClose() override { return inner_->Close(); }

   private:
    PageWriteSpyFs* const fs_;
    std::unique_ptr<sync::RandomRWFile> inner_;
  };

  Result<std::unique_ptr<sync::RandomRWFile>> DoNewRandomRWFile(const std::string& path,
                                                                bool create) override {
    KVFS_ASSIGN_OR_RETURN(auto inner, FaultFileSystem::DoNewRandomRWFile(path, create));
    return std::unique_ptr<sync::RandomRWFile>(std::make_unique<Spy>(this, std::move(inner)));
  }
};

// The WAL rule: a page reaches the page file only once the log is durable up to its LSN, so the
// page file is never ahead of the log, whatever the sync mode.
TEST(BtreeWalRuleTest, NoPageIsWrittenBeforeTheLogRecordsThatChangedIt) {
  PageWriteSpyFs fs(17);
  ASSERT_OK(sync::CreateDirDurably(&fs, "/data"));
  ASSERT_OK_AND_ASSIGN(auto e,
                       OpenBtreeWith(&fs, kDir, Options(sync::SyncMode::kNone), SmallPages()));
  int writes = 0;
  fs.on_page_write = [&](uint64_t lsn) {
    ++writes;
    EXPECT_LE(lsn, e->stats().wal.durable_lsn) << "a page of LSN " << lsn << " went first";
  };
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 200; ++i) {
      ASSERT_OK(e->Put("k" + std::to_string(i), std::string(40, static_cast<char>('a' + round))));
    }
    ASSERT_OK(e->Compact());  // nothing synced since the last round: the checkpoint must sync
  }
  EXPECT_GE(writes, 3);
  fs.on_page_write = nullptr;
}

TEST_F(BtreeTest, DamageToAPageIsNamedWithThePageFileAndOffset) {
  {
    ASSERT_OK_AND_ASSIGN(auto e, Open());
    for (int i = 0; i < 300; ++i) ASSERT_OK(e->Put("k" + std::to_string(i), "value"));
    ASSERT_OK(e->Close());
  }
  const std::string pages = std::string(kDir) + "/pages";
  test::FlipByte(&fs_, pages, 3 * 512 + 100);
  EngineOptions ro = Options();
  ro.read_only = true;
  ASSERT_OK_AND_ASSIGN(auto e, Open(SmallPages(), ro));
  Status s = e->Verify();
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  EXPECT_NE(s.message().find(pages + " at offset 1536"), std::string::npos) << s.ToString();
  // Reads that reach the page fail the same way rather than return anything.
  bool failed = false;
  for (int i = 0; i < 300 && !failed; ++i) {
    auto v = e->Get("k" + std::to_string(i));
    if (!v.ok()) {
      EXPECT_TRUE(v.status().IsCorruption());
      EXPECT_NE(v.status().message().find("offset 1536"), std::string::npos);
      failed = true;
    } else {
      EXPECT_EQ(*v, "value");
    }
  }
  EXPECT_TRUE(failed);
}

TEST_F(BtreeTest, VerifyFindsAPageLeakedFromTheFreeList) {
  // A page that is neither in the tree nor free (a dropped free-list entry) is found.
  {
    ASSERT_OK_AND_ASSIGN(auto e, Open());
    for (int i = 0; i < 300; ++i) ASSERT_OK(e->Put("k" + std::to_string(i), "value"));
    for (int i = 0; i < 300; i += 2) ASSERT_OK(e->Delete("k" + std::to_string(i)));
    ASSERT_OK(e->Verify());
    ASSERT_OK(e->Close());
  }
  // Drop the last entry of the first trunk page: rewrite the meta page's free count to match,
  // so only the leak tells.
  const std::string pages = std::string(kDir) + "/pages";
  ASSERT_OK_AND_ASSIGN(std::string bytes, sync::ReadFileToString(&fs_, pages));
  char* meta = bytes.data();
  const PageNo head = btree::DecodeFixed32(meta + btree::kPageHeaderSize + 28);
  ASSERT_NE(head, 0u);
  char* trunk = bytes.data() + size_t{head} * 512;
  const uint16_t n = btree::CountOf(trunk);
  ASSERT_GT(n, 0u);
  btree::SetCount(trunk, static_cast<uint16_t>(n - 1));
  btree::SealPage(trunk, 512, btree::LsnOf(trunk));
  btree::EncodeFixed32(meta + btree::kPageHeaderSize + 32,
                       btree::DecodeFixed32(meta + btree::kPageHeaderSize + 32) - 1);
  btree::SealPage(meta, 512, btree::LsnOf(meta));
  {
    ASSERT_OK_AND_ASSIGN(auto f, fs_.NewRandomRWFile(pages, false));
    ASSERT_OK(f->Write(0, bytes));
    ASSERT_OK(f->Sync());
  }
  EngineOptions ro = Options();
  ro.read_only = true;
  ASSERT_OK_AND_ASSIGN(auto e, Open(SmallPages(), ro));
  Status s = e->Verify();
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  EXPECT_NE(s.message().find("leaked"), std::string::npos) << s.ToString();
}

// --- Verify: the tree's invariants, each broken on its own -------------------------------------
//
// Each test below damages the page file so that every page still carries a valid checksum (the
// page is resealed) and reads still work: only Verify's walk can tell.

class BtreeVerifyTest : public BtreeTest {
 protected:
  const std::string pages_ = std::string(kDir) + "/pages";
  static constexpr size_t kPs = 512;

  // 300 keys over several leaves under an internal root, half of them deleted (so the free list
  // has trunks and free pages); the store verifies and is closed.
  void MakeStore() {
    ASSERT_OK_AND_ASSIGN(auto e, Open());
    char k[16];
    for (int i = 0; i < 300; ++i) {
      std::snprintf(k, sizeof(k), "k%03d", i);
      ASSERT_OK(e->Put(k, std::string(20 + i % 40, 'v')));
    }
    for (int i = 0; i < 300; i += 2) {
      std::snprintf(k, sizeof(k), "k%03d", i);
      ASSERT_OK(e->Delete(k));
    }
    ASSERT_OK(e->Verify());
    ASSERT_OK(e->Close());
  }

  // Calls `edit` on the page file's bytes, then writes them back, resealing every page whose
  // bytes it changed (so each checksum matches again).
  void EditPages(const std::function<void(std::string*)>& edit) {
    ASSERT_OK_AND_ASSIGN(std::string bytes, sync::ReadFileToString(&fs_, pages_));
    std::string edited = bytes;
    edit(&edited);
    ASSERT_NE(edited, bytes) << "the edit changed nothing";
    for (size_t at = 0; at + kPs <= edited.size(); at += kPs) {
      char* p = edited.data() + at;
      if (std::memcmp(p, bytes.data() + at, kPs) != 0) btree::SealPage(p, kPs, btree::LsnOf(p));
    }
    ASSERT_OK_AND_ASSIGN(auto f, fs_.NewRandomRWFile(pages_, false));
    ASSERT_OK(f->Write(0, edited));
    ASSERT_OK(f->Sync());
    ASSERT_OK(f->Close());
  }

  // The page numbers of every page of `type`, in file order.
  static std::vector<PageNo> PagesOf(const std::string& bytes, btree::PageType type) {
    std::vector<PageNo> out;
    for (size_t at = 0; at + kPs <= bytes.size(); at += kPs) {
      if (btree::TypeOf(bytes.data() + at) == type) out.push_back(static_cast<PageNo>(at / kPs));
    }
    return out;
  }

  // Verify on a read-only open: kCorruption whose message holds `what` and the page file.
  void ExpectVerifyFinds(const std::string& what) {
    EngineOptions ro = Options();
    ro.read_only = true;
    ASSERT_OK_AND_ASSIGN(auto e, Open(SmallPages(), ro));
    // The page file opens and reads work (the last key, in the last leaf, is found): every
    // page's checksum matches; the damage is to the tree's shape.
    auto v = e->Get("k299");
    ASSERT_OK(v.status());
    EXPECT_EQ(*v, std::string(20 + 299 % 40, 'v'));
    Status s = e->Verify();
    EXPECT_TRUE(s.IsCorruption()) << s.ToString();
    EXPECT_NE(s.message().find(what), std::string::npos) << s.ToString();
    EXPECT_NE(s.message().find(pages_), std::string::npos) << s.ToString();
    EXPECT_NE(s.message().find("at offset"), std::string::npos) << s.ToString();
  }
};

TEST_F(BtreeVerifyTest, AFreeListEntryThatIsAlsoInTheTreeIsFound) {
  MakeStore();
  EditPages([](std::string* b) {
    // The head trunk's last entry now names a live leaf: the page would be handed out while in
    // use. The free count stays right, so only the disjointness check can tell.
    const PageNo head = btree::DecodeFixed32(b->data() + btree::kPageHeaderSize + 28);
    ASSERT_NE(head, 0u);
    char* trunk = b->data() + size_t{head} * kPs;
    ASSERT_GT(btree::CountOf(trunk), 0u);
    const std::vector<PageNo> leaves = PagesOf(*b, btree::PageType::kLeaf);
    ASSERT_FALSE(leaves.empty());
    btree::SetTrunkEntry(trunk, btree::CountOf(trunk) - 1, leaves.front());
  });
  ExpectVerifyFinds("reachable twice");
}

TEST_F(BtreeVerifyTest, ABrokenLeafLinkIsFound) {
  MakeStore();
  EditPages([](std::string* b) {
    // A leaf that links to a right sibling links to nothing: scans would stop there.
    for (PageNo pg : PagesOf(*b, btree::PageType::kLeaf)) {
      char* p = b->data() + size_t{pg} * kPs;
      if (btree::NextOf(p) != 0) {
        btree::SetNext(p, 0);
        return;
      }
    }
  });
  ExpectVerifyFinds("right link 0");
}

TEST_F(BtreeVerifyTest, KeysOutOfOrderInALeafAreFound) {
  MakeStore();
  EditPages([](std::string* b) {
    // The last leaf's first two cells swap places: lookups of them would miss.
    const std::vector<PageNo> leaves = PagesOf(*b, btree::PageType::kLeaf);
    char* p = b->data() + size_t{leaves.back()} * kPs;
    ASSERT_OK_AND_ASSIGN(std::vector<std::string> cells, btree::NodeCells(p, kPs));
    ASSERT_GE(cells.size(), 2u);
    std::swap(cells[0], cells[1]);
    btree::NodeBuild(p, kPs, cells);
  });
  ExpectVerifyFinds("out of order");
}

TEST_F(BtreeVerifyTest, AKeyNotBelowItsParentsSeparatorIsFound) {
  MakeStore();
  EditPages([](std::string* b) {
    // The root's first separator drops below every key ("a..." < "k..."): the keys of its
    // leftmost child are no longer below it.
    const PageNo root = btree::DecodeFixed32(b->data() + btree::kPageHeaderSize + 16);
    char* p = b->data() + size_t{root} * kPs;
    ASSERT_EQ(btree::TypeOf(p), btree::PageType::kInternal);
    ASSERT_OK_AND_ASSIGN(std::vector<std::string> cells, btree::NodeCells(p, kPs));
    ASSERT_FALSE(cells.empty());
    cells[0][8] = 'a';  // child (4), key size (4), then the key
    btree::NodeBuild(p, kPs, cells);
  });
  ExpectVerifyFinds("not below its parent's separator");
}

// --- The free list ------------------------------------------------------------------------------

TEST_F(BtreeTest, TheFreeListHandsBackEveryFreedPageBeforeTheFileGrows) {
  // 200 values of two overflow pages each (512-byte pages, trunks of 120 entries): deleting
  // them all frees more pages than one trunk holds, so the list grows trunk by trunk; putting
  // the same keys back takes every page off it (entries, then the emptied trunks themselves)
  // and the file does not grow by a page.
  auto fill = [](Engine& e) {
    for (int i = 0; i < 200; ++i) {
      ASSERT_OK(e.Put("f/" + std::to_string(1000 + i), std::string(700, static_cast<char>(i))));
    }
  };
  BtreeRecoveryReport r;
  {
    ASSERT_OK_AND_ASSIGN(auto e, Open());
    fill(*e);
    for (int i = 0; i < 200; ++i) ASSERT_OK(e->Delete("f/" + std::to_string(1000 + i)));
    ASSERT_OK(e->Verify());
    ASSERT_OK(e->Close());
  }
  ASSERT_OK_AND_ASSIGN(auto e, Open(SmallPages(), Options(), &r));
  const uint64_t pages = r.pages;
  EXPECT_EQ(r.free_pages, pages - 1);  // everything but the meta page
  EXPECT_GT(r.free_pages, 2 * btree::TrunkCapacity(512)) << "the list needs several trunks";
  fill(*e);
  ASSERT_OK(e->Verify());
  ASSERT_OK(e->Close());
  e.reset();
  ASSERT_OK_AND_ASSIGN(e, Open(SmallPages(), Options(), &r));
  EXPECT_EQ(r.pages, pages) << "the file grew while " << pages - 1 << " pages were free";
  EXPECT_EQ(r.free_pages, 0u);
  for (int i = 0; i < 200; i += 37) {
    EXPECT_EQ(*e->Get("f/" + std::to_string(1000 + i)), std::string(700, static_cast<char>(i)));
  }
}

// --- Concurrency --------------------------------------------------------------------------------

// Readers run beside two writers whose batches split and merge nodes, spill values to overflow
// chains, free and reuse pages, while checkpoints run in the background: every Verify sees one
// whole tree (installs are atomic to readers), every value read is one some batch wrote whole,
// and no key's version goes backwards between scans. Also run under ThreadSanitizer
// (scripts/test).
TEST(BtreeConcurrencyTest, ReadersSeeWholeTreesWhileWritersSplitMergeAndCheckpoint) {
  sync::FaultFileSystem fs(23);
  ASSERT_OK(sync::CreateDirDurably(&fs, "/data"));
  EngineOptions o = Options(sync::SyncMode::kNone);
  o.background_work = true;
  o.cache_size = uint64_t{64} * 512;  // the smallest pool: checkpoints and evictions come often
  BtreeOptions b = SmallPages();
  b.checkpoint_log_bytes = 16 << 10;
  ASSERT_OK_AND_ASSIGN(auto e, OpenBtreeWith(&fs, kDir, o, b));
  // A value names its key and version, and its length (up to three overflow pages) and filler
  // follow from them, so a reader can tell a whole value from any mix of two.
  auto value_of = [](const std::string& key, int version) {
    const size_t n = (static_cast<size_t>(version) * 37 + key.size() * 11) % 1400;
    return key + "|" + std::to_string(version) + "|" +
           std::string(n, static_cast<char>('a' + version % 26));
  };
  auto check_value = [&](std::string_view key, std::string_view v) -> int {
    const size_t bar = v.find('|', key.size() + 1);
    if (!v.starts_with(std::string(key) + "|") || bar == std::string_view::npos) {
      ADD_FAILURE() << key << " holds a value of another key";
      return -1;
    }
    const int version = std::stoi(std::string(v.substr(key.size() + 1, bar - key.size() - 1)));
    EXPECT_EQ(v, value_of(std::string(key), version)) << key << " holds a torn value";
    return version;
  };
  constexpr int kWriters = 2;
  constexpr int kBatches = 250;
  std::atomic<int> writers_left{kWriters};
  // The writers start once both readers run, and each reader reads at least once (do-while):
  // the overlap is by construction, not by how the threads happen to be scheduled.
  std::latch readers_running(2);
  std::vector<std::thread> threads;
  std::vector<std::map<std::string, std::string>> models(kWriters);
  for (int t = 0; t < kWriters; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(100 + t);
      auto& model = models[t];
      readers_running.wait();
      for (int i = 1; i <= kBatches; ++i) {
        WriteBatch wb;
        // Grow for a while, then shrink (merges), then grow again.
        const bool shrinking = (i / 60) % 2 == 1;
        for (int n = 0; n < 4; ++n) {
          const std::string key = "w" + std::to_string(t) + "/" + std::to_string(rng() % 90);
          if (rng() % 10 < (shrinking ? 7u : 2u)) {
            wb.Delete(key);
            model.erase(key);
          } else {
            wb.Put(key, value_of(key, i));
            model[key] = value_of(key, i);
          }
        }
        EXPECT_OK(e->Apply(wb));
      }
      --writers_left;
    });
  }
  std::atomic<int> verifies{0};
  threads.emplace_back([&] {
    std::map<std::string, int> last;
    readers_running.count_down();
    do {
      EXPECT_OK(e->Verify());
      ++verifies;
      EXPECT_OK(e->Scan({}, [&](std::string_view k, std::string_view v) {
        const int version = check_value(k, v);
        int& seen = last[std::string(k)];
        EXPECT_GE(version, seen) << k;
        seen = version;
        return true;
      }));
    } while (writers_left > 0);
  });
  threads.emplace_back([&] {
    std::mt19937_64 rng(7);
    readers_running.count_down();
    do {
      const std::string key =
          "w" + std::to_string(rng() % kWriters) + "/" + std::to_string(rng() % 90);
      auto v = e->Get(key);
      if (v.ok()) {
        check_value(key, *v);
      } else {
        EXPECT_TRUE(v.status().IsNotFound()) << v.status().ToString();
      }
    } while (writers_left > 0);
  });
  for (auto& th : threads) th.join();
  EXPECT_GT(verifies.load(), 0);
  // Background checkpoints ran meanwhile (each drops the log segments it covers).
  EXPECT_GT(e->stats().wal.segments_deleted, 0u);
  std::map<std::string, std::string> want;
  for (const auto& m : models) want.insert(m.begin(), m.end());
  EXPECT_EQ(ScanAll(*e), want);
  ASSERT_OK(e->Verify());
}

// The checkpoint's in-place writes are torn by a power cut (their DataSync never happens): the
// doublewrite file puts every page back; without it the same cut damages the tree.
int TornCheckpoints(bool double_write, int seeds) {
  int damaged = 0;
  for (int seed = 1; seed <= seeds; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed) + (double_write ? "" : ", no doublewrite"));
    sync::FaultFileSystem fs(seed);
    EXPECT_OK(sync::CreateDirDurably(&fs, "/data"));
    BtreeOptions b = SmallPages();
    b.double_write = double_write;
    std::map<std::string, std::string> model;
    {
      auto e = OpenBtreeWith(&fs, kDir, Options(), b);
      EXPECT_OK(e.status());
      if (!e.ok()) return -1;
      for (int i = 0; i < 300; ++i) {
        model["k" + std::to_string(i)] = std::string(30, 'a');
        EXPECT_OK((*e)->Put("k" + std::to_string(i), model["k" + std::to_string(i)]));
      }
      EXPECT_OK((*e)->Compact());
      for (int i = 0; i < 300; i += 3) {
        model["k" + std::to_string(i)] = std::string(60, 'b');
        EXPECT_OK((*e)->Put("k" + std::to_string(i), model["k" + std::to_string(i)]));
      }
      // The next Compact's syncs: the doublewrite file's, then the page file's. The power goes
      // before the page file's, with its writes pending: a prefix of them lands, the next torn.
      fs.CrashAtSync(double_write ? 2 : 1, sync::CrashMode::kTearLastWrite);
      EXPECT_FALSE((*e)->Compact().ok());
    }
    fs.Crash(sync::CrashMode::kTearLastWrite);
    BtreeRecoveryReport r;
    auto e = OpenBtreeWith(&fs, kDir, Options(), b, &r);
    bool ok = e.ok();
    if (ok) ok = (*e)->Verify().ok();
    if (ok) ok = ScanAll(**e) == model;
    if (!ok) ++damaged;
    if (double_write) {
      EXPECT_TRUE(ok) << (e.ok() ? "" : e.status().ToString());
      EXPECT_GT(r.doublewrite_restored, 0u);
    }
  }
  return damaged;
}

TEST(BtreeTornPageTest, ATornInPlaceWriteIsRepairedFromTheDoublewriteFile) {
  EXPECT_EQ(TornCheckpoints(/*double_write=*/true, 20), 0);
}

TEST(BtreeTornPageTest, WithoutTheDoublewriteFileTheSameCutDamagesTheTree) {
  // The test above would go red without the doublewrite file: here it is off.
  EXPECT_GT(TornCheckpoints(/*double_write=*/false, 20), 0);
}

}  // namespace
}  // namespace kvfs::engines
