// Internal to config/: the validation rules, shared by the TOML reader (parse_config.cc), which
// reports a broken rule with the file, line and key, and by ValidateConfig (config.cc), which
// reports it with the store and field. Each check returns "" when the value is fine, otherwise a
// phrase describing the problem, to be put after the key's name ("data_dir: <problem>").
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"

namespace kvfs::config::internal {

// Which rule of ValidateStoreName `name` breaks, or "".
std::string StoreNameProblem(std::string_view name);

// "" when `engine` is one of `known_engines`, otherwise a phrase listing them.
std::string EngineProblem(std::string_view engine, const std::vector<std::string>& known_engines);

// Range checks of the numeric store fields.
std::string BatchWindowProblem(int64_t ms);
std::string BatchRecordsProblem(int64_t records);
std::string SegmentSizeProblem(uint64_t bytes);
std::string CacheSizeProblem(uint64_t bytes);

// "" when `engine` takes the option `key`, otherwise a phrase saying what it takes.
std::string OptionProblem(std::string_view engine, std::string_view key,
                          const EngineOptionKeys& known_options);

// Turns `raw` (a data_dir or log file path as written) into an absolute, lexically normal path
// without a trailing '/' (unless it is "/"): absolute paths are normalised, relative ones
// resolved against `base_dir` (absolute, or "" for "no base: relative paths are an error").
// On failure returns "" and sets *problem.
std::string ResolvePath(std::string_view raw, std::string_view base_dir, std::string* problem);

// The same normalisation for an absolute path: lexically_normal, trailing '/' dropped.
std::string NormalizePath(std::string_view path);

// True if `inner` is `outer` or lies below it (both normalised absolute paths).
bool PathWithin(std::string_view inner, std::string_view outer);

// "a, b, c".
std::string JoinNames(const std::vector<std::string>& names);

}  // namespace kvfs::config::internal
