// The file layer without a mount: FileStore over every engine, on the fault-injecting file
// system, so power cuts and disk faults can be modelled.
#include "fusefs/file_store.h"

#include <gtest/gtest.h>
#include <sys/xattr.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "engines/engine.h"
#include "sync/durable.h"
#include "sync/fault_file_system.h"
#include "tests/test_util.h"

namespace kvfs::fusefs {
namespace {

constexpr char kDir[] = "/data/store";
const Caller kUser{1000, 1000, 022};

class FileStoreTest : public testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { ASSERT_OK(sync::CreateDirDurably(&fs_, "/data")); }

  Result<std::unique_ptr<FileStore>> Open(
      sync::SyncMode mode = sync::SyncMode::kNone, bool always = false,
      uint32_t batch_records = 1000,
      std::chrono::milliseconds batch_interval = std::chrono::milliseconds(10)) {
    engines::EngineOptions o;
    o.sync_mode = mode;
    o.batch_records = batch_records;
    o.batch_interval = batch_interval;
    o.segment_size = 1 << 20;
    o.background_work = false;
    KVFS_ASSIGN_OR_RETURN(auto engine, engines::OpenEngine(GetParam(), &fs_, kDir, o));
    FileStoreOptions fo;
    fo.sync_every_mutation = always;
    return FileStore::Open(std::move(engine), fo);
  }

  // Reads a whole file through the store.
  std::string ReadAll(FileStore& st, uint64_t id) {
    auto attr = st.GetAttr(id);
    EXPECT_TRUE(attr.ok()) << attr.status().ToString();
    if (!attr.ok()) return "";
    auto data = st.Read(id, 0, attr->size + 10);
    EXPECT_TRUE(data.ok()) << data.status().ToString();
    return data.ok() ? *data : "";
  }

  std::vector<std::string> List(FileStore& st, uint64_t dir, std::string_view after = "") {
    std::vector<std::string> names;
    Status s = st.ReadDir(dir, after, false, [&](const DirEntry& e) {
      names.push_back(e.name);
      return true;
    });
    EXPECT_OK(s);
    return names;
  }

  // Chunk keys of every file, once the reclaimer has deleted those of removed files.
  uint64_t CountChunkKeys(FileStore& st) {
    EXPECT_OK(st.WaitForPurges());
    uint64_t n = 0;
    engines::ScanOptions so;
    so.prefix = "D";
    so.keys_only = true;
    EXPECT_OK(st.engine()->Scan(so, [&](std::string_view, std::string_view) {
      ++n;
      return true;
    }));
    return n;
  }

  // Bytes held by every file under `dir`, as the space limit counts them.
  uint64_t UsedBytes(const std::string& dir = kDir) {
    uint64_t total = 0;
    auto names = fs_.ListDir(dir);
    if (!names.ok()) return 0;
    for (const std::string& n : *names) {
      const std::string p = dir + "/" + n;
      if (*fs_.IsDirectory(p)) {
        total += UsedBytes(p);
      } else {
        total += *fs_.FileSize(p);
      }
    }
    return total;
  }

