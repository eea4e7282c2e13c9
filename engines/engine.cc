#include "engines/engine.h"

#include <algorithm>
#include <map>

#include "engines/etcd/etcd.h"

namespace kvfs::engines {

// Each engine's Open, declared in its own folder. The table is explicit (no static
// self-registration, which static libraries silently drop).
Result<std::unique_ptr<Engine>> OpenBitcask(sync::FileSystem* fs, const std::string& dir,
                                            const EngineOptions& options);
Result<std::unique_ptr<Engine>> OpenBtree(sync::FileSystem* fs, const std::string& dir,
                                          const EngineOptions& options);
Result<std::unique_ptr<Engine>> OpenEtcd(sync::FileSystem* fs, const std::string& dir,
                                         const EngineOptions& options);
Result<std::unique_ptr<Engine>> OpenEvents(sync::FileSystem* fs, const std::string& dir,
                                           const EngineOptions& options);
Result<std::unique_ptr<Engine>> OpenLsm(sync::FileSystem* fs, const std::string& dir,
                                        const EngineOptions& options);

namespace {

const std::map<std::string, EngineOpenFn, std::less<>>& Registry() {
  static const auto* registry = new std::map<std::string, EngineOpenFn, std::less<>>{
      {"bitcask", OpenBitcask}, {"btree", OpenBtree}, {"etcd", OpenEtcd},
      {"events", OpenEvents},   {"lsm", OpenLsm},
  };
  return *registry;
}

}  // namespace

Status Engine::Put(std::string_view key, std::string_view value) {
  WriteBatch b;
  b.Put(key, value);
  return Apply(b);
}

Status Engine::Delete(std::string_view key) {
  WriteBatch b;
  b.Delete(key);
  return Apply(b);
}

std::vector<std::string> AllEngineNames() {
  std::vector<std::string> names;
  for (const auto& [name, open] : Registry()) names.push_back(name);
  return names;
}

bool IsRemoteEngine(std::string_view name) { return name == "etcd"; }

std::vector<std::string> EngineNames() {
  std::vector<std::string> names;
  for (const std::string& name : AllEngineNames()) {
    if (!IsRemoteEngine(name)) names.push_back(name);
  }
  return names;
}

std::map<std::string, std::vector<std::string>, std::less<>> EngineOptionKeys() {
  return {{"etcd", etcd::OptionKeys()}};
}

bool IsAppendOnlyEngine(std::string_view name) { return name == "events"; }

std::vector<std::string> FileEngineNames() {
  std::vector<std::string> names;
  for (const std::string& name : EngineNames()) {
    if (!IsAppendOnlyEngine(name)) names.push_back(name);
  }
  return names;
}

Result<std::unique_ptr<Engine>> OpenEngine(std::string_view name, sync::FileSystem* fs,
                                           const std::string& dir, const EngineOptions& options) {
  auto it = Registry().find(name);
  if (it == Registry().end()) {
    std::string known;
    for (const std::string& n : AllEngineNames()) known += (known.empty() ? "" : ", ") + n;
    return Status::InvalidArgument("unknown engine '" + std::string(name) + "' (known: " + known +
                                   ")");
  }
  return it->second(fs, dir, options);
}

}  // namespace kvfs::engines
