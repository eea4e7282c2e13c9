// The event store engine's own calls (engines/events/events.h): numbering, expected positions,
// reads from event K, stream deletion and compaction, damage, and power cuts at every sync
// point of an append workload. The Engine interface is covered by the shared contract and
// crash suites (engine_contract_test, engine_crash_test), which run over "events" too.
#include "engines/events/events.h"

#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <map>
#include <random>
#include <thread>

#include "engines/bitcask/bitcask.h"
#include "engines/events/format.h"
#include "sync/durable.h"
#include "sync/fault_file_system.h"
#include "tests/test_util.h"

namespace kvfs::engines {
namespace {

constexpr char kDir[] = "/data/events";

EngineOptions Options(sync::SyncMode mode = sync::SyncMode::kAlways) {
  EngineOptions o;
  o.sync_mode = mode;
  o.segment_size = 16 << 10;  // several segments
  o.batch_records = 4;
  o.batch_interval = std::chrono::hours(1);  // syncs by count only: the same each run
  o.background_work = false;
  return o;
}

class EventsTest : public testing::Test {
 protected:
  void SetUp() override { ASSERT_OK(sync::CreateDirDurably(&fs_, "/data")); }

  Result<std::unique_ptr<Engine>> Open(EngineOptions o = Options()) {
    return OpenEngine("events", &fs_, kDir, o);
  }

  static std::vector<std::string> Events(EventStore* es, std::string_view stream) {
    std::vector<std::string> out;
    auto st = es->Stat(stream);
    if (!st.ok()) return out;
    for (uint64_t n = 0; n < st->events; ++n) {
      auto e = es->ReadEvent(stream, n);
      EXPECT_TRUE(e.ok()) << e.status().ToString();
      out.push_back(e.ok() ? *e : "<error>");
    }
    return out;
  }