  sync::FaultFileSystem fs_{11};
};

TEST_P(FileStoreTest, AFreshStoreHasAnEmptyRootDirectory) {
  ASSERT_OK_AND_ASSIGN(auto st, Open());
  ASSERT_OK_AND_ASSIGN(Attr root, st->GetAttr(kRootId));
  EXPECT_EQ(root.type, NodeType::kDirectory);
  EXPECT_EQ(root.mode, 0755u);
  EXPECT_TRUE(List(*st, kRootId).empty());
}

TEST_P(FileStoreTest, CreateWriteReadAndAttributes) {
  ASSERT_OK_AND_ASSIGN(auto st, Open());
  ASSERT_OK_AND_ASSIGN(Attr f, st->Create(kRootId, "hello", 0666, kUser));
  EXPECT_EQ(f.mode, 0644u);  // umask applied
  EXPECT_EQ(f.uid, 1000u);
  EXPECT_EQ(f.gid, 1000u);
  EXPECT_EQ(f.size, 0u);
  ASSERT_OK_AND_ASSIGN(size_t n, st->Write(f.id, 0, "hello world"));
  EXPECT_EQ(n, 11u);
  EXPECT_EQ(ReadAll(*st, f.id), "hello world");
  ASSERT_OK_AND_ASSIGN(Attr again, st->Lookup(kRootId, "hello"));
  EXPECT_EQ(again.id, f.id);
  EXPECT_EQ(again.size, 11u);
  ASSERT_OK_AND_ASSIGN(std::string part, st->Read(f.id, 6, 100));
  EXPECT_EQ(part, "world");
  ASSERT_OK_AND_ASSIGN(std::string past, st->Read(f.id, 50, 10));
  EXPECT_EQ(past, "");
}

TEST_P(FileStoreTest, HolesReadAsZerosInlineAndChunked) {
  ASSERT_OK_AND_ASSIGN(auto st, Open());
  ASSERT_OK_AND_ASSIGN(Attr small, st->Create(kRootId, "small", 0644, kUser));
  ASSERT_OK(st->Write(small.id, 100, "x"));
  EXPECT_EQ(ReadAll(*st, small.id), std::string(100, '\0') + "x");

  ASSERT_OK_AND_ASSIGN(Attr big, st->Create(kRootId, "big", 0644, kUser));
  const uint64_t far = 3 * kChunkSize + 17;
  ASSERT_OK(st->Write(big.id, far, "tail"));
  ASSERT_OK_AND_ASSIGN(Attr a, st->GetAttr(big.id));
  EXPECT_EQ(a.size, far + 4);
  std::string expect(far, '\0');
  expect += "tail";
  EXPECT_EQ(ReadAll(*st, big.id), expect);
  EXPECT_EQ(CountChunkKeys(*st), 1u);  // only the chunk written exists
}

TEST_P(FileStoreTest, RandomWritesAndTruncatesMatchAModel) {
  const uint64_t seed = test::TestSeed();
  std::mt19937_64 rng(seed);
  ASSERT_OK_AND_ASSIGN(auto st, Open());
  ASSERT_OK_AND_ASSIGN(Attr f, st->Create(kRootId, "f", 0644, kUser));
  std::string model;
  for (int i = 0; i < 300; ++i) {
    const int op = static_cast<int>(rng() % 10);
    if (op < 7) {
      // Offsets around the inline limit and chunk boundaries, where the layout changes shape.
      const uint64_t anchors[] = {0, kInlineMax - 3, kChunkSize - 5, 2 * kChunkSize,
                                  5 * kChunkSize};
      const uint64_t off = anchors[rng() % 5] + rng() % 64;
      std::string data(1 + rng() % (rng() % 4 == 0 ? 3 * kChunkSize : 200), '\0');
      for (char& c : data) c = static_cast<char>('a' + rng() % 26);
      ASSERT_OK(st->Write(f.id, off, data));
      if (model.size() < off + data.size()) model.resize(off + data.size(), '\0');
      model.replace(off, data.size(), data);
    } else {
      const uint64_t sizes[] = {
          0, kInlineMax, kInlineMax + 1, kChunkSize + 3, model.size() / 2, model.size() + 1000};
      const uint64_t size = sizes[rng() % 6];
      AttrChange c;
      c.size = size;
      ASSERT_OK(st->SetAttr(f.id, c));
      model.resize(size, '\0');
    }
    ASSERT_EQ(ReadAll(*st, f.id), model) << "step " << i << " seed " << seed;
  }
  ASSERT_OK(st->Close());
  ASSERT_OK_AND_ASSIGN(auto st2, Open());
  ASSERT_OK_AND_ASSIGN(Attr again, st2->Resolve("f"));
  EXPECT_EQ(ReadAll(*st2, again.id), model) << "seed " << seed;
}

TEST_P(FileStoreTest, ShrinkingDeletesChunksPastTheEnd) {
  ASSERT_OK_AND_ASSIGN(auto st, Open());
  ASSERT_OK_AND_ASSIGN(Attr f, st->Create(kRootId, "f", 0644, kUser));
  ASSERT_OK(st->Write(f.id, 0, std::string(4 * kChunkSize, 'z')));
  EXPECT_EQ(CountChunkKeys(*st), 4u);
  AttrChange c;
  c.size = kChunkSize + 1;
  ASSERT_OK(st->SetAttr(f.id, c));
  EXPECT_EQ(CountChunkKeys(*st), 2u);
  c.size = 10;  // small again: back inline
  ASSERT_OK(st->SetAttr(f.id, c));
  EXPECT_EQ(CountChunkKeys(*st), 0u);
  EXPECT_EQ(ReadAll(*st, f.id), std::string(10, 'z'));
  c.size = kChunkSize * 2;  // extending leaves a hole, not stale bytes
  ASSERT_OK(st->SetAttr(f.id, c));
  EXPECT_EQ(ReadAll(*st, f.id), std::string(10, 'z') + std::string(kChunkSize * 2 - 10, '\0'));
}

TEST_P(FileStoreTest, DirectoriesListInOrderAndResumeAfterAName) {
  ASSERT_OK_AND_ASSIGN(auto st, Open());
  ASSERT_OK_AND_ASSIGN(Attr d, st->Mkdir(kRootId, "d", 0777, kUser));
  EXPECT_EQ(d.mode, 0755u);
  for (const char* n : {"b", "a", "c", "a.b"}) ASSERT_OK(st->Create(d.id, n, 0644, kUser));
  ASSERT_OK_AND_ASSIGN(Attr sub, st->Mkdir(d.id, "sub", 0755, kUser));
  ASSERT_OK(st->Create(sub.id, "deep", 0644, kUser));
  EXPECT_EQ(List(*st, d.id), (std::vector<std::string>{"a", "a.b", "b", "c", "sub"}));
  EXPECT_EQ(List(*st, d.id, "a.b"), (std::vector<std::string>{"b", "c", "sub"}));
  // A name removed between calls does not disturb the cursor.
  ASSERT_OK(st->Unlink(d.id, "b"));
  EXPECT_EQ(List(*st, d.id, "b"), (std::vector<std::string>{"c", "sub"}));
  EXPECT_EQ(List(*st, kRootId), (std::vector<std::string>{"d"}));
}

TEST_P(FileStoreTest, ErrnosForBadRequests) {
  ASSERT_OK_AND_ASSIGN(auto st, Open());
  ASSERT_OK_AND_ASSIGN(Attr d, st->Mkdir(kRootId, "d", 0755, kUser));
  ASSERT_OK_AND_ASSIGN(Attr f, st->Create(d.id, "f", 0644, kUser));
  EXPECT_EQ(ErrnoOf(st->Lookup(kRootId, "nope").status()), ENOENT);
  EXPECT_EQ(ErrnoOf(st->Create(d.id, "f", 0644, kUser).status()), EEXIST);
  EXPECT_EQ(ErrnoOf(st->Mkdir(kRootId, "d", 0755, kUser).status()), EEXIST);
  EXPECT_EQ(ErrnoOf(st->Create(f.id, "x", 0644, kUser).status()), ENOTDIR);
  EXPECT_EQ(ErrnoOf(st->Lookup(f.id, "x").status()), ENOTDIR);
  EXPECT_EQ(ErrnoOf(st->Create(kRootId, std::string(256, 'n'), 0644, kUser).status()),
            ENAMETOOLONG);
  EXPECT_OK(st->Create(kRootId, std::string(255, 'n'), 0644, kUser));
  EXPECT_EQ(ErrnoOf(st->Unlink(kRootId, "d")), EISDIR);
  EXPECT_EQ(ErrnoOf(st->Rmdir(kRootId, "d")), ENOTEMPTY);
  EXPECT_EQ(ErrnoOf(st->Rmdir(d.id, "f")), ENOTDIR);
  EXPECT_EQ(ErrnoOf(st->Unlink(kRootId, "nope")), ENOENT);
  EXPECT_EQ(ErrnoOf(st->Read(d.id, 0, 10).status()), EISDIR);
  EXPECT_EQ(ErrnoOf(st->Write(d.id, 0, "x").status()), EISDIR);
  EXPECT_EQ(ErrnoOf(st->Write(f.id, kMaxFileSize, "x").status()), EFBIG);
  AttrChange c;
  c.size = 0;
  EXPECT_EQ(ErrnoOf(st->SetAttr(d.id, c).status()), EISDIR);
  EXPECT_EQ(ErrnoOf(st->ReadLink(f.id).status()), EINVAL);
  EXPECT_EQ(ErrnoOf(st->Resolve("d/f/g").status()), ENOTDIR);
  ASSERT_OK(st->Unlink(d.id, "f"));
  EXPECT_OK(st->Rmdir(kRootId, "d"));
}

TEST_P(FileStoreTest, RenameMovesFilesAndWholeDirectories) {
  ASSERT_OK_AND_ASSIGN(auto st, Open());
  ASSERT_OK_AND_ASSIGN(Attr a, st->Mkdir(kRootId, "a", 0755, kUser));
  ASSERT_OK_AND_ASSIGN(Attr b, st->Mkdir(a.id, "b", 0755, kUser));
  ASSERT_OK_AND_ASSIGN(Attr f, st->Create(b.id, "f", 0644, kUser));
  ASSERT_OK(st->Write(f.id, 0, std::string(200000, 'q')));
  ASSERT_OK(st->Mkdir(kRootId, "z", 0755, kUser));
  EXPECT_EQ(ErrnoOf(st->Rename(kRootId, "a", kRootId, "z/moved", 0)), EINVAL);  // not a name
  ASSERT_OK_AND_ASSIGN(Attr z, st->Lookup(kRootId, "z"));
  ASSERT_OK(st->Rename(kRootId, "a", z.id, "moved", 0));
  EXPECT_EQ(ErrnoOf(st->Resolve("a").status()), ENOENT);
  ASSERT_OK_AND_ASSIGN(Attr moved_f, st->Resolve("z/moved/b/f"));
  EXPECT_EQ(moved_f.id, f.id);
  // Ids the kernel holds follow the move.
  EXPECT_EQ(ReadAll(*st, f.id), std::string(200000, 'q'));
  ASSERT_OK(st->Create(b.id, "new", 0644, kUser));
  ASSERT_OK(st->Resolve("z/moved/b/new"));
  // Into itself.
  EXPECT_EQ(ErrnoOf(st->Rename(kRootId, "z", b.id, "loop", 0)), EINVAL);
  // Reopen: the move is in the store, not only in memory.
  ASSERT_OK(st->Close());
  ASSERT_OK_AND_ASSIGN(auto st2, Open());
  ASSERT_OK_AND_ASSIGN(Attr again, st2->Resolve("z/moved/b/f"));
  EXPECT_EQ(ReadAll(*st2, again.id), std::string(200000, 'q'));
}

TEST_P(FileStoreTest, RenameReplacesFollowingRename2) {
  ASSERT_OK_AND_ASSIGN(auto st, Open());
  ASSERT_OK_AND_ASSIGN(Attr x, st->Create(kRootId, "x", 0644, kUser));
  ASSERT_OK(st->Write(x.id, 0, "X"));
  ASSERT_OK_AND_ASSIGN(Attr y, st->Create(kRootId, "y", 0644, kUser));
  ASSERT_OK(st->Write(y.id, 0, std::string(100000, 'Y')));
  ASSERT_OK_AND_ASSIGN(Attr d, st->Mkdir(kRootId, "d", 0755, kUser));
  ASSERT_OK(st->Mkdir(kRootId, "e", 0755, kUser));
  ASSERT_OK(st->Create(d.id, "in", 0644, kUser));

  EXPECT_EQ(ErrnoOf(st->Rename(kRootId, "x", kRootId, "y", FileStore::kRenameNoReplace)), EEXIST);
  EXPECT_EQ(ErrnoOf(st->Rename(kRootId, "x", kRootId, "d", 0)), EISDIR);
  EXPECT_EQ(ErrnoOf(st->Rename(kRootId, "d", kRootId, "x", 0)), ENOTDIR);
  EXPECT_EQ(ErrnoOf(st->Rename(kRootId, "e", kRootId, "d", 0)), ENOTEMPTY);
  EXPECT_EQ(ErrnoOf(st->Rename(kRootId, "nope", kRootId, "q", 0)), ENOENT);
  EXPECT_EQ(ErrnoOf(st->Rename(kRootId, "x", kRootId, "nope", FileStore::kRenameExchange)), ENOENT);

  // Exchange two files, then a file and a directory.
  ASSERT_OK(st->Rename(kRootId, "x", kRootId, "y", FileStore::kRenameExchange));
  EXPECT_EQ(st->Resolve("x")->id, y.id);
  EXPECT_EQ(st->Resolve("y")->id, x.id);
  ASSERT_OK(st->Rename(kRootId, "x", kRootId, "d", FileStore::kRenameExchange));
  EXPECT_EQ(st->Resolve("x")->id, d.id);
  EXPECT_OK(st->Resolve("x/in"));
  EXPECT_EQ(st->Resolve("d")->id, y.id);

  // Plain replace of a file drops the old file's data (nobody holds it after Forget).
  st->Forget(x.id, 100);
  st->Forget(y.id, 100);
  ASSERT_OK(st->Rename(kRootId, "y", kRootId, "d", 0));  // "X" replaces the 100000-byte file
  EXPECT_EQ(CountChunkKeys(*st), 0u);
  ASSERT_OK_AND_ASSIGN(Attr dd, st->Resolve("d"));
  EXPECT_EQ(ReadAll(*st, dd.id), "X");
  // An empty directory may be replaced by a directory.
  ASSERT_OK(st->Rename(kRootId, "x", kRootId, "e", 0));
  EXPECT_OK(st->Resolve("e/in"));
}

TEST_P(FileStoreTest, AnUnlinkedFileStaysReadableUntilForgotten) {
  ASSERT_OK_AND_ASSIGN(auto st, Open());
  ASSERT_OK_AND_ASSIGN(Attr f, st->Create(kRootId, "f", 0644, kUser));
  ASSERT_OK(st->Write(f.id, 0, std::string(150000, 'o')));
  ASSERT_OK(st->Unlink(kRootId, "f"));
  EXPECT_EQ(ErrnoOf(st->Lookup(kRootId, "f").status()), ENOENT);
  EXPECT_EQ(ReadAll(*st, f.id), std::string(150000, 'o'));
  ASSERT_OK(st->Write(f.id, 150000, "more"));  // still writable, as on a local disk
  EXPECT_EQ(st->GetAttr(f.id)->size, 150004u);
  EXPECT_EQ(st->stats().orphans, 1u);
  EXPECT_GT(CountChunkKeys(*st), 0u);
  st->Forget(f.id, 1);
  EXPECT_EQ(CountChunkKeys(*st), 0u);
  EXPECT_EQ(ErrnoOf(st->GetAttr(f.id).status()), ENOENT);
}

TEST_P(FileStoreTest, OrphansLeftByADeadDaemonArePurgedAtOpen) {
  {
    ASSERT_OK_AND_ASSIGN(auto st, Open());
    ASSERT_OK_AND_ASSIGN(Attr f, st->Create(kRootId, "f", 0644, kUser));
    ASSERT_OK(st->Write(f.id, 0, std::string(150000, 'o')));
    ASSERT_OK(st->Unlink(kRootId, "f"));
    ASSERT_OK(st->Close());  // without Forget: the daemon stopped while the file was open
  }
  ASSERT_OK_AND_ASSIGN(auto st, Open());
  EXPECT_EQ(CountChunkKeys(*st), 0u);
  engines::ScanOptions so;
  so.prefix = "O";
  int orphans = 0;
  ASSERT_OK(st->engine()->Scan(so, [&](std::string_view, std::string_view) {
    ++orphans;
    return true;
  }));
  EXPECT_EQ(orphans, 0);
}

TEST_P(FileStoreTest, SymlinksAndXattrs) {
  ASSERT_OK_AND_ASSIGN(auto st, Open());
  ASSERT_OK_AND_ASSIGN(Attr l, st->Symlink(kRootId, "l", "../target/x", kUser));
  EXPECT_EQ(l.type, NodeType::kSymlink);
  EXPECT_EQ(l.size, 11u);
  EXPECT_EQ(*st->ReadLink(l.id), "../target/x");
  EXPECT_EQ(ErrnoOf(st->Read(l.id, 0, 10).status()), EINVAL);

  ASSERT_OK_AND_ASSIGN(Attr f, st->Create(kRootId, "f", 0644, kUser));
  EXPECT_EQ(ErrnoOf(st->GetXattr(f.id, "user.a").status()), ENODATA);
  EXPECT_EQ(ErrnoOf(st->SetXattr(f.id, "user.a", "1", XATTR_REPLACE)), ENODATA);
  ASSERT_OK(st->SetXattr(f.id, "user.a", "1", XATTR_CREATE));
  EXPECT_EQ(ErrnoOf(st->SetXattr(f.id, "user.a", "2", XATTR_CREATE)), EEXIST);
  ASSERT_OK(st->SetXattr(f.id, "user.b", std::string(1000, 'b'), 0));
  EXPECT_EQ(*st->GetXattr(f.id, "user.a"), "1");
  EXPECT_EQ(*st->ListXattr(f.id), (std::vector<std::string>{"user.a", "user.b"}));
  ASSERT_OK(st->RemoveXattr(f.id, "user.a"));
  EXPECT_EQ(ErrnoOf(st->RemoveXattr(f.id, "user.a")), ENODATA);
  EXPECT_EQ(ErrnoOf(st->SetXattr(f.id, "user.big", std::string(70000, 'b'), 0)), E2BIG);
}

// The xattr keys ("X" <id> <name>) of the store, as (key, value).
std::map<std::string, std::string> XattrKeys(FileStore& st) {
  EXPECT_OK(st.WaitForPurges());  // removed files' keys are the reclaimer's to delete
  std::map<std::string, std::string> out;
  engines::ScanOptions so;
  so.prefix = "X";
  EXPECT_OK(st.engine()->Scan(so, [&](std::string_view k, std::string_view v) {
    out.emplace(k, v);
    return true;
  }));
  return out;
}

Node NodeAt(FileStore& st, const std::string& key) {
  auto value = st.engine()->Get(key);
  EXPECT_TRUE(value.ok()) << key;
  auto n = DecodeNode(value.ok() ? *value : "", key);
  EXPECT_TRUE(n.ok()) << n.status().ToString();
  return n.ok() ? *n : Node{};
}

// One key per attribute, the node counting them: a set rewrites the attribute and a node whose
// size does not grow with the others (so a change costs the same whatever their number).
TEST_P(FileStoreTest, XattrsAreOneKeyEachAndTheNodeCountsThem) {
  ASSERT_OK_AND_ASSIGN(auto st, Open());
  ASSERT_OK_AND_ASSIGN(Attr f, st->Create(kRootId, "f", 0644, kUser));
  ASSERT_OK(st->Write(f.id, 0, "data"));
  const size_t bare = st->engine()->Get(NodeKey("f"))->size();
  ASSERT_OK(st->SetXattr(f.id, "user.a", "1", 0));
  ASSERT_OK(st->SetXattr(f.id, "user.bb", "22", 0));
  EXPECT_EQ(XattrKeys(*st),
            (std::map<std::string, std::string>{{XattrKey(f.id, "user.a"), "1"},
                                                {XattrKey(f.id, "user.bb"), "22"}}));
  Node n = NodeAt(*st, NodeKey("f"));
  EXPECT_EQ(n.xattr_count, 2u);
  EXPECT_EQ(n.xattr_name_bytes, 13u);
  EXPECT_EQ(n.xattr_value_bytes, 3u);
  // Replacing one changes its value bytes only; a ctime later each time, as ext4.
  const int64_t before = st->GetAttr(f.id)->ctime_ns;
  ASSERT_OK(st->SetXattr(f.id, "user.bb", "4444", XATTR_REPLACE));
  EXPECT_GT(st->GetAttr(f.id)->ctime_ns, before);
  n = NodeAt(*st, NodeKey("f"));
  EXPECT_EQ(n.xattr_count, 2u);
  EXPECT_EQ(n.xattr_value_bytes, 5u);
  for (int i = 0; i < 500; ++i) {
    ASSERT_OK(st->SetXattr(f.id, "user.many" + std::to_string(i), std::string(20, 'v'), 0));
  }
  EXPECT_EQ(st->engine()->Get(NodeKey("f"))->size(), bare) << "the node holds no attribute";
  EXPECT_EQ(st->ListXattr(f.id)->size(), 502u);
  const int64_t before_remove = st->GetAttr(f.id)->ctime_ns;
  ASSERT_OK(st->RemoveXattr(f.id, "user.a"));
  EXPECT_GT(st->GetAttr(f.id)->ctime_ns, before_remove);
  EXPECT_EQ(ErrnoOf(st->GetXattr(f.id, "user.a").status()), ENODATA);
  EXPECT_EQ(st->engine()->Get(XattrKey(f.id, "user.a")).status().IsNotFound(), true);
  n = NodeAt(*st, NodeKey("f"));
  EXPECT_EQ(n.xattr_count, 501u);
  uint32_t names = 7;  // user.bb
  for (int i = 0; i < 500; ++i) names += ("user.many" + std::to_string(i)).size();
  EXPECT_EQ(n.xattr_name_bytes, names);
  EXPECT_EQ(n.xattr_value_bytes, 4u + 500 * 20);
  // Errnos as the kernel and ext4 give them.
  EXPECT_EQ(ErrnoOf(st->SetXattr(f.id, "user.bb", "x", XATTR_CREATE)), EEXIST);
  EXPECT_EQ(ErrnoOf(st->SetXattr(f.id, "user.none", "x", XATTR_REPLACE)), ENODATA);
  EXPECT_EQ(ErrnoOf(st->RemoveXattr(f.id, "user.none")), ENODATA);
  EXPECT_EQ(ErrnoOf(st->SetXattr(f.id, "", "x", 0)), ERANGE);
  EXPECT_EQ(ErrnoOf(st->SetXattr(f.id, "user." + std::string(251, 'n'), "x", 0)), ERANGE);
  EXPECT_EQ(ErrnoOf(st->GetXattr(f.id, "").status()), ERANGE);
  EXPECT_EQ(ErrnoOf(st->SetXattr(f.id, "user.v", std::string(kMaxXattrValueLength + 1, 'v'), 0)),
            E2BIG);
  ASSERT_OK(st->SetXattr(f.id, "user.v", std::string(kMaxXattrValueLength, 'v'), 0));
  // Directories, symlinks and special files take them too; the store keeps them all.
  ASSERT_OK_AND_ASSIGN(Attr d, st->Mkdir(kRootId, "d", 0755, kUser));
  ASSERT_OK(st->SetXattr(d.id, "user.on_dir", "d", 0));
  ASSERT_OK_AND_ASSIGN(Attr l, st->Symlink(kRootId, "l", "f", kUser));
  ASSERT_OK(st->SetXattr(l.id, "trusted.on_link", "l", 0));
  ASSERT_OK(st->Close());
  st.reset();
  ASSERT_OK_AND_ASSIGN(st, Open());
  ASSERT_OK_AND_ASSIGN(f, st->Resolve("f"));
  EXPECT_EQ(*st->GetXattr(f.id, "user.bb"), "4444");
  EXPECT_EQ(st->GetXattr(f.id, "user.v")->size(), kMaxXattrValueLength);
  EXPECT_EQ(*st->GetXattr(st->Resolve("d")->id, "user.on_dir"), "d");
  EXPECT_EQ(*st->ListXattr(st->Resolve("l")->id), std::vector<std::string>{"trusted.on_link"});
  EXPECT_EQ(*st->ListXattr(st->Resolve("d")->id), std::vector<std::string>{"user.on_dir"});
  EXPECT_EQ(ReadAll(*st, f.id), "data");
}

// The per-file limits: every name with its NUL within listxattr's 64 KiB, and names plus values
// within 1 MiB; past either ENOSPC, and nothing changed.
TEST_P(FileStoreTest, XattrLimitsPerFileAreEnospc) {
  ASSERT_OK_AND_ASSIGN(auto st, Open());
  ASSERT_OK_AND_ASSIGN(Attr f, st->Create(kRootId, "f", 0644, kUser));
  // 16 values of 64 KiB pass 1 MiB with their names: the 16th is refused.
  const std::string big(kMaxXattrValueLength, 'v');
  for (int i = 0; i < 15; ++i)
    ASSERT_OK(st->SetXattr(f.id, "user.big" + std::to_string(i), big, 0));
  EXPECT_EQ(ErrnoOf(st->SetXattr(f.id, "user.big15", big, 0)), ENOSPC);
  EXPECT_EQ(ErrnoOf(st->GetXattr(f.id, "user.big15").status()), ENODATA);
  // Replacing a value by a smaller one frees its bytes.
  ASSERT_OK(st->SetXattr(f.id, "user.big0", "small", 0));
  ASSERT_OK(st->SetXattr(f.id, "user.big15", big, 0));
  // Names: 254-byte names (255 with the NUL) fill 64 KiB with 257 of them.
  ASSERT_OK_AND_ASSIGN(Attr g, st->Create(kRootId, "g", 0644, kUser));
  auto name = [](int i) {
    std::string n = "user." + std::to_string(i) + ".";
    return n + std::string(254 - n.size(), 'n');
  };
  int set = 0;
  Status s;
  while ((s = st->SetXattr(g.id, name(set), "", 0)).ok()) ++set;
  EXPECT_EQ(ErrnoOf(s), ENOSPC);
  EXPECT_EQ(set, static_cast<int>(kMaxXattrList / 255));
  EXPECT_EQ(st->ListXattr(g.id)->size(), static_cast<size_t>(set));
  // A replace adds no name: it still fits.
  ASSERT_OK(st->SetXattr(g.id, name(0), "again", 0));
  ASSERT_OK_AND_ASSIGN(Node n, DecodeNode(*st->engine()->Get(NodeKey("g")), "g"));
  EXPECT_EQ(n.xattr_count, static_cast<uint32_t>(set));
  EXPECT_EQ(n.xattr_name_bytes, static_cast<uint32_t>(set * 254));
}

// Attributes belong to the file: every name of it sees the same ones, they outlive a name while
// others remain, and they go (no key left) when the file goes: last unlink, rmdir, rename over
// it, the purge of an orphan, and the next open after a daemon died holding one.
TEST_P(FileStoreTest, XattrsGoWithTheFileAndHardLinksShareThem) {
  ASSERT_OK_AND_ASSIGN(auto st, Open());
  ASSERT_OK_AND_ASSIGN(Attr f, st->Create(kRootId, "f", 0644, kUser));
  ASSERT_OK(st->Write(f.id, 0, std::string(3 * kChunkSize, 'c')));
  ASSERT_OK(st->SetXattr(f.id, "user.a", "1", 0));
  ASSERT_OK(st->Link(f.id, kRootId, "g"));
  ASSERT_OK(st->SetXattr(st->Resolve("g")->id, "user.b", "2", 0));
  EXPECT_EQ(*st->ListXattr(st->Resolve("f")->id), (std::vector<std::string>{"user.a", "user.b"}));
  ASSERT_OK(st->Unlink(kRootId, "f"));
  EXPECT_EQ(*st->GetXattr(st->Resolve("g")->id, "user.a"), "1");
  EXPECT_EQ(XattrKeys(*st).size(), 2u);
  ASSERT_OK(st->Unlink(kRootId, "g"));  // the kernel holds f: the file is an orphan
  EXPECT_EQ(*st->GetXattr(f.id, "user.b"), "2");
  ASSERT_OK(st->SetXattr(f.id, "user.c", "3", 0));  // fsetxattr on an unlinked open file
  EXPECT_EQ(st->ListXattr(f.id)->size(), 3u);
  st->Forget(f.id, 1000);  // the kernel lets go: every lookup (Create's, Resolve's)
  EXPECT_TRUE(XattrKeys(*st).empty());
  EXPECT_TRUE(st->engine()->Get(OrphanKey(f.id)).status().IsNotFound());

  // rmdir, rename over a file, unlink of a never-held inline file.
  ASSERT_OK_AND_ASSIGN(Attr d, st->Mkdir(kRootId, "d", 0755, kUser));
  ASSERT_OK(st->SetXattr(d.id, "user.d", "d", 0));
  ASSERT_OK_AND_ASSIGN(Attr x, st->Create(kRootId, "x", 0644, kUser));
  ASSERT_OK(st->SetXattr(x.id, "user.x", "x", 0));
  ASSERT_OK_AND_ASSIGN(Attr y, st->Create(kRootId, "y", 0644, kUser));
  ASSERT_OK(st->SetXattr(y.id, "user.y", "y", 0));
  st->Forget(d.id, 1);
  st->Forget(x.id, 1);
  st->Forget(y.id, 1);
  ASSERT_OK(st->Rmdir(kRootId, "d"));
  ASSERT_OK(st->Rename(kRootId, "x", kRootId, "y", 0));
  EXPECT_EQ(XattrKeys(*st), (std::map<std::string, std::string>{{XattrKey(x.id, "user.x"), "x"}}));
  ASSERT_OK(st->Unlink(kRootId, "y"));
  EXPECT_TRUE(XattrKeys(*st).empty());

  // An inline file with attributes, unlinked while held, and the daemon dies: its orphan record
  // makes the next open delete its attributes.
  ASSERT_OK_AND_ASSIGN(Attr h, st->Create(kRootId, "h", 0644, kUser));
  ASSERT_OK(st->Write(h.id, 0, "small"));
  ASSERT_OK(st->SetXattr(h.id, "user.h", "h", 0));
  ASSERT_OK(st->Unlink(kRootId, "h"));
  EXPECT_OK(st->engine()->Get(OrphanKey(h.id)).status());
  EXPECT_EQ(*st->GetXattr(h.id, "user.h"), "h");
  ASSERT_OK(st->Close());  // no Forget: as if the daemon died
  st.reset();
  ASSERT_OK_AND_ASSIGN(st, Open());
  EXPECT_TRUE(XattrKeys(*st).empty());
  EXPECT_TRUE(st->engine()->Get(OrphanKey(h.id)).status().IsNotFound());
}

TEST_P(FileStoreTest, ASetgidDirectoryPassesItsGroupOn) {
  ASSERT_OK_AND_ASSIGN(auto st, Open());
  ASSERT_OK_AND_ASSIGN(Attr d, st->Mkdir(kRootId, "shared", 0775, kUser));
  AttrChange c;
  c.mode = 02775;
  c.gid = 500;
  ASSERT_OK(st->SetAttr(d.id, c));
  ASSERT_OK_AND_ASSIGN(Attr f, st->Create(d.id, "f", 0664, kUser));
  EXPECT_EQ(f.gid, 500u);
  ASSERT_OK_AND_ASSIGN(Attr sub, st->Mkdir(d.id, "sub", 0775, kUser));
  EXPECT_EQ(sub.gid, 500u);
  EXPECT_EQ(sub.mode & 02000, 02000u);
}

TEST_P(FileStoreTest, AFailedSyncIsEioAndTheStoreTurnsReadOnly) {
  ASSERT_OK_AND_ASSIGN(auto st, Open());
  ASSERT_OK_AND_ASSIGN(Attr f, st->Create(kRootId, "f", 0644, kUser));
  ASSERT_OK(st->Write(f.id, 0, "before"));
  ASSERT_OK(st->SyncFile(f.id, true));
  fs_.FailSyncAfter(1);
  ASSERT_OK(st->Write(f.id, 0, "after!"));
  EXPECT_EQ(ErrnoOf(st->SyncFile(f.id, true)), EIO);
  EXPECT_TRUE(st->failed());
  EXPECT_EQ(ErrnoOf(st->SyncFile(f.id, true)), EIO);  // never retried into a success
  EXPECT_EQ(ErrnoOf(st->Write(f.id, 0, "x").status()), EROFS);
  EXPECT_EQ(ErrnoOf(st->Create(kRootId, "g", 0644, kUser).status()), EROFS);
  EXPECT_OK(st->Read(f.id, 0, 10));  // reads go on
  EXPECT_GE(st->stats().sync_errors, 1u);
}

TEST_P(FileStoreTest, NoSpaceIsEnospcAndWritingResumesOnceSpaceIsFreed) {
  ASSERT_OK_AND_ASSIGN(auto st, Open());
  ASSERT_OK_AND_ASSIGN(Attr f, st->Create(kRootId, "f", 0644, kUser));
  ASSERT_OK(st->Write(f.id, 0, "kept"));
  ASSERT_OK(st->SyncFile(f.id, true));
  fs_.SetSpaceLimit(UsedBytes() + 3 * kChunkSize);
  // Writes of 64 KiB until the disk is full: the log's segment was reserved in advance, so the
  // space runs out once a new segment (or a table or blob file) is needed.
  Status s;
  constexpr uint64_t kPiece = uint64_t{64} << 10;
  for (int i = 0; i < 4096 && s.ok(); ++i) {
    s = st->Write(f.id, 4 + i * kPiece, std::string(kPiece, 'w')).status();
  }
  EXPECT_EQ(ErrnoOf(s), ENOSPC) << s.ToString();
  fs_.SetSpaceLimit(UINT64_MAX);
  ASSERT_OK_AND_ASSIGN(Attr g, st->Create(kRootId, "g", 0644, kUser));
  ASSERT_OK(st->Write(g.id, 0, "works again"));
  ASSERT_OK(st->SyncFile(g.id, true));
  ASSERT_OK(st->Close());
  ASSERT_OK_AND_ASSIGN(auto st2, Open());
  ASSERT_OK_AND_ASSIGN(Attr f2, st2->Resolve("f"));
  EXPECT_EQ(ReadAll(*st2, f2.id).substr(0, 4), "kept");
  ASSERT_OK_AND_ASSIGN(Attr g2, st2->Resolve("g"));
  EXPECT_EQ(ReadAll(*st2, g2.id), "works again");
}

TEST_P(FileStoreTest, ConcurrentWritersAndListersOnDistinctFiles) {
  ASSERT_OK_AND_ASSIGN(auto st, Open(sync::SyncMode::kNone, /*always=*/true));
  constexpr int kThreads = 4;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 30; ++i) {
        const std::string name = "t" + std::to_string(t) + "_" + std::to_string(i);
        auto f = st->Create(kRootId, name, 0644, kUser);
        ASSERT_TRUE(f.ok()) << f.status().ToString();
        ASSERT_OK(st->Write(f->id, 0, std::string(5000 + i, static_cast<char>('a' + t))));
        ASSERT_OK(st->SyncFile(f->id, true));
        std::vector<std::string> names;
        ASSERT_OK(st->ReadDir(kRootId, "", false, [&](const DirEntry& e) {
          names.push_back(e.name);
          return true;
        }));
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(List(*st, kRootId).size(), static_cast<size_t>(kThreads * 30));
}

// The store's locking (file_store_impl.h): a sync that one file's write runs inside the engine
// (a `batch` log whose every record fills a batch: the appender syncs it inline, in Apply)
// holds up nothing of another file. While that sync is held in the disk, the other file's
// getattr, read, lookup and directory listing all complete. Under one store-wide lock held
// through each write's batch, every one of them waited for the disk.
TEST_P(FileStoreTest, ReadsOfOneFileDoNotWaitForAnotherFilesSync) {
  ASSERT_OK_AND_ASSIGN(auto st, Open(sync::SyncMode::kBatch, false, /*batch_records=*/1));
  ASSERT_OK_AND_ASSIGN(Attr a, st->Create(kRootId, "a", 0644, kUser));
  ASSERT_OK_AND_ASSIGN(Attr b, st->Create(kRootId, "b", 0644, kUser));
  const std::string b_data(10000, 'b');
  ASSERT_OK(st->Write(b.id, 0, b_data));

  std::promise<void> entered;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  // The hook may still be running in an engine thread when the test ends: what it touches after
  // the first call is its own.
  auto first = std::make_shared<std::atomic<bool>>(true);
  fs_.SetBeforeSyncHook([&entered, released, first](const std::string&) {
    if (!first->exchange(false)) return;
    entered.set_value();
    released.wait();
  });
  std::thread writer([&] { EXPECT_OK(st->Write(a.id, 0, std::string(5000, 'a'))); });
  if (entered.get_future().wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
    release.set_value();
    writer.join();
    FAIL() << "the write never reached its sync";
  }

  auto others = std::async(std::launch::async, [&] {
    auto attr = st->GetAttr(b.id);
    EXPECT_TRUE(attr.ok() && attr->size == b_data.size());
    auto data = st->Read(b.id, 0, b_data.size());
    EXPECT_TRUE(data.ok() && *data == b_data);
    EXPECT_OK(st->Lookup(kRootId, "b"));
    EXPECT_EQ(List(*st, kRootId).size(), 2u);
  });
  const bool done = others.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
  release.set_value();  // whatever happened: nothing may stay blocked
  writer.join();
  others.get();
  fs_.SetBeforeSyncHook(nullptr);
  EXPECT_TRUE(done) << "a getattr/read of file b waited for file a's sync";
  EXPECT_EQ(ReadAll(*st, a.id), std::string(5000, 'a'));
}

// No lock of the store is held across a log sync (file_store_impl.h): in `batch` mode the
// append that fills a batch leaves its sync to the file layer, which runs it once its locks are
// dropped. With every record a full batch and a sync held in the disk, a create in one
// directory and a rename in another are made while the sync is held (their names appear to
// every reader; only their own replies wait for the sync, which the batch bound requires), and
// another file's getattr, read and listing go on. With the engine syncing a full batch inline,
// inside Apply (under the namespace lock for a create or rename), none of the names appears.
TEST_P(FileStoreTest, NamespaceChangesAreNotHeldUpByALogSync) {
  ASSERT_OK_AND_ASSIGN(auto st, Open(sync::SyncMode::kBatch, false, /*batch_records=*/1));
  ASSERT_OK_AND_ASSIGN(Attr a, st->Create(kRootId, "a", 0644, kUser));
  ASSERT_OK_AND_ASSIGN(Attr b, st->Create(kRootId, "b", 0644, kUser));
  ASSERT_OK_AND_ASSIGN(Attr d1, st->Mkdir(kRootId, "d1", 0755, kUser));
  ASSERT_OK_AND_ASSIGN(Attr d2, st->Mkdir(kRootId, "d2", 0755, kUser));
  ASSERT_OK(st->Create(d1.id, "x", 0644, kUser).status());
  const std::string b_data(10000, 'b');
  ASSERT_OK(st->Write(b.id, 0, b_data));

  std::promise<void> entered;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  auto first = std::make_shared<std::atomic<bool>>(true);
  fs_.SetBeforeSyncHook([&entered, released, first](const std::string&) {
    if (!first->exchange(false)) return;
    entered.set_value();
    released.wait();
  });
  std::thread writer([&] { EXPECT_OK(st->Write(a.id, 0, std::string(5000, 'a'))); });
  if (entered.get_future().wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
    release.set_value();
    writer.join();
    FAIL() << "the write never reached its sync";
  }
  // Each of these owes the held sync its reply, so each waits for it, but with no lock held.
  std::thread creator([&] { EXPECT_OK(st->Create(d2.id, "new", 0644, kUser).status()); });
  std::thread renamer([&] { EXPECT_OK(st->Rename(d1.id, "x", d1.id, "y", 0)); });

  auto others = std::async(std::launch::async, [&] {
    // Bounded: the outcome is only read once the sync is released, whatever happened.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    bool created = false;
    bool renamed = false;
    while (!(created && renamed) && std::chrono::steady_clock::now() < deadline) {
      created = created || st->Lookup(d2.id, "new").ok();
      renamed = renamed || (st->Lookup(d1.id, "y").ok() && !st->Lookup(d1.id, "x").ok());
      std::this_thread::yield();
    }
    auto attr = st->GetAttr(b.id);
    EXPECT_TRUE(attr.ok() && attr->size == b_data.size());
    auto data = st->Read(b.id, 0, b_data.size());
    EXPECT_TRUE(data.ok() && *data == b_data);
    EXPECT_EQ(List(*st, kRootId).size(), 4u);
    return created && renamed;
  });
  const bool done = others.wait_for(std::chrono::seconds(20)) == std::future_status::ready;
  release.set_value();  // whatever happened: nothing may stay blocked
  writer.join();
  creator.join();
  renamer.join();
  const bool made = others.get();
  fs_.SetBeforeSyncHook(nullptr);
  EXPECT_TRUE(done) << "a getattr/read/lookup waited for the log sync";
  EXPECT_TRUE(made) << "a create or rename waited for another file's log sync, holding a lock";
  EXPECT_EQ(List(*st, d2.id), std::vector<std::string>{"new"});
  EXPECT_EQ(List(*st, d1.id), std::vector<std::string>{"y"});
  EXPECT_EQ(ReadAll(*st, a.id), std::string(5000, 'a'));
}

// Writers of one file, each its own interleaved records that straddle chunks (so two writers
// read-modify-write the same chunk), with a reader beside them: the file's lock keeps every
// record, its size and its chunk count (st_blocks), in the store and after a reopen.
TEST_P(FileStoreTest, ConcurrentWritersOfOneFileLoseNothing) {
  ASSERT_OK_AND_ASSIGN(auto st, Open());
  ASSERT_OK_AND_ASSIGN(Attr f, st->Create(kRootId, "f", 0644, kUser));
  constexpr int kThreads = 4;
  constexpr int kRecords = 40;        // per thread
  constexpr uint64_t kRecord = 3001;  // not a divisor of the chunk size: records straddle chunks
  auto byte_of = [](int t, int i) { return static_cast<char>('A' + (t * 7 + i) % 26); };
  std::atomic<bool> writing{true};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kRecords; ++i) {
        const uint64_t at = static_cast<uint64_t>(i * kThreads + t) * kRecord;
        auto n = st->Write(f.id, at, std::string(kRecord, byte_of(t, i)));
        EXPECT_TRUE(n.ok()) << n.status().ToString();
      }
    });
  }
  std::thread reader([&] {
    uint64_t last = 0;
    while (writing.load()) {
      auto a = st->GetAttr(f.id);
      ASSERT_TRUE(a.ok()) << a.status().ToString();
      EXPECT_GE(a->size, last);  // a size never goes back
      last = a->size;
      auto d = st->Read(f.id, 0, 3 * kChunkSize);
      ASSERT_TRUE(d.ok()) << d.status().ToString();
    }
  });
  for (auto& t : threads) t.join();
  writing = false;
  reader.join();
  std::string want(uint64_t{kThreads} * kRecords * kRecord, '\0');
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kRecords; ++i) {
      const uint64_t at = static_cast<uint64_t>(i * kThreads + t) * kRecord;
      want.replace(at, kRecord, std::string(kRecord, byte_of(t, i)));
    }
  }
  const uint64_t chunks = (want.size() + kChunkSize - 1) / kChunkSize;
  for (int round = 0; round < 2; ++round) {
    ASSERT_OK_AND_ASSIGN(Attr a, st->Resolve("f"));
    EXPECT_EQ(a.size, want.size());
    EXPECT_EQ(a.blocks, chunks * (kChunkSize / 512));
    EXPECT_TRUE(ReadAll(*st, a.id) == want) << "a record was lost";
    EXPECT_EQ(CountChunkKeys(*st), chunks);
    if (round == 0) {
      ASSERT_OK(st->Close());
      st.reset();
      ASSERT_OK_AND_ASSIGN(st, Open());
    }
  }
}

