// ControlFiles: the control directory /.kvfs and its read-only virtual files.
//
//   /.kvfs/           the directory, hidden from the mount root's listing (reachable by name,
//                     like ZFS's .zfs); its own listing shows the files below
//   /.kvfs/stats      JSON: the mount and, per store, its FileStore and engine statistics
//   /.kvfs/config     the configuration in force, as TOML (config::ToToml), secrets redacted
//   /.kvfs/metrics    the same numbers as stats, in Prometheus' text exposition format
//
// stats and metrics are "live": each is regenerated from a fresh StatsSnapshot on each lookup
// and each open, so every `cat` sees current numbers; the kernel must not cache their entry or
// attributes (timeout 0), and they are read with direct_io (the size of the snapshot an open
// took is not the size the kernel cached). A file's mtime is the time of its last snapshot,
// strictly increasing. config never changes for the life of the mount.
//
// Access: the directory and its files belong to the mounting user and are only theirs by
// default (0500 and 0400): the stats name every store's data directory and the config will
// carry endpoints. `-o kvfs_public_control` makes them readable by all (0555 and 0444), for a
// monitoring agent running as another user of an allow_other mount. The kernel enforces the
// modes (the mount always has default_permissions).
//
// The rendering of the numbers is stats_report.h's; this class keeps the snapshots.
//
// Thread safety: every method may be called from any thread at once.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>

#include "fusefs/stats_report.h"

namespace kvfs::fusefs {

inline constexpr std::string_view kControlDirName = ".kvfs";

// A file of the control directory: its name and its virtual node (inode_map.h).
struct ControlFile {
  std::string_view name;
  uint64_t node;
};

class ControlFiles {
 public:
  using CollectFn = std::function<StatsSnapshot()>;

  // `config_toml` is shown as it is (the caller redacts it); `collect` gathers the numbers for
  // stats and metrics; files and the directory belong to uid:gid, readable by them alone unless
  // `public_access`; times before the first snapshot are `started_ns`.
  ControlFiles(std::string config_toml, CollectFn collect, uint32_t uid, uint32_t gid,
               bool public_access, int64_t started_ns);
  ControlFiles(const ControlFiles&) = delete;
  ControlFiles& operator=(const ControlFiles&) = delete;

  // The control directory's files, in listing order.
  static const std::vector<ControlFile>& Files();
  // The node of the file `name` in the control directory, or 0 if there is none.
  static uint64_t NodeNamed(std::string_view name);
  // True for the control directory's node and its files' nodes.
  static bool IsNode(uint64_t node);
  // True for the files regenerated on each lookup and open (stats, metrics).
  static bool IsLive(uint64_t node);

  // The content of file `node`: for a live file, a fresh snapshot when `refresh` (a lookup or
  // an open), else the last one (the first call takes one). "" for the directory.
  std::string Content(uint64_t node, bool refresh);
  // stat(2) of `node`: the directory (0500, or 0555 public) or a file (0400, or 0444 public;
  // its current content's size).
  struct stat Attr(uint64_t node);

 private:
  struct Live {
    std::string content;
    int64_t time_ns = 0;  // of the snapshot; 0 = none taken yet
  };
  Live& LiveOf(uint64_t node);
  // Regenerates live file `node` if `refresh` or never done. Caller holds mu_.
  void Update(uint64_t node, bool refresh);

  const std::string config_toml_;
  const CollectFn collect_;
  const uint32_t uid_;
  const uint32_t gid_;
  const mode_t dir_mode_;
  const mode_t file_mode_;
  const int64_t started_ns_;

  std::mutex mu_;
  Live stats_;    // guarded by mu_
  Live metrics_;  // guarded by mu_
};

}  // namespace kvfs::fusefs
