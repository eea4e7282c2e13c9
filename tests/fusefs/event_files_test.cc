// An events store's file semantics without a mount (fusefs/event_view.h): FileStore over the
// "events" engine on the fault-injecting file system. Every refused operation and its errno,
// appends as events, racing writers at an expected offset, unlink durable across a power cut,
// the event view (names, sizes, timestamps, event K), and power cuts at every sync point of an
// append workload.
#include <gtest/gtest.h>

#include <barrier>
#include <thread>

#include "engines/engine.h"
#include "engines/events/events.h"
#include "fusefs/event_view.h"
#include "fusefs/file_store.h"
#include "sync/durable.h"
#include "sync/fault_file_system.h"
#include "tests/test_util.h"

namespace kvfs::fusefs {
namespace {

constexpr char kDir[] = "/data/events";
const Caller kUser{1000, 1000, 022};

int Errno(const Status& s) { return s.ok() ? 0 : ErrnoOf(s); }
template <typename T>
int Errno(const Result<T>& r) {
  return r.ok() ? 0 : ErrnoOf(r.status());
}

engines::EngineOptions Options(sync::SyncMode mode = sync::SyncMode::kNone) {
  engines::EngineOptions o;
  o.sync_mode = mode;
  o.segment_size = 64 << 10;
  o.batch_interval = std::chrono::hours(1);
  o.background_work = false;
  return o;
}

Result<std::unique_ptr<FileStore>> OpenOn(sync::FileSystem* fs, bool always = false,
                                          sync::SyncMode mode = sync::SyncMode::kNone) {
  KVFS_ASSIGN_OR_RETURN(auto engine, engines::OpenEngine("events", fs, kDir, Options(mode)));
  FileStoreOptions fo;
  fo.sync_every_mutation = always;
  return FileStore::Open(std::move(engine), fo);
}

class EventFilesTest : public testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(sync::CreateDirDurably(&fs_, "/data"));
    ASSERT_OK_AND_ASSIGN(st_, OpenOn(&fs_));
  }

  std::string ReadAll(uint64_t id) {
    auto attr = st_->GetAttr(id);
    if (!attr.ok()) return "<" + attr.status().ToString() + ">";
    auto data = st_->Read(id, 0, attr->size + 10);
    return data.ok() ? *data : "<" + data.status().ToString() + ">";
  }

  std::vector<DirEntry> List(uint64_t dir, std::string_view after = "") {
    std::vector<DirEntry> out;
    EXPECT_OK(st_->ReadDir(dir, after, false, [&](const DirEntry& e) {
      out.push_back(e);
      return true;
    }));
    return out;
  }

  sync::FaultFileSystem fs_{3};
  std::unique_ptr<FileStore> st_;
};

TEST_F(EventFilesTest, EachWriteAtTheEndIsOneEventAndReadsBackAsTheStream) {
  ASSERT_OK_AND_ASSIGN(Attr f, st_->Create(kRootId, "orders", 0644, kUser));
  ASSERT_OK(st_->Write(f.id, 0, "{\"type\":\"placed\"}\n"));
  ASSERT_OK(st_->Write(f.id, 18, "{\"type\":\"paid\"}\n"));
  ASSERT_OK(st_->Write(f.id, 34, std::string(10000, 'x')));
  EXPECT_EQ(st_->GetAttr(f.id)->size, 10034u);
  EXPECT_EQ(ReadAll(f.id),
            "{\"type\":\"placed\"}\n{\"type\":\"paid\"}\n" + std::string(10000, 'x'));
  EXPECT_EQ(*st_->Read(f.id, 9, 12), "placed\"}\n{\"t");
  engines::EventStore* es = engines::AsEventStore(st_->engine());
  ASSERT_NE(es, nullptr);
  ASSERT_OK_AND_ASSIGN(engines::StreamInfo info, es->Stat(StreamOfFile(f.id)));
  EXPECT_EQ(info.events, 3u);
  EXPECT_EQ(*es->ReadEvent(StreamOfFile(f.id), 1), "{\"type\":\"paid\"}\n");
  // A fresh open reads the same.
  ASSERT_OK(st_->Close());
  st_.reset();
  ASSERT_OK_AND_ASSIGN(st_, OpenOn(&fs_));
  ASSERT_OK_AND_ASSIGN(Attr again, st_->Lookup(kRootId, "orders"));
  EXPECT_EQ(ReadAll(again.id).size(), 10034u);
}

