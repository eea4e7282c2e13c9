// Power cuts under the file layer: a random tree workload (creates, writes at offsets,
// truncates, renames, unlinks, mkdirs, rmdirs, mknods, links, punched holes, zeroed ranges,
// reservations, setxattr and removexattr) with fsync, fdatasync and fsync on
// directories in between, cut at every sync point and at random operations, for every engine.
//
// Each FileStore mutation is one engine batch and the log keeps a prefix of batches, so after a
// crash the tree must be EXACTLY the tree as it was after some operation between the last
// acknowledged sync and the crash: nothing acknowledged lost, nothing half-done, nothing never
// written.
#include <gtest/gtest.h>
#include <sys/xattr.h>

#include <algorithm>
#include <map>
#include <random>

#include "engines/engine.h"
#include "fusefs/file_store.h"
#include "sync/durable.h"
#include "sync/fault_file_system.h"
#include "tests/test_util.h"

namespace kvfs::fusefs {
namespace {

constexpr char kDir[] = "/data/store";
const Caller kUser{1000, 1000, 0};

// path -> "d" (directory), "l:<target>" (symlink), "f:<content>" (file), "p" (FIFO) or
// "c:<rdev>" (character device); a file with several names adds "<path>#links" -> "<names>
// with <first name>" for each name (its link count, as the store says, in a snapshot); a
// file whose st_blocks is not its chunks adds "<path>#blocks"; a directory whose
// link count is wrong adds "<path>#nlink" (Snapshot); a file with xattrs adds "<path>#xattrs"
// -> "name=value;..." for each name, and one whose node's xattr counts are not its keys'
// "<path>#xattr-counts"; xattr keys of no file add "#stray-xattrs" (Snapshot).
using Tree = std::map<std::string, std::string>;

struct Params {
  std::string engine;
  bool always;  // sync_every_mutation (sync "always"), else sync "none" plus explicit syncs
  sync::CrashMode mode;
};

std::string Describe(const Params& p) {
  const char* modes[] = {"drop", "prefix", "torn"};
  return p.engine + (p.always ? "_always_" : "_none_") + modes[static_cast<int>(p.mode)];
}

void PrintTo(const Params& p, std::ostream* os) { *os << Describe(p); }

std::string Render(const std::map<std::string, std::string>& xattrs) {
  std::string out;
  for (const auto& [n, v] : xattrs) out += n + "=" + v + ";";
  return out;
}

class Workload {
 public:
  Workload(uint64_t seed, FileStore* st) : rng_(seed), st_(st) {}

