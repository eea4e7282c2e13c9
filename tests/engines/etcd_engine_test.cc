// The etcd engine on a real 3-member etcd cluster on loopback (etcd_cluster.h): the shared
// Engine contract suite, then what is the engine's own: its settings, atomic batches, EFBIG and
// ENOSPC refusals that apply nothing, failover when a member dies, and EIO within the
// configured timeout when quorum is lost.
//
// One cluster serves the contract suite and every test that leaves the cluster as it found it;
// the tests that kill members start clusters of their own. Skipped, saying so, when no etcd is
// installed (scripts/setup-deps installs etcd-server).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "engines/engine.h"
#include "engines/etcd/etcd.h"
#include "engines/etcd/etcd_client.h"
#include "sync/fault_file_system.h"
#include "tests/engines/engine_contract_suite.h"
#include "tests/engines/etcd_cluster.h"
#include "tests/test_util.h"

namespace kvfs::engines {

namespace {

// The cluster shared by the tests that do not kill members: started before the first test,
// stopped after the last.
class SharedCluster : public testing::Environment {
 public:
  void SetUp() override {
    if (test::EtcdBinary().empty()) return;
    cluster_ = std::make_unique<test::EtcdCluster>();
    start_ = cluster_->Start();
    if (!start_.ok()) cluster_.reset();
  }
  void TearDown() override { cluster_.reset(); }

  static test::EtcdCluster* cluster() { return instance_->cluster_.get(); }
  static const Status& start_status() { return instance_->start_; }
  static SharedCluster* instance_;

 private:
  std::unique_ptr<test::EtcdCluster> cluster_;
  Status start_;
};
SharedCluster* SharedCluster::instance_ =
    static_cast<SharedCluster*>(testing::AddGlobalTestEnvironment(new SharedCluster));

constexpr char kNoEtcd[] =
    "no etcd binary on PATH: install etcd-server (scripts/setup-deps does) to run the etcd tests";

#define KVFS_NEED_SHARED_CLUSTER()                                                                \
  do {                                                                                            \
    if (test::EtcdBinary().empty()) GTEST_SKIP() << kNoEtcd;                                      \
    ASSERT_NE(SharedCluster::cluster(), nullptr)                                                  \
        << "the shared etcd cluster did not start: " << SharedCluster::start_status().ToString(); \
  } while (0)

// Counts the tests started in this process: a test run's number, so that a test run again in
// the same process (--gtest_repeat) on the same shared cluster does not meet its earlier run's
// keys.
class TestRuns : public testing::EmptyTestEventListener {
 public:
  void OnTestStart(const testing::TestInfo& /*info*/) override { ++started; }
  static std::atomic<int> started;
};
std::atomic<int> TestRuns::started{0};
const bool kTestRunsListening = [] {
  testing::UnitTest::GetInstance()->listeners().Append(new TestRuns);
  return true;
}();

// A key prefix of its own for each test run (and `dir`): tests share the cluster, not keys.
std::string TestPrefix(const std::string& dir) {
  const testing::TestInfo* t = testing::UnitTest::GetInstance()->current_test_info();
  return "kvfs-test/" + std::to_string(TestRuns::started.load()) + "/" + t->test_suite_name() +
         "/" + t->name() + dir + "/";
}

EngineOptions EtcdOptions(const std::string& endpoints, const std::string& prefix,
                          int timeout_ms = 5000) {
  EngineOptions o;
  o.background_work = false;
  o.settings = {
      {"endpoints", endpoints}, {"prefix", prefix}, {"timeout_ms", std::to_string(timeout_ms)}};
  return o;
}

// What a change feed handed over (Engine::SubscribeChanges), for a test to wait on.
class ChangeLog {
 public:
  ChangeFn Fn() {
    return [this](const ChangeSet& set) {
      std::lock_guard<std::mutex> lock(mu_);
      sets_.push_back(set);
    };
  }
  std::vector<ChangeSet> sets() {
    std::lock_guard<std::mutex> lock(mu_);
    return sets_;
  }
  // Polls, with a deadline, until `done(sets)` holds; false if it never did.
  bool WaitFor(const std::function<bool(const std::vector<ChangeSet>&)>& done,
               std::chrono::milliseconds deadline = std::chrono::seconds(20)) {
    const auto until = std::chrono::steady_clock::now() + deadline;
    while (true) {
      if (done(sets())) return true;
      if (std::chrono::steady_clock::now() > until) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));  // polling, not synchronising
    }
  }
  // Every key put (last value) across the sets, and checks revisions only grow.
  static std::map<std::string, std::string> Puts(const std::vector<ChangeSet>& sets) {
    std::map<std::string, std::string> out;
    for (const ChangeSet& s : sets) {
      for (const KeyChange& c : s.changes) {
        if (!c.deleted) out[c.key] = c.value;
      }
    }
    return out;
  }

 private:
  std::mutex mu_;
  std::vector<ChangeSet> sets_;
};

// The checks every feed test makes: revisions strictly grow, no set is empty, and each of the
// writer's batches came whole in one set ("pair-N-a" with "pair-N-b"); returns the keys put.
void ExpectWholeOrderedSets(const std::vector<ChangeSet>& sets) {
  uint64_t last = 0;
  for (const ChangeSet& s : sets) {
    if (s.everything) continue;
    EXPECT_GT(s.revision, last) << "a revision handed over twice or out of order";
    last = s.revision;
    EXPECT_FALSE(s.changes.empty());
    for (const KeyChange& c : s.changes) {
      if (!c.key.starts_with("pair-") || !c.key.ends_with("-a")) continue;
      const std::string b = c.key.substr(0, c.key.size() - 1) + "b";
      EXPECT_TRUE(std::any_of(s.changes.begin(), s.changes.end(),
                              [&](const KeyChange& o) { return o.key == b; }))
          << c.key << " came without " << b << ": a batch split across sets";
    }
  }
}

