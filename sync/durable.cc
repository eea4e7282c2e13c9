// Durable-file helpers. Only the FileSystem interface is used here, so the same sequences run
// on the fault-injecting file system, where the crash tests check them.
#include "sync/durable.h"

#include <utility>

namespace kvfs::sync {
namespace {

// `path` without its trailing slashes, except that a path of only slashes keeps one.
std::string_view StripTrailingSlashes(std::string_view path) {
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  return path;
}

}  // namespace

// As POSIX dirname(3): trailing slashes are ignored ("a/b/" -> "a"), repeated slashes between
// the parts collapse ("a//b" -> "a"), "/" -> "/", and a path with no slash, or "", -> ".".
std::string DirName(std::string_view path) {
  path = StripTrailingSlashes(path);
  size_t slash = path.rfind('/');
  if (slash == std::string_view::npos) return ".";
  while (slash > 0 && path[slash - 1] == '/') --slash;
  if (slash == 0) return "/";
  return std::string(path.substr(0, slash));
}

// As POSIX basename(3): trailing slashes are ignored ("a/b/" -> "b"), "/" -> "/", "" -> ".".
std::string BaseName(std::string_view path) {
  path = StripTrailingSlashes(path);
  if (path.empty()) return ".";
  if (path == "/") return "/";
  const size_t slash = path.rfind('/');
  return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

// `name` is taken as relative to `dir`. An empty side yields the other one unchanged, and no
// second slash is added after a `dir` that already ends in one ("/" + "b" -> "/b").
std::string JoinPath(std::string_view dir, std::string_view name) {
  if (dir.empty()) return std::string(name);
  if (name.empty()) return std::string(dir);
  std::string path(dir);
  if (path.back() != '/') path += '/';
  path += name;
  return path;
}

Status SyncDir(FileSystem* fs, const std::string& dir) {
  KVFS_ASSIGN_OR_RETURN(std::unique_ptr<Directory> d, fs->OpenDirectory(dir));
  return d->Fsync();
}

Result<std::unique_ptr<WritableFile>> CreateFileDurably(FileSystem* fs, const std::string& path) {
  KVFS_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file,
                        fs->NewWritableFile(path, CreateMode::kCreateNew));
  // Sync, not DataSync: the new inode itself must reach the disk before a name points at it.
  // On failure the name may exist, undurable; the caller decides whether to remove it.
  KVFS_RETURN_IF_ERROR(file->Sync());
  KVFS_RETURN_IF_ERROR(SyncDir(fs, DirName(path)));
  return file;
}

Status CreateDirDurably(FileSystem* fs, const std::string& path) {
  // mkdir -p, durably: a missing parent is created (and its own parent synced) first, so
  // every directory on the way is reachable after a crash.
  const std::string parent = DirName(path);
  if (parent != path && parent != "/" && parent != ".") {
    KVFS_ASSIGN_OR_RETURN(bool parent_exists, fs->Exists(parent));
    if (!parent_exists) KVFS_RETURN_IF_ERROR(CreateDirDurably(fs, parent));
  }
  Status created = fs->CreateDir(path);
  if (created.IsAlreadyExists()) {
    // Fine if it is a directory (an earlier run made it); a file of that name is not.
    KVFS_ASSIGN_OR_RETURN(bool is_dir, fs->IsDirectory(path));
    if (!is_dir) return created;
  } else {
    KVFS_RETURN_IF_ERROR(created);
  }
  return SyncDir(fs, parent);
}

Status WriteFileAtomically(FileSystem* fs, const std::string& path, std::string_view data,
                           ReplaceOutcome* outcome) {
  ReplaceOutcome ignored;
  if (outcome == nullptr) outcome = &ignored;
  *outcome = ReplaceOutcome::kUnchanged;
  const std::string tmp = path + ".tmp";
  // kTruncate: a ".tmp" left by a crash mid-replace is stale and simply overwritten.
  Status written = [&]() -> Status {
    KVFS_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file,
                          fs->NewWritableFile(tmp, CreateMode::kTruncate));
    KVFS_RETURN_IF_ERROR(file->Append(data));
    // The contents must be durable before the rename can expose them under `path`.
    KVFS_RETURN_IF_ERROR(file->DataSync());
    return file->Close();
  }();
  if (!written.ok()) {
    // Best effort, to give back the space (the failure may be ENOSPC); `path` is untouched.
    fs->RemoveFile(tmp).PermitUnchecked();
    return written;
  }
  Status renamed = fs->Rename(tmp, path);
  // rename(2) failing with ENOSPC or EDQUOT found no room for the name and changed nothing; any
  // other error (EIO) leaves it unknown whether the new name is in place.
  if (!renamed.ok()) {
    if (!renamed.IsNoSpace()) *outcome = ReplaceOutcome::kUncertain;
    return renamed;
  }
  // From here on the new contents are visible under `path`, and a crash may keep either.
  *outcome = ReplaceOutcome::kUncertain;
  // One Fsync covers both names: the temp name and its replacement live in the same directory.
  KVFS_RETURN_IF_ERROR(SyncDir(fs, DirName(path)));
  *outcome = ReplaceOutcome::kReplaced;
  return Status::OK();
}

Status RemoveFileDurably(FileSystem* fs, const std::string& path) {
  KVFS_RETURN_IF_ERROR(fs->RemoveFile(path));
  return SyncDir(fs, DirName(path));
}

Result<std::string> ReadFileToString(FileSystem* fs, const std::string& path) {
  constexpr size_t kChunk = size_t{64} * 1024;
  KVFS_ASSIGN_OR_RETURN(std::unique_ptr<RandomAccessFile> file, fs->NewRandomAccessFile(path));
  KVFS_ASSIGN_OR_RETURN(uint64_t size_hint, file->Size());
  // Read until a short read rather than trusting the size alone, so that a file still growing
  // is read to the end as it was when reading finished.
  std::string contents(static_cast<size_t>(size_hint), '\0');
  size_t filled = 0;
  for (;;) {
    if (filled == contents.size()) contents.resize(contents.size() + kChunk);
    const size_t want = contents.size() - filled;
    KVFS_ASSIGN_OR_RETURN(size_t n, file->Read(filled, want, contents.data() + filled));
    filled += n;
    if (n < want) break;  // Read is short only at end of file
  }
  contents.resize(filled);
  return contents;
}

}  // namespace kvfs::sync
