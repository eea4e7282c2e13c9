// The kvfs command line, run as a user would run it: the real binary, real files.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>

#include "engines/bitcask/bitcask.h"
#include "engines/engine.h"
#include "engines/events/events.h"
#include "engines/events/format.h"
#include "fusefs/file_store.h"
#include "fusefs/layout.h"
#include "sync/posix_file_system.h"
#include "tests/test_util.h"

namespace kvfs {
namespace {

struct CliRun {
  int exit_code;
  std::string output;  // stdout and stderr
};

CliRun Kvfs(const std::string& args) {
  const std::string cmd = std::string(KVFS_BINARY) + " " + args + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return {-1, "popen failed"};
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  const int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

void MakeStore(const std::string& dir, int keys) {
  engines::EngineOptions o;
  o.sync_mode = sync::SyncMode::kNone;
  auto e = engines::OpenEngine("bitcask", sync::DefaultFileSystem(), dir, o);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  for (int i = 0; i < keys; ++i) {
    ASSERT_OK((*e)->Put("key" + std::to_string(i), std::string(100, 'v')));
  }
  ASSERT_OK((*e)->Close());
}

TEST(KvfsCli, VersionPrintsTheVersion) {
  CliRun r = Kvfs("--version");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("kvfs "), std::string::npos) << r.output;
}

// The shipped binary has no simulated disk: the power-cut tests' options belong to the test
// daemon (tests/crash/kvfs_fault_daemon) and are refused here before anything is mounted.
TEST(KvfsCli, TheShippedBinaryRefusesTheTestDaemonsFaultOptions) {
  test::TempDir tmp;
  // No such mountpoint: a binary that took the option would fail later, with exit code 1.
  for (const char* flag : {"--test-fault-injection", "--crash-at-sync 3", "--seed 1",
                           "--fail-sync 2", "--space-left 10"}) {
    CliRun r = Kvfs("mount " + tmp.Sub("mnt") + " --data " + tmp.Sub("data") + " -f " + flag);
    EXPECT_EQ(r.exit_code, 109) << flag << ": " << r.output;  // CLI11's "extras" error
    EXPECT_NE(r.output.find(std::string(flag).substr(0, std::string(flag).find(' '))),
              std::string::npos)
        << r.output;
  }
  EXPECT_FALSE(std::filesystem::exists(tmp.Sub("data"))) << "a refused mount created its data";
}

TEST(KvfsCli, CheckOfAHealthyStoreSaysOkWithItsKeyCount) {
  test::TempDir tmp;
  MakeStore(tmp.Sub("store"), 50);
  CliRun r = Kvfs("check --engine bitcask " + tmp.Sub("store"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("50 keys"), std::string::npos) << r.output;
}

// Without a terminal (here a pipe) check prints its report and nothing more: scripts read it.
TEST(KvfsCli, CheckWithoutATerminalPrintsOnlyItsReport) {
  test::TempDir tmp;
  MakeStore(tmp.Sub("store"), 50);
  CliRun r = Kvfs("check --engine bitcask " + tmp.Sub("store"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  // What the open recovered (the 50 records of the log, nothing dropped), then the keys: 50 of
  // 4 or 5 bytes ("key0".."key49"), 100-byte values.
  EXPECT_EQ(r.output, tmp.Sub("store") +
                          ": opened: log: 1 segments, 50 records, next LSN 51, 50 records "
                          "replayed; merged_lsn 0, merged_files 0, hint_files_used 0, "
                          "keys_from_hints 0, entries_scanned 0, leftover_files_removed 0\n" +
                          tmp.Sub("store") +
                          ": bitcask store OK: 50 keys, 5240 bytes of keys and values, every "
                          "checksum verified\n");
}

TEST(KvfsCli, CheckOfADamagedStoreFailsNamingTheFile) {
  test::TempDir tmp;
  MakeStore(tmp.Sub("store"), 50);
  MakeStore(tmp.Sub("store"), 0);  // reopened: the first segment is now an older one
  // Flip a byte of the first value in the oldest log segment (the newest: the next test).
  std::vector<std::string> segments;
  for (const auto& f : std::filesystem::directory_iterator(tmp.Sub("store/wal"))) {
    if (f.path().extension() == ".wal") segments.push_back(f.path().string());
  }
  ASSERT_GE(segments.size(), 2u);
  std::sort(segments.begin(), segments.end());
  {
    std::fstream f(segments.front(), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(64 + 16 + 13 + 4 + 20);  // segment header, record header, entry header, key, value
    f.put('#');
  }
  CliRun r = Kvfs("check --engine bitcask " + tmp.Sub("store"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find(std::filesystem::path(segments.front()).filename().string()),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("offset"), std::string::npos) << r.output;
}

// The newest (only) log segment of a store of five keys written one by one: its path, and where
// record `i` (0-based) starts. Each record is one Put of "keyN" and a 100-byte value.
std::string OnlySegment(const std::string& store) {
  for (const auto& f : std::filesystem::directory_iterator(store + "/wal")) {
    if (f.path().extension() == ".wal") return f.path().string();
  }
  return "";
}
uint64_t FiveKeyRecordAt(int i) { return 64 + static_cast<uint64_t>(i) * (16 + 13 + 4 + 100); }

void Poke(const std::string& path, uint64_t offset, std::string_view bytes) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// The issue's five files: one flipped byte in the third record of the newest segment, records
// after it. check must say so, naming the segment and the offset, and exit 1; it used to print
// "every checksum verified" and drop the last three.
TEST(KvfsCli, CheckOfDamageInTheNewestSegmentFailsNamingSegmentAndOffset) {
  test::TempDir tmp;
  MakeStore(tmp.Sub("store"), 5);
  const std::string segment = OnlySegment(tmp.Sub("store"));
  Poke(segment, FiveKeyRecordAt(2) + 16 + 13 + 4 + 50, "#");
  CliRun r = Kvfs("check --engine bitcask " + tmp.Sub("store"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find(std::filesystem::path(segment).filename().string() + " at offset " +
                          std::to_string(FiveKeyRecordAt(2))),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("2 records with valid checksums follow"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("every checksum verified"), std::string::npos) << r.output;
}

// A torn last write (its end still the segment's zeros) is a clean end of the log, reported;
// in a sync mode that acknowledges writes before they are durable that is exit 3.
TEST(KvfsCli, CheckOfATornTailReportsItAndExitsThreeUnlessSyncIsAlways) {
  test::TempDir tmp;
  MakeStore(tmp.Sub("store"), 5);
  const std::string segment = OnlySegment(tmp.Sub("store"));
  Poke(segment, FiveKeyRecordAt(4) + 60, std::string(16 + 13 + 4 + 100 - 60, '\0'));
  CliRun batch = Kvfs("check --engine bitcask " + tmp.Sub("store"));
  EXPECT_EQ(batch.exit_code, 3) << batch.output;
  EXPECT_NE(batch.output.find("4 keys"), std::string::npos) << batch.output;
  EXPECT_NE(batch.output.find("torn tail was dropped: 60 bytes at"), std::string::npos)
      << batch.output;
  EXPECT_NE(batch.output.find("offset " + std::to_string(FiveKeyRecordAt(4))), std::string::npos)
      << batch.output;
  CliRun always = Kvfs("check --sync always --engine bitcask " + tmp.Sub("store"));
  EXPECT_EQ(always.exit_code, 0) << always.output;
  EXPECT_NE(always.output.find("none of it was ever acknowledged"), std::string::npos)
      << always.output;
}

// --salvage keeps every record that verifies in a new store that takes the damaged one's place,
// keeps the damaged one beside it byte for byte, and says exactly what it dropped.
TEST(KvfsCli, SalvageKeepsWhatVerifiesAndSaysWhatItDropped) {
  test::TempDir tmp;
  const std::string store = tmp.Sub("store");
  MakeStore(store, 5);
  const std::string segment = OnlySegment(store);
  Poke(segment, FiveKeyRecordAt(2) + 16 + 13 + 4 + 50, "#");
  std::string damaged_bytes;
  {
    std::ifstream in(segment, std::ios::binary);
    damaged_bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  CliRun r = Kvfs("check --salvage --engine bitcask " + store);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("salvage drops " + std::to_string(16 + 13 + 4 + 100) + " bytes at"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("records of LSN 3 to 3"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("salvaged: 4 keys kept, 1 log records lost"), std::string::npos)
      << r.output;
  // The salvaged store checks clean and holds the four keys that verified.
  CliRun after = Kvfs("check --engine bitcask " + store);
  EXPECT_EQ(after.exit_code, 0) << after.output;
  EXPECT_NE(after.output.find("4 keys"), std::string::npos) << after.output;
  // The damaged store is beside it, unchanged.
  std::string aside;
  for (const auto& f : std::filesystem::directory_iterator(tmp.path())) {
    if (f.path().filename().string().starts_with("store.damaged-")) aside = f.path().string();
  }
  ASSERT_FALSE(aside.empty()) << r.output;
  std::ifstream in(aside + "/wal/" + std::filesystem::path(segment).filename().string(),
                   std::ios::binary);
  const std::string kept((std::istreambuf_iterator<char>(in)), {});
  EXPECT_EQ(kept, damaged_bytes);
}

TEST(KvfsCli, CheckOfADamagedLsmTableFailsNamingTheFileAndOffset) {
  test::TempDir tmp;
  const std::string dir = tmp.Sub("lsm");
  {
    engines::EngineOptions o;
    o.sync_mode = sync::SyncMode::kNone;
    auto e = engines::OpenEngine("lsm", sync::DefaultFileSystem(), dir, o);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    for (int i = 0; i < 2000; ++i) {
      ASSERT_OK((*e)->Put("key" + std::to_string(i), std::string(100, 'v')));
    }
    ASSERT_OK((*e)->Compact());  // everything into one table
    ASSERT_OK((*e)->Close());
  }
  CliRun ok = Kvfs("check --engine lsm " + dir);
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_NE(ok.output.find("2000 keys"), std::string::npos) << ok.output;
  std::string table;
  for (const auto& f : std::filesystem::directory_iterator(dir)) {
    if (f.path().extension() == ".sst") table = f.path().string();
  }
  ASSERT_FALSE(table.empty());
  {
    std::fstream f(table, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(5000);  // inside a data block
    f.put('#');
  }
  CliRun r = Kvfs("check --engine lsm " + dir);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find(table + " at offset"), std::string::npos) << r.output;
}

// A B-tree store of 4 KiB pages whose free list holds pages: 40 values of three overflow pages
// each, 20 of them deleted. Returns the byte offsets of one free page and of one leaf.
struct BtreePages {
  uint64_t free_page = 0;
  uint64_t leaf = 0;
};
BtreePages MakeBtreeStore(const std::string& dir) {
  {
    engines::EngineOptions o;
    o.sync_mode = sync::SyncMode::kNone;
    auto e = engines::OpenEngine("btree", sync::DefaultFileSystem(), dir, o);
    EXPECT_TRUE(e.ok()) << e.status().ToString();
    if (!e.ok()) return {};
    for (int i = 0; i < 40; ++i) {
      EXPECT_OK((*e)->Put("key" + std::to_string(i), std::string(10000, 'v')));
    }
    for (int i = 0; i < 40; i += 2) EXPECT_OK((*e)->Delete("key" + std::to_string(i)));
    EXPECT_OK((*e)->Close());
  }
  std::ifstream in(dir + "/pages", std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), {});
  BtreePages found;
  for (uint64_t at = 4096; at + 4096 <= bytes.size(); at += 4096) {
    const int type = static_cast<unsigned char>(bytes[at + 4]);  // FORMAT.md: 2 leaf, 6 free
    if (type == 6 && found.free_page == 0) found.free_page = at;
    if (type == 2 && found.leaf == 0) found.leaf = at;
  }
  EXPECT_NE(found.free_page, 0u);
  EXPECT_NE(found.leaf, 0u);
  return found;
}

// kvfs check walks every page of a B-tree store (Engine::Verify), not only those its scan of
// the keys reads: a flipped byte in a free page is reported, naming the page file and offset.
TEST(KvfsCli, CheckOfABtreeStoreVerifiesEveryPageNamingFileAndOffset) {
  test::TempDir tmp;
  const std::string dir = tmp.Sub("btree");
  const BtreePages at = MakeBtreeStore(dir);
  CliRun ok = Kvfs("check --engine btree " + dir);
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_NE(ok.output.find("20 keys"), std::string::npos) << ok.output;
  for (const uint64_t offset : {at.free_page, at.leaf}) {
    SCOPED_TRACE(offset == at.free_page ? "a free page" : "a leaf");
    std::string original(1, '\0');
    {
      std::ifstream in(dir + "/pages", std::ios::binary);
      in.seekg(static_cast<std::streamoff>(offset + 1000));
      in.read(original.data(), 1);
    }
    Poke(dir + "/pages", offset + 1000, original == "#" ? "$" : "#");
    CliRun r = Kvfs("check --engine btree " + dir);
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find(dir + "/pages at offset " + std::to_string(offset)), std::string::npos)
        << r.output;
    Poke(dir + "/pages", offset + 1000, original);  // whole again for the next case
  }
  EXPECT_EQ(Kvfs("check --engine btree " + dir).exit_code, 0);
}

// An events store: check verifies every event's own CRC32C and every stream's numbering,
// and names the stream and the event. The damage is made through the Bitcask store beneath,
// so the log's own checksums are right and only the event store's checks can see it.
TEST(KvfsCli, CheckOfAnEventStoreVerifiesEveryEventAndEveryStreamsNumbering) {
  test::TempDir tmp;
  const std::string dir = tmp.Sub("events");
  engines::EngineOptions o;
  o.sync_mode = sync::SyncMode::kNone;
  {
    auto e = engines::OpenEngine("events", sync::DefaultFileSystem(), dir, o);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    engines::EventStore* es = engines::AsEventStore(e->get());
    for (int i = 0; i < 6; ++i) ASSERT_OK(es->Append("orders", "event " + std::to_string(i), {}));
    ASSERT_OK(es->Append("other", "x", {}));
    ASSERT_OK((*e)->Close());
  }
  CliRun r = Kvfs("check --engine events " + dir);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  engines::BitcaskOptions b;
  b.max_key_size = engines::kMaxKeySize + 1;
  std::vector<std::pair<std::string, std::string>> events;
  auto raw_events = [&] {
    auto raw = engines::OpenBitcaskWith(sync::DefaultFileSystem(), dir, o, b);
    EXPECT_TRUE(raw.ok()) << raw.status().ToString();
    engines::ScanOptions so;
    so.prefix = engines::events::TagPrefix(engines::events::kEventTag);
    events.clear();
    EXPECT_OK((*raw)->Scan(so, [&](std::string_view k, std::string_view v) {
      events.emplace_back(k, v);
      return true;
    }));
    return std::move(*raw);
  };
  {
    auto raw = raw_events();
    std::string bad = events[2].second;
    bad.back() ^= 1;
    ASSERT_OK(raw->Put(events[2].first, bad));  // event 2 of "orders": its own CRC fails
    ASSERT_OK(raw->Close());
  }
  r = Kvfs("check --engine events " + dir);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("stream 'orders': event 2 fails its CRC32C"), std::string::npos)
      << r.output;
  {
    auto raw = raw_events();
    ASSERT_OK(raw->Put(events[2].first,
                       engines::events::EventValue(events[2].first, "event 2")));  // repaired
    ASSERT_OK(raw->Delete(events[3].first));  // and a gap: event 3 gone
    ASSERT_OK(raw->Close());
  }
  r = Kvfs("check --engine events " + dir);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("stream 'orders': a gap: event 4 follows event 2"), std::string::npos)
      << r.output;
}

// Salvage of an events store: a damaged log record (event 3 of a stream) is skipped by the
// log, so the stream breaks there; salvage keeps it up to the break, says so, copies every
// stream's events (which the Engine interface's keys do not hold), and the result checks clean.
TEST(KvfsCli, SalvageOfAnEventStoreKeepsEachStreamUpToItsFirstBreak) {
  test::TempDir tmp;
  const std::string dir = tmp.Sub("events");
  engines::EngineOptions o;
  o.sync_mode = sync::SyncMode::kNone;
  {
    auto e = engines::OpenEngine("events", sync::DefaultFileSystem(), dir, o);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    engines::EventStore* es = engines::AsEventStore(e->get());
    for (int i = 0; i < 6; ++i) {
      ASSERT_OK(es->Append("orders", "payload-of-event-" + std::to_string(i), {}));
      ASSERT_OK(es->Append("other", "o" + std::to_string(i), {}));
    }
    ASSERT_OK((*e)->Close());
  }
  {
    auto e = engines::OpenEngine("events", sync::DefaultFileSystem(), dir, o);  // a new segment
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    ASSERT_OK((*e)->Close());
  }
  std::vector<std::string> segments;
  for (const auto& f : std::filesystem::directory_iterator(dir + "/wal")) {
    if (f.path().extension() == ".wal") segments.push_back(f.path().string());
  }
  std::sort(segments.begin(), segments.end());
  std::string bytes;
  {
    std::ifstream in(segments.front(), std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  const size_t at = bytes.find("payload-of-event-3");
  ASSERT_NE(at, std::string::npos);
  Poke(segments.front(), at + 2, "#");
  CliRun r = Kvfs("check --engine events " + dir);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  r = Kvfs("check --salvage --engine events " + dir);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("stream 'orders': a gap: event 4 follows event 2; salvage keeps its "
                          "first 3 events"),
            std::string::npos)
      << r.output;
  r = Kvfs("check --engine events " + dir);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  auto e = engines::OpenEngine("events", sync::DefaultFileSystem(), dir, o);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  engines::EventStore* es = engines::AsEventStore(e->get());
  EXPECT_EQ(es->Stat("orders")->events, 3u);
  EXPECT_EQ(*es->ReadEvent("orders", 2), "payload-of-event-2");
  EXPECT_EQ(es->Stat("other")->events, 6u);
}

// Salvage of a file-tree events store: each append is one log record holding the event and the
// file's new size, so when the record of event 3 is damaged, the stream keeps events 0-2 and
// the node (from event 5's record) says six events' bytes. The salvage sets the size to the
// stream's and says so, so the salvaged file reads whole to its size and the check is clean.
TEST(KvfsCli, SalvageOfAnEventsFileTreeFitsEachFileToItsStream) {
  test::TempDir tmp;
  const std::string dir = tmp.Sub("events");
  const fusefs::Caller me{0, 0, 022};
  engines::EngineOptions o;
  o.sync_mode = sync::SyncMode::kNone;
  uint64_t id = 0;
  std::string kept;  // events 0-2, what the salvage can keep
  {
    auto e = engines::OpenEngine("events", sync::DefaultFileSystem(), dir, o);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    auto st = fusefs::FileStore::Open(std::move(*e), {});
    ASSERT_TRUE(st.ok()) << st.status().ToString();
    auto f = (*st)->Create(fusefs::kRootId, "log", 0644, me);
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    id = f->id;
    uint64_t size = 0;
    for (int i = 0; i < 6; ++i) {
      const std::string event = "payload-of-event-" + std::to_string(i) + "\n";
      ASSERT_OK((*st)->Write(id, size, event));
      size += event.size();
      if (i < 3) kept += event;
    }
    ASSERT_OK((*st)->Close());
  }
  std::vector<std::string> segments;
  for (const auto& f : std::filesystem::directory_iterator(dir + "/wal")) {
    if (f.path().extension() == ".wal") segments.push_back(f.path().string());
  }
  ASSERT_EQ(segments.size(), 1u);
  std::string bytes;
  {
    std::ifstream in(segments.front(), std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  const size_t at = bytes.find("payload-of-event-3");
  ASSERT_NE(at, std::string::npos);
  Poke(segments.front(), at + 2, "#");
  CliRun r = Kvfs("check --salvage --engine events " + dir);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("salvage sets the size of file " + std::to_string(id) +
                          " (M\\x00log) "
                          "to its stream's " +
                          std::to_string(kept.size()) + " bytes"),
            std::string::npos)
      << r.output;
  r = Kvfs("check --engine events " + dir);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  auto e = engines::OpenEngine("events", sync::DefaultFileSystem(), dir, o);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  fusefs::FileStoreOptions ro;
  ro.read_only = true;
  auto st = fusefs::FileStore::Open(std::move(*e), ro);
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  auto attr = (*st)->Lookup(fusefs::kRootId, "log");
  ASSERT_TRUE(attr.ok()) << attr.status().ToString();
  EXPECT_EQ(attr->size, kept.size());
  ASSERT_OK_AND_ASSIGN(std::string data, (*st)->Read(id, 0, 4096));
  EXPECT_EQ(data, kept);
  ASSERT_OK((*st)->Close());
}

// A tree made through the file layer in `dir` (engine bitcask): fn(store) runs on it.
void MakeTree(const std::string& dir, const std::function<void(fusefs::FileStore*)>& fn) {
  auto e = engines::OpenEngine("bitcask", sync::DefaultFileSystem(), dir, {});
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  auto st = fusefs::FileStore::Open(std::move(*e), {});
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  fn(st->get());
  ASSERT_OK((*st)->Close());
}

// Rewrites the node at `path` with fn applied, straight through the engine.
void EditNode(const std::string& dir, const std::string& path,
              const std::function<void(fusefs::Node*)>& fn) {
  auto e = engines::OpenEngine("bitcask", sync::DefaultFileSystem(), dir, {});
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  const std::string key = path.size() > 1 && path[0] == 'I' ? path : fusefs::NodeKey(path);
  ASSERT_OK_AND_ASSIGN(std::string value, (*e)->Get(key));
  ASSERT_OK_AND_ASSIGN(fusefs::Node n, fusefs::DecodeNode(value, key));
  fn(&n);
  ASSERT_OK((*e)->Put(key, fusefs::EncodeNode(n)));
  ASSERT_OK((*e)->Close());
}

// A directory whose link count is not 2 plus its subdirectories is damage check names.
TEST(KvfsCli, CheckFindsADirectoryLinkCountThatDoesNotMatchItsSubdirectories) {
  test::TempDir tmp;
  const fusefs::Caller me{0, 0, 022};
  MakeTree(tmp.Sub("store"), [&](fusefs::FileStore* st) {
    auto a = st->Mkdir(fusefs::kRootId, "a", 0755, me);
    ASSERT_TRUE(a.ok());
    ASSERT_OK(st->Mkdir(a->id, "b", 0755, me));
    ASSERT_OK(st->Create(a->id, "f", 0644, me));
  });
  CliRun r = Kvfs("check --engine bitcask " + tmp.Sub("store"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EditNode(tmp.Sub("store"), "a", [](fusefs::Node* n) { n->nlink = 4; });
  r = Kvfs("check --engine bitcask " + tmp.Sub("store"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("/a: Corruption: directory link count 4, but 1 subdirectories"),
            std::string::npos)
      << r.output;
}

// A store whose big directory rename a crash cut short (its move record, the top directory
// moved, some children moved, the rest not): check says so, naming the rename, and does not
// walk the tree (exit 0: nothing is damaged); ls refuses the store naming it; the next writable
// open (put) finishes it, and then check walks a sound tree with every file at its new place.
// Nodes parked by an exchange with no record are damage.
TEST(KvfsCli, CheckAndTheToolsKnowACutShortDirectoryRename) {
  test::TempDir tmp;
  const fusefs::Caller me{0, 0, 022};
  const std::string store = tmp.Sub("store");
  MakeTree(store, [&](fusefs::FileStore* st) {
    auto big = st->Mkdir(fusefs::kRootId, "big", 0755, me);
    ASSERT_TRUE(big.ok());
    for (int f = 0; f < 600; ++f) {
      auto file = st->Create(big->id, "f" + std::to_string(f), 0644, me);
      ASSERT_TRUE(file.ok());
      ASSERT_OK(st->Write(file->id, 0, "x").status());
    }
  });
  {
    auto e = engines::OpenEngine("bitcask", sync::DefaultFileSystem(), store, {});
    ASSERT_TRUE(e.ok());
    engines::WriteBatch first;
    ASSERT_OK_AND_ASSIGN(std::string top, (*e)->Get(fusefs::NodeKey("big")));
    first.Delete(fusefs::NodeKey("big"));
    first.Put(fusefs::NodeKey("moved"), top);
    first.Put(fusefs::kMoveKey, fusefs::EncodeMove({false, 0, "big", "moved"}));
    ASSERT_OK((*e)->Apply(first));
    engines::WriteBatch some;
    for (int f = 0; f < 100; ++f) {
      const std::string name = "/f" + std::to_string(f);
      ASSERT_OK_AND_ASSIGN(std::string v, (*e)->Get(fusefs::NodeKey("big" + name)));
      some.Delete(fusefs::NodeKey("big" + name));
      some.Put(fusefs::NodeKey("moved" + name), v);
    }
    ASSERT_OK((*e)->Apply(some));
    ASSERT_OK((*e)->Close());
  }
  CliRun r = Kvfs("check --engine bitcask " + store);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("file tree not walked: a rename of /big to /moved was cut short"),
            std::string::npos)
      << r.output;
  const std::string flags = " --engine bitcask --data " + store + " ";
  r = Kvfs("ls" + flags + "moved");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("a rename of /big to /moved was cut short"), std::string::npos)
      << r.output;
  { std::ofstream(tmp.Sub("greeting")) << "hello"; }
  r = Kvfs("put" + flags + "greeting " + tmp.Sub("greeting"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = Kvfs("check --engine bitcask " + store);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("file tree OK: 601 files"), std::string::npos) << r.output;
  r = Kvfs("get" + flags + "moved/f599");
  EXPECT_EQ(r.output, "x");

  {
    auto e = engines::OpenEngine("bitcask", sync::DefaultFileSystem(), store, {});
    ASSERT_TRUE(e.ok());
    ASSERT_OK((*e)->Put(std::string(fusefs::kStagingBase) + std::string("\0f1", 3), "v"));
    ASSERT_OK((*e)->Close());
  }
  r = Kvfs("check --engine bitcask " + store);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("1 nodes parked by a directory exchange"), std::string::npos) << r.output;
}

// kvfs check counts the names of every file against its link count, and finds a shared record
// (hard links) that no name points to, and a name whose shared record is gone.
TEST(KvfsCli, CheckVerifiesLinkCountsAgainstTheNamesOfEachFile) {
  test::TempDir tmp;
  const fusefs::Caller me{0, 0, 022};
  const std::string store = tmp.Sub("store");
  uint64_t f_id = 0;
  MakeTree(store, [&](fusefs::FileStore* st) {
    auto d = st->Mkdir(fusefs::kRootId, "d", 0755, me);
    auto f = st->Create(fusefs::kRootId, "f", 0644, me);
    ASSERT_TRUE(d.ok() && f.ok());
    f_id = f->id;
    ASSERT_OK(st->Write(f->id, 0, std::string(9000, 'x')));
    ASSERT_OK(st->Link(f->id, d->id, "g"));
    auto p = st->Mknod(fusefs::kRootId, "p", fusefs::NodeType::kFifo, 0644, 0, me);
    ASSERT_TRUE(p.ok());
    ASSERT_OK(st->Link(p->id, fusefs::kRootId, "p2"));
  });
  CliRun r = Kvfs("check --engine bitcask " + store);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("1 files (9000 bytes read back)"), std::string::npos) << r.output;

  // A chunk count that is not the chunks held (st_blocks would lie).
  const std::string shared = fusefs::SharedKey(f_id);
  EditNode(store, shared, [](fusefs::Node* n) { n->chunks = 1; });
  r = Kvfs("check --engine bitcask " + store);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("its node counts 1 chunks, but it holds 3"), std::string::npos)
      << r.output;
  EditNode(store, shared, [](fusefs::Node* n) { n->chunks = 3; });

  EditNode(store, shared, [](fusefs::Node* n) { n->nlink = 3; });
  r = Kvfs("check --engine bitcask " + store);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(
      r.output.find("Corruption: link count 3, but 2 names point to file " + std::to_string(f_id)),
      std::string::npos)
      << r.output;
  EditNode(store, shared, [](fusefs::Node* n) { n->nlink = 2; });

  // A shared record nobody names; then a name whose shared record is gone.
  {
    auto e = engines::OpenEngine("bitcask", sync::DefaultFileSystem(), store, {});
    ASSERT_TRUE(e.ok());
    ASSERT_OK_AND_ASSIGN(std::string value, (*e)->Get(shared));
    ASSERT_OK((*e)->Put(fusefs::SharedKey(999999), value));
    ASSERT_OK((*e)->Close());
  }
  r = Kvfs("check --engine bitcask " + store);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("has no name"), std::string::npos) << r.output;
  {
    auto e = engines::OpenEngine("bitcask", sync::DefaultFileSystem(), store, {});
    ASSERT_TRUE(e.ok());
    ASSERT_OK((*e)->Delete(fusefs::SharedKey(999999)));
    ASSERT_OK((*e)->Delete(shared));
    ASSERT_OK((*e)->Close());
  }
  r = Kvfs("check --engine bitcask " + store);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("whose shared record is missing"), std::string::npos) << r.output;
}

// kvfs check compares each node's xattr counts with its "X" keys, and finds xattr keys whose
// file is gone (no name, no orphan record).
TEST(KvfsCli, CheckVerifiesXattrCountsAndFindsKeysOfNoFile) {
  test::TempDir tmp;
  const fusefs::Caller me{0, 0, 022};
  const std::string store = tmp.Sub("store");
  uint64_t f_id = 0;
  MakeTree(store, [&](fusefs::FileStore* st) {
    auto d = st->Mkdir(fusefs::kRootId, "d", 0755, me);
    auto f = st->Create(d->id, "f", 0644, me);
    ASSERT_TRUE(d.ok() && f.ok());
    f_id = f->id;
    ASSERT_OK(st->SetXattr(f->id, "user.a", "12345", 0));
    ASSERT_OK(st->SetXattr(f->id, "user.b", "", 0));
    ASSERT_OK(st->SetXattr(d->id, "user.d", "d", 0));
    ASSERT_OK(st->SetXattr(fusefs::kRootId, "user.root", "r", 0));
    ASSERT_OK(st->Link(f->id, fusefs::kRootId, "g"));
  });
  CliRun r = Kvfs("check --engine bitcask " + store);
  EXPECT_EQ(r.exit_code, 0) << r.output;

  // A total that is not what the keys hold.
  const std::string shared = fusefs::SharedKey(f_id);
  EditNode(store, shared, [](fusefs::Node* n) { n->xattr_value_bytes = 4; });
  r = Kvfs("check --engine bitcask " + store);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("/d/f: Corruption: its node counts 2 (names 12 bytes, values 4 bytes) "
                          "xattrs, but its keys hold 2 (names 12 bytes, values 5 bytes)"),
            std::string::npos)
      << r.output;
  EditNode(store, shared, [](fusefs::Node* n) { n->xattr_value_bytes = 5; });
  EditNode(store, "d", [](fusefs::Node* n) { n->xattr_count = 2; });
  r = Kvfs("check --engine bitcask " + store);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("/d: Corruption: its node counts 2 (names"), std::string::npos)
      << r.output;
  EditNode(store, "d", [](fusefs::Node* n) { n->xattr_count = 1; });
  r = Kvfs("check --engine bitcask " + store);
  EXPECT_EQ(r.exit_code, 0) << r.output;

  // An xattr key of a file that no name holds; then one an orphan record holds is fine.
  {
    auto e = engines::OpenEngine("bitcask", sync::DefaultFileSystem(), store, {});
    ASSERT_TRUE(e.ok());
    ASSERT_OK((*e)->Put(fusefs::XattrKey(999999, "user.lost"), "v"));
    ASSERT_OK((*e)->Close());
  }
  r = Kvfs("check --engine bitcask " + store);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(
      r.output.find(
          "1 xattr keys of file 999999, which no name, no orphan record and no purge record holds"),
      std::string::npos)
      << r.output;
  {
    auto e = engines::OpenEngine("bitcask", sync::DefaultFileSystem(), store, {});
    ASSERT_TRUE(e.ok());
    fusefs::Node orphan;
    orphan.id = 999999;
    orphan.xattr_count = 1;
    orphan.xattr_name_bytes = 9;
    orphan.xattr_value_bytes = 1;
    ASSERT_OK((*e)->Put(fusefs::OrphanKey(999999), fusefs::EncodeNode(orphan)));
    ASSERT_OK((*e)->Close());
  }
  r = Kvfs("check --engine bitcask " + store);
  EXPECT_EQ(r.exit_code, 0) << r.output;

  // Chunk keys of no file are reported; with a purge record (a removed file whose keys the
  // reclaimer has not deleted yet) they are held.
  {
    auto e = engines::OpenEngine("bitcask", sync::DefaultFileSystem(), store, {});
    ASSERT_TRUE(e.ok());
    ASSERT_OK((*e)->Put(fusefs::ChunkKey(1000, 0), "c"));
    ASSERT_OK((*e)->Put(fusefs::ChunkKey(1000, 7), "c"));
    ASSERT_OK((*e)->Close());
  }
  r = Kvfs("check --engine bitcask " + store);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("2 chunk keys of file 1000, which no name, no orphan record and no "
                          "purge record holds"),
            std::string::npos)
      << r.output;
  {
    auto e = engines::OpenEngine("bitcask", sync::DefaultFileSystem(), store, {});
    ASSERT_TRUE(e.ok());
    ASSERT_OK((*e)->Put(fusefs::PurgeKey(1000), fusefs::EncodeU64(0)));
    ASSERT_OK((*e)->Close());
  }
  r = Kvfs("check --engine bitcask " + store);
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

// A truncate's purge record (kind T) holds the chunk keys at and past its first chunk: check
// neither counts them as the file's nor reports them; without it they are keys past the file's
// size. A purge record naming an id no file ever had, a removal's record of a file that has a
// name, and a malformed record are damage.
TEST(KvfsCli, CheckHoldsAPendingTruncateAndReportsSenselessPurgeRecords) {
  test::TempDir tmp;
  const fusefs::Caller me{0, 0, 022};
  const std::string store = tmp.Sub("store");
  uint64_t f_id = 0;
  MakeTree(store, [&](fusefs::FileStore* st) {
    auto f = st->Create(fusefs::kRootId, "f", 0644, me);
    ASSERT_TRUE(f.ok());
    f_id = f->id;
    ASSERT_OK(st->Write(f->id, 0, std::string(20 * fusefs::kChunkSize, 'f')).status());
  });
  CliRun r = Kvfs("check --engine bitcask " + store);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  // As a truncate to 5 chunks leaves it before the reclaimer runs.
  EditNode(store, "f", [](fusefs::Node* n) {
    n->size = 5 * fusefs::kChunkSize - 1;
    n->chunks = 5;
  });
  auto put = [&](const std::string& key, const std::string& value) {
    auto e = engines::OpenEngine("bitcask", sync::DefaultFileSystem(), store, {});
    ASSERT_TRUE(e.ok());
    if (value.empty()) {
      ASSERT_OK((*e)->Delete(key));
    } else {
      ASSERT_OK((*e)->Put(key, value));
    }
    ASSERT_OK((*e)->Close());
  };
  put(fusefs::PurgeKey(f_id), fusefs::EncodePurgeRecord({5, /*truncate=*/true}));
  r = Kvfs("check --engine bitcask " + store);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  put(fusefs::PurgeKey(f_id), "");
  r = Kvfs("check --engine bitcask " + store);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("/f: Corruption: 15 chunk keys past its size (20479 bytes) that no "
                          "purge record holds"),
            std::string::npos)
      << r.output;
  put(fusefs::PurgeKey(f_id), fusefs::EncodePurgeRecord({5, /*truncate=*/true}));
  put(fusefs::PurgeKey(5), fusefs::EncodeU64(0));
  r = Kvfs("check --engine bitcask " + store);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("names file 5, which no file ever was"), std::string::npos) << r.output;
  put(fusefs::PurgeKey(5), "");
  put(fusefs::PurgeKey(f_id), fusefs::EncodeU64(0));
  r = Kvfs("check --engine bitcask " + store);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("says file " + std::to_string(f_id) + " was removed, but it has a name"),
            std::string::npos)
      << r.output;
  put(fusefs::PurgeKey(f_id), "bad");
  r = Kvfs("check --engine bitcask " + store);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find(": expected 8 bytes, or 8 and 'T', found 3 bytes"), std::string::npos)
      << r.output;
}