// Creates, mkdirs and unlinks in one directory from several threads: the directory's link
// count and its entries come out as the calls made them (the parent's read-modify-write and the
// id allocator are the namespace lock's).
TEST_P(FileStoreTest, ConcurrentNamespaceChangesInOneDirectoryKeepItsLinkCount) {
  ASSERT_OK_AND_ASSIGN(auto st, Open());
  ASSERT_OK_AND_ASSIGN(Attr d, st->Mkdir(kRootId, "d", 0755, kUser));
  constexpr int kThreads = 8;
  constexpr int kEach = 100;
  std::vector<std::thread> threads;
  std::mutex ids_mu;
  std::set<uint64_t> ids;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        const std::string n = std::to_string(t) + "_" + std::to_string(i);
        auto dir = st->Mkdir(d.id, "dir" + n, 0755, kUser);
        ASSERT_TRUE(dir.ok()) << dir.status().ToString();
        auto file = st->Create(d.id, "file" + n, 0644, kUser);
        ASSERT_TRUE(file.ok()) << file.status().ToString();
        ASSERT_OK(st->Write(file->id, 0, std::string(5000, 'x')));
        auto gone = st->Create(d.id, "gone" + n, 0644, kUser);
        ASSERT_TRUE(gone.ok()) << gone.status().ToString();
        ASSERT_OK(st->Unlink(d.id, "gone" + n));
        std::lock_guard lock(ids_mu);
        ids.insert({dir->id, file->id, gone->id});
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ids.size(), static_cast<size_t>(3 * kThreads * kEach)) << "an id was given twice";
  ASSERT_OK_AND_ASSIGN(Attr after, st->Resolve("d"));
  EXPECT_EQ(after.nlink, static_cast<uint32_t>(2 + kThreads * kEach));
  EXPECT_EQ(List(*st, d.id).size(), static_cast<size_t>(2 * kThreads * kEach));
}

// Writes racing renames of the same files: a node is keyed by its path, so a write must never
// put its record back under a name a rename just left (a resurrected old name), and no write
// may be lost. Each file ends under exactly one of its two names, holding every write.
TEST_P(FileStoreTest, WritesRacingRenamesNeverResurrectAnOldName) {
  ASSERT_OK_AND_ASSIGN(auto st, Open());
  constexpr int kFiles = 4;
  constexpr int kWrites = 300;
  std::vector<uint64_t> ids;
  for (int i = 0; i < kFiles; ++i) {
    ASSERT_OK_AND_ASSIGN(Attr f, st->Create(kRootId, "x" + std::to_string(i), 0644, kUser));
    ids.push_back(f.id);
  }
  std::vector<std::thread> threads;
  for (int i = 0; i < kFiles; ++i) {
    threads.emplace_back([&, i] {
      for (int w = 0; w < kWrites; ++w) {
        auto n = st->Write(ids[i], static_cast<uint64_t>(w) * 100, std::string(100, 'a' + i));
        ASSERT_TRUE(n.ok()) << n.status().ToString();
      }
    });
  }
  std::atomic<bool> writing{true};
  std::thread renamer([&] {
    int round = 0;
    while (writing.load()) {
      for (int i = 0; i < kFiles; ++i) {
        const std::string x = "x" + std::to_string(i), y = "y" + std::to_string(i);
        const bool even = round % 2 == 0;
        ASSERT_OK(st->Rename(kRootId, even ? x : y, kRootId, even ? y : x, 0));
      }
      ++round;
    }
  });
  for (auto& t : threads) t.join();
  writing = false;
  renamer.join();
  EXPECT_EQ(List(*st, kRootId).size(), static_cast<size_t>(kFiles));
  for (int i = 0; i < kFiles; ++i) {
    EXPECT_TRUE(ReadAll(*st, ids[i]) == std::string(size_t{kWrites} * 100, 'a' + i))
        << "file " << i;
  }
}

