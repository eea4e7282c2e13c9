// The in-memory power-cut model behind FaultFileSystem.
//
// Shape of the model:
// - Every file and directory is an Inode held by shared_ptr: by the directory entries that name
//   it (current or synced), by open handles, and by pending "lost" entries. An inode that nothing
//   holds any more is freed by the shared_ptr; an inode no synced name reaches is dropped by a
//   crash.
// - A file keeps three things: `synced` (its bytes as of the last successful sync), `pending`
//   (the writes, truncates and preallocations since, in order) and `current` (what readers see,
//   kept materialised). Normally current == synced + pending applied in order; after a failed
//   sync it also holds the "lost" operations, which are in neither synced nor pending.
// - A directory keeps `current` and `synced` entries (name -> inode) and `lost` ones (see
//   SyncDir).
// - A crash walks from "/" through synced entries only. Each directory it reaches gets
//   current := synced; each file it reaches gets synced + (per CrashMode) some of its pending
//   operations; everything else disappears. The epoch is bumped, which kills every handle.
//
// Choices the header leaves open, made here:
// - Counting for CrashAtOp and stats.mutating_ops: every call that may change the namespace or
//   a file's bytes counts once, whether or not it then succeeds: Append/Write (non-empty),
//   RandomRWFile::Truncate, Preallocate, NewWritableFile (any mode), NewRandomRWFile with
//   create, LockFile (it may create the file), CreateDir, RemoveDir, Rename, RemoveFile. So a
//   workload run once without a crash point reports N ops, and CrashAtOp(k) for k in 1..N
//   reaches every one of them. Calls made while the power is off, or through a handle from
//   before a crash, fail before they are counted.
// - Counting for CrashAtSync and FailSyncAfter: every sync attempt that reaches the model
//   (WritableFile/RandomRWFile DataSync and Sync, Directory::Fsync). stats.syncs counts only the
//   successful ones. If one sync is both a crash point and a failure point, the crash wins.
// - A failed file sync drops the file's pending operations from the durable history: they stay
//   in `current` (readable) but no later sync persists them. A later successful sync persists
//   synced + the operations made after the failure (so an append made after the failure lands
//   after a hole of zeros where the lost bytes were, as on a real disk).
// - A failed directory Fsync does the same to names: every name whose current entry differs from
//   its synced one keeps its synced entry through later Fsyncs, until a later create, rename or
//   remove touches that name again.
// - Space: a removed file's bytes are freed when its name is gone from the current tree AND no
//   open handle holds it (POSIX: unlink of an open file frees nothing until close). Close()
//   or destroying the handle releases it. A directory costs nothing.
// - A scheduled crash point stores only the CrashMode. The image is computed by Crash(): from
//   the moment the point fires nothing can change the durable state or draw from the generator,
//   so the image is the same as one taken at the point itself, and cheaper.
// - Crash() also cancels any crash schedule, releases every lock and forgets every open handle
//   (the process died); the FailSyncAfter countdown and the space limit are properties of the
//   disk and stay.
// - Paths: "." components are skipped (durable.h's DirName("x") is "."); ".." is refused.
// - Modes and owners (Stat, SetMode, SetOwner) live in the inode and are not part of the crash
//   model: a crash keeps them as they were set. An open that may create a file gives it the
//   private mode whether or not it created it, as PosixFileSystem's fchmod does.
// - The model holds every byte in memory, so a file may not grow past kMaxFileSize (EFBIG).
// - If a crash leaves one directory under two names (a directory renamed between two parents and
//   only one parent synced), it is kept under the first name the walk reaches (breadth first,
//   names in byte order) and dropped from the other, so the tree never has cycles. A file in the
//   same situation keeps both names, as two hard links to one inode.
#include "sync/fault_file_system.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <vector>

namespace kvfs::sync {

namespace {

constexpr uint64_t kNoLimit = UINT64_MAX;
constexpr uint64_t kMaxFileSize = uint64_t{1} << 30;

// One operation on a file since its last sync. `arg` is the write offset, the truncate size or
// the preallocate length.
struct PendingOp {
  enum class Kind { kWrite, kTruncate, kPreallocate };
  Kind kind;
  uint64_t arg;
  std::string data;  // kWrite only
};

// Applies `op` to `image` as the kernel would: a write past the end leaves a hole of zeros,
// truncate sets the size, preallocate (fallocate mode 0) only ever grows it.
void ApplyOp(std::string* image, const PendingOp& op) {
  switch (op.kind) {
    case PendingOp::Kind::kWrite:
      if (image->size() < op.arg + op.data.size()) image->resize(op.arg + op.data.size(), '\0');
      if (!op.data.empty()) image->replace(op.arg, op.data.size(), op.data);
      break;
    case PendingOp::Kind::kTruncate:
      image->resize(op.arg, '\0');
      break;
    case PendingOp::Kind::kPreallocate:
      if (image->size() < op.arg) image->resize(op.arg, '\0');
      break;
  }
}

struct Inode {
  explicit Inode(bool dir) : is_dir(dir), mode(dir ? kPrivateDirMode : kPrivateFileMode) {}
  virtual ~Inode() = default;
  const bool is_dir;
  // Permission bits and owner, as Stat reports them: the private mode a create gives, or what a
  // test set (SetMode, SetOwner). No owner set: the process's effective uid.
  uint32_t mode;
  std::optional<uint32_t> owner;
};

using Entries = std::map<std::string, std::shared_ptr<Inode>>;

struct FileInode final : Inode {
  FileInode() : Inode(false) {}
  std::string synced;
  std::vector<PendingOp> pending;
  std::string current;
};

struct DirInode final : Inode {
  DirInode() : Inode(true) {}
  Entries current;
  Entries synced;
  // Names whose change a failed Fsync lost: the entry a later Fsync persists instead of the
  // current one (null: the name stays absent). Erased when the name is changed again.
  Entries lost;
};

FileInode& AsFile(Inode& inode) { return static_cast<FileInode&>(inode); }
std::shared_ptr<FileInode> AsFile(const std::shared_ptr<Inode>& inode) {
  return std::static_pointer_cast<FileInode>(inode);
}
std::shared_ptr<DirInode> AsDir(const std::shared_ptr<Inode>& inode) {
  return std::static_pointer_cast<DirInode>(inode);
}

// A path split into its components; empty for "/".
using Parts = std::vector<std::string>;

Result<Parts> SplitPath(const std::string& path) {
  if (path.empty()) return Status::FromErrno(ENOENT, "empty path");
  Parts parts;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    std::string part = path.substr(start, end - start);
    if (part == "..") {
      return Status::InvalidArgument("path " + path + ": '..' is not supported by FaultFileSystem");
    }
    if (!part.empty() && part != ".") parts.push_back(std::move(part));
    start = end + 1;
  }
  return parts;
}

std::string Context(std::string_view op, const std::string& path) {
  std::string s(op);
  s += ' ';
  s += path;
  return s;
}

uint64_t NextRandom(std::mt19937_64& rng, uint64_t bound_inclusive) {
  // Plain modulo (not std::uniform_int_distribution, whose output differs between standard
  // libraries): a seed replays the same crash everywhere.
  return bound_inclusive == UINT64_MAX ? rng() : rng() % (bound_inclusive + 1);
}

}  // namespace

