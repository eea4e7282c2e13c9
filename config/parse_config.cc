// The TOML reader: toml11 (3.7) parses the text into a tree of toml::value, each of which
// remembers its file, line and column; this file walks that tree by hand, so that every key is
// checked against the known ones and every problem is reported at the value that causes it.
//
// toml11 throws. Every call into it happens inside the try block of ParseConfig, which turns
// each exception into a Status; nothing escapes this file.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <sstream>
#include <string>
#include <toml.hpp>
#include <utility>
#include <vector>

#include "config/config.h"
#include "config/rules.h"

namespace kvfs::config {

namespace {

using internal::JoinNames;

constexpr size_t kMaxConfigFileSize = size_t{1} << 20;

const std::vector<std::string> kTopLevelKeys = {"logging", "store"};
const std::vector<std::string> kLoggingKeys = {"level", "file"};
const std::vector<std::string> kStoreKeys = {"name",         "engine",          "data_dir",
                                             "sync",         "batch_window_ms", "batch_records",
                                             "segment_size", "cache_size",      "options"};

std::string Quoted(std::string_view s) {
  std::string out = "\"";
  out += s;
  out += '"';
  return out;
}

// Edit distance, for "did you mean" on unknown keys.
size_t Distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// The closest of `candidates` to `key`, if it is close enough to be a plausible typo: a small
// edit distance, or one being a prefix of the other ("sync_mdoe" for "sync").
std::optional<std::string> Suggest(std::string_view key,
                                   const std::vector<std::string>& candidates) {
  std::optional<std::string> best;
  size_t best_distance = SIZE_MAX;
  const size_t max_typo = std::max<size_t>(2, key.size() / 3);
  for (const std::string& c : candidates) {
    const size_t d = Distance(key, c);
    const bool prefix = std::min(key.size(), c.size()) >= 3 &&
                        (key.starts_with(c) || std::string_view(c).starts_with(key));
    if ((d <= max_typo || prefix) && d < best_distance) {
      best_distance = d;
      best = c;
    }
  }
  return best;
}

std::string TypeName(const toml::value& v) { return toml::stringize(v.type()); }

// "kvfs.toml:12: " for a value's position.
std::string Where(const toml::value& v) {
  const toml::source_location loc = v.location();
  return loc.file_name() + ":" + std::to_string(loc.line()) + ": ";
}

// toml11 starts each message with "[error] "; ours already say what they are.
std::string StripErrorTag(std::string text) {
  constexpr std::string_view kTag = "[error] ";
  if (text.starts_with(kTag)) text.erase(0, kTag.size());
  return text;
}

// An InvalidArgument whose first line is "<file>:<line>: <summary>", followed by toml11's
// excerpt of the line with `v` underlined and `comment` beside it.
Status ErrorAt(const toml::value& v, const std::string& summary, const std::string& comment,
               std::vector<std::string> hints = {}) {
  return Status::InvalidArgument(StripErrorTag(
      toml::format_error(Where(v) + summary, v, comment, std::move(hints), /*colorize=*/false)));
}

// The same for a problem involving two values (a duplicate): `second` is where it was found.
Status ErrorAt2(const toml::value& first, const std::string& first_comment,
                const toml::value& second, const std::string& summary,
                const std::string& second_comment) {
  return Status::InvalidArgument(StripErrorTag(toml::format_error(
      Where(second) + summary, first, first_comment, second, second_comment, {}, false)));
}

// Reads one TOML document into a Config. Members hold what is needed to word messages.
class Reader {
 public:
  Reader(const std::vector<std::string>& known_engines, std::string_view base_dir,
         const EngineOptionKeys& known_options)
      : known_engines_(known_engines), base_dir_(base_dir), known_options_(known_options) {}

