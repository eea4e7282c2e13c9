// The libfuse low-level ops that serve a Filesystem (filesystem.h): each op decodes its request,
// calls one Filesystem method and replies exactly once, holding no lock. What the replies mean
// (errnos, caching, opens) is Filesystem's contract; the adapter adds only what libfuse asks of
// a reply: a reference the kernel never saw (an interrupted request) is forgotten again, and
// a handle it never saw is dropped.
#pragma once

#include "fusefs/filesystem.h"

struct fuse_lowlevel_ops;

namespace kvfs::fusefs {

// The libfuse ops table. The session's userdata must be the Filesystem.
const fuse_lowlevel_ops* LowLevelOps();

}  // namespace kvfs::fusefs