// A directory's link count is 2 plus its subdirectories (ext4's), through every call that adds,
// removes or moves a directory, and across a reopen.
TEST_P(FileStoreTest, DirectoryLinkCountIsTwoPlusSubdirectories) {
  ASSERT_OK_AND_ASSIGN(auto st, Open());
  auto nlink = [&](std::string_view path) -> uint32_t {
    auto a = st->Resolve(path);
    EXPECT_TRUE(a.ok()) << path << ": " << a.status().ToString();
    return a.ok() ? a->nlink : 0;
  };
  EXPECT_EQ(nlink(""), 2u);
  ASSERT_OK_AND_ASSIGN(Attr a, st->Mkdir(kRootId, "a", 0755, kUser));
  EXPECT_EQ(a.nlink, 2u);
  ASSERT_OK_AND_ASSIGN(Attr b, st->Mkdir(kRootId, "b", 0755, kUser));
  ASSERT_OK(st->Mkdir(a.id, "a1", 0755, kUser));
  ASSERT_OK(st->Mkdir(a.id, "a2", 0755, kUser));
  ASSERT_OK_AND_ASSIGN(Attr f, st->Create(a.id, "f", 0644, kUser));
  ASSERT_OK(st->Symlink(a.id, "l", "f", kUser));
  EXPECT_EQ(f.nlink, 1u);
  EXPECT_EQ(nlink(""), 4u);
  EXPECT_EQ(nlink("a"), 4u);  // files and symlinks do not count
  EXPECT_EQ(nlink("b"), 2u);
  // Across directories: a directory moves its ".." along; a file does not.
  ASSERT_OK(st->Rename(a.id, "a1", b.id, "a1", 0));
  ASSERT_OK(st->Rename(a.id, "f", b.id, "f", 0));
  EXPECT_EQ(nlink("a"), 3u);
  EXPECT_EQ(nlink("b"), 3u);
  // Within one directory: no change; over an empty directory: one fewer.
  ASSERT_OK(st->Rename(b.id, "a1", b.id, "renamed", 0));
  EXPECT_EQ(nlink("b"), 3u);
  ASSERT_OK(st->Mkdir(b.id, "empty", 0755, kUser));
  EXPECT_EQ(nlink("b"), 4u);
  ASSERT_OK(st->Rename(b.id, "renamed", b.id, "empty", 0));
  EXPECT_EQ(nlink("b"), 3u);
  // Over an empty directory in another parent: the source loses one, the target keeps its.
  ASSERT_OK(st->Mkdir(b.id, "target", 0755, kUser));
  EXPECT_EQ(nlink("b"), 4u);
  ASSERT_OK(st->Rename(a.id, "a2", b.id, "target", 0));
  EXPECT_EQ(nlink("a"), 2u);
  EXPECT_EQ(nlink("b"), 4u);
  // Exchange of a directory with a file across parents: the counts swap with them.
  ASSERT_OK(st->Create(a.id, "g", 0644, kUser));
  ASSERT_OK(st->Rename(a.id, "g", b.id, "target", FileStore::kRenameExchange));
  EXPECT_EQ(nlink("a"), 3u);
  EXPECT_EQ(nlink("b"), 3u);
  // Exchange of two directories across parents: no change.
  ASSERT_OK(st->Rename(a.id, "g", b.id, "empty", FileStore::kRenameExchange));
  EXPECT_EQ(nlink("a"), 3u);
  EXPECT_EQ(nlink("b"), 3u);
  // A whole subtree moving keeps the counts inside it.
  ASSERT_OK_AND_ASSIGN(Attr g, st->Resolve("a/g"));
  ASSERT_OK(st->Mkdir(g.id, "deep", 0755, kUser));
  EXPECT_EQ(nlink("a/g"), 3u);
  ASSERT_OK(st->Rename(a.id, "g", kRootId, "g", 0));
  EXPECT_EQ(nlink("g"), 3u);
  EXPECT_EQ(nlink("a"), 2u);
  EXPECT_EQ(nlink(""), 5u);  // a, b, g
  // rmdir.
  ASSERT_OK(st->Rmdir(g.id, "deep"));
  EXPECT_EQ(nlink("g"), 2u);
  ASSERT_OK(st->Rmdir(kRootId, "g"));
  EXPECT_EQ(nlink(""), 4u);
  // What was counted is in the store.
  ASSERT_OK(st->Close());
  st.reset();
  ASSERT_OK_AND_ASSIGN(st, Open());
  EXPECT_EQ(nlink(""), 4u);
  EXPECT_EQ(nlink("a"), 2u);
  EXPECT_EQ(nlink("b"), 3u);
  std::vector<uint32_t> listed;
  ASSERT_OK(st->ReadDir(kRootId, "", false, [&](const DirEntry& e) {
    listed.push_back(e.attr.nlink);
    return true;
  }));
  EXPECT_EQ(listed, (std::vector<uint32_t>{2, 3}));
}

// FIFOs, devices and sockets are nodes like any other: type, mode and rdev kept; every call on a
// name works on them as on a file (setattr, rename onto and over, unlink), across a reopen.
TEST_P(FileStoreTest, SpecialFilesAreNodesThatEveryNameCallTakes) {
  ASSERT_OK_AND_ASSIGN(auto st, Open());
  ASSERT_OK_AND_ASSIGN(Attr fifo, st->Mknod(kRootId, "fifo", NodeType::kFifo, 0666, 99, kUser));
  EXPECT_EQ(fifo.type, NodeType::kFifo);
  EXPECT_EQ(fifo.mode, 0644u);  // umask
  EXPECT_EQ(fifo.rdev, 0u);     // only devices keep one
  EXPECT_EQ(fifo.nlink, 1u);
  ASSERT_OK_AND_ASSIGN(Attr chr,
                       st->Mknod(kRootId, "chr", NodeType::kCharDevice, 0620, 0x103, kUser));
  EXPECT_EQ(chr.rdev, 0x103u);
  ASSERT_OK_AND_ASSIGN(Attr blk,
                       st->Mknod(kRootId, "blk", NodeType::kBlockDevice, 0660, 0x10300, kUser));
  ASSERT_OK_AND_ASSIGN(Attr sock, st->Mknod(kRootId, "sock", NodeType::kSocket, 0777, 0, kUser));
  EXPECT_EQ(sock.type, NodeType::kSocket);
  ASSERT_OK_AND_ASSIGN(Attr plain, st->Mknod(kRootId, "plain", NodeType::kFile, 0644, 0, kUser));
  EXPECT_EQ(plain.type, NodeType::kFile);
  EXPECT_EQ(ErrnoOf(st->Mknod(kRootId, "d", NodeType::kDirectory, 0755, 0, kUser).status()),
            EINVAL);
  EXPECT_EQ(ErrnoOf(st->Mknod(kRootId, "fifo", NodeType::kFifo, 0644, 0, kUser).status()), EEXIST);
  // No data: reads, writes and truncation are not theirs.
  EXPECT_EQ(ErrnoOf(st->Read(fifo.id, 0, 1).status()), EINVAL);
  EXPECT_EQ(ErrnoOf(st->Write(chr.id, 0, "x").status()), EINVAL);
  AttrChange truncate;
  truncate.size = 0;
  EXPECT_EQ(ErrnoOf(st->SetAttr(blk.id, truncate).status()), EINVAL);
  // chmod, chown, utimens.
  AttrChange c;
  c.mode = 0600;
  c.uid = 7;
  c.gid = 8;
  c.atime_ns = 1000;
  c.mtime_ns = 2000;
  ASSERT_OK_AND_ASSIGN(Attr changed, st->SetAttr(sock.id, c));
  EXPECT_EQ(changed.type, NodeType::kSocket);
  EXPECT_EQ(changed.mode, 0600u);
  EXPECT_EQ(changed.uid, 7u);
  EXPECT_EQ(changed.mtime_ns, 2000);
  // xattrs.
  ASSERT_OK(st->SetXattr(fifo.id, "user.k", "v", 0));
  // Rename onto a new name, over a file, and a file over one.
  ASSERT_OK(st->Rename(kRootId, "fifo", kRootId, "fifo2", 0));
  ASSERT_OK(st->Rename(kRootId, "fifo2", kRootId, "plain", 0));
  EXPECT_EQ(st->Resolve("plain")->type, NodeType::kFifo);
  ASSERT_OK(st->Create(kRootId, "file", 0644, kUser));
  ASSERT_OK(st->Rename(kRootId, "file", kRootId, "chr", 0));
  EXPECT_EQ(st->Resolve("chr")->type, NodeType::kFile);
  ASSERT_OK(st->Rename(kRootId, "blk", kRootId, "sock", FileStore::kRenameExchange));
  EXPECT_EQ(st->Resolve("sock")->type, NodeType::kBlockDevice);
  EXPECT_EQ(st->Resolve("sock")->rdev, 0x10300u);
  // Everything is in the store.
  ASSERT_OK(st->Close());
  st.reset();
  ASSERT_OK_AND_ASSIGN(st, Open());
  ASSERT_OK_AND_ASSIGN(Attr a, st->Resolve("plain"));
  EXPECT_EQ(a.type, NodeType::kFifo);
  EXPECT_EQ(*st->GetXattr(a.id, "user.k"), "v");
  ASSERT_OK_AND_ASSIGN(a, st->Resolve("blk"));
  EXPECT_EQ(a.type, NodeType::kSocket);
  EXPECT_EQ(a.mode, 0600u);
  EXPECT_EQ(a.uid, 7u);
  EXPECT_EQ(a.mtime_ns, 2000);
  ASSERT_OK_AND_ASSIGN(a, st->Resolve("sock"));
  EXPECT_EQ(a.rdev, 0x10300u);
  std::vector<std::string> listed;
  ASSERT_OK(st->ReadDir(kRootId, "", false, [&](const DirEntry& e) {
    listed.push_back(e.name + ":" + std::to_string(static_cast<int>(e.attr.type)));
    return true;
  }));
  EXPECT_EQ(listed, (std::vector<std::string>{"blk:7", "chr:1", "plain:4", "sock:6"}));
  for (const char* n : {"blk", "chr", "plain", "sock"}) ASSERT_OK(st->Unlink(kRootId, n));
  EXPECT_TRUE(List(*st, kRootId).empty());
}

uint64_t CountKeys(FileStore& st, const std::string& prefix) {
  uint64_t n = 0;
  engines::ScanOptions so;
  so.prefix = prefix;
  so.keys_only = true;
  EXPECT_OK(st.engine()->Scan(so, [&](std::string_view, std::string_view) {
    ++n;
    return true;
  }));
  return n;
}

// Hard links: one file under several names, each still a key under its path; its attributes
// and data shared; nlink and ctime as ext4 keeps them; unlinking a name leaves the others.
TEST_P(FileStoreTest, HardLinksAreOneFileUnderSeveralNames) {
  ASSERT_OK_AND_ASSIGN(auto st, Open());
  ASSERT_OK_AND_ASSIGN(Attr f, st->Create(kRootId, "f", 0644, kUser));
  ASSERT_OK(st->Write(f.id, 0, std::string(10000, 'a')));  // chunked
  ASSERT_OK_AND_ASSIGN(Attr d, st->Mkdir(kRootId, "d", 0755, kUser));
  ASSERT_OK_AND_ASSIGN(Attr before, st->GetAttr(f.id));
  ASSERT_OK_AND_ASSIGN(Attr g, st->Link(f.id, d.id, "g"));
  EXPECT_EQ(g.id, f.id);
  EXPECT_EQ(g.nlink, 2u);
  EXPECT_EQ(g.size, 10000u);
  EXPECT_GT(g.ctime_ns, before.ctime_ns);
  EXPECT_EQ(g.mtime_ns, before.mtime_ns);
  EXPECT_EQ(st->Resolve("f")->nlink, 2u);
  EXPECT_EQ(st->Resolve("d")->nlink, 2u);  // a file's name is no subdirectory
  // Every name is a key under its path; the file is one shared record.
  EXPECT_OK(st->engine()->Get(NodeKey("f")));
  EXPECT_OK(st->engine()->Get(NodeKey("d/g")));
  EXPECT_EQ(CountKeys(*st, "I"), 1u);
  // A change through one name is the file's.
  ASSERT_OK(st->Write(st->Resolve("d/g")->id, 0, "bbb"));
  AttrChange c;
  c.mode = 0600;
  ASSERT_OK(st->SetAttr(st->Resolve("d/g")->id, c));
  ASSERT_OK(st->SetXattr(f.id, "user.x", "1", 0));
  ASSERT_OK_AND_ASSIGN(Attr via_f, st->Resolve("f"));
  EXPECT_EQ(via_f.mode, 0600u);
  EXPECT_EQ(ReadAll(*st, via_f.id), "bbb" + std::string(9997, 'a'));
  EXPECT_EQ(*st->GetXattr(st->Resolve("d/g")->id, "user.x"), "1");
  // A third name; a listing shows every name with the file's attributes.
  ASSERT_OK(st->Link(f.id, kRootId, "h"));
  std::vector<std::string> listed;
  ASSERT_OK(st->ReadDir(kRootId, "", false, [&](const DirEntry& e) {
    listed.push_back(e.name + ":" + std::to_string(e.attr.nlink) + ":" +
                     std::to_string(e.attr.size));
    return true;
  }));
  EXPECT_EQ(listed, (std::vector<std::string>{"d:2:4096", "f:3:10000", "h:3:10000"}));
  // rename(2) between two names of one file does nothing; with NOREPLACE it is EEXIST.
  ASSERT_OK(st->Rename(kRootId, "h", kRootId, "f", 0));
  EXPECT_OK(st->Resolve("h"));
  EXPECT_EQ(ErrnoOf(st->Rename(kRootId, "h", kRootId, "f", FileStore::kRenameNoReplace)), EEXIST);
  // Renaming a name moves the stub; the file is unchanged.
  ASSERT_OK(st->Rename(kRootId, "h", d.id, "h2", 0));
  EXPECT_EQ(st->Resolve("d/h2")->nlink, 3u);
  // Unlinking one name leaves the others, and changes the file's ctime.
  ASSERT_OK_AND_ASSIGN(Attr three, st->Resolve("f"));
  ASSERT_OK(st->Unlink(kRootId, "f"));
  ASSERT_OK_AND_ASSIGN(Attr two, st->Resolve("d/g"));
  EXPECT_EQ(two.nlink, 2u);
  EXPECT_GT(two.ctime_ns, three.ctime_ns);
  EXPECT_EQ(ReadAll(*st, two.id), "bbb" + std::string(9997, 'a'));
  // The id the kernel held under the removed name still reaches the file.
  EXPECT_EQ(st->GetAttr(f.id)->nlink, 2u);
  // Reopen: names, counts and data are in the store.
  ASSERT_OK(st->Close());
  st.reset();
  ASSERT_OK_AND_ASSIGN(st, Open());
  EXPECT_EQ(st->Resolve("d/g")->nlink, 2u);
  EXPECT_EQ(st->Resolve("d/h2")->id, f.id);
  EXPECT_EQ(ReadAll(*st, f.id), "bbb" + std::string(9997, 'a'));
  // The last names go: the shared record and the chunks go with them.
  ASSERT_OK(st->Unlink(d.id, "g"));
  EXPECT_EQ(st->Resolve("d/h2")->nlink, 1u);
  ASSERT_OK(st->Unlink(d.id, "h2"));
  st->Forget(f.id, 100);
  EXPECT_EQ(CountKeys(*st, "I"), 0u);
  EXPECT_EQ(CountChunkKeys(*st), 0u);
}

