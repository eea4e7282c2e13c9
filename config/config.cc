// Everything in config.h but the reader (parse_config.cc): the enums, byte sizes, validation
// rules, the built-in configs, and the writer (ToToml, with toml11's serializer).
#include "config/config.h"

#include <cassert>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <map>
#include <string>
#include <toml.hpp>
#include <utility>
#include <vector>

#include "config/rules.h"

namespace kvfs::config {

namespace {

constexpr std::string_view kSyncModeNames[] = {"always", "batch", "none"};
constexpr std::string_view kLogLevelNames[] = {"trace", "debug",    "info", "warn",
                                               "error", "critical", "off"};

struct Unit {
  std::string_view name;  // lower case
  int shift;
};
// Longest names first is not needed (whole-suffix match), but the order matters for
// FormatByteSize, which wants the largest unit that divides.
constexpr Unit kUnits[] = {{"tib", 40}, {"t", 40},   {"gib", 30}, {"g", 30}, {"mib", 20},
                           {"m", 20},   {"kib", 10}, {"k", 10},   {"b", 0}};
constexpr Unit kCanonicalUnits[] = {{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}};

std::string Quoted(std::string_view s) {
  std::string out = "\"";
  out += s;
  out += '"';
  return out;
}

}  // namespace

Result<SyncMode> ParseSyncMode(std::string_view text) {
  for (size_t i = 0; i < std::size(kSyncModeNames); ++i) {
    if (text == kSyncModeNames[i]) return static_cast<SyncMode>(i);
  }
  return Status::InvalidArgument(Quoted(text) +
                                 " is not a sync mode; expected always, batch or none");
}

std::string_view SyncModeName(SyncMode mode) {
  const auto i = static_cast<size_t>(mode);
  assert(i < std::size(kSyncModeNames));
  return kSyncModeNames[i];
}

Result<LogLevel> ParseLogLevel(std::string_view text) {
  for (size_t i = 0; i < std::size(kLogLevelNames); ++i) {
    if (text == kLogLevelNames[i]) return static_cast<LogLevel>(i);
  }
  return Status::InvalidArgument(
      Quoted(text) +
      " is not a log level; expected trace, debug, info, warn, error, critical or off");
}

std::string_view LogLevelName(LogLevel level) {
  const auto i = static_cast<size_t>(level);
  assert(i < std::size(kLogLevelNames));
  return kLogLevelNames[i];
}

Result<uint64_t> ParseByteSize(std::string_view text) {
  const auto bad = [&](std::string_view why) {
    return Status::InvalidArgument(Quoted(text) + " is not a size: " + std::string(why));
  };
  size_t i = 0;
  uint64_t number = 0;
  constexpr uint64_t kMax = std::numeric_limits<int64_t>::max();
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
    const uint64_t digit = static_cast<uint64_t>(text[i] - '0');
    if (number > (kMax - digit) / 10) return bad("too large");
    number = number * 10 + digit;
    ++i;
  }
  if (i == 0)
    return bad(
        "write a whole number of bytes, optionally with a unit: 4096, \"512KiB\", \"64MiB\"");
  while (i < text.size() && (text[i] == ' ' || text[i] == '\t')) ++i;
  std::string unit;
  for (; i < text.size(); ++i) {
    unit += static_cast<char>(std::tolower(static_cast<unsigned char>(text[i])));
  }
  if (unit.empty()) return number;
  for (const Unit& u : kUnits) {
    if (unit != u.name) continue;
    if (number > (kMax >> u.shift)) return bad("too large");
    return number << u.shift;
  }
  if (unit == "kb" || unit == "mb" || unit == "gb" || unit == "tb") {
    return bad("decimal units are ambiguous; use KiB, MiB, GiB or TiB (powers of 1024)");
  }
  return bad("unknown unit; use B, KiB, MiB, GiB or TiB");
}

std::string FormatByteSize(uint64_t bytes) {
  if (bytes != 0) {
    for (const Unit& u : kCanonicalUnits) {
      const uint64_t mask = (uint64_t{1} << u.shift) - 1;
      if ((bytes & mask) == 0) return std::to_string(bytes >> u.shift) + std::string(u.name);
    }
  }
  return std::to_string(bytes);
}

