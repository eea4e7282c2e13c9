// The kvfs configuration: which stores to mount, with which engine, where their data lives, how
// often their logs are synced, and where the daemon logs to.
//
// A config comes from one of three places, and is always complete and validated when a caller
// sees it (a Result<Config> that is ok() needs no further checks):
// - a TOML file (LoadConfig / ParseConfig; the format is documented in config/kvfs.example.toml
//   and below), for `kvfs mount --config FILE`;
// - the embedded default (DefaultConfig): one store per engine, named after the engine, in
//   DATA_ROOT/<engine>;
// - `--engine NAME` (SingleEngineConfig): one store, named after the engine, in DATA_ROOT itself.
//
// The file format:
//
//   [logging]                      # optional table
//   level = "info"                 # trace|debug|info|warn|error|critical|off (default info)
//   file = "/var/log/kvfs.log"     # optional; absent or "" = stderr
//
//   [[store]]                      # one or more
//   name = "lsm"                   # required; the store's directory at the mount's root
//   engine = "lsm"                 # required; one of the engines compiled in
//   data_dir = "/var/lib/kvfs/lsm" # required; relative = relative to the config file's dir
//   sync = "batch"                 # always|batch|none (default batch)
//   batch_window_ms = 10           # 1..60000 (default 10)
//   batch_records = 1000           # >= 1 (default 1000)
//   segment_size = "64MiB"         # 1MiB..4GiB (default 64MiB)
//   cache_size = "64MiB"           # >= 0; 0 = no cache (default 64MiB)
//   options = { endpoints = "..." } # engine options: string values, only keys its engine takes
//
// Engine options are settings one engine alone understands (a networked engine's endpoints and
// credentials). Which keys an engine takes is the program's to say (EngineOptionKeys, passed
// to the readers and ValidateConfig); a key its engine does not take is an error naming the
// store, the key and the engine. Only the etcd engine takes any (endpoints, prefix, timeout_ms;
// engines::EngineOptionKeys() is the list the daemon passes).
//
// Secrets: a key whose name marks a secret (IsSecretKey) is never shown by ToToml's redacting
// mode, which /.kvfs/config uses: its value is written as "<redacted>".
// Sizes are an integer (bytes) or a string: digits, optional blanks, then an optional binary
// unit, case-insensitive: B, K or KiB (2^10), M or MiB (2^20), G or GiB (2^30), T or TiB (2^40).
// "MB", "GB" and friends are refused rather than guessed at (1000 or 1024?).
//
// Strictness, so that a mistake is found before anything is mounted: an unknown key anywhere
// (a typo such as `sync_mdoe`) is an error, a value of the wrong TOML type is an error, and so
// is every out-of-range value. Every such error is a Status::InvalidArgument whose message starts
// "<file>:<line>: " and names the key, followed by toml11's excerpt of the offending line, e.g.
//
//   kvfs.toml:12: unknown key "sync_mdoe" in store "lsm" (did you mean "sync"?)
//    --> kvfs.toml
//      |
//   12 | sync_mdoe = "batch"
//      |             ~~~~~~~ unknown key
//
// Cross-store rules: store names are unique; no two stores share a data_dir, and no store's
// data_dir lies inside another's (an engine owns every file in its directory). Paths are
// compared after lexical normalisation ("a/./b/" is "a/b"); symbolic links are not resolved,
// since nothing here touches the filesystem except LoadConfig reading the file itself.
//
// Error handling: no exception leaves this library. toml11 reports errors by throwing; every
// such exception is caught inside config/ and turned into a Status.
//
// Thread safety: every function here is a pure function of its arguments (LoadConfig also reads
// the file, DefaultConfig and SingleEngineConfig may read the current directory), safe to call
// from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "sync/status.h"

