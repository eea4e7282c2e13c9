// The kvfs command line's pieces (CLI11), one file per group of subcommands:
//   cli_mount.cc  mount, umount, and the mount.fuse3 form `kvfs SOURCE MOUNTPOINT -o OPTS`
//   cli_tools.cc  ls, get, put, rm: offline tools on an unmounted data directory
//   cli_check.cc  check and check --salvage: verify unmounted stores, and the way out of damage
//   kvfs_main.cc  wal dump/append, and the dispatch
//
// Every command that picks stores takes the same flags, so an offline tool sees exactly what a
// mount of the same flags shows:
//   --data DIR     data root (default /var/lib/kvfs as root, else $HOME/.local/share/kvfs)
//   --config FILE  a TOML config (each store names its own data_dir; excludes --data/--engine)
//   --engine NAME  one store of engine NAME in DIR itself, at the mount's root
//   (none)         the embedded default: one store per engine, in DIR/<engine>
// Exit status: 0 success, 1 failure (a message on stderr), other codes for bad usage.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

#include "config/config.h"
#include "fusefs/daemon.h"
#include "sync/status.h"

namespace kvfs::cli {

struct StoreFlags {
  std::string data;
  std::string config;
  std::string engine;
  std::string sync;  // "" = as configured
};

void AddStoreFlags(CLI::App* cmd, StoreFlags* flags, bool with_sync);

struct Selection {
  config::Config config;
  bool single_store = false;
  std::string data_root;  // --data or its default ("" with --config)
};

// The config the flags select, validated; errors name the flag or the config file's line.
Result<Selection> SelectStores(const StoreFlags& flags);

// /var/lib/kvfs for root, else $HOME/.local/share/kvfs.
std::string DefaultDataRoot();

// A parsed subcommand and what runs it (returns the exit code).
struct Command {
  CLI::App* app;
  std::function<int()> run;
};

// What a test daemon adds to `mount` (tests/crash/kvfs_fault_daemon): its own options, and once
// they are parsed, the storage the stores live on. The shipped kvfs passes none.
struct MountHooks {
  std::function<void(CLI::App* mount)> add_options;
  // Called when the mount starts; null result: the real disk. A non-OK result fails the mount
  // (exit code 2, its message on stderr).
  std::function<Result<fusefs::StorageHooks*>()> storage;
};

void AddMountCommands(CLI::App* app, std::vector<Command>* commands,
                      const MountHooks* hooks = nullptr);
void AddToolCommands(CLI::App* app, std::vector<Command>* commands);
// kvfs check [--salvage] (cli_check.cc).
void AddCheckCommand(CLI::App* app, std::vector<Command>* commands);

// mount.fuse3 runs `kvfs SOURCE MOUNTPOINT -o OPTS` for an fstab line of type fuse.kvfs: true
// if argv has that form (its first argument is no subcommand and no option).
bool IsMountHelperForm(int argc, char** argv, const CLI::App& app);
int MountHelperMain(int argc, char** argv);

// Parses argv into `app` and runs the command it names: CLI11's exit code for --help or a bad
// argument, 2 for no command.
int ParseAndRun(CLI::App* app, const std::vector<Command>& commands, int argc, char** argv);
// main() for a kvfs program: `program_main`'s exit code, or 1 with "PROGRAM: what" on stderr for
// an exception nothing caught (CLI11's, a std::bad_alloc), never an abort.
int GuardedMain(const char* program, int (*program_main)(int, char**), int argc, char** argv);

}  // namespace kvfs::cli