  // One random valid operation: the model first, then the store (so when the store fails
  // because the power went, the model holds the state the operation may have reached). Returns
  // the store's status and sets `synced` if the operation was a sync that succeeded.
  Status Step(bool* synced) {
    *synced = false;
    std::vector<std::string> dirs{""}, files, all;
    for (const auto& [p, d] : model_) {
      all.push_back(p);
      if (d == "d") dirs.push_back(p);
      if (d[0] == 'f') files.push_back(p);
    }
    auto pick = [&](const std::vector<std::string>& v) { return v[rng_() % v.size()]; };
    int op = static_cast<int>(rng_() % 16);
    // Every 12th step an fsync of a directory at least: a workload of 60 steps reaches 5 sync
    // points whatever the seed (PowerCutAtEverySyncPoint wants several).
    if (++steps_ % 12 == 0) op = 11;
    if (op <= 1 || files.empty()) {  // create (maybe with data)
      const std::string path = JoinPath(pick(dirs), "f" + std::to_string(next_++));
      KVFS_ASSIGN_OR_RETURN(Attr parent, st_->Resolve(ParentOf(path)));
      model_[path] = "f:";
      ino_[path] = next_++;
      return st_->Create(parent.id, NameOf(path), 0644, kUser).status();
    }
    if (op == 13) {  // fallocate: punch a hole, zero a range or reserve
      const std::string path = pick(files);
      KVFS_ASSIGN_OR_RETURN(Attr f, st_->Resolve(path));
      Allocation a;
      const uint64_t offsets[] = {0, kChunkSize, f.size / 2, kChunkSize - 7, f.size};
      const uint64_t lengths[] = {1, 100, kChunkSize, 3 * kChunkSize + 5, 70000};
      a.offset = offsets[rng_() % 5];
      a.length = lengths[rng_() % 5];
      const int kind = static_cast<int>(rng_() % 3);
      a.kind = kind == 0   ? Allocation::Kind::kPunchHole
               : kind == 1 ? Allocation::Kind::kZeroRange
                           : Allocation::Kind::kReserve;
      a.keep_size = kind == 0 || rng_() % 2 == 0;
      std::string& content = model_[path];
      const uint64_t size = content.size() - 2;
      const uint64_t end = a.offset + a.length;
      if (a.kind != Allocation::Kind::kReserve && a.offset < size) {
        std::fill(content.begin() + static_cast<std::ptrdiff_t>(2 + a.offset),
                  content.begin() + static_cast<std::ptrdiff_t>(2 + std::min(end, size)), '\0');
      }
      if (a.kind != Allocation::Kind::kPunchHole && !a.keep_size && end > size) {
        content.resize(2 + end, '\0');
      }
      Propagate(path);
      return st_->Allocate(f.id, a);
    }
    if (op >= 14) {  // setxattr (create, replace or either) or removexattr on a file
      const std::string path = pick(files);
      KVFS_ASSIGN_OR_RETURN(Attr f, st_->Resolve(path));
      auto& set = xattrs_[ino_[path]];
      const std::string name = "user." + std::string(1, static_cast<char>('a' + rng_() % 5));
      const bool present = set.count(name) > 0;
      if (present && rng_() % 3 == 0) {
        set.erase(name);
        return st_->RemoveXattr(f.id, name);
      }
      const size_t sizes[] = {0, 10, 3000};
      std::string value(sizes[rng_() % 3], static_cast<char>('a' + rng_() % 26));
      set[name] = value;
      const int flags = rng_() % 2 == 0 ? 0 : present ? XATTR_REPLACE : XATTR_CREATE;
      return st_->SetXattr(f.id, name, value, flags);
    }
    if (op == 12) {  // a hard link to a file
      const std::string from = pick(files);
      const std::string path = JoinPath(pick(dirs), "h" + std::to_string(next_++));
      KVFS_ASSIGN_OR_RETURN(Attr f, st_->Resolve(from));
      KVFS_ASSIGN_OR_RETURN(Attr parent, st_->Resolve(ParentOf(path)));
      model_[path] = model_[from];
      ino_[path] = ino_[from];
      return st_->Link(f.id, parent.id, NameOf(path)).status();
    }
    if (op <= 4) {  // write at an offset
      const std::string path = pick(files);
      KVFS_ASSIGN_OR_RETURN(Attr f, st_->Resolve(path));
      const uint64_t offsets[] = {0, f.size, kInlineMax - 2, kChunkSize - 3, f.size / 2};
      return Write(path, f.id, offsets[rng_() % 5]);
    }
    if (op == 5) {  // truncate
      const std::string path = pick(files);
      KVFS_ASSIGN_OR_RETURN(Attr f, st_->Resolve(path));
      AttrChange c;
      const uint64_t sizes[] = {0, f.size / 3, f.size + 5000, kInlineMax + 1};
      c.size = sizes[rng_() % 4];
      model_[path].resize(2 + *c.size, '\0');
      Propagate(path);
      return st_->SetAttr(f.id, c).status();
    }
    if (op == 6) {  // mkdir
      const std::string path = JoinPath(pick(dirs), "d" + std::to_string(next_++));
      KVFS_ASSIGN_OR_RETURN(Attr parent, st_->Resolve(ParentOf(path)));
      model_[path] = "d";
      return st_->Mkdir(parent.id, NameOf(path), 0755, kUser).status();
    }
    if (op == 7) {  // unlink a file, or rmdir an empty directory
      const std::string path = pick(all);
      KVFS_ASSIGN_OR_RETURN(Attr parent, st_->Resolve(ParentOf(path)));
      if (model_[path] == "d") {
        if (model_.lower_bound(path + "/") != model_.end() &&
            model_.lower_bound(path + "/")->first.compare(0, path.size() + 1, path + "/") == 0) {
          return Status::OK();  // not empty: skip
        }
        model_.erase(path);
        return st_->Rmdir(parent.id, NameOf(path));
      }
      model_.erase(path);
      ino_.erase(path);
      return st_->Unlink(parent.id, NameOf(path));
    }
    if (op == 8) {  // rename a file or directory to a new name, or over a file
      const std::string from = pick(all);
      std::string to_dir = pick(dirs);
      if (to_dir == from || to_dir.rfind(from + "/", 0) == 0) return Status::OK();
      std::string to = JoinPath(to_dir, "r" + std::to_string(next_++));
      if (model_[from] != "d" && files.size() > 1 && rng_() % 2) to = pick(files);
      if (to == from) return Status::OK();
      KVFS_ASSIGN_OR_RETURN(Attr fp, st_->Resolve(ParentOf(from)));
      KVFS_ASSIGN_OR_RETURN(Attr tp, st_->Resolve(ParentOf(to)));
      // Two names of one file: rename(2) does nothing.
      const bool one_file = ino_.count(from) && ino_.count(to) && ino_[from] == ino_[to];
      Tree moved;
      std::map<std::string, uint64_t> moved_ino;
      for (auto it = model_.begin(); !one_file && it != model_.end();) {
        if (it->first == from || it->first.rfind(from + "/", 0) == 0) {
          const std::string dest = to + it->first.substr(from.size());
          moved[dest] = it->second;
          if (ino_.count(it->first)) {
            moved_ino[dest] = ino_[it->first];
            ino_.erase(it->first);
          }
          it = model_.erase(it);
        } else {
          ++it;
        }
      }
      if (!one_file) ino_.erase(to);
      for (auto& [p, d] : moved) model_[p] = d;
      for (auto& [p, i] : moved_ino) ino_[p] = i;
      return st_->Rename(fp.id, NameOf(from), tp.id, NameOf(to), 0);
    }
    if (op == 9 && rng_() % 3 == 0) {  // a FIFO or a device
      const std::string path = JoinPath(pick(dirs), "n" + std::to_string(next_++));
      KVFS_ASSIGN_OR_RETURN(Attr parent, st_->Resolve(ParentOf(path)));
      const bool fifo = rng_() % 2 == 0;
      const uint64_t rdev = fifo ? 0 : next_;
      model_[path] = fifo ? "p" : "c:" + std::to_string(rdev);
      return st_
          ->Mknod(parent.id, NameOf(path), fifo ? NodeType::kFifo : NodeType::kCharDevice, 0644,
                  rdev, kUser)
          .status();
    }
    if (op == 9) {  // symlink
      const std::string path = JoinPath(pick(dirs), "l" + std::to_string(next_++));
      KVFS_ASSIGN_OR_RETURN(Attr parent, st_->Resolve(ParentOf(path)));
      model_[path] = "l:target" + path;
      return st_->Symlink(parent.id, NameOf(path), "target" + path, kUser).status();
    }
    // fsync, fdatasync or fsync of a directory
    Status s;
    if (op == 10) {
      KVFS_ASSIGN_OR_RETURN(Attr f, st_->Resolve(pick(files)));
      s = st_->SyncFile(f.id, rng_() % 2 == 0);
    } else {
      KVFS_ASSIGN_OR_RETURN(Attr d, st_->Resolve(pick(dirs)));
      s = st_->SyncDir(d.id);
    }
    *synced = s.ok();
    return s;
  }

