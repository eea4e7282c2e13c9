// The store flags shared by every command, and the offline tools: ls, get, put, rm (check is in
// cli_check.cc).
//
// The tools open the stores themselves, so the data directory must not be mounted (the
// engine's lock says so, naming the daemon's pid). Reading tools open read-only.
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engines/engine.h"
#include "fusefs/cli.h"
#include "fusefs/control_files.h"
#include "fusefs/file_store.h"
#include "fusefs/layout.h"
#include "fusefs/progress.h"
#include "fusefs/stores.h"
#include "sync/file_system.h"

namespace kvfs::cli {

using fusefs::Attr;
using fusefs::FileStore;
using fusefs::NodeType;

void AddStoreFlags(CLI::App* cmd, StoreFlags* flags, bool with_sync) {
  cmd->add_option("--data", flags->data,
                  "Data root (default /var/lib/kvfs as root, else ~/.local/share/kvfs)");
  cmd->add_option("--config", flags->config, "TOML config naming the stores");
  cmd->add_option("--engine", flags->engine, "One store of this engine, in the data root itself");
  if (with_sync) {
    cmd->add_option("--sync", flags->sync, "Override every store's sync mode")
        ->check(CLI::IsMember({"always", "batch", "none"}));
  }
}

// Called once, before the command starts any thread: getenv and getpwuid are safe then.
std::string DefaultDataRoot() {
  if (::geteuid() == 0) return "/var/lib/kvfs";
  const char* home = std::getenv("HOME");  // NOLINT(concurrency-mt-unsafe)
  std::string h = home != nullptr ? home : "";
  if (h.empty()) {
    // NOLINTNEXTLINE(concurrency-mt-unsafe)
    if (const passwd* pw = ::getpwuid(::geteuid()); pw != nullptr) h = pw->pw_dir;
  }
  return h + "/.local/share/kvfs";
}

Result<Selection> SelectStores(const StoreFlags& flags) {
  // A config may name every engine; the default config and --engine only the local ones
  // (a remote engine needs its options: endpoints, prefix).
  const std::vector<std::string> engines = engines::AllEngineNames();
  const config::EngineOptionKeys option_keys = engines::EngineOptionKeys();
  Selection sel;
  if (!flags.config.empty()) {
    if (!flags.engine.empty()) {
      return Status::InvalidArgument("--config and --engine exclude each other");
    }
    if (!flags.data.empty()) {
      return Status::InvalidArgument(
          "--config and --data exclude each other (the config names each store's data_dir)");
    }
    KVFS_ASSIGN_OR_RETURN(sel.config, config::LoadConfig(flags.config, engines, option_keys));
  } else {
    sel.data_root = flags.data.empty() ? DefaultDataRoot() : flags.data;
    if (!flags.engine.empty()) {
      if (engines::IsRemoteEngine(flags.engine)) {
        return Status::InvalidArgument("engine " + flags.engine +
                                       " needs a config file (--config) naming its options "
                                       "(endpoints, prefix); --engine cannot give them");
      }
      KVFS_ASSIGN_OR_RETURN(sel.config,
                            config::SingleEngineConfig(sel.data_root, flags.engine, engines));
      sel.single_store = true;
    } else {
      sel.config = config::DefaultConfig(sel.data_root, engines::EngineNames());
    }
  }
  if (!flags.sync.empty()) {
    KVFS_ASSIGN_OR_RETURN(const config::SyncMode mode, config::ParseSyncMode(flags.sync));
    for (config::StoreConfig& s : sel.config.stores) s.sync = mode;
  }
  KVFS_RETURN_IF_ERROR(config::ValidateConfig(sel.config, engines, option_keys));
  return sel;
}

namespace {

int Fail(const std::string& msg) {
  std::fprintf(stderr, "kvfs: %s\n", msg.c_str());
  return 1;
}

// A PATH as the mount shows it, split into its store and the path inside it.
struct Located {
  bool mount_root = false;  // multi-store mode's virtual root
  const config::StoreConfig* store = nullptr;
  std::string path;  // inside the store, no leading or trailing '/'
};

std::string Normalize(std::string_view p) {
  std::string out;
  size_t i = 0;
  while (i < p.size()) {
    while (i < p.size() && p[i] == '/') ++i;
    const size_t end = p.find('/', i);
    const std::string_view part = p.substr(i, (end == std::string_view::npos ? p.size() : end) - i);
    i = end == std::string_view::npos ? p.size() : end;
    if (part.empty() || part == ".") continue;
    if (!out.empty()) out += '/';
    out += part;
  }
  return out;
}

Result<Located> Locate(const Selection& sel, std::string_view raw) {
  std::string path = Normalize(raw);
  Located loc;
  if (sel.single_store) {
    loc.store = &sel.config.stores[0];
    loc.path = path;
    return loc;
  }
  if (path.empty()) {
    loc.mount_root = true;
    return loc;
  }
  const size_t slash = path.find('/');
  const std::string first = path.substr(0, slash);
  for (const config::StoreConfig& s : sel.config.stores) {
    if (s.name == first) {
      loc.store = &s;
      loc.path = slash == std::string::npos ? "" : path.substr(slash + 1);
      return loc;
    }
  }
  std::string names;
  for (const config::StoreConfig& s : sel.config.stores)
    names += (names.empty() ? "" : ", ") + s.name;
  return Status::NotFound("no store named " + first + " (stores: " + names + ")");
}

struct OpenedStore {
  std::unique_ptr<FileStore> files;
  std::string name;
  ~OpenedStore() {
    if (files != nullptr) {
      // A tool that removed a file finishes its purge (the reclaimer's) before it exits; an
      // error leaves the purge record for the next open.
      files->WaitForPurges().PermitUnchecked();
      Status s = files->Close();
      if (!s.ok())
        std::fprintf(stderr, "kvfs: closing store %s: %s\n", name.c_str(), s.ToString().c_str());
    }
  }
};

Result<std::unique_ptr<OpenedStore>> Open(const config::StoreConfig& sc, bool read_only) {
  fusefs::OpenStoresOptions o;
  o.read_only = read_only;
  o.background_work = false;
  KVFS_ASSIGN_OR_RETURN(fusefs::Store store, fusefs::OpenStore(sc, o));
  auto out = std::make_unique<OpenedStore>();
  out->files = std::move(store.files);
  out->name = sc.name;
  return out;
}

fusefs::Caller OfflineCaller() {
  fusefs::Caller c;
  c.uid = ::getuid();
  c.gid = ::getgid();
  const mode_t old = ::umask(0);
  ::umask(old);
  c.umask = old;
  return c;
}

std::string ModeString(const Attr& a) {
  // ls(1)'s letters: - d l p c b s.
  static constexpr char kLetters[] = "?-dlpcbs";
  std::string s(
      1,
      kLetters[static_cast<uint8_t>(a.type) <= fusefs::kLastNodeType ? static_cast<uint8_t>(a.type)
                                                                     : 0]);
  const char* rwx = "rwxrwxrwx";
  for (int i = 0; i < 9; ++i) s += (a.mode & (0400 >> i)) ? rwx[i] : '-';
  if (a.mode & 04000) s[3] = (a.mode & 0100) ? 's' : 'S';
  if (a.mode & 02000) s[6] = (a.mode & 0010) ? 's' : 'S';
  if (a.mode & 01000) s[9] = (a.mode & 0001) ? 't' : 'T';
  return s;
}

void PrintLong(FileStore* files, const std::string& name, const Attr& a,
               const std::string& link_path) {
  char when[32];
  const time_t t = static_cast<time_t>(a.mtime_ns / 1000000000);
  struct tm tm;
  ::localtime_r(&t, &tm);
  std::strftime(when, sizeof(when), "%Y-%m-%d %H:%M", &tm);
  std::string line = ModeString(a) + " " + std::to_string(a.nlink) + " " + std::to_string(a.uid) +
                     " " + std::to_string(a.gid);
  std::printf("%s %12llu %s %s", line.c_str(), static_cast<unsigned long long>(a.size), when,
              name.c_str());
  if (a.type == NodeType::kSymlink && files != nullptr) {
    auto link = files->Resolve(link_path);  // makes the id known to the FileStore
    auto target = link.ok() ? files->ReadLink(link->id) : Result<std::string>(link.status());
    if (target.ok()) std::printf(" -> %s", target->c_str());
  }
  std::printf("\n");
}

int Ls(const StoreFlags& flags, const std::string& raw, bool long_format) {
  auto sel = SelectStores(flags);
  if (!sel.ok()) return Fail(sel.status().message());
  auto loc = Locate(*sel, raw);
  if (!loc.ok()) return Fail(loc.status().message());
  if (loc->mount_root) {
    for (const config::StoreConfig& s : sel->config.stores) {
      if (long_format) {
        std::printf("%-12s engine %-10s sync %-6s %s\n", s.name.c_str(), s.engine.c_str(),
                    std::string(config::SyncModeName(s.sync)).c_str(), s.data_dir.c_str());
      } else {
        std::printf("%s\n", s.name.c_str());
      }
    }
    return 0;
  }
  auto opened = Open(*loc->store, /*read_only=*/true);
  if (!opened.ok()) return Fail(opened.status().ToString());
  FileStore* files = (*opened)->files.get();
  auto attr = files->Resolve(loc->path);
  if (!attr.ok()) return Fail(raw + ": " + attr.status().message());
  if (attr->type != NodeType::kDirectory) {
    if (long_format) {
      PrintLong(files, std::string(fusefs::NameOf(loc->path)), *attr, loc->path);
    } else {
      std::printf("%s\n", std::string(fusefs::NameOf(loc->path)).c_str());
    }
    return 0;
  }
  Status s = files->ReadDir(attr->id, "", false, [&](const fusefs::DirEntry& e) {
    if (long_format) {
      PrintLong(files, e.name, e.attr, fusefs::JoinPath(loc->path, e.name));
    } else {
      std::printf("%s\n", e.name.c_str());
    }
    return true;
  });
  if (!s.ok()) return Fail(raw + ": " + s.ToString());
  return 0;
}

int Get(const StoreFlags& flags, const std::string& raw) {
  auto sel = SelectStores(flags);
  if (!sel.ok()) return Fail(sel.status().message());
  auto loc = Locate(*sel, raw);
  if (!loc.ok()) return Fail(loc.status().message());
  if (loc->mount_root) return Fail(raw + ": is a directory");
  auto opened = Open(*loc->store, /*read_only=*/true);
  if (!opened.ok()) return Fail(opened.status().ToString());
  FileStore* files = (*opened)->files.get();
  auto attr = files->Resolve(loc->path);
  if (!attr.ok()) return Fail(raw + ": " + attr.status().message());
  if (attr->type == NodeType::kDirectory) return Fail(raw + ": is a directory");
  if (attr->type == NodeType::kSymlink) {
    auto target = files->ReadLink(attr->id);
    return Fail(raw + ": is a symbolic link" + (target.ok() ? " to " + *target : ""));
  }
  if (attr->type != NodeType::kFile) return Fail(raw + ": not a regular file");
  constexpr size_t kPiece = 1 << 20;
  for (uint64_t off = 0; off < attr->size;) {
    auto data = files->Read(attr->id, off, kPiece);
    if (!data.ok())
      return Fail(raw + ": read at offset " + std::to_string(off) + ": " +
                  data.status().ToString());
    if (data->empty()) break;
    if (std::fwrite(data->data(), 1, data->size(), stdout) != data->size()) {
      return Fail(std::string("writing to stdout: ") + ErrnoText(errno));
    }
    off += data->size();
  }
  if (std::fflush(stdout) != 0) return Fail(std::string("stdout: ") + ErrnoText(errno));
  return 0;
}

int Put(const StoreFlags& flags, const std::string& raw, const std::string& source) {
  auto sel = SelectStores(flags);
  if (!sel.ok()) return Fail(sel.status().message());
  auto loc = Locate(*sel, raw);
  if (!loc.ok()) return Fail(loc.status().message());
  if (loc->mount_root || loc->path.empty()) return Fail(raw + ": is a directory");
  if (sel->single_store && fusefs::ParentOf(loc->path).empty() &&
      fusefs::NameOf(loc->path) == fusefs::kControlDirName) {
    return Fail(raw + ": the name .kvfs is reserved for the control directory");
  }
  FILE* in = stdin;
  if (!source.empty() && source != "-") {
    in = std::fopen(source.c_str(), "rb");
    if (in == nullptr) return Fail(source + ": " + ErrnoText(errno));
  }
  std::unique_ptr<FILE, int (*)(FILE*)> closer(in == stdin ? nullptr : in, &std::fclose);
  auto opened = Open(*loc->store, /*read_only=*/false);
  if (!opened.ok()) return Fail(opened.status().ToString());
  FileStore* files = (*opened)->files.get();
  const std::string parent_path(fusefs::ParentOf(loc->path));
  const std::string name(fusefs::NameOf(loc->path));
  auto parent = files->Resolve(parent_path);
  if (!parent.ok()) return Fail(raw + ": " + parent.status().message());
  if (parent->type != NodeType::kDirectory) return Fail(raw + ": not a directory on the way");
  uint64_t id;
  auto existing = files->Lookup(parent->id, name);
  if (existing.ok()) {
    if (existing->type == NodeType::kDirectory) return Fail(raw + ": is a directory");
    if (existing->type == NodeType::kSymlink) return Fail(raw + ": is a symbolic link");
    if (existing->type != NodeType::kFile) return Fail(raw + ": not a regular file");
    fusefs::AttrChange truncate;
    truncate.size = 0;
    auto t = files->SetAttr(existing->id, truncate);
    if (!t.ok()) return Fail(raw + ": " + t.status().ToString());
    id = existing->id;
  } else if (existing.status().IsNotFound()) {
    auto created = files->Create(parent->id, name, 0666, OfflineCaller());
    if (!created.ok()) return Fail(raw + ": " + created.status().ToString());
    id = created->id;
  } else {
    return Fail(raw + ": " + existing.status().ToString());
  }
  std::vector<char> buf(1 << 20);
  uint64_t off = 0;
  for (;;) {
    const size_t n = std::fread(buf.data(), 1, buf.size(), in);
    if (n > 0) {
      auto w = files->Write(id, off, std::string_view(buf.data(), n));
      if (!w.ok())
        return Fail(raw + ": write at offset " + std::to_string(off) + ": " +
                    w.status().ToString());
      off += n;
    }
    if (n < buf.size()) {
      if (std::ferror(in)) {
        return Fail((source.empty() ? std::string("stdin") : source) + ": " + ErrnoText(errno));
      }
      break;
    }
  }
  Status synced = files->SyncFile(id, false);
  if (!synced.ok()) return Fail(raw + ": sync: " + synced.ToString());
  return 0;
}

int Rm(const StoreFlags& flags, const std::string& raw) {
  auto sel = SelectStores(flags);
  if (!sel.ok()) return Fail(sel.status().message());
  auto loc = Locate(*sel, raw);
  if (!loc.ok()) return Fail(loc.status().message());
  if (loc->mount_root || loc->path.empty()) return Fail(raw + ": cannot remove a store's root");
  auto opened = Open(*loc->store, /*read_only=*/false);
  if (!opened.ok()) return Fail(opened.status().ToString());
  FileStore* files = (*opened)->files.get();
  auto parent = files->Resolve(fusefs::ParentOf(loc->path));
  if (!parent.ok()) return Fail(raw + ": " + parent.status().message());
  const std::string name(fusefs::NameOf(loc->path));
  Status s = files->Unlink(parent->id, name);
  if (fusefs::ErrnoOf(s) == EISDIR) s = files->Rmdir(parent->id, name);
  if (!s.ok()) return Fail(raw + ": " + s.message());
  Status synced = files->SyncDir(parent->id);
  if (!synced.ok()) return Fail(raw + ": sync: " + synced.ToString());
  return 0;
}

}  // namespace

void AddToolCommands(CLI::App* app, std::vector<Command>* commands) {
  struct ToolState {
    StoreFlags flags;
    std::string path;
    std::string source;
    bool long_format = false;
  };
  auto add = [&](const char* name, const char* help) {
    auto st = std::make_shared<ToolState>();
    CLI::App* cmd = app->add_subcommand(name, help);
    AddStoreFlags(cmd, &st->flags, /*with_sync=*/false);
    return std::make_pair(cmd, st);
  };

  {
    const auto added = add("ls", "List a directory of an unmounted store, as the mount shows it");
    CLI::App* cmd = added.first;
    const std::shared_ptr<ToolState> st = added.second;
    cmd->add_flag("-l", st->long_format, "Mode, owner, size, time");
    cmd->add_option("PATH", st->path, "As in the mount, e.g. lsm/users (default: the root)");
    commands->push_back({cmd, [st] { return Ls(st->flags, st->path, st->long_format); }});
  }
  {
    const auto added = add("get", "Write a file of an unmounted store to stdout");
    CLI::App* cmd = added.first;
    const std::shared_ptr<ToolState> st = added.second;
    cmd->add_option("PATH", st->path, "As in the mount")->required();
    commands->push_back({cmd, [st] { return Get(st->flags, st->path); }});
  }
  {
    const auto added = add("put", "Create or replace a file of an unmounted store");
    CLI::App* cmd = added.first;
    const std::shared_ptr<ToolState> st = added.second;
    cmd->add_option("PATH", st->path, "As in the mount; its directory must exist")->required();
    cmd->add_option("FILE", st->source, "Read from FILE (default or '-': stdin)");
    commands->push_back({cmd, [st] { return Put(st->flags, st->path, st->source); }});
  }
  {
    const auto added = add("rm", "Remove a file, symlink or empty directory of an unmounted store");
    CLI::App* cmd = added.first;
    const std::shared_ptr<ToolState> st = added.second;
    cmd->add_option("PATH", st->path, "As in the mount")->required();
    commands->push_back({cmd, [st] { return Rm(st->flags, st->path); }});
  }
}

}  // namespace kvfs::cli