struct FaultFileSystem::State {
  explicit State(uint64_t s) : seed(s), rng(s), root(std::make_shared<DirInode>()) {
    root->mode = 0755;  // "/" is the machine's, not made by a create
  }

  // Guards every member below and every Inode (reached from `root`, from a handle or from an
  // entry). The only lock in the model: no call holds it while calling out.
  std::mutex mu;

  const uint64_t seed;
  std::mt19937_64 rng;
  std::shared_ptr<DirInode> root;  // always exists and is always durable
  uint64_t epoch = 0;              // bumped by each crash; handles carry the one they saw

  // Power cuts. `fired_mode` is set once a crash point has fired: the power is off.
  enum class ScheduleKind { kNone, kSync, kOp };
  ScheduleKind schedule = ScheduleKind::kNone;
  uint64_t schedule_remaining = 0;
  CrashMode schedule_mode = CrashMode::kDropUnsynced;
  std::optional<CrashMode> fired_mode;

  // Set by CrashAndFreeze: the image is installed and must stay as it is while it is copied.
  bool frozen = false;

  // SetBeforeSyncHook's; called without `mu`, so it may block.
  std::function<void(const std::string&)> before_sync_hook;
  void RunBeforeSyncHook(const std::string& path) {
    std::function<void(const std::string&)> hook;
    {
      std::lock_guard<std::mutex> lock(mu);
      hook = before_sync_hook;
    }
    if (hook) hook(path);
  }

  uint64_t fail_sync_remaining = 0;  // 0: no sync failure scheduled
  int fail_sync_errno = EIO;
  uint64_t space_limit = kNoLimit;

  // Open handles per file inode, in this epoch: these inodes use space even when unnamed.
  std::map<const FileInode*, int> open_files;
  std::set<std::string> locked;  // normalised paths of held FileLocks, this epoch

  FaultStats stats;

  // ---- Gates every call passes, in this order. All require `mu`. ----
  Status CheckPower(std::string_view op, const std::string& path) const {
    if (fired_mode) return Status::IOError(Context(op, path) + ": power is off (crash point)");
    return Status::OK();
  }
  Status CheckHandle(uint64_t handle_epoch, std::string_view op, const std::string& path) const {
    KVFS_RETURN_IF_ERROR(CheckPower(op, path));
    if (handle_epoch != epoch) {
      return Status::IOError(Context(op, path) + ": handle from before a crash");
    }
    return Status::OK();
  }
  // Counts a mutating operation; fires the crash point if this is it.
  Status CountOp(std::string_view op, const std::string& path) {
    if (frozen) return Status::IOError(Context(op, path) + ": the post-crash image is frozen");
    ++stats.mutating_ops;
    return Tick(ScheduleKind::kOp, op, path);
  }
  // Counts a sync attempt; fires the crash point if this is it, else reports whether this sync
  // is the one FailSyncAfter chose (as an injected EIO).
  Status CountSync(std::string_view op, const std::string& path) {
    if (frozen) return Status::IOError(Context(op, path) + ": the post-crash image is frozen");
    KVFS_RETURN_IF_ERROR(Tick(ScheduleKind::kSync, op, path));
    if (fail_sync_remaining > 0 && --fail_sync_remaining == 0) {
      const char* name = ::strerrorname_np(fail_sync_errno);
      return Status::FromErrno(fail_sync_errno,
                               Context(op, path) + ": injected " + (name ? name : "error"));
    }
    return Status::OK();
  }
  Status Tick(ScheduleKind kind, std::string_view op, const std::string& path) {
    if (schedule != kind || --schedule_remaining > 0) return Status::OK();
    schedule = ScheduleKind::kNone;
    fired_mode = schedule_mode;
    return CheckPower(op, path);
  }

