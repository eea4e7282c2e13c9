// kvfs mount, kvfs umount, and the mount.fuse3 form.
#include <pwd.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engines/engine.h"
#include "fusefs/cli.h"
#include "fusefs/daemon.h"

namespace kvfs::cli {
namespace {

// What -o carries besides FUSE's own options.
struct MountFlags {
  StoreFlags stores;
  std::string mountpoint;
  bool foreground = false;
  bool debug = false;
  bool writeback = false;
  bool no_open = true;
  bool xattrs = true;
  double timeout_s = 3600;
  bool public_control = false;
  bool read_only = false;           // -o ro
  std::vector<std::string> o_args;  // raw -o arguments (comma lists)
  fusefs::StorageHooks* storage = nullptr;
};

bool StartsWith(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

std::vector<std::string> SplitOptions(const std::string& list) {
  std::vector<std::string> out;
  std::string cur;
  for (size_t i = 0; i < list.size(); ++i) {
    if (list[i] == '\\' && i + 1 < list.size()) {
      cur += list[i];
      cur += list[++i];
    } else if (list[i] == ',') {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else {
      cur += list[i];
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

// Sorts -o options into kvfs's own (into `flags`) and FUSE's (returned). Options mount(8) and
// mount.fuse3 pass that mean nothing here (or only restate defaults) are dropped. `dev` and
// `suid` are not defaults (a FUSE mount is nodev,nosuid unless root asks) and go to FUSE: with
// `dev`, device nodes kept in the mount open as on a local disk. Returns false with a message
// on stderr for a malformed kvfs option.
bool SortOptions(MountFlags* flags, std::vector<std::string>* fuse_options) {
  static const char* const kDropped[] = {
      "rw",   "exec",   "async", "atime", "auto",     "noauto", "nofail",   "_netdev",
      "user", "nouser", "users", "owner", "defaults", "group",  "relatime", "kvfs_no_open"};
  for (const std::string& list : flags->o_args) {
    for (const std::string& opt : SplitOptions(list)) {
      const size_t eq = opt.find('=');
      const std::string key = opt.substr(0, eq);
      const std::string value = eq == std::string::npos ? "" : opt.substr(eq + 1);
      bool dropped = StartsWith(opt, "x-") || StartsWith(opt, "comment=");
      for (const char* d : kDropped) dropped = dropped || opt == d;
      if (dropped) continue;
      if (eq != std::string::npos && key == "engine") {
        flags->stores.engine = value;
      } else if (eq != std::string::npos && key == "config") {
        flags->stores.config = value;
      } else if (eq != std::string::npos && key == "sync") {
        flags->stores.sync = value;
      } else if (eq != std::string::npos && key == "data") {
        flags->stores.data = value;
      } else if (opt == "kvfs_writeback") {
        flags->writeback = true;
      } else if (opt == "kvfs_open") {
        flags->no_open = false;
      } else if (opt == "kvfs_noxattr") {
        flags->xattrs = false;
      } else if (opt == "kvfs_public_control") {
        flags->public_control = true;
      } else if (key == "kvfs_timeout") {
        char* end = nullptr;
        const double t = std::strtod(value.c_str(), &end);
        if (value.empty() || *end != '\0' || t < 0) {
          std::fprintf(stderr, "kvfs: -o kvfs_timeout=%s: not a number of seconds\n",
                       value.c_str());
          return false;
        }
        flags->timeout_s = t;
      } else if (opt == "debug") {
        flags->debug = true;
      } else if (opt == "ro") {
        flags->read_only = true;  // the kernel's read-only mount, and the stores' too
        fuse_options->push_back(opt);
      } else {
        fuse_options->push_back(opt);
      }
    }
  }
  return true;
}

int Mount(MountFlags* flags, const std::string& fsname_hint) {
  std::vector<std::string> fuse_options;
  if (!SortOptions(flags, &fuse_options)) return 2;
  auto selection = SelectStores(flags->stores);
  if (!selection.ok()) {
    std::fprintf(stderr, "kvfs: %s\n", selection.status().message().c_str());
    return 1;
  }
  fusefs::DaemonOptions o;
  o.mountpoint = flags->mountpoint;
  o.config = selection->config;
  o.single_store = selection->single_store;
  o.foreground = flags->foreground;
  o.debug = flags->debug;
  o.writeback_cache = flags->writeback;
  o.no_open = flags->no_open;
  o.xattrs = flags->xattrs;
  o.timeout_s = flags->timeout_s;
  o.public_control = flags->public_control;
  o.fuse_options = std::move(fuse_options);
  o.read_only = flags->read_only;
  o.storage = flags->storage;
  o.fsname = !fsname_hint.empty()            ? fsname_hint
             : !selection->data_root.empty() ? selection->data_root
             : !flags->stores.config.empty() ? flags->stores.config
                                             : std::string("kvfs");
  return fusefs::RunDaemon(o);
}

}  // namespace

void AddMountCommands(CLI::App* app, std::vector<Command>* commands, const MountHooks* hooks) {
  auto flags = std::make_shared<MountFlags>();
  CLI::App* mount = app->add_subcommand(
      "mount", "Mount the stores at MOUNTPOINT (daemonizes once the mount is live, unless -f)");
  mount->add_option("MOUNTPOINT", flags->mountpoint, "An existing directory")->required();
  AddStoreFlags(mount, &flags->stores, /*with_sync=*/true);
  mount->add_flag("-f,--foreground", flags->foreground,
                  "Stay in the foreground, logging to stderr");
  mount->add_flag("-d,--debug", flags->debug, "Trace every FUSE request (implies -f)");
  mount->add_flag("--writeback", flags->writeback,
                  "Kernel writeback cache (same as -o kvfs_writeback)");
  mount->add_option("-o", flags->o_args,
                    "Mount options, comma-separated: engine=, config=, sync=, kvfs_writeback, "
                    "kvfs_open, kvfs_noxattr, kvfs_timeout=S, kvfs_public_control (/.kvfs "
                    "readable by every user, not only the mounting one), and FUSE's "
                    "(allow_other, ro, ...)");
  if (hooks != nullptr && hooks->add_options) hooks->add_options(mount);
  commands->push_back({mount, [flags, hooks] {
                         if (hooks != nullptr && hooks->storage) {
                           auto storage = hooks->storage();
                           if (!storage.ok()) {
                             std::fprintf(stderr, "kvfs: %s\n", storage.status().message().c_str());
                             return 2;
                           }
                           flags->storage = *storage;
                         }
                         return Mount(flags.get(), "");
                       }});

  auto umount_point = std::make_shared<std::string>();
  auto lazy = std::make_shared<bool>(false);
  auto wait_s = std::make_shared<double>(120);
  CLI::App* umount = app->add_subcommand(
      "umount", "Unmount, then wait until the daemon has synced and closed every store");
  umount->add_option("MOUNTPOINT", *umount_point, "Where kvfs is mounted")->required();
  umount->add_flag("-z,--lazy", *lazy, "Detach now even if busy (the daemon ends when unused)");
  umount->add_option("--timeout", *wait_s, "Seconds to wait for the daemon to exit");
  commands->push_back({umount, [umount_point, lazy, wait_s] {
                         return fusefs::Unmount(*umount_point, *lazy, *wait_s);
                       }});
}

bool IsMountHelperForm(int argc, char** argv, const CLI::App& app) {
  if (argc < 3 || argv[1][0] == '-' || argv[2][0] == '-') return false;
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
    if (sub->get_name() == argv[1]) return false;
  }
  return true;
}

int MountHelperMain(int argc, char** argv) {
  // kvfs SOURCE MOUNTPOINT [-o OPTS]... [-f] [-d] [-v]: SOURCE is the data root.
  MountFlags flags;
  flags.stores.data = argv[1];
  flags.mountpoint = argv[2];
  for (int i = 3; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-o" && i + 1 < argc) {
      flags.o_args.push_back(argv[++i]);
    } else if (StartsWith(a, "-o") && a.size() > 2) {
      flags.o_args.push_back(a.substr(2));
    } else if (a == "-f") {
      flags.foreground = true;
    } else if (a == "-d") {
      flags.debug = true;
    } else if (a == "-v" || a == "-n" || a == "-s") {
      // mount(8)'s verbose / no-mtab / sloppy: nothing to do
    } else {
      std::fprintf(stderr,
                   "kvfs: unexpected argument '%s'\nusage: kvfs DATADIR MOUNTPOINT [-o "
                   "engine=NAME,config=FILE,sync=MODE,...] (the form mount.fuse3 runs)\n",
                   a.c_str());
      return 2;
    }
  }
  // With config=, the stores' data dirs come from the file; SOURCE only names the mount.
  std::vector<std::string> unused;
  MountFlags probe = flags;
  if (!SortOptions(&probe, &unused)) return 2;
  const std::string fsname = flags.stores.data;
  if (!probe.stores.config.empty()) flags.stores.data.clear();
  return Mount(&flags, fsname);
}

}  // namespace kvfs::cli