TEST_P(FileStoreTest, LinkErrorsAreLinks) {
  ASSERT_OK_AND_ASSIGN(auto st, Open());
  ASSERT_OK_AND_ASSIGN(Attr f, st->Create(kRootId, "f", 0644, kUser));
  ASSERT_OK_AND_ASSIGN(Attr d, st->Mkdir(kRootId, "d", 0755, kUser));
  EXPECT_EQ(ErrnoOf(st->Link(f.id, kRootId, "f").status()), EEXIST);
  EXPECT_EQ(ErrnoOf(st->Link(f.id, kRootId, "d").status()), EEXIST);
  EXPECT_EQ(ErrnoOf(st->Link(d.id, kRootId, "d2").status()), EPERM);
  EXPECT_EQ(ErrnoOf(st->Link(f.id, f.id, "x").status()), ENOTDIR);
  EXPECT_EQ(ErrnoOf(st->Link(f.id, kRootId, std::string(256, 'n')).status()), ENAMETOOLONG);
  // Every type but a directory takes a link.
  ASSERT_OK_AND_ASSIGN(Attr l, st->Symlink(kRootId, "l", "target", kUser));
  ASSERT_OK_AND_ASSIGN(Attr l2, st->Link(l.id, kRootId, "l2"));
  EXPECT_EQ(*st->ReadLink(l2.id), "target");
  ASSERT_OK_AND_ASSIGN(Attr p, st->Mknod(kRootId, "p", NodeType::kFifo, 0644, 0, kUser));
  ASSERT_OK_AND_ASSIGN(Attr p2, st->Link(p.id, d.id, "p2"));
  EXPECT_EQ(p2.type, NodeType::kFifo);
  EXPECT_EQ(p2.nlink, 2u);
  // A file whose last name went (held open) takes no new name.
  ASSERT_OK(st->Unlink(kRootId, "f"));
  EXPECT_EQ(ErrnoOf(st->Link(f.id, kRootId, "back").status()), ENOENT);
  // EMLINK at ext4's limit.
  ASSERT_OK_AND_ASSIGN(Attr m, st->Create(kRootId, "m", 0644, kUser));
  ASSERT_OK(st->Link(m.id, kRootId, "m2"));
  ASSERT_OK_AND_ASSIGN(std::string shared, st->engine()->Get(SharedKey(m.id)));
  ASSERT_OK_AND_ASSIGN(Node n, DecodeNode(shared, "I"));
  n.nlink = kMaxLinks;
  ASSERT_OK(st->engine()->Put(SharedKey(m.id), EncodeNode(n)));
  EXPECT_EQ(ErrnoOf(st->Link(m.id, kRootId, "m3").status()), EMLINK);
}

// The last name of a file removed while the kernel holds it: readable and writable until
// forgotten, then its data goes; a rename over a name of a linked file drops one link only.
TEST_P(FileStoreTest, ALinkedFileHeldOpenOutlivesItsLastName) {
  ASSERT_OK_AND_ASSIGN(auto st, Open());
  ASSERT_OK_AND_ASSIGN(Attr f, st->Create(kRootId, "f", 0644, kUser));
  ASSERT_OK(st->Write(f.id, 0, std::string(20000, 'z')));
  ASSERT_OK(st->Link(f.id, kRootId, "g"));
  ASSERT_OK_AND_ASSIGN(Attr x, st->Create(kRootId, "x", 0644, kUser));
  ASSERT_OK(st->Rename(kRootId, "x", kRootId, "g", 0));  // over one name of f
  EXPECT_EQ(st->GetAttr(f.id)->nlink, 1u);
  EXPECT_EQ(st->Resolve("g")->id, x.id);
  ASSERT_OK(st->Link(f.id, kRootId, "h"));
  ASSERT_OK(st->Unlink(kRootId, "f"));
  ASSERT_OK(st->Unlink(kRootId, "h"));
  EXPECT_EQ(st->GetAttr(f.id)->nlink, 0u);
  EXPECT_EQ(ReadAll(*st, f.id), std::string(20000, 'z'));
  ASSERT_OK(st->Write(f.id, 20000, "more"));
  EXPECT_EQ(ReadAll(*st, f.id), std::string(20000, 'z') + "more");
  EXPECT_EQ(CountKeys(*st, "I"), 0u);
  st->Forget(f.id, 100);
  EXPECT_EQ(CountChunkKeys(*st), 0u);
  EXPECT_EQ(List(*st, kRootId), (std::vector<std::string>{"g"}));
}

// st_blocks counts the chunks a file holds, through every way of making or filling a hole.
TEST_P(FileStoreTest, BlocksCountTheChunksHeld) {
  ASSERT_OK_AND_ASSIGN(auto st, Open());
  ASSERT_OK_AND_ASSIGN(Attr f, st->Create(kRootId, "f", 0644, kUser));
  auto blocks = [&]() -> uint64_t {
    auto a = st->GetAttr(f.id);
    return a.ok() ? a->blocks : 999999;
  };
  EXPECT_EQ(blocks(), 0u);
  ASSERT_OK(st->Write(f.id, 0, "x"));
  EXPECT_EQ(blocks(), 8u);                               // inline: one block, as ext4
  ASSERT_OK(st->Write(f.id, 10 * kChunkSize + 5, "y"));  // chunk 0 and chunk 10
  EXPECT_EQ(blocks(), 16u);
  ASSERT_OK(st->Write(f.id, 3 * kChunkSize, std::string(kChunkSize, 'z')));  // a whole chunk
  EXPECT_EQ(blocks(), 24u);
  ASSERT_OK(st->Write(f.id, 3 * kChunkSize, std::string(kChunkSize, 'w')));  // again: no new one
  EXPECT_EQ(blocks(), 24u);
  AttrChange c;
  c.size = 100 * kChunkSize;  // a hole
  ASSERT_OK(st->SetAttr(f.id, c));
  EXPECT_EQ(blocks(), 24u);
  ASSERT_OK(st->Write(f.id, 50 * kChunkSize, std::string(2 * kChunkSize, 'v')));  // in the hole
  EXPECT_EQ(blocks(), 40u);
  c.size = 4 * kChunkSize;  // drops chunks 10, 50, 51
  ASSERT_OK(st->SetAttr(f.id, c));
  EXPECT_EQ(blocks(), 16u);
  EXPECT_EQ(CountChunkKeys(*st), 2u);
  // Reopen: the count is in the node.
  ASSERT_OK(st->Close());
  st.reset();
  ASSERT_OK_AND_ASSIGN(st, Open());
  ASSERT_OK_AND_ASSIGN(f, st->Resolve("f"));
  EXPECT_EQ(f.blocks, 16u);
  ASSERT_OK_AND_ASSIGN(Attr d, st->Mkdir(kRootId, "d", 0755, kUser));
  EXPECT_EQ(d.blocks, 8u);
}

TEST_P(FileStoreTest, AllocatePunchesZeroesAndReservesAndSeekFindsHoles) {
  ASSERT_OK_AND_ASSIGN(auto st, Open());
  ASSERT_OK_AND_ASSIGN(Attr f, st->Create(kRootId, "f", 0644, kUser));
  ASSERT_OK(st->Write(f.id, 0, std::string(8 * kChunkSize, 'a')));
  auto seek = [&](uint64_t off, bool data) -> int64_t {
    auto r = st->Seek(f.id, off, data);
    return r.ok() ? static_cast<int64_t>(*r) : -ErrnoOf(r.status());
  };
  EXPECT_EQ(seek(5, true), 5);
  EXPECT_EQ(seek(5, false), static_cast<int64_t>(8 * kChunkSize));
  Allocation punch;
  punch.kind = Allocation::Kind::kPunchHole;
  punch.keep_size = true;
  punch.offset = kChunkSize + 10;  // chunk 1 partly, 2 and 3 whole, 4 partly
  punch.length = 4 * kChunkSize - 20;
  ASSERT_OK(st->Allocate(f.id, punch));
  ASSERT_OK_AND_ASSIGN(Attr a, st->GetAttr(f.id));
  EXPECT_EQ(a.size, 8 * kChunkSize);
  EXPECT_EQ(a.blocks, 6u * 8);
  ASSERT_OK_AND_ASSIGN(std::string data, st->Read(f.id, 0, 8 * kChunkSize));
  EXPECT_EQ(data, std::string(kChunkSize + 10, 'a') + std::string(4 * kChunkSize - 20, '\0') +
                      std::string(3 * kChunkSize + 10, 'a'));
  EXPECT_EQ(seek(0, false), static_cast<int64_t>(2 * kChunkSize));
  EXPECT_EQ(seek(2 * kChunkSize, true), static_cast<int64_t>(4 * kChunkSize));
  EXPECT_EQ(seek(8 * kChunkSize, true), -ENXIO);
  // Zero a range reaching past the end: the size grows, no chunk is written.
  Allocation zero;
  zero.kind = Allocation::Kind::kZeroRange;
  zero.offset = 6 * kChunkSize;
  zero.length = 10 * kChunkSize;
  ASSERT_OK(st->Allocate(f.id, zero));
  ASSERT_OK_AND_ASSIGN(a, st->GetAttr(f.id));
  EXPECT_EQ(a.size, 16 * kChunkSize);
  EXPECT_EQ(a.blocks, 4u * 8);
  EXPECT_EQ(seek(6 * kChunkSize, true), -ENXIO);
  EXPECT_EQ(seek(5 * kChunkSize, false), static_cast<int64_t>(6 * kChunkSize));
  // Reserve: the size only (keep_size: nothing at all), no chunk.
  Allocation reserve;
  reserve.offset = 0;
  reserve.length = uint64_t{1} << 30;
  ASSERT_OK(st->Allocate(f.id, reserve));
  ASSERT_OK_AND_ASSIGN(a, st->GetAttr(f.id));
  EXPECT_EQ(a.size, uint64_t{1} << 30);
  EXPECT_EQ(a.blocks, 4u * 8);
  reserve.keep_size = true;
  reserve.length = uint64_t{2} << 30;
  ASSERT_OK(st->Allocate(f.id, reserve));
  EXPECT_EQ(st->GetAttr(f.id)->size, uint64_t{1} << 30);
  reserve.keep_size = false;
  reserve.offset = kMaxFileSize;
  EXPECT_EQ(ErrnoOf(st->Allocate(f.id, reserve)), EFBIG);
  reserve.offset = 0;
  reserve.length = 0;
  EXPECT_EQ(ErrnoOf(st->Allocate(f.id, reserve)), EINVAL);
  // Inline files: zeros in place.
  ASSERT_OK_AND_ASSIGN(Attr small, st->Create(kRootId, "small", 0644, kUser));
  ASSERT_OK(st->Write(small.id, 0, "abcdef"));
  punch.offset = 1;
  punch.length = 2;
  ASSERT_OK(st->Allocate(small.id, punch));
  EXPECT_EQ(ReadAll(*st, small.id), std::string("a\0\0def", 6));
  EXPECT_EQ(*st->Seek(small.id, 1, true), 1u);
  EXPECT_EQ(*st->Seek(small.id, 1, false), 6u);
  ASSERT_OK_AND_ASSIGN(Attr d, st->Mkdir(kRootId, "d", 0755, kUser));
  EXPECT_EQ(ErrnoOf(st->Allocate(d.id, punch)), EISDIR);
  EXPECT_EQ(ErrnoOf(st->Seek(d.id, 0, true).status()), EISDIR);
  // All of it survives a reopen.
  ASSERT_OK(st->Close());
  st.reset();
  ASSERT_OK_AND_ASSIGN(st, Open());
  ASSERT_OK_AND_ASSIGN(a, st->Resolve("f"));
  EXPECT_EQ(a.size, uint64_t{1} << 30);
  EXPECT_EQ(a.blocks, 4u * 8);
  EXPECT_EQ(CountChunkKeys(*st), 4u);
}

constexpr size_t kFlagsEnd = 1 + 1 + 4 + 4 + 4 + 8 + 8 + 8 + 8 + 8 + 1;

void PutLe(std::string* out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}

// Node version 2, as kvfs wrote it before xattr keys: the set (n.inline_xattrs) in the node.
std::string EncodeNodeV2(const Node& n) {
  Node bare = n;
  bare.inline_xattrs.clear();
  bare.xattr_count = bare.xattr_name_bytes = 0;
  bare.xattr_value_bytes = 0;
  std::string v3 = EncodeNode(bare);
  // Version 3 is version 2 with u32 count, u32 name bytes, u64 value bytes for the set.
  std::string set;
  PutLe(&set, n.inline_xattrs.size(), 4);
  for (const auto& [name, value] : n.inline_xattrs) {
    PutLe(&set, name.size(), 2);
    set += name;
    PutLe(&set, value.size(), 4);
    set += value;
  }
  v3.replace(kFlagsEnd + 20, 16, set);
  v3[0] = 2;
  return v3;
}

// Node version 1, as kvfs wrote it before link counts (no nlink, no rdev).
std::string EncodeNodeV1(const Node& n) {
  std::string v2 = EncodeNodeV2(n);
  // Version 2 is version 1 with u32 nlink, u64 rdev and u64 chunks after the flags byte.
  v2.erase(kFlagsEnd, 20);
  v2[0] = 1;
  return v2;
}

// A store written by the kvfs before link counts (layout 1, version-1 nodes) still reads, with
// its directories' counts counted; its first writable open rewrites it as layout 3.
TEST_P(FileStoreTest, ALayoutOneStoreReadsAndIsUpgradedByAWritableOpen) {
  {
    engines::EngineOptions o;
    o.background_work = false;
    ASSERT_OK_AND_ASSIGN(auto engine, engines::OpenEngine(GetParam(), &fs_, kDir, o));
    engines::WriteBatch b;
    Node dir;
    dir.type = NodeType::kDirectory;
    dir.mode = 0755;
    dir.id = kRootId;
    b.Put("V", "kvfs-layout 1");
    b.Put("N", EncodeU64(kFirstFreeId + 1024));
    b.Put(NodeKey(""), EncodeNodeV1(dir));
    dir.id = 20;
    b.Put(NodeKey("a"), EncodeNodeV1(dir));
    dir.id = 21;
    b.Put(NodeKey("a/x"), EncodeNodeV1(dir));
    dir.id = 22;
    b.Put(NodeKey("a/y"), EncodeNodeV1(dir));
    Node file;
    file.mode = 0644;
    file.id = 23;
    file.size = 2;
    file.inline_data = "hi";
    file.inline_xattrs["user.old"] = "kept";
    b.Put(NodeKey("a/f"), EncodeNodeV1(file));
    Node big;  // chunked: chunks 0 and 5 of 6
    big.mode = 0644;
    big.id = 24;
    big.size = 6 * kChunkSize;
    big.data_inline = false;
    big.inline_data.clear();
    b.Put(NodeKey("big"), EncodeNodeV1(big));
    b.Put(ChunkKey(24, 0), std::string(kChunkSize, 'b'));
    b.Put(ChunkKey(24, 5), std::string(kChunkSize, 'b'));
    ASSERT_OK(engine->Apply(b));
    ASSERT_OK(engine->Sync(engines::SyncKind::kFull));
    ASSERT_OK(engine->Close());
  }
  {
    // Read-only (kvfs check, ls): counted, nothing written.
    engines::EngineOptions o;
    o.read_only = true;
    o.background_work = false;
    ASSERT_OK_AND_ASSIGN(auto engine, engines::OpenEngine(GetParam(), &fs_, kDir, o));
    FileStoreOptions fo;
    fo.read_only = true;
    ASSERT_OK_AND_ASSIGN(auto st, FileStore::Open(std::move(engine), fo));
    EXPECT_EQ(st->Resolve("")->nlink, 3u);
    EXPECT_EQ(st->Resolve("a")->nlink, 4u);
    EXPECT_EQ(st->Resolve("big")->blocks, 16u);  // its chunk keys, counted
    EXPECT_EQ(st->Resolve("a/f")->nlink, 1u);
    EXPECT_EQ(ReadAll(*st, st->Resolve("a/f")->id), "hi");
    std::vector<uint32_t> listed;
    ASSERT_OK(st->ReadDir(st->Resolve("a")->id, "", false, [&](const DirEntry& e) {
      listed.push_back(e.attr.nlink);
      return true;
    }));
    EXPECT_EQ(listed, (std::vector<uint32_t>{1, 2, 2}));
    EXPECT_EQ(*st->GetXattr(st->Resolve("a/f")->id, "user.old"), "kept");
    EXPECT_EQ(*st->engine()->Get("V"), "kvfs-layout 1");
    ASSERT_OK(st->Close());
  }
  ASSERT_OK_AND_ASSIGN(auto st, Open());
  EXPECT_EQ(*st->engine()->Get("V"), "kvfs-layout 3");
  for (const char* path : {"", "a", "a/x", "a/f"}) {
    const std::string key = NodeKey(path);
    ASSERT_OK_AND_ASSIGN(std::string value, st->engine()->Get(key));
    EXPECT_EQ(value[0], 3) << path << ": rewritten in version 3";
  }
  EXPECT_EQ(*st->engine()->Get(XattrKey(23, "user.old")), "kept");
  EXPECT_EQ(*st->GetXattr(st->Resolve("a/f")->id, "user.old"), "kept");
  ASSERT_OK_AND_ASSIGN(Node a, DecodeNode(*st->engine()->Get(NodeKey("a")), "a"));
  EXPECT_EQ(a.nlink, 4u);
  ASSERT_OK_AND_ASSIGN(Node big, DecodeNode(*st->engine()->Get(NodeKey("big")), "big"));
  EXPECT_EQ(big.chunks, 2u);
  ASSERT_OK(st->Mkdir(kRootId, "b", 0755, kUser));
  EXPECT_EQ(st->Resolve("")->nlink, 4u);
  EXPECT_EQ(ReadAll(*st, st->Resolve("a/f")->id), "hi");
}

