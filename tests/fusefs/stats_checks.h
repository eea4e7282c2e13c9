// Reading /.kvfs/stats and /.kvfs/metrics in tests: the JSON parsed with nlohmann-json and
// looked at field by field, the Prometheus text (exposition format 0.0.4) parsed line by line,
// strictly, and the two compared number by number.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace kvfs::test {

// `text` as JSON; a discarded value (is_discarded()) when it is not JSON.
nlohmann::json ParseJson(const std::string& text);

// The sum over every store of stats["stores"][i][group][key]; -1 if no store has it.
int64_t SumOverStores(const nlohmann::json& stats, const std::string& group,
                      const std::string& key);

struct MetricSample {
  std::string name;
  std::map<std::string, std::string> labels;  // values unescaped
  std::string value;                          // as written
};

struct Exposition {
  std::map<std::string, std::string> types;  // family -> "counter" or "gauge"
  std::map<std::string, std::string> helps;  // family -> its HELP text
  std::vector<MetricSample> samples;         // in order
};

// Parses Prometheus text. Fails, naming the line, unless every line is a "# HELP", a "# TYPE"
// (counter or gauge; each once per family, before its samples) or a sample "name{labels} value"
// of a family whose TYPE came before, with each family's samples together, valid metric and
// label names, counters named *_total and gauges not, and the text ends in a newline.
testing::AssertionResult ParseExposition(const std::string& text, Exposition* out);

// Whether `metrics` shows exactly the numbers of `stats` (the JSON of /.kvfs/stats): each
// number and boolean of each store ("failed", "files", "engine_stats", "wal") has one sample
// labelled with its store and engine and the same value, every sample has its JSON number, and
// the mount's fields agree (uptime within `uptime_slack_s` seconds).
testing::AssertionResult MetricsAgreeWithStats(const nlohmann::json& stats,
                                               const Exposition& metrics,
                                               int64_t uptime_slack_s = 0);

}  // namespace kvfs::test
