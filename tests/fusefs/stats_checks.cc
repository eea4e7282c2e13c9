#include "tests/fusefs/stats_checks.h"

#include <cstdlib>
#include <set>
#include <sstream>

namespace kvfs::test {
namespace {

bool IsNameStart(char c, bool metric) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (metric && c == ':');
}
bool IsNameChar(char c, bool metric) { return IsNameStart(c, metric) || (c >= '0' && c <= '9'); }

// Reads a metric or label name at `*pos`; "" if there is none.
std::string ReadName(const std::string& line, size_t* pos, bool metric) {
  const size_t start = *pos;
  if (*pos >= line.size() || !IsNameStart(line[*pos], metric)) return "";
  while (*pos < line.size() && IsNameChar(line[*pos], metric)) ++*pos;
  return line.substr(start, *pos - start);
}

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Parses `line` as a sample; "" or what is wrong with it.
std::string ParseSample(const std::string& line, MetricSample* sample) {
  size_t pos = 0;
  sample->name = ReadName(line, &pos, /*metric=*/true);
  if (sample->name.empty()) return "no metric name";
  if (pos < line.size() && line[pos] == '{') {
    ++pos;
    while (pos < line.size() && line[pos] != '}') {
      const std::string label = ReadName(line, &pos, /*metric=*/false);
      if (label.empty()) return "bad label name";
      if (line.compare(pos, 2, "=\"") != 0) return "label " + label + " without =\"";
      pos += 2;
      std::string value;
      while (pos < line.size() && line[pos] != '"') {
        if (line[pos] == '\\') {
          if (++pos >= line.size()) return "escape at the end";
          if (line[pos] == 'n') {
            value += '\n';
          } else if (line[pos] == '\\' || line[pos] == '"') {
            value += line[pos];
          } else {
            return std::string("unknown escape \\") + line[pos];
          }
        } else {
          value += line[pos];
        }
        ++pos;
      }
      if (pos >= line.size()) return "unterminated label value";
      ++pos;  // the closing quote
      if (!sample->labels.emplace(label, value).second) return "label " + label + " twice";
      if (pos < line.size() && line[pos] == ',') ++pos;
    }
    if (pos >= line.size()) return "unterminated label set";
    ++pos;  // '}'
  }
  if (pos >= line.size() || line[pos] != ' ') return "no space before the value";
  sample->value = line.substr(pos + 1);
  if (sample->value.empty() || sample->value.find(' ') != std::string::npos) {
    return "not one value (timestamps are not written)";
  }
  char* end = nullptr;
  std::strtod(sample->value.c_str(), &end);
  if (*end != '\0') return "value " + sample->value + " is not a number";
  return "";
}

// The JSON name and group of a store's metric: kvfs_<group>_<field>[_total], where the group is
// file (JSON "files"), engine ("engine_stats"), wal or store (the store's own fields), and an
// engine's or log's field with a unit has the unit first in JSON (bytes_written).
bool JsonPlaceOf(const std::string& metric, const std::string& type, std::string* group,
                 std::string* field) {
  static const std::pair<std::string, std::string> kGroups[] = {{"kvfs_file_", "files"},
                                                                {"kvfs_engine_", "engine_stats"},
                                                                {"kvfs_wal_", "wal"},
                                                                {"kvfs_store_", ""}};
  for (const auto& [prefix, json_group] : kGroups) {
    if (metric.rfind(prefix, 0) != 0) continue;
    *group = json_group;
    *field = metric.substr(prefix.size());
    if (type == "counter") field->resize(field->size() - std::string("_total").size());
    if ((json_group == "engine_stats" || json_group == "wal") && EndsWith(*field, "_bytes")) {
      *field = "bytes_" + field->substr(0, field->size() - std::string("_bytes").size());
    }
    return true;
  }
  return false;
}

// A JSON number or boolean as the metric writes it.
std::string MetricValueOf(const nlohmann::json& v) {
  if (v.is_boolean()) return v.get<bool>() ? "1" : "0";
  return v.dump();
}

const nlohmann::json* StoreNamed(const nlohmann::json& stats, const std::string& name) {
  for (const nlohmann::json& s : stats["stores"]) {
    if (s.value("name", "") == name) return &s;
  }
  return nullptr;
}

}  // namespace