// Writes `n` batches through `e`: "k<i>" = "v<i>", and every tenth a pair ("pair-<i>-a",
// "pair-<i>-b") in one batch. Counts the batches acknowledged in *done.
void WriteKeys(Engine* e, int n, std::atomic<int>* done) {
  for (int i = 0; i < n; ++i) {
    WriteBatch b;
    if (i % 10 == 0) {
      b.Put("pair-" + std::to_string(i) + "-a", "v" + std::to_string(i));
      b.Put("pair-" + std::to_string(i) + "-b", "v" + std::to_string(i));
    } else {
      b.Put("k" + std::to_string(i), "v" + std::to_string(i));
    }
    ASSERT_OK(e->Apply(b));
    done->store(i + 1);
  }
}

// Whether the puts seen hold every key WriteKeys(n) wrote, with its value.
bool HasAllKeys(const std::map<std::string, std::string>& puts, int n) {
  for (int i = 0; i < n; ++i) {
    const std::string v = "v" + std::to_string(i);
    if (i % 10 == 0) {
      const std::string p = "pair-" + std::to_string(i) + "-";
      if (!puts.contains(p + "a") || puts.at(p + "a") != v) return false;
      if (!puts.contains(p + "b") || puts.at(p + "b") != v) return false;
    } else {
      const std::string k = "k" + std::to_string(i);
      if (!puts.contains(k) || puts.at(k) != v) return false;
    }
  }
  return true;
}

}  // namespace

void ConfigureContractEngine(const std::string& /*engine*/, const std::string& dir,
                             EngineOptions* options) {
  test::EtcdCluster* c = SharedCluster::cluster();
  options->settings = {{"endpoints", c != nullptr ? c->endpoints() : "http://127.0.0.1:1"},
                       {"prefix", TestPrefix(dir)}};
}

bool ContractEngineIsLocal(const std::string& /*engine*/) { return false; }

void ContractSetUp(const std::string& /*engine*/) { KVFS_NEED_SHARED_CLUSTER(); }

namespace {

INSTANTIATE_TEST_SUITE_P(Etcd, EngineContractTest, testing::Values(std::string("etcd")),
                         [](const testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

// --- Settings ------------------------------------------------------------------------------------

TEST(EtcdSettingsTest, BadSettingsAreRefusedNamingTheOption) {
  using Map = std::map<std::string, std::string, std::less<>>;
  struct Case {
    Map options;
    std::string names;
  };
  const std::vector<Case> cases = {
      {{{"prefix", "p/"}}, "endpoints is required"},
      {{{"endpoints", " "}, {"prefix", "p/"}}, "endpoints is required"},
      {{{"endpoints", "127.0.0.1:2379"}, {"prefix", "p/"}}, "endpoints: \"127.0.0.1:2379\""},
      {{{"endpoints", "http://a:1,"}, {"prefix", "p/"}}, "endpoints: \"\""},
      {{{"endpoints", "http://"}, {"prefix", "p/"}}, "names no host"},
      {{{"endpoints", "http://a:1"}}, "prefix is required"},
      {{{"endpoints", "http://a:1"}, {"prefix", ""}}, "prefix is required"},
      {{{"endpoints", "http://a:1"}, {"prefix", "p/"}, {"timeout_ms", "99"}}, "timeout_ms: \"99\""},
      {{{"endpoints", "http://a:1"}, {"prefix", "p/"}, {"timeout_ms", "5s"}}, "timeout_ms: \"5s\""},
      {{{"endpoints", "http://a:1"}, {"prefix", "p/"}, {"usr", "x"}}, "unknown option \"usr\""},
      {{{"endpoints", "https://a:1"}, {"prefix", "p/"}, {"ca_file", "/no/such/ca.pem"}},
       "ca_file: \"/no/such/ca.pem\" cannot be read"},
      {{{"endpoints", "https://a:1"}, {"prefix", "p/"}, {"cert_file", "/proc/self/stat"}},
       "cert_file and key_file go together"},
      {{{"endpoints", "http://a:1"}, {"prefix", "p/"}, {"user", "u"}},
       "user and password go together"},
      {{{"endpoints", "http://a:1"}, {"prefix", "p/"}, {"user", ""}, {"password", "p"}},
       "user and password go together"},
  };
  for (const Case& c : cases) {
    auto s = etcd::ParseSettings(c.options);
    ASSERT_FALSE(s.ok()) << c.names;
    EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s.status().message().find(c.names), std::string::npos) << s.status().ToString();
  }
  auto good = etcd::ParseSettings(
      Map{{"endpoints", "http://a:1/, https://b:2"}, {"prefix", "p/"}, {"timeout_ms", "250"}});
  ASSERT_OK(good.status());
  EXPECT_EQ(good->endpoints, (std::vector<std::string>{"http://a:1", "https://b:2"}));
  EXPECT_EQ(good->prefix, "p/");
  EXPECT_EQ(good->timeout.count(), 250);
}

TEST(EtcdSettingsTest, OpeningWithNoClusterFailsWithinTheTimeoutNamingTheEndpoints) {
  // A port nothing listens on (port 1 needs root to bind, and nothing here does).
  sync::FaultFileSystem fs(1);
  const auto start = std::chrono::steady_clock::now();
  auto e = OpenEngine("etcd", &fs, "/s", EtcdOptions("http://127.0.0.1:1", "p/", 300));
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().sys_errno(), EIO) << e.status().ToString();
  EXPECT_NE(e.status().message().find("http://127.0.0.1:1"), std::string::npos)
      << e.status().ToString();
  EXPECT_LT(took, std::chrono::seconds(3));
}

// --- On the shared cluster -----------------------------------------------------------------------

class EtcdEngineTest : public testing::Test {
 protected:
  void SetUp() override { KVFS_NEED_SHARED_CLUSTER(); }
  Result<std::unique_ptr<Engine>> Open(const std::string& dir = "/s") {
    return OpenEngine("etcd", &fs_, dir,
                      EtcdOptions(SharedCluster::cluster()->endpoints(), TestPrefix(dir)));
  }
  sync::FaultFileSystem fs_{3};
};

// Two stores on one cluster under different prefixes see only their own keys.
TEST_F(EtcdEngineTest, StoresUnderDifferentPrefixesDoNotMeet) {
  ASSERT_OK_AND_ASSIGN(auto a, Open("/a"));
  ASSERT_OK_AND_ASSIGN(auto b, Open("/b"));
  ASSERT_OK(a->Put("k", "from a"));
  ASSERT_OK(b->Put("k", "from b"));
  ASSERT_OK(b->Put("only-b", "1"));
  EXPECT_EQ(*a->Get("k"), "from a");
  EXPECT_TRUE(a->Get("only-b").status().IsNotFound());
  std::vector<std::string> keys;
  ASSERT_OK(a->Scan({}, [&](std::string_view k, std::string_view) {
    keys.emplace_back(k);
    return true;
  }));
  EXPECT_EQ(keys, (std::vector<std::string>{"k"}));
}

// Scans page through the range (64 values or 1000 keys a request): every key, in order, once.
TEST_F(EtcdEngineTest, ScansPageThroughLongRanges) {
  ASSERT_OK_AND_ASSIGN(auto e, Open());
  WriteBatch b;
  for (int i = 0; i < 2500; ++i) b.Put("k" + std::to_string(10000 + i), std::to_string(i));
  ASSERT_OK(e->Apply(b));
  for (const bool keys_only : {false, true}) {
    ScanOptions o;
    o.keys_only = keys_only;
    int next = 0;
    ASSERT_OK(e->Scan(o, [&](std::string_view k, std::string_view v) {
      EXPECT_EQ(k, "k" + std::to_string(10000 + next));
      EXPECT_EQ(v, keys_only ? "" : std::to_string(next));
      ++next;
      return true;
    }));
    EXPECT_EQ(next, 2500) << "keys_only " << keys_only;
  }
}

// A batch is one txn: a reader never sees part of one. Each batch sets ten keys to one version;
// every scan (one range request: ten keys fit one page) sees one version in all ten.
TEST_F(EtcdEngineTest, ReadersNeverSeePartOfABatch) {
  ASSERT_OK_AND_ASSIGN(auto e, Open());
  std::atomic<bool> done{false};
  std::atomic<int> scans{0};
  std::thread reader([&] {
    while (!done.load()) {
      std::map<std::string, std::string> seen;
      EXPECT_OK(e->Scan({}, [&](std::string_view k, std::string_view v) {
        seen.emplace(k, v);
        return true;
      }));
      if (seen.empty()) continue;
      EXPECT_EQ(seen.size(), 10u);
      for (const auto& [k, v] : seen) EXPECT_EQ(v, seen.begin()->second) << k;
      ++scans;
    }
  });
  for (int version = 0; version < 200 || scans.load() < 20; ++version) {
    WriteBatch b;
    for (int k = 0; k < 10; ++k) b.Put("k" + std::to_string(k), std::to_string(version));
    ASSERT_OK(e->Apply(b));
  }
  done = true;
  reader.join();
}

// A batch over --max-request-bytes (1.5 MiB by default) is refused whole with EFBIG: none of its
// small entries lands, and the store is not failed (the refusal is definite).
TEST_F(EtcdEngineTest, ABatchOverTheRequestLimitIsEFBIGAndAppliesNothing) {
  ASSERT_OK_AND_ASSIGN(auto e, Open());
  WriteBatch b;
  b.Put("small-before", "1");
  b.Put("big", std::string(size_t{2} << 20, 'x'));
  b.Put("small-after", "2");
  Status s = e->Apply(b);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.sys_errno(), EFBIG) << s.ToString();
  EXPECT_NE(s.message().find("max-request-bytes"), std::string::npos) << s.ToString();
  EXPECT_TRUE(e->Get("small-before").status().IsNotFound());
  EXPECT_TRUE(e->Get("small-after").status().IsNotFound());
  ASSERT_OK(e->Put("later", "works"));
  ASSERT_OK(e->Sync(SyncKind::kData));
  EXPECT_EQ(*e->Get("later"), "works");
}

