// Power cuts at every sync point of a deterministic single-threaded B-tree workload whose
// batches split leaves and internal nodes, merge them back, spill long keys and values to
// overflow pages, free and reuse pages, and checkpoint (by Compact and on their own, by log
// size), in every crash mode: kTearLastWrite tears the write in flight, including a page
// written in place by a checkpoint.
//
// Where the cuts land is counted, not assumed: a split happens inside one batch, in private
// page copies, so the sync points "in the middle of a split" are the log sync of a batch that
// splits (the batch is lost whole or kept whole) and the checkpoint that writes the split's new
// pages in place (torn, then repaired from the doublewrite file). A spy on the page file
// records, at each cut, the in-place writes the cut left unsynced; the test requires cuts with
// a checkpoint's writes in flight, among them ones that grow the file and write internal pages
// (a split reaching the file), and reopens that restored pages from the doublewrite file.
//
// After each cut the store reopens, verifies (every page, the invariants) and shows exactly the
// state after some batch P at or past the last one acknowledged (sync mode `always`: every
// batch that returned OK). The same run without the doublewrite file must fail somewhere,
// which shows the run reaches torn page writes.
#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "engines/btree/btree.h"
#include "engines/btree/page.h"
#include "sync/durable.h"
#include "sync/fault_file_system.h"
#include "tests/test_util.h"

namespace kvfs::engines {
namespace {

constexpr char kDir[] = "/data/store";
constexpr int kBatches = 70;

using State = std::map<std::string, std::string>;
struct Op {
  std::string key;
  std::optional<std::string> value;  // nullopt: delete
};
using Batch = std::vector<Op>;

std::vector<Batch> Script() {
  std::mt19937_64 rng(2026);
  std::vector<Batch> script;
  for (int b = 0; b < kBatches; ++b) {
    Batch batch;
    const int n = 1 + static_cast<int>(rng() % 6);
    // Grow in the first half (splits), shrink in the second (merges).
    const int deletes_in_10 = b < kBatches / 2 ? 2 : 7;
    for (int i = 0; i < n; ++i) {
      const uint64_t r = rng();
      std::string key = "k" + std::to_string(r % 60);
      if (r % 13 == 0) key = "long/" + std::string(120, 'x') + std::to_string(r % 5);
      if (static_cast<int>(rng() % 10) < deletes_in_10) {
        batch.push_back({key, std::nullopt});
      } else {
        const size_t len = rng() % 7 == 0 ? 200 + rng() % 900 : rng() % 50;
        batch.push_back({key, std::to_string(b) + ":" + std::string(len, 'a' + b % 26)});
      }
    }
    script.push_back(std::move(batch));
  }
  return script;
}

EngineOptions Options() {
  EngineOptions o;
  o.sync_mode = sync::SyncMode::kAlways;
  o.segment_size = 4096;  // the log rotates and checkpoints drop whole segments
  o.background_work = false;
  return o;
}

BtreeOptions Btree(bool double_write) {
  BtreeOptions b;
  b.page_size = 512;
  b.checkpoint_log_bytes = 6000;  // checkpoints on their own too
  b.double_write = double_write;
  return b;
}

State ScanAll(Engine& e) {
  State out;
  EXPECT_OK(e.Scan({}, [&](std::string_view k, std::string_view v) {
    out.emplace(std::string(k), std::string(v));
    return true;
  }));
  return out;
}

// A FaultFileSystem that watches the page file: the pages written since its last successful
// sync (what a cut now would leave unsynced, to be dropped or torn), and its synced size.
class PageFileSpy : public sync::FaultFileSystem {
 public:
  using sync::FaultFileSystem::FaultFileSystem;

  struct InFlight {
    std::set<btree::PageType> types;
    bool grows = false;  // a page past the synced end: allocated since (a split, a new chain)
  };
  InFlight in_flight() const { return in_flight_; }

 protected:
  class Spy : public sync::RandomRWFile {
   public:
    Spy(PageFileSpy* fs, std::unique_ptr<sync::RandomRWFile> inner)
        : RandomRWFile(inner->path()), fs_(fs), inner_(std::move(inner)) {}

   protected:
    Result<size_t> DoRead(uint64_t offset, size_t n, char* scratch) const override {
      return inner_->Read(offset, n, scratch);
    }
    Status DoWrite(uint64_t offset, std::string_view data) override {
      KVFS_RETURN_IF_ERROR(inner_->Write(offset, data));
      for (size_t at = 0; at + 512 <= data.size(); at += 512) {
        fs_->in_flight_.types.insert(btree::TypeOf(data.data() + at));
      }
      if (offset + data.size() > fs_->synced_size_) fs_->in_flight_.grows = true;
      return Status::OK();
    }
    Status DoTruncate(uint64_t size) override { return inner_->Truncate(size); }
    Status DoSync(bool data_only) override {
      KVFS_RETURN_IF_ERROR(data_only ? inner_->DataSync() : inner_->Sync());
      KVFS_ASSIGN_OR_RETURN(fs_->synced_size_, inner_->Size());
      fs_->in_flight_ = {};
      return Status::OK();
    }
    Result<uint64_t> DoSize() const override { return inner_->Size(); }
    Status DoClose() override { return inner_->Close(); }

   private:
    PageFileSpy* const fs_;
    std::unique_ptr<sync::RandomRWFile> inner_;
  };

  Result<std::unique_ptr<sync::RandomRWFile>> DoNewRandomRWFile(const std::string& path,
                                                                bool create) override {
    KVFS_ASSIGN_OR_RETURN(auto inner, FaultFileSystem::DoNewRandomRWFile(path, create));
    if (!path.ends_with("/pages")) return inner;
    return std::unique_ptr<sync::RandomRWFile>(std::make_unique<Spy>(this, std::move(inner)));
  }

