// FileStore::WatchChanges: an engine's change feed (Engine::SubscribeChanges) read as changes
// of the tree, so that a daemon can drop what its kernel caches of them (file_store.h).
//
// Keys (layout.h) and what their change means:
//   "M" <parent> "\0" <name>, "R"  the node of a path: its attributes changed (and an inline
//                                   file's bytes, which live in the node); if the path now names
//                                   another node, or none, or did not exist, the entry changed
//                                   too, and the node it named before lost a link
//   "D" <id> <chunk>               bytes of file <id>: that chunk
//   "I" <id>                       the shared record of a file with several names: attributes
//                                   (and inline bytes)
//   "X" <id> <name>                an xattr of <id>: its ctime (the kernel caches no xattrs)
//   "O", "P", "N", "V"             nothing a mount shows
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "fusefs/file_store.h"
#include "fusefs/file_store_impl.h"
#include "fusefs/layout.h"

namespace kvfs::fusefs {
namespace {

using internal::Known;

// The id in `key` after its one-byte prefix ("D", "I", "X"), or 0.
uint64_t IdAfterPrefix(std::string_view key) {
  if (key.size() < 9) return 0;
  auto id = DecodeU64(key.substr(1, 8), key);
  return id.ok() ? *id : 0;
}

// A node record's id and whether its file's bytes live in it (an inline file's), or id 0.
struct NodeFacts {
  uint64_t id = 0;
  bool holds_data = false;
};
NodeFacts FactsOf(std::string_view value, std::string_view key) {
  auto n = DecodeNode(value, key);
  if (!n.ok()) return {};
  return {n->id, n->type == NodeType::kFile && n->data_inline && !n->linked};
}

// Every change of one set, as names (by parent path) and nodes; fills the table's moves.
struct Pending {
  std::vector<std::pair<std::string, std::string>> names;  // (parent path, name)
  std::vector<TreeChanges::Data> nodes;
  std::map<std::string, uint64_t> path_ids;         // paths whose id the set itself tells
  std::unordered_map<uint64_t, std::string> moved;  // id -> the path it is at now
};

void Translate(const engines::KeyChange& c, Pending* p) {
  const std::string_view key = c.key;
  if (key.empty()) return;
  switch (key[0]) {
    case 'M':
    case 'R': {
      auto path = PathOfNodeKey(key);
      if (!path.ok()) return;
      NodeFacts now;
      NodeFacts before;
      if (!c.deleted) now = FactsOf(c.value, key);
      if (c.previous.has_value()) before = FactsOf(*c.previous, key);
      if (now.id != 0) {
        p->nodes.push_back({now.id, now.holds_data ? 0 : -1, 0});
        p->path_ids[*path] = now.id;
        p->moved[now.id] = *path;
      } else if (before.id != 0) {
        p->path_ids.emplace(*path, before.id);
      }
      if (before.id != 0 && before.id != now.id) p->nodes.push_back({before.id, -1, 0});
      // The same node at the same name: only its attributes (or inline bytes) changed.
      const bool same_entry = now.id != 0 && c.previous.has_value() && before.id == now.id;
      if (!path->empty() && !same_entry) {
        p->names.emplace_back(std::string(ParentOf(*path)), std::string(NameOf(*path)));
      }
      return;
    }
    case 'D': {
      const uint64_t id = IdAfterPrefix(key);
      if (id == 0 || key.size() != 17) return;
      auto chunk = DecodeU64(key.substr(9, 8), key);
      if (!chunk.ok()) return;
      p->nodes.push_back(
          {id, static_cast<int64_t>(*chunk * kChunkSize), static_cast<int64_t>(kChunkSize)});
      return;
    }
    case 'I': {
      const uint64_t id = IdAfterPrefix(key);
      if (id == 0) return;
      const bool holds_data = !c.deleted && FactsOf(c.value, key).holds_data;
      p->nodes.push_back({id, holds_data ? 0 : -1, 0});
      return;
    }
    case 'X': {
      const uint64_t id = IdAfterPrefix(key);
      if (id != 0) p->nodes.push_back({id, -1, 0});
      return;
    }
    default:
      return;
  }
}

}  // namespace

Status FileStore::WatchChanges(std::function<void(const TreeChanges&)> fn) {
  Impl* s = impl_.get();
  std::shared_ptr<Impl::WatchGate> gate = s->watch_gate;
  return s->engine->SubscribeChanges([s, gate, fn = std::move(fn)](const engines::ChangeSet& set) {
    std::lock_guard<std::mutex> open(gate->mu);
    if (!gate->open) return;
    TreeChanges out;
    out.revision = set.revision;
    if (set.everything) {
      out.everything = true;
      std::map<std::string, uint64_t> ids{{"", kRootId}};
      std::vector<std::pair<uint64_t, std::string>> paths;
      {
        MutexLock lock(&s->table_mu);
        for (const auto& [id, k] : s->known) {
          out.nodes.push_back({id, 0, 0});
          if (k.orphan) continue;
          ids[k.path] = id;
          paths.emplace_back(id, k.path);
        }
      }
      out.nodes.push_back({kRootId, 0, 0});
      for (const auto& [id, path] : paths) {
        auto parent = ids.find(std::string(ParentOf(path)));
        if (parent != ids.end()) out.names.push_back({parent->second, std::string(NameOf(path))});
      }
      fn(out);
      return;
    }
    Pending p;
    for (const engines::KeyChange& c : set.changes) Translate(c, &p);
    // Parents' ids: the root, those the set names (a create or removal changes its parent's
    // times, so its node is usually in the same set), then the id table (the kernel holds the
    // parent of every entry it caches, so the table knows it, unless nothing of it is cached).
    std::set<std::string> wanted;
    for (const auto& [parent, name] : p.names) {
      if (!parent.empty() && !p.path_ids.contains(parent)) wanted.insert(parent);
    }
    std::map<std::string, uint64_t> found;
    {
      MutexLock lock(&s->table_mu);
      // In a read-only store (a follower), another process moved these nodes: the table
      // follows, so a node the kernel holds is still found by its id (Load reads it by the path
      // the table says). A writable store is the only writer (the engine fences any other
      // off): its own operations keep its table, and a change of its own coming back late
      // (a, then b, then c: "b" arriving after c) must not move it back.
      for (const auto& [id, path] : p.moved) {
        if (!s->options.read_only) break;
        auto it = s->known.find(id);
        if (it != s->known.end() && !it->second.orphan) it->second.path = path;
      }
      if (!wanted.empty()) {
        for (const auto& [id, k] : s->known) {
          if (!k.orphan && wanted.contains(k.path)) found[k.path] = id;
        }
      }
    }
    for (auto& [parent, name] : p.names) {
      uint64_t id = 0;
      if (parent.empty()) {
        id = kRootId;
      } else if (auto it = p.path_ids.find(parent); it != p.path_ids.end()) {
        id = it->second;
      } else if (auto f = found.find(parent); f != found.end()) {
        id = f->second;
      }
      if (id != 0) out.names.push_back({id, std::move(name)});
    }
    out.nodes = std::move(p.nodes);
    if (out.names.empty() && out.nodes.empty()) return;
    fn(out);
  });
}

}  // namespace kvfs::fusefs