// A store written by the kvfs before xattr keys (layout 2: each node holds its whole set, a
// hard-linked file's in its shared record) reads with its attributes; its first writable open
// moves every set to keys in one batch, and rewrites the version key.
TEST_P(FileStoreTest, ALayoutTwoStoreKeepsItsXattrsAndIsUpgradedByAWritableOpen) {
  {
    engines::EngineOptions o;
    o.background_work = false;
    ASSERT_OK_AND_ASSIGN(auto engine, engines::OpenEngine(GetParam(), &fs_, kDir, o));
    engines::WriteBatch b;
    Node dir;
    dir.type = NodeType::kDirectory;
    dir.mode = 0755;
    dir.id = kRootId;
    dir.nlink = 3;
    dir.inline_xattrs["user.root"] = "r";
    b.Put("V", "kvfs-layout 2");
    b.Put("N", EncodeU64(kFirstFreeId + 1024));
    b.Put(NodeKey(""), EncodeNodeV2(dir));
    dir.id = 20;
    dir.nlink = 2;
    dir.inline_xattrs = {{"user.d", "dir"}};
    b.Put(NodeKey("d"), EncodeNodeV2(dir));
    Node file;
    file.mode = 0644;
    file.id = 21;
    file.size = 2;
    file.inline_data = "hi";
    for (int i = 0; i < 100; ++i) file.inline_xattrs["user.k" + std::to_string(i)] = "v";
    b.Put(NodeKey("f"), EncodeNodeV2(file));
    Node linked = file;  // two names, one shared record
    linked.id = 22;
    linked.nlink = 2;
    linked.inline_xattrs = {{"user.shared", std::string(3000, 's')}};
    b.Put(SharedKey(22), EncodeNodeV2(linked));
    Node stub;
    stub.id = 22;
    stub.linked = true;
    b.Put(NodeKey("l1"), EncodeNodeV2(stub));
    b.Put(NodeKey("d/l2"), EncodeNodeV2(stub));
    Node plain = file;  // no attributes: its record can stay as it is
    plain.id = 23;
    plain.inline_xattrs.clear();
    b.Put(NodeKey("plain"), EncodeNodeV2(plain));
    ASSERT_OK(engine->Apply(b));
    ASSERT_OK(engine->Sync(engines::SyncKind::kFull));
    ASSERT_OK(engine->Close());
  }
  auto expect_all = [&](FileStore& st) {
    EXPECT_EQ(*st.GetXattr(kRootId, "user.root"), "r");
    EXPECT_EQ(*st.GetXattr(st.Resolve("d")->id, "user.d"), "dir");
    const uint64_t f = st.Resolve("f")->id;
    EXPECT_EQ(st.ListXattr(f)->size(), 100u);
    EXPECT_EQ(*st.GetXattr(f, "user.k42"), "v");
    EXPECT_EQ(ErrnoOf(st.GetXattr(f, "user.none").status()), ENODATA);
    EXPECT_EQ(st.GetXattr(st.Resolve("d/l2")->id, "user.shared")->size(), 3000u);
    EXPECT_EQ(*st.ListXattr(st.Resolve("l1")->id), std::vector<std::string>{"user.shared"});
    EXPECT_TRUE(st.ListXattr(st.Resolve("plain")->id)->empty());
    EXPECT_EQ(ReadAll(st, f), "hi");
  };
  {
    // Read-only (kvfs check, ls): read from the nodes, nothing written.
    engines::EngineOptions o;
    o.read_only = true;
    o.background_work = false;
    ASSERT_OK_AND_ASSIGN(auto engine, engines::OpenEngine(GetParam(), &fs_, kDir, o));
    FileStoreOptions fo;
    fo.read_only = true;
    ASSERT_OK_AND_ASSIGN(auto st, FileStore::Open(std::move(engine), fo));
    expect_all(*st);
    EXPECT_EQ(*st->engine()->Get("V"), "kvfs-layout 2");
    EXPECT_TRUE(XattrKeys(*st).empty());
    ASSERT_OK(st->Close());
  }
  ASSERT_OK_AND_ASSIGN(auto st, Open());
  EXPECT_EQ(*st->engine()->Get("V"), "kvfs-layout 3");
  EXPECT_EQ(XattrKeys(*st).size(), 1u + 1 + 100 + 1);
  EXPECT_EQ(*st->engine()->Get(XattrKey(22, "user.shared")), std::string(3000, 's'));
  for (const std::string& key : {NodeKey(""), NodeKey("d"), NodeKey("f"), SharedKey(22)}) {
    EXPECT_EQ(st->engine()->Get(key)->at(0), 3) << EscapeKey(key) << " rewritten in version 3";
  }
  EXPECT_EQ(st->engine()->Get(NodeKey("plain"))->at(0), 2) << "nothing to move: left alone";
  Node f = NodeAt(*st, NodeKey("f"));
  EXPECT_TRUE(f.inline_xattrs.empty());
  EXPECT_EQ(f.xattr_count, 100u);
  expect_all(*st);
  // And it changes as any other: the set's new keys, the node's counts.
  const uint64_t fid = st->Resolve("f")->id;
  ASSERT_OK(st->RemoveXattr(fid, "user.k0"));
  ASSERT_OK(st->SetXattr(st->Resolve("plain")->id, "user.new", "n", 0));
  ASSERT_OK(st->Close());
  st.reset();
  ASSERT_OK_AND_ASSIGN(st, Open());
  EXPECT_EQ(st->ListXattr(st->Resolve("f")->id)->size(), 99u);
  EXPECT_EQ(*st->GetXattr(st->Resolve("plain")->id, "user.new"), "n");
}

// A kvfs of a later layout than it knows is refused by its version key, before any node.
TEST_P(FileStoreTest, AnUnknownLayoutIsRefusedByName) {
  {
    ASSERT_OK_AND_ASSIGN(auto st, Open());
    ASSERT_OK(st->engine()->Put("V", "kvfs-layout 4"));
    ASSERT_OK(st->Close());
  }
  auto st = Open();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.status().ToString().find("unknown file layout 'kvfs-layout 4' (this kvfs reads "
                                        "'kvfs-layout 3', 'kvfs-layout 2' and 'kvfs-layout 1')"),
            std::string::npos)
      << st.status().ToString();
}

TEST(Layout, NodeVersionsAndLinkCountsDecodeOrAreRefusedByName) {
  Node dir;
  dir.type = NodeType::kDirectory;
  dir.nlink = 7;
  ASSERT_OK_AND_ASSIGN(Node back, DecodeNode(EncodeNode(dir), "k"));
  EXPECT_EQ(back, dir);
  Node dev;
  dev.type = NodeType::kFile;
  dev.rdev = 0x1234567890;
  dev.nlink = 3;
  ASSERT_OK_AND_ASSIGN(back, DecodeNode(EncodeNode(dev), "k"));
  EXPECT_EQ(back, dev);
  std::string v4 = EncodeNode(dir);
  v4[0] = 4;
  EXPECT_TRUE(DecodeNode(v4, "k").status().IsCorruption());
  EXPECT_NE(DecodeNode(v4, "k").status().ToString().find("unknown node version 4"),
            std::string::npos);
  // Xattr totals: no names, no bytes; every name a byte at least.
  Node f;
  f.xattr_count = 2;
  f.xattr_name_bytes = 9;
  f.xattr_value_bytes = 100;
  ASSERT_OK_AND_ASSIGN(back, DecodeNode(EncodeNode(f), "k"));
  EXPECT_EQ(back, f);
  f.xattr_name_bytes = 1;
  EXPECT_TRUE(DecodeNode(EncodeNode(f), "k").status().IsCorruption());
  f.xattr_count = 0;
  EXPECT_TRUE(DecodeNode(EncodeNode(f), "k").status().IsCorruption());
  // A version-2 node's set decodes, counted.
  Node old;
  old.inline_xattrs = {{"user.a", "12"}, {"user.bc", ""}};
  ASSERT_OK_AND_ASSIGN(back, DecodeNode(EncodeNodeV2(old), "k"));
  EXPECT_EQ(back.inline_xattrs, old.inline_xattrs);
  EXPECT_EQ(back.xattr_count, 2u);
  EXPECT_EQ(back.xattr_name_bytes, 13u);
  EXPECT_EQ(back.xattr_value_bytes, 2u);
  dir.nlink = 1;  // a directory always has "." and its name
  EXPECT_TRUE(DecodeNode(EncodeNode(dir), "k").status().IsCorruption());
  dev.nlink = 0;
  EXPECT_TRUE(DecodeNode(EncodeNode(dev), "k").status().IsCorruption());
}

// Found by tests/fuzz/layout_fuzz: a key whose name part holds '/' decoded to a path whose
// NodeKey is another key, so two keys stood for one path.
TEST(Layout, PathOfNodeKeyRefusesANameHoldingASlash) {
  EXPECT_FALSE(PathOfNodeKey(std::string("Ma\0b/c", 6)).ok());
  EXPECT_FALSE(PathOfNodeKey(std::string("M\0/", 3)).ok());
  ASSERT_OK_AND_ASSIGN(std::string p, PathOfNodeKey(NodeKey("a/b/c")));
  EXPECT_EQ(p, "a/b/c");
  EXPECT_EQ(NodeKey(p), NodeKey("a/b/c"));
}

// An engine that forwards everything and remembers the largest batch it was given.
class BatchCountingEngine final : public engines::Engine {
 public:
  explicit BatchCountingEngine(std::unique_ptr<engines::Engine> inner) : inner_(std::move(inner)) {}
  std::string_view name() const override { return inner_->name(); }
  Result<std::string> Get(std::string_view key) override { return inner_->Get(key); }
  Status Apply(const engines::WriteBatch& batch) override {
    if (fail_in_ > 0 && --fail_in_ == 0) {
      fail_in_ = 1;  // and every later one
      return Status::IOError("injected: the disk failed");
    }
    Raise(&largest_, batch.count());
    if (std::this_thread::get_id() == caller_) Raise(&largest_of_caller_, batch.count());
    return inner_->Apply(batch);
  }
  Status Scan(const engines::ScanOptions& o, const engines::ScanFn& fn) override {
    // The reclaimer's pass begins with a scan of the purge records, holding no lock: held there.
    if (std::this_thread::get_id() != caller_ && o.prefix == kPurgePrefix) {
      std::unique_lock<std::mutex> lock(hold_mu_);
      hold_cv_.wait(lock, [&] { return !hold_; });
      if (fail_) return Status::IOError("the test refuses the reclaimer's scans");
    }
    return inner_->Scan(o, fn);
  }
  Status Sync(engines::SyncKind kind) override { return inner_->Sync(kind); }
  Status Compact() override { return inner_->Compact(); }
  // The n-th Apply from now, and every one after it, fails (EIO) and changes nothing.
  void FailApplyFrom(uint64_t n) { fail_in_ = n; }
  engines::EngineStats stats() const override { return inner_->stats(); }
  Status Close() override { return inner_->Close(); }
  // The largest batch since the last call, in entries: of every thread, or only of the thread
  // that made this engine (the test's: its FileStore calls, not the reclaimer's batches).
  uint64_t TakeLargest() { return largest_.exchange(0); }
  uint64_t TakeLargestOfCaller() { return largest_of_caller_.exchange(0); }
  // While held, the reclaimer waits at the start of its next pass (no lock held); while
  // failed, its passes end there with an error.
  void HoldReclaimer(bool hold) {
    {
      std::lock_guard<std::mutex> lock(hold_mu_);
      hold_ = hold;
    }
    hold_cv_.notify_all();
  }
  void FailReclaimer(bool fail) {
    std::lock_guard<std::mutex> lock(hold_mu_);
    fail_ = fail;
  }

 private:
  static void Raise(std::atomic<uint64_t>* max, uint64_t n) {
    uint64_t seen = max->load();
    while (n > seen && !max->compare_exchange_weak(seen, n)) {
    }
  }
  std::unique_ptr<engines::Engine> inner_;
  const std::thread::id caller_ = std::this_thread::get_id();
  std::atomic<uint64_t> largest_{0};
  std::atomic<uint64_t> largest_of_caller_{0};
  std::mutex hold_mu_;
  std::condition_variable hold_cv_;
  bool hold_ = false;
  bool fail_ = false;
  std::atomic<uint64_t> fail_in_{0};
};

// Unlink of a file of 3000 chunks is one batch of a few keys whatever the file holds (the name,
// the parent, a purge record); the reclaimer then deletes its chunks and xattrs in batches of
// at most 1024 keys (+ the record), and nothing of any other file. Also through Forget of an
// orphan and rename over a file, and a purge left by a Close resumes at the next Open.
TEST_P(FileStoreTest,
       UnlinkOfABigFileIsOneSmallBatchAndTheReclaimerDeletesItsKeysInBoundedBatches) {
  constexpr uint64_t kChunks = 3008;  // 94 writes of 128 KiB
  BatchCountingEngine* counting = nullptr;
  auto open = [&]() -> Result<std::unique_ptr<FileStore>> {
    engines::EngineOptions o;
    o.segment_size = 4 << 20;
    o.background_work = false;
    KVFS_ASSIGN_OR_RETURN(auto engine, engines::OpenEngine(GetParam(), &fs_, kDir, o));
    auto wrapped = std::make_unique<BatchCountingEngine>(std::move(engine));
    counting = wrapped.get();
    return FileStore::Open(std::move(wrapped), FileStoreOptions{});
  };
  ASSERT_OK_AND_ASSIGN(auto st, open());
  const std::string chunk_data(128 << 10, 'b');
  auto make_big = [&](const std::string& name) -> Attr {
    auto f = st->Create(kRootId, name, 0644, kUser);
    EXPECT_OK(f.status());
    for (uint64_t off = 0; off < kChunks * kChunkSize; off += chunk_data.size()) {
      EXPECT_OK(st->Write(f->id, off, chunk_data).status());
    }
    for (int i = 0; i < 5; ++i) {
      EXPECT_OK(st->SetXattr(f->id, "user.x" + std::to_string(i), "v", 0));
    }
    return *f;
  };
  ASSERT_OK_AND_ASSIGN(Attr keep, st->Create(kRootId, "keep", 0644, kUser));
  ASSERT_OK(st->Write(keep.id, 0, std::string(5 * kChunkSize + 3, 'k')));
  ASSERT_OK(st->SetXattr(keep.id, "user.keep", "yes", 0));
  const Attr big = make_big("big");
  ASSERT_EQ(CountKeys(*st, ChunkPrefix(big.id)), kChunks);
  st->Forget(big.id, 1000);

  counting->TakeLargestOfCaller();
  ASSERT_OK(st->Unlink(kRootId, "big"));
  EXPECT_LE(counting->TakeLargestOfCaller(), 8u) << "the unlink's batch grows with the file";
  ASSERT_OK(st->WaitForPurges());
  EXPECT_LE(counting->TakeLargest(), 1025u) << "a reclaimer batch past its bound";
  EXPECT_EQ(CountKeys(*st, ChunkPrefix(big.id)), 0u);
  EXPECT_EQ(CountKeys(*st, XattrPrefix(big.id)), 0u);
  EXPECT_EQ(CountKeys(*st, std::string(kPurgePrefix)), 0u);
  EXPECT_EQ(st->stats().purges, 1u);
  EXPECT_EQ(st->stats().purged_keys, kChunks + 5);
  EXPECT_EQ(ReadAll(*st, keep.id), std::string(5 * kChunkSize + 3, 'k'));
  EXPECT_EQ(*st->GetXattr(keep.id, "user.keep"), "yes");
  EXPECT_EQ(CountKeys(*st, ChunkPrefix(keep.id)), 6u);

  // An orphan: unlinked while held (its keys stay), then forgotten.
  const Attr held = make_big("held");
  counting->TakeLargest();
  ASSERT_OK(st->Unlink(kRootId, "held"));
  EXPECT_EQ(ReadAll(*st, held.id).size(), kChunks * kChunkSize);
  st->Forget(held.id, 1000);
  ASSERT_OK(st->WaitForPurges());
  EXPECT_LE(counting->TakeLargest(), 1025u);
  EXPECT_EQ(CountKeys(*st, ChunkPrefix(held.id)), 0u);
  EXPECT_EQ(CountKeys(*st, XattrPrefix(held.id)), 0u);
  EXPECT_EQ(CountKeys(*st, std::string(kOrphanPrefix)), 0u);
  EXPECT_EQ(CountKeys(*st, std::string(kPurgePrefix)), 0u);

  // Rename over a big file.
  const Attr over = make_big("over");
  st->Forget(over.id, 1000);
  counting->TakeLargestOfCaller();
  ASSERT_OK(st->Rename(kRootId, "keep", kRootId, "over", 0));
  EXPECT_LE(counting->TakeLargestOfCaller(), 8u);
  ASSERT_OK(st->WaitForPurges());
  EXPECT_EQ(CountKeys(*st, ChunkPrefix(over.id)), 0u);
  EXPECT_EQ(ReadAll(*st, keep.id), std::string(5 * kChunkSize + 3, 'k'));

  // Keys of a removed file and its purge record, as a crash mid-purge leaves them: the next
  // Open's reclaimer finishes the purge.
  constexpr uint64_t kDead = 900000;
  ASSERT_OK(st->Close());
  st.reset();
  {
    auto e = engines::OpenEngine(GetParam(), &fs_, kDir, {});
    ASSERT_OK(e.status());
    for (uint64_t i = 0; i < kChunks; i += 500) {
      engines::WriteBatch batch;
      for (uint64_t c = i; c < i + 500 && c < kChunks; ++c) batch.Put(ChunkKey(kDead, c), "d");
      ASSERT_OK((*e)->Apply(batch));
    }
    ASSERT_OK((*e)->Put(XattrKey(kDead, "user.dead"), "x"));
    ASSERT_OK((*e)->Put(PurgeKey(kDead), EncodeU64(0)));
    ASSERT_OK((*e)->Close());
  }
  ASSERT_OK_AND_ASSIGN(st, open());
  ASSERT_OK(st->WaitForPurges());
  EXPECT_LE(counting->TakeLargest(), 1025u);
  EXPECT_EQ(CountKeys(*st, ChunkPrefix(kDead)), 0u);
  EXPECT_EQ(CountKeys(*st, XattrPrefix(kDead)), 0u);
  EXPECT_EQ(CountKeys(*st, std::string(kPurgePrefix)), 0u);
  EXPECT_EQ(st->stats().purged_keys, kChunks + 1);
  ASSERT_OK_AND_ASSIGN(Attr kept, st->Resolve("over"));
  EXPECT_EQ(ReadAll(*st, kept.id), std::string(5 * kChunkSize + 3, 'k'));
}