namespace kvfs::config {

// When a store's log is synced; see the durability table in DESIGN.md. The WAL in sync/ has its
// own enum: the daemon maps this one onto it, so config/ depends on nothing but Status.
enum class SyncMode {
  kAlways,  // every operation is logged and synced before it returns
  kBatch,   // a sync every batch_records records or batch_window_ms, and on every fsync
  kNone,    // a sync only on fsync, fdatasync and fsyncdir
};

// "always" -> kAlways, "batch" -> kBatch, "none" -> kNone (exact, lower case). Anything else is
// InvalidArgument naming the text and the accepted values. Usable for `--sync` on the command
// line.
Result<SyncMode> ParseSyncMode(std::string_view text);
// The inverse of ParseSyncMode: "always", "batch" or "none".
std::string_view SyncModeName(SyncMode mode);

// spdlog's levels, spelled as spdlog spells them. The daemon maps them onto spdlog::level.
enum class LogLevel { kTrace, kDebug, kInfo, kWarn, kError, kCritical, kOff };

// "trace", "debug", "info", "warn", "error", "critical", "off" (exact). Anything else is
// InvalidArgument naming the text and the accepted values.
Result<LogLevel> ParseLogLevel(std::string_view text);
std::string_view LogLevelName(LogLevel level);

// Parses a size as written in a config file's string form: "4096", "512KiB", "64 MiB", "1g".
// InvalidArgument (naming the text) on an empty string, a sign, a fraction, an unknown unit, or a
// value above INT64_MAX bytes. Range checks are the caller's.
Result<uint64_t> ParseByteSize(std::string_view text);
// The shortest exact rendering ParseByteSize reads back: "64MiB", "1GiB", "4097" (bytes when no
// unit divides it), "0".
std::string FormatByteSize(uint64_t bytes);

inline constexpr uint32_t kDefaultBatchWindowMs = 10;
inline constexpr uint32_t kMinBatchWindowMs = 1;
inline constexpr uint32_t kMaxBatchWindowMs = 60000;
inline constexpr uint64_t kDefaultBatchRecords = 1000;
inline constexpr uint64_t kMinBatchRecords = 1;
inline constexpr uint64_t kDefaultSegmentSize = uint64_t{64} << 20;
inline constexpr uint64_t kMinSegmentSize = uint64_t{1} << 20;
inline constexpr uint64_t kMaxSegmentSize = uint64_t{4} << 30;
inline constexpr uint64_t kDefaultCacheSize = uint64_t{64} << 20;
// Store names become directory names at the mount's root: NAME_MAX.
inline constexpr size_t kMaxStoreNameLength = 255;
// Names starting with this are reserved for the control directory (/.kvfs) and its kin.
inline constexpr std::string_view kReservedNamePrefix = ".kvfs";

// The engine option keys each engine takes, by engine name; an engine not listed takes none.
using EngineOptionKeys = std::map<std::string, std::vector<std::string>, std::less<>>;

// The words that mark a key as a secret: a key whose name, in lower case, contains one of them
// ("password", "etcd_password", "client_secret", "bearer_token", "credentials") is redacted.
// A path to a key or certificate file ("key_file", "cert_file") is not a secret: the file it
// names is protected by its own mode, and showing where it is helps whoever reads the config.
inline constexpr std::string_view kSecretKeyWords[] = {
    "password", "passwd", "passphrase", "secret", "token", "credential", "private_key", "api_key"};
bool IsSecretKey(std::string_view key);

// One mounted store: a top-level directory of the mount backed by one engine instance.
struct StoreConfig {
  std::string name;      // a valid store name (ValidateStoreName), unique in its Config
  std::string engine;    // one of the engine names the config was validated against
  std::string data_dir;  // absolute and lexically normal, no trailing '/' (except "/" itself)
  SyncMode sync = SyncMode::kBatch;
  uint32_t batch_window_ms = kDefaultBatchWindowMs;  // kMinBatchWindowMs..kMaxBatchWindowMs
  uint64_t batch_records = kDefaultBatchRecords;     // >= kMinBatchRecords
  uint64_t segment_size = kDefaultSegmentSize;       // kMinSegmentSize..kMaxSegmentSize bytes
  uint64_t cache_size = kDefaultCacheSize;           // bytes; 0 = no cache
  // Engine options (see the top of this header): only keys the engine takes.
  std::map<std::string, std::string> options;