 private:
  // The engine's single checkpointer writes and syncs the page file; the test reads these only
  // after the engine is gone.
  InFlight in_flight_;
  uint64_t synced_size_ = 0;
};

// Runs the script until an operation fails (the power went); returns the batches acknowledged.
int RunScript(sync::FileSystem* fs, const std::vector<Batch>& script, bool double_write) {
  auto opened = OpenBtreeWith(fs, kDir, Options(), Btree(double_write));
  if (!opened.ok()) return 0;
  Engine& e = **opened;
  int acked = 0;
  for (size_t b = 0; b < script.size(); ++b) {
    WriteBatch wb;
    for (const Op& op : script[b]) {
      if (op.value) {
        wb.Put(op.key, *op.value);
      } else {
        wb.Delete(op.key);
      }
    }
    if (!e.Apply(wb).ok()) return acked;
    acked = static_cast<int>(b) + 1;
    if (b == 20 || b == 45) {
      if (!e.Compact().ok()) return acked;
    }
  }
  e.Close().PermitUnchecked();
  return acked;
}

// The states after batches 0..N.
std::vector<State> States(const std::vector<Batch>& script) {
  std::vector<State> states(1);
  for (const Batch& b : script) {
    State s = states.back();
    for (const Op& op : b) {
      if (op.value) {
        s[op.key] = *op.value;
      } else {
        s.erase(op.key);
      }
    }
    states.push_back(std::move(s));
  }
  return states;
}

// What the cuts reached, over every mode.
struct Reached {
  int in_place_writes = 0;  // cuts with a checkpoint's in-place page writes unsynced
  int split_pages = 0;      // ... among them the file growing and an internal page written
  int restored = 0;         // reopens that put pages back from the doublewrite file
};

// Cuts the power at every sync point in every mode; returns how many cuts lost or damaged
// something (and, when `expect_none`, fails the test on the first with its reason).
int CutEverywhere(bool double_write, bool expect_none, Reached* reached) {
  const std::vector<Batch> script = Script();
  const std::vector<State> states = States(script);
  uint64_t syncs = 0;
  {
    sync::FaultFileSystem fs(1);
    EXPECT_OK(sync::CreateDirDurably(&fs, "/data"));
    const uint64_t before = fs.stats().syncs;
    EXPECT_EQ(RunScript(&fs, script, double_write), kBatches);
    syncs = fs.stats().syncs - before;
  }
  EXPECT_GT(syncs, 100u);
  std::printf("%llu sync points x 3 crash modes%s\n", static_cast<unsigned long long>(syncs),
              double_write ? "" : ", no doublewrite file");
  int bad = 0;
  for (sync::CrashMode mode : {sync::CrashMode::kDropUnsynced, sync::CrashMode::kKeepPrefix,
                               sync::CrashMode::kTearLastWrite}) {
    for (uint64_t k = 1; k <= syncs; ++k) {
      const std::string where = std::string("crash at sync ") + std::to_string(k) + " of " +
                                std::to_string(syncs) + ", " + sync::CrashModeName(mode);
      PageFileSpy fs(k * 7 + static_cast<uint64_t>(mode));
      EXPECT_OK(sync::CreateDirDurably(&fs, "/data"));
      fs.CrashAtSync(k, mode);
      const int acked = RunScript(&fs, script, double_write);
      const PageFileSpy::InFlight cut = fs.in_flight();
      if (!cut.types.empty()) ++reached->in_place_writes;
      if (cut.grows && cut.types.contains(btree::PageType::kInternal)) ++reached->split_pages;
      fs.Crash(mode);
      std::string why;
      BtreeRecoveryReport report;
      auto e = OpenBtreeWith(&fs, kDir, Options(), Btree(double_write), &report);
      if (e.ok() && report.doublewrite_restored > 0) ++reached->restored;
      if (!e.ok()) {
        why = "reopen: " + e.status().ToString();
      } else if (Status v = (*e)->Verify(); !v.ok()) {
        why = "verify: " + v.ToString();
      } else {
        const State shown = ScanAll(**e);
        bool matched = false;
        for (size_t p = acked; p < states.size() && !matched; ++p) matched = shown == states[p];
        if (!matched) why = "the state is no batch at or past " + std::to_string(acked);
        if (matched && !(*e)->Put("after", "crash").ok()) why = "no write after the crash";
      }
      if (!why.empty()) {
        ++bad;
        if (expect_none) {
          ADD_FAILURE() << where << ": " << why;
          return bad;
        }
      }
    }
  }
  return bad;
}

TEST(BtreeCrashTest, PowerCutAtEverySyncOfSplitsMergesAndCheckpointsLosesNothing) {
  Reached reached;
  EXPECT_EQ(CutEverywhere(/*double_write=*/true, /*expect_none=*/true, &reached), 0);
  std::printf(
      "cuts with in-place page writes in flight: %d (a split's pages: %d); reopens "
      "restoring from the doublewrite file: %d\n",
      reached.in_place_writes, reached.split_pages, reached.restored);
  // In the middle of checkpoints, and of checkpoints carrying a split's pages.
  EXPECT_GT(reached.in_place_writes, 0);
  EXPECT_GT(reached.split_pages, 0);
  EXPECT_GT(reached.restored, 0);
}

TEST(BtreeCrashTest, WithoutTheDoublewriteFileSomeCutDamagesTheStore) {
  // The run above reaches torn page writes: without their protection it goes red.
  Reached reached;
  const int bad = CutEverywhere(/*double_write=*/false, /*expect_none=*/false, &reached);
  std::printf("%d cuts lost or damaged something\n", bad);
  EXPECT_GT(bad, 0);
}

}  // namespace
}  // namespace kvfs::engines