TEST_F(EventFilesTest, EveryOperationAnAppendOnlyFileRefusesIsEpermAndChangesNothing) {
  ASSERT_OK_AND_ASSIGN(Attr f, st_->Create(kRootId, "s", 0644, kUser));
  ASSERT_OK(st_->Write(f.id, 0, "abc"));
  EXPECT_EQ(Errno(st_->Write(f.id, 0, "X")), EPERM) << "overwrite";
  EXPECT_EQ(Errno(st_->Write(f.id, 2, "X")), EPERM) << "inside";
  EXPECT_EQ(Errno(st_->Write(f.id, 4, "X")), EPERM) << "past the end (a hole)";
  AttrChange shrink;
  shrink.size = 1;
  EXPECT_EQ(Errno(st_->SetAttr(f.id, shrink)), EPERM) << "truncate";
  AttrChange grow;
  grow.size = 10;
  EXPECT_EQ(Errno(st_->SetAttr(f.id, grow)), EPERM) << "extend";
  AttrChange same;
  same.size = 3;
  EXPECT_OK(st_->SetAttr(f.id, same));  // not a change
  AttrChange chmod;
  chmod.mode = 0600;
  EXPECT_OK(st_->SetAttr(f.id, chmod));  // metadata is not the stream
  EXPECT_EQ(Errno(st_->Rename(kRootId, "s", kRootId, "t", 0)), EPERM) << "rename";
  ASSERT_OK(st_->Mkdir(kRootId, "d", 0755, kUser));
  ASSERT_OK_AND_ASSIGN(Attr d, st_->Lookup(kRootId, "d"));
  EXPECT_EQ(Errno(st_->Rename(kRootId, "s", d.id, "s", 0)), EPERM) << "move";
  ASSERT_OK(st_->Symlink(kRootId, "link", "s", kUser));
  EXPECT_EQ(Errno(st_->Rename(kRootId, "link", kRootId, "s", 0)), EPERM) << "rename over";
  EXPECT_EQ(Errno(st_->Rename(kRootId, "link", kRootId, "s", FileStore::kRenameExchange)), EPERM);
  EXPECT_EQ(Errno(st_->Link(f.id, kRootId, "second name")), EPERM) << "link, as on ext4";
  EXPECT_EQ(st_->GetAttr(f.id)->nlink, 1u);
  EXPECT_EQ(Errno(st_->Lookup(kRootId, "second name")), ENOENT);
  EXPECT_EQ(ReadAll(f.id), "abc");
  EXPECT_EQ(st_->GetAttr(f.id)->size, 3u);
  // Directories holding streams move freely: a stream is its file's id, not its path.
  ASSERT_OK_AND_ASSIGN(Attr inner, st_->Create(d.id, "inner", 0644, kUser));
  ASSERT_OK(st_->Write(inner.id, 0, "in d"));
  ASSERT_OK(st_->Rename(kRootId, "d", kRootId, "d2", 0));
  ASSERT_OK_AND_ASSIGN(Attr d2, st_->Lookup(kRootId, "d2"));
  ASSERT_OK_AND_ASSIGN(Attr moved, st_->Lookup(d2.id, "inner"));
  EXPECT_EQ(ReadAll(moved.id), "in d");
}

TEST_F(EventFilesTest, ALargestEventIsTheEnginesAndABiggerWriteIsEfbig) {
  ASSERT_OK_AND_ASSIGN(Attr f, st_->Create(kRootId, "big", 0644, kUser));
  ASSERT_OK(st_->Write(f.id, 0, std::string(engines::kMaxEventSize, 'a')));
  EXPECT_EQ(
      Errno(st_->Write(f.id, engines::kMaxEventSize, std::string(engines::kMaxEventSize + 1, 'b'))),
      EFBIG);
  EXPECT_EQ(st_->GetAttr(f.id)->size, engines::kMaxEventSize);
}

