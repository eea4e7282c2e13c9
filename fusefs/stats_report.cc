#include "fusefs/stats_report.h"

#include <nlohmann/json.hpp>

namespace kvfs::fusefs {
namespace {

using Json = nlohmann::ordered_json;  // keeps the fields in the order written here

enum class Kind { kCounter, kGauge };

// One number of a store's FileStoreStats, EngineStats or WalStats: where it goes in the JSON
// and what it is called in the metrics.
template <typename Stats>
struct Field {
  std::string_view json;
  uint64_t Stats::*member;
  Kind kind;
  std::string_view metric;
  std::string_view help;
};

constexpr Kind kCounter = Kind::kCounter;
constexpr Kind kGauge = Kind::kGauge;

constexpr Field<FileStoreStats> kFileFields[] = {
    {"lookups", &FileStoreStats::lookups, kCounter, "kvfs_file_lookups_total", "Name lookups."},
    {"getattrs", &FileStoreStats::getattrs, kCounter, "kvfs_file_getattrs_total",
     "Attribute reads."},
    {"setattrs", &FileStoreStats::setattrs, kCounter, "kvfs_file_setattrs_total",
     "Attribute changes (chmod, chown, truncate, utimes)."},
    {"readdirs", &FileStoreStats::readdirs, kCounter, "kvfs_file_readdirs_total",
     "Directory listings (one per reply)."},
    {"creates", &FileStoreStats::creates, kCounter, "kvfs_file_creates_total", "Files created."},
    {"mkdirs", &FileStoreStats::mkdirs, kCounter, "kvfs_file_mkdirs_total", "Directories created."},
    {"symlinks", &FileStoreStats::symlinks, kCounter, "kvfs_file_symlinks_total",
     "Symbolic links created."},
    {"links", &FileStoreStats::links, kCounter, "kvfs_file_links_total",
     "Hard links made (names added to existing files)."},
    {"unlinks", &FileStoreStats::unlinks, kCounter, "kvfs_file_unlinks_total",
     "Files and links removed."},
    {"rmdirs", &FileStoreStats::rmdirs, kCounter, "kvfs_file_rmdirs_total", "Directories removed."},
    {"renames", &FileStoreStats::renames, kCounter, "kvfs_file_renames_total", "Renames."},
    {"reads", &FileStoreStats::reads, kCounter, "kvfs_file_reads_total", "File reads."},
    {"read_bytes", &FileStoreStats::read_bytes, kCounter, "kvfs_file_read_bytes_total",
     "Bytes of file data read."},
    {"writes", &FileStoreStats::writes, kCounter, "kvfs_file_writes_total", "File writes."},
    {"write_bytes", &FileStoreStats::write_bytes, kCounter, "kvfs_file_write_bytes_total",
     "Bytes of file data written."},
    {"fsyncs", &FileStoreStats::fsyncs, kCounter, "kvfs_file_fsyncs_total", "fsync calls."},
    {"fdatasyncs", &FileStoreStats::fdatasyncs, kCounter, "kvfs_file_fdatasyncs_total",
     "fdatasync calls."},
    {"fsyncdirs", &FileStoreStats::fsyncdirs, kCounter, "kvfs_file_fsyncdirs_total",
     "fsync calls on directories."},
    {"errors", &FileStoreStats::errors, kCounter, "kvfs_file_errors_total",
     "Operations failed by the engine."},
    {"sync_errors", &FileStoreStats::sync_errors, kCounter, "kvfs_file_sync_errors_total",
     "Failed syncs (the store is read-only after the first)."},
    {"known_nodes", &FileStoreStats::known_nodes, kGauge, "kvfs_file_known_nodes",
     "Files and directories the kernel holds."},
    {"orphans", &FileStoreStats::orphans, kGauge, "kvfs_file_orphans",
     "Files unlinked while still held."},
    {"purges", &FileStoreStats::purges, kCounter, "kvfs_file_purges_total",
     "Removed files whose chunk and xattr keys the background reclaimer finished deleting."},
    {"purged_keys", &FileStoreStats::purged_keys, kCounter, "kvfs_file_purged_keys_total",
     "Chunk and xattr keys the background reclaimer deleted."},
};

constexpr Field<engines::EngineStats> kEngineFields[] = {
    {"gets", &engines::EngineStats::gets, kCounter, "kvfs_engine_gets_total", "Point reads."},
    {"puts", &engines::EngineStats::puts, kCounter, "kvfs_engine_puts_total", "Keys written."},
    {"deletes", &engines::EngineStats::deletes, kCounter, "kvfs_engine_deletes_total",
     "Keys deleted."},
    {"batches", &engines::EngineStats::batches, kCounter, "kvfs_engine_batches_total",
     "Atomic batches applied."},
    {"scans", &engines::EngineStats::scans, kCounter, "kvfs_engine_scans_total",
     "Ordered prefix scans."},
    {"bytes_written", &engines::EngineStats::bytes_written, kCounter,
     "kvfs_engine_written_bytes_total", "Bytes of keys and values applied."},
    {"bytes_read", &engines::EngineStats::bytes_read, kCounter, "kvfs_engine_read_bytes_total",
     "Bytes of values returned."},
    {"syncs", &engines::EngineStats::syncs, kCounter, "kvfs_engine_syncs_total",
     "Sync calls on the engine."},
    {"compactions", &engines::EngineStats::compactions, kCounter, "kvfs_engine_compactions_total",
     "Merges and compactions completed."},
    {"live_keys", &engines::EngineStats::live_keys, kGauge, "kvfs_engine_live_keys",
     "Keys in the store."},
    {"errors", &engines::EngineStats::errors, kCounter, "kvfs_engine_errors_total",
     "Engine operations that failed (other than not found)."},
};

constexpr Field<sync::WalStats> kWalFields[] = {
    {"appends", &sync::WalStats::appends, kCounter, "kvfs_wal_appends_total",
     "Records appended to the log."},
    {"bytes_appended", &sync::WalStats::bytes_appended, kCounter, "kvfs_wal_appended_bytes_total",
     "Payload bytes appended to the log."},
    {"writes", &sync::WalStats::writes, kCounter, "kvfs_wal_writes_total",
     "Group writes to log segments."},
    {"syncs", &sync::WalStats::syncs, kCounter, "kvfs_wal_syncs_total",
     "fdatasync and fsync calls on log segments."},
    {"synced_requests", &sync::WalStats::synced_requests, kCounter,
     "kvfs_wal_synced_requests_total", "Appends and sync requests answered by those syncs."},
    {"max_group", &sync::WalStats::max_group, kGauge, "kvfs_wal_max_group",
     "Most requests answered by one sync."},
    {"segments_created", &sync::WalStats::segments_created, kCounter,
     "kvfs_wal_segments_created_total", "Log segments created."},
    {"segments_deleted", &sync::WalStats::segments_deleted, kCounter,
     "kvfs_wal_segments_deleted_total", "Log segments deleted."},
    {"last_lsn", &sync::WalStats::last_lsn, kGauge, "kvfs_wal_last_lsn",
     "Highest log sequence number written."},
    {"durable_lsn", &sync::WalStats::durable_lsn, kGauge, "kvfs_wal_durable_lsn",
     "Highest log sequence number on stable storage."},
    {"sync_micros", &sync::WalStats::sync_micros, kCounter, "kvfs_wal_sync_micros_total",
     "Microseconds spent in log syncs (fdatasync, fsync) by appenders and sync callers."},
    {"gather_micros", &sync::WalStats::gather_micros, kCounter, "kvfs_wal_gather_micros_total",
     "Microseconds sync leaders waited for more syncers before syncing."},
};

// One number of one store, as both writers see it.
struct Number {
  std::string_view group;  // the JSON object it is in: "" (the store's own), "files", ...
  std::string_view json;
  Kind kind;
  std::string_view metric;
  std::string_view help;
  uint64_t value;
  bool boolean = false;  // JSON true/false; the metric is 0 or 1
};

// Every number of `s`, in the JSON's order.
std::vector<Number> NumbersOf(const StoreStatsSnapshot& s) {
  std::vector<Number> out;
  out.push_back({"", "failed", kGauge, "kvfs_store_failed",
                 "1 once a sync failed: the store is read-only until remounted.",
                 s.failed ? 1u : 0u, true});
  const auto add = [&](std::string_view group, const auto& fields, const auto& stats) {
    for (const auto& f : fields)
      out.push_back({group, f.json, f.kind, f.metric, f.help, stats.*f.member});
  };
  add("files", kFileFields, s.files);
  add("engine_stats", kEngineFields, s.engine_stats);
  add("wal", kWalFields, s.engine_stats.wal);
  out.push_back({"wal", "failed", kGauge, "kvfs_wal_failed",
                 "1 once the log failed: every later append and sync fails.",
                 s.engine_stats.wal.failed ? 1u : 0u, true});
  return out;
}

// A label value: backslash, double quote and line feed escaped, as the format requires.
std::string LabelValue(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

using Labels = std::vector<std::pair<std::string_view, std::string>>;

std::string LabelSet(const Labels& labels) {
  if (labels.empty()) return "";
  std::string out = "{";
  for (const auto& [name, value] : labels) {
    if (out.size() > 1) out += ',';
    out += std::string(name) + "=\"" + LabelValue(value) + '"';
  }
  return out + "}";
}

void Family(std::string* out, std::string_view name, Kind kind, std::string_view help) {
  *out += "# HELP " + std::string(name) + " " + std::string(help) + "\n";
  *out += "# TYPE " + std::string(name) + (kind == Kind::kCounter ? " counter\n" : " gauge\n");
}

void Sample(std::string* out, std::string_view name, const Labels& labels, uint64_t value) {
  *out += std::string(name) + LabelSet(labels) + " " + std::to_string(value) + "\n";
}

const char* Bool(bool b) { return b ? "true" : "false"; }

Json RecoveryJson(const engines::RecoveryReport& r) {
  Json j;
  j["summary"] = ValidUtf8(r.Summary());
  j["records_read"] = r.log.records_read;
  j["records_replayed"] = r.log.records_replayed;
  j["dropped_bytes"] = r.log.dropped_bytes;
  j["dropped_segment"] = r.log.dropped_segment;
  j["dropped_offset"] = r.log.dropped_offset;
  j["dropped_reason"] = ValidUtf8(r.log.dropped_reason);
  j["facts"] = Json::object();
  for (const auto& [name, value] : r.facts) j["facts"][name] = value;
  j["warnings"] = Json::array();
  for (const std::string& w : r.warnings) j["warnings"].push_back(ValidUtf8(w));
  return j;
}

// What each store's open recovered. Engines report different facts, so these families come
// after the per-store table, each fact a labelled sample.
void RecoveryMetrics(std::string* out, const StatsSnapshot& snapshot,
                     const std::vector<Labels>& labels) {
  const auto per_store = [&](std::string_view name, std::string_view help, auto value) {
    Family(out, name, kGauge, help);
    for (size_t k = 0; k < snapshot.stores.size(); ++k) {
      Sample(out, name, labels[k], value(snapshot.stores[k].recovery));
    }
  };
  per_store("kvfs_recovery_records_replayed",
            "Log records the open replayed into the engine's state.",
            [](const engines::RecoveryReport& r) { return r.log.records_replayed; });
  per_store("kvfs_recovery_dropped_bytes",
            "Bytes of torn log tail the open dropped (never acknowledged durable).",
            [](const engines::RecoveryReport& r) { return r.log.dropped_bytes; });
  per_store("kvfs_recovery_warnings", "Things the open found that an operator should look at.",
            [](const engines::RecoveryReport& r) { return uint64_t{r.warnings.size()}; });
  Family(out, "kvfs_recovery_fact", kGauge,
         "What the open found in the engine's own files (tables, merged files, hints...).");
  for (size_t k = 0; k < snapshot.stores.size(); ++k) {
    for (const auto& [name, value] : snapshot.stores[k].recovery.facts) {
      Labels l = labels[k];
      l.emplace_back("fact", name);
      Sample(out, "kvfs_recovery_fact", l, value);
    }
  }
}

}  // namespace

std::string ValidUtf8(std::string_view s) {
  // nlohmann's writer replaces each invalid byte with U+FFFD; reading that back gives the text.
  const std::string quoted =
      nlohmann::json(std::string(s))
          .dump(-1, ' ', /*ensure_ascii=*/false, nlohmann::json::error_handler_t::replace);
  return nlohmann::json::parse(quoted).get<std::string>();
}

std::string StatsJson(const StatsSnapshot& snapshot) {
  Json j;
  j["pid"] = snapshot.pid;
  j["mountpoint"] = snapshot.mountpoint;
  j["uptime_s"] = snapshot.uptime_s;
  j["single_store"] = snapshot.single_store;
  j["no_open"] = snapshot.no_open;
  j["writeback_cache"] = snapshot.writeback_cache;
  j["stores"] = Json::array();
  for (const StoreStatsSnapshot& s : snapshot.stores) {
    Json store;
    store["name"] = s.name;
    store["engine"] = s.engine;
    store["data_dir"] = s.data_dir;
    store["sync"] = s.sync;
    for (const Number& n : NumbersOf(s)) {
      Json& at = n.group.empty() ? store[std::string(n.json)]
                                 : store[std::string(n.group)][std::string(n.json)];
      if (n.boolean) {
        at = n.value != 0;
      } else {
        at = n.value;
      }
    }
    store["recovery"] = RecoveryJson(s.recovery);
    j["stores"].push_back(std::move(store));
  }
  // Strings were made valid UTF-8 when gathered; `replace` keeps a stray byte from throwing.
  return j.dump(2, ' ', /*ensure_ascii=*/false, Json::error_handler_t::replace) + "\n";
}

std::string StatsPrometheus(const StatsSnapshot& snapshot) {
  std::string out;
  Family(&out, "kvfs_mount_info", kGauge,
         "The mount: its mountpoint, daemon pid and options (value 1).");
  Sample(&out, "kvfs_mount_info",
         {{"mountpoint", snapshot.mountpoint},
          {"pid", std::to_string(snapshot.pid)},
          {"single_store", Bool(snapshot.single_store)},
          {"no_open", Bool(snapshot.no_open)},
          {"writeback_cache", Bool(snapshot.writeback_cache)}},
         1);
  Family(&out, "kvfs_uptime_seconds", kGauge, "Seconds since the mount started.");
  Sample(&out, "kvfs_uptime_seconds", {}, static_cast<uint64_t>(snapshot.uptime_s));
  if (snapshot.stores.empty()) return out;

  std::vector<Labels> labels;
  std::vector<std::vector<Number>> numbers;
  for (const StoreStatsSnapshot& s : snapshot.stores) {
    labels.push_back({{"store", s.name}, {"engine", s.engine}});
    numbers.push_back(NumbersOf(s));
  }
  Family(&out, "kvfs_store_info", kGauge,
         "A store's configuration: its data directory and sync mode (value 1).");
  for (const StoreStatsSnapshot& s : snapshot.stores) {
    Sample(&out, "kvfs_store_info",
           {{"store", s.name}, {"engine", s.engine}, {"data_dir", s.data_dir}, {"sync", s.sync}},
           1);
  }
  // Every store has the same numbers in the same order: one family per number.
  for (size_t i = 0; i < numbers[0].size(); ++i) {
    const Number& first = numbers[0][i];
    Family(&out, first.metric, first.kind, first.help);
    for (size_t k = 0; k < numbers.size(); ++k) {
      Sample(&out, first.metric, labels[k], numbers[k][i].value);
    }
  }
  RecoveryMetrics(&out, snapshot, labels);
  return out;
}

}  // namespace kvfs::fusefs
