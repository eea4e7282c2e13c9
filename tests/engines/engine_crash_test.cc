// Power cuts and failed syncs under every engine, through the Engine interface only.
//
// Three kinds of run, each for every registered engine:
// - randomized: several threads apply batches (puts and deletes over keys each thread owns),
//   sync now and then, and one thread runs merges/compactions, until the power goes at a sync
//   point or at a random operation, in every crash mode and sync mode;
// - enumerated: one deterministic single-threaded script (puts, deletes, multi-key batches,
//   syncs, compactions, a reopen) is run once to count its syncs N, then again with the power
//   cut at sync 1, 2, ..., N in turn, in every crash mode; and again with sync k failing with
//   EIO, ENOSPC or EDQUOT, for every k;
// - a MANIFEST replaced whose directory fsync fails: the new MANIFEST may or may not be the one
//   on disk, so no file either one names may be deleted and the store must fail.
// After each, the store is reopened and docs/DESIGN.md's invariant checked (crash_oracle.h): the
// keys of each writer show the state its batches 1..P left, for one P at or past the last batch
// acknowledged durable; nothing appears that was never written; the store opens, takes new
// writes, and they survive the next reopen. Randomized failures print the seed and the crash
// point; KVFS_TEST_SEED=<seed> replays.
#include <gtest/gtest.h>

#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include "engines/engine.h"
#include "sync/durable.h"
#include "sync/fault_file_system.h"
#include "tests/engines/crash_oracle.h"
#include "tests/test_util.h"

