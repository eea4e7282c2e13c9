// CopyTreeDurably: copies a directory tree from one FileSystem to another, durably.
//
// What it is for: a daemon running on the fault-injecting FileSystem (tests of power cuts
// through the mounted stack) loads its data dir from the real disk at start and, after a
// modelled power cut, writes the surviving image back, so that a fresh daemon mounts exactly
// what a machine would have found after losing power.
#pragma once

#include <string>

#include "sync/file_system.h"

namespace kvfs::sync {

// Makes `dst_dir` on `to` hold exactly the files and directories under `src_dir` on `from`:
// creates `dst_dir` (mkdir -p), removes entries of `dst_dir` that `src_dir` lacks, writes
// every file (truncating), syncs each file and then each directory. Regular files and
// directories only.
Status CopyTreeDurably(FileSystem* from, const std::string& src_dir, FileSystem* to,
                       const std::string& dst_dir);

}  // namespace kvfs::sync