namespace internal {

std::string StoreNameProblem(std::string_view name) {
  if (name.empty()) return "a store name must not be empty";
  if (name.size() > kMaxStoreNameLength) {
    return "a store name is at most " + std::to_string(kMaxStoreNameLength) + " bytes, not " +
           std::to_string(name.size());
  }
  if (name == "." || name == "..") return Quoted(name) + " cannot be a store name";
  for (const char c : name) {
    if (c == '/') return Quoted(name) + " is not a single path component: it contains '/'";
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return "a store name must not contain control characters";
  }
  if (name.starts_with(kReservedNamePrefix)) {
    return Quoted(name) + ": names starting with \"" + std::string(kReservedNamePrefix) +
           "\" are reserved for kvfs's control directory";
  }
  return "";
}

std::string EngineProblem(std::string_view engine, const std::vector<std::string>& known_engines) {
  for (const std::string& known : known_engines) {
    if (engine == known) return "";
  }
  if (engine.empty())
    return "the engine must not be empty; known engines: " + JoinNames(known_engines);
  return "unknown engine " + Quoted(engine) + "; known engines: " + JoinNames(known_engines);
}

std::string BatchWindowProblem(int64_t ms) {
  if (ms >= kMinBatchWindowMs && ms <= kMaxBatchWindowMs) return "";
  return std::to_string(ms) + " is out of range " + std::to_string(kMinBatchWindowMs) + ".." +
         std::to_string(kMaxBatchWindowMs) + " (milliseconds)";
}

std::string BatchRecordsProblem(int64_t records) {
  if (records >= static_cast<int64_t>(kMinBatchRecords)) return "";
  return std::to_string(records) + " is out of range: at least " +
         std::to_string(kMinBatchRecords) + " record per batch";
}

std::string SegmentSizeProblem(uint64_t bytes) {
  if (bytes >= kMinSegmentSize && bytes <= kMaxSegmentSize) return "";
  return FormatByteSize(bytes) + " is out of range " + FormatByteSize(kMinSegmentSize) + ".." +
         FormatByteSize(kMaxSegmentSize);
}

std::string CacheSizeProblem(uint64_t bytes) {
  if (bytes <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return "";
  return std::to_string(bytes) + " is too large";
}

std::string OptionProblem(std::string_view engine, std::string_view key,
                          const EngineOptionKeys& known_options) {
  auto it = known_options.find(engine);
  if (it == known_options.end() || it->second.empty()) {
    return "engine " + std::string(engine) + " takes no options";
  }
  for (const std::string& known : it->second) {
    if (key == known) return "";
  }
  return "engine " + std::string(engine) + " takes no option " + Quoted(key) +
         " (it takes: " + JoinNames(it->second) + ")";
}

std::string NormalizePath(std::string_view path) {
  std::string out = std::filesystem::path(path).lexically_normal().string();
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

std::string ResolvePath(std::string_view raw, std::string_view base_dir, std::string* problem) {
  if (raw.empty()) {
    *problem = "the path must not be empty";
    return "";
  }
  if (raw.find('\0') != std::string_view::npos) {
    *problem = "the path must not contain a NUL character";
    return "";
  }
  if (raw.front() == '/') return NormalizePath(raw);
  if (raw.front() == '~') {
    *problem = Quoted(raw) + ": '~' is not expanded; write the absolute path";
    return "";
  }
  if (base_dir.empty()) {
    *problem = Quoted(raw) +
               " is relative and there is no config file directory to resolve it against; "
               "write an absolute path";
    return "";
  }
  assert(base_dir.front() == '/');
  return NormalizePath((std::filesystem::path(base_dir) / std::filesystem::path(raw)).string());
}

bool PathWithin(std::string_view inner, std::string_view outer) {
  if (inner == outer) return true;
  if (outer == "/") return true;
  return inner.size() > outer.size() && inner.starts_with(outer) && inner[outer.size()] == '/';
}

std::string JoinNames(const std::vector<std::string>& names) {
  if (names.empty()) return "(none)";
  std::string out;
  for (const std::string& n : names) {
    if (!out.empty()) out += ", ";
    out += n;
  }
  return out;
}

}  // namespace internal

bool IsSecretKey(std::string_view key) {
  std::string lower;
  for (const char c : key) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const std::string_view word : kSecretKeyWords) {
    if (lower.find(word) != std::string::npos) return true;
  }
  return false;
}

Status ValidateStoreName(std::string_view name) {
  std::string problem = internal::StoreNameProblem(name);
  if (problem.empty()) return Status::OK();
  return Status::InvalidArgument(std::move(problem));
}

Status ValidateConfig(const Config& config, const std::vector<std::string>& known_engines,
                      const EngineOptionKeys& known_options) {
  using namespace internal;
  if (config.stores.empty()) {
    return Status::InvalidArgument("no stores: a config must define at least one [[store]]");
  }
  const auto fail = [](const StoreConfig& s, size_t index, std::string_view field,
                       const std::string& problem) {
    return Status::InvalidArgument("store #" + std::to_string(index + 1) + " (" + Quoted(s.name) +
                                   "): " + std::string(field) + ": " + problem);
  };
  std::map<std::string_view, size_t> names;
  for (size_t i = 0; i < config.stores.size(); ++i) {
    const StoreConfig& s = config.stores[i];
    std::string p;
    if (!(p = StoreNameProblem(s.name)).empty()) return fail(s, i, "name", p);
    if (auto [it, inserted] = names.emplace(s.name, i); !inserted) {
      return fail(s, i, "name",
                  "duplicate store name, also used by store #" + std::to_string(it->second + 1));
    }
    if (!(p = EngineProblem(s.engine, known_engines)).empty()) return fail(s, i, "engine", p);
    if (s.data_dir.empty() || s.data_dir.front() != '/' ||
        NormalizePath(s.data_dir) != s.data_dir) {
      return fail(s, i, "data_dir", Quoted(s.data_dir) + " is not an absolute, normalised path");
    }
    for (size_t j = 0; j < i; ++j) {
      const StoreConfig& o = config.stores[j];
      if (PathWithin(s.data_dir, o.data_dir) || PathWithin(o.data_dir, s.data_dir)) {
        return fail(s, i, "data_dir",
                    Quoted(s.data_dir) + " overlaps the data_dir of store #" +
                        std::to_string(j + 1) + " (" + Quoted(o.data_dir) +
                        "); each store needs a directory of its own");
      }
    }
    if (static_cast<size_t>(s.sync) >= std::size(kSyncModeNames)) {
      return fail(s, i, "sync", "not a sync mode");
    }
    if (!(p = BatchWindowProblem(s.batch_window_ms)).empty()) {
      return fail(s, i, "batch_window_ms", p);
    }
    if (s.batch_records > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return fail(s, i, "batch_records", "too large");
    }
    if (!(p = BatchRecordsProblem(static_cast<int64_t>(s.batch_records))).empty()) {
      return fail(s, i, "batch_records", p);
    }
    if (!(p = SegmentSizeProblem(s.segment_size)).empty()) return fail(s, i, "segment_size", p);
    if (!(p = CacheSizeProblem(s.cache_size)).empty()) return fail(s, i, "cache_size", p);
    for (const auto& [key, value] : s.options) {
      if (!(p = OptionProblem(s.engine, key, known_options)).empty()) {
        return fail(s, i, "options." + key, p);
      }
    }
  }
  if (static_cast<size_t>(config.logging.level) >= std::size(kLogLevelNames)) {
    return Status::InvalidArgument("logging.level: not a log level");
  }
  const std::string& file = config.logging.file;
  if (!file.empty() && (file.front() != '/' || NormalizePath(file) != file)) {
    return Status::InvalidArgument("logging.file: " + Quoted(file) +
                                   " is not an absolute, normalised path");
  }
  return Status::OK();
}

namespace {

// `data_root` made absolute against the current directory (kept as given if that cannot be
// read) and normalised.
std::string AbsoluteRoot(const std::string& data_root) {
  std::error_code ec;
  std::filesystem::path p = std::filesystem::absolute(data_root, ec);
  if (ec) p = data_root;
  return internal::NormalizePath(p.string());
}

}  // namespace

Config DefaultConfig(const std::string& data_root, const std::vector<std::string>& engines) {
  assert(!data_root.empty());
  const std::string root = AbsoluteRoot(data_root);
  Config config;
  for (const std::string& engine : engines) {
    assert(internal::StoreNameProblem(engine).empty());
    StoreConfig store;
    store.name = engine;
    store.engine = engine;
    std::string dir = root;
    dir += '/';
    dir += engine;
    store.data_dir = internal::NormalizePath(dir);
    config.stores.push_back(std::move(store));
  }
  return config;
}

Result<Config> SingleEngineConfig(const std::string& data_root, const std::string& engine,
                                  const std::vector<std::string>& known_engines) {
  if (std::string p = internal::EngineProblem(engine, known_engines); !p.empty()) {
    return Status::InvalidArgument("--engine: " + p);
  }
  if (data_root.empty()) return Status::InvalidArgument("the data directory must not be empty");
  StoreConfig store;
  store.name = engine;
  store.engine = engine;
  store.data_dir = AbsoluteRoot(data_root);
  Config config;
  config.stores.push_back(std::move(store));
  KVFS_RETURN_IF_ERROR(ValidateConfig(config, known_engines));
  return config;
}

namespace {

// A TOML table that keeps its keys in the order they were added (toml11 3.7's tables are
// unordered maps), so ToToml writes the sections and keys in the file format's order, a store's
// name first. It has what toml11's table construction and serializer use, nothing more.
template <typename Key, typename Value>
class InsertionOrderedMap {
 public:
  using key_type = Key;
  using mapped_type = Value;
  using value_type = std::pair<Key, Value>;
  using iterator = typename std::vector<value_type>::iterator;
  using const_iterator = typename std::vector<value_type>::const_iterator;