namespace kvfs::engines {
namespace {

using oracle::BatchWrites;
using oracle::CheckRecoveredPrefix;
using oracle::KeyValues;

constexpr char kDir[] = "/data/store";
constexpr int kThreads = 3;
constexpr int kBatchesPerThread = 25;
constexpr int kKeysPerThread = 6;

constexpr sync::CrashMode kCrashModes[] = {
    sync::CrashMode::kDropUnsynced, sync::CrashMode::kKeepPrefix, sync::CrashMode::kTearLastWrite};
constexpr int kSyncErrnos[] = {EIO, ENOSPC, EDQUOT};

EngineOptions Options(sync::SyncMode mode) {
  EngineOptions o;
  o.sync_mode = mode;
  o.segment_size = 4096;  // many rotations
  o.batch_records = 5;
  o.batch_interval = std::chrono::milliseconds(1);
  o.background_work = false;  // merges only where the workload asks, so crash points hit them
  return o;
}

// Every key with `prefix`, and its value, through Scan; the Gets must agree.
KeyValues ShownKeys(Engine& engine, const std::string& prefix) {
  KeyValues shown;
  ScanOptions o;
  o.prefix = prefix;
  EXPECT_OK(engine.Scan(o, [&](std::string_view k, std::string_view v) {
    shown.emplace(std::string(k), std::string(v));
    return true;
  }));
  for (const auto& [key, value] : shown) {
    auto got = engine.Get(key);
    EXPECT_TRUE(got.ok() && *got == value) << key << ": Get and Scan disagree";
  }
  return shown;
}

// The store takes new writes after the crash, and they survive the next reopen.
void ExpectWritableAndDurable(const std::string& engine_name, sync::FileSystem* fs,
                              std::unique_ptr<Engine> engine, const EngineOptions& options) {
  ASSERT_OK(engine->Put("after/crash", "yes"));
  ASSERT_OK(engine->Sync(SyncKind::kFull));
  ASSERT_OK(engine->Close());
  engine.reset();
  ASSERT_OK_AND_ASSIGN(auto again, OpenEngine(engine_name, fs, kDir, options));
  ASSERT_OK_AND_ASSIGN(std::string v, again->Get("after/crash"));
  EXPECT_EQ(v, "yes");
}

// --- Randomized: several writers and a compactor, cut at a sync point or an operation --------

std::string Key(int thread, int k) {
  return "t" + std::to_string(thread) + "/k" + std::to_string(k);
}

// A value names the batch that wrote it: "<thread>:<seq>:" then filler.
std::string Value(int thread, int seq, std::mt19937_64& rng) {
  std::string v = std::to_string(thread) + ":" + std::to_string(seq) + ":";
  v.append(rng() % 10 == 0 ? 2000 : rng() % 200, static_cast<char>('a' + seq % 26));
  return v;
}

// What one thread did, for the checker. Keys are owned by one thread, so per key the writes
// are ordered by the thread's batch sequence.
struct ThreadLog {
  std::vector<BatchWrites> batches;  // every batch attempted, in order (seq = index + 1)
  size_t durable = 0;                // batches 1..durable acknowledged durable
};

// Runs until the power goes. An operation may fail only once it has (`fs` says whether it
// has), or a writer that gave up early would make the check below vacuous.
void RunWorkload(Engine* engine, const sync::FaultFileSystem* fs, sync::SyncMode mode,
                 uint64_t seed, std::vector<ThreadLog>* logs) {
  auto stop = [fs](const Status& s, const char* what) {
    if (!fs->crashed()) ADD_FAILURE() << what << " failed before the power went: " << s.ToString();
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([=] {
      std::mt19937_64 rng(seed * 131 + t);
      ThreadLog& log = (*logs)[t];
      for (int seq = 1; seq <= kBatchesPerThread; ++seq) {
        BatchWrites b;
        WriteBatch wb;
        const int n = 1 + static_cast<int>(rng() % 3);
        for (int i = 0; i < n; ++i) {
          const std::string key = Key(t, static_cast<int>(rng() % kKeysPerThread));
          if (b.count(key)) continue;
          if (rng() % 5 == 0) {
            b[key] = std::nullopt;
            wb.Delete(key);
          } else {
            b[key] = Value(t, seq, rng);
            wb.Put(key, *b[key]);
          }
        }
        log.batches.push_back(b);
        if (Status s = engine->Apply(wb); !s.ok()) return stop(s, "Apply");
        if (mode == sync::SyncMode::kAlways) log.durable = log.batches.size();
        if (rng() % 4 == 0) {
          Status s = engine->Sync(rng() % 2 ? SyncKind::kData : SyncKind::kFull);
          if (!s.ok()) return stop(s, "Sync");
          log.durable = log.batches.size();
        }
      }
    });
  }
  threads.emplace_back([=] {
    for (int i = 0; i < 3; ++i) {
      if (Status s = engine->Compact(); !s.ok()) return stop(s, "Compact");
      std::this_thread::yield();
    }
  });
  for (auto& th : threads) th.join();
}

void CheckRecovered(const std::string& engine_name, sync::FaultFileSystem* fs, sync::SyncMode mode,
                    const std::vector<ThreadLog>& logs) {
  auto opened = OpenEngine(engine_name, fs, kDir, Options(mode));
  ASSERT_TRUE(opened.ok()) << "reopen after crash: " << opened.status().ToString();
  for (int t = 0; t < kThreads; ++t) {
    const std::string why = CheckRecoveredPrefix(
        logs[t].batches, logs[t].durable, ShownKeys(**opened, "t" + std::to_string(t) + "/"));
    ASSERT_EQ(why, "") << "thread " << t;
  }
  ExpectWritableAndDurable(engine_name, fs, std::move(*opened), Options(mode));
}

enum class CutAt { kSync, kOp };

void RunOnce(const std::string& engine_name, sync::SyncMode mode, sync::CrashMode crash,
             CutAt where, uint64_t n, uint64_t seed, sync::FaultStats* stats = nullptr) {
  SCOPED_TRACE(engine_name + ", seed " + std::to_string(seed) + ", crash at " +
               (where == CutAt::kSync ? "sync " : "op ") + std::to_string(n) + ", " +
               sync::CrashModeName(crash) + ", sync mode " + sync::SyncModeName(mode));
  sync::FaultFileSystem fs(seed);
  ASSERT_OK(sync::CreateDirDurably(&fs, "/data"));
  if (n > 0) {
    if (where == CutAt::kSync) {
      fs.CrashAtSync(n, crash);
    } else {
      fs.CrashAtOp(n, crash);
    }
  }
  std::vector<ThreadLog> logs(kThreads);
  {
    auto engine = OpenEngine(engine_name, &fs, kDir, Options(mode));
    if (engine.ok()) {
      RunWorkload(engine->get(), &fs, mode, seed, &logs);
      if (stats) *stats = fs.stats();
    } else {
      ASSERT_TRUE(fs.crashed()) << "open failed before the power went: "
                                << engine.status().ToString();
    }
  }
  fs.Crash(crash);
  CheckRecovered(engine_name, &fs, mode, logs);
}

using Param = std::tuple<std::string, sync::SyncMode, sync::CrashMode>;
class EngineCrashTest : public testing::TestWithParam<Param> {};

TEST_P(EngineCrashTest, PowerCutAtEverySyncPointLosesNothingAcknowledged) {
  const auto& [engine, mode, crash] = GetParam();
  const uint64_t seed = test::TestSeed();
  sync::FaultStats calibration;
  RunOnce(engine, mode, crash, CutAt::kSync, 0, seed, &calibration);
  ASSERT_GT(calibration.syncs, 5u);
  for (uint64_t n = 1; n <= calibration.syncs + 2; ++n) {
    RunOnce(engine, mode, crash, CutAt::kSync, n, seed + n);
    if (HasFailure()) return;
  }
}

TEST_P(EngineCrashTest, PowerCutAtRandomOperationsLosesNothingAcknowledged) {
  const auto& [engine, mode, crash] = GetParam();
  const uint64_t seed = test::TestSeed();
  sync::FaultStats calibration;
  RunOnce(engine, mode, crash, CutAt::kOp, 0, seed, &calibration);
  std::mt19937_64 rng(seed);
  for (int i = 0; i < 40; ++i) {
    RunOnce(engine, mode, crash, CutAt::kOp, 1 + rng() % calibration.mutating_ops, seed + 1000 + i);
    if (HasFailure()) return;
  }
}

INSTANTIATE_TEST_SUITE_P(AllEngines, EngineCrashTest,
                         testing::Combine(testing::ValuesIn(EngineNames()),
                                          testing::Values(sync::SyncMode::kAlways,
                                                          sync::SyncMode::kBatch,
                                                          sync::SyncMode::kNone),
                                          testing::ValuesIn(kCrashModes)),
                         [](const testing::TestParamInfo<Param>& info) {
                           return std::get<0>(info.param) + "_" +
                                  sync::SyncModeName(std::get<1>(info.param)) + "_" +
                                  sync::CrashModeName(std::get<2>(info.param));
                         });

// --- Enumerated: one deterministic script, cut or failed at each of its syncs in turn ---------

// Log segments and memtables far larger than the script writes: no segment is prepared in the
// background and nothing is flushed except by Compact and Close, so the script's syncs come in
// the same order every run and sync k is the same sync each time.
EngineOptions ScriptOptions(sync::SyncMode mode) {
  EngineOptions o;
  o.sync_mode = mode;
  o.segment_size = 64 << 10;
  o.background_work = false;
  return o;
}

struct Step {
  enum class Kind { kApply, kSync, kCompact, kReopen };
  Kind kind = Kind::kApply;
  BatchWrites writes;  // kApply
  SyncKind sync = SyncKind::kData;
};

// Batches of one to three keys from a pool that grows (so batches put new keys beside old
// ones), a delete now and then, a few values past the LSM's blob threshold; a sync every fourth
// batch, a Compact after batches 12 and 28, a Close and reopen after batch 20.
const std::vector<Step>& Script() {
  static const std::vector<Step>* script = [] {
    auto* steps = new std::vector<Step>;
    std::mt19937_64 rng(20);  // fixed: the same script every run
    for (int seq = 1; seq <= 32; ++seq) {
      Step apply;
      const int pool = std::min(12, 2 + seq / 2);
      const int n = 1 + static_cast<int>(rng() % 3);
      for (int i = 0; i < n; ++i) {
        const std::string key = "s/k" + std::to_string(rng() % pool);
        if (apply.writes.count(key)) continue;
        if (rng() % 5 == 0) {
          apply.writes[key] = std::nullopt;
        } else {
          const size_t size = seq % 9 == 5 ? 5000 : 20 + rng() % 200;
          apply.writes[key] = std::to_string(seq) + ":" + std::string(size, 'a' + seq % 26);
        }
      }
      steps->push_back(apply);
      if (seq % 4 == 0) {
        Step sync;
        sync.kind = Step::Kind::kSync;
        sync.sync = seq % 8 == 0 ? SyncKind::kFull : SyncKind::kData;
        steps->push_back(sync);
      }
      if (seq == 12 || seq == 28) steps->push_back(Step{Step::Kind::kCompact, {}, {}});
      if (seq == 20) steps->push_back(Step{Step::Kind::kReopen, {}, {}});
    }
    return steps;
  }();
  return *script;
}

struct ScriptRun {
  std::vector<BatchWrites> attempted;
  size_t durable = 0;              // batches 1..durable acknowledged durable
  Status error;                    // the first operation that failed, if any
  std::string failed;              // which one
  bool power_was_off = false;      // when it failed
  std::unique_ptr<Engine> engine;  // still open, unless the failure was a close or an open
};

// Runs the script until an operation fails.
void RunScript(const std::string& engine_name, sync::FaultFileSystem* fs, sync::SyncMode mode,
               ScriptRun* run) {
  const EngineOptions options = ScriptOptions(mode);
  auto fail = [&](Status s, std::string what) {
    run->power_was_off = fs->crashed();
    run->error = std::move(s);
    run->failed = std::move(what);
  };
  auto opened = OpenEngine(engine_name, fs, kDir, options);
  if (!opened.ok()) return fail(opened.status(), "open");
  run->engine = std::move(*opened);
  for (size_t i = 0; i < Script().size(); ++i) {
    const Step& step = Script()[i];
    const std::string what = "step " + std::to_string(i);
    switch (step.kind) {
      case Step::Kind::kApply: {
        WriteBatch b;
        for (const auto& [key, value] : step.writes) {
          if (value) {
            b.Put(key, *value);
          } else {
            b.Delete(key);
          }
        }
        run->attempted.push_back(step.writes);
        if (Status s = run->engine->Apply(b); !s.ok()) return fail(s, what + " (apply)");
        if (mode == sync::SyncMode::kAlways) run->durable = run->attempted.size();
        break;
      }
      case Step::Kind::kSync:
        if (Status s = run->engine->Sync(step.sync); !s.ok()) return fail(s, what + " (sync)");
        run->durable = run->attempted.size();
        break;
      case Step::Kind::kCompact:
        if (Status s = run->engine->Compact(); !s.ok()) return fail(s, what + " (compact)");
        break;
      case Step::Kind::kReopen: {
        Status closed = run->engine->Close();
        run->engine.reset();
        if (!closed.ok()) return fail(closed, what + " (close)");
        run->durable = run->attempted.size();  // a close syncs
        auto again = OpenEngine(engine_name, fs, kDir, options);
        if (!again.ok()) return fail(again.status(), what + " (reopen)");
        run->engine = std::move(*again);
        break;
      }
    }
  }
}

// The syncs the script makes, counted on a fresh disk; twice, to show they are the same each run.
uint64_t ScriptSyncs(const std::string& engine_name, sync::SyncMode mode) {
  uint64_t syncs[2] = {0, 0};
  for (uint64_t& n : syncs) {
    sync::FaultFileSystem fs(1);
    EXPECT_OK(sync::CreateDirDurably(&fs, "/data"));
    const uint64_t before = fs.stats().syncs;
    ScriptRun run;
    RunScript(engine_name, &fs, mode, &run);
    EXPECT_TRUE(run.error.ok()) << run.failed << ": " << run.error.ToString();
    run.engine.reset();  // its close syncs too
    n = fs.stats().syncs - before;
  }
  EXPECT_EQ(syncs[0], syncs[1]) << "the script's syncs differ between runs";
  return syncs[0];
}

void CheckScriptRecovered(const std::string& engine_name, sync::FaultFileSystem* fs,
                          sync::SyncMode mode, const ScriptRun& run) {
  auto opened = OpenEngine(engine_name, fs, kDir, ScriptOptions(mode));
  ASSERT_TRUE(opened.ok()) << "reopen: " << opened.status().ToString();
  ASSERT_EQ(CheckRecoveredPrefix(run.attempted, run.durable, ShownKeys(**opened, "s/")), "");
  ExpectWritableAndDurable(engine_name, fs, std::move(*opened), ScriptOptions(mode));
}

using ScriptParam = std::tuple<std::string, sync::SyncMode>;
class EngineScriptTest : public testing::TestWithParam<ScriptParam> {};

TEST_P(EngineScriptTest, PowerCutAtEachSyncOfTheScriptInEveryCrashModeLosesNothing) {
  const auto& [engine, mode] = GetParam();
  const uint64_t syncs = ScriptSyncs(engine, mode);
  ASSERT_GT(syncs, 20u);
  for (sync::CrashMode crash : kCrashModes) {
    for (uint64_t k = 1; k <= syncs; ++k) {
      SCOPED_TRACE("power cut at sync " + std::to_string(k) + " of " + std::to_string(syncs) +
                   ", " + sync::CrashModeName(crash));
      sync::FaultFileSystem fs(k);
      ASSERT_OK(sync::CreateDirDurably(&fs, "/data"));
      fs.CrashAtSync(k, crash);
      ScriptRun run;
      RunScript(engine, &fs, mode, &run);
      EXPECT_TRUE(run.error.ok() || run.power_was_off)
          << run.failed << " failed before the power went: " << run.error.ToString();
      run.engine.reset();
      EXPECT_TRUE(fs.crashed()) << "sync " << k << " never came";
      fs.Crash(crash);
      CheckScriptRecovered(engine, &fs, mode, run);
      if (HasFailure()) return;
    }
  }
}

// Sync k fails with EIO, ENOSPC or EDQUOT (a thin-provisioned or quota-limited disk answers a
// sync so): whatever the errno and whichever file it was, the operation that reports it is not
// told kNoSpace (nothing may be retried over pages the kernel dropped), the store refuses writes
// with kFailed from then on, and after a power cut nothing acknowledged durable is missing.
TEST_P(EngineScriptTest, FailedSyncAtEachSyncOfTheScriptFailsTheStoreAndLosesNothing) {
  const auto& [engine, mode] = GetParam();
  const uint64_t syncs = ScriptSyncs(engine, mode);
  ASSERT_GT(syncs, 20u);
  for (int err : kSyncErrnos) {
    for (uint64_t k = 1; k <= syncs; ++k) {
      const sync::CrashMode crash = kCrashModes[k % 3];
      SCOPED_TRACE("sync " + std::to_string(k) + " of " + std::to_string(syncs) + " fails with " +
                   ::strerrorname_np(err) + ", then " + sync::CrashModeName(crash));
      sync::FaultFileSystem fs(k);
      ASSERT_OK(sync::CreateDirDurably(&fs, "/data"));
      fs.FailSyncAfter(k, err);
      ScriptRun run;
      RunScript(engine, &fs, mode, &run);
      EXPECT_FALSE(run.error.IsNoSpace()) << run.failed << ": " << run.error.ToString();
      if (!run.error.ok() && run.engine != nullptr) {
        const Status refused = run.engine->Put("x/refused", "x");
        EXPECT_TRUE(refused.IsFailed())
            << "after " << run.failed << " failed (" << run.error.ToString()
            << "), a write got: " << refused.ToString();
      }
      run.engine.reset();
      fs.Crash(crash);
      CheckScriptRecovered(engine, &fs, mode, run);
      if (HasFailure()) return;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllEngines, EngineScriptTest,
                         testing::Combine(testing::ValuesIn(EngineNames()),
                                          testing::Values(sync::SyncMode::kAlways,
                                                          sync::SyncMode::kNone)),
                         [](const testing::TestParamInfo<ScriptParam>& info) {
                           return std::get<0>(info.param) + "_" +
                                  sync::SyncModeName(std::get<1>(info.param));
                         });

// --- A MANIFEST replaced whose directory fsync failed ------------------------------------------

// A FaultFileSystem that fails, with `err`, the directory fsync that follows the n-th rename onto
// a file named MANIFEST after Arm. The rename is then either lost (as FaultFileSystem treats the
// names a failed fsync covered) or made durable before the error is reported (the directory was
// written, the error came after): the new MANIFEST is possibly committed. It also records every
// file removed once the failure has fired.
class ManifestFsyncFaultFs : public sync::FaultFileSystem {
 public:
  using FaultFileSystem::FaultFileSystem;

  void Arm(int nth, int err, bool persist) {
    std::lock_guard<std::mutex> lock(mu_);
    countdown_ = nth;
    err_ = err;
    persist_ = persist;
  }
  bool fired() const {
    std::lock_guard<std::mutex> lock(mu_);
    return fired_;
  }
  std::vector<std::string> removed_since() const {
    std::lock_guard<std::mutex> lock(mu_);
    return removed_;
  }

 protected:
  class Dir final : public sync::Directory {
   public:
    Dir(ManifestFsyncFaultFs* fs, std::unique_ptr<sync::Directory> inner)
        : Directory(inner->path()), fs_(fs), inner_(std::move(inner)) {}

   protected:
    Status DoFsync() override { return fs_->Fsync(*inner_); }

   private:
    ManifestFsyncFaultFs* const fs_;
    const std::unique_ptr<sync::Directory> inner_;
  };

  Status DoRename(const std::string& from, const std::string& to) override {
    Status s = FaultFileSystem::DoRename(from, to);
    std::lock_guard<std::mutex> lock(mu_);
    if (s.ok() && sync::BaseName(to) == "MANIFEST" && countdown_ > 0 && --countdown_ == 0) {
      pending_dir_ = sync::DirName(to);
    }
    return s;
  }
  Result<std::unique_ptr<sync::Directory>> DoOpenDirectory(const std::string& path) override {
    KVFS_ASSIGN_OR_RETURN(std::unique_ptr<sync::Directory> inner,
                          FaultFileSystem::DoOpenDirectory(path));
    return std::unique_ptr<sync::Directory>(std::make_unique<Dir>(this, std::move(inner)));
  }
  Status DoRemoveFile(const std::string& path) override {
    const bool holds_records = !Unused(path);
    Status s = FaultFileSystem::DoRemoveFile(path);
    std::lock_guard<std::mutex> lock(mu_);
    if (s.ok() && fired_ && holds_records) removed_.push_back(path);
    return s;
  }

 private:
  Status Fsync(sync::Directory& inner) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!pending_dir_ || *pending_dir_ != inner.path()) return inner.Fsync();
      pending_dir_.reset();
      fired_ = true;
    }
    if (persist_) EXPECT_OK(inner.Fsync());
    return Status::FromErrno(err_, "fsync " + inner.path() + ": injected after a MANIFEST rename");
  }

