// kvfs: the command line.
//
//   kvfs mount MOUNTPOINT [--data DIR | --config FILE] [--engine NAME] [--sync MODE] [-f] [-o OPTS]
//   kvfs umount MOUNTPOINT [--lazy]
//   kvfs DATADIR MOUNTPOINT -o OPTS      the form mount.fuse3 runs for fstab type fuse.kvfs
//   kvfs ls [-l] PATH | get PATH | put PATH [FILE|-] | rm PATH     offline, on unmounted stores
//   kvfs check [--data DIR | --config FILE] [--engine NAME] [--salvage]  verify unmounted stores
//   kvfs check --engine NAME DIR     the same for the store in DIR
//   kvfs wal dump DIR [--payloads]   list every record of the log in DIR, verifying checksums
//   kvfs wal append DIR TEXT...      append each TEXT as a record, durably (sync "always")
//   kvfs --version
//
// Exit status: 0 on success, 1 when an operation fails or data is damaged (the message names
// the file and offset), another non-zero code on bad usage. The subcommands live in
// cli_mount.cc and cli_tools.cc (see cli.h).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "engines/engine.h"
#include "fusefs/cli.h"
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

}  // namespace

// The command line; main() runs it under cli::GuardedMain, so an exception is a message.
int Main(int argc, char** argv) {
  CLI::App app{"kvfs: every key of an embedded storage engine as a file"};
  app.set_version_flag("--version", std::string("kvfs ") + kVersion);
  app.require_subcommand(1);

  std::vector<kvfs::cli::Command> commands;
  kvfs::cli::AddMountCommands(&app, &commands);
  kvfs::cli::AddToolCommands(&app, &commands);
  kvfs::cli::AddCheckCommand(&app, &commands);

  CLI::App* wal = app.add_subcommand("wal", "Offline tools for a write-ahead log directory");
  wal->require_subcommand(1);

  std::string dump_dir;
  bool payloads = false;
  CLI::App* dump = wal->add_subcommand("dump", "List every record, verifying every checksum");
  dump->add_option("DIR", dump_dir, "Log directory")->required();
  dump->add_flag("--payloads", payloads, "Print each payload (escaped, first 200 bytes)");
  commands.push_back({dump, [&] { return WalDump(dump_dir, payloads); }});

  std::string append_dir;
  std::vector<std::string> texts;
  CLI::App* append = wal->add_subcommand("append", "Append records durably (sync always)");
  append->add_option("DIR", append_dir, "Log directory (created if missing)")->required();
  append->add_option("TEXT", texts, "One record per argument")->required();
  commands.push_back({append, [&] { return WalAppend(append_dir, texts); }});

  if (kvfs::cli::IsMountHelperForm(argc, argv, app)) return kvfs::cli::MountHelperMain(argc, argv);

  return kvfs::cli::ParseAndRun(&app, commands, argc, argv);
}

int main(int argc, char** argv) { return kvfs::cli::GuardedMain("kvfs", Main, argc, argv); }
