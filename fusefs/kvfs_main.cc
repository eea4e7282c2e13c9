// kvfs: the command line. Today it carries the offline tools; `kvfs mount` and the key tools
// (ls, get, put, rm) join it with the daemon.
//
//   kvfs --version
//   kvfs check --engine NAME DIR     open a store read-only and read every key and value,
//                                    verifying every checksum; report damage by file and offset
//   kvfs wal dump DIR [--payloads]   list every record of the log in DIR, verifying checksums
//   kvfs wal append DIR TEXT...      append each TEXT as a record, durably (sync "always")
//
// Exit status: 0 on success, 1 when the log is damaged or an operation fails (the message
// names the file and offset), another non-zero code on bad usage.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>
#include <vector>

#include "engines/engine.h"
#include "sync/file_system.h"
#include "sync/wal.h"
#include "sync/wal_reader.h"

namespace {

constexpr const char* kVersion = "0.1.0";

std::string Printable(std::string_view payload, size_t limit) {
  std::string out;
  for (char c : payload.substr(0, limit)) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f) {
      out += c;
    } else {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", u);
      out += buf;
    }
  }
  if (payload.size() > limit) out += "...";
  return out;
}

int WalDump(const std::string& dir, bool payloads) {
  kvfs::sync::WalReadReport report;
  const kvfs::Status s = kvfs::sync::ReadWal(
      kvfs::sync::DefaultFileSystem(), dir, 0,
      [&](uint64_t lsn, std::string_view payload) {
        std::printf("%llu\t%zu bytes", static_cast<unsigned long long>(lsn), payload.size());
        if (payloads) std::printf("\t%s", Printable(payload, 200).c_str());
        std::printf("\n");
        return kvfs::Status::OK();
      },
      &report);
  if (!s.ok()) {
    std::fprintf(stderr, "kvfs: log %s is damaged: %s\n", dir.c_str(), s.ToString().c_str());
    return 1;
  }
  std::printf("%s: %s\n", dir.c_str(), report.Summary().c_str());
  return 0;
}

int WalAppend(const std::string& dir, const std::vector<std::string>& texts) {
  kvfs::sync::WalOptions options;
  options.sync_mode = kvfs::sync::SyncMode::kAlways;
  kvfs::sync::WalReadReport report;
  auto wal = kvfs::sync::Wal::Open(
      kvfs::sync::DefaultFileSystem(), dir, options, 0,
      [](uint64_t, std::string_view) { return kvfs::Status::OK(); }, &report);
  if (!wal.ok()) {
    std::fprintf(stderr, "kvfs: cannot open log %s: %s\n", dir.c_str(),
                 wal.status().ToString().c_str());
    return 1;
  }
  for (const std::string& text : texts) {
    auto lsn = (*wal)->Append(text);
    if (!lsn.ok()) {
      std::fprintf(stderr, "kvfs: append to %s failed: %s\n", dir.c_str(),
                   lsn.status().ToString().c_str());
      return 1;
    }
    std::printf("%llu\tdurable\n", static_cast<unsigned long long>(*lsn));
  }
  const kvfs::Status closed = (*wal)->Close();
  if (!closed.ok()) {
    std::fprintf(stderr, "kvfs: closing log %s: %s\n", dir.c_str(), closed.ToString().c_str());
    return 1;
  }
  return 0;
}

int Check(const std::string& engine_name, const std::string& dir) {
  kvfs::engines::EngineOptions options;
  options.read_only = true;
  options.background_work = false;
  auto engine =
      kvfs::engines::OpenEngine(engine_name, kvfs::sync::DefaultFileSystem(), dir, options);
  if (!engine.ok()) {
    std::fprintf(stderr, "kvfs: %s store %s cannot be opened: %s\n", engine_name.c_str(),
                 dir.c_str(), engine.status().ToString().c_str());
    return 1;
  }
  // Reading every value makes the engine verify every entry's checksum on the way.
  uint64_t keys = 0;
  uint64_t bytes = 0;
  const kvfs::Status s = (*engine)->Scan({}, [&](std::string_view key, std::string_view value) {
    ++keys;
    bytes += key.size() + value.size();
    return true;
  });
  if (!s.ok()) {
    std::fprintf(stderr, "kvfs: %s store %s is damaged: %s\n", engine_name.c_str(), dir.c_str(),
                 s.ToString().c_str());
    return 1;
  }
  std::printf(
      "%s: %s store OK: %llu keys, %llu bytes of keys and values, every checksum verified\n",
      dir.c_str(), engine_name.c_str(), static_cast<unsigned long long>(keys),
      static_cast<unsigned long long>(bytes));
  return (*engine)->Close().ok() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kvfs: every key of an embedded storage engine as a file"};
  app.set_version_flag("--version", std::string("kvfs ") + kVersion);
  app.require_subcommand(1);

  CLI::App* wal = app.add_subcommand("wal", "Offline tools for a write-ahead log directory");
  wal->require_subcommand(1);

  std::string dump_dir;
  bool payloads = false;
  CLI::App* dump = wal->add_subcommand("dump", "List every record, verifying every checksum");
  dump->add_option("DIR", dump_dir, "Log directory")->required();
  dump->add_flag("--payloads", payloads, "Print each payload (escaped, first 200 bytes)");

  std::string append_dir;
  std::vector<std::string> texts;
  CLI::App* append = wal->add_subcommand("append", "Append records durably (sync always)");
  append->add_option("DIR", append_dir, "Log directory (created if missing)")->required();
  append->add_option("TEXT", texts, "One record per argument")->required();

  std::string check_engine;
  std::string check_dir;
  CLI::App* check = app.add_subcommand("check", "Verify a store offline: every key and value");
  check->add_option("--engine", check_engine, "Engine of the store")
      ->required()
      ->check(CLI::IsMember(kvfs::engines::EngineNames()));
  check->add_option("DIR", check_dir, "The store's data directory")->required();

  CLI11_PARSE(app, argc, argv);
  if (check->parsed()) return Check(check_engine, check_dir);
  if (dump->parsed()) return WalDump(dump_dir, payloads);
  if (append->parsed()) return WalAppend(append_dir, texts);
  return 2;
}