  Result<Config> Read(const toml::value& root) {
    Config config;
    KVFS_RETURN_IF_ERROR(CheckKeys(root, kTopLevelKeys, "at the top level", "not a kvfs setting"));
    const toml::table& table = root.as_table();
    if (table.count("logging")) {
      KVFS_RETURN_IF_ERROR(ReadLogging(toml::find(root, "logging"), &config.logging));
    }
    if (!table.count("store")) {
      return Status::InvalidArgument(
          root.location().file_name() +
          ": no stores: a config must define at least one [[store]] table (with name, engine "
          "and data_dir)");
    }
    const toml::value& stores = toml::find(root, "store");
    if (!stores.is_array()) {
      return ErrorAt(stores, "key \"store\" must be an array of tables, not a " + TypeName(stores),
                     stores.is_table() ? "write [[store]], not [store]" : "not an array of tables");
    }
    if (stores.as_array().empty()) {
      return ErrorAt(stores, "no stores: a config must define at least one [[store]]",
                     "empty array");
    }
    for (size_t i = 0; i < stores.as_array().size(); ++i) {
      StoreConfig store;
      KVFS_RETURN_IF_ERROR(ReadStore(stores.as_array()[i], i, &store));
      config.stores.push_back(std::move(store));
    }
    KVFS_RETURN_IF_ERROR(CheckAcrossStores(config));
    // Every rule has been checked above with its location; this is the safety net that keeps
    // the two rule sets from drifting apart.
    KVFS_RETURN_IF_ERROR(ValidateConfig(config, known_engines_, known_options_)
                             .WithContext(root.location().file_name()));
    return config;
  }

 private:
  // Rejects any key of `table` not in `allowed`. With several unknown keys the first in the
  // file is reported, so the message does not depend on hash order.
  Status CheckKeys(const toml::value& table, const std::vector<std::string>& allowed,
                   const std::string& where, const std::string& comment) {
    const toml::value* first = nullptr;
    std::string first_key;
    for (const auto& [key, value] : table.as_table()) {
      if (std::find(allowed.begin(), allowed.end(), key) != allowed.end()) continue;
      const auto pos = [](const toml::value& v) {
        return std::make_pair(v.location().line(), v.location().column());
      };
      if (first == nullptr || pos(value) < pos(*first)) {
        first = &value;
        first_key = key;
      }
    }
    if (first == nullptr) return Status::OK();
    std::string summary = "unknown key " + Quoted(first_key) + " " + where;
    if (auto s = Suggest(first_key, allowed)) summary += " (did you mean " + Quoted(*s) + "?)";
    return ErrorAt(*first, summary, comment, {"known keys: " + JoinNames(allowed)});
  }

  Status ExpectType(const toml::value& v, toml::value_t type, const std::string& key,
                    const std::string& where) {
    if (v.type() == type) return Status::OK();
    std::string wanted = toml::stringize(type);
    return ErrorAt(v,
                   "key " + Quoted(key) + " " + where + " must be " + Article(wanted) + " " +
                       wanted + ", not " + Article(TypeName(v)) + " " + TypeName(v),
                   "expected " + wanted);
  }

  static std::string Article(const std::string& noun) {
    return (!noun.empty() && std::string_view("aeiou").find(noun[0]) != std::string_view::npos)
               ? "an"
               : "a";
  }

  Status ReadLogging(const toml::value& v, LoggingConfig* out) {
    const std::string where = "in [logging]";
    if (!v.is_table()) {
      return ErrorAt(v, "key \"logging\" must be a table ([logging]), not a " + TypeName(v),
                     "expected a table");
    }
    KVFS_RETURN_IF_ERROR(CheckKeys(v, kLoggingKeys, where, "not a logging setting"));
    const toml::table& t = v.as_table();
    if (t.count("level")) {
      const toml::value& level = toml::find(v, "level");
      KVFS_RETURN_IF_ERROR(ExpectType(level, toml::value_t::string, "level", where));
      Result<LogLevel> parsed = ParseLogLevel(toml::get<std::string>(level));
      if (!parsed.ok()) {
        return ErrorAt(level, "key \"level\" " + where + ": " + parsed.status().message(),
                       "not a log level");
      }
      out->level = *parsed;
    }
    if (t.count("file")) {
      const toml::value& file = toml::find(v, "file");
      KVFS_RETURN_IF_ERROR(ExpectType(file, toml::value_t::string, "file", where));
      const std::string raw = toml::get<std::string>(file);
      if (!raw.empty()) {
        std::string problem;
        out->file = internal::ResolvePath(raw, base_dir_, &problem);
        if (!problem.empty()) {
          return ErrorAt(file, "key \"file\" " + where + ": " + problem, "bad path");
        }
      }
    }
    return Status::OK();
  }