nlohmann::json ParseJson(const std::string& text) {
  return nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
}

int64_t SumOverStores(const nlohmann::json& stats, const std::string& group,
                      const std::string& key) {
  int64_t sum = -1;
  if (!stats.is_object() || !stats.contains("stores")) return sum;
  for (const nlohmann::json& s : stats["stores"]) {
    if (!s.contains(group) || !s[group].contains(key)) continue;
    sum = (sum < 0 ? 0 : sum) + s[group][key].get<int64_t>();
  }
  return sum;
}

testing::AssertionResult ParseExposition(const std::string& text, Exposition* out) {
  if (text.empty() || text.back() != '\n') {
    return testing::AssertionFailure() << "does not end in a newline:\n" << text;
  }
  std::istringstream in(text);
  std::string line;
  std::set<std::string> finished;  // families whose samples ended
  std::string current;             // the family of the previous sample
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    const auto fail = [&](const std::string& why) {
      return testing::AssertionFailure() << "line " << number << ": " << why << ": " << line;
    };
    if (line.rfind("# HELP ", 0) == 0 || line.rfind("# TYPE ", 0) == 0) {
      size_t pos = 7;
      const std::string name = ReadName(line, &pos, /*metric=*/true);
      if (name.empty() || pos >= line.size() || line[pos] != ' ') return fail("bad family name");
      const std::string rest = line.substr(pos + 1);
      if (line[2] == 'H') {
        if (!out->helps.emplace(name, rest).second) return fail("a second HELP");
        continue;
      }
      if (rest != "counter" && rest != "gauge") return fail("type is not counter or gauge");
      if (rest == "counter" && !EndsWith(name, "_total")) return fail("a counter not *_total");
      if (rest == "gauge" && EndsWith(name, "_total")) return fail("a gauge named *_total");
      if (!out->types.emplace(name, rest).second) return fail("a second TYPE");
      continue;
    }
    if (line.empty() || line[0] == '#') return fail("neither HELP, TYPE nor a sample");
    MetricSample sample;
    if (const std::string why = ParseSample(line, &sample); !why.empty()) return fail(why);
    if (!out->types.count(sample.name)) return fail("a sample before its TYPE");
    if (sample.name != current) {
      if (!current.empty()) finished.insert(current);
      if (finished.count(sample.name)) return fail("the family's samples are not together");
      current = sample.name;
    }
    out->samples.push_back(std::move(sample));
  }
  return testing::AssertionSuccess();
}