  // The tree the store should show: the model, for each file with several names each name's
  // "#links" entry, and for each file with xattrs each name's "#xattrs".
  Tree model() const {
    Tree t = model_;
    for (const auto& [p, i] : ino_) {
      auto set = xattrs_.find(i);
      if (set != xattrs_.end() && !set->second.empty()) t[p + "#xattrs"] = Render(set->second);
    }
    std::map<uint64_t, std::vector<std::string>> names;
    for (const auto& [p, i] : ino_) names[i].push_back(p);
    for (const auto& [i, ps] : names) {
      if (ps.size() < 2) continue;
      for (const std::string& p : ps) {
        t[p + "#links"] = std::to_string(ps.size()) + " with " + ps.front();
      }
    }
    return t;
  }

 private:
  Status Write(const std::string& path, uint64_t id, uint64_t offset) {
    const size_t sizes[] = {1, 100, 4096, 5000, 70000};
    std::string data(sizes[rng_() % 5], '\0');
    for (char& c : data) c = static_cast<char>('a' + rng_() % 26);
    std::string& content = model_[path];
    if (content.size() < 2 + offset + data.size()) content.resize(2 + offset + data.size(), '\0');
    content.replace(2 + offset, data.size(), data);
    Propagate(path);
    return st_->Write(id, offset, data).status();
  }

  // The other names of `path`'s file see what it holds.
  void Propagate(const std::string& path) {
    auto self = ino_.find(path);
    if (self == ino_.end()) return;
    for (const auto& [p, i] : ino_) {
      if (i == self->second && p != path) model_[p] = model_[path];
    }
  }