  // Reads a string field of a store if present; *at is where it was written, or null if absent.
  Status StoreString(const toml::value& v, const std::string& key, const std::string& where,
                     std::string* out, const toml::value** at) {
    *at = nullptr;
    if (!v.as_table().count(key)) return Status::OK();
    const toml::value& field = toml::find(v, key);
    KVFS_RETURN_IF_ERROR(ExpectType(field, toml::value_t::string, key, where));
    *out = toml::get<std::string>(field);
    *at = &field;
    return Status::OK();
  }

  Status StoreInteger(const toml::value& v, const std::string& key, const std::string& where,
                      int64_t* out, const toml::value** at) {
    *at = nullptr;
    if (!v.as_table().count(key)) return Status::OK();
    const toml::value& field = toml::find(v, key);
    KVFS_RETURN_IF_ERROR(ExpectType(field, toml::value_t::integer, key, where));
    *out = toml::get<int64_t>(field);
    *at = &field;
    return Status::OK();
  }

  // A size: an integer number of bytes, or a string ParseByteSize accepts.
  Status StoreSize(const toml::value& v, const std::string& key, const std::string& where,
                   uint64_t* out, const toml::value** at) {
    *at = nullptr;
    if (!v.as_table().count(key)) return Status::OK();
    const toml::value& field = toml::find(v, key);
    *at = &field;
    if (field.is_integer()) {
      const int64_t n = toml::get<int64_t>(field);
      if (n < 0) {
        return ErrorAt(field, "key " + Quoted(key) + " " + where + ": a size cannot be negative",
                       "negative size");
      }
      *out = static_cast<uint64_t>(n);
      return Status::OK();
    }
    if (field.is_string()) {
      Result<uint64_t> parsed = ParseByteSize(toml::get<std::string>(field));
      if (!parsed.ok()) {
        return ErrorAt(field, "key " + Quoted(key) + " " + where + ": " + parsed.status().message(),
                       "not a size");
      }
      *out = *parsed;
      return Status::OK();
    }
    return ErrorAt(field,
                   "key " + Quoted(key) + " " + where +
                       " must be a size: an integer (bytes) or a string such as \"64MiB\", not " +
                       Article(TypeName(field)) + " " + TypeName(field),
                   "expected an integer or a string");
  }

