// kvfs_fault_daemon: the kvfs daemon on a simulated disk, for the power-cut tests only
// (mount_crash_test). It is the shipped daemon's `mount` and `umount` with the stores on the
// fault-injecting file system (power_cut.h); the shipped `kvfs` links none of this.
//
//   kvfs_fault_daemon mount MOUNTPOINT [kvfs mount's flags] [--seed N] [--crash-mode MODE]
//       [--crash-at-sync N] [--fail-sync N [--fail-sync-errno EIO|ENOSPC|EDQUOT]]
//       [--space-left BYTES]
//   kvfs_fault_daemon umount MOUNTPOINT
//
// SIGUSR1 cuts the power; SIGUSR2 lifts the space limit.
#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "fusefs/cli.h"
#include "tests/crash/power_cut.h"

// The command line; main() runs it under cli::GuardedMain, so an exception is a message.
int Main(int argc, char** argv) {
  using kvfs::crash_test::FaultInjection;
  using kvfs::crash_test::PowerCutHarness;
  CLI::App app{"kvfs_fault_daemon: the kvfs daemon on the fault-injecting disk (tests only)"};
  app.require_subcommand(1);

  FaultInjection fault;
  std::string mode = "drop";
  std::string fail_errno = "EIO";
  std::unique_ptr<PowerCutHarness> harness;
  kvfs::cli::MountHooks hooks;
  hooks.add_options = [&](CLI::App* mount) {
    mount->add_option("--seed", fault.seed, "Seed of the fault-injecting disk");
    mount->add_option("--crash-mode", mode, "What a power cut keeps")
        ->check(CLI::IsMember({"drop", "prefix", "tear"}));
    mount->add_option("--crash-at-sync", fault.crash_at_sync,
                      "Cut the power just before the N-th sync (0: only on SIGUSR1)");
    mount->add_option("--fail-sync", fault.fail_sync,
                      "The N-th sync fails (0: none), with --fail-sync-errno");
    mount->add_option("--fail-sync-errno", fail_errno, "The errno of the failed sync")
        ->check(CLI::IsMember({"EIO", "ENOSPC", "EDQUOT"}));
    mount->add_option("--space-left", fault.space_left,
                      "Bytes the files may grow by before ENOSPC (-1: no limit)");
  };
  hooks.storage = [&]() -> kvfs::Result<kvfs::fusefs::StorageHooks*> {
    fault.mode = mode == "prefix" ? kvfs::sync::CrashMode::kKeepPrefix
                 : mode == "tear" ? kvfs::sync::CrashMode::kTearLastWrite
                                  : kvfs::sync::CrashMode::kDropUnsynced;
    fault.fail_sync_errno = fail_errno == "ENOSPC" ? ENOSPC : fail_errno == "EDQUOT" ? EDQUOT : EIO;
    harness = std::make_unique<PowerCutHarness>(fault);
    return harness.get();
  };

  std::vector<kvfs::cli::Command> commands;
  kvfs::cli::AddMountCommands(&app, &commands, &hooks);
  return kvfs::cli::ParseAndRun(&app, commands, argc, argv);
}

int main(int argc, char** argv) {
  return kvfs::cli::GuardedMain("kvfs_fault_daemon", Main, argc, argv);
}