// A sync that fails under the reclaimer's batch (a `batch` log of one record per sync: the
// reclaimer syncs after each of its batches) stops it: the pass ends with the error, nothing is
// retried into a success, the record stays; the next open finishes the purge and the other file is
// intact.
TEST_P(FileStoreTest, AFailedSyncStopsTheReclaimerAndTheNextOpenFinishes) {
  uint64_t id = 0;
  {
    // The batch timer never syncs here (its window is a minute): the reclaimer's own sync of
    // its first batch is the first sync of another thread, not a timer's that beat this
    // thread's sync of the unlink.
    ASSERT_OK_AND_ASSIGN(auto st,
                         Open(sync::SyncMode::kBatch, false, 1, std::chrono::milliseconds(60000)));
    ASSERT_OK_AND_ASSIGN(Attr keep, st->Create(kRootId, "keep", 0644, kUser));
    ASSERT_OK(st->Write(keep.id, 0, std::string(3 * kChunkSize, 'k')));
    ASSERT_OK_AND_ASSIGN(Attr f, st->Create(kRootId, "f", 0644, kUser));
    id = f.id;
    ASSERT_OK(st->Write(f.id, 0, std::string(3000 * kChunkSize, 'f')));
    st->Forget(f.id, 1);
    // The first sync of another thread than this one of the log segment this thread synced
    // last (the unlink's), i.e. the reclaimer's first batch, fails. Not any other thread's: the
    // log's segment preparer may still be syncing the next segment, a file of its own.
    const std::thread::id self = std::this_thread::get_id();
    std::atomic<bool> armed{false};
    std::mutex own_mu;
    std::string own_path;
    fs_.SetBeforeSyncHook([&](const std::string& path) {
      std::lock_guard<std::mutex> l(own_mu);
      if (std::this_thread::get_id() == self) {
        own_path = path;
      } else if (path == own_path && !armed.exchange(true)) {
        fs_.FailSyncAfter(1);
      }
    });
    ASSERT_OK(st->Unlink(kRootId, "f"));
    EXPECT_FALSE(st->WaitForPurges().ok());
    EXPECT_TRUE(armed.load());
    EXPECT_EQ(st->stats().purges, 0u);
    st->Close().PermitUnchecked();
    fs_.SetBeforeSyncHook(nullptr);
  }
  fs_.Crash(sync::CrashMode::kDropUnsynced);  // a reboot: the failed log is not written again
  ASSERT_OK_AND_ASSIGN(auto st, Open());
  ASSERT_OK(st->WaitForPurges());
  EXPECT_EQ(CountKeys(*st, ChunkPrefix(id)), 0u);
  EXPECT_EQ(CountKeys(*st, std::string(kPurgePrefix)), 0u);
  EXPECT_EQ(ErrnoOf(st->Resolve("f").status()), ENOENT);
  ASSERT_OK_AND_ASSIGN(Attr keep, st->Resolve("keep"));
  EXPECT_EQ(ReadAll(*st, keep.id), std::string(3 * kChunkSize, 'k'));
}

class FileStoreTruncateTest : public FileStoreTest {
 protected:
  // `hold`: the reclaimer held from the start (BatchCountingEngine::HoldReclaimer).
  Result<std::unique_ptr<FileStore>> OpenCounting(bool hold = false) {
    engines::EngineOptions o;
    o.segment_size = 4 << 20;
    o.background_work = false;
    KVFS_ASSIGN_OR_RETURN(auto engine, engines::OpenEngine(GetParam(), &fs_, kDir, o));
    auto wrapped = std::make_unique<BatchCountingEngine>(std::move(engine));
    counting_ = wrapped.get();
    counting_->HoldReclaimer(hold);
    return FileStore::Open(std::move(wrapped), FileStoreOptions{});
  }
  // Declared after the store in a test: lets a held reclaimer go before the store's destructor
  // waits for it, whichever way the test ends.
  struct Release {
    FileStoreTruncateTest* t;
    ~Release() {
      if (t->counting_ != nullptr) t->counting_->HoldReclaimer(false);
    }
  };
  // A file of `chunks` full chunks of `c`, written 128 KiB at a time.
  Attr MakeFile(FileStore& st, const std::string& name, uint64_t chunks, char c) {
    auto f = st.Create(kRootId, name, 0644, kUser);
    EXPECT_OK(f.status());
    const std::string piece(128 << 10, c);
    for (uint64_t off = 0; off < chunks * kChunkSize; off += piece.size()) {
      const uint64_t n = std::min<uint64_t>(piece.size(), chunks * kChunkSize - off);
      EXPECT_OK(st.Write(f->id, off, std::string_view(piece).substr(0, n)).status());
    }
    return *f;
  }
  static Status Truncate(FileStore& st, uint64_t id, uint64_t size) {
    AttrChange c;
    c.size = size;
    return st.SetAttr(id, c).status();
  }
  // The chunk indexes file `id` holds keys for.
  static std::vector<uint64_t> Chunks(FileStore& st, uint64_t id) {
    std::vector<uint64_t> out;
    engines::ScanOptions so;
    so.prefix = ChunkPrefix(id);
    so.keys_only = true;
    EXPECT_OK(st.engine()->Scan(so, [&](std::string_view key, std::string_view) {
      out.push_back(*DecodeU64(key.substr(9), key));
      return true;
    }));
    return out;
  }
  BatchCountingEngine* counting_ = nullptr;
};

// Truncating a 3008-chunk file to 1 byte and another to 0 is one batch of a few keys each (the
// node and a purge record), with the reclaimer held; the reclaimer then deletes the dropped
// chunks in batches of at most 1025 entries. Meanwhile and afterwards, the file extended again
// (truncate up, and a write far past the end) reads zeros where the old bytes were, its chunk
// count and keys are exactly what it holds, and its xattr stays.
TEST_P(FileStoreTruncateTest, TruncateIsOneSmallBatchAndTheDroppedBytesNeverComeBack) {
  constexpr uint64_t kChunks = 3008;
  ASSERT_OK_AND_ASSIGN(auto st, OpenCounting());
  Release release{this};
  const Attr a = MakeFile(*st, "a", kChunks, 'a');
  const Attr b = MakeFile(*st, "b", kChunks, 'b');
  ASSERT_OK(st->SetXattr(a.id, "user.a", "x", 0));
  ASSERT_OK(st->WaitForPurges());
  counting_->HoldReclaimer(true);
  counting_->TakeLargestOfCaller();
  ASSERT_OK(Truncate(*st, a.id, 1));
  EXPECT_LE(counting_->TakeLargestOfCaller(), 8u) << "truncate to 1 byte grows with the file";
  ASSERT_OK(Truncate(*st, b.id, 0));
  EXPECT_LE(counting_->TakeLargestOfCaller(), 8u) << "truncate to 0 grows with the file";
  EXPECT_EQ(st->GetAttr(b.id)->blocks, 0u);
  EXPECT_EQ(ReadAll(*st, b.id), "");

  // Extended while the old chunks are still there: zeros, never the old bytes.
  const uint64_t big = kChunks * kChunkSize;
  ASSERT_OK(Truncate(*st, a.id, big));
  ASSERT_OK(Truncate(*st, b.id, big));
  std::string want_a = "a" + std::string(big - 1, '\0');
  EXPECT_TRUE(ReadAll(*st, a.id) == want_a) << "old bytes read back after truncate + extend";
  EXPECT_TRUE(ReadAll(*st, b.id) == std::string(big, '\0'));
  EXPECT_EQ(st->GetAttr(a.id)->blocks, 8u);  // chunk 0 only
  EXPECT_EQ(ErrnoOf(st->Seek(b.id, 0, /*data=*/true).status()), ENXIO);
  EXPECT_EQ(*st->Seek(a.id, 0, /*data=*/false), kChunkSize);
  // A write far into the old range (its garbage below goes first, in bounded batches).
  ASSERT_OK(st->Write(b.id, 2000 * kChunkSize + 10, "new").status());
  EXPECT_LE(counting_->TakeLargestOfCaller(), 1025u);
  std::string want_b(big, '\0');
  want_b.replace(2000 * kChunkSize + 10, 3, "new");
  EXPECT_TRUE(ReadAll(*st, b.id) == want_b);
  EXPECT_EQ(st->GetAttr(b.id)->blocks, 8u);

  counting_->HoldReclaimer(false);
  ASSERT_OK(st->WaitForPurges());
  EXPECT_LE(counting_->TakeLargest(), 1025u) << "a reclaimer batch past its bound";
  EXPECT_TRUE(ReadAll(*st, a.id) == want_a);
  EXPECT_TRUE(ReadAll(*st, b.id) == want_b);
  EXPECT_EQ(Chunks(*st, a.id), std::vector<uint64_t>{0});
  EXPECT_EQ(Chunks(*st, b.id), std::vector<uint64_t>{2000});
  EXPECT_EQ(st->GetAttr(a.id)->blocks, 8u);
  EXPECT_EQ(st->GetAttr(b.id)->blocks, 8u);
  EXPECT_EQ(CountKeys(*st, std::string(kPurgePrefix)), 0u);
  EXPECT_EQ(*st->GetXattr(a.id, "user.a"), "x");

  // The same after a reopen (the records are gone; nothing to hide).
  ASSERT_OK(st->Close());
  ASSERT_OK_AND_ASSIGN(st, OpenCounting());
  EXPECT_TRUE(ReadAll(*st, st->Resolve("a")->id) == want_a);
  EXPECT_TRUE(ReadAll(*st, st->Resolve("b")->id) == want_b);
}

// A record left by a close (the reclaimer held until then) hides the old chunks after a
// reopen too, and the reopened store's reclaimer finishes it.
TEST_P(FileStoreTruncateTest, APendingTruncateSurvivesAReopen) {
  ASSERT_OK_AND_ASSIGN(auto st, OpenCounting());
  Release release{this};
  const Attr a = MakeFile(*st, "a", 1500, 'a');
  ASSERT_OK(st->WaitForPurges());
  counting_->FailReclaimer(true);
  ASSERT_OK(Truncate(*st, a.id, 10 * kChunkSize + 5));
  EXPECT_FALSE(st->WaitForPurges().ok());
  ASSERT_OK(st->Close());
  ASSERT_OK_AND_ASSIGN(st, OpenCounting(/*hold=*/true));
  EXPECT_EQ(CountKeys(*st, std::string(kPurgePrefix)), 1u);
  ASSERT_OK(st->Resolve("a").status());
  ASSERT_OK(Truncate(*st, a.id, 1500 * kChunkSize));
  std::string want =
      std::string(10 * kChunkSize + 5, 'a') + std::string(1490 * kChunkSize - 5, '\0');
  EXPECT_TRUE(ReadAll(*st, a.id) == want);
  counting_->HoldReclaimer(false);
  ASSERT_OK(st->WaitForPurges());
  EXPECT_TRUE(ReadAll(*st, a.id) == want);
  EXPECT_EQ(Chunks(*st, a.id).size(), 11u);
  EXPECT_EQ(st->GetAttr(a.id)->blocks, 88u);
  EXPECT_EQ(CountKeys(*st, std::string(kPurgePrefix)), 0u);
}

// Two truncates before the reclaimer runs (to 2000 chunks, then to 10) leave exactly chunks
// 0..9, the last one cut, and a third to a larger size after an extension (to 2500 chunks)
// uncovers nothing; a sparse file's cut counts what it holds.
TEST_P(FileStoreTruncateTest, TwoTruncatesLeaveExactlyTheRightKeys) {
  ASSERT_OK_AND_ASSIGN(auto st, OpenCounting());
  Release release{this};
  const Attr a = MakeFile(*st, "a", 3000, 'a');
  ASSERT_OK_AND_ASSIGN(Attr s, st->Create(kRootId, "sparse", 0644, kUser));
  for (uint64_t c : {0, 1000, 1999, 2000, 2999}) {
    ASSERT_OK(st->Write(s.id, c * kChunkSize, std::string(kChunkSize, 's')).status());
  }
  ASSERT_OK(st->WaitForPurges());
  counting_->HoldReclaimer(true);
  counting_->TakeLargestOfCaller();
  ASSERT_OK(Truncate(*st, a.id, 2000 * kChunkSize - 5));
  ASSERT_OK(Truncate(*st, a.id, 10 * kChunkSize - 5));
  ASSERT_OK(Truncate(*st, s.id, 2000 * kChunkSize));  // keeps 0, 1000, 1999
  EXPECT_LE(counting_->TakeLargestOfCaller(), 8u);
  EXPECT_EQ(st->GetAttr(a.id)->blocks, 80u);
  EXPECT_EQ(st->GetAttr(s.id)->blocks, 24u);
  ASSERT_OK(Truncate(*st, s.id, 1500 * kChunkSize));  // keeps 0, 1000
  EXPECT_EQ(st->GetAttr(s.id)->blocks, 16u);
  ASSERT_OK(Truncate(*st, a.id, 3000 * kChunkSize));
  ASSERT_OK(Truncate(*st, a.id, 2500 * kChunkSize));
  ASSERT_OK(Truncate(*st, a.id, 3000 * kChunkSize));
  EXPECT_TRUE(ReadAll(*st, a.id) ==
              std::string(10 * kChunkSize - 5, 'a') + std::string(2990 * kChunkSize + 5, '\0'));
  counting_->HoldReclaimer(false);
  ASSERT_OK(st->WaitForPurges());
  std::vector<uint64_t> ten(10);
  for (uint64_t i = 0; i < 10; ++i) ten[i] = i;
  EXPECT_EQ(Chunks(*st, a.id), ten);
  EXPECT_TRUE(ReadAll(*st, a.id) ==
              std::string(10 * kChunkSize - 5, 'a') + std::string(2990 * kChunkSize + 5, '\0'));
  EXPECT_EQ(st->GetAttr(a.id)->blocks, 80u);
  EXPECT_EQ(Chunks(*st, s.id), (std::vector<uint64_t>{0, 1000}));
  EXPECT_EQ(st->GetAttr(s.id)->blocks, 16u);
  EXPECT_EQ(CountKeys(*st, std::string(kPurgePrefix)), 0u);
}

// Truncate to 0, then rewrite (what O_TRUNC and a copy do): the writes moving through the
// pending range cost no purge of their own, and keep their data once the reclaimer has run;
// a write far past the first one purges the garbage between first.
TEST_P(FileStoreTruncateTest, WritesIntoThePendingRangeKeepTheirData) {
  ASSERT_OK_AND_ASSIGN(auto st, OpenCounting());
  Release release{this};
  const Attr a = MakeFile(*st, "a", 2500, 'a');
  ASSERT_OK(st->WaitForPurges());
  const uint64_t purged = st->stats().purged_keys;
  counting_->HoldReclaimer(true);
  ASSERT_OK(Truncate(*st, a.id, 0));
  std::string want;
  const std::string piece(128 << 10, 'n');
  for (int i = 0; i < 40; ++i) {  // 1280 chunks, 128 KiB a write
    ASSERT_OK(st->Write(a.id, want.size(), piece).status());
    want += piece;
  }
  EXPECT_EQ(st->stats().purged_keys, purged) << "a sequential rewrite purged synchronously";
  EXPECT_EQ(st->GetAttr(a.id)->blocks, 1280u * 8);
  // 10 chunks on from the end: the 10 old chunks between go now.
  ASSERT_OK(st->Write(a.id, want.size() + 10 * kChunkSize, "z").status());
  want += std::string(10 * kChunkSize, '\0') + "z";
  EXPECT_EQ(st->stats().purged_keys, purged + 10);
  EXPECT_TRUE(ReadAll(*st, a.id) == want);
  counting_->HoldReclaimer(false);
  ASSERT_OK(st->WaitForPurges());
  EXPECT_TRUE(ReadAll(*st, a.id) == want);
  EXPECT_EQ(Chunks(*st, a.id).size(), 1281u);
  EXPECT_EQ(st->GetAttr(a.id)->blocks, 1281u * 8);
  EXPECT_EQ(CountKeys(*st, std::string(kPurgePrefix)), 0u);
}