// Two writers read the end, then both pwrite there: one wins, the other gets EPERM and its
// bytes are nowhere; round after round.
TEST_F(EventFilesTest, WritersRacingAtTheEndTheyReadNeverBothLand) {
  ASSERT_OK_AND_ASSIGN(Attr f, st_->Create(kRootId, "race", 0644, kUser));
  constexpr int kRounds = 40;
  std::barrier point(2);
  std::atomic<int> wins{0};
  std::vector<std::thread> writers;
  for (int t = 0; t < 2; ++t) {
    writers.emplace_back([&, t] {
      for (int round = 0; round < kRounds; ++round) {
        const uint64_t end = st_->GetAttr(f.id)->size;
        point.arrive_and_wait();
        auto w = st_->Write(f.id, end, std::to_string(round) + "/" + std::to_string(t) + ";");
        if (w.ok()) {
          ++wins;
        } else {
          EXPECT_EQ(ErrnoOf(w.status()), EPERM) << w.status().ToString();
        }
        point.arrive_and_wait();
      }
    });
  }
  for (auto& w : writers) w.join();
  EXPECT_EQ(wins.load(), kRounds);
  // Exactly one event per round, in round order.
  const std::string all = ReadAll(f.id);
  std::vector<std::string> events;
  for (size_t pos = 0, end; (end = all.find(';', pos)) != std::string::npos; pos = end + 1) {
    events.push_back(all.substr(pos, end - pos));
  }
  ASSERT_EQ(events.size(), size_t{kRounds}) << all;
  for (int round = 0; round < kRounds; ++round) {
    EXPECT_EQ(events[round].substr(0, events[round].find('/')), std::to_string(round)) << all;
  }
}

TEST_F(EventFilesTest, UnlinkDeletesTheStreamDurablyInTheSameRecord) {
  ASSERT_OK_AND_ASSIGN(Attr f, st_->Create(kRootId, "gone", 0644, kUser));
  ASSERT_OK(st_->Write(f.id, 0, "one"));
  ASSERT_OK(st_->Write(f.id, 3, "two"));
  ASSERT_OK_AND_ASSIGN(Attr k, st_->Create(kRootId, "kept", 0644, kUser));
  ASSERT_OK(st_->Write(k.id, 0, "kept"));
  st_->Forget(f.id, 1);                     // the kernel no longer holds it
  ASSERT_OK(st_->Unlink(kRootId, "gone"));  // so the stream goes with the name
  engines::EventStore* es = engines::AsEventStore(st_->engine());
  EXPECT_TRUE(es->Stat(StreamOfFile(f.id)).status().IsNotFound());
  ASSERT_OK(st_->SyncDir(kRootId));
  st_.reset();  // the power goes
  fs_.Crash(sync::CrashMode::kDropUnsynced);
  ASSERT_OK_AND_ASSIGN(st_, OpenOn(&fs_));
  es = engines::AsEventStore(st_->engine());
  EXPECT_EQ(Errno(st_->Lookup(kRootId, "gone")), ENOENT);
  EXPECT_TRUE(es->Stat(StreamOfFile(f.id)).status().IsNotFound());
  std::vector<std::string> streams;
  ASSERT_OK(es->ListStreams([&](const engines::StreamInfo& i) {
    streams.push_back(i.name);
    return true;
  }));
  EXPECT_EQ(streams, std::vector<std::string>{StreamOfFile(k.id)});
  EXPECT_OK(st_->engine()->Verify());
}

TEST_F(EventFilesTest, AStreamUnlinkedWhileHeldLivesUntilForgottenThenGoes) {
  ASSERT_OK_AND_ASSIGN(Attr f, st_->Create(kRootId, "held", 0644, kUser));  // +1 ref
  ASSERT_OK(st_->Write(f.id, 0, "still here"));
  ASSERT_OK(st_->Unlink(kRootId, "held"));
  EXPECT_EQ(ReadAll(f.id), "still here");
  ASSERT_OK(st_->Write(f.id, 10, "!"));
  engines::EventStore* es = engines::AsEventStore(st_->engine());
  EXPECT_EQ(es->Stat(StreamOfFile(f.id))->events, 2u);
  st_->Forget(f.id, 1);
  EXPECT_TRUE(es->Stat(StreamOfFile(f.id)).status().IsNotFound());
}