  // ---- Namespace. Require `mu`. ----
  // The inode at `parts`: NotFound if a component is missing, ENOTDIR if one is a file.
  Result<std::shared_ptr<Inode>> Lookup(const Parts& parts, size_t count, std::string_view op,
                                        const std::string& path) const {
    std::shared_ptr<Inode> node = root;
    for (size_t i = 0; i < count; ++i) {
      if (!node->is_dir) return Status::FromErrno(ENOTDIR, Context(op, path));
      const Entries& entries = AsDir(node)->current;
      auto it = entries.find(parts[i]);
      if (it == entries.end()) return Status::FromErrno(ENOENT, Context(op, path));
      node = it->second;
    }
    return node;
  }
  Result<std::shared_ptr<DirInode>> LookupParent(const Parts& parts, std::string_view op,
                                                 const std::string& path) const {
    KVFS_ASSIGN_OR_RETURN(auto node, Lookup(parts, parts.size() - 1, op, path));
    if (!node->is_dir) return Status::FromErrno(ENOTDIR, Context(op, path));
    return AsDir(node);
  }
  static std::shared_ptr<Inode> Find(const DirInode& dir, const std::string& name) {
    auto it = dir.current.find(name);
    return it == dir.current.end() ? nullptr : it->second;
  }
  // Every change of a name goes through these two, so a name lost by a failed Fsync is
  // released as soon as it is changed again.
  static void SetEntry(DirInode& dir, const std::string& name, std::shared_ptr<Inode> node) {
    dir.lost.erase(name);
    dir.current[name] = std::move(node);
  }
  static void EraseEntry(DirInode& dir, const std::string& name) {
    dir.lost.erase(name);
    dir.current.erase(name);
  }

  // ---- Space. Require `mu`. ----
  // Bytes held by live files: those named in the current tree and those held open.
  uint64_t Usage() const {
    std::set<const Inode*> seen;
    uint64_t total = 0;
    std::vector<const DirInode*> stack{root.get()};
    while (!stack.empty()) {
      const DirInode* dir = stack.back();
      stack.pop_back();
      for (const auto& [name, child] : dir->current) {
        if (!seen.insert(child.get()).second) continue;
        if (child->is_dir) {
          stack.push_back(static_cast<const DirInode*>(child.get()));
        } else {
          total += static_cast<const FileInode*>(child.get())->current.size();
        }
      }
    }
    for (const auto& [file, count] : open_files) {
      if (seen.insert(file).second) total += file->current.size();
    }
    return total;
  }
  // OK if `file` may grow to `new_size`; shrinking always may.
  Status CheckGrowth(const FileInode& file, uint64_t new_size, std::string_view op,
                     const std::string& path) const {
    if (new_size <= file.current.size()) return Status::OK();
    if (new_size > kMaxFileSize) {
      return Status::FromErrno(EFBIG,
                               Context(op, path) + " (FaultFileSystem keeps files in memory)");
    }
    if (space_limit == kNoLimit) return Status::OK();
    const uint64_t used = Usage();
    const uint64_t growth = new_size - file.current.size();
    if (used > space_limit || growth > space_limit - used) {
      return Status::NoSpace(Context(op, path) + ": injected ENOSPC (limit " +
                             std::to_string(space_limit) + " bytes, " + std::to_string(used) +
                             " used)");
    }
    return Status::OK();
  }

  // ---- File contents. Require `mu`; the caller has passed the gates. ----
  Status AddFileOp(FileInode& file, PendingOp op, uint64_t new_size, std::string_view name,
                   const std::string& path) {
    KVFS_RETURN_IF_ERROR(CheckGrowth(file, new_size, name, path));
    ApplyOp(&file.current, op);
    if (op.kind == PendingOp::Kind::kWrite) stats.bytes_written += op.data.size();
    file.pending.push_back(std::move(op));
    return Status::OK();
  }
  Status Write(FileInode& file, uint64_t offset, std::string_view data, const std::string& path) {
    if (offset > kMaxFileSize || data.size() > kMaxFileSize - offset) {
      return Status::FromErrno(EFBIG, Context("write", path));
    }
    const uint64_t new_size = std::max<uint64_t>(file.current.size(), offset + data.size());
    return AddFileOp(file, {PendingOp::Kind::kWrite, offset, std::string(data)}, new_size, "write",
                     path);
  }
  Status Truncate(FileInode& file, uint64_t size, const std::string& path) {
    return AddFileOp(file, {PendingOp::Kind::kTruncate, size, {}}, size, "ftruncate", path);
  }
  Status Preallocate(FileInode& file, uint64_t length, const std::string& path) {
    const uint64_t new_size = std::max<uint64_t>(file.current.size(), length);
    return AddFileOp(file, {PendingOp::Kind::kPreallocate, length, {}}, new_size, "fallocate",
                     path);
  }

  // ---- Syncs. Require `mu`; the caller has passed CheckHandle. ----
  Status SyncFile(FileInode& file, bool data_only, const std::string& path) {
    Status s = CountSync(data_only ? "fdatasync" : "fsync", path);
    if (fired_mode) return s;
    if (!s.ok()) {
      // Linux marks the pages clean after a writeback error: the data is gone from the durable
      // history, though still in the page cache (current).
      file.pending.clear();
      return s;
    }
    for (const PendingOp& op : file.pending) ApplyOp(&file.synced, op);
    file.pending.clear();
    ++stats.syncs;
    return Status::OK();
  }
  Status SyncDir(DirInode& dir, const std::string& path) {
    Status s = CountSync("fsync", path);
    if (fired_mode) return s;
    if (!s.ok()) {
      LoseUnsyncedNames(dir);
      return s;
    }
    Entries next = dir.current;
    for (const auto& [name, node] : dir.lost) {
      if (node) {
        next[name] = node;
      } else {
        next.erase(name);
      }
    }
    dir.synced = std::move(next);
    ++stats.syncs;
    return Status::OK();
  }
  static void LoseUnsyncedNames(DirInode& dir) {
    std::set<std::string> names;
    for (const auto& [name, node] : dir.current) names.insert(name);
    for (const auto& [name, node] : dir.synced) names.insert(name);
    for (const std::string& name : names) {
      auto cur = dir.current.find(name);
      auto syn = dir.synced.find(name);
      const Inode* cur_node = cur == dir.current.end() ? nullptr : cur->second.get();
      const Inode* syn_node = syn == dir.synced.end() ? nullptr : syn->second.get();
      if (cur_node == syn_node || dir.lost.count(name) > 0) continue;
      dir.lost[name] = syn == dir.synced.end() ? nullptr : syn->second;
    }
  }