  std::mt19937_64 rng_;
  FileStore* st_;
  Tree model_;
  std::map<std::string, uint64_t> ino_;  // regular files: path -> the file (one per link group)
  std::map<uint64_t, std::map<std::string, std::string>> xattrs_;  // by file (ino_)
  uint64_t next_ = 0;
  uint64_t steps_ = 0;
};

// The tree as the store shows it. A directory whose link count is not 2 plus its
// subdirectories adds an entry "<dir>#nlink" that no model holds.
// Files by id: their names and link count, as a snapshot finds them.
struct FileNames {
  std::vector<std::string> names;
  uint32_t nlink = 0;
};
using FilesById = std::map<uint64_t, FileNames>;

Status Snapshot(FileStore& st, uint64_t dir_id, const std::string& dir, Tree* out,
                FilesById* files) {
  std::vector<DirEntry> entries;
  KVFS_RETURN_IF_ERROR(st.ReadDir(dir_id, "", false, [&](const DirEntry& e) {
    entries.push_back(e);
    return true;
  }));
  uint32_t subdirs = 0;
  for (const DirEntry& e : entries) subdirs += e.attr.type == NodeType::kDirectory ? 1 : 0;
  KVFS_ASSIGN_OR_RETURN(Attr self, st.GetAttr(dir_id));
  if (self.nlink != 2 + subdirs) {
    (*out)[dir + "#nlink"] = std::to_string(self.nlink) + " for " + std::to_string(subdirs);
  }
  for (const DirEntry& e : entries) {
    const std::string path = JoinPath(dir, e.name);
    KVFS_ASSIGN_OR_RETURN(Attr a, st.Lookup(dir_id, e.name));
    if (a.type == NodeType::kDirectory) {
      (*out)[path] = "d";
      KVFS_RETURN_IF_ERROR(Snapshot(st, a.id, path, out, files));
    } else if (a.type == NodeType::kSymlink) {
      KVFS_ASSIGN_OR_RETURN(std::string target, st.ReadLink(a.id));
      (*out)[path] = "l:" + target;
    } else if (a.type == NodeType::kFifo) {
      (*out)[path] = "p";
    } else if (a.type == NodeType::kCharDevice) {
      (*out)[path] = "c:" + std::to_string(a.rdev);
    } else {
      KVFS_ASSIGN_OR_RETURN(std::string data, st.Read(a.id, 0, a.size + 1));
      (*out)[path] = "f:" + data;
      // st_blocks counts the chunks held (an inline file's one block aside).
      uint64_t chunks = 0;
      engines::ScanOptions so;
      so.prefix = ChunkPrefix(a.id);
      so.keys_only = true;
      KVFS_RETURN_IF_ERROR(st.engine()->Scan(so, [&](std::string_view, std::string_view) {
        ++chunks;
        return true;
      }));
      const bool inline_data = chunks == 0 && a.size > 0 && a.size <= kInlineMax;
      if (a.blocks != (inline_data ? 8 : chunks * 8)) {
        (*out)[path + "#blocks"] =
            std::to_string(a.blocks) + " for " + std::to_string(chunks) + " chunks";
      }
      (*files)[a.id].names.push_back(path);
      (*files)[a.id].nlink = a.nlink;
      // Its xattrs, and the node's counts of them against what its keys hold.
      KVFS_ASSIGN_OR_RETURN(std::vector<std::string> names, st.ListXattr(a.id));
      std::map<std::string, std::string> set;
      uint64_t name_bytes = 0, value_bytes = 0;
      for (const std::string& n : names) {
        KVFS_ASSIGN_OR_RETURN(set[n], st.GetXattr(a.id, n));
        name_bytes += n.size();
        value_bytes += set[n].size();
      }
      if (!set.empty()) (*out)[path + "#xattrs"] = Render(set);
      KVFS_ASSIGN_OR_RETURN(XattrUsage usage, st.XattrUsageOf(a.id));
      if (usage.count != set.size() || usage.name_bytes != name_bytes ||
          usage.value_bytes != value_bytes) {
        (*out)[path + "#xattr-counts"] =
            std::to_string(usage.count) + " for " + std::to_string(set.size());
      }
    }
  }
  return Status::OK();
}

// The whole tree, with each file of several names (or of a link count above 1) marked.
Status Snapshot(FileStore& st, Tree* out) {
  FilesById files;
  KVFS_RETURN_IF_ERROR(Snapshot(st, kRootId, "", out, &files));
  // Every xattr key belongs to a file of the tree (orphans were purged by the open).
  engines::ScanOptions so;
  so.prefix = "X";
  so.keys_only = true;
  KVFS_RETURN_IF_ERROR(st.engine()->Scan(so, [&](std::string_view key, std::string_view) {
    auto id = IdOfXattrKey(key);
    if (!id.ok() || files.count(*id) == 0) (*out)["#stray-xattrs"] += EscapeKey(key) + " ";
    return true;
  }));
  for (auto& [id, f] : files) {
    if (f.nlink < 2 && f.names.size() < 2) continue;
    std::sort(f.names.begin(), f.names.end());
    for (const std::string& p : f.names) {
      (*out)[p + "#links"] = std::to_string(f.nlink) + " with " + f.names.front();
    }
  }
  return Status::OK();
}

class FileStoreCrashTest : public testing::TestWithParam<Params> {
 protected:
  Result<std::unique_ptr<FileStore>> Open(sync::FaultFileSystem* fs) {
    engines::EngineOptions o;
    o.sync_mode = sync::SyncMode::kNone;
    o.segment_size = uint64_t{256} << 10;  // rotations inside the workload
    o.background_work = false;
    KVFS_ASSIGN_OR_RETURN(auto engine, engines::OpenEngine(GetParam().engine, fs, kDir, o));
    FileStoreOptions fo;
    fo.sync_every_mutation = GetParam().always;
    return FileStore::Open(std::move(engine), fo);
  }

