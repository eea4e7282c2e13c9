#include "fusefs/control_files.h"

#include <algorithm>
#include <utility>

#include "fusefs/inode_map.h"
#include "fusefs/time_ns.h"

namespace kvfs::fusefs {

ControlFiles::ControlFiles(std::string config_toml, CollectFn collect, uint32_t uid, uint32_t gid,
                           bool public_access, int64_t started_ns)
    : config_toml_(std::move(config_toml)),
      collect_(std::move(collect)),
      uid_(uid),
      gid_(gid),
      dir_mode_(public_access ? 0555 : 0500),
      file_mode_(public_access ? 0444 : 0400),
      started_ns_(started_ns) {}

const std::vector<ControlFile>& ControlFiles::Files() {
  static const std::vector<ControlFile> files = {
      {"stats", kStatsNode}, {"config", kConfigNode}, {"metrics", kMetricsNode}};
  return files;
}

uint64_t ControlFiles::NodeNamed(std::string_view name) {
  for (const ControlFile& f : Files()) {
    if (f.name == name) return f.node;
  }
  return 0;
}

bool ControlFiles::IsNode(uint64_t node) {
  return node >= kControlDirNode && node <= kLastVirtualNode;
}

bool ControlFiles::IsLive(uint64_t node) { return node == kStatsNode || node == kMetricsNode; }

ControlFiles::Live& ControlFiles::LiveOf(uint64_t node) {
  return node == kStatsNode ? stats_ : metrics_;
}

void ControlFiles::Update(uint64_t node, bool refresh) {
  Live& live = LiveOf(node);
  if (!refresh && live.time_ns != 0) return;
  const StatsSnapshot snapshot = collect_();
  live.content = node == kStatsNode ? StatsJson(snapshot) : StatsPrometheus(snapshot);
  // Strictly increasing, so a reader that compares times sees it change.
  live.time_ns = std::max(NowNs(), live.time_ns + 1);
}

std::string ControlFiles::Content(uint64_t node, bool refresh) {
  if (node == kConfigNode) return config_toml_;
  if (!IsLive(node)) return "";
  std::lock_guard lock(mu_);
  Update(node, refresh);
  return LiveOf(node).content;
}

struct stat ControlFiles::Attr(uint64_t node) {
  struct stat st = {};
  st.st_ino = InodeMap::VirtualIno(node);
  st.st_uid = uid_;
  st.st_gid = gid_;
  st.st_nlink = 1;
  st.st_blksize = 4096;
  st.st_atim = st.st_mtim = st.st_ctim = ToTimespec(started_ns_);
  if (node == kControlDirNode) {
    st.st_mode = S_IFDIR | dir_mode_;
    st.st_nlink = 2;  // no subdirectories
  } else if (node == kConfigNode) {
    st.st_mode = S_IFREG | file_mode_;
    st.st_size = static_cast<off_t>(config_toml_.size());
  } else if (IsLive(node)) {
    st.st_mode = S_IFREG | file_mode_;
    std::lock_guard lock(mu_);
    Update(node, /*refresh=*/false);
    const Live& live = LiveOf(node);
    st.st_size = static_cast<off_t>(live.content.size());
    st.st_mtim = st.st_ctim = ToTimespec(live.time_ns);
  }
  return st;
}

}  // namespace kvfs::fusefs