TEST_F(EventFilesTest, TheViewShowsEachStreamsEventsAsNumberedReadOnlyFiles) {
  ASSERT_OK(st_->Mkdir(kRootId, "orders", 0755, kUser));
  ASSERT_OK_AND_ASSIGN(Attr dir, st_->Lookup(kRootId, "orders"));
  ASSERT_OK_AND_ASSIGN(Attr f, st_->Create(dir.id, "2026", 0640, kUser));
  for (int i = 0; i < 12; ++i) {
    const std::string ev = "event " + std::to_string(i) + "\n";
    ASSERT_OK(st_->Write(f.id, st_->GetAttr(f.id)->size, ev));
  }
  // Hidden from the root's listing, reachable by name.
  for (const DirEntry& e : List(kRootId)) EXPECT_NE(e.name, kEventViewName);
  ASSERT_OK_AND_ASSIGN(Attr view, st_->Lookup(kRootId, kEventViewName));
  EXPECT_EQ(view.type, NodeType::kDirectory);
  EXPECT_TRUE(EventView::IsViewId(view.id));
  std::vector<DirEntry> top = List(view.id);
  ASSERT_EQ(top.size(), 1u);
  EXPECT_EQ(top[0].name, "orders");
  ASSERT_OK_AND_ASSIGN(Attr vdir, st_->Lookup(view.id, "orders"));
  ASSERT_OK_AND_ASSIGN(Attr vstream, st_->Lookup(vdir.id, "2026"));
  EXPECT_EQ(vstream.type, NodeType::kDirectory);
  EXPECT_EQ(vstream.size, 12u) << "a stream's view directory's size is its event count";
  EXPECT_EQ(vstream.mode, 0550u);
  std::vector<DirEntry> events = List(vstream.id);
  ASSERT_EQ(events.size(), 12u);
  EXPECT_EQ(events[0].name, "00000000000000000000");
  EXPECT_EQ(events[11].name, "00000000000000000011");
  EXPECT_EQ(events[10].attr.size, 9u);
  EXPECT_EQ(events[3].attr.mode, 0440u);
  engines::EventStore* es = engines::AsEventStore(st_->engine());
  ASSERT_OK_AND_ASSIGN(auto infos, es->ListEvents(StreamOfFile(f.id), 7, 1));
  EXPECT_EQ(events[7].attr.mtime_ns, infos[0].timestamp_ns);
  // Listing resumes after a name.
  EXPECT_EQ(List(vstream.id, "00000000000000000009").size(), 2u);
  // Event K by name, padded or not.
  ASSERT_OK_AND_ASSIGN(Attr e7, st_->Lookup(vstream.id, "00000000000000000007"));
  EXPECT_EQ(*st_->Read(e7.id, 0, 100), "event 7\n");
  EXPECT_EQ(*st_->Read(e7.id, 6, 100), "7\n");
  ASSERT_OK_AND_ASSIGN(Attr e11, st_->Lookup(vstream.id, "11"));
  EXPECT_EQ(*st_->Read(e11.id, 0, 100), "event 11\n");
  EXPECT_EQ(Errno(st_->Lookup(vstream.id, "12")), ENOENT);
  EXPECT_EQ(Errno(st_->Lookup(vstream.id, "x")), ENOENT);
  // The next append shows up at once.
  ASSERT_OK(st_->Write(f.id, st_->GetAttr(f.id)->size, "event 12\n"));
  ASSERT_OK_AND_ASSIGN(Attr e12, st_->Lookup(vstream.id, "12"));
  EXPECT_EQ(*st_->Read(e12.id, 0, 100), "event 12\n");
  EXPECT_EQ(st_->GetAttr(vstream.id)->size, 13u);
  // Read-only, every way.
  EXPECT_EQ(Errno(st_->Write(e7.id, 0, "x")), EROFS);
  EXPECT_EQ(Errno(st_->Create(vstream.id, "new", 0644, kUser)), EROFS);
  EXPECT_EQ(Errno(st_->Mkdir(view.id, "new", 0755, kUser)), EROFS);
  EXPECT_EQ(Errno(st_->Unlink(vstream.id, "00000000000000000007")), EROFS);
  AttrChange chmod;
  chmod.mode = 0777;
  EXPECT_EQ(Errno(st_->SetAttr(e7.id, chmod)), EROFS);
  EXPECT_EQ(Errno(st_->SetXattr(e7.id, "user.a", "b", 0)), EROFS);
  EXPECT_EQ(Errno(st_->Link(e7.id, kRootId, "an event's second name")), EROFS);
  EXPECT_EQ(Errno(st_->GetXattr(e7.id, "user.a")), ENODATA);
  // The name is reserved at the root, not below it.
  EXPECT_EQ(Errno(st_->Create(kRootId, kEventViewName, 0644, kUser)), EEXIST);
  EXPECT_EQ(Errno(st_->Mkdir(kRootId, kEventViewName, 0755, kUser)), EEXIST);
  EXPECT_EQ(Errno(st_->Rmdir(kRootId, kEventViewName)), EPERM);
  ASSERT_OK(st_->Mkdir(kRootId, "m", 0755, kUser));
  EXPECT_EQ(Errno(st_->Rename(kRootId, "m", kRootId, kEventViewName, 0)), EPERM);
  ASSERT_OK_AND_ASSIGN(Attr sym, st_->Symlink(kRootId, "sym", "m", kUser));
  EXPECT_EQ(Errno(st_->Link(sym.id, kRootId, kEventViewName)), EEXIST);
  EXPECT_OK(st_->Link(sym.id, kRootId, "sym2"));  // what is not a stream takes names
  EXPECT_OK(st_->Create(dir.id, kEventViewName, 0644, kUser));
  // Forgotten view nodes are dropped; the ones still held stay.
  st_->Forget(e12.id, 1);
  EXPECT_EQ(Errno(st_->GetAttr(e12.id)), ENOENT);
  EXPECT_OK(st_->GetAttr(e7.id));
}

