// The numbers behind /.kvfs/stats and /.kvfs/metrics, and their two renderings.
//
// One StatsSnapshot is gathered (Filesystem::CollectStats) and rendered by either writer, and
// both writers walk the same table of fields, so the JSON and the Prometheus text can never
// disagree on a name's value or leave one out.
//
// /.kvfs/stats (StatsJson): one JSON object, read by scripts and tests, so its field names and
// structure are a contract:
//   {"pid", "mountpoint", "uptime_s", "single_store", "no_open", "writeback_cache",
//    "stores": [{"name", "engine", "data_dir", "sync", "failed",
//                "files": {FileStoreStats' counters}, "engine_stats": {EngineStats' counters},
//                "wal": {WalStats' counters, "failed"},
//                "recovery": {"summary", "records_read", "records_replayed", "dropped_bytes",
//                             "dropped_segment", "dropped_offset", "dropped_reason",
//                             "facts": {engine-specific counts}, "warnings": [...]}}]}
//
// /.kvfs/metrics (StatsPrometheus): the Prometheus text exposition format, version 0.0.4, as
// node_exporter and JuiceFS serve it: per metric family a "# HELP" and a "# TYPE" line, then one
// sample per store labelled {store="NAME",engine="ENGINE"}. Names follow Prometheus' naming
// conventions: prefix kvfs_, then the group (file_, engine_, wal_), the JSON field's name, base
// units in the name (_bytes, _seconds), and _total for counters. A field is named after its
// JSON field, except that a unit moves to the end: the engine's bytes_written is
// kvfs_engine_written_bytes_total, bytes_read kvfs_engine_read_bytes_total, and the log's
// bytes_appended kvfs_wal_appended_bytes_total. Booleans are gauges of 0 or 1; the mount's own
// fields are kvfs_uptime_seconds and the info gauge kvfs_mount_info (value 1, the rest as
// labels), a store's configuration the info gauge kvfs_store_info. What the open recovered is
// kvfs_recovery_*: records replayed, torn-tail bytes dropped, warnings, and each engine fact as
// kvfs_recovery_fact{...,fact="NAME"} (facts differ between engines).
//
// Strings (paths, names) are made valid UTF-8 when gathered (invalid bytes become U+FFFD), since
// neither format can carry other bytes.
//
// Thread safety: pure functions of their arguments.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engines/engine.h"
#include "fusefs/file_store.h"

namespace kvfs::fusefs {

struct StoreStatsSnapshot {
  std::string name;
  std::string engine;
  std::string data_dir;
  std::string sync;     // config::SyncModeName
  bool failed = false;  // a sync failed: read-only until remounted
  FileStoreStats files;
  engines::EngineStats engine_stats;  // its `wal` is the "wal" object
  engines::RecoveryReport recovery;   // what the store's open found (Engine::recovery())
};

struct StatsSnapshot {
  int64_t pid = 0;
  std::string mountpoint;
  int64_t uptime_s = 0;
  bool single_store = false;
  bool no_open = false;
  bool writeback_cache = false;
  std::vector<StoreStatsSnapshot> stores;  // empty once the stores are closed
};

// `s` with every byte that is not part of valid UTF-8 replaced by U+FFFD.
std::string ValidUtf8(std::string_view s);

// /.kvfs/stats: the snapshot as a JSON object, indented by two spaces, ending in a newline.
std::string StatsJson(const StatsSnapshot& snapshot);

// /.kvfs/metrics: the snapshot in Prometheus' text exposition format (version 0.0.4).
std::string StatsPrometheus(const StatsSnapshot& snapshot);

}  // namespace kvfs::fusefs
