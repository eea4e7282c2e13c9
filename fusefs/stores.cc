#include "fusefs/stores.h"

#include <unistd.h>

#include <chrono>
#include <exception>
#include <map>
#include <sstream>
#include <toml.hpp>
#include <utility>
#include <vector>

#include "engines/engine.h"
#include "sync/durable.h"
#include "sync/file_system.h"
#include "sync/private_tree.h"

namespace kvfs::fusefs {
namespace {

std::string MarkerPath(const std::string& data_dir) {
  return sync::JoinPath(data_dir, kStoreMarkerName);
}

// A sorted table, so the marker lists engine before layout (toml::value's tables are unordered).
using MarkerToml = toml::basic_value<toml::discard_comments, std::map, std::vector>;

// The marker kvfs wrote before markers were TOML: the engine's name unquoted.
std::string LegacyMarkerText(const std::string& engine) {
  return "engine = " + engine + "\nlayout = " + std::to_string(kStoreMarkerLayout) + "\n";
}

// The engine a marker at `path` names, or Corruption naming `path`; `engine` (the one asked for)
// only fills in the text the marker should have.
bool IsLegacyMarker(const std::string& text) {
  for (const std::string& known : engines::EngineNames()) {
    if (text == LegacyMarkerText(known)) return true;
  }
  return false;
}

Result<std::string> ParseStoreMarker(const std::string& text, const std::string& path,
                                     const std::string& engine) {
  // An old marker is recognised by its bytes, for the engines this kvfs knows: it is not TOML.
  for (const std::string& known : engines::EngineNames()) {
    if (text == LegacyMarkerText(known)) return known;
  }
  const std::string should_read = "; it should read engine = \"" + engine +
                                  "\" and layout = " + std::to_string(kStoreMarkerLayout);
  MarkerToml marker;
  try {
    std::istringstream in(text);
    marker = toml::parse<toml::discard_comments, std::map, std::vector>(in, path);
  } catch (const std::exception& e) {
    // toml11's message: "[error] " and what on its first line, then an excerpt of the file.
    std::string what = e.what();
    what = what.substr(0, what.find('\n'));
    if (what.starts_with("[error] ")) what.erase(0, 8);
    return Status::Corruption(path + ": not TOML (" + what + ")" + should_read);
  }
  if (!marker.contains("engine") || !marker.at("engine").is_string() ||
      marker.at("engine").as_string().str.empty()) {
    return Status::Corruption(path + ": no engine = \"NAME\" line" + should_read);
  }
  const MarkerToml& layout = marker.contains("layout") ? marker.at("layout") : MarkerToml();
  if (!layout.is_integer() || layout.as_integer() != kStoreMarkerLayout) {
    return Status::Corruption(
        path + ": layout " + (layout.is_uninitialized() ? "(none)" : toml::format(layout, 0)) +
        " is not one this kvfs reads (" + std::to_string(kStoreMarkerLayout) + ")");
  }
  return marker.at("engine").as_string().str;
}

engines::EngineOptions EngineOptionsFor(const config::StoreConfig& store,
                                        const OpenStoresOptions& options) {
  engines::EngineOptions eo;
  switch (store.sync) {
    case config::SyncMode::kAlways:
      // The FileStore syncs each mutation itself, outside its lock (group commit).
      eo.sync_mode = sync::SyncMode::kNone;
      break;
    case config::SyncMode::kBatch:
      eo.sync_mode = sync::SyncMode::kBatch;
      break;
    case config::SyncMode::kNone:
      eo.sync_mode = sync::SyncMode::kNone;
      break;
  }
  eo.batch_records = static_cast<uint32_t>(std::min<uint64_t>(store.batch_records, UINT32_MAX));
  eo.batch_interval = std::chrono::milliseconds(store.batch_window_ms);
  eo.segment_size = store.segment_size;
  eo.cache_size = store.cache_size;
  eo.settings.insert(store.options.begin(), store.options.end());
  eo.read_only = options.read_only;
  eo.background_work = options.background_work && !options.read_only;
  return eo;
}

}  // namespace

std::string StoreMarkerText(const std::string& engine) {
  const MarkerToml marker{{"engine", engine}, {"layout", kStoreMarkerLayout}};
  return toml::format(marker, /*width=*/0);  // width 0: never split over lines
}

Status CheckStoreMarker(sync::FileSystem* fs, const std::string& data_dir,
                        const std::string& engine, bool* present, bool* promises_tree) {
  *present = false;
  if (promises_tree != nullptr) *promises_tree = false;
  KVFS_RETURN_IF_ERROR(sync::CheckPrivateTree(fs, data_dir, static_cast<uint32_t>(::geteuid())));
  const std::string path = MarkerPath(data_dir);
  KVFS_ASSIGN_OR_RETURN(const bool exists, fs->Exists(path));
  if (!exists) return Status::OK();
  KVFS_ASSIGN_OR_RETURN(const std::string text, sync::ReadFileToString(fs, path));
  KVFS_ASSIGN_OR_RETURN(const std::string found, ParseStoreMarker(text, path, engine));
  if (found != engine) {
    return Status::InvalidArgument("data directory " + data_dir + " holds a " + found + " store (" +
                                   path + " says engine = " + found + "), but engine " + engine +
                                   " was asked for");
  }
  *present = true;
  // An older kvfs wrote its marker before the file tree; a TOML one is written after it.
  if (promises_tree != nullptr) *promises_tree = !IsLegacyMarker(text);
  return Status::OK();
}

Result<Store> OpenStore(const config::StoreConfig& store, const OpenStoresOptions& options) {
  sync::FileSystem* fs = options.fs != nullptr ? options.fs : sync::DefaultFileSystem();
  const std::string context = "store " + store.name + " (" + store.data_dir + ")";
  if (options.read_only && !engines::IsRemoteEngine(store.engine)) {
    auto exists = fs->IsDirectory(store.data_dir);
    if (!exists.ok() || !*exists) {
      return Status::NotFound(context + ": no data directory " + store.data_dir);
    }
  } else {
    Status made = sync::CreateDirDurably(fs, store.data_dir);
    if (!made.ok()) return made.WithContext(context + ": cannot create its data directory");
  }
  bool marker = false;
  bool promises_tree = false;
  Status checked = CheckStoreMarker(fs, store.data_dir, store.engine, &marker, &promises_tree);
  if (!checked.ok()) return checked.WithContext(context);

  auto engine =
      engines::OpenEngine(store.engine, fs, store.data_dir, EngineOptionsFor(store, options));
  if (!engine.ok()) {
    if (engine.status().IsBusy()) {
      return engine.status().WithContext(context + " is in use (is it mounted? unmount it first)");
    }
    return engine.status().WithContext(context + ": engine " + store.engine + " cannot open it");
  }
  FileStoreOptions fso;
  fso.sync_every_mutation = store.sync == config::SyncMode::kAlways;
  fso.read_only = options.read_only;
  fso.expect_tree = promises_tree;
  auto files = FileStore::Open(std::move(*engine), fso);
  if (!files.ok()) return files.status().WithContext(context);
  if (!marker && !options.read_only) {
    // Only now, with the file tree durable (FileStore::Open synced it): a marker promises a
    // tree, so a store whose tree later goes missing is refused rather than started afresh.
    // Under the engine's lock: no other kvfs writes it at the same time.
    Status written =
        sync::WriteFileAtomically(fs, MarkerPath(store.data_dir), StoreMarkerText(store.engine));
    if (!written.ok()) {
      (*files)->Close().PermitUnchecked();
      return written.WithContext(context + ": cannot write " + kStoreMarkerName);
    }
  }
  return Store{store, std::move(*files), fs};
}

Result<std::vector<Store>> OpenStores(const config::Config& config,
                                      const OpenStoresOptions& options) {
  std::vector<Store> stores;
  for (const config::StoreConfig& sc : config.stores) {
    auto store = OpenStore(sc, options);
    if (!store.ok()) {
      CloseStores(&stores).PermitUnchecked();
      return store.status();
    }
    stores.push_back(std::move(*store));
  }
  return stores;
}

Status CloseStores(std::vector<Store>* stores) {
  Status first;
  for (Store& store : *stores) {
    if (store.files == nullptr) continue;
    Status s = store.files->Close();
    if (!s.ok() && first.ok()) first = s.WithContext("store " + store.config.name);
    store.files.reset();
  }
  stores->clear();
  return first;
}

std::string DescribeStore(const config::StoreConfig& store) {
  return "store " + store.name + " (engine " + store.engine + ", sync " +
         std::string(config::SyncModeName(store.sync)) + ") in " + store.data_dir;
}

}  // namespace kvfs::fusefs