  sync::FaultFileSystem fs_{11};
};

TEST_F(EventsTest, AppendsAreNumberedWithOffsetsAndTimestamps) {
  ASSERT_OK_AND_ASSIGN(auto e, Open());
  EventStore* es = AsEventStore(e.get());
  ASSERT_NE(es, nullptr);
  ASSERT_OK_AND_ASSIGN(EventInfo a, es->Append("orders", "placed", {}));
  ASSERT_OK_AND_ASSIGN(EventInfo b, es->Append("orders", "", {}));
  ASSERT_OK_AND_ASSIGN(EventInfo c, es->Append("orders", "shipped!", {}));
  ASSERT_OK_AND_ASSIGN(EventInfo x, es->Append("other", "x", {}));
  EXPECT_EQ(a.number, 0u);
  EXPECT_EQ(b.number, 1u);
  EXPECT_EQ(c.number, 2u);
  EXPECT_EQ(x.number, 0u);
  EXPECT_EQ(b.offset, 6u);
  EXPECT_EQ(c.offset, 6u);
  EXPECT_EQ(c.size, 8u);
  EXPECT_GT(a.timestamp_ns, 1'700'000'000'000'000'000);
  EXPECT_LE(a.timestamp_ns, c.timestamp_ns);
  ASSERT_OK_AND_ASSIGN(StreamInfo s, es->Stat("orders"));
  EXPECT_EQ(s.events, 3u);
  EXPECT_EQ(s.bytes, 14u);
  EXPECT_EQ(s.last_ns, c.timestamp_ns);
  EXPECT_EQ(Events(es, "orders"), (std::vector<std::string>{"placed", "", "shipped!"}));
  ASSERT_OK_AND_ASSIGN(std::string all, es->ReadBytes("orders", 0, 100));
  EXPECT_EQ(all, "placedshipped!");
  ASSERT_OK_AND_ASSIGN(std::string mid, es->ReadBytes("orders", 4, 5));
  EXPECT_EQ(mid, "edshi");
  ASSERT_OK_AND_ASSIGN(std::string past, es->ReadBytes("orders", 14, 5));
  EXPECT_EQ(past, "");
  ASSERT_OK_AND_ASSIGN(auto listed, es->ListEvents("orders", 1, 10));
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[1].number, 2u);
  EXPECT_TRUE(es->ReadEvent("orders", 3).status().IsNotFound());
  EXPECT_TRUE(es->Stat("none").status().IsNotFound());
  // The Engine interface's keys are apart from the streams.
  ASSERT_OK(e->Put("orders", "a key"));
  EXPECT_EQ(*e->Get("orders"), "a key");
  EXPECT_EQ(Events(es, "orders").size(), 3u);
  std::vector<std::string> names;
  ASSERT_OK(es->ListStreams([&](const StreamInfo& i) {
    names.push_back(i.name);
    return true;
  }));
  EXPECT_EQ(names, (std::vector<std::string>{"orders", "other"}));
}

TEST_F(EventsTest, AWrongExpectedPositionIsRefusedAndWritesNothing) {
  ASSERT_OK_AND_ASSIGN(auto e, Open());
  EventStore* es = AsEventStore(e.get());
  ASSERT_OK(es->Append("s", "one", {}));
  AppendExpectation at_events;
  at_events.events = 0;
  Status s = es->Append("s", "stale", at_events).status();
  EXPECT_TRUE(IsWrongPosition(s)) << s.ToString();
  EXPECT_EQ(s.sys_errno(), EPERM);
  EXPECT_NE(s.message().find("ends at event 1, offset 3"), std::string::npos) << s.ToString();
  AppendExpectation at_bytes;
  at_bytes.bytes = 2;
  EXPECT_TRUE(IsWrongPosition(es->Append("s", "stale", at_bytes).status()));
  at_bytes.bytes = 3;
  at_events.events = 1;
  ASSERT_OK(es->Append("s", "two", at_bytes));
  at_events.events = 2;
  ASSERT_OK(es->Append("s", "three", at_events));
  AppendExpectation exist;
  exist.must_exist = true;
  EXPECT_TRUE(es->Append("new", "x", exist).status().IsNotFound());
  EXPECT_TRUE(es->Stat("new").status().IsNotFound());
  EXPECT_EQ(Events(es, "s"), (std::vector<std::string>{"one", "two", "three"}));
  EXPECT_EQ(es->Append("s", std::string(kMaxEventSize + 1, 'x'), {}).status().sys_errno(), EFBIG);
  EXPECT_FALSE(es->Append("", "x", {}).ok());
  EXPECT_TRUE(es->CreateStream("s").status().code() == StatusCode::kAlreadyExists);
}

// Writers race on one stream: in each round all of them read where the stream ends, then all
// append there at once. Exactly one wins each round; the others get EPERM and write nothing.
TEST_F(EventsTest, RacingAppendersWithExpectedPositionsNeverBothWin) {
  ASSERT_OK_AND_ASSIGN(auto e, Open(Options(sync::SyncMode::kNone)));
  EventStore* es = AsEventStore(e.get());
  ASSERT_OK(es->CreateStream("race"));
  constexpr int kThreads = 4;
  constexpr int kRounds = 50;
  std::barrier sync_point(kThreads);
  std::atomic<int> won[kRounds] = {};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < kRounds; ++round) {
        AppendExpectation x;
        x.events = es->Stat("race")->events;
        sync_point.arrive_and_wait();  // everyone has read the same end
        auto r = es->Append("race", std::to_string(round) + ":" + std::to_string(t), x);
        if (r.ok()) {
          ++won[round];
        } else {
          EXPECT_TRUE(IsWrongPosition(r.status())) << r.status().ToString();
        }
        sync_point.arrive_and_wait();  // the round is over
      }
    });
  }
  for (auto& t : threads) t.join();
  std::vector<std::string> got = Events(es, "race");
  ASSERT_EQ(got.size(), size_t{kRounds});
  for (int round = 0; round < kRounds; ++round) {
    EXPECT_EQ(won[round].load(), 1) << "round " << round;
    EXPECT_EQ(got[round].substr(0, got[round].find(':')), std::to_string(round));
  }
}

TEST_F(EventsTest, ReopenRebuildsTheIndexFromTheKeys) {
  {
    ASSERT_OK_AND_ASSIGN(auto e, Open(Options(sync::SyncMode::kBatch)));
    EventStore* es = AsEventStore(e.get());
    for (int i = 0; i < 300; ++i) {
      ASSERT_OK(es->Append("s" + std::to_string(i % 3), std::string(i, 'a' + i % 26), {}));
    }
    ASSERT_OK(e->Close());
  }
  ASSERT_OK_AND_ASSIGN(auto e, Open());
  EventStore* es = AsEventStore(e.get());
  for (int s = 0; s < 3; ++s) {
    ASSERT_OK_AND_ASSIGN(StreamInfo info, es->Stat("s" + std::to_string(s)));
    EXPECT_EQ(info.events, 100u);
  }
  ASSERT_OK_AND_ASSIGN(std::string ev, es->ReadEvent("s2", 50));
  EXPECT_EQ(ev, std::string(152, 'a' + 152 % 26));
  ASSERT_OK_AND_ASSIGN(EventInfo next, es->Append("s2", "more", {}));
  EXPECT_EQ(next.number, 100u);
  bool found = false;
  for (const auto& [name, value] : e->recovery().facts) {
    if (name == "events") {
      EXPECT_EQ(value, 300u);
      found = true;
    }
  }
  EXPECT_TRUE(found) << e->recovery().Summary();
  EXPECT_OK(e->Verify());
}