  Status ReadStore(const toml::value& v, size_t index, StoreConfig* out) {
    std::string where = "in store #" + std::to_string(index + 1);
    if (!v.is_table()) {
      return ErrorAt(
          v, "store #" + std::to_string(index + 1) + " must be a table, not a " + TypeName(v),
          "expected a table");
    }
    // The name first, so that later messages can say which store they are about.
    const toml::value* name_at = nullptr;
    KVFS_RETURN_IF_ERROR(StoreString(v, "name", where, &out->name, &name_at));
    if (name_at != nullptr) {
      if (std::string p = internal::StoreNameProblem(out->name); !p.empty()) {
        return ErrorAt(*name_at, "key \"name\" " + where + ": " + p, "bad store name");
      }
      where = "in store " + Quoted(out->name);
    }
    KVFS_RETURN_IF_ERROR(CheckKeys(v, kStoreKeys, where, "not a store setting"));
    const auto missing = [&](const std::string& key) {
      return ErrorAt(v, "store #" + std::to_string(index + 1) + " has no " + Quoted(key),
                     "this [[store]] needs " + key);
    };
    if (name_at == nullptr) return missing("name");

    const toml::value* at = nullptr;
    KVFS_RETURN_IF_ERROR(StoreString(v, "engine", where, &out->engine, &at));
    if (at == nullptr) return missing("engine");
    if (std::string p = internal::EngineProblem(out->engine, known_engines_); !p.empty()) {
      return ErrorAt(*at, "key \"engine\" " + where + ": " + p, "unknown engine");
    }

    std::string raw_dir;
    KVFS_RETURN_IF_ERROR(StoreString(v, "data_dir", where, &raw_dir, &at));
    if (at == nullptr) return missing("data_dir");
    std::string problem;
    out->data_dir = internal::ResolvePath(raw_dir, base_dir_, &problem);
    if (!problem.empty()) {
      return ErrorAt(*at, "key \"data_dir\" " + where + ": " + problem, "bad path");
    }
    const toml::value* data_dir_at = at;

    std::string sync;
    KVFS_RETURN_IF_ERROR(StoreString(v, "sync", where, &sync, &at));
    if (at != nullptr) {
      Result<SyncMode> mode = ParseSyncMode(sync);
      if (!mode.ok()) {
        return ErrorAt(*at, "key \"sync\" " + where + ": " + mode.status().message(),
                       "not a sync mode");
      }
      out->sync = *mode;
    }

    int64_t n = 0;
    KVFS_RETURN_IF_ERROR(StoreInteger(v, "batch_window_ms", where, &n, &at));
    if (at != nullptr) {
      if (std::string p = internal::BatchWindowProblem(n); !p.empty()) {
        return ErrorAt(*at, "key \"batch_window_ms\" " + where + ": " + p, "out of range");
      }
      out->batch_window_ms = static_cast<uint32_t>(n);
    }
    KVFS_RETURN_IF_ERROR(StoreInteger(v, "batch_records", where, &n, &at));
    if (at != nullptr) {
      if (std::string p = internal::BatchRecordsProblem(n); !p.empty()) {
        return ErrorAt(*at, "key \"batch_records\" " + where + ": " + p, "out of range");
      }
      out->batch_records = static_cast<uint64_t>(n);
    }

    KVFS_RETURN_IF_ERROR(StoreSize(v, "segment_size", where, &out->segment_size, &at));
    if (at != nullptr) {
      if (std::string p = internal::SegmentSizeProblem(out->segment_size); !p.empty()) {
        return ErrorAt(*at, "key \"segment_size\" " + where + ": " + p, "out of range");
      }
    }
    KVFS_RETURN_IF_ERROR(StoreSize(v, "cache_size", where, &out->cache_size, &at));
    if (at != nullptr) {
      if (std::string p = internal::CacheSizeProblem(out->cache_size); !p.empty()) {
        return ErrorAt(*at, "key \"cache_size\" " + where + ": " + p, "out of range");
      }
    }
    KVFS_RETURN_IF_ERROR(ReadOptions(v, where, out));
    name_at_.push_back(name_at);
    data_dir_at_.push_back(data_dir_at);
    return Status::OK();
  }

  // options = { key = "value", ... }: string values, each a key the store's engine takes.
  Status ReadOptions(const toml::value& v, const std::string& where, StoreConfig* out) {
    if (!v.as_table().count("options")) return Status::OK();
    const toml::value& options = toml::find(v, "options");
    if (!options.is_table()) {
      return ErrorAt(options,
                     "key \"options\" " + where + " must be a table of engine options, not " +
                         Article(TypeName(options)) + " " + TypeName(options),
                     "expected a table");
    }
    // In file order, so the first bad option in the file is the one reported.
    std::vector<std::pair<std::string, const toml::value*>> entries;
    for (const auto& [key, value] : options.as_table()) entries.emplace_back(key, &value);
    std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
      const toml::source_location la = a.second->location(), lb = b.second->location();
      return std::make_pair(la.line(), la.column()) < std::make_pair(lb.line(), lb.column());
    });
    for (const auto& [key, value] : entries) {
      const std::string name = "options." + key;
      if (std::string p = internal::OptionProblem(out->engine, key, known_options_); !p.empty()) {
        std::string summary = "key " + Quoted(name);
        summary += " " + where + ": ";
        summary += p;
        return ErrorAt(*value, summary, "unknown option");
      }
      KVFS_RETURN_IF_ERROR(ExpectType(*value, toml::value_t::string, name, where));
      out->options[key] = toml::get<std::string>(*value);
    }
    return Status::OK();
  }