// Power cuts at every sync point of appends from two files (fdatasync now and then): after
// each, every write acknowledged durable is there once, in order, nothing else, no gap, and the
// file's size is its stream's.
TEST(EventFilesPowerCut, EveryAcknowledgedAppendSurvivesOnceInOrder) {
  auto run = [](sync::FaultFileSystem* fs, std::vector<std::string>* written,
                std::vector<size_t>* durable) {
    auto st = OpenOn(fs, /*always=*/false, sync::SyncMode::kBatch);
    if (!st.ok()) return;
    std::vector<uint64_t> ids;
    for (const char* name : {"a", "b"}) {
      auto f = (*st)->Create(kRootId, name, 0644, kUser);
      if (!f.ok()) return;
      ids.push_back(f->id);
    }
    if (!(*st)->SyncDir(kRootId).ok()) return;
    std::vector<uint64_t> size(2, 0);
    for (int i = 0; i < 40; ++i) {
      const int which = i % 3 == 0 ? 1 : 0;
      const std::string ev = std::to_string(i) + std::string(i * 37 % 500, '.') + "\n";
      written[which].push_back(ev);
      if (!(*st)->Write(ids[which], size[which], ev).ok()) return;
      size[which] += ev.size();
      if (i % 5 == 4) {
        if (!(*st)->SyncFile(ids[which], /*datasync=*/true).ok()) return;
        for (int k = 0; k < 2; ++k) (*durable)[k] = written[k].size();
      }
    }
    (*st)->Close().PermitUnchecked();
  };
  uint64_t syncs = 0;
  {
    sync::FaultFileSystem fs(1);
    ASSERT_OK(sync::CreateDirDurably(&fs, "/data"));
    const uint64_t before = fs.stats().syncs;
    std::vector<std::string> written[2];
    std::vector<size_t> durable(2, 0);
    run(&fs, written, &durable);
    syncs = fs.stats().syncs - before;
  }
  ASSERT_GT(syncs, 8u);
  for (auto crash : {sync::CrashMode::kDropUnsynced, sync::CrashMode::kKeepPrefix,
                     sync::CrashMode::kTearLastWrite}) {
    for (uint64_t k = 1; k <= syncs; ++k) {
      SCOPED_TRACE(std::string(sync::CrashModeName(crash)) + ", power cut at sync " +
                   std::to_string(k) + " of " + std::to_string(syncs));
      sync::FaultFileSystem fs(k);
      ASSERT_OK(sync::CreateDirDurably(&fs, "/data"));
      fs.CrashAtSync(k, crash);
      std::vector<std::string> written[2];
      std::vector<size_t> durable(2, 0);
      run(&fs, written, &durable);
      fs.Crash(crash);
      ASSERT_OK_AND_ASSIGN(auto st, OpenOn(&fs));
      for (int w = 0; w < 2; ++w) {
        auto f = st->Lookup(kRootId, w == 0 ? "a" : "b");
        std::string got;
        if (f.ok()) got = *st->Read(f->id, 0, 1 << 20);
        std::string expect;
        size_t n = 0;
        while (n < written[w].size() && expect.size() < got.size()) expect += written[w][n++];
        EXPECT_EQ(got, expect) << "file " << w << " holds what was written, in order";
        EXPECT_GE(n, durable[w]) << "file " << w << " lost an acknowledged append";
        if (f.ok()) {
          auto info = engines::AsEventStore(st->engine())->Stat(StreamOfFile(f->id));
          EXPECT_EQ(info.ok() ? info->bytes : 0, f->size) << "the node's size is its stream's";
          EXPECT_EQ(info.ok() ? info->events : 0, n) << "one event per write";
        }
      }
      EXPECT_OK(st->engine()->Verify());
      if (HasFailure()) return;
    }
  }
}

}  // namespace
}  // namespace kvfs::fusefs