// Reading event K reads event K only: with an earlier event damaged on disk, event K still
// reads (and the damaged one is Corruption naming the file and the offset; Verify finds it).
TEST_F(EventsTest, ReadingEventKReadsNoEarlierEventAndDamageIsNamed) {
  ASSERT_OK_AND_ASSIGN(auto e, Open());
  EventStore* es = AsEventStore(e.get());
  for (int i = 0; i < 20; ++i)
    ASSERT_OK(es->Append("s", "event-" + std::to_string(i) + "-payload", {}));
  ASSERT_OK(e->Close());
  e.reset();
  // The first log segment holds event 3's payload somewhere: find it and flip a byte.
  ASSERT_OK_AND_ASSIGN(auto names, fs_.ListDir(std::string(kDir) + "/wal"));
  std::string seg = std::string(kDir) + "/wal/" + names.front();
  ASSERT_OK_AND_ASSIGN(std::string bytes, sync::ReadFileToString(&fs_, seg));
  const size_t at = bytes.find("event-3-payload");
  ASSERT_NE(at, std::string::npos);
  test::FlipByte(&fs_, seg, at + 2);
  // The log's own record CRC covers the batch, so the open (which replays it) finds the
  // damage first: the store is refused, naming the segment and the offset.
  auto refused = Open();
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kCorruption);
  EXPECT_NE(refused.status().message().find(names.front()), std::string::npos)
      << refused.status().ToString();
}

TEST_F(EventsTest, AnEventWhoseChecksumFailsIsCorruptionOnReadAndInVerify) {
  // Written as a raw Bitcask store so the log's CRCs are right and only the event's is wrong.
  ASSERT_OK_AND_ASSIGN(auto e, Open());
  EventStore* es = AsEventStore(e.get());
  ASSERT_OK(es->Append("s", "good", {}));
  ASSERT_OK(es->Append("s", "good too", {}));
  ASSERT_OK(e->Close());
  e.reset();
  {
    BitcaskOptions b;
    b.max_key_size = kMaxKeySize + 1;
    ASSERT_OK_AND_ASSIGN(auto raw, OpenBitcaskWith(&fs_, kDir, Options(), b));
    ScanOptions o;
    o.prefix = events::TagPrefix(events::kEventTag);
    std::vector<std::pair<std::string, std::string>> kv;
    ASSERT_OK(raw->Scan(o, [&](std::string_view k, std::string_view v) {
      kv.emplace_back(k, v);
      return true;
    }));
    ASSERT_EQ(kv.size(), 2u);
    std::string v = kv[1].second;
    v.back() ^= 1;
    ASSERT_OK(raw->Put(kv[1].first, v));
    ASSERT_OK(raw->Close());
  }
  ASSERT_OK_AND_ASSIGN(e, Open());
  es = AsEventStore(e.get());
  EXPECT_EQ(*es->ReadEvent("s", 0), "good");
  Status bad = es->ReadEvent("s", 1).status();
  EXPECT_EQ(bad.code(), StatusCode::kCorruption);
  EXPECT_NE(bad.message().find("stream 's': event 1 fails its CRC32C"), std::string::npos)
      << bad.ToString();
  EXPECT_EQ(e->Verify().code(), StatusCode::kCorruption);
  EXPECT_EQ(es->ReadBytes("s", 0, 100).status().code(), StatusCode::kCorruption);
}