  Value& operator[](const Key& key) {
    for (value_type& kv : items_) {
      if (kv.first == key) return kv.second;
    }
    return items_.emplace_back(key, Value()).second;
  }
  iterator begin() { return items_.begin(); }
  iterator end() { return items_.end(); }
  const_iterator begin() const { return items_.begin(); }
  const_iterator end() const { return items_.end(); }
  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }

 private:
  std::vector<value_type> items_;
};

using OrderedToml = toml::basic_value<toml::discard_comments, InsertionOrderedMap, std::vector>;

// A size as FormatByteSize writes it: plain byte counts read best as integers; anything with a
// unit must be a string.
OrderedToml SizeValue(uint64_t bytes) {
  const std::string s = FormatByteSize(bytes);
  if (s.back() >= '0' && s.back() <= '9') return static_cast<toml::integer>(bytes);
  return s;
}

// Replaces, at any depth, the value of every key that marks a secret with kRedacted.
void Redact(OrderedToml* value) {
  if (value->is_table()) {
    for (auto& [key, child] : value->as_table()) {
      if (IsSecretKey(key)) {
        child = std::string(kRedacted);
      } else {
        Redact(&child);
      }
    }
  } else if (value->is_array()) {
    for (OrderedToml& child : value->as_array()) Redact(&child);
  }
}

}  // namespace