testing::AssertionResult MetricsAgreeWithStats(const nlohmann::json& stats,
                                               const Exposition& metrics, int64_t uptime_slack_s) {
  if (!stats.is_object() || !stats.contains("stores")) {
    return testing::AssertionFailure() << "not the stats object: " << stats.dump();
  }
  std::set<std::string> seen;  // "store/group/field" of every store sample
  for (const MetricSample& m : metrics.samples) {
    const auto fail = [&](const std::string& why) {
      std::string labels;
      for (const auto& [k, v] : m.labels) labels += k + "=" + v + " ";
      return testing::AssertionFailure()
             << m.name << " {" << labels << "} " << m.value << ": " << why;
    };
    if (m.name == "kvfs_mount_info") {
      if (m.value != "1") return fail("an info gauge is 1");
      const std::map<std::string, std::string> want = {
          {"mountpoint", stats["mountpoint"].get<std::string>()},
          {"pid", stats["pid"].dump()},
          {"single_store", stats["single_store"].dump()},
          {"no_open", stats["no_open"].dump()},
          {"writeback_cache", stats["writeback_cache"].dump()}};
      if (m.labels != want) return fail("labels differ from the JSON");
      seen.insert("mount");
      continue;
    }
    if (m.name == "kvfs_uptime_seconds") {
      const int64_t diff = std::stoll(m.value) - stats["uptime_s"].get<int64_t>();
      if (diff < -uptime_slack_s || diff > uptime_slack_s) return fail("uptime_s differs");
      seen.insert("uptime");
      continue;
    }
    if (!m.labels.count("store") || !m.labels.count("engine")) return fail("no store label");
    const nlohmann::json* store = StoreNamed(stats, m.labels.at("store"));
    if (store == nullptr) return fail("no such store in the JSON");
    if ((*store)["engine"] != m.labels.at("engine")) return fail("engine label differs");
    if (m.name == "kvfs_store_info") {
      if (m.value != "1") return fail("an info gauge is 1");
      if (m.labels.size() != 4 || m.labels.at("data_dir") != (*store)["data_dir"] ||
          m.labels.at("sync") != (*store)["sync"]) {
        return fail("labels differ from the JSON");
      }
      continue;
    }
    // What the open recovered: its own families (facts differ between engines).
    const nlohmann::json recovery = store->value("recovery", nlohmann::json::object());
    if (m.name == "kvfs_recovery_fact") {
      if (m.labels.size() != 3 || !m.labels.count("fact")) return fail("labels differ");
      const std::string fact = m.labels.at("fact");
      const nlohmann::json facts = recovery.value("facts", nlohmann::json::object());
      if (!facts.contains(fact) || facts[fact].dump() != m.value) {
        return fail("the JSON's recovery.facts." + fact + " differs");
      }
      seen.insert(m.labels.at("store") + "/recovery.facts/" + fact);
      continue;
    }
    if (m.name == "kvfs_recovery_records_replayed" || m.name == "kvfs_recovery_dropped_bytes" ||
        m.name == "kvfs_recovery_warnings") {
      const std::string field = m.name.substr(std::string("kvfs_recovery_").size());
      const std::string want =
          field == "warnings"
              ? std::to_string(recovery.value("warnings", nlohmann::json::array()).size())
              : recovery.value(field, nlohmann::json()).dump();
      if (want != m.value) return fail("the JSON's recovery." + field + " is " + want);
      seen.insert(m.labels.at("store") + "/recovery/" + field);
      continue;
    }
    if (m.labels.size() != 2) return fail("labels other than store and engine");
    std::string group, field;
    if (!JsonPlaceOf(m.name, metrics.types.at(m.name), &group, &field)) {
      return fail("no JSON counterpart");
    }
    const nlohmann::json in = group.empty() ? *store : store->value(group, nlohmann::json());
    if (!in.is_object() || !in.contains(field)) {
      return fail("no JSON field " + group + "." + field);
    }
    if (MetricValueOf(in[field]) != m.value) {
      return fail("the JSON says " + group + "." + field + " = " + in[field].dump());
    }
    const std::string place = m.labels.at("store") + "/" + group + "/" + field;
    if (!seen.insert(place).second) return fail("a second sample for " + place);
  }
  if (!seen.count("mount") || !seen.count("uptime")) {
    return testing::AssertionFailure() << "kvfs_mount_info or kvfs_uptime_seconds missing";
  }
  // Every number of every store has its sample.
  for (const nlohmann::json& s : stats["stores"]) {
    const std::string name = s["name"];
    const nlohmann::json recovery = s.value("recovery", nlohmann::json::object());
    const nlohmann::json facts =
        recovery.contains("facts") ? recovery["facts"] : nlohmann::json::object();
    for (auto it = facts.begin(); it != facts.end(); ++it) {
      const std::string fact = it.key();
      if (!seen.count(name + "/recovery.facts/" + fact)) {
        return testing::AssertionFailure() << "no metric for store " << name << " fact " << fact;
      }
    }
    for (const char* field : {"records_replayed", "dropped_bytes", "warnings"}) {
      if (!seen.count(name + "/recovery/" + field)) {
        return testing::AssertionFailure()
               << "no metric for store " << name << " recovery " << field;
      }
    }
    for (const std::string group : {"", "files", "engine_stats", "wal"}) {
      const nlohmann::json in = group.empty() ? s : s.value(group, nlohmann::json::object());
      for (const auto& [field, v] : in.items()) {
        if (!v.is_number() && !v.is_boolean()) continue;
        if (!seen.count(name + "/" + group + "/" + field)) {
          return testing::AssertionFailure()
                 << "no metric for store " << name << " " << group << "." << field;
        }
      }
    }
  }
  return testing::AssertionSuccess();
}

}  // namespace kvfs::test