  // A log segment prepared but never used (its header still zeros, as the log's close removes
  // one) holds nothing any MANIFEST could need.
  bool Unused(const std::string& path) {
    if (!sync::DirName(path).ends_with("/wal")) return false;
    auto bytes = sync::ReadFileToString(this, path);
    return bytes.ok() && bytes->find_first_not_of('\0') == std::string::npos;
  }

  mutable std::mutex mu_;
  int countdown_ = 0;
  int err_ = EIO;
  bool persist_ = false;
  std::optional<std::string> pending_dir_;
  bool fired_ = false;
  std::vector<std::string> removed_;
};

// Files that may go once the failure fired: temporary ones, which no MANIFEST ever names.
std::vector<std::string> NamedFilesRemoved(const ManifestFsyncFaultFs& fs) {
  std::vector<std::string> out;
  for (const std::string& path : fs.removed_since()) {
    if (!path.ends_with(".tmp")) out.push_back(path);
  }
  return out;
}

std::string Join(const std::vector<std::string>& v) {
  std::string s;
  for (const std::string& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

class ManifestFsyncTest : public testing::TestWithParam<std::string> {};

// A Compact whose n-th MANIFEST replacement (a flush's, a compaction's, a blob GC's, a merge's)
// has its directory fsync fail: the Compact fails (never as kNoSpace), the store refuses writes
// and keeps serving reads, no file is deleted but temporary ones (neither the files the new
// MANIFEST names nor those the old one names, nor log segments), not by the close nor by a
// reopen in the same process; after a power cut the store opens with every acknowledged write.
TEST_P(ManifestFsyncTest, AFailedDirectoryFsyncAfterTheRenameDeletesNothingAndFailsTheStore) {
  const std::string engine_name = GetParam();
  EngineOptions options = ScriptOptions(sync::SyncMode::kAlways);
  options.segment_size = 8 << 10;  // the log rotates, so a checkpoint would have segments to drop
  int renames_seen = 0;
  for (int nth = 1;; ++nth) {
    bool fired_once = false;
    for (int err : kSyncErrnos) {
      for (bool persist : {false, true}) {
        for (bool reopen_first : {false, true}) {
          SCOPED_TRACE("MANIFEST rename " + std::to_string(nth) +
                       " of a Compact, fsync fails with " + ::strerrorname_np(err) +
                       (persist ? ", rename durable" : ", rename lost") +
                       (reopen_first ? ", reopened in the same process first" : ""));
          ManifestFsyncFaultFs fs(nth);
          ASSERT_OK(sync::CreateDirDurably(&fs, "/data"));
          KeyValues model;
          auto put = [&](Engine& e, const std::string& k, const std::string& v) -> Status {
            KVFS_RETURN_IF_ERROR(e.Put(k, v));
            model[k] = v;
            return Status::OK();
          };
          ASSERT_OK_AND_ASSIGN(auto e, OpenEngine(engine_name, &fs, kDir, options));
          for (int i = 0; i < 40; ++i) {
            ASSERT_OK(put(*e, "m/k" + std::to_string(i),
                          std::string(i % 10 == 0 ? 5000 : 100, static_cast<char>('a' + i % 26))));
          }
          ASSERT_OK(e->Compact());  // an older generation of files for the next one to replace
          for (int i = 0; i < 40; i += 2) {
            ASSERT_OK(put(*e, "m/k" + std::to_string(i), "second " + std::to_string(i)));
          }
          for (int i = 1; i < 10; i += 2) {
            ASSERT_OK(e->Delete("m/k" + std::to_string(i)));
            model.erase("m/k" + std::to_string(i));
          }
          for (int i = 40; i < 50; ++i) ASSERT_OK(put(*e, "m/k" + std::to_string(i), "new"));
          fs.Arm(nth, err, persist);
          const Status compacted = e->Compact();
          if (!fs.fired()) {
            ASSERT_OK(compacted);
            continue;  // this Compact replaces its MANIFEST fewer than nth times
          }
          fired_once = true;
          EXPECT_FALSE(compacted.ok());
          EXPECT_FALSE(compacted.IsNoSpace()) << compacted.ToString();
          const Status refused = e->Put("m/refused", "x");
          EXPECT_TRUE(refused.IsFailed()) << refused.ToString();
          EXPECT_EQ(ShownKeys(*e, "m/"), model);  // reads go on
          if (reopen_first) {
            e->Close().PermitUnchecked();
            e.reset();
            // Which MANIFEST is on disk is unknown until the machine restarts: an open now
            // would delete files by what it read, and take writes on top of it.
            auto again = OpenEngine(engine_name, &fs, kDir, options);
            EXPECT_FALSE(again.ok()) << "reopened in the process whose directory fsync failed";
            EXPECT_FALSE(again.status().IsNoSpace()) << again.status().ToString();
          }
          e.reset();
          EXPECT_EQ(Join(NamedFilesRemoved(fs)), "")
              << "deleted after the MANIFEST's directory fsync failed";
          fs.Crash(sync::CrashMode::kDropUnsynced);
          auto reopened = OpenEngine(engine_name, &fs, kDir, options);
          ASSERT_TRUE(reopened.ok())
              << "open after the power cut: " << reopened.status().ToString();
          EXPECT_EQ(ShownKeys(**reopened, "m/"), model);
          ExpectWritableAndDurable(engine_name, &fs, std::move(*reopened), options);
          if (HasFailure()) return;
        }
      }
    }
    if (!fired_once) break;
    ++renames_seen;
  }
  EXPECT_GE(renames_seen, 1) << "no Compact replaced a MANIFEST";
}

INSTANTIATE_TEST_SUITE_P(AllEngines, ManifestFsyncTest, testing::ValuesIn(EngineNames()),
                         [](const testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

}  // namespace
}  // namespace kvfs::engines