// So is a batch of more operations than --max-txn-ops (the fixture's members take 10000).
TEST_F(EtcdEngineTest, ABatchOverTheOperationLimitIsEFBIGAndAppliesNothing) {
  ASSERT_OK_AND_ASSIGN(auto e, Open());
  WriteBatch b;
  for (int i = 0; i < 10001; ++i) b.Put("k" + std::to_string(i), "");
  Status s = e->Apply(b);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.sys_errno(), EFBIG) << s.ToString();
  EXPECT_NE(s.message().find("max-txn-ops"), std::string::npos) << s.ToString();
  EXPECT_TRUE(e->Get("k0").status().IsNotFound());
  ASSERT_OK(e->Put("later", "works"));
}

// The cluster's revision now: one more for every txn that wrote.
Result<uint64_t> Revision(const std::string& endpoints) {
  std::vector<std::string> list;
  for (size_t at = 0; at <= endpoints.size();) {
    const size_t comma = std::min(endpoints.find(',', at), endpoints.size());
    list.push_back(endpoints.substr(at, comma - at));
    at = comma + 1;
  }
  etcd::ClientSettings settings;
  settings.endpoints = list;
  settings.timeout = std::chrono::seconds(5);
  etcd::EtcdClient client(settings);
  KVFS_ASSIGN_OR_RETURN(
      std::string body,
      client.Call("/v3/kv/range", R"({"key": "eA==", "count_only": true})", /*is_write=*/false));
  return std::stoull(nlohmann::json::parse(body)["header"]["revision"].get<std::string>());
}