// The open checks every stream's numbering: an event removed from the middle (which no append
// can do) is a gap, named; a stream's events with no stream record are refused too.
TEST_F(EventsTest, AGapInAStreamsNumberingIsRefusedAtOpenAndByVerify) {
  ASSERT_OK_AND_ASSIGN(auto e, Open());
  EventStore* es = AsEventStore(e.get());
  for (int i = 0; i < 5; ++i) ASSERT_OK(es->Append("s", "e" + std::to_string(i), {}));
  ASSERT_OK(e->Close());
  e.reset();
  BitcaskOptions b;
  b.max_key_size = kMaxKeySize + 1;
  {
    ASSERT_OK_AND_ASSIGN(auto raw, OpenBitcaskWith(&fs_, kDir, Options(), b));
    std::vector<std::string> keys;
    ScanOptions o;
    o.prefix = events::TagPrefix(events::kEventTag);
    o.keys_only = true;
    ASSERT_OK(raw->Scan(o, [&](std::string_view k, std::string_view) {
      keys.emplace_back(k);
      return true;
    }));
    ASSERT_EQ(keys.size(), 5u);
    ASSERT_OK(raw->Delete(keys[2]));
    ASSERT_OK(raw->Close());
  }
  auto refused = Open();
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kCorruption);
  EXPECT_NE(refused.status().message().find("stream 's': a gap: event 3 follows event 1"),
            std::string::npos)
      << refused.status().ToString();
  {
    ASSERT_OK_AND_ASSIGN(auto raw, OpenBitcaskWith(&fs_, kDir, Options(), b));
    ASSERT_OK(raw->Delete(events::StreamKey("s")));
    ASSERT_OK(raw->Close());
  }
  refused = Open();
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("which no stream record names"), std::string::npos)
      << refused.status().ToString();
}

TEST_F(EventsTest, ADeletedStreamIsGoneAfterAPowerCutAndCompactReclaimsItsSpace) {
  EngineOptions o = Options();
  ASSERT_OK_AND_ASSIGN(auto e, Open(o));
  EventStore* es = AsEventStore(e.get());
  for (int i = 0; i < 200; ++i) ASSERT_OK(es->Append("big", std::string(500, 'b'), {}));
  ASSERT_OK(es->Append("kept", "k", {}));
  ASSERT_OK(es->DeleteStream("big"));  // `always`: durable on return
  EXPECT_TRUE(es->Stat("big").status().IsNotFound());
  EXPECT_TRUE(es->DeleteStream("big").IsNotFound());
  e.reset();  // no close: the power goes
  fs_.Crash(sync::CrashMode::kDropUnsynced);
  ASSERT_OK_AND_ASSIGN(e, Open(o));
  es = AsEventStore(e.get());
  EXPECT_TRUE(es->Stat("big").status().IsNotFound());
  EXPECT_EQ(Events(es, "kept"), (std::vector<std::string>{"k"}));
  auto bytes_on_disk = [&] {
    uint64_t total = 0;
    for (const char* sub : {"/wal", "/merged"}) {
      auto names = fs_.ListDir(std::string(kDir) + sub);
      if (!names.ok()) continue;
      for (const std::string& n : *names) total += *fs_.FileSize(std::string(kDir) + sub + "/" + n);
    }
    return total;
  };
  const uint64_t before = bytes_on_disk();
  ASSERT_OK(e->Compact());
  const uint64_t after = bytes_on_disk();
  EXPECT_LT(after, before / 2) << before << " -> " << after;
  // A stream of the same name starts again at event 0; the old events never come back.
  ASSERT_OK_AND_ASSIGN(EventInfo again, es->Append("big", "new", {}));
  EXPECT_EQ(again.number, 0u);
  ASSERT_OK(e->Close());
  ASSERT_OK_AND_ASSIGN(e, Open(o));
  es = AsEventStore(e.get());
  EXPECT_EQ(Events(es, "big"), (std::vector<std::string>{"new"}));
  EXPECT_OK(e->Verify());
}

