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
  for (uint64_t step = 1; step <= 20000; ++step) {
    const std::string key = "key" + std::to_string(rng() % kUniverse);
    if (rng() % 4 == 0) {
      auto it = dir.find(key);
      if (it != dir.end()) dir.erase(it);
      model.erase(key);
    } else {
      Put(&dir, key, At(step));
      model[key] = At(step);
    }
  }
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
  for (uint64_t step = 2; step <= 10000; ++step) {
    const std::string key = "key" + std::to_string(rng() % kUniverse);
    if (rng() % 5 == 0) {
      auto it = dir.find(key);  // answered by the map while the index is off
      if (it != dir.end()) dir.erase(it);
      model.erase(key);
    } else {
      Put(&dir, key, At(step));
      model[key] = At(step);
    }
  }
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
