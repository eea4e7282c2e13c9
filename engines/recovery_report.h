// RecoveryReport: what an engine's open found and did, in the same shape for every engine, so
// the daemon's mount log, /.kvfs/stats and `kvfs check` show it without knowing the engine.
//
// Every engine replays its write-ahead log at open; the log's part (segments, records read and
// replayed, the torn tail dropped and where) is `log`. What else the engine read (tables, hint
// files, merged files) is in `facts`, named counts in a fixed order; anything an operator should
// look at (a hint file that was rejected and scanned around) is in `warnings`.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sync/wal_reader.h"

namespace kvfs::engines {

struct RecoveryReport {
  sync::WalReadReport log;
  std::vector<std::pair<std::string, uint64_t>> facts;  // e.g. {"tables", 12}
  std::vector<std::string> warnings;

  void AddFact(std::string_view name, uint64_t value) { facts.emplace_back(name, value); }
  // Whether the open dropped bytes (a torn log tail) that an operator should hear about.
  bool dropped_bytes() const { return log.dropped_bytes > 0; }
  // One line for a log: "log: 3 segments, 1200 records (40 replayed), next LSN 1201, dropped 17
  // bytes of torn tail (...); tables 12, blob_files 2; warning: ...".
  std::string Summary() const;
};

}  // namespace kvfs::engines