// Group commit: batches applied from several threads at once go out merged, several to a txn
// (the cluster's revision moves less than once a batch), and every one is acknowledged and
// there, even when batches of one group name the same key (etcd refuses a txn naming a key
// twice: only the last entry of each key in the group is sent).
TEST_F(EtcdEngineTest, ConcurrentBatchesAreMergedIntoFewerTxnsAndEveryOneApplies) {
  ASSERT_OK_AND_ASSIGN(auto e, Open());
  const std::string endpoints = SharedCluster::cluster()->endpoints();
  ASSERT_OK_AND_ASSIGN(const uint64_t before, Revision(endpoints));
  constexpr int kThreads = 8;
  constexpr int kBatches = 25;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kBatches; ++i) {
        WriteBatch b;
        const std::string v = std::to_string(t) + ":" + std::to_string(i);
        b.Put("shared", v);
        b.Put("own-" + std::to_string(t), v);
        b.Put("k-" + v, v);
        if (!e->Apply(b).ok()) failures.fetch_add(1);
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  ASSERT_OK_AND_ASSIGN(const uint64_t after, Revision(endpoints));
  EXPECT_LT(after - before, static_cast<uint64_t>(kThreads * kBatches)) << "no batch was merged";
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(*e->Get("own-" + std::to_string(t)),
              std::to_string(t) + ":" + std::to_string(kBatches - 1));
    for (int i = 0; i < kBatches; ++i) {
      const std::string v = std::to_string(t) + ":" + std::to_string(i);
      EXPECT_EQ(*e->Get("k-" + v), v);
    }
  }
  // The shared key holds some thread's last value.
  const std::string shared = *e->Get("shared");
  EXPECT_TRUE(shared.ends_with(":" + std::to_string(kBatches - 1))) << shared;
}

// One writer per store: a second engine on the same prefix that writes takes the store over
// (its txn compares the sequence key it read at open, and moves it). The first engine's next
// write then fails its compare: it is refused with EROFS naming the prefix, and so is every
// later one, and nothing it tried after being fenced is in the store. Its reads go on.
TEST_F(EtcdEngineTest, ASecondWriterFencesTheFirstWhichWritesNothingMore) {
  const std::string prefix = TestPrefix("/shared");
  const std::string endpoints = SharedCluster::cluster()->endpoints();
  ASSERT_OK_AND_ASSIGN(auto first, OpenEngine("etcd", &fs_, "/a", EtcdOptions(endpoints, prefix)));
  ASSERT_OK(first->Put("from-first", "1"));
  ASSERT_OK_AND_ASSIGN(auto second, OpenEngine("etcd", &fs_, "/b", EtcdOptions(endpoints, prefix)));
  ASSERT_OK(second->Put("from-second", "2"));

  WriteBatch late;
  late.Put("late-1", "x");
  late.Put("from-second", "overwritten by the first");
  const Status fenced = first->Apply(late);
  EXPECT_EQ(fenced.sys_errno(), EROFS) << fenced.ToString();
  EXPECT_NE(fenced.message().find(prefix), std::string::npos) << fenced.ToString();
  EXPECT_NE(fenced.message().find("another writer"), std::string::npos) << fenced.ToString();
  EXPECT_EQ(first->Put("late-2", "x").sys_errno(), EROFS);
  EXPECT_FALSE(first->Sync(SyncKind::kData).ok());
  EXPECT_EQ(*first->Get("from-second"), "2");  // reads go on

  ASSERT_OK(second->Put("still-second", "3"));
  EXPECT_EQ(*second->Get("from-second"), "2");
  std::vector<std::string> keys;
  ASSERT_OK(second->Scan({}, [&](std::string_view k, std::string_view) {
    keys.emplace_back(k);
    return true;
  }));
  // Neither late key, and not the sequence key either: it is no store key.
  EXPECT_EQ(keys, (std::vector<std::string>{"from-first", "from-second", "still-second"}));
  ASSERT_OK(first->Close());
  ASSERT_OK(second->Close());
}

// --- Change feed -----------------------------------------------------------------------------

// A local engine has no feed: the file layer then keeps its caches as the only writer.
TEST(EtcdChangeFeedTest, LocalEnginesHaveNoChangeFeed) {
  test::TempDir dir;
  EngineOptions o;
  o.background_work = false;
  for (const std::string& name : EngineNames()) {
    ASSERT_OK_AND_ASSIGN(auto e,
                         OpenEngine(name, sync::DefaultFileSystem(), dir.path() + "/" + name, o));
    const Status s = e->SubscribeChanges([](const ChangeSet&) {});
    EXPECT_EQ(s.code(), StatusCode::kNotSupported) << name << ": " << s.ToString();
    ASSERT_OK(e->Close());
  }
}

// What engine A writes reaches engine B's subscription: every batch whole, in one set, in
// commit order, each once, with the value it replaced, deletes as deletes; and none is lost
// while B's stream is cut again and again (it reconnects from the revision after the last one
// it handed over).
TEST_F(EtcdEngineTest, ChangesOfAnotherEngineReachASubscriberWholeInOrderAcrossReconnects) {
  const std::string prefix = TestPrefix("/shared");
  const std::string endpoints = SharedCluster::cluster()->endpoints();
  ASSERT_OK_AND_ASSIGN(auto a, OpenEngine("etcd", &fs_, "/a", EtcdOptions(endpoints, prefix)));
  ASSERT_OK_AND_ASSIGN(auto b, OpenEngine("etcd", &fs_, "/b", EtcdOptions(endpoints, prefix)));
  ChangeLog log;
  ASSERT_OK(b->SubscribeChanges(log.Fn()));
  EXPECT_EQ(b->SubscribeChanges(log.Fn()).code(), StatusCode::kInvalidArgument);

  // Before the connection is cut: an overwrite and a delete carry what they replaced.
  ASSERT_OK(a->Put("x", "1"));
  ASSERT_OK(a->Put("x", "2"));
  ASSERT_OK(a->Delete("x"));
  ASSERT_TRUE(log.WaitFor([](const std::vector<ChangeSet>& s) { return s.size() >= 3; }));
  {
    const std::vector<ChangeSet> sets = log.sets();
    ASSERT_EQ(sets.size(), 3U);
    ASSERT_EQ(sets[0].changes.size(), 1U);  // the sequence key is no store key: not handed over
    EXPECT_EQ(sets[0].changes[0].key, "x");
    EXPECT_EQ(sets[0].changes[0].value, "1");
    EXPECT_FALSE(sets[0].changes[0].previous.has_value());
    EXPECT_EQ(sets[1].changes[0].value, "2");
    EXPECT_EQ(sets[1].changes[0].previous.value_or("none"), "1");
    EXPECT_TRUE(sets[2].changes[0].deleted);
    EXPECT_EQ(sets[2].changes[0].previous.value_or("none"), "2");
  }

  constexpr int kBatches = 300;
  std::atomic<int> written{0};
  std::thread writer([&] { WriteKeys(a.get(), kBatches, &written); });
  // Cut B's stream five times while A writes, each time once B has handed something more over.
  int cuts = 0;
  for (int round = 0; round < 5; ++round) {
    const size_t seen = log.sets().size();
    if (!log.WaitFor([&](const std::vector<ChangeSet>& s) { return s.size() > seen; })) break;
    if (etcd::DropWatchConnection(b.get())) ++cuts;
  }
  writer.join();
  EXPECT_EQ(cuts, 5);
  EXPECT_GE(etcd::WatchConnections(b.get()), 6U);
  EXPECT_TRUE(log.WaitFor([](const std::vector<ChangeSet>& s) {
    return HasAllKeys(ChangeLog::Puts(s), kBatches);
  })) << "B missed a change: "
      << ChangeLog::Puts(log.sets()).size() << " keys seen";
  const std::vector<ChangeSet> sets = log.sets();
  ExpectWholeOrderedSets(sets);
  size_t changes = 0;
  for (const ChangeSet& s : sets) changes += s.changes.size();
  EXPECT_EQ(changes, 3U + kBatches + kBatches / 10) << "a change handed over twice";
  ASSERT_OK(b->Close());
  ASSERT_OK(a->Close());
}