  // ---- Crash. Require `mu`. ----
  void RevertFile(FileInode& file, CrashMode mode) {
    std::string image = file.synced;
    size_t keep = 0;
    if (mode != CrashMode::kDropUnsynced && !file.pending.empty()) {
      keep = NextRandom(rng, file.pending.size());
    }
    for (size_t i = 0; i < keep; ++i) ApplyOp(&image, file.pending[i]);
    if (mode == CrashMode::kTearLastWrite && keep < file.pending.size() &&
        file.pending[keep].kind == PendingOp::Kind::kWrite) {
      PendingOp torn = file.pending[keep];
      torn.data.resize(NextRandom(rng, torn.data.size()));
      if (!torn.data.empty()) ApplyOp(&image, torn);
    }
    file.pending.clear();
    file.synced = image;
    file.current = std::move(image);
  }
  void InstallCrashImage(CrashMode mode) {
    std::set<const Inode*> reached{root.get()};
    std::deque<DirInode*> queue{root.get()};
    while (!queue.empty()) {
      DirInode* dir = queue.front();
      queue.pop_front();
      Entries kept;
      for (const auto& [name, child] : dir->synced) {
        const bool first = reached.insert(child.get()).second;
        if (child->is_dir) {
          if (!first) continue;  // one directory, one name (see the top of this file)
          queue.push_back(static_cast<DirInode*>(child.get()));
        } else if (first) {
          RevertFile(AsFile(*child), mode);
        }
        kept.emplace(name, child);
      }
      dir->synced = kept;
      dir->current = std::move(kept);
      dir->lost.clear();
    }
    ++epoch;
    fired_mode.reset();
    schedule = ScheduleKind::kNone;
    open_files.clear();
    locked.clear();
    ++stats.crashes;
  }

  // ---- Open handles. Require `mu`. ----
  void Register(const FileInode* file) { ++open_files[file]; }
  void Unregister(const FileInode* file, uint64_t handle_epoch) {
    if (handle_epoch != epoch) return;  // the crash already forgot it
    auto it = open_files.find(file);
    if (it != open_files.end() && --it->second == 0) open_files.erase(it);
  }
};

namespace {

using State = FaultFileSystem::State;

// What every file handle shares: the model, its inode, the epoch it was opened in, and whether
// it still counts as open (holding space).
class OpenFile {
 public:
  // Requires state->mu (registers the inode as open).
  OpenFile(std::shared_ptr<State> state, std::shared_ptr<FileInode> file)
      : state_(std::move(state)), file_(std::move(file)), epoch_(state_->epoch) {
    state_->Register(file_.get());
  }
  OpenFile(const OpenFile&) = delete;
  OpenFile& operator=(const OpenFile&) = delete;
  ~OpenFile() {
    std::lock_guard<std::mutex> lock(state_->mu);
    Release();
  }

  std::mutex& mu() const { return state_->mu; }
  State& state() const { return *state_; }
  FileInode& file() const { return *file_; }

  // Requires mu(). OK if the handle may be used now.
  Status Check(std::string_view op, const std::string& path) const {
    if (!open_) return Status::InvalidArgument(Context(op, path) + ": file is closed");
    return state_->CheckHandle(epoch_, op, path);
  }
  // Requires mu(). Counts a mutating operation through this handle.
  Status CheckMutation(std::string_view op, const std::string& path) const {
    KVFS_RETURN_IF_ERROR(Check(op, path));
    return state_->CountOp(op, path);
  }
  // Requires mu(). Closes the handle: its inode no longer holds space on its behalf.
  Status Close(const std::string& path) {
    Status s = state_->CheckHandle(epoch_, "close", path);
    Release();
    return s;
  }
  Result<size_t> Read(uint64_t offset, size_t n, char* scratch, const std::string& path) const {
    std::lock_guard<std::mutex> lock(state_->mu);
    KVFS_RETURN_IF_ERROR(Check("pread", path));
    const std::string& data = file_->current;
    if (offset >= data.size() || n == 0) return size_t{0};
    const size_t count = std::min<uint64_t>(n, data.size() - offset);
    // Bytes, not a string: nothing to terminate.
    // NOLINTNEXTLINE(bugprone-not-null-terminated-result)
    std::memcpy(scratch, data.data() + offset, count);
    return count;
  }
  Result<uint64_t> Size(const std::string& path) const {
    std::lock_guard<std::mutex> lock(state_->mu);
    KVFS_RETURN_IF_ERROR(Check("fstat", path));
    return uint64_t{file_->current.size()};
  }

 private:
  void Release() {
    if (!open_) return;
    open_ = false;
    state_->Unregister(file_.get(), epoch_);
  }

  const std::shared_ptr<State> state_;
  const std::shared_ptr<FileInode> file_;
  const uint64_t epoch_;
  bool open_ = true;  // guarded by state_->mu
};

class FaultWritableFile final : public WritableFile {
 public:
  FaultWritableFile(std::string path, uint64_t offset, std::shared_ptr<State> state,
                    std::shared_ptr<FileInode> file)
      : WritableFile(std::move(path), offset), open_(std::move(state), std::move(file)) {}