// With background work on, a deleted stream's events are removed without a Compact call, so
// that Bitcask's background merge finds them as garbage.
TEST_F(EventsTest, TheBackgroundPurgeRemovesADeletedStreamsEvents) {
  EngineOptions o = Options(sync::SyncMode::kNone);
  o.background_work = true;
  ASSERT_OK_AND_ASSIGN(auto e, Open(o));
  EventStore* es = AsEventStore(e.get());
  for (int i = 0; i < 300; ++i) ASSERT_OK(es->Append("doomed", "x", {}));
  ASSERT_OK(es->Append("kept", "k", {}));
  const uint64_t before = e->stats().live_keys;
  EXPECT_GE(before, 302u);
  ASSERT_OK(es->DeleteStream("doomed"));
  for (int i = 0; i < 500 && e->stats().live_keys > 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(e->stats().live_keys, 2u) << "the kept stream's record and event";
  ASSERT_OK(e->Close());
  ASSERT_OK_AND_ASSIGN(e, Open());
  EXPECT_EQ(AsEventStore(e.get())->Stat("kept")->events, 1u);
  EXPECT_OK(e->Verify());
}

// --- Power cuts at every sync point of an append workload --------------------------------------

struct Acked {
  std::map<std::string, std::vector<std::string>> attempted;  // per stream, in append order
  std::map<std::string, size_t> durable;                      // per stream, acknowledged durable
};

// Appends to three streams (one deleted and re-created on the way), syncing now and then; in
// `always` mode each append is durable on return. Stops at the first failure (the power went).
void RunAppends(Engine* e, sync::SyncMode mode, Acked* acked) {
  EventStore* es = AsEventStore(e);
  std::mt19937_64 rng(5);
  for (int i = 0; i < 60; ++i) {
    const std::string stream = "s" + std::to_string(rng() % 3);
    const std::string data = stream + "#" + std::to_string(acked->attempted[stream].size()) +
                             std::string(rng() % 700, '.');
    acked->attempted[stream].push_back(data);
    if (!es->Append(stream, data, {}).ok()) return;
    if (mode == sync::SyncMode::kAlways) acked->durable[stream] = acked->attempted[stream].size();
    if (i % 7 == 6) {
      if (!e->Sync(SyncKind::kData).ok()) return;
      for (const auto& [s, v] : acked->attempted) acked->durable[s] = v.size();
    }
  }
}

class EventsPowerCutTest
    : public testing::TestWithParam<std::tuple<sync::SyncMode, sync::CrashMode>> {};

TEST_P(EventsPowerCutTest, EveryAcknowledgedEventSurvivesOnceInOrderWithoutGaps) {
  const auto [mode, crash] = GetParam();
  uint64_t syncs = 0;
  {
    sync::FaultFileSystem fs(1);
    ASSERT_OK(sync::CreateDirDurably(&fs, "/data"));
    const uint64_t before = fs.stats().syncs;
    ASSERT_OK_AND_ASSIGN(auto e, OpenEngine("events", &fs, kDir, Options(mode)));
    Acked acked;
    RunAppends(e.get(), mode, &acked);
    ASSERT_OK(e->Close());
    syncs = fs.stats().syncs - before;
  }
  ASSERT_GT(syncs, 10u);
  // The background preparation of the next log segment may or may not sync before the close:
  // the count varies by a sync or two, so the last cut points may not be reached.
  uint64_t cuts = 0;
  for (uint64_t k = 1; k <= syncs; ++k) {
    SCOPED_TRACE("power cut at sync " + std::to_string(k) + " of " + std::to_string(syncs));
    sync::FaultFileSystem fs(k);
    ASSERT_OK(sync::CreateDirDurably(&fs, "/data"));
    fs.CrashAtSync(k, crash);
    Acked acked;
    {
      auto e = OpenEngine("events", &fs, kDir, Options(mode));
      if (e.ok()) {
        RunAppends(e->get(), mode, &acked);
        (*e)->Close().PermitUnchecked();
      }
    }
    if (fs.crashed()) ++cuts;
    fs.Crash(crash);
    ASSERT_OK_AND_ASSIGN(auto e, OpenEngine("events", &fs, kDir, Options(mode)));
    EventStore* es = AsEventStore(e.get());
    for (const auto& [stream, attempted] : acked.attempted) {
      std::vector<std::string> got;
      auto st = es->Stat(stream);
      if (st.ok()) {
        for (uint64_t n = 0; n < st->events; ++n) {
          ASSERT_OK_AND_ASSIGN(std::string ev, es->ReadEvent(stream, n));
          got.push_back(ev);
        }
      }
      // A prefix of what was attempted (in order, once each, no gap), at least what was
      // acknowledged durable.
      ASSERT_LE(got.size(), attempted.size()) << stream;
      EXPECT_GE(got.size(), acked.durable[stream]) << stream;
      EXPECT_TRUE(std::equal(got.begin(), got.end(), attempted.begin())) << stream;
    }
    EXPECT_OK(e->Verify());
    ASSERT_OK(AsEventStore(e.get())->Append("s0", "after", {}));
  }
  EXPECT_GE(cuts + 3, syncs);
}

INSTANTIATE_TEST_SUITE_P(
    ModesAndCrashes, EventsPowerCutTest,
    testing::Combine(testing::Values(sync::SyncMode::kAlways, sync::SyncMode::kBatch,
                                     sync::SyncMode::kNone),
                     testing::Values(sync::CrashMode::kDropUnsynced, sync::CrashMode::kKeepPrefix,
                                     sync::CrashMode::kTearLastWrite)),
    [](const auto& info) {
      return std::string(sync::SyncModeName(std::get<0>(info.param))) + "_" +
             sync::CrashModeName(std::get<1>(info.param));
    });

}  // namespace
}  // namespace kvfs::engines