// A subscription that starts after the history it needs was compacted away gets one
// `everything` set (at the compaction's revision), then every change after it.
TEST_F(EtcdEngineTest, ACompactedGapIsReportedAsEverythingThenChangesGoOn) {
  const std::string prefix = TestPrefix("/shared");
  const std::string endpoints = SharedCluster::cluster()->endpoints();
  ASSERT_OK_AND_ASSIGN(auto a, OpenEngine("etcd", &fs_, "/a", EtcdOptions(endpoints, prefix)));
  ASSERT_OK_AND_ASSIGN(auto b, OpenEngine("etcd", &fs_, "/b", EtcdOptions(endpoints, prefix)));
  ASSERT_OK(a->Put("before-1", "1"));
  ASSERT_OK(a->Put("before-2", "2"));
  ASSERT_OK(a->Compact());  // B opened before these: its feed would start in the compacted past
  ChangeLog log;
  ASSERT_OK(b->SubscribeChanges(log.Fn()));
  ASSERT_OK(a->Put("after", "3"));
  ASSERT_TRUE(log.WaitFor(
      [](const std::vector<ChangeSet>& s) { return ChangeLog::Puts(s).contains("after"); }));
  const std::vector<ChangeSet> sets = log.sets();
  ASSERT_GE(sets.size(), 2U);
  EXPECT_TRUE(sets.front().everything);
  EXPECT_GT(sets.front().revision, 0U);
  EXPECT_FALSE(sets.back().everything);
  EXPECT_GT(sets.back().revision, sets.front().revision);
  ASSERT_OK(b->Close());
  ASSERT_OK(a->Close());
}

// --- Clusters of their own -----------------------------------------------------------------------

class EtcdFaultTest : public testing::Test {
 protected:
  void SetUp() override {
    if (test::EtcdBinary().empty()) GTEST_SKIP() << kNoEtcd;
  }
  sync::FaultFileSystem fs_{5};
};

// A database quota that fills up: the write is ENOSPC. etcd applies the txn that crosses the
// quota (whole) and answers it with that error, so its outcome is unknown to the engine: the
// store refuses later writes, with ENOSPC, until reopened; reads go on; the batch is there
// whole or not at all.
TEST_F(EtcdFaultTest, AFullDatabaseQuotaIsENOSPCAndFailsTheStore) {
  test::EtcdCluster cluster;
  test::EtcdClusterOptions co;
  co.members = 1;
  co.flags = {"--quota-backend-bytes=" + std::to_string(1 << 20)};
  ASSERT_OK(cluster.Start(co));
  ASSERT_OK_AND_ASSIGN(auto e,
                       OpenEngine("etcd", &fs_, "/s", EtcdOptions(cluster.endpoints(), "q/")));
  ASSERT_OK(e->Put("first", "1"));
  Status full;
  int i = 0;
  for (; i < 100 && full.ok(); ++i) {
    WriteBatch b;
    b.Put("a" + std::to_string(i), std::string(50 << 10, 'v'));
    b.Put("b" + std::to_string(i), std::string(50 << 10, 'v'));
    full = e->Apply(b);
  }
  ASSERT_FALSE(full.ok()) << "1 MiB quota never filled";
  EXPECT_TRUE(full.IsNoSpace()) << full.ToString();
  EXPECT_EQ(full.sys_errno(), ENOSPC);
  const std::string last = std::to_string(i - 1);
  EXPECT_EQ(e->Get("a" + last).ok(), e->Get("b" + last).ok()) << "half a batch landed";
  Status later = e->Put("later", "x");
  EXPECT_TRUE(later.IsFailed()) << later.ToString();
  EXPECT_EQ(later.sys_errno(), ENOSPC) << later.ToString();
  EXPECT_EQ(e->Sync(SyncKind::kData).sys_errno(), ENOSPC);
  EXPECT_EQ(*e->Get("first"), "1");  // reads go on
}