  // Runs `steps` operations with a power cut scheduled by `arm`, then checks the invariant.
  // Returns false once the cut did not fire (the workload ran out of sync points).
  bool RunOne(uint64_t seed, int steps, const std::function<void(sync::FaultFileSystem&)>& arm) {
    sync::FaultFileSystem fs(seed);
    EXPECT_OK(sync::CreateDirDurably(&fs, "/data"));
    std::vector<Tree> history;  // history[i]: the tree after i successful operations
    size_t durable = 0;         // history index covered by the last acknowledged sync
    {
      auto st = Open(&fs);
      EXPECT_TRUE(st.ok()) << st.status().ToString();
      if (!st.ok()) return false;
      EXPECT_OK((*st)->SyncAll());  // the empty tree is the durable floor
      history.push_back({});
      arm(fs);
      Workload w(seed, st->get());
      for (int i = 0; i < steps && !fs.crashed(); ++i) {
        bool synced = false;
        Status s = w.Step(&synced);
        if (!s.ok()) {
          EXPECT_TRUE(fs.crashed()) << "seed " << seed << " step " << i << ": " << s.ToString();
          history.push_back(w.model());  // the failed op may or may not have landed
          break;
        }
        history.push_back(w.model());
        if (synced || GetParam().always) durable = history.size() - 1;
      }
      if (!fs.crashed()) return false;
      (*st)->Close().PermitUnchecked();  // the disk is off: this fails, as it should
    }
    fs.Crash(GetParam().mode);
    auto st = Open(&fs);
    EXPECT_TRUE(st.ok()) << "seed " << seed << ": reopen after crash: " << st.status().ToString();
    if (!st.ok()) return true;
    EXPECT_OK((*st)->WaitForPurges());  // removed files' keys, which Snapshot counts as stray
    Tree got;
    EXPECT_OK(Snapshot(**st, &got));
    bool matched = false;
    for (size_t i = durable; i < history.size() && !matched; ++i) matched = history[i] == got;
    EXPECT_TRUE(matched) << "seed " << seed << ": tree after the crash (" << got.size()
                         << " entries) is none of the trees from operation " << durable
                         << " (last acknowledged sync) to " << history.size() - 1;
    EXPECT_OK((*st)->Close());
    return true;
  }
};

TEST_P(FileStoreCrashTest, PowerCutAtEverySyncPoint) {
  const uint64_t base = test::TestSeed();
  int fired = 0;
  for (uint64_t n = 1; n < 200; ++n) {
    if (!RunOne(base, 60, [n](sync::FaultFileSystem& fs) { fs.CrashAtSync(n, GetParam().mode); })) {
      break;
    }
    ++fired;
    if (HasFailure()) break;
  }
  EXPECT_GT(fired, 3) << "the workload should reach several sync points";
}

TEST_P(FileStoreCrashTest, PowerCutAtRandomOperations) {
  const uint64_t base = test::TestSeed();
  std::mt19937_64 rng(base);
  for (int run = 0; run < 25 && !HasFailure(); ++run) {
    const uint64_t at = 1 + rng() % 300;
    RunOne(base * 31 + run, 80,
           [&](sync::FaultFileSystem& fs) { fs.CrashAtOp(at, GetParam().mode); });
  }
}

// A power cut at every sync point of an unlink of a file of 2100 chunks and 3 xattrs and of its
// purge (three reclaimer batches), the log in `batch` mode syncing every record (so every
// batch, the unlink's and each of the reclaimer's, is a sync point). After the cut and a reopen
// (whose reclaimer resumes what the cut left): if the unlink was acknowledged the file is gone,
// else it is there whole; once the reclaimer is done, no chunk or xattr key of a removed file
// and no purge record remain; the other file is intact.
TEST_P(FileStoreCrashTest, PowerCutAtEverySyncPointOfAnUnlinkAndItsPurge) {
  constexpr uint64_t kChunks = 2100;
  auto open = [&](sync::FaultFileSystem* fs) -> Result<std::unique_ptr<FileStore>> {
    engines::EngineOptions o;
    o.sync_mode = sync::SyncMode::kBatch;
    o.batch_records = 1;
    o.segment_size = uint64_t{4} << 20;
    o.background_work = false;
    KVFS_ASSIGN_OR_RETURN(auto engine, engines::OpenEngine(GetParam().engine, fs, kDir, o));
    FileStoreOptions fo;
    fo.sync_every_mutation = GetParam().always;
    return FileStore::Open(std::move(engine), fo);
  };
  const std::string big(kChunks * kChunkSize, 'b');
  const std::string small(3 * kChunkSize + 1, 's');
  int fired = 0;
  for (uint64_t n = 1; n < 50 && !HasFailure(); ++n) {
    sync::FaultFileSystem fs(test::TestSeed() + n);
    ASSERT_OK(sync::CreateDirDurably(&fs, "/data"));
    uint64_t big_id = 0;
    bool unlinked = false;
    {
      ASSERT_OK_AND_ASSIGN(auto st, open(&fs));
      ASSERT_OK_AND_ASSIGN(Attr keep, st->Create(kRootId, "keep", 0644, kUser));
      ASSERT_OK(st->Write(keep.id, 0, small).status());
      ASSERT_OK(st->SetXattr(keep.id, "user.k", "k", 0));
      ASSERT_OK_AND_ASSIGN(Attr f, st->Create(kRootId, "big", 0644, kUser));
      big_id = f.id;
      for (uint64_t off = 0; off < big.size(); off += 256 << 10) {
        ASSERT_OK(st->Write(f.id, off, std::string_view(big).substr(off, 256 << 10)).status());
      }
      for (const char* x : {"user.a", "user.b", "user.c"}) ASSERT_OK(st->SetXattr(f.id, x, x, 0));
      st->Forget(f.id, 1);
      ASSERT_OK(st->SyncAll());
      fs.CrashAtSync(n, GetParam().mode);
      unlinked = st->Unlink(kRootId, "big").ok();
      st->WaitForPurges().PermitUnchecked();
      st->SyncAll().PermitUnchecked();
      const bool fired_now = fs.crashed();
      st->Close().PermitUnchecked();
      if (!fired_now) break;
    }
    ++fired;
    fs.Crash(GetParam().mode);
    ASSERT_OK_AND_ASSIGN(auto st, open(&fs));
    Status purged = st->WaitForPurges();
    ASSERT_TRUE(purged.ok()) << "cut at sync " << n << ": " << purged.ToString();
    auto count = [&](const std::string& prefix) {
      uint64_t keys = 0;
      engines::ScanOptions so;
      so.prefix = prefix;
      so.keys_only = true;
      EXPECT_OK(st->engine()->Scan(so, [&](std::string_view, std::string_view) {
        ++keys;
        return true;
      }));
      return keys;
    };
    auto b = st->Resolve("big");
    if (unlinked) {
      EXPECT_FALSE(b.ok()) << "cut at sync " << n << ": an acknowledged unlink lost";
    }
    if (b.ok()) {
      EXPECT_EQ(*st->Read(b->id, 0, big.size() + 1), big) << "cut at sync " << n;
      EXPECT_EQ(*st->GetXattr(b->id, "user.c"), "user.c");
    } else {
      EXPECT_EQ(count(ChunkPrefix(big_id)), 0u) << "cut at sync " << n;
      EXPECT_EQ(count(XattrPrefix(big_id)), 0u) << "cut at sync " << n;
    }
    EXPECT_EQ(count(std::string(kPurgePrefix)), 0u) << "cut at sync " << n;
    ASSERT_OK_AND_ASSIGN(Attr keep, st->Resolve("keep"));
    EXPECT_EQ(*st->Read(keep.id, 0, small.size() + 1), small) << "cut at sync " << n;
    EXPECT_EQ(*st->GetXattr(keep.id, "user.k"), "k");
    EXPECT_OK(st->Close());
  }
  EXPECT_GE(fired, 4) << "the unlink and each of the reclaimer's three batches is a sync point";
}

// An engine that forwards everything but DeferBatchSyncs: the file layer defers full-batch log
// syncs to after its locks, so a big move's batches would share the one sync at its end; here
// the engine syncs each full batch inside Apply, as it does by itself, so that with the log
// syncing every record each batch of a move, or of a write's purge of a truncated range, is a
// sync point a power cut can land on.
class InlineBatchSyncEngine final : public engines::Engine {
 public:
  explicit InlineBatchSyncEngine(std::unique_ptr<engines::Engine> inner)
      : inner_(std::move(inner)) {}
  std::string_view name() const override { return inner_->name(); }
  Result<std::string> Get(std::string_view key) override { return inner_->Get(key); }
  Status Apply(const engines::WriteBatch& batch) override { return inner_->Apply(batch); }
  Status Scan(const engines::ScanOptions& o, const engines::ScanFn& fn) override {
    return inner_->Scan(o, fn);
  }
  Status Sync(engines::SyncKind kind) override { return inner_->Sync(kind); }
  Status Compact() override { return inner_->Compact(); }
  engines::EngineStats stats() const override { return inner_->stats(); }
  Status Verify() override { return inner_->Verify(); }
  Status Close() override { return inner_->Close(); }

