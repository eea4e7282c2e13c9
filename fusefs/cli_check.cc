// kvfs check: verify unmounted stores; kvfs check --salvage: the operator's way out of damage.
//
// check opens each store read-only (nothing is written, not even the removal of a torn tail),
// prints what the open recovered (the log's records, a torn tail dropped and where, the
// engine's own files), reads every key and value through the engine (every checksum), then
// walks the file tree as the mount shows it. Exit status:
//   0  every store is sound;
//   1  a store is damaged (the message names the file and the offset) or cannot be opened;
//   3  a store is sound but its open dropped a torn log tail, and its sync mode (batch, none)
//      acknowledges writes before they are durable: writes in that tail may have been
//      acknowledged (never as durable) and are gone. In mode always nothing in a torn tail was
//      ever acknowledged, so that is 0.
//
// --salvage, never taken automatically: for each store the check finds damaged, the records
// that verify are copied into a new store of the same engine, which replaces the damaged one;
// the damaged directory is kept beside it, renamed, byte for byte. Every damaged stretch of the
// log that was skipped is printed (file, offset, bytes, the LSNs of the records lost). The
// salvaged state is what the surviving records make: a batch in a skipped stretch is lost whole,
// later batches are kept. Damage outside the log (a table, a merged file) is not salvaged.
#include <algorithm>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "engines/engine.h"
#include "engines/events/events.h"
#include "fusefs/cli.h"
#include "fusefs/event_view.h"
#include "fusefs/file_store.h"
#include "fusefs/layout.h"
#include "fusefs/progress.h"
#include "fusefs/stores.h"
#include "sync/durable.h"
#include "sync/file_system.h"