std::string ToToml(const Config& config, Secrets secrets) {
  OrderedToml logging{{"level", std::string(LogLevelName(config.logging.level))}};
  if (!config.logging.file.empty()) logging["file"] = config.logging.file;
  OrderedToml::array_type stores;
  for (const StoreConfig& s : config.stores) {
    // ValidateConfig keeps batch_records and the sizes within an int64 (toml::integer).
    OrderedToml store{
        {"name", s.name},
        {"engine", s.engine},
        {"data_dir", s.data_dir},
        {"sync", std::string(SyncModeName(s.sync))},
        {"batch_window_ms", static_cast<toml::integer>(s.batch_window_ms)},
        {"batch_records", static_cast<toml::integer>(s.batch_records)},
        {"segment_size", SizeValue(s.segment_size)},
        {"cache_size", SizeValue(s.cache_size)},
    };
    if (!s.options.empty()) {
      OrderedToml options = OrderedToml::table_type();
      for (const auto& [key, value] : s.options) options[key] = value;
      store["options"] = std::move(options);
    }
    stores.push_back(std::move(store));
  }
  OrderedToml document{{"logging", std::move(logging)}, {"store", std::move(stores)}};
  if (secrets == Secrets::kRedact) Redact(&document);
  // Width 0: toml11 3.7 then never inlines a table and never splits a string over lines (a split
  // string loses the blanks that begin its next line when read back). Its serializer starts a
  // document whose first entry is a table with an empty line, which is dropped.
  std::string out = toml::format(document, /*width=*/0);
  out.erase(0, out.find_first_not_of('\n'));
  return out;
}

}  // namespace kvfs::config
