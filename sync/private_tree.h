// CheckPrivateTree: is a directory, and everything in it, private to one user?
//
// A store's files hold the bytes of every file kept in it, so a store is only as private as its
// directory: a 0600 file in the mount means nothing if its bytes can be read from a 0644 log
// segment. Every store is checked with this before an engine opens anything in it (the daemon
// and the offline tools alike, fusefs/stores.h), and refused, never repaired, when it fails:
// as PostgreSQL does with its data directory, the operator decides how the modes came to be
// loose and fixes them, with the command the message gives. kvfs itself creates only private
// files and directories (file_system.h, the privacy policy).
//
// The rule, for `dir` itself and every name under it, walked recursively without following
// symbolic links:
// - it is a directory or a regular file (a symbolic link, a FIFO, a socket or a device is
//   refused: kvfs puts none there, and a link could lead the check, or the engine, elsewhere);
// - it is owned by `uid` (a root mount of a user's store, or the reverse, is how files end up
//   owned by a user who then cannot use them, or readable by the wrong one);
// - it has no permission bit for group or others (mode & 077 == 0).
// The first name that breaks it is refused: InvalidArgument (errno EACCES) naming the path, its
// owner or mode (in octal), and the fix. Names are visited in byte order, a directory before
// what it holds, so the same tree always names the same path. A name removed while the walk
// runs (another process using the store) is skipped; its engine open will say the store is busy.
//
// Thread safety: as the FileSystem's; the walk holds no lock.
#pragma once

#include <cstdint>
#include <string>

#include "sync/file_system.h"
#include "sync/status.h"

namespace kvfs::sync {

Status CheckPrivateTree(FileSystem* fs, const std::string& dir, uint32_t uid);

}  // namespace kvfs::sync
