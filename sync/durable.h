// Durable-file helpers: the few sequences that make a file or a name survive a power cut.
//
// Every file an engine creates follows one of these:
// - a new file that something will refer to: CreateFileDurably (create, sync the empty file,
//   sync its directory), then write and DataSync before referring to what it holds;
// - a replacement: WriteFileAtomically (write "<path>.tmp", DataSync, rename over <path>,
//   Fsync the directory). A crash at any point leaves either the old or the new contents;
// - a removal: RemoveFileDurably (unlink, Fsync the directory), and only once whatever
//   replaces the file is itself durable.
//
// Every sync error is returned as is; none is retried.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "sync/file_system.h"

namespace kvfs::sync {

// Path helpers for '/'-separated paths. DirName("a/b") == "a", DirName("b") == ".",
// DirName("/b") == "/"; BaseName("a/b") == "b". JoinPath("a", "b") == "a/b".
std::string DirName(std::string_view path);
std::string BaseName(std::string_view path);
std::string JoinPath(std::string_view dir, std::string_view name);

// Opens `dir` and Fsyncs it.
Status SyncDir(FileSystem* fs, const std::string& dir);

// Creates `path` (it must not exist), Syncs the empty file and Fsyncs its directory, so the
// name survives a crash before anything is written. Returns the open file.
Result<std::unique_ptr<WritableFile>> CreateFileDurably(FileSystem* fs, const std::string& path);

// Creates directory `path` unless it exists, then Fsyncs its parent in either case (an
// earlier run may have created it and crashed before the parent was synced). Missing parents
// are created the same way first (mkdir -p). Paths should be absolute.
Status CreateDirDurably(FileSystem* fs, const std::string& path);

// What a failed WriteFileAtomically may have left under `path`.
enum class ReplaceOutcome {
  kReplaced,   // OK: `path` holds the new contents, durably
  kUnchanged,  // the failure came before the rename (or the rename reported no room for the
               // new name, which changes nothing): `path` holds the old contents
  kUncertain,  // the rename was attempted: `path` may hold either contents, now and after a
               // crash, so whatever either one refers to must be kept
};

// Replaces `path` with `data` atomically and durably: "<path>.tmp", DataSync, rename, Fsync dir.
// `outcome`, when given, says whether a failure left the old contents for certain; a caller
// whose old and new contents name other files needs that to know which of them may go.
Status WriteFileAtomically(FileSystem* fs, const std::string& path, std::string_view data,
                           ReplaceOutcome* outcome = nullptr);

// Removes `path` and Fsyncs its directory.
Status RemoveFileDurably(FileSystem* fs, const std::string& path);

// Reads a whole file.
Result<std::string> ReadFileToString(FileSystem* fs, const std::string& path);

}  // namespace kvfs::sync