 protected:
  Status DoWrite(uint64_t offset, std::string_view data) override {
    std::lock_guard<std::mutex> lock(open_.mu());
    KVFS_RETURN_IF_ERROR(open_.CheckMutation("write", path()));
    return open_.state().Write(open_.file(), offset, data, path());
  }
  Status DoSync(bool data_only) override {
    open_.state().RunBeforeSyncHook(path());
    std::lock_guard<std::mutex> lock(open_.mu());
    KVFS_RETURN_IF_ERROR(open_.Check(data_only ? "fdatasync" : "fsync", path()));
    return open_.state().SyncFile(open_.file(), data_only, path());
  }
  Status DoPreallocate(uint64_t length) override {
    std::lock_guard<std::mutex> lock(open_.mu());
    KVFS_RETURN_IF_ERROR(open_.CheckMutation("fallocate", path()));
    return open_.state().Preallocate(open_.file(), length, path());
  }
  // Unsynced data may be lost or kept at a crash whether or not writeback was started, so the
  // hint changes nothing here; it is not counted as an operation either, so crash tests see the
  // same operations with or without it. A handle from before a crash still refuses it.
  Status DoStartWriteback(uint64_t, uint64_t) override {
    std::lock_guard<std::mutex> lock(open_.mu());
    return open_.Check("sync_file_range", path());
  }
  Status DoClose() override {
    std::lock_guard<std::mutex> lock(open_.mu());
    return open_.Close(path());
  }

 private:
  OpenFile open_;
};

class FaultRandomAccessFile final : public RandomAccessFile {
 public:
  FaultRandomAccessFile(std::string path, std::shared_ptr<State> state,
                        std::shared_ptr<FileInode> file)
      : RandomAccessFile(std::move(path)), open_(std::move(state), std::move(file)) {}

  Result<size_t> Read(uint64_t offset, size_t n, char* scratch) const override {
    return open_.Read(offset, n, scratch, path());
  }
  Result<uint64_t> Size() const override { return open_.Size(path()); }

 private:
  OpenFile open_;
};

class FaultRandomRWFile final : public RandomRWFile {
 public:
  FaultRandomRWFile(std::string path, std::shared_ptr<State> state, std::shared_ptr<FileInode> file)
      : RandomRWFile(std::move(path)), open_(std::move(state), std::move(file)) {}

 protected:
  Result<size_t> DoRead(uint64_t offset, size_t n, char* scratch) const override {
    return open_.Read(offset, n, scratch, path());
  }
  Status DoWrite(uint64_t offset, std::string_view data) override {
    std::lock_guard<std::mutex> lock(open_.mu());
    KVFS_RETURN_IF_ERROR(open_.CheckMutation("pwrite", path()));
    return open_.state().Write(open_.file(), offset, data, path());
  }
  Status DoTruncate(uint64_t size) override {
    std::lock_guard<std::mutex> lock(open_.mu());
    KVFS_RETURN_IF_ERROR(open_.CheckMutation("ftruncate", path()));
    return open_.state().Truncate(open_.file(), size, path());
  }
  Status DoSync(bool data_only) override {
    open_.state().RunBeforeSyncHook(path());
    std::lock_guard<std::mutex> lock(open_.mu());
    KVFS_RETURN_IF_ERROR(open_.Check(data_only ? "fdatasync" : "fsync", path()));
    return open_.state().SyncFile(open_.file(), data_only, path());
  }
  Result<uint64_t> DoSize() const override { return open_.Size(path()); }
  Status DoClose() override {
    std::lock_guard<std::mutex> lock(open_.mu());
    return open_.Close(path());
  }

 private:
  OpenFile open_;
};

// Holds the directory inode resolved at open time: Fsync syncs that inode's entries even if the
// directory has been renamed since, as fsync on a directory descriptor does.
class FaultDirectory final : public Directory {
 public:
  FaultDirectory(std::string path, std::shared_ptr<State> state, std::shared_ptr<DirInode> dir)
      : Directory(std::move(path)),
        state_(std::move(state)),
        dir_(std::move(dir)),
        epoch_(state_->epoch) {}

 protected:
  Status DoFsync() override {
    std::lock_guard<std::mutex> lock(state_->mu);
    KVFS_RETURN_IF_ERROR(state_->CheckHandle(epoch_, "fsync", path()));
    return state_->SyncDir(*dir_, path());
  }

 private:
  const std::shared_ptr<State> state_;
  const std::shared_ptr<DirInode> dir_;
  const uint64_t epoch_;
};

class FaultFileLock final : public FileLock {
 public:
  FaultFileLock(std::string path, std::string key, std::shared_ptr<State> state)
      : FileLock(std::move(path)),
        key_(std::move(key)),
        state_(std::move(state)),
        epoch_(state_->epoch) {}
  ~FaultFileLock() override {
    std::lock_guard<std::mutex> lock(state_->mu);
    if (epoch_ == state_->epoch) state_->locked.erase(key_);
  }

 private:
  const std::string key_;
  const std::shared_ptr<State> state_;
  const uint64_t epoch_;
};

std::string JoinParts(const Parts& parts) {
  std::string s;
  for (const std::string& part : parts) s += "/" + part;
  return s.empty() ? "/" : s;
}

}  // namespace

const char* CrashModeName(CrashMode mode) {
  switch (mode) {
    case CrashMode::kDropUnsynced:
      return "DropUnsynced";
    case CrashMode::kKeepPrefix:
      return "KeepPrefix";
    case CrashMode::kTearLastWrite:
      return "TearLastWrite";
  }
  return "Unknown";
}

