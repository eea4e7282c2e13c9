// EventView: an events store's files as event streams (engines/events/events.h), and the
// read-only view of each stream's events as numbered files.
//
// In a store whose engine is "events", every regular file is a stream (named by the file's
// immutable id) and append-only, as ext4's append-only files (chattr +a):
//   - a write lands only at the current end of the file: one write is one event, appended with
//     the file's node in one log record; a write at any other offset fails with EPERM (so a
//     pwrite at the offset a reader last saw fails once anyone appended since: optimistic
//     concurrency);
//   - a truncate (to any other size than the current one), a rename of the file, and a rename
//     over it fail with EPERM;
//   - unlink is allowed: the stream is deleted in the same log record as the name (or, while
//     the file is open, when the last reference goes, as the file layer does for chunks).
//
// The view: a directory ".events" at the store's root, hidden from readdir (reachable by name,
// like /.kvfs) and reserved (creating, removing or renaming onto that name at the root fails),
// mirrors the store's directories; each stream file appears in it as a directory holding one
// read-only file per event, named by the event's number in 20 decimal digits (so `ls` sorts
// them in order), sized as the event, with the event's timestamp as its mtime. A stream's view
// directory's size is its number of events. Reading event K costs one index lookup and one
// read, whatever the stream's length. Every change to the view fails with EROFS.
//
// View nodes have ids from kViewIdBase up (far above any id the store allocates), kept in a
// table with lookup counts like the file layer's own, forgotten at zero.
//
// Thread safety: every method may be called from any thread at once; the caller holds the
// store's namespace lock (shared at least) across each call. The table has its own mutex, never
// held while calling into the engine.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "engines/events/events.h"
#include "fusefs/file_store.h"

namespace kvfs::fusefs {

inline constexpr std::string_view kEventViewName = ".events";
inline constexpr uint64_t kViewIdBase = uint64_t{1} << 47;

// The stream that holds file `id`'s bytes in an events store.
std::string StreamOfFile(uint64_t id);
// A key never stored: in an events store's batch, its deletion stands for the deletion of file
// `id`'s stream, which FileStore::Impl::ApplyBatch makes part of the same log record.
std::string StreamDropKey(uint64_t id);

class EventView {
 public:
  // `get_node` reads a node by path; `scan_children` lists a directory's entries (name, node)
  // in name order after `after`; both as the file layer does, under its lock.
  using GetNodeFn = std::function<Result<Node>(const std::string& path)>;
  using ScanChildrenFn =
      std::function<Status(const std::string& dir, std::string_view after,
                           const std::function<bool(std::string_view name, const Node& node)>& fn)>;
  EventView(engines::EventStore* events, GetNodeFn get_node, ScanChildrenFn scan_children);

  static bool IsViewId(uint64_t id) { return id >= kViewIdBase; }

  // Each (+ref) adds a lookup reference to the node returned, which Forget drops.
  Result<Attr> LookupRoot();                                    // (+ref) the ".events" directory
  Result<Attr> Lookup(uint64_t parent, std::string_view name);  // (+ref)
  void Forget(uint64_t id, uint64_t nlookup);
  Result<Attr> GetAttr(uint64_t id);
  // As FileStore::ReadDir; with `plus` each consumed entry gains a reference.
  Status ReadDir(uint64_t id, std::string_view after, bool plus,
                 const std::function<bool(const DirEntry&)>& fn);
  // An event file's bytes (its checksum checked); EISDIR for the directories.
  Result<std::string> Read(uint64_t id, uint64_t offset, size_t size);

 private:
  struct VNode {
    enum Kind { kRoot, kDir, kStream, kEvent } kind = kRoot;
    std::string path;     // kRoot, kDir: the mirrored directory; kStream, kEvent: the file
    uint64_t file = 0;    // kStream, kEvent: the stream file's id
    uint64_t number = 0;  // kEvent
    uint64_t nlookup = 0;
  };
  static std::string KeyOf(const VNode& v);
  // The id of `v` (a new one if it has none), with `n` more references.
  uint64_t Ref(const VNode& v, uint64_t n);
  Result<VNode> Find(uint64_t id);
  Result<Attr> AttrOf(const VNode& v, uint64_t id);
  Result<VNode> Child(const VNode& parent, std::string_view name);
  // Hands `e` (for `v`) to fn; with `plus` a consumed entry keeps a reference.
  bool Offer(const VNode& v, bool plus, DirEntry* e,
             const std::function<bool(const DirEntry&)>& fn);

  engines::EventStore* const events_;
  const GetNodeFn get_node_;
  const ScanChildrenFn scan_children_;

  std::mutex mu_;
  std::unordered_map<uint64_t, VNode> nodes_;  // guarded by mu_
  std::map<std::string, uint64_t> by_key_;     // guarded by mu_
  uint64_t next_id_ = kViewIdBase + 1;         // guarded by mu_
};

}  // namespace kvfs::fusefs
