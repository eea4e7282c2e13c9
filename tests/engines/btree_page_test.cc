// The B-tree's page format (engines/btree/page.h) and its checkpoint files (checkpoint.h):
// the spill rule, slotted-node operations, sealing and checking a page, the MANIFEST record and
// the doublewrite file.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "engines/btree/checkpoint.h"
#include "engines/btree/page.h"
#include "tests/test_util.h"

namespace kvfs::engines::btree {
namespace {

constexpr size_t kPs = 4096;

std::string Page(PageType type, PageNo pgno, size_t ps = kPs) {
  std::string p(ps, '\0');
  InitPage(p.data(), ps, type, pgno);
  return p;
}

TEST(BtreePageTest, AFileChunkTakesExactlyOneOverflowPage) {
  // The daemon's chunks: ~17-byte keys, 4096-byte values (fusefs/layout.h).
  for (size_t key : {12, 17, 24, 40}) {
    const size_t payload = key + 4096;
    const size_t local = LocalSize(key, payload, kPs);
    EXPECT_GE(local, key) << "the key stays local";
    EXPECT_LE(local, MaxLocal(kPs));
    EXPECT_EQ(OverflowPages(payload - local, kPs), 1u) << key;
  }
  // Small values stay whole; a quarter page is the most a cell holds.
  EXPECT_EQ(LocalSize(17, 500, kPs), 500u);
  EXPECT_LT(LocalSize(17, 2000, kPs), 2000u);
  // A long key spills too, but keeps as much of itself local as a cell may hold.
  EXPECT_EQ(LocalSize(5000, 5000, kPs), MaxLocal(kPs));
}

TEST(BtreePageTest, FourLargestCellsFitOnePage) {
  for (size_t ps : {size_t{512}, size_t{4096}, size_t{32768}}) {
    std::string p = Page(PageType::kLeaf, 1, ps);
    const size_t local = MaxLocal(ps);
    const std::string cell =
        EncodeLeafCell(static_cast<uint32_t>(local), 1 << 20, std::string(local, 'k'), 7);
    for (int i = 0; i < 4; ++i) EXPECT_TRUE(NodeInsert(p.data(), ps, i, cell)) << ps << " " << i;
  }
}

TEST(BtreePageTest, SlottedNodeInsertsRemovesAndCompacts) {
  std::string p = Page(PageType::kLeaf, 3);
  std::vector<std::string> cells;
  for (int i = 0;; ++i) {
    std::string key = "key" + std::to_string(1000 + i);
    std::string cell = EncodeLeafCell(7, 90, key + std::string(90, 'v'), 0);
    if (!NodeInsert(p.data(), kPs, i, cell)) break;
    cells.push_back(cell);
  }
  ASSERT_GT(cells.size(), 30u);
  EXPECT_LT(NodeFree(p.data(), kPs), cells[0].size() + 2);
  // Removing frees garbage; the next insert compacts to use it.
  ASSERT_OK(NodeRemove(p.data(), kPs, 5));
  ASSERT_OK(NodeRemove(p.data(), kPs, 5));
  const std::string fresh = EncodeLeafCell(7, 90, "key9999" + std::string(90, 'n'), 0);
  ASSERT_TRUE(NodeInsert(p.data(), kPs, 0, fresh));
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> now, NodeCells(p.data(), kPs));
  ASSERT_EQ(now.size(), cells.size() - 1);
  EXPECT_EQ(now[0], fresh);
  EXPECT_EQ(now[1], cells[0]);
  EXPECT_EQ(now[6], cells[7]);
  ASSERT_OK_AND_ASSIGN(Cell c, NodeCell(p.data(), kPs, 6));
  EXPECT_EQ(c.local_key(), "key1007");
  EXPECT_EQ(c.value_size, 90u);
}

TEST(BtreePageTest, ASealedPageVerifiesAndDamageIsNamedWithFileAndOffset) {
  std::string p = Page(PageType::kLeaf, 9);
  ASSERT_TRUE(NodeInsert(p.data(), kPs, 0, EncodeLeafCell(1, 1, "kv", 0)));
  SealPage(p.data(), kPs, 42);
  EXPECT_OK(CheckPage(p.data(), kPs, 9, 43, "/d/pages", 9 * kPs));
  EXPECT_EQ(LsnOf(p.data()), 42u);

  std::string flipped = p;
  flipped[kPs - 1] ^= 1;
  Status s = CheckPage(flipped.data(), kPs, 9, 43, "/d/pages", 9 * kPs);
  EXPECT_TRUE(s.IsCorruption());
  EXPECT_NE(s.message().find("/d/pages at offset 36864"), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find("checksum"), std::string::npos) << s.ToString();

  // Another page's image, or one from a checkpoint never recorded, is damage too.
  EXPECT_TRUE(CheckPage(p.data(), kPs, 8, 43, "/d/pages", 8 * kPs).IsCorruption());
  s = CheckPage(p.data(), kPs, 9, 42, "/d/pages", 9 * kPs);
  EXPECT_TRUE(s.IsCorruption());
  EXPECT_NE(s.message().find("past the checkpoint"), std::string::npos) << s.ToString();
  // A page never written (zeros) does not pass.
  EXPECT_TRUE(CheckPage(std::string(kPs, '\0').data(), kPs, 9, 0, "p", 0).IsCorruption());
}

TEST(BtreePageTest, ACellThatRunsPastThePageIsCorruptionNotAnOverrun) {
  std::string p = Page(PageType::kLeaf, 2);
  ASSERT_TRUE(NodeInsert(p.data(), kPs, 0, EncodeLeafCell(3, 3, "abcdef", 0)));
  // The cell's value size now claims more than the page holds.
  const uint16_t off = DecodeFixed16(p.data() + kPageHeaderSize);
  EncodeFixed32(p.data() + off + 4, 200);
  EXPECT_TRUE(NodeCell(p.data(), kPs, 0).status().IsCorruption());
  EXPECT_TRUE(NodeCell(p.data(), kPs, 1).status().IsCorruption());
}

TEST(BtreePageTest, MetaRoundTripsAndRejectsInconsistentFields) {
  std::string p = Page(PageType::kMeta, 0);
  Meta m;
  m.root = 5;
  m.height = 2;
  m.page_count = 10;
  m.free_head = 7;
  m.free_count = 3;
  m.live_keys = 99;
  EncodeMeta(p.data(), m);
  ASSERT_OK_AND_ASSIGN(Meta back, DecodeMeta(p.data(), kPs));
  EXPECT_EQ(back.root, 5u);
  EXPECT_EQ(back.free_head, 7u);
  EXPECT_EQ(back.live_keys, 99u);
  m.root = 10;  // past page_count
  EncodeMeta(p.data(), m);
  EXPECT_TRUE(DecodeMeta(p.data(), kPs).status().IsCorruption());
}

TEST(BtreePageTest, ManifestRecordRoundTripsAndDamageIsNamed) {
  const std::string bytes = EncodeCheckpoint({1234, 4096});
  ASSERT_OK_AND_ASSIGN(CheckpointRecord r, DecodeCheckpoint(bytes, "/d/MANIFEST"));
  EXPECT_EQ(r.redo_lsn, 1234u);
  EXPECT_EQ(r.page_size, 4096u);
  std::string bad = bytes;
  bad[9] ^= 1;
  Status s = DecodeCheckpoint(bad, "/d/MANIFEST").status();
  EXPECT_TRUE(s.IsCorruption());
  EXPECT_NE(s.message().find("/d/MANIFEST"), std::string::npos);
}

TEST(BtreePageTest, DoubleWriteRoundTripsAndATornOneIsIgnored) {
  PageImages pages;
  for (PageNo pg : {3u, 4u, 9u}) {
    auto img = std::make_shared<std::string>(Page(PageType::kOverflow, pg));
    (*img)[100] = static_cast<char>(pg);
    SealPage(img->data(), kPs, 10 + pg);
    pages.emplace_back(pg, img);
  }
  const std::string bytes = EncodeDoubleWrite(50, kPs, pages);
  auto dw = DecodeDoubleWrite(bytes);
  ASSERT_TRUE(dw.has_value());
  EXPECT_EQ(dw->redo_lsn, 50u);
  ASSERT_EQ(dw->pages.size(), 3u);
  EXPECT_EQ(dw->pages[2].first, 9u);
  EXPECT_EQ(*dw->pages[2].second, *pages[2].second);
  // Torn anywhere (cut short, or a byte never written), it is not used.
  EXPECT_FALSE(DecodeDoubleWrite(bytes.substr(0, bytes.size() - 1)).has_value());
  std::string zeroed = bytes;
  std::fill(zeroed.begin() + 44 + 4096, zeroed.begin() + 44 + 4096 + 64, '\0');  // a page header
  EXPECT_FALSE(DecodeDoubleWrite(zeroed).has_value());
  EXPECT_FALSE(DecodeDoubleWrite("").has_value());
}

}  // namespace
}  // namespace kvfs::engines::btree