FaultFileSystem::FaultFileSystem(uint64_t seed) : state_(std::make_shared<State>(seed)) {}

FaultFileSystem::~FaultFileSystem() = default;

uint64_t FaultFileSystem::seed() const { return state_->seed; }

void FaultFileSystem::Crash(CrashMode mode) {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->InstallCrashImage(state_->fired_mode.value_or(mode));
  }
  sync_failures().Clear();  // a reboot: no page cache is left to lie about
}

void FaultFileSystem::CrashAndFreeze(CrashMode mode) {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->InstallCrashImage(state_->fired_mode.value_or(mode));
    state_->frozen = true;
  }
  sync_failures().Clear();
}

void FaultFileSystem::CrashAtSync(uint64_t n, CrashMode mode) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->schedule = n == 0 ? State::ScheduleKind::kNone : State::ScheduleKind::kSync;
  state_->schedule_remaining = n;
  state_->schedule_mode = mode;
}

void FaultFileSystem::CrashAtOp(uint64_t n, CrashMode mode) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->schedule = n == 0 ? State::ScheduleKind::kNone : State::ScheduleKind::kOp;
  state_->schedule_remaining = n;
  state_->schedule_mode = mode;
}

bool FaultFileSystem::crashed() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->fired_mode.has_value();
}

void FaultFileSystem::FailSyncAfter(uint64_t n, int err) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->fail_sync_remaining = n;
  state_->fail_sync_errno = err;
}

void FaultFileSystem::SetBeforeSyncHook(std::function<void(const std::string& path)> hook) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->before_sync_hook = std::move(hook);
}

void FaultFileSystem::SetSpaceLimit(uint64_t bytes) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->space_limit = bytes;
}

FaultStats FaultFileSystem::stats() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->stats;
}

Result<std::unique_ptr<WritableFile>> FaultFileSystem::DoNewWritableFile(const std::string& path,
                                                                         CreateMode mode) {
  std::lock_guard<std::mutex> lock(state_->mu);
  State& st = *state_;
  KVFS_RETURN_IF_ERROR(st.CheckPower("open", path));
  KVFS_RETURN_IF_ERROR(st.CountOp("open", path));
  KVFS_ASSIGN_OR_RETURN(Parts parts, SplitPath(path));
  if (parts.empty()) return Status::FromErrno(EISDIR, Context("open", path));
  KVFS_ASSIGN_OR_RETURN(auto parent, st.LookupParent(parts, "open", path));
  std::shared_ptr<Inode> node = State::Find(*parent, parts.back());
  if (node && mode == CreateMode::kCreateNew)
    return Status::FromErrno(EEXIST, Context("open", path));
  if (node && node->is_dir) return Status::FromErrno(EISDIR, Context("open", path));
  if (!node && mode == CreateMode::kOverwrite) {
    return Status::FromErrno(ENOENT, Context("open", path));
  }
  if (!node) {
    node = std::make_shared<FileInode>();
    State::SetEntry(*parent, parts.back(), node);
  }
  std::shared_ptr<FileInode> file = AsFile(node);
  if (mode != CreateMode::kOverwrite) file->mode = kPrivateFileMode;  // as a real open may create
  if (mode == CreateMode::kTruncate && !file->current.empty()) {
    KVFS_RETURN_IF_ERROR(st.Truncate(*file, 0, path));
  }
  const uint64_t offset = mode == CreateMode::kAppend ? file->current.size() : 0;
  return std::unique_ptr<WritableFile>(
      std::make_unique<FaultWritableFile>(path, offset, state_, std::move(file)));
}

Result<std::unique_ptr<RandomAccessFile>> FaultFileSystem::NewRandomAccessFile(
    const std::string& path) {
  std::lock_guard<std::mutex> lock(state_->mu);
  State& st = *state_;
  KVFS_RETURN_IF_ERROR(st.CheckPower("open", path));
  KVFS_ASSIGN_OR_RETURN(Parts parts, SplitPath(path));
  KVFS_ASSIGN_OR_RETURN(auto node, st.Lookup(parts, parts.size(), "open", path));
  if (node->is_dir) return Status::FromErrno(EISDIR, Context("open", path));
  return std::unique_ptr<RandomAccessFile>(
      std::make_unique<FaultRandomAccessFile>(path, state_, AsFile(node)));
}

Result<std::unique_ptr<RandomRWFile>> FaultFileSystem::DoNewRandomRWFile(const std::string& path,
                                                                         bool create) {
  std::lock_guard<std::mutex> lock(state_->mu);
  State& st = *state_;
  KVFS_RETURN_IF_ERROR(st.CheckPower("open", path));
  if (create) KVFS_RETURN_IF_ERROR(st.CountOp("open", path));
  KVFS_ASSIGN_OR_RETURN(Parts parts, SplitPath(path));
  if (parts.empty()) return Status::FromErrno(EISDIR, Context("open", path));
  KVFS_ASSIGN_OR_RETURN(auto parent, st.LookupParent(parts, "open", path));
  std::shared_ptr<Inode> node = State::Find(*parent, parts.back());
  if (!node && !create) return Status::FromErrno(ENOENT, Context("open", path));
  if (node && node->is_dir) return Status::FromErrno(EISDIR, Context("open", path));
  if (!node) {
    node = std::make_shared<FileInode>();
    State::SetEntry(*parent, parts.back(), node);
  }
  if (create) node->mode = kPrivateFileMode;
  return std::unique_ptr<RandomRWFile>(
      std::make_unique<FaultRandomRWFile>(path, state_, AsFile(node)));
}

