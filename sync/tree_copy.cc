#include "sync/tree_copy.h"

#include <algorithm>
#include <vector>

#include "sync/durable.h"

namespace kvfs::sync {

namespace {

Status RemoveTree(FileSystem* fs, const std::string& path) {
  KVFS_ASSIGN_OR_RETURN(bool is_dir, fs->IsDirectory(path));
  if (!is_dir) return fs->RemoveFile(path);
  KVFS_ASSIGN_OR_RETURN(auto names, fs->ListDir(path));
  for (const std::string& n : names) KVFS_RETURN_IF_ERROR(RemoveTree(fs, JoinPath(path, n)));
  return fs->RemoveDir(path);
}

Status CopyFile(FileSystem* from, const std::string& src, FileSystem* to, const std::string& dst) {
  KVFS_ASSIGN_OR_RETURN(auto in, from->NewRandomAccessFile(src));
  KVFS_ASSIGN_OR_RETURN(auto out, to->NewWritableFile(dst, CreateMode::kTruncate));
  std::vector<char> buf(1 << 20);
  uint64_t offset = 0;
  while (true) {
    KVFS_ASSIGN_OR_RETURN(size_t n, in->Read(offset, buf.size(), buf.data()));
    if (n == 0) break;
    KVFS_RETURN_IF_ERROR(out->Append(std::string_view(buf.data(), n)));
    offset += n;
  }
  KVFS_RETURN_IF_ERROR(out->Sync());
  return out->Close();
}

}  // namespace

Status CopyTreeDurably(FileSystem* from, const std::string& src_dir, FileSystem* to,
                       const std::string& dst_dir) {
  KVFS_RETURN_IF_ERROR(CreateDirDurably(to, dst_dir));
  KVFS_ASSIGN_OR_RETURN(auto names, from->ListDir(src_dir));
  KVFS_ASSIGN_OR_RETURN(auto existing, to->ListDir(dst_dir));
  for (const std::string& n : existing) {
    if (std::find(names.begin(), names.end(), n) == names.end()) {
      KVFS_RETURN_IF_ERROR(RemoveTree(to, JoinPath(dst_dir, n)));
    }
  }
  for (const std::string& n : names) {
    const std::string src = JoinPath(src_dir, n);
    const std::string dst = JoinPath(dst_dir, n);
    KVFS_ASSIGN_OR_RETURN(bool src_is_dir, from->IsDirectory(src));
    KVFS_ASSIGN_OR_RETURN(bool dst_exists, to->Exists(dst));
    if (dst_exists) {
      KVFS_ASSIGN_OR_RETURN(bool dst_is_dir, to->IsDirectory(dst));
      if (dst_is_dir != src_is_dir) KVFS_RETURN_IF_ERROR(RemoveTree(to, dst));
    }
    if (src_is_dir) {
      KVFS_RETURN_IF_ERROR(CopyTreeDurably(from, src, to, dst));
    } else {
      KVFS_RETURN_IF_ERROR(CopyFile(from, src, to, dst));
    }
  }
  return SyncDir(to, dst_dir);
}

}  // namespace kvfs::sync
