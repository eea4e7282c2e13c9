// The keydir's two views, the ordered map and the hash index, must always agree: every key
// found by a point lookup is the one the ordered walk reaches, through inserts, updates,
// erases and a bulk load, checked against a plain std::map as the model.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <string>

#include "engines/bitcask/keydir.h"

namespace kvfs::engines::bitcask {
namespace {

Location At(uint64_t lsn) { return Location{lsn, 1, lsn * 10, 20, FileKind::kWal, false}; }

void Put(KeyDir* dir, const std::string& key, const Location& loc) {
  auto [it, present] = dir->FindOrHint(key);
  if (present) {
    it->second = loc;
  } else {
    dir->insert(it, key, loc);
  }
}

// Random puts and erases of keys "key0".."key<universe-1>" on both the keydir and the model,
// with LSNs first_lsn, first_lsn+1, ...; one op in `erase_one_in` is an erase found by find().
void RandomOps(KeyDir* dir, std::map<std::string, Location>* model, std::mt19937* rng, int universe,
               uint64_t first_lsn, uint64_t ops, unsigned erase_one_in) {
  for (uint64_t lsn = first_lsn; lsn < first_lsn + ops; ++lsn) {
    const std::string key = "key" + std::to_string((*rng)() % universe);
    if ((*rng)() % erase_one_in == 0) {
      auto it = dir->find(key);
      if (it != dir->end()) dir->erase(it);
      model->erase(key);
    } else {
      Put(dir, key, At(lsn));
      (*model)[key] = At(lsn);
    }
  }
}

void ExpectSame(KeyDir& dir, const std::map<std::string, Location>& model, int universe) {
  ASSERT_EQ(dir.size(), model.size());
  auto want = model.begin();
  for (auto it = dir.begin(); it != dir.end(); ++it, ++want) {
    ASSERT_EQ(it->first, want->first);
    ASSERT_EQ(it->second, want->second);
  }
  for (int k = 0; k < universe; ++k) {
    const std::string key = "key" + std::to_string(k);
    auto found = dir.find(key);
    auto expected = model.find(key);
    if (expected == model.end()) {
      EXPECT_EQ(found, dir.end()) << key;
    } else {
      ASSERT_NE(found, dir.end()) << key;
      EXPECT_EQ(found->first, key);
      EXPECT_EQ(found->second, expected->second);
    }
  }
}

TEST(KeyDirTest, PointLookupsAgreeWithTheOrderThroughInsertsUpdatesAndErases) {
  constexpr int kUniverse = 2000;
  std::mt19937 rng(7);
  KeyDir dir;
  std::map<std::string, Location> model;
  RandomOps(&dir, &model, &rng, kUniverse, 1, 20000, 4);
  ExpectSame(dir, model, kUniverse);
}

TEST(KeyDirTest, FindOrHintSaysWhetherTheKeyIsThereAndHintsItsPlace) {
  KeyDir dir;
  auto [end, present] = dir.FindOrHint("b");
  EXPECT_FALSE(present);
  EXPECT_EQ(end, dir.end());
  dir.insert(end, "b", At(1));
  Put(&dir, "d", At(2));  // past the last key: appended
  auto [hint, c_present] = dir.FindOrHint("c");
  EXPECT_FALSE(c_present);
  EXPECT_EQ(hint->first, "d");  // where "c" goes
  auto [b, b_present] = dir.FindOrHint("b");
  EXPECT_TRUE(b_present);
  EXPECT_EQ(b->second, At(1));
}

TEST(KeyDirTest, ABulkLoadIndexesEveryKeyAtItsEnd) {
  constexpr int kUniverse = 3000;
  std::mt19937 rng(11);
  KeyDir dir;
  std::map<std::string, Location> model;
  Put(&dir, "key1", At(1));  // indexed before the load: the load starts over
  model["key1"] = At(1);
  dir.BeginBulkLoad();
  RandomOps(&dir, &model, &rng, kUniverse, 2, 10000, 5);  // find() walks the map meanwhile
  ExpectSame(dir, model, kUniverse);
  dir.EndBulkLoad();
  ExpectSame(dir, model, kUniverse);
  Put(&dir, "key-after", At(20000));  // and the index keeps up afterwards
  model["key-after"] = At(20000);
  ExpectSame(dir, model, kUniverse);
  EXPECT_NE(dir.find("key-after"), dir.end());
}

}  // namespace
}  // namespace kvfs::engines::bitcask