Result<std::unique_ptr<Directory>> FaultFileSystem::DoOpenDirectory(const std::string& path) {
  std::lock_guard<std::mutex> lock(state_->mu);
  State& st = *state_;
  KVFS_RETURN_IF_ERROR(st.CheckPower("opendir", path));
  KVFS_ASSIGN_OR_RETURN(Parts parts, SplitPath(path));
  KVFS_ASSIGN_OR_RETURN(auto node, st.Lookup(parts, parts.size(), "opendir", path));
  if (!node->is_dir) return Status::FromErrno(ENOTDIR, Context("opendir", path));
  return std::unique_ptr<Directory>(std::make_unique<FaultDirectory>(path, state_, AsDir(node)));
}

Status FaultFileSystem::CreateDir(const std::string& path) {
  std::lock_guard<std::mutex> lock(state_->mu);
  State& st = *state_;
  KVFS_RETURN_IF_ERROR(st.CheckPower("mkdir", path));
  KVFS_RETURN_IF_ERROR(st.CountOp("mkdir", path));
  KVFS_ASSIGN_OR_RETURN(Parts parts, SplitPath(path));
  if (parts.empty()) return Status::FromErrno(EEXIST, Context("mkdir", path));
  KVFS_ASSIGN_OR_RETURN(auto parent, st.LookupParent(parts, "mkdir", path));
  if (State::Find(*parent, parts.back())) return Status::FromErrno(EEXIST, Context("mkdir", path));
  State::SetEntry(*parent, parts.back(), std::make_shared<DirInode>());
  return Status::OK();
}

Status FaultFileSystem::DoRemoveDir(const std::string& path) {
  std::lock_guard<std::mutex> lock(state_->mu);
  State& st = *state_;
  KVFS_RETURN_IF_ERROR(st.CheckPower("rmdir", path));
  KVFS_RETURN_IF_ERROR(st.CountOp("rmdir", path));
  KVFS_ASSIGN_OR_RETURN(Parts parts, SplitPath(path));
  if (parts.empty()) return Status::FromErrno(EBUSY, Context("rmdir", path));
  KVFS_ASSIGN_OR_RETURN(auto parent, st.LookupParent(parts, "rmdir", path));
  std::shared_ptr<Inode> node = State::Find(*parent, parts.back());
  if (!node) return Status::FromErrno(ENOENT, Context("rmdir", path));
  if (!node->is_dir) return Status::FromErrno(ENOTDIR, Context("rmdir", path));
  if (!AsDir(node)->current.empty()) return Status::FromErrno(ENOTEMPTY, Context("rmdir", path));
  State::EraseEntry(*parent, parts.back());
  return Status::OK();
}

Result<std::vector<std::string>> FaultFileSystem::ListDir(const std::string& path) {
  std::lock_guard<std::mutex> lock(state_->mu);
  State& st = *state_;
  KVFS_RETURN_IF_ERROR(st.CheckPower("opendir", path));
  KVFS_ASSIGN_OR_RETURN(Parts parts, SplitPath(path));
  KVFS_ASSIGN_OR_RETURN(auto node, st.Lookup(parts, parts.size(), "opendir", path));
  if (!node->is_dir) return Status::FromErrno(ENOTDIR, Context("opendir", path));
  std::vector<std::string> names;
  for (const auto& [name, child] : AsDir(node)->current) names.push_back(name);
  return names;  // std::map keeps them in byte order
}

Status FaultFileSystem::DoRename(const std::string& from, const std::string& to) {
  std::lock_guard<std::mutex> lock(state_->mu);
  State& st = *state_;
  const std::string what = from + " to " + to;
  KVFS_RETURN_IF_ERROR(st.CheckPower("rename", what));
  KVFS_RETURN_IF_ERROR(st.CountOp("rename", what));
  KVFS_ASSIGN_OR_RETURN(Parts src, SplitPath(from));
  KVFS_ASSIGN_OR_RETURN(Parts dst, SplitPath(to));
  if (src.empty() || dst.empty()) return Status::FromErrno(EBUSY, Context("rename", what));
  KVFS_ASSIGN_OR_RETURN(auto src_dir, st.LookupParent(src, "rename", what));
  std::shared_ptr<Inode> node = State::Find(*src_dir, src.back());
  if (!node) return Status::FromErrno(ENOENT, Context("rename", what));
  KVFS_ASSIGN_OR_RETURN(auto dst_dir, st.LookupParent(dst, "rename", what));
  std::shared_ptr<Inode> target = State::Find(*dst_dir, dst.back());
  if (target == node) return Status::OK();  // same file: rename(2) does nothing
  if (node->is_dir) {
    const bool into_itself =
        dst.size() > src.size() && std::equal(src.begin(), src.end(), dst.begin());
    if (into_itself) return Status::FromErrno(EINVAL, Context("rename", what));
    if (target && !target->is_dir) return Status::FromErrno(ENOTDIR, Context("rename", what));
    if (target && !AsDir(target)->current.empty()) {
      return Status::FromErrno(ENOTEMPTY, Context("rename", what));
    }
  } else if (target && target->is_dir) {
    return Status::FromErrno(EISDIR, Context("rename", what));
  }
  State::EraseEntry(*src_dir, src.back());
  State::SetEntry(*dst_dir, dst.back(), std::move(node));
  return Status::OK();
}