// One member (the one the client talks to first) is killed while four writers run: every write
// goes on (the client fails over), and nothing acknowledged is lost, read back through the
// survivors and again once the member is back.
TEST_F(EtcdFaultTest, AMemberKilledMidWorkloadLosesNothingAcknowledged) {
  test::EtcdCluster cluster;
  ASSERT_OK(cluster.Start());
  // A generous deadline: the property is that writes go on, not how fast on a loaded machine.
  ASSERT_OK_AND_ASSIGN(
      auto e, OpenEngine("etcd", &fs_, "/s", EtcdOptions(cluster.endpoints(), "w/", 30000)));
  constexpr int kWriters = 4;
  constexpr int kPerWriter = 150;
  std::atomic<int> acknowledged{0};
  std::vector<std::thread> writers;
  std::mutex mu;
  std::vector<std::string> failures;
  for (int t = 0; t < kWriters; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < kPerWriter; ++i) {
        Status s = e->Put("t" + std::to_string(t) + "/" + std::to_string(i), std::to_string(i));
        if (!s.ok()) {
          std::lock_guard<std::mutex> lock(mu);
          failures.push_back(s.ToString());
          return;
        }
        ++acknowledged;
      }
    });
  }
  // Killed once the workload is under way: a third of it acknowledged.
  while (acknowledged.load() < kWriters * kPerWriter / 3 && failures.empty()) {
    std::this_thread::yield();
  }
  cluster.Kill(0);
  const int at_kill = acknowledged.load();
  for (auto& w : writers) w.join();
  ASSERT_TRUE(failures.empty()) << failures.front();
  EXPECT_LT(at_kill, kWriters * kPerWriter) << "the member died after the workload";
  EXPECT_OK(e->Sync(SyncKind::kData));
  auto check_all = [&] {
    for (int t = 0; t < kWriters; ++t) {
      for (int i = 0; i < kPerWriter; ++i) {
        auto v = e->Get("t" + std::to_string(t) + "/" + std::to_string(i));
        ASSERT_TRUE(v.ok()) << t << "/" << i << ": " << v.status().ToString();
        EXPECT_EQ(*v, std::to_string(i));
      }
    }
  };
  check_all();
  ASSERT_OK(cluster.Restart(0));
  check_all();
  // The restarted member serves on its own endpoint: it caught up.
  ASSERT_OK_AND_ASSIGN(auto only0,
                       OpenEngine("etcd", &fs_, "/s0", EtcdOptions(cluster.client_url(0), "w/")));
  EXPECT_EQ(*only0->Get("t3/" + std::to_string(kPerWriter - 1)), std::to_string(kPerWriter - 1));
}

// The member the client talks to first is stopped (SIGSTOP): it still accepts connections but
// never answers. Each call gives one member a third of its deadline, so writes and reads move
// on to the others and succeed within the deadline; the client then prefers a member that
// answered.
TEST_F(EtcdFaultTest, AMemberThatNeverAnswersIsLeftWithinTheDeadline) {
  test::EtcdCluster cluster;
  ASSERT_OK(cluster.Start());
  constexpr int kTimeoutMs = 3000;
  ASSERT_OK_AND_ASSIGN(
      auto e, OpenEngine("etcd", &fs_, "/s", EtcdOptions(cluster.endpoints(), "p/", kTimeoutMs)));
  ASSERT_OK(e->Put("before", "1"));
  cluster.Pause(0);
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  for (int i = 0; i < 20; ++i) ASSERT_OK(e->Put("k" + std::to_string(i), "v"));
  EXPECT_EQ(*e->Get("before"), "1");
  ASSERT_OK(e->Sync(SyncKind::kData));
  // One wait on the stopped member (a third of the deadline), not one per call.
  EXPECT_LT(Clock::now() - start, std::chrono::milliseconds(kTimeoutMs * 2));
  cluster.Cont(0);
  ASSERT_OK(cluster.WaitHealthy(0));
}

// Quorum lost (the leader and a follower killed; the follower left forwards proposals to no
// leader, so none reaches a raft log): the write is EIO within the timeout, its outcome
// unknown to the engine. Until the cluster answers again, a sync is EIO (it would otherwise
// vouch for a write it cannot settle) and so is every write, refused before it is sent. Once
// quorum is back, the next write on the same open engine first settles the unknown one: a txn
// moves the sequence key past the value it compares, so it can never apply; then the write
// goes on. Every acknowledged batch is there, and neither failed one, then or after a reopen.
TEST_F(EtcdFaultTest, QuorumLostFailsWritesWithEIOWithinTheTimeoutAndTheyResumeWhenItReturns) {
  test::EtcdCluster cluster;
  ASSERT_OK(cluster.Start());
  constexpr int kTimeoutMs = 1000;
  const EngineOptions options = EtcdOptions(cluster.endpoints(), "q/", kTimeoutMs);
  ASSERT_OK_AND_ASSIGN(auto e, OpenEngine("etcd", &fs_, "/s", options));
  ASSERT_OK(e->Put("before", "1"));
  ASSERT_OK_AND_ASSIGN(const int leader, cluster.Leader());
  const int follower = (leader + 1) % 3;
  cluster.Kill(leader);
  cluster.Kill(follower);
  using Clock = std::chrono::steady_clock;
  const auto slack = std::chrono::milliseconds(kTimeoutMs + 2000);
  WriteBatch b;
  b.Put("during-1", "x");
  b.Put("during-2", "x");
  auto start = Clock::now();
  Status w = e->Apply(b);
  EXPECT_LT(Clock::now() - start, slack);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.sys_errno(), EIO) << w.ToString();
  start = Clock::now();
  Status s = e->Sync(SyncKind::kData);
  EXPECT_LT(Clock::now() - start, slack);
  EXPECT_EQ(s.sys_errno(), EIO) << s.ToString();
  start = Clock::now();
  Status w2 = e->Put("refused", "x");
  EXPECT_LT(Clock::now() - start, slack);
  EXPECT_EQ(w2.sys_errno(), EIO) << w2.ToString();
  start = Clock::now();
  auto r = e->Get("before");
  EXPECT_LT(Clock::now() - start, slack);
  EXPECT_EQ(r.status().sys_errno(), EIO) << r.status().ToString();

  ASSERT_OK(cluster.Restart(leader, /*wait=*/false));
  ASSERT_OK(cluster.Restart(follower, /*wait=*/false));
  for (int i = 0; i < 3; ++i) ASSERT_OK(cluster.WaitHealthy(i));
  // The same open engine writes again.
  ASSERT_OK(e->Put("after", "1"));
  ASSERT_OK(e->Sync(SyncKind::kData));
  auto check = [](Engine* engine) {
    EXPECT_EQ(*engine->Get("before"), "1");
    EXPECT_EQ(*engine->Get("after"), "1");
    EXPECT_TRUE(engine->Get("during-1").status().IsNotFound());
    EXPECT_TRUE(engine->Get("during-2").status().IsNotFound());
    EXPECT_TRUE(engine->Get("refused").status().IsNotFound());
  };
  check(e.get());
  ASSERT_OK(e->Close());
  e.reset();
  ASSERT_OK_AND_ASSIGN(auto reopened, OpenEngine("etcd", &fs_, "/s", options));
  check(reopened.get());
  ASSERT_OK(reopened->Put("later", "1"));
}