  bool operator==(const StoreConfig&) const = default;
};

struct LoggingConfig {
  LogLevel level = LogLevel::kInfo;
  std::string file;  // "" = stderr; otherwise absolute and lexically normal

  bool operator==(const LoggingConfig&) const = default;
};

struct Config {
  std::vector<StoreConfig> stores;  // at least one, in the order the file lists them
  LoggingConfig logging;

  bool operator==(const Config&) const = default;
};

// OK if `name` can be a store's directory name: non-empty, at most kMaxStoreNameLength bytes, no
// '/', no NUL or other control character, not "." or "..", not starting with kReservedNamePrefix.
// Otherwise InvalidArgument saying which rule `name` breaks.
Status ValidateStoreName(std::string_view name);

// Checks every rule this header states on an already-built Config (for one assembled or edited
// in code, e.g. after applying `--sync`): valid unique names, known engines, absolute normal
// distinct non-nested data dirs, values in range, options the engine takes, at least one store.
// The first violation is returned as InvalidArgument naming the store and the field. Configs
// returned by the functions below already pass.
Status ValidateConfig(const Config& config, const std::vector<std::string>& known_engines,
                      const EngineOptionKeys& known_options = {});

// Parses TOML text. `source_name` names it in messages (normally the file's path). Relative
// paths (data_dir, logging.file) are resolved against `base_dir`, which must then be absolute;
// with `base_dir` empty a relative path is an error. Returns the validated Config, or
// InvalidArgument naming source, line and key as described at the top of this header.
Result<Config> ParseConfig(std::string_view toml_text, std::string_view source_name,
                           const std::vector<std::string>& known_engines,
                           std::string_view base_dir = {},
                           const EngineOptionKeys& known_options = {});

// Reads the file at `path` (at most 1 MiB) and parses it as ParseConfig does, with the file's
// own directory (made absolute against the current directory) as base_dir and `path` as the
// source name. A file that does not exist is NotFound naming the path; other read failures are
// the errno's Status naming the path; everything else as ParseConfig.
Result<Config> LoadConfig(const std::string& path, const std::vector<std::string>& known_engines,
                          const EngineOptionKeys& known_options = {});

// The embedded default: one store per entry of `engines`, in that order, named after it, with
// data_dir = data_root/<engine> and every other field at its default. A relative `data_root` is
// taken relative to the current directory. Each engine name must be a valid store name, and
// data_root non-empty (asserted: both come from the program, not the user).
Config DefaultConfig(const std::string& data_root, const std::vector<std::string>& engines);

// `--engine NAME`: a single store named `engine`, with data_dir = data_root, every other field
// at its default. InvalidArgument if `engine` is not in `known_engines` (the message lists
// them) or `data_root` is empty; a relative `data_root` is taken relative to the current
// directory.
Result<Config> SingleEngineConfig(const std::string& data_root, const std::string& engine,
                                  const std::vector<std::string>& known_engines);

// Whether ToToml shows the values of secret keys (IsSecretKey).
enum class Secrets {
  kShow,    // every value: a config written to be read back
  kRedact,  // a secret's value is "<redacted>", at any depth: for anyone else to read
};
inline constexpr std::string_view kRedacted = "<redacted>";

// Renders `config` as TOML in the file format above, every field explicit (sizes in their
// FormatByteSize form; engine options as a [store.options] table after their store), for
// /.kvfs/config (redacted) and `kvfs config`. For any Config that passes ValidateConfig,
// ParseConfig(ToToml(c), ...) returns c again (with the same known options), provided its
// strings are valid UTF-8 (TOML cannot carry other bytes) and its secrets were shown.
std::string ToToml(const Config& config, Secrets secrets = Secrets::kShow);

}  // namespace kvfs::config