TEST(KvfsCli, CheckRefusesAnUnknownEngine) {
  test::TempDir tmp;
  CliRun r = Kvfs("check --engine nosuch " + tmp.path());
  EXPECT_NE(r.exit_code, 0);
}

// An etcd store is named in a config, with its options; a mistake in them is refused naming
// the option, before anything is opened; --engine cannot give them; and a cluster that does not
// answer fails within the store's timeout_ms, naming the endpoint (no cluster is needed here).
TEST(KvfsCli, EtcdStoresAreConfiguredInAConfigAndItsMistakesNamed) {
  test::TempDir tmp;
  ASSERT_EQ(::mkdir(tmp.Sub("e").c_str(), 0700), 0);  // the offline tools open, never create
  auto config = [&](const std::string& options) {
    const std::string path = tmp.Sub("kvfs.toml");
    std::FILE* f = std::fopen(path.c_str(), "w");
    const std::string text = "[[store]]\nname = \"e\"\nengine = \"etcd\"\ndata_dir = \"" +
                             tmp.Sub("e") + "\"\n[store.options]\n" + options;
    std::fwrite(text.data(), 1, text.size(), f);
    std::fclose(f);
    return path;
  };
  CliRun typo = Kvfs("ls --config " + config("endpionts = \"http://127.0.0.1:1\"\n") + " e");
  EXPECT_NE(typo.exit_code, 0);
  EXPECT_NE(typo.output.find("no option \"endpionts\""), std::string::npos) << typo.output;
  CliRun no_prefix = Kvfs("ls --config " + config("endpoints = \"http://127.0.0.1:1\"\n") + " e");
  EXPECT_NE(no_prefix.exit_code, 0);
  EXPECT_NE(no_prefix.output.find("option prefix is required"), std::string::npos)
      << no_prefix.output;
  CliRun engine = Kvfs("ls --engine etcd --data " + tmp.Sub("d"));
  EXPECT_NE(engine.exit_code, 0);
  EXPECT_NE(engine.output.find("needs a config file"), std::string::npos) << engine.output;
  const auto start = std::chrono::steady_clock::now();
  CliRun down = Kvfs("ls --config " +
                     config("endpoints = \"http://127.0.0.1:1\"\nprefix = \"p/\"\n"
                            "timeout_ms = \"300\"\n") +
                     " e");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_NE(down.exit_code, 0);
  EXPECT_NE(down.output.find("cluster http://127.0.0.1:1 does not answer"), std::string::npos)
      << down.output;
}