// Quorum lost with the leader left alone: the write is in its raft log, uncommitted, and the
// engine's call ends with EIO. A follower back, the leader (its log the longer) is elected
// again and commits it: the write applied after its caller was told it failed. The engine's
// settling txn finds the batch's token in the sequence key, so the engine knows; as after a
// failed fsync it then refuses writes (kFailed) until reopened, since its caller took the
// batch for failed. The batch is there whole.
TEST_F(EtcdFaultTest, AWriteThatAppliedAfterItsEIOStopsTheStoreUntilReopened) {
  test::EtcdCluster cluster;
  ASSERT_OK(cluster.Start());
  constexpr int kTimeoutMs = 1000;
  const EngineOptions options = EtcdOptions(cluster.endpoints(), "q/", kTimeoutMs);
  ASSERT_OK_AND_ASSIGN(auto e, OpenEngine("etcd", &fs_, "/s", options));
  ASSERT_OK(e->Put("before", "1"));
  ASSERT_OK_AND_ASSIGN(const int leader, cluster.Leader());
  const int f1 = (leader + 1) % 3;
  const int f2 = (leader + 2) % 3;
  cluster.Kill(f1);
  cluster.Kill(f2);
  WriteBatch b;
  b.Put("during-1", "x");
  b.Put("during-2", "x");
  const Status w = e->Apply(b);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.sys_errno(), EIO) << w.ToString();

  ASSERT_OK(cluster.Restart(f1));
  ASSERT_OK(cluster.WaitHealthy(leader));
  const Status after = e->Put("after", "1");
  EXPECT_TRUE(after.IsFailed()) << after.ToString();
  EXPECT_NE(after.message().find("turned out applied"), std::string::npos) << after.ToString();
  EXPECT_EQ(*e->Get("during-1"), "x");
  EXPECT_EQ(*e->Get("during-2"), "x");
  EXPECT_TRUE(e->Get("after").status().IsNotFound());
  ASSERT_OK(e->Close());
  e.reset();
  ASSERT_OK_AND_ASSIGN(auto reopened, OpenEngine("etcd", &fs_, "/s", options));
  ASSERT_OK(reopened->Put("after", "1"));
}

// --- A secured cluster: TLS with client certificates, and etcd auth ------------------------------

// One cluster for the suite: https client URLs with certificates made by openssl in its
// directory, client certificates required, and auth enabled with a root user and a user "kvfs"
// whose role may read and write only under "secure/".
class EtcdSecuredTest : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (test::EtcdBinary().empty()) return;
    cluster_ = new test::EtcdCluster;
    test::EtcdClusterOptions o;
    o.tls = true;
    start_ = cluster_->Start(o);
    if (start_.ok()) start_ = cluster_->EnableAuth("kvfs", "kvfs-pw", "secure/");
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  void SetUp() override {
    if (test::EtcdBinary().empty()) GTEST_SKIP() << kNoEtcd;
    ASSERT_OK(start_);
  }

  static EngineOptions Secured(const std::string& prefix, const std::string& password,
                               const std::string& ca_file = "") {
    EngineOptions o = EtcdOptions(cluster_->endpoints(), prefix);
    o.settings["ca_file"] = ca_file.empty() ? cluster_->ca_file() : ca_file;
    o.settings["cert_file"] = cluster_->client_cert();
    o.settings["key_file"] = cluster_->client_key();
    o.settings["user"] = "kvfs";
    o.settings["password"] = password;
    return o;
  }

  static test::EtcdCluster* cluster_;
  static Status start_;
  sync::FaultFileSystem fs_{6};
};
test::EtcdCluster* EtcdSecuredTest::cluster_ = nullptr;
Status EtcdSecuredTest::start_;

// Over TLS with a client certificate and a user's token, the store works; the user's role
// confines it to its keys (another prefix is refused, EACCES); and when the members restart
// (etcd's simple tokens live in their memory: the engine's token is forgotten) the same open
// engine authenticates again and goes on.
TEST_F(EtcdSecuredTest, TlsClientCertificatesAndAuthWorkAndAnExpiredTokenIsRenewed) {
  ASSERT_OK_AND_ASSIGN(auto e, OpenEngine("etcd", &fs_, "/s", Secured("secure/a/", "kvfs-pw")));
  ASSERT_OK(e->Put("k", "v"));
  ASSERT_OK(e->Sync(SyncKind::kData));
  EXPECT_EQ(*e->Get("k"), "v");

  auto outside = OpenEngine("etcd", &fs_, "/o", Secured("elsewhere/", "kvfs-pw"));
  ASSERT_FALSE(outside.ok());
  EXPECT_EQ(outside.status().sys_errno(), EACCES) << outside.status().ToString();
  EXPECT_NE(outside.status().message().find("permission denied"), std::string::npos)
      << outside.status().ToString();

  for (int i = 0; i < cluster_->size(); ++i) ASSERT_OK(cluster_->Restart(i, /*wait=*/false));
  for (int i = 0; i < cluster_->size(); ++i) ASSERT_OK(cluster_->WaitHealthy(i));
  ASSERT_OK(e->Put("after-restart", "w"));
  EXPECT_EQ(*e->Get("after-restart"), "w");
  EXPECT_EQ(*e->Get("k"), "v");
  ASSERT_OK(e->Close());
}