  // Unique names; distinct, non-nested data dirs. Reported at the later of the two stores.
  Status CheckAcrossStores(const Config& config) {
    for (size_t i = 0; i < config.stores.size(); ++i) {
      const StoreConfig& s = config.stores[i];
      for (size_t j = 0; j < i; ++j) {
        const StoreConfig& o = config.stores[j];
        if (s.name == o.name) {
          return ErrorAt2(
              *name_at_[j], "first used here", *name_at_[i],
              "duplicate store name " + Quoted(s.name) + ": every store needs a name of its own",
              "used again here");
        }
      }
    }
    for (size_t i = 0; i < config.stores.size(); ++i) {
      const StoreConfig& s = config.stores[i];
      for (size_t j = 0; j < i; ++j) {
        const StoreConfig& o = config.stores[j];
        std::string what;
        if (s.data_dir == o.data_dir) {
          what = "is also the data_dir of store " + Quoted(o.name);
        } else if (internal::PathWithin(s.data_dir, o.data_dir)) {
          what = "lies inside the data_dir of store " + Quoted(o.name) + " (" + o.data_dir + ")";
        } else if (internal::PathWithin(o.data_dir, s.data_dir)) {
          what = "contains the data_dir of store " + Quoted(o.name) + " (" + o.data_dir + ")";
        } else {
          continue;
        }
        return ErrorAt2(*data_dir_at_[j], "store " + Quoted(o.name) + "'s data_dir",
                        *data_dir_at_[i],
                        "key \"data_dir\" in store " + Quoted(s.name) + ": " + s.data_dir + " " +
                            what + "; each store needs a directory of its own",
                        "overlaps");
      }
    }
    return Status::OK();
  }

  const std::vector<std::string>& known_engines_;
  const std::string_view base_dir_;
  const EngineOptionKeys& known_options_;
  // Where each store's name and data_dir were written, by store index, for cross-store errors.
  std::vector<const toml::value*> name_at_;
  std::vector<const toml::value*> data_dir_at_;
};

// "<file>:<line>: " for an exception that carries a location.
std::string Where(const toml::exception& e, std::string_view source_name) {
  const toml::source_location& loc = e.location();
  const std::string file = loc.file_name().empty() ? std::string(source_name) : loc.file_name();
  if (loc.line() == 0) return file + ": ";
  return file + ":" + std::to_string(loc.line()) + ": ";
}

}  // namespace

Result<Config> ParseConfig(std::string_view toml_text, std::string_view source_name,
                           const std::vector<std::string>& known_engines, std::string_view base_dir,
                           const EngineOptionKeys& known_options) {
  const std::string source(source_name.empty() ? std::string_view("<config>") : source_name);
  if (!base_dir.empty() && base_dir.front() != '/') {
    return Status::InvalidArgument(source + ": the base directory " + Quoted(base_dir) +
                                   " for relative paths must be absolute");
  }
  try {
    std::istringstream stream{std::string(toml_text)};
    const toml::value root = toml::parse(stream, source);
    Reader reader(known_engines, base_dir, known_options);
    return reader.Read(root);
  } catch (const toml::syntax_error& e) {
    return Status::InvalidArgument(Where(e, source) +
                                   "TOML syntax error: " + StripErrorTag(e.what()));
  } catch (const toml::type_error& e) {
    return Status::InvalidArgument(Where(e, source) + "wrong type: " + StripErrorTag(e.what()));
  } catch (const toml::exception& e) {
    return Status::InvalidArgument(Where(e, source) + StripErrorTag(e.what()));
  } catch (const std::out_of_range& e) {
    return Status::InvalidArgument(source + ": " + StripErrorTag(e.what()));
  } catch (const std::exception& e) {
    return Status::InvalidArgument(source + ": cannot read the config: " + e.what());
  } catch (...) {
    return Status::InvalidArgument(source + ": cannot read the config: unknown error");
  }
}

Result<Config> LoadConfig(const std::string& path, const std::vector<std::string>& known_engines,
                          const EngineOptionKeys& known_options) {
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return Status::FromErrno(errno, "open config file " + path);
  std::string text;
  char buf[16384];
  Status status;
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      status = Status::FromErrno(errno, "read config file " + path);
      break;
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > kMaxConfigFileSize) {
      status = Status::InvalidArgument("config file " + path + " is larger than 1 MiB");
      break;
    }
  }
  ::close(fd);  // read-only: nothing to lose, so its result is of no interest
  KVFS_RETURN_IF_ERROR(status);

  // Relative paths in the file are relative to the directory that holds it, as named (a
  // symbolic link to the file is not followed for this).
  std::string base_dir;
  std::error_code ec;
  const std::filesystem::path absolute = std::filesystem::absolute(path, ec);
  if (!ec) base_dir = internal::NormalizePath(absolute.parent_path().string());
  return ParseConfig(text, path, known_engines, base_dir, known_options);
}

}  // namespace kvfs::config