Status FaultFileSystem::DoRemoveFile(const std::string& path) {
  std::lock_guard<std::mutex> lock(state_->mu);
  State& st = *state_;
  KVFS_RETURN_IF_ERROR(st.CheckPower("unlink", path));
  KVFS_RETURN_IF_ERROR(st.CountOp("unlink", path));
  KVFS_ASSIGN_OR_RETURN(Parts parts, SplitPath(path));
  if (parts.empty()) return Status::FromErrno(EISDIR, Context("unlink", path));
  KVFS_ASSIGN_OR_RETURN(auto parent, st.LookupParent(parts, "unlink", path));
  std::shared_ptr<Inode> node = State::Find(*parent, parts.back());
  if (!node) return Status::FromErrno(ENOENT, Context("unlink", path));
  if (node->is_dir) return Status::FromErrno(EISDIR, Context("unlink", path));
  State::EraseEntry(*parent, parts.back());
  return Status::OK();
}

Result<uint64_t> FaultFileSystem::FileSize(const std::string& path) {
  std::lock_guard<std::mutex> lock(state_->mu);
  State& st = *state_;
  KVFS_RETURN_IF_ERROR(st.CheckPower("stat", path));
  KVFS_ASSIGN_OR_RETURN(Parts parts, SplitPath(path));
  KVFS_ASSIGN_OR_RETURN(auto node, st.Lookup(parts, parts.size(), "stat", path));
  if (node->is_dir) return Status::FromErrno(EISDIR, Context("stat", path));
  return uint64_t{AsFile(*node).current.size()};
}

Result<bool> FaultFileSystem::Exists(const std::string& path) {
  std::lock_guard<std::mutex> lock(state_->mu);
  State& st = *state_;
  KVFS_RETURN_IF_ERROR(st.CheckPower("stat", path));
  if (path.empty()) return false;  // as lstat(""): ENOENT
  KVFS_ASSIGN_OR_RETURN(Parts parts, SplitPath(path));
  return st.Lookup(parts, parts.size(), "stat", path).ok();
}

Result<bool> FaultFileSystem::IsDirectory(const std::string& path) {
  std::lock_guard<std::mutex> lock(state_->mu);
  State& st = *state_;
  KVFS_RETURN_IF_ERROR(st.CheckPower("stat", path));
  KVFS_ASSIGN_OR_RETURN(Parts parts, SplitPath(path));
  KVFS_ASSIGN_OR_RETURN(auto node, st.Lookup(parts, parts.size(), "stat", path));
  return node->is_dir;
}

Result<FileStat> FaultFileSystem::Stat(const std::string& path) {
  std::lock_guard<std::mutex> lock(state_->mu);
  State& st = *state_;
  KVFS_RETURN_IF_ERROR(st.CheckPower("lstat", path));
  KVFS_ASSIGN_OR_RETURN(Parts parts, SplitPath(path));
  KVFS_ASSIGN_OR_RETURN(auto node, st.Lookup(parts, parts.size(), "lstat", path));
  FileStat fs;
  fs.type = node->is_dir ? FileStat::Type::kDirectory : FileStat::Type::kFile;
  fs.mode = node->mode;
  fs.uid = node->owner.value_or(static_cast<uint32_t>(::geteuid()));
  return fs;
}

Status FaultFileSystem::SetMode(const std::string& path, uint32_t mode) {
  std::lock_guard<std::mutex> lock(state_->mu);
  KVFS_ASSIGN_OR_RETURN(Parts parts, SplitPath(path));
  KVFS_ASSIGN_OR_RETURN(auto node, state_->Lookup(parts, parts.size(), "chmod", path));
  node->mode = mode & 07777;
  return Status::OK();
}

Status FaultFileSystem::SetOwner(const std::string& path, uint32_t uid) {
  std::lock_guard<std::mutex> lock(state_->mu);
  KVFS_ASSIGN_OR_RETURN(Parts parts, SplitPath(path));
  KVFS_ASSIGN_OR_RETURN(auto node, state_->Lookup(parts, parts.size(), "chown", path));
  node->owner = uid;
  return Status::OK();
}

Result<std::unique_ptr<FileLock>> FaultFileSystem::LockFile(const std::string& path) {
  std::lock_guard<std::mutex> lock(state_->mu);
  State& st = *state_;
  KVFS_RETURN_IF_ERROR(st.CheckPower("lock", path));
  KVFS_RETURN_IF_ERROR(st.CountOp("lock", path));
  KVFS_ASSIGN_OR_RETURN(Parts parts, SplitPath(path));
  if (parts.empty()) return Status::FromErrno(EISDIR, Context("lock", path));
  KVFS_ASSIGN_OR_RETURN(auto parent, st.LookupParent(parts, "lock", path));
  std::shared_ptr<Inode> node = State::Find(*parent, parts.back());
  if (node && node->is_dir) return Status::FromErrno(EISDIR, Context("lock", path));
  if (!node) {
    node = std::make_shared<FileInode>();
    State::SetEntry(*parent, parts.back(), node);
  }
  node->mode = kPrivateFileMode;
  std::string key = JoinParts(parts);
  if (!st.locked.insert(key).second) {
    return Status::Busy(Context("lock", path) + ": already locked by this process");
  }
  return std::unique_ptr<FileLock>(std::make_unique<FaultFileLock>(path, std::move(key), state_));
}

Result<SpaceInfo> FaultFileSystem::GetSpaceInfo(const std::string& path) {
  std::lock_guard<std::mutex> lock(state_->mu);
  State& st = *state_;
  KVFS_RETURN_IF_ERROR(st.CheckPower("statvfs", path));
  KVFS_ASSIGN_OR_RETURN(Parts parts, SplitPath(path));
  KVFS_RETURN_IF_ERROR(st.Lookup(parts, parts.size(), "statvfs", path).status());
  const uint64_t used = st.Usage();
  SpaceInfo info;
  info.total_bytes = st.space_limit;
  info.free_bytes = st.space_limit - std::min(used, st.space_limit);
  info.unused_bytes = info.free_bytes;  // no reserve on the simulated disk
  return info;
}

}  // namespace kvfs::sync