namespace kvfs::cli {
namespace {

using fusefs::FileStore;
using fusefs::NodeType;

constexpr int kExitDamaged = 1;
constexpr int kExitTornTail = 3;

enum class Verdict { kSound, kTornTail, kDamaged };

int Fail(const std::string& msg) {
  std::fprintf(stderr, "kvfs: %s\n", msg.c_str());
  return kExitDamaged;
}

struct TreeCounts {
  uint64_t files = 0, dirs = 0, symlinks = 0, specials = 0, bytes = 0, damaged = 0;
  // Every file but a directory, by id: the names found for it, its link count, one name.
  struct Names {
    uint64_t found = 0;
    uint64_t nlink = 0;
    std::string path;
  };
  std::map<uint64_t, Names> names;
  std::set<uint64_t> ids;  // every file and directory found, the root included
};

void Damage(TreeCounts* c, fusefs::ProgressLine* progress, const std::string& store,
            const std::string& path, const Status& s) {
  ++c->damaged;
  progress->Clear();
  std::fprintf(stderr, "kvfs: store %s: damaged: /%s: %s\n", store.c_str(), path.c_str(),
               s.ToString().c_str());
}

// A file's node counts the chunks it holds (st_blocks): the count must be the chunk keys there
// are, none past its size. An inline file holds none and counts as one block. Keys at or past a
// pending truncate's first chunk (its purge record, kind T) are garbage the reclaimer deletes,
// not the file's.
void CheckChunkCount(FileStore* files, const std::string& store, const std::string& path,
                     const fusefs::Attr& attr, TreeCounts* c, fusefs::ProgressLine* progress) {
  uint64_t garbage = UINT64_MAX;
  const std::string record_key = fusefs::PurgeKey(attr.id);
  auto record = files->engine()->Get(record_key);
  if (record.ok()) {
    auto r = fusefs::DecodePurgeRecord(*record, record_key);
    if (!r.ok()) return Damage(c, progress, store, path, r.status());
    if (r->truncate) garbage = r->first;
  } else if (!record.status().IsNotFound()) {
    return Damage(c, progress, store, path, record.status());
  }
  uint64_t keys = 0, past_size = 0;
  Status bad;
  engines::ScanOptions so;
  so.prefix = fusefs::ChunkPrefix(attr.id);
  so.keys_only = true;
  Status s = files->engine()->Scan(so, [&](std::string_view key, std::string_view) {
    auto chunk = fusefs::DecodeU64(key.substr(so.prefix.size()), key);
    if (!chunk.ok()) {
      bad = chunk.status();
      return false;
    }
    if (*chunk >= garbage) return false;
    ++keys;
    if (*chunk * fusefs::kChunkSize >= attr.size) ++past_size;
    return true;
  });
  if (s.ok()) s = bad;
  if (!s.ok()) return Damage(c, progress, store, path, s);
  if (past_size > 0) {
    Damage(c, progress, store, path,
           Status::Corruption(std::to_string(past_size) + " chunk keys past its size (" +
                              std::to_string(attr.size) + " bytes) that no purge record holds"));
  }
  constexpr uint64_t kSectors = fusefs::kChunkSize / 512;
  const bool inline_data =
      keys == 0 && attr.size > 0 && attr.size <= fusefs::kInlineMax && attr.blocks == kSectors;
  if (inline_data || attr.blocks == keys * kSectors) return;
  Damage(c, progress, store, path,
         Status::Corruption("its node counts " + std::to_string(attr.blocks / kSectors) +
                            " chunks, but it holds " + std::to_string(keys)));
}

// A node counts its xattrs (count, names' bytes, values' bytes, layout.h): the counts must be
// what its "X" keys hold. Also notes the id as found, for CheckStrayKeys.
void CheckXattrs(FileStore* files, const std::string& store, const std::string& path, uint64_t id,
                 TreeCounts* c, fusefs::ProgressLine* progress) {
  c->ids.insert(id);
  auto usage = files->XattrUsageOf(id);
  if (!usage.ok()) return Damage(c, progress, store, path, usage.status());
  if (usage->inline_set) return;  // a layout-1 or -2 store: the set is in the node itself
  fusefs::XattrUsage keys;
  engines::ScanOptions so;
  so.prefix = fusefs::XattrPrefix(id);
  Status s = files->engine()->Scan(so, [&](std::string_view key, std::string_view value) {
    ++keys.count;
    keys.name_bytes += static_cast<uint32_t>(key.size() - so.prefix.size());
    keys.value_bytes += value.size();
    return true;
  });
  if (!s.ok()) return Damage(c, progress, store, path, s);
  if (keys.count == usage->count && keys.name_bytes == usage->name_bytes &&
      keys.value_bytes == usage->value_bytes) {
    return;
  }
  auto text = [](const fusefs::XattrUsage& u) {
    return std::to_string(u.count) + " (names " + std::to_string(u.name_bytes) + " bytes, values " +
           std::to_string(u.value_bytes) + " bytes)";
  };
  Damage(c, progress, store, path,
         Status::Corruption("its node counts " + text(*usage) + " xattrs, but its keys hold " +
                            text(keys)));
}

// Every xattr key and chunk key must belong to a file the walk found, to an orphan (a file
// unlinked while open, whose keys the next writable open hands to the reclaimer), or to a file
// with a purge record (removed; the reclaimer deletes its keys in the background). A purge
// record must name an id a file may have had (from kFirstFreeId, below the id mark), and a
// removal's record no file the walk found (the reclaimer would delete its data and xattrs).
void CheckStrayKeys(engines::Engine* engine, const std::string& store, TreeCounts* c,
                    fusefs::ProgressLine* progress) {
  std::set<uint64_t> held;  // ids with an orphan or a purge record
  uint64_t id_mark = 0;
  if (auto mark = engine->Get(fusefs::kIdMarkKey); mark.ok()) {
    auto v = fusefs::DecodeU64(*mark, fusefs::kIdMarkKey);
    if (!v.ok()) return Damage(c, progress, store, "", v.status());
    id_mark = *v;
  } else {
    return Damage(c, progress, store, "", mark.status());
  }
  engines::ScanOptions so;
  for (const std::string_view prefix : {fusefs::kOrphanPrefix, fusefs::kPurgePrefix}) {
    so.prefix = std::string(prefix);
    Status s = engine->Scan(so, [&](std::string_view key, std::string_view value) {
      auto id =
          prefix == fusefs::kOrphanPrefix ? fusefs::IdOfOrphanKey(key) : fusefs::IdOfPurgeKey(key);
      if (!id.ok()) {
        Damage(c, progress, store, "", id.status());
        return true;
      }
      held.insert(*id);
      if (prefix != fusefs::kPurgePrefix) return true;
      auto record = fusefs::DecodePurgeRecord(value, key);
      const std::string what = "purge record " + fusefs::EscapeKey(key) + " ";
      if (!record.ok()) {
        Damage(c, progress, store, "", record.status());
      } else if (*id < fusefs::kFirstFreeId || *id >= id_mark) {
        Damage(c, progress, store, "",
               Status::Corruption(
                   what + "names file " + std::to_string(*id) +
                   ", which no file ever was (ids in use: " + std::to_string(fusefs::kFirstFreeId) +
                   " to below " + std::to_string(id_mark) + ")"));
      } else if (!record->truncate && c->ids.count(*id) > 0) {
        Damage(c, progress, store, "",
               Status::Corruption(what + "says file " + std::to_string(*id) +
                                  " was removed, but it has a name: the reclaimer would delete "
                                  "its data and xattrs"));
      }
      return true;
    });
    if (!s.ok()) return Damage(c, progress, store, "", s);
  }
  // Nodes an exchange parked ("Y" <rest>) exist only while its move record does, and the walk
  // runs only when there is none.
  uint64_t staged = 0;
  so.prefix = std::string(fusefs::kStagingBase);
  Status st = engine->Scan(so, [&](std::string_view key, std::string_view) {
    staged += key != fusefs::kMoveKey ? 1 : 0;
    return true;
  });
  if (!st.ok()) return Damage(c, progress, store, "", st);
  if (staged > 0) {
    Damage(c, progress, store, "",
           Status::Corruption(std::to_string(staged) +
                              " nodes parked by a directory exchange (keys Y...), but no move "
                              "record (key Y) says where they belong"));
  }
  so.keys_only = true;
  for (const std::string_view prefix : {fusefs::kXattrPrefix, std::string_view("D")}) {
    std::map<uint64_t, uint64_t> stray;  // id -> keys
    so.prefix = std::string(prefix);
    Status s = engine->Scan(so, [&](std::string_view key, std::string_view) {
      auto id = prefix == fusefs::kXattrPrefix
                    ? fusefs::IdOfXattrKey(key)
                    : (key.size() == 17 ? fusefs::DecodeU64(key.substr(1, 8), key)
                                        : Result<uint64_t>(Status::Corruption(
                                              "malformed chunk key " + fusefs::EscapeKey(key))));
      if (!id.ok()) {
        Damage(c, progress, store, "", id.status());
      } else if (c->ids.count(*id) == 0 && held.count(*id) == 0) {
        ++stray[*id];
      }
      return true;
    });
    if (!s.ok()) return Damage(c, progress, store, "", s);
    const char* what = prefix == fusefs::kXattrPrefix ? " xattr keys" : " chunk keys";
    for (const auto& [id, n] : stray) {
      Damage(c, progress, store, "",
             Status::Corruption(std::to_string(n) + what + " of file " + std::to_string(id) +
                                ", which no name, no orphan record and no purge record holds"));
    }
  }
}

// Walks the tree under `path` as the mount would: list each directory, read every file
// fully, read every link.
void Walk(FileStore* files, const std::string& store, const std::string& path, uint64_t id,
          TreeCounts* c, fusefs::ProgressLine* progress) {
  std::vector<fusefs::DirEntry> entries;
  Status s = files->ReadDir(id, "", false, [&](const fusefs::DirEntry& e) {
    entries.push_back(e);
    return true;
  });
  if (!s.ok()) return Damage(c, progress, store, path, s);
  // A directory's link count is 2 plus its subdirectories, kept by every mutation.
  const auto subdirs = std::count_if(entries.begin(), entries.end(), [](const auto& e) {
    return e.attr.type == NodeType::kDirectory;
  });
  auto self = files->GetAttr(id);
  if (!self.ok()) return Damage(c, progress, store, path, self.status());
  if (self->nlink != 2 + static_cast<uint64_t>(subdirs)) {
    Damage(c, progress, store, path,
           Status::Corruption("directory link count " + std::to_string(self->nlink) + ", but " +
                              std::to_string(subdirs) + " subdirectories (expected " +
                              std::to_string(2 + subdirs) + ")"));
  }
  for (const fusefs::DirEntry& e : entries) {
    const std::string p = fusefs::JoinPath(path, e.name);
    auto attr = files->Resolve(p);
    if (!attr.ok()) {
      Damage(c, progress, store, p, attr.status());
      continue;
    }
    if (attr->type != NodeType::kDirectory) {
      TreeCounts::Names& n = c->names[attr->id];
      if (n.found++ > 0) continue;  // another name of a file already read
      n.nlink = attr->nlink;
      n.path = p;
    }
    CheckXattrs(files, store, p, attr->id, c, progress);
    switch (attr->type) {
      case NodeType::kDirectory:
        ++c->dirs;
        Walk(files, store, p, attr->id, c, progress);
        break;
      case NodeType::kFifo:
      case NodeType::kCharDevice:
      case NodeType::kBlockDevice:
      case NodeType::kSocket:
        ++c->specials;
        break;
      case NodeType::kSymlink: {
        ++c->symlinks;
        auto t = files->ReadLink(attr->id);
        if (!t.ok()) Damage(c, progress, store, p, t.status());
        break;
      }
      case NodeType::kFile: {
        ++c->files;
        for (uint64_t off = 0; off < attr->size;) {
          auto data = files->Read(attr->id, off, 1 << 20);
          if (!data.ok()) {
            Damage(c, progress, store, p + " at offset " + std::to_string(off), data.status());
            break;
          }
          if (data->empty()) {
            Damage(c, progress, store, p,
                   Status::Corruption("ends at " + std::to_string(off) + ", before its size " +
                                      std::to_string(attr->size)));
            break;
          }
          off += data->size();
          c->bytes += data->size();
          progress->Add(0, data->size());
        }
        progress->Add(1, 0);
        CheckChunkCount(files, store, p, *attr, c, progress);
        break;
      }
    }
  }
}

// Every file's link count against the names the walk found for it, and every shared record
// (hard links, layout.h) against the names pointing to it: one without a name is damage too.
void CheckLinkCounts(engines::Engine* engine, const std::string& store, TreeCounts* c,
                     fusefs::ProgressLine* progress) {
  for (const auto& [id, n] : c->names) {
    if (n.found == n.nlink) continue;
    Damage(
        c, progress, store, n.path,
        Status::Corruption("link count " + std::to_string(n.nlink) + ", but " +
                           std::to_string(n.found) + " names point to file " + std::to_string(id)));
  }
  engines::ScanOptions so;
  so.prefix = std::string(fusefs::kSharedPrefix);
  so.keys_only = true;
  std::vector<std::string> unnamed;
  Status s = engine->Scan(so, [&](std::string_view key, std::string_view) {
    auto id = fusefs::DecodeU64(key.substr(1), key);
    if (!id.ok() || c->names.count(*id) == 0) unnamed.emplace_back(key);
    return true;
  });
  if (!s.ok()) return Damage(c, progress, store, "", s);
  for (const std::string& key : unnamed) {
    Damage(c, progress, store, "",
           Status::Corruption("shared record " + fusefs::EscapeKey(key) + " has no name"));
  }
}

engines::EngineOptions ReadOnly(const config::StoreConfig& sc, bool salvage) {
  engines::EngineOptions o;
  o.settings.insert(sc.options.begin(), sc.options.end());  // a remote engine's endpoints
  o.read_only = true;
  o.salvage = salvage;
  o.background_work = false;
  return o;
}

// What the open recovered, one line; a torn tail it dropped on stderr as a finding.
Verdict ReportRecovery(const config::StoreConfig& sc, const engines::RecoveryReport& r) {
  std::printf("%s: opened: %s\n", sc.data_dir.c_str(), r.Summary().c_str());
  if (!r.dropped_bytes()) return Verdict::kSound;
  const bool acknowledged = sc.sync != config::SyncMode::kAlways;
  const std::string meaning =
      acknowledged ? "with sync mode " + std::string(config::SyncModeName(sc.sync)) +
                         ", writes in it may have been acknowledged (never as durable)"
                   : "with sync mode always, none of it was ever acknowledged";
  std::fprintf(stderr, "kvfs: store %s: the log's torn tail was dropped: %llu bytes at %s: %s\n",
               sc.name.c_str(), static_cast<unsigned long long>(r.log.dropped_bytes),
               r.log.dropped_reason.c_str(), meaning.c_str());
  return acknowledged ? Verdict::kTornTail : Verdict::kSound;
}

// Checks one store: every key and value through the engine (checksums), then, if it holds a
// kvfs file tree, the tree as the mount shows it. On a terminal, each phase shows its progress
// on stderr (progress.h); the line is cleared before anything else is printed.
Verdict CheckStore(const config::StoreConfig& sc) {
  fusefs::ProgressLine progress = fusefs::ProgressLine::ForStderr();
  bool marker = false;
  bool promises_tree = false;
  Status m = fusefs::CheckStoreMarker(sync::DefaultFileSystem(), sc.data_dir, sc.engine, &marker,
                                      &promises_tree);
  if (!m.ok()) {
    std::fprintf(stderr, "kvfs: store %s: %s\n", sc.name.c_str(), m.ToString().c_str());
    return Verdict::kDamaged;
  }
  auto engine =
      engines::OpenEngine(sc.engine, sync::DefaultFileSystem(), sc.data_dir, ReadOnly(sc, false));
  if (!engine.ok()) {
    std::fprintf(stderr, "kvfs: %s store %s cannot be opened: %s\n", sc.engine.c_str(),
                 sc.data_dir.c_str(), engine.status().ToString().c_str());
    return Verdict::kDamaged;
  }
  const Verdict recovered = ReportRecovery(sc, (*engine)->recovery());
  uint64_t keys = 0;
  uint64_t bytes = 0;
  // The data directory's size: what the scan reads, about (the log's unused tail included).
  progress.Start(sc.name, "keys", progress.enabled() ? fusefs::DirectoryBytes(sc.data_dir) : 0);
  const Status scanned = (*engine)->Scan({}, [&](std::string_view key, std::string_view value) {
    ++keys;
    bytes += key.size() + value.size();
    progress.Add(1, key.size() + value.size());
    return true;
  });
  progress.Clear();
  // What the scan does not read: the B-tree's every page, its links and its free list.
  const Status s = scanned.ok() ? (*engine)->Verify() : scanned;
  if (!s.ok()) {
    std::fprintf(stderr, "kvfs: %s store %s is damaged: %s\n", sc.engine.c_str(),
                 sc.data_dir.c_str(), s.ToString().c_str());
    (*engine)->Close().PermitUnchecked();
    return Verdict::kDamaged;
  }
  std::printf(
      "%s: %s store OK: %llu keys, %llu bytes of keys and values, every checksum verified\n",
      sc.data_dir.c_str(), sc.engine.c_str(), static_cast<unsigned long long>(keys),
      static_cast<unsigned long long>(bytes));
  auto version = (*engine)->Get(fusefs::kVersionKey);
  if (!version.ok() && !promises_tree) {
    // No kvfs file tree in it (a bare engine store): the key check is all there is.
    return (*engine)->Close().ok() ? recovered : Verdict::kDamaged;
  }
  // A directory rename a crash cut short (its move record, layout.h): the tree is half-moved in
  // the engine until the next writable open finishes it, so it is not walked (it would show
  // the half-moved tree's parts as damage). The keys were verified above.
  auto pending = (*engine)->Get(fusefs::kMoveKey);
  if (pending.ok()) {
    auto move = fusefs::DecodeMove(*pending);
    if (!move.ok()) {
      std::fprintf(stderr, "kvfs: store %s (%s): its file tree is damaged: %s\n", sc.name.c_str(),
                   sc.data_dir.c_str(), move.status().ToString().c_str());
      (*engine)->Close().PermitUnchecked();
      return Verdict::kDamaged;
    }
    std::printf("%s: file tree not walked: %s\n", sc.data_dir.c_str(),
                fusefs::PendingMoveStatus(*move).message().c_str());
    return (*engine)->Close().ok() ? recovered : Verdict::kDamaged;
  }
  fusefs::FileStoreOptions fo;
  fo.read_only = true;
  fo.expect_tree = promises_tree;  // a marked store without its tree lost its data files
  auto files = FileStore::Open(std::move(*engine), fo);
  if (!files.ok()) {
    std::fprintf(stderr, "kvfs: store %s (%s): its file tree is damaged: %s\n", sc.name.c_str(),
                 sc.data_dir.c_str(), files.status().ToString().c_str());
    return Verdict::kDamaged;
  }
  TreeCounts c;
  // The keys' and values' bytes: more than the files' bytes, which are among them.
  progress.Start(sc.name, "files", bytes);
  CheckXattrs(files->get(), sc.name, "", fusefs::kRootId, &c, &progress);
  Walk(files->get(), sc.name, "", fusefs::kRootId, &c, &progress);
  progress.Clear();
  CheckLinkCounts((*files)->engine(), sc.name, &c, &progress);
  CheckStrayKeys((*files)->engine(), sc.name, &c, &progress);
  const bool closed = (*files)->Close().ok();
  if (c.damaged > 0) {
    std::fprintf(stderr, "kvfs: store %s (%s): %llu damaged entries\n", sc.name.c_str(),
                 sc.data_dir.c_str(), static_cast<unsigned long long>(c.damaged));
    return Verdict::kDamaged;
  }
  std::printf(
      "%s: file tree OK: %llu files (%llu bytes read back), %llu directories, %llu "
      "symlinks, %llu special files\n",
      sc.data_dir.c_str(), static_cast<unsigned long long>(c.files),
      static_cast<unsigned long long>(c.bytes), static_cast<unsigned long long>(c.dirs),
      static_cast<unsigned long long>(c.symlinks), static_cast<unsigned long long>(c.specials));
  return closed ? recovered : Verdict::kDamaged;
}

std::string UtcStamp() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

// An events store's streams (engines/events/events.h), which its Engine-interface keys do not
// hold: each stream's events in order, up to the first that does not verify (what follows it
// is left out and said so). Payloads and order are kept; the copies get new timestamps.
Status CopyStreams(engines::Engine* from, engines::Engine* into, const std::string& dir) {
  engines::EventStore* src = engines::AsEventStore(from);
  engines::EventStore* dst = engines::AsEventStore(into);
  if (src == nullptr || dst == nullptr) return Status::OK();
  std::vector<engines::StreamInfo> streams;
  KVFS_RETURN_IF_ERROR(src->ListStreams([&](const engines::StreamInfo& s) {
    streams.push_back(s);
    return true;
  }));
  for (const engines::StreamInfo& s : streams) {
    for (uint64_t n = 0; n < s.events; ++n) {
      Result<std::string> ev = src->ReadEvent(s.name, n);
      if (!ev.ok()) {
        std::printf("%s: salvage keeps the first %llu of %llu events of a stream: %s\n",
                    dir.c_str(), static_cast<unsigned long long>(n),
                    static_cast<unsigned long long>(s.events), ev.status().ToString().c_str());
        break;
      }
      KVFS_RETURN_IF_ERROR(dst->Append(s.name, *ev, {}).status());
    }
  }
  return Status::OK();
}

// A file of a file-tree events store is as long as its stream: an append puts the event and
// the node's new size in one log record. When a salvage skips a damaged record, the stream is
// kept up to its break (CopyStreams) but the later records' nodes say more, so reads would end
// before the size: each such file's size becomes what its stream holds, and the salvage says
// so. A node that does not decode is left as it is, for the check after the salvage to report.
Status FitFileSizesToStreams(engines::Engine* into, const std::string& dir) {
  engines::EventStore* es = engines::AsEventStore(into);
  if (es == nullptr) return Status::OK();
  std::map<std::string, uint64_t> held;  // stream -> its bytes
  KVFS_RETURN_IF_ERROR(es->ListStreams([&](const engines::StreamInfo& s) {
    held[s.name] = s.bytes;
    return true;
  }));
  engines::WriteBatch fixes;
  for (const std::string_view prefix :
       {std::string_view("M"), fusefs::kSharedPrefix, fusefs::kOrphanPrefix}) {
    engines::ScanOptions so;
    so.prefix = std::string(prefix);
    KVFS_RETURN_IF_ERROR(into->Scan(so, [&](std::string_view key, std::string_view value) {
      Result<fusefs::Node> node = fusefs::DecodeNode(value, key);
      if (!node.ok() || node->linked || node->type != NodeType::kFile) return true;
      const auto it = held.find(fusefs::StreamOfFile(node->id));
      const uint64_t bytes = it == held.end() ? 0 : it->second;
      if (node->size == bytes) return true;
      std::printf(
          "%s: salvage sets the size of file %llu (%s) to its stream's %llu bytes (its "
          "node said %llu)\n",
          dir.c_str(), static_cast<unsigned long long>(node->id), fusefs::EscapeKey(key).c_str(),
          static_cast<unsigned long long>(bytes), static_cast<unsigned long long>(node->size));
      node->size = bytes;
      fixes.Put(key, prefix == fusefs::kSharedPrefix ? fusefs::EncodeShared(*node)
                                                     : fusefs::EncodeNode(*node));
      return true;
    }));
  }
  return fixes.empty() ? Status::OK() : into->Apply(fixes);
}

// Copies every key and value of `from` that verifies into a new store of the same engine in
// `to` (which must not exist), durably. Returns the number of keys. The copy gets a store
// marker if `marked` (the damaged store had one) and it holds a file tree: a marker promises
// one (stores.h).
Result<uint64_t> CopyStore(engines::Engine* from, const config::StoreConfig& sc,
                           const std::string& to, bool marked) {
  sync::FileSystem* fs = sync::DefaultFileSystem();
  KVFS_ASSIGN_OR_RETURN(bool exists, fs->Exists(to));
  if (exists) {
    return Status::AlreadyExists(to + " exists (left by an earlier salvage?): move it away first");
  }
  KVFS_RETURN_IF_ERROR(sync::CreateDirDurably(fs, to));
  engines::EngineOptions o;
  o.sync_mode = sync::SyncMode::kNone;  // one sync at the end
  o.background_work = false;
  KVFS_ASSIGN_OR_RETURN(auto into, engines::OpenEngine(sc.engine, fs, to, o));
  uint64_t keys = 0;
  bool tree = false;
  engines::WriteBatch batch;
  size_t batch_bytes = 0;
  Status written;
  Status scanned = from->Scan({}, [&](std::string_view key, std::string_view value) {
    batch.Put(key, value);
    tree = tree || key == fusefs::kVersionKey;
    batch_bytes += key.size() + value.size();
    ++keys;
    if (batch_bytes >= (size_t{8} << 20)) {
      written = into->Apply(batch);
      batch.Clear();
      batch_bytes = 0;
    }
    return written.ok();
  });
  if (written.ok() && !batch.empty()) written = into->Apply(batch);
  KVFS_RETURN_IF_ERROR(scanned);
  KVFS_RETURN_IF_ERROR(written);
  KVFS_RETURN_IF_ERROR(CopyStreams(from, into.get(), sc.data_dir));
  KVFS_RETURN_IF_ERROR(FitFileSizesToStreams(into.get(), sc.data_dir));
  KVFS_RETURN_IF_ERROR(into->Sync(engines::SyncKind::kFull));
  KVFS_RETURN_IF_ERROR(into->Close());
  if (marked && tree) {
    KVFS_RETURN_IF_ERROR(sync::WriteFileAtomically(fs, sync::JoinPath(to, fusefs::kStoreMarkerName),
                                                   fusefs::StoreMarkerText(sc.engine)));
  }
  return keys;
}

// Salvages one damaged store (see the top of this file). Returns the exit code for it.
int SalvageStore(const config::StoreConfig& sc) {
  sync::FileSystem* fs = sync::DefaultFileSystem();
  auto damaged = engines::OpenEngine(sc.engine, fs, sc.data_dir, ReadOnly(sc, /*salvage=*/true));
  if (!damaged.ok()) {
    return Fail("store " + sc.name + ": cannot be salvaged (only damage in the log can be): " +
                damaged.status().ToString());
  }
  const engines::RecoveryReport& r = (*damaged)->recovery();
  uint64_t lost = 0;
  for (const sync::WalDamage& d : r.log.damage) {
    std::printf("%s: salvage drops %llu bytes at %s", sc.data_dir.c_str(),
                static_cast<unsigned long long>(d.bytes), d.reason.c_str());
    if (d.next_lsn > d.first_missing_lsn && d.first_missing_lsn > 0) {
      std::printf(" (records of LSN %llu to %llu)",
                  static_cast<unsigned long long>(d.first_missing_lsn),
                  static_cast<unsigned long long>(d.next_lsn - 1));
      lost += d.next_lsn - d.first_missing_lsn;
    } else if (d.first_missing_lsn > 0) {
      std::printf(" (records from LSN %llu on)",
                  static_cast<unsigned long long>(d.first_missing_lsn));
    }
    std::printf("\n");
  }
  for (const std::string& w : r.warnings) std::printf("%s: %s\n", sc.data_dir.c_str(), w.c_str());
  if (r.dropped_bytes()) {
    std::printf("%s: salvage drops the torn tail: %llu bytes at %s\n", sc.data_dir.c_str(),
                static_cast<unsigned long long>(r.log.dropped_bytes), r.log.dropped_reason.c_str());
  }
  const std::string fresh = sc.data_dir + ".salvaging";
  const std::string aside = sc.data_dir + ".damaged-" + UtcStamp();
  Result<bool> marked = fs->Exists(sync::JoinPath(sc.data_dir, fusefs::kStoreMarkerName));
  if (!marked.ok()) return Fail("store " + sc.name + ": " + marked.status().ToString());
  Result<uint64_t> keys = CopyStore(damaged->get(), sc, fresh, *marked);
  (*damaged)->Close().PermitUnchecked();
  if (!keys.ok()) {
    return Fail("store " + sc.name + ": salvage failed, " + sc.data_dir +
                " is untouched: " + keys.status().ToString());
  }
  // The damaged directory aside, byte for byte, then the salvaged one in its place; the
  // parent's fsync makes both renames durable. A crash between them leaves both, named.
  std::string parent = std::filesystem::path(sc.data_dir).parent_path().string();
  if (parent.empty()) parent = ".";
  Status moved = fs->Rename(sc.data_dir, aside);
  if (moved.ok()) moved = fs->Rename(fresh, sc.data_dir);
  if (moved.ok()) moved = sync::SyncDir(fs, parent);
  if (!moved.ok()) {
    return Fail("store " + sc.name + ": salvaged into " + fresh +
                " but could not put it in place: " + moved.ToString());
  }
  const std::string lost_text = lost > 0 ? ", " + std::to_string(lost) + " log records lost" : "";
  std::printf("%s: salvaged: %llu keys kept%s; the damaged store is kept in %s\n",
              sc.data_dir.c_str(), static_cast<unsigned long long>(*keys), lost_text.c_str(),
              aside.c_str());
  return 0;
}

int Check(StoreFlags flags, const std::string& dir, bool salvage) {
  if (!dir.empty()) {
    // The historical form: kvfs check --engine NAME DIR.
    if (flags.engine.empty()) return Fail("check DIR needs --engine NAME");
    if (!flags.data.empty() || !flags.config.empty()) {
      return Fail("check DIR excludes --data and --config");
    }
    flags.data = dir;
  }
  auto sel = SelectStores(flags);
  if (!sel.ok()) return Fail(sel.status().message());
  int code = 0;
  for (const config::StoreConfig& sc : sel->config.stores) {
    Verdict v = CheckStore(sc);
    if (v == Verdict::kDamaged && salvage) {
      const int salvaged = SalvageStore(sc);
      if (salvaged == 0) v = CheckStore(sc);  // the salvaged store, checked as any other
    }
    if (v == Verdict::kDamaged) code = kExitDamaged;
    if (v == Verdict::kTornTail && code == 0) code = kExitTornTail;
  }
  return code;
}

}  // namespace

void AddCheckCommand(CLI::App* app, std::vector<Command>* commands) {
  struct CheckState {
    StoreFlags flags;
    std::string dir;
    bool salvage = false;
  };
  auto st = std::make_shared<CheckState>();
  CLI::App* cmd = app->add_subcommand(
      "check",
      "Verify unmounted stores: what the open recovered, every key and value (checksums), then "
      "every directory, file and link; damage named by file and offset. Exit 0: sound; 1: "
      "damaged; 3: a torn log tail was dropped that may have held acknowledged writes");
  AddStoreFlags(cmd, &st->flags, /*with_sync=*/true);
  cmd->add_option("DIR", st->dir, "With --engine: check the store in DIR (as --data DIR)");
  cmd->add_flag("--salvage", st->salvage,
                "For a damaged store: keep every log record that verifies in a new store that "
                "replaces it, keep the damaged one beside it (DIR.damaged-TIME), and say what "
                "was dropped");
  commands->push_back({cmd, [st] { return Check(st->flags, st->dir, st->salvage); }});
}

}  // namespace kvfs::cli
