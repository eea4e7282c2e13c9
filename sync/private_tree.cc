// The walk behind CheckPrivateTree, and the words of its refusals.
#include "sync/private_tree.h"

#include <pwd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "sync/durable.h"

namespace kvfs::sync {
namespace {

// "uid 1000 (alice)", or "uid 1000" when no user has that id. getpwuid_r: the daemon may run
// this while other threads work.
std::string DescribeUid(uint32_t uid) {
  std::string text = "uid " + std::to_string(uid);
  passwd pw{};
  passwd* found = nullptr;
  std::vector<char> buf(16384);
  if (::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) == 0 && found != nullptr) {
    text += " (";
    text += found->pw_name;
    text += ")";
  }
  return text;
}

std::string Octal(uint32_t mode) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "%04o", mode & 07777);
  return buf;
}

Status Refuse(std::string message) {
  return Status(StatusCode::kInvalidArgument, std::move(message), EACCES);
}

// Checks `path` (`top` itself, or a name found under it), then, if it is a directory, what it
// holds. A name under `top` that vanished between its listing and its lstat is skipped.
Status CheckName(FileSystem* fs, const std::string& top, const std::string& path, uint32_t uid) {
  Result<FileStat> st = fs->Stat(path);
  if (!st.ok()) {
    if (st.status().IsNotFound() && path != top) return Status::OK();  // removed meanwhile
    return st.status();
  }
  switch (st->type) {
    case FileStat::Type::kFile:
    case FileStat::Type::kDirectory:
      break;
    case FileStat::Type::kSymlink:
      return Refuse(path +
                    " is a symbolic link: a store's directory holds only kvfs's own files and "
                    "directories, and kvfs does not follow links there; put the directory it "
                    "points to in its place (or name that directory as the data directory)");
    case FileStat::Type::kOther:
      return Refuse(path +
                    " is not a regular file or a directory: a store's directory holds only "
                    "kvfs's own files and directories; move it out of " +
                    top);
  }
  if (st->uid != uid) {
    return Refuse(path + " is owned by " + DescribeUid(st->uid) + ", but kvfs runs as " +
                  DescribeUid(uid) +
                  ": a store is opened only by the user who owns it (a root mount of a user's "
                  "store, or the reverse, leaves files the other user cannot use); run kvfs as " +
                  DescribeUid(st->uid) + ", or give the store to " + DescribeUid(uid) +
                  ": chown -R " + std::to_string(uid) + " " + top);
  }
  if ((st->mode & 077) != 0) {
    return Refuse(path + " has mode " + Octal(st->mode) +
                  ": group or others may read, write or enter it, and every file of a store "
                  "holds bytes of the files kept in it, so kvfs opens a store only when it is "
                  "private to its owner; fix it with: chmod -R go-rwx " +
                  top);
  }
  if (st->type != FileStat::Type::kDirectory) return Status::OK();
  Result<std::vector<std::string>> names = fs->ListDir(path);
  if (!names.ok()) {
    if (names.status().IsNotFound() && path != top) return Status::OK();
    return names.status();
  }
  for (const std::string& name : *names) {
    KVFS_RETURN_IF_ERROR(CheckName(fs, top, JoinPath(path, name), uid));
  }
  return Status::OK();
}

}  // namespace

Status CheckPrivateTree(FileSystem* fs, const std::string& dir, uint32_t uid) {
  return CheckName(fs, dir, dir, uid);
}

}  // namespace kvfs::sync