// Writers, truncates and the reclaimer at once: four threads each work one file (big writes,
// truncates down and up, writes into the dropped range), checking every read against a model,
// while the reclaimer works through the records they leave. Nothing acknowledged is lost,
// nothing dropped comes back; at the end every file holds exactly its chunks.
TEST_P(FileStoreTruncateTest, ConcurrentWritesTruncatesAndTheReclaimerLoseNothing) {
  ASSERT_OK_AND_ASSIGN(auto st, OpenCounting());
  Release release{this};
  constexpr int kThreads = 4;
  std::vector<uint64_t> ids;
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_OK_AND_ASSIGN(Attr f, st->Create(kRootId, "f" + std::to_string(t), 0644, kUser));
    ids.push_back(f.id);
  }
  std::vector<std::string> models(kThreads);
  std::atomic<int> errors{0};
  auto work = [&](int t) {
    std::mt19937_64 rng(test::TestSeed() + t);
    std::string& m = models[t];
    const uint64_t id = ids[t];
    auto check = [&](const char* what) {
      auto data = st->Read(id, 0, m.size() + 1);
      if (!data.ok() || *data != m) {
        ADD_FAILURE() << "thread " << t << " after " << what << ": content differs";
        ++errors;
      }
    };
    for (int round = 0; round < 12 && errors == 0; ++round) {
      const char c = static_cast<char>('A' + rng() % 26);
      const uint64_t n = (1100 + rng() % 400) * kChunkSize;
      const std::string piece(256 << 10, c);
      for (uint64_t off = 0; off < n; off += piece.size()) {
        EXPECT_OK(st->Write(id, off, piece).status());
        if (m.size() < off + piece.size()) m.resize(off + piece.size(), '\0');
        m.replace(off, piece.size(), piece);
      }
      const uint64_t cut = rng() % 3 == 0 ? rng() % 3000 : (rng() % 1200) * kChunkSize + rng() % 7;
      EXPECT_OK(Truncate(*st, id, cut));
      m.resize(cut);
      check("truncate");
      const uint64_t up = cut + (rng() % 1500) * kChunkSize;
      EXPECT_OK(Truncate(*st, id, up));
      m.resize(up, '\0');
      check("extend");
      for (int w = 0; w < 3; ++w) {
        const uint64_t off = rng() % (m.size() + 1);
        const std::string d(1 + rng() % 9000, static_cast<char>('a' + w));
        EXPECT_OK(st->Write(id, off, d).status());
        if (m.size() < off + d.size()) m.resize(off + d.size(), '\0');
        m.replace(off, d.size(), d);
        check("write");
      }
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) threads.emplace_back(work, t);
  for (auto& th : threads) th.join();
  ASSERT_OK(st->WaitForPurges());
  EXPECT_EQ(CountKeys(*st, std::string(kPurgePrefix)), 0u);
  EXPECT_GT(st->stats().purges, 0u);
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_TRUE(ReadAll(*st, ids[t]) == models[t]) << "file " << t;
    ASSERT_OK_AND_ASSIGN(Attr attr, st->GetAttr(ids[t]));
    const auto chunks = Chunks(*st, ids[t]);
    EXPECT_EQ(attr.blocks, attr.size <= kInlineMax ? (attr.size > 0 ? 8u : 0u) : chunks.size() * 8)
        << "file " << t;
    for (uint64_t c : chunks) EXPECT_LT(c * kChunkSize, attr.size) << "file " << t;
  }
}

INSTANTIATE_TEST_SUITE_P(AllEngines, FileStoreTruncateTest,
                         testing::ValuesIn(engines::FileEngineNames()),
                         [](const auto& info) { return info.param; });

// Everything below directory `dir` (a path), rendered by path relative to it: type, id, link
// count, data or target, xattrs; so two renders are equal iff the same files are there with the
// same contents and attributes.
std::map<std::string, std::string> Render(FileStore& st, const std::string& dir) {
  std::map<std::string, std::string> out;
  std::vector<std::pair<std::string, uint64_t>> todo{{"", st.Resolve(dir)->id}};
  while (!todo.empty()) {
    auto [rel, id] = todo.back();
    todo.pop_back();
    std::vector<DirEntry> entries;
    EXPECT_OK(st.ReadDir(id, "", false, [&](const DirEntry& e) {
      entries.push_back(e);
      return true;
    }));
    for (const DirEntry& e : entries) {
      const std::string path = JoinPath(rel, e.name);
      auto a = st.Lookup(id, e.name);
      EXPECT_OK(a.status());
      if (!a.ok()) continue;
      std::string& r = out[path];
      r = std::to_string(static_cast<int>(a->type)) + " id " + std::to_string(a->id) + " nlink " +
          std::to_string(a->nlink) + " mode " + std::to_string(a->mode);
      if (a->type == NodeType::kDirectory) todo.emplace_back(path, a->id);
      if (a->type == NodeType::kSymlink) r += " -> " + *st.ReadLink(a->id);
      if (a->type == NodeType::kFile) r += " data " + *st.Read(a->id, 0, a->size + 1);
      auto names = st.ListXattr(a->id);
      EXPECT_OK(names.status());
      if (names.ok()) {
        for (const std::string& x : *names) r += " " + x + "=" + *st.GetXattr(a->id, x);
      }
    }
  }
  return out;
}

// A directory of about 5000 descendants (nested) renamed, over an empty directory, exchanged
// with another big one: no batch past 2 * kMoveBatch + 1 entries (a delete and a put per node,
// and the move record), every descendant at its new path with its data, attributes, xattrs and
// hard links, none left at the old one, no move record or parked node left; ids the kernel
// holds follow; RENAME_NOREPLACE and a move into itself still refused; all of it after a
// reopen too. A small directory still moves in one batch with no record.
TEST_P(FileStoreTest, RenamingABigDirectoryMovesItInBoundedBatches) {
  BatchCountingEngine* counting = nullptr;
  auto open = [&]() -> Result<std::unique_ptr<FileStore>> {
    engines::EngineOptions o;
    o.segment_size = 4 << 20;
    o.background_work = false;
    KVFS_ASSIGN_OR_RETURN(auto engine, engines::OpenEngine(GetParam(), &fs_, kDir, o));
    auto wrapped = std::make_unique<BatchCountingEngine>(std::move(engine));
    counting = wrapped.get();
    return FileStore::Open(std::move(wrapped), FileStoreOptions{});
  };
  ASSERT_OK_AND_ASSIGN(auto st, open());
  // big/aA/bB/fF: 10 + 100 directories, 4800 files; some with chunks, some with xattrs, a
  // symlink, a hard link inside the tree and one from outside it.
  ASSERT_OK_AND_ASSIGN(Attr big, st->Mkdir(kRootId, "big", 0755, kUser));
  Attr held_file, held_dir;
  for (int a = 0; a < 10; ++a) {
    ASSERT_OK_AND_ASSIGN(Attr da, st->Mkdir(big.id, "a" + std::to_string(a), 0755, kUser));
    for (int b = 0; b < 10; ++b) {
      ASSERT_OK_AND_ASSIGN(Attr db, st->Mkdir(da.id, "b" + std::to_string(b), 0755, kUser));
      for (int f = 0; f < 48; ++f) {
        const std::string name = "f" + std::to_string(f);
        ASSERT_OK_AND_ASSIGN(Attr file, st->Create(db.id, name, 0640, kUser));
        const std::string data = (a * 100 + b * 10 + f) % 97 == 0
                                     ? std::string(3 * kChunkSize + 5, static_cast<char>('a' + f))
                                     : name + "@" + std::to_string(a) + std::to_string(b);
        ASSERT_OK(st->Write(file.id, 0, data).status());
        if (f % 13 == 0) ASSERT_OK(st->SetXattr(file.id, "user.t", data.substr(0, 8), 0));
        if (a == 3 && b == 4 && f == 5) {
          held_file = file;
        } else {
          st->Forget(file.id, 1);
        }
      }
      if (a == 3 && b == 4) {
        held_dir = db;
      } else {
        st->Forget(db.id, 1);
      }
    }
  }
  ASSERT_OK(st->Symlink(big.id, "sym", "a0/b0/f0", kUser));
  ASSERT_OK_AND_ASSIGN(Attr linked, st->Resolve("big/a1/b1/f1"));
  ASSERT_OK(st->Link(linked.id, big.id, "inner-link"));
  ASSERT_OK(st->Link(linked.id, kRootId, "outer-link"));
  ASSERT_OK_AND_ASSIGN(Attr dst, st->Mkdir(kRootId, "dst", 0755, kUser));
  ASSERT_OK(st->Mkdir(dst.id, "empty", 0755, kUser));
  const auto before = Render(*st, "big");
  ASSERT_EQ(before.size(), 4912u);
  auto no_leftovers = [&](const std::string& old) {
    EXPECT_EQ(ErrnoOf(st->Resolve(old).status()), ENOENT);
    EXPECT_EQ(CountKeys(*st, ChildrenPrefix(old)), 0u);
    EXPECT_EQ(CountKeys(*st, SubtreePrefix(old)), 0u);
    EXPECT_EQ(CountKeys(*st, std::string(kMoveKey)), 0u) << "a move record or a parked node";
  };

  // Over an empty directory.
  counting->TakeLargestOfCaller();
  ASSERT_OK(st->Rename(kRootId, "big", dst.id, "empty", 0));
  EXPECT_LE(counting->TakeLargestOfCaller(), 2 * kMoveBatch + 1) << "a batch grows with the tree";
  EXPECT_EQ(Render(*st, "dst/empty"), before);
  no_leftovers("big");
  ASSERT_OK_AND_ASSIGN(Attr outer, st->Resolve("outer-link"));
  EXPECT_EQ(outer.nlink, 3u);
  EXPECT_EQ(ReadAll(*st, outer.id), "f1@11");
  // Held ids follow the move: the file reads, the directory takes a new name where it now is.
  EXPECT_EQ(ReadAll(*st, held_file.id), "f5@34");
  ASSERT_OK(st->Create(held_dir.id, "new", 0644, kUser));
  ASSERT_OK(st->Resolve("dst/empty/a3/b4/new"));
  ASSERT_OK(st->Unlink(held_dir.id, "new"));
  // Refusals keep their errnos.
  ASSERT_OK_AND_ASSIGN(Attr moved, st->Resolve("dst/empty"));
  ASSERT_OK(st->Mkdir(kRootId, "other", 0755, kUser));
  EXPECT_EQ(ErrnoOf(st->Rename(dst.id, "empty", kRootId, "other", FileStore::kRenameNoReplace)),
            EEXIST);
  EXPECT_EQ(ErrnoOf(st->Rename(kRootId, "dst", held_dir.id, "loop", 0)), EINVAL);
  EXPECT_EQ(Render(*st, "dst/empty"), before);

  // Exchanged with another big directory (600 files): each subtree wholly in the other's place.
  ASSERT_OK_AND_ASSIGN(Attr other, st->Resolve("other"));
  for (int f = 0; f < 600; ++f) {
    ASSERT_OK_AND_ASSIGN(Attr file, st->Create(other.id, "o" + std::to_string(f), 0600, kUser));
    ASSERT_OK(st->Write(file.id, 0, "o" + std::to_string(f)).status());
    st->Forget(file.id, 1);
  }
  const auto other_before = Render(*st, "other");
  counting->TakeLargestOfCaller();
  ASSERT_OK(st->Rename(dst.id, "empty", kRootId, "other", FileStore::kRenameExchange));
  EXPECT_LE(counting->TakeLargestOfCaller(), 2 * kMoveBatch + 1);
  EXPECT_EQ(Render(*st, "other"), before);
  EXPECT_EQ(Render(*st, "dst/empty"), other_before);
  EXPECT_EQ(CountKeys(*st, std::string(kMoveKey)), 0u);
  EXPECT_EQ(st->Resolve("other")->id, moved.id);
  EXPECT_EQ(ReadAll(*st, held_file.id), "f5@34");

  // A small directory: one batch, no record.
  ASSERT_OK_AND_ASSIGN(Attr small, st->Mkdir(kRootId, "small", 0755, kUser));
  for (int f = 0; f < 20; ++f) ASSERT_OK(st->Create(small.id, std::to_string(f), 0644, kUser));
  const uint64_t batches = st->engine()->stats().batches;
  ASSERT_OK(st->Rename(kRootId, "small", dst.id, "small", 0));
  EXPECT_EQ(st->engine()->stats().batches, batches + 1);
  EXPECT_EQ(List(*st, st->Resolve("dst/small")->id).size(), 20u);

  // All of it in the store, not only in memory.
  ASSERT_OK(st->Close());
  ASSERT_OK_AND_ASSIGN(st, open());
  EXPECT_EQ(Render(*st, "other"), before);
  EXPECT_EQ(Render(*st, "dst/empty"), other_before);
  no_leftovers("big");
  EXPECT_EQ(ReadAll(*st, st->Resolve("outer-link")->id), "f1@11");
}

// A big rename whose move fails half-way (the engine fails a batch after the first and one of
// the move's are in): the rename answers EIO, and so does every later operation that would see
// the half-moved tree, naming the rename; nothing is retried. The next open finishes the move
// from its record: every file at the new path, none at the old.
TEST_P(FileStoreTest, ABigRenameFailingHalfWayAnswersEioUntilTheNextOpenFinishesIt) {
  constexpr int kFiles = 1200;
  BatchCountingEngine* failing = nullptr;
  auto open = [&]() -> Result<std::unique_ptr<FileStore>> {
    engines::EngineOptions o;
    o.background_work = false;
    KVFS_ASSIGN_OR_RETURN(auto engine, engines::OpenEngine(GetParam(), &fs_, kDir, o));
    auto wrapped = std::make_unique<BatchCountingEngine>(std::move(engine));
    failing = wrapped.get();
    return FileStore::Open(std::move(wrapped), FileStoreOptions{});
  };
  {
    ASSERT_OK_AND_ASSIGN(auto st, open());
    ASSERT_OK_AND_ASSIGN(Attr big, st->Mkdir(kRootId, "big", 0755, kUser));
    for (int f = 0; f < kFiles; ++f) {
      ASSERT_OK_AND_ASSIGN(Attr file, st->Create(big.id, std::to_string(f), 0644, kUser));
      ASSERT_OK(st->Write(file.id, 0, "data " + std::to_string(f)).status());
      st->Forget(file.id, 1);
    }
    failing->FailApplyFrom(3);  // the rename's first batch and the move's first land
    Status renamed = st->Rename(kRootId, "big", kRootId, "moved", 0);
    EXPECT_EQ(ErrnoOf(renamed), EIO) << renamed.ToString();
    failing->FailApplyFrom(0);
    std::vector<Status> later;
    later.push_back(st->GetAttr(kRootId).status());
    later.push_back(st->Lookup(kRootId, "moved").status());
    later.push_back(st->ReadDir(kRootId, "", false, [](const DirEntry&) { return true; }));
    later.push_back(st->Create(kRootId, "x", 0644, kUser).status());
    for (const Status& s : later) {
      EXPECT_EQ(ErrnoOf(s), EIO) << s.ToString();
      EXPECT_NE(s.message().find("rename of /big to /moved"), std::string::npos) << s.ToString();
    }
    ASSERT_OK(st->Close());
  }
  ASSERT_OK_AND_ASSIGN(auto st, open());
  EXPECT_EQ(ErrnoOf(st->Resolve("big").status()), ENOENT);
  ASSERT_OK_AND_ASSIGN(Attr moved, st->Resolve("moved"));
  EXPECT_EQ(List(*st, moved.id).size(), static_cast<size_t>(kFiles));
  ASSERT_OK_AND_ASSIGN(Attr last, st->Resolve("moved/" + std::to_string(kFiles - 1)));
  EXPECT_EQ(ReadAll(*st, last.id), "data " + std::to_string(kFiles - 1));
  EXPECT_EQ(CountKeys(*st, ChildrenPrefix("big")), 0u);
  EXPECT_EQ(CountKeys(*st, std::string(kMoveKey)), 0u);
}

INSTANTIATE_TEST_SUITE_P(AllEngines, FileStoreTest, testing::ValuesIn(engines::FileEngineNames()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace kvfs::fusefs