// The change feed streams from a secured cluster too: its watch uses the store's CA, client
// certificate and auth token, as the engine's calls do, so B sees what A writes.
TEST_F(EtcdSecuredTest, TheChangeFeedStreamsOverTlsWithAuth) {
  ASSERT_OK_AND_ASSIGN(auto a, OpenEngine("etcd", &fs_, "/a", Secured("secure/feed/", "kvfs-pw")));
  ASSERT_OK_AND_ASSIGN(auto b, OpenEngine("etcd", &fs_, "/b", Secured("secure/feed/", "kvfs-pw")));
  ChangeLog log;
  ASSERT_OK(b->SubscribeChanges(log.Fn()));
  ASSERT_OK(a->Put("seen-by-b", "1"));
  EXPECT_TRUE(log.WaitFor([](const std::vector<ChangeSet>& sets) {
    return ChangeLog::Puts(sets).contains("seen-by-b");
  })) << "the feed over TLS with auth handed nothing over";
  ASSERT_OK(b->Close());
  ASSERT_OK(a->Close());
}

// A CA that did not sign the members' certificates: the open fails at once (not at the end of
// its timeout, retrying), saying TLS and naming the endpoint and the CA file.
TEST_F(EtcdSecuredTest, AWrongCaIsRefusedAtOnceNamingTheEndpointAndTheFile) {
  const std::string other = cluster_->dir() + "/other-ca";
  ASSERT_OK(test::MakeTestCertificates(other));
  const auto start = std::chrono::steady_clock::now();
  auto e = OpenEngine("etcd", &fs_, "/s", Secured("secure/b/", "kvfs-pw", other + "/ca.pem"));
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(e.ok());
  const std::string m = e.status().message();
  EXPECT_NE(m.find(cluster_->client_url(0)), std::string::npos) << m;
  EXPECT_NE(m.find("TLS"), std::string::npos) << m;
  EXPECT_NE(m.find(other + "/ca.pem"), std::string::npos) << m;
  EXPECT_EQ(e.status().sys_errno(), EIO) << e.status().ToString();
  EXPECT_LT(took, std::chrono::milliseconds(2500)) << "a 5000 ms timeout spent retrying: " << m;
}

// A wrong password, and no user at all on a cluster with auth on: refused, saying so.
TEST_F(EtcdSecuredTest, AWrongPasswordOrNoUserIsRefusedClearly) {
  auto e = OpenEngine("etcd", &fs_, "/s", Secured("secure/c/", "wrong"));
  ASSERT_FALSE(e.ok());
  const std::string m = e.status().message();
  EXPECT_NE(m.find("authenticating as user \"kvfs\""), std::string::npos) << m;
  EXPECT_NE(m.find("authentication failed"), std::string::npos) << m;
  EXPECT_NE(m.find("check the store's user and password"), std::string::npos) << m;
  EXPECT_EQ(e.status().sys_errno(), EACCES) << e.status().ToString();

  EngineOptions anonymous = Secured("secure/c/", "");
  anonymous.settings.erase("user");
  anonymous.settings.erase("password");
  auto a = OpenEngine("etcd", &fs_, "/a", anonymous);
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.status().message().find("auth enabled: set the store's user and password"),
            std::string::npos)
      << a.status().ToString();
}

// The member B's change feed streams from stops (SIGSTOP: its stream hangs, handing nothing
// over) while A writes on through the others, then is killed: B reconnects to another member
// from the revision after the last one it handed over and misses nothing written meanwhile;
// nor when the member comes back.
TEST_F(EtcdFaultTest, ASubscriberMissesNothingWhenItsMemberIsKilledAndRestarted) {
  test::EtcdCluster cluster;
  ASSERT_OK(cluster.Start());
  // A 3 s deadline: A's client leaves the stopped member after a second (etcd_client.h).
  ASSERT_OK_AND_ASSIGN(
      auto a, OpenEngine("etcd", &fs_, "/a", EtcdOptions(cluster.endpoints(), "feed/", 3000)));
  ASSERT_OK_AND_ASSIGN(
      auto b, OpenEngine("etcd", &fs_, "/b", EtcdOptions(cluster.endpoints(), "feed/", 3000)));
  ChangeLog log;
  ASSERT_OK(b->SubscribeChanges(log.Fn()));
  constexpr int kBatches = 200;
  std::atomic<int> written{0};
  std::thread writer([&] { WriteKeys(a.get(), kBatches, &written); });
  ASSERT_TRUE(log.WaitFor([](const std::vector<ChangeSet>& s) { return s.size() >= 20; }));
  std::string endpoint = etcd::WatchEndpoint(b.get());
  int victim = -1;
  for (int i = 0; i < cluster.size(); ++i) {
    if (cluster.client_url(i) == endpoint) victim = i;
  }
  ASSERT_GE(victim, 0) << "the feed streams from no member: " << endpoint;
  cluster.Pause(victim);
  const int paused_at = written.load();
  // A writes 20 more batches while B's stream hands nothing over.
  ASSERT_TRUE(log.WaitFor([&](const std::vector<ChangeSet>&) {
    return written.load() >= std::min(kBatches, paused_at + 20);
  }));
  const uint64_t connections = etcd::WatchConnections(b.get());
  cluster.Kill(victim);
  ASSERT_TRUE(log.WaitFor([&](const std::vector<ChangeSet>&) {
    return etcd::WatchConnections(b.get()) > connections;
  }));
  ASSERT_OK(cluster.Restart(victim));
  writer.join();
  EXPECT_TRUE(log.WaitFor([](const std::vector<ChangeSet>& s) {
    return HasAllKeys(ChangeLog::Puts(s), kBatches);
  })) << "B missed a change: "
      << ChangeLog::Puts(log.sets()).size() << " keys seen";
  ExpectWholeOrderedSets(log.sets());
  ASSERT_OK(b->Close());
  ASSERT_OK(a->Close());
}

}  // namespace
}  // namespace kvfs::engines