TEST(KvfsCli, WalAppendThenDumpShowsTheRecords) {
  test::TempDir tmp;
  CliRun a = Kvfs("wal append " + tmp.Sub("log") + " one two");
  ASSERT_EQ(a.exit_code, 0) << a.output;
  CliRun d = Kvfs("wal dump --payloads " + tmp.Sub("log"));
  EXPECT_EQ(d.exit_code, 0) << d.output;
  EXPECT_NE(d.output.find("1\t3 bytes\tone"), std::string::npos) << d.output;
  EXPECT_NE(d.output.find("2 records"), std::string::npos) << d.output;
}

// The offline tools follow the daemon's rule: a store that group or others may read is refused,
// naming the path, its mode and the fix, and left as it is; once private it opens again.
TEST(KvfsCli, OfflineToolsRefuseAStoreThatIsNotPrivate) {
  test::TempDir tmp;
  const std::string store = tmp.Sub("store");
  { std::ofstream(tmp.Sub("greeting")) << "hello"; }
  const std::string flags = " --engine lsm --data " + store + " ";
  CliRun put = Kvfs("put" + flags + "greeting " + tmp.Sub("greeting"));
  ASSERT_EQ(put.exit_code, 0) << put.output;
  namespace fs = std::filesystem;
  fs::permissions(store,
                  fs::perms::group_read | fs::perms::group_exec | fs::perms::others_read |
                      fs::perms::others_exec,
                  fs::perm_options::add);  // 0755, as mkdir -p under umask 022 makes it
  for (const std::string& args :
       {"check --engine lsm " + store, "ls" + flags, "get" + flags + "greeting",
        "put" + flags + "x " + tmp.Sub("greeting"), "rm" + flags + "greeting"}) {
    CliRun r = Kvfs(args);
    EXPECT_EQ(r.exit_code, 1) << args << ": " << r.output;
    EXPECT_NE(r.output.find(store + " has mode 0755"), std::string::npos)
        << args << ": " << r.output;
    EXPECT_NE(r.output.find("chmod -R go-rwx " + store), std::string::npos) << r.output;
  }
  EXPECT_EQ(fs::status(store).permissions(), fs::perms::owner_all | fs::perms::group_read |
                                                 fs::perms::group_exec | fs::perms::others_read |
                                                 fs::perms::others_exec)
      << "refused, not repaired";
  fs::permissions(store, fs::perms::owner_all);
  CliRun get = Kvfs("get" + flags + "greeting");
  EXPECT_EQ(get.exit_code, 0) << get.output;
  EXPECT_EQ(get.output, "hello");
  EXPECT_EQ(Kvfs("check --engine lsm " + store).exit_code, 0);
}

}  // namespace
}  // namespace kvfs