 private:
  std::unique_ptr<engines::Engine> inner_;
};

// A power cut at every sync point of a truncate of a big file, an extension, a write far into
// the dropped range (which first deletes the garbage below it, in two batches) and the
// reclaimer's purge of the rest, the log in `batch` mode syncing every record. After the cut,
// a reopen and the reclaimer: the file is as after the acknowledged operations, or after the
// one the cut interrupted too (an acknowledged truncate stays; the dropped range reads zeros,
// never old bytes; an acknowledged write is there), it holds exactly the chunk keys its
// content needs (none past its size, none the truncate dropped), st_blocks counts them, no
// purge record remains, and the other file is intact.
TEST_P(FileStoreCrashTest, PowerCutAtEverySyncPointOfATruncateExtendWriteAndPurge) {
  constexpr uint64_t kChunks = 2100;
  constexpr uint64_t kCut = kChunkSize + 5;  // keeps chunks 0 and 1
  constexpr uint64_t kFar = 1500;            // the write's chunk
  auto open = [&](sync::FaultFileSystem* fs) -> Result<std::unique_ptr<FileStore>> {
    engines::EngineOptions o;
    o.sync_mode = sync::SyncMode::kBatch;
    o.batch_records = 1;
    o.segment_size = uint64_t{4} << 20;
    o.background_work = false;
    KVFS_ASSIGN_OR_RETURN(auto engine, engines::OpenEngine(GetParam().engine, fs, kDir, o));
    FileStoreOptions fo;
    fo.sync_every_mutation = GetParam().always;
    return FileStore::Open(std::make_unique<InlineBatchSyncEngine>(std::move(engine)), fo);
  };
  // The file after each operation, and the chunk keys it then holds.
  std::vector<std::string> states;
  std::vector<std::vector<uint64_t>> keys;
  states.emplace_back(kChunks * kChunkSize, 'b');
  keys.emplace_back();
  for (uint64_t c = 0; c < kChunks; ++c) keys.back().push_back(c);
  states.push_back(states[0].substr(0, kCut));
  keys.push_back({0, 1});
  states.push_back(states[1] + std::string(kChunks * kChunkSize - kCut, '\0'));
  keys.push_back({0, 1});
  states.push_back(states[2]);
  states.back().replace(kFar * kChunkSize + 7, 3, "new");
  keys.push_back({0, 1, kFar});
  const std::string small(3 * kChunkSize + 1, 's');
  int fired = 0;
  for (uint64_t n = 1; n < 60 && !HasFailure(); ++n) {
    sync::FaultFileSystem fs(test::TestSeed() + n);
    ASSERT_OK(sync::CreateDirDurably(&fs, "/data"));
    size_t acked = 0;  // operations acknowledged, in order
    {
      ASSERT_OK_AND_ASSIGN(auto st, open(&fs));
      ASSERT_OK_AND_ASSIGN(Attr keep, st->Create(kRootId, "keep", 0644, kUser));
      ASSERT_OK(st->Write(keep.id, 0, small).status());
      ASSERT_OK_AND_ASSIGN(Attr f, st->Create(kRootId, "big", 0644, kUser));
      for (uint64_t off = 0; off < states[0].size(); off += 256 << 10) {
        ASSERT_OK(
            st->Write(f.id, off, std::string_view(states[0]).substr(off, 256 << 10)).status());
      }
      ASSERT_OK(st->SetXattr(f.id, "user.a", "a", 0));
      ASSERT_OK(st->SyncAll());
      fs.CrashAtSync(n, GetParam().mode);
      AttrChange cut, up;
      cut.size = kCut;
      up.size = kChunks * kChunkSize;
      if (st->SetAttr(f.id, cut).ok()) {
        ++acked;
        if (st->SetAttr(f.id, up).ok()) {
          ++acked;
          if (st->Write(f.id, kFar * kChunkSize + 7, "new").ok()) ++acked;
        }
      }
      st->WaitForPurges().PermitUnchecked();
      st->SyncAll().PermitUnchecked();
      const bool fired_now = fs.crashed();
      st->Close().PermitUnchecked();
      if (!fired_now) {
        EXPECT_EQ(acked, 3u);
        break;
      }
    }
    ++fired;
    fs.Crash(GetParam().mode);
    ASSERT_OK_AND_ASSIGN(auto st, open(&fs));
    Status purged = st->WaitForPurges();
    ASSERT_TRUE(purged.ok()) << "cut at sync " << n << ": " << purged.ToString();
    ASSERT_OK_AND_ASSIGN(Attr b, st->Resolve("big"));
    auto data = st->Read(b.id, 0, kChunks * kChunkSize + 1);
    ASSERT_OK(data.status());
    // As after the acknowledged operations, or after the interrupted one too.
    size_t state = acked;
    if (*data != states[acked] && acked + 1 < states.size() && *data == states[acked + 1]) {
      state = acked + 1;
    }
    EXPECT_TRUE(*data == states[state])
        << "cut at sync " << n << ", " << acked << " acknowledged: the file is in no state it "
        << "may be in (size " << data->size() << ")";
    std::vector<uint64_t> held;
    engines::ScanOptions so;
    so.prefix = ChunkPrefix(b.id);
    so.keys_only = true;
    ASSERT_OK(st->engine()->Scan(so, [&](std::string_view key, std::string_view) {
      held.push_back(*DecodeU64(key.substr(9), key));
      return true;
    }));
    EXPECT_EQ(held, keys[state]) << "cut at sync " << n;
    EXPECT_EQ(b.blocks, keys[state].size() * (kChunkSize / 512)) << "cut at sync " << n;
    EXPECT_EQ(*st->GetXattr(b.id, "user.a"), "a");
    uint64_t records = 0;
    so.prefix = std::string(kPurgePrefix);
    ASSERT_OK(st->engine()->Scan(so, [&](std::string_view, std::string_view) {
      ++records;
      return true;
    }));
    EXPECT_EQ(records, 0u) << "cut at sync " << n;
    ASSERT_OK_AND_ASSIGN(Attr keep, st->Resolve("keep"));
    EXPECT_EQ(*st->Read(keep.id, 0, small.size() + 1), small) << "cut at sync " << n;
    EXPECT_OK(st->Close());
  }
  // The truncate, the extension, the write's two purge batches and its own, the reclaimer's.
  EXPECT_GE(fired, 6);
}

// A power cut at every sync point of a rename of a directory of 1045 descendants (4
// subdirectories of 260 files, some with chunks or xattrs, one with a second name outside the
// tree) over an empty directory, and of its exchange with a directory of 520 files: each moves
// behind a move record in bounded batches, and with the log in `batch` mode syncing every
// record each batch is a sync point. After the cut: a read-only open either refuses the store
// naming the cut-short rename or shows the tree wholly before or wholly after it; the writable
// reopen (which finishes a pending move) shows it wholly before or after, after if the rename
// was acknowledged, never mixed, no entry lost or doubled (the whole tree is compared, every
// file's data, xattrs and names), and no move record or parked node left.
TEST_P(FileStoreCrashTest, PowerCutAtEverySyncPointOfABigDirectoryRename) {
  auto open = [&](sync::FaultFileSystem* fs, bool each_record,
                  bool read_only) -> Result<std::unique_ptr<FileStore>> {
    engines::EngineOptions o;
    o.sync_mode = each_record ? sync::SyncMode::kBatch : sync::SyncMode::kNone;
    o.batch_records = 1;
    o.segment_size = uint64_t{1} << 20;
    o.background_work = false;
    o.read_only = read_only;
    KVFS_ASSIGN_OR_RETURN(auto engine, engines::OpenEngine(GetParam().engine, fs, kDir, o));
    FileStoreOptions fo;
    fo.sync_every_mutation = GetParam().always;
    fo.read_only = read_only;
    return FileStore::Open(std::make_unique<InlineBatchSyncEngine>(std::move(engine)), fo);
  };
  // The trees before the rename, made durable with few syncs, then reopened syncing each batch.
  auto build = [&](sync::FaultFileSystem* fs) {
    EXPECT_OK(sync::CreateDirDurably(fs, "/data"));
    auto st = open(fs, false, false);
    EXPECT_OK(st.status());
    if (!st.ok()) return;
    FileStore& s = **st;
    auto big = s.Mkdir(kRootId, "big", 0755, kUser);
    for (int d = 0; d < 4; ++d) {
      auto dir = s.Mkdir(big->id, "d" + std::to_string(d), 0755, kUser);
      for (int f = 0; f < 260; ++f) {
        auto file = s.Create(dir->id, "f" + std::to_string(f), 0644, kUser);
        const std::string data = f % 50 == 7 ? std::string(2 * kChunkSize + 1, 'a' + d)
                                             : std::to_string(d) + "/" + std::to_string(f);
        EXPECT_OK(s.Write(file->id, 0, data).status());
        if (f % 40 == 0) EXPECT_OK(s.SetXattr(file->id, "user.f", data.substr(0, 5), 0));
        if (d == 2 && f == 9) EXPECT_OK(s.Link(file->id, kRootId, "outer").status());
      }
    }
    auto dst = s.Mkdir(kRootId, "dst", 0755, kUser);
    EXPECT_OK(s.Mkdir(dst->id, "empty", 0755, kUser).status());
    auto other = s.Mkdir(kRootId, "other", 0755, kUser);
    for (int f = 0; f < 520; ++f) {
      auto file = s.Create(other->id, "o" + std::to_string(f), 0644, kUser);
      EXPECT_OK(s.Write(file->id, 0, "o" + std::to_string(f)).status());
    }
    EXPECT_OK(s.Close());
  };
  for (const bool exchange : {false, true}) {
    const std::string to_dir = exchange ? "" : "dst";
    const std::string to_name = exchange ? "other" : "empty";
    auto rename = [&](FileStore& s) {
      auto parent = s.Resolve(to_dir);
      EXPECT_OK(parent.status());
      return s.Rename(kRootId, "big", parent->id, to_name,
                      exchange ? FileStore::kRenameExchange : 0);
    };
    // The trees wholly before and wholly after, from a run with no cut.
    Tree before, after;
    {
      sync::FaultFileSystem fs(test::TestSeed());
      build(&fs);
      ASSERT_OK_AND_ASSIGN(auto st, open(&fs, true, false));
      ASSERT_OK(Snapshot(*st, &before));
      ASSERT_OK(rename(*st));
      ASSERT_OK(Snapshot(*st, &after));
      ASSERT_OK(st->Close());
      ASSERT_GT(before.size(), 1500u);
      ASSERT_NE(before, after);
    }
    int fired = 0, refused = 0;
    for (uint64_t n = 1; n < 60 && !HasFailure(); ++n) {
      sync::FaultFileSystem fs(test::TestSeed() + n);
      build(&fs);
      bool renamed = false;
      {
        ASSERT_OK_AND_ASSIGN(auto st, open(&fs, true, false));
        fs.CrashAtSync(n, GetParam().mode);
        renamed = rename(*st).ok();
        st->SyncAll().PermitUnchecked();
        const bool fired_now = fs.crashed();
        st->Close().PermitUnchecked();
        if (!fired_now) {
          EXPECT_TRUE(renamed);
          break;
        }
      }
      ++fired;
      fs.Crash(GetParam().mode);
      const std::string at = std::string(exchange ? "exchange" : "rename") + ", cut at sync " +
                             std::to_string(n) + (renamed ? " (acknowledged)" : "");
      {
        auto ro = open(&fs, false, true);
        if (ro.ok()) {
          Tree got;
          ASSERT_OK(Snapshot(**ro, &got));
          EXPECT_TRUE(got == before || got == after) << at << ": read-only open shows it mixed";
          EXPECT_OK((*ro)->Close());
        } else {
          ++refused;
          EXPECT_NE(ro.status().message().find("was cut short"), std::string::npos)
              << at << ": " << ro.status().ToString();
        }
      }
      ASSERT_OK_AND_ASSIGN(auto st, open(&fs, false, false));
      Tree got;
      ASSERT_OK(Snapshot(*st, &got));
      if (renamed) {
        EXPECT_TRUE(got == after) << at << ": an acknowledged rename undone";
      } else {
        EXPECT_TRUE(got == before || got == after) << at << ": the tree is mixed";
      }
      uint64_t left = 0;
      engines::ScanOptions so;
      so.prefix = std::string(kMoveKey);
      so.keys_only = true;
      EXPECT_OK(st->engine()->Scan(so, [&](std::string_view, std::string_view) {
        ++left;
        return true;
      }));
      EXPECT_EQ(left, 0u) << at << ": a move record or a parked node left";
      EXPECT_OK(st->Close());
    }
    EXPECT_GE(fired, exchange ? 8 : 4) << "the first batch and each of the move's is a sync point";
    EXPECT_GE(refused, exchange ? 6 : 2) << "cuts inside the move leave its record";
  }
}

std::vector<Params> AllParams() {
  std::vector<Params> out;
  for (const std::string& e : engines::FileEngineNames()) {
    for (bool always : {false, true}) {
      for (auto mode : {sync::CrashMode::kDropUnsynced, sync::CrashMode::kKeepPrefix,
                        sync::CrashMode::kTearLastWrite}) {
        out.push_back({e, always, mode});
      }
    }
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(AllEngines, FileStoreCrashTest, testing::ValuesIn(AllParams()),
                         [](const auto& info) { return Describe(info.param); });

}  // namespace
}  // namespace kvfs::fusefs
