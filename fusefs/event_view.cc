#include "fusefs/event_view.h"

#include <cerrno>
#include <cstdio>

#include "fusefs/file_store_impl.h"

namespace kvfs::fusefs {

using internal::Errno;

namespace {

constexpr size_t kNumberDigits = 20;
// Events listed per ListEvents call while a view directory is read.
constexpr size_t kListChunk = 1024;

std::string EventName(uint64_t number) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%020llu", static_cast<unsigned long long>(number));
  return buf;
}

// The event number a name stands for: 1 to 20 decimal digits.
std::optional<uint64_t> ParseEventName(std::string_view name) {
  if (name.empty() || name.size() > kNumberDigits) return std::nullopt;
  uint64_t n = 0;
  for (char c : name) {
    if (c < '0' || c > '9') return std::nullopt;
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (n > (UINT64_MAX - d) / 10) return std::nullopt;
    n = n * 10 + d;
  }
  return n;
}

// Read bits become read and search bits: a view directory is listable where its file was
// readable.
uint32_t DirModeOf(uint32_t file_mode) {
  const uint32_t r = file_mode & 0444;
  return r | (r >> 2);
}

}  // namespace

std::string StreamOfFile(uint64_t id) { return EncodeU64(id); }
std::string StreamDropKey(uint64_t id) { return "Z" + EncodeU64(id); }

EventView::EventView(engines::EventStore* events, GetNodeFn get_node, ScanChildrenFn scan_children)
    : events_(events), get_node_(std::move(get_node)), scan_children_(std::move(scan_children)) {
  VNode root;
  root.kind = VNode::kRoot;
  root.nlookup = 1;  // never forgotten
  nodes_.emplace(kViewIdBase, root);
  by_key_.emplace(KeyOf(root), kViewIdBase);
}

std::string EventView::KeyOf(const VNode& v) {
  switch (v.kind) {
    case VNode::kRoot:
      return "r";
    case VNode::kDir:
      return "d" + v.path;
    case VNode::kStream:
      return "s" + EncodeU64(v.file);
    case VNode::kEvent:
      return "e" + EncodeU64(v.file) + EncodeU64(v.number);
  }
  return "";
}

uint64_t EventView::Ref(const VNode& v, uint64_t n) {
  std::lock_guard lock(mu_);
  const std::string key = KeyOf(v);
  auto it = by_key_.find(key);
  if (it != by_key_.end()) {
    nodes_[it->second].nlookup += n;
    return it->second;
  }
  const uint64_t id = next_id_++;
  VNode copy = v;
  copy.nlookup = n;
  nodes_.emplace(id, std::move(copy));
  by_key_.emplace(key, id);
  return id;
}

void EventView::Forget(uint64_t id, uint64_t nlookup) {
  std::lock_guard lock(mu_);
  auto it = nodes_.find(id);
  if (it == nodes_.end() || it->second.kind == VNode::kRoot) return;
  it->second.nlookup -= std::min(nlookup, it->second.nlookup);
  if (it->second.nlookup > 0) return;
  by_key_.erase(KeyOf(it->second));
  nodes_.erase(it);
}

Result<EventView::VNode> EventView::Find(uint64_t id) {
  std::lock_guard lock(mu_);
  auto it = nodes_.find(id);
  if (it == nodes_.end()) return Errno(ENOENT, "no view node with id " + std::to_string(id));
  return it->second;
}

Result<Attr> EventView::AttrOf(const VNode& v, uint64_t id) {
  Attr a;
  a.id = id;
  KVFS_ASSIGN_OR_RETURN(Node node, get_node_(v.path));
  a.uid = node.uid;
  a.gid = node.gid;
  a.atime_ns = node.atime_ns;
  a.mtime_ns = node.mtime_ns;
  a.ctime_ns = node.ctime_ns;
  switch (v.kind) {
    case VNode::kRoot:
    case VNode::kDir:
      if (node.type != NodeType::kDirectory) return Errno(ENOENT, "gone: " + v.path);
      a.type = NodeType::kDirectory;
      a.mode = node.mode & 0555;
      return a;
    case VNode::kStream:
    case VNode::kEvent: {
      if (node.type != NodeType::kFile || node.id != v.file) {
        return Errno(ENOENT, "gone: " + v.path);
      }
      auto info = events_->Stat(StreamOfFile(v.file));
      const uint64_t count = info.ok() ? info->events : 0;  // no stream yet: no event yet
      if (v.kind == VNode::kStream) {
        a.type = NodeType::kDirectory;
        a.mode = DirModeOf(node.mode);
        a.size = count;
        return a;
      }
      if (v.number >= count) return Errno(ENOENT, "no event " + std::to_string(v.number));
      KVFS_ASSIGN_OR_RETURN(auto events, events_->ListEvents(StreamOfFile(v.file), v.number, 1));
      a.type = NodeType::kFile;
      a.mode = node.mode & 0444;
      a.size = events.at(0).size;
      a.atime_ns = a.mtime_ns = a.ctime_ns = events[0].timestamp_ns;
      return a;
    }
  }
  return Errno(EIO, "unknown view node");
}

Result<Attr> EventView::LookupRoot() {
  VNode root;
  root.kind = VNode::kRoot;
  const uint64_t id = Ref(root, 1);
  return AttrOf(root, id);
}

Result<EventView::VNode> EventView::Child(const VNode& parent, std::string_view name) {
  VNode c;
  switch (parent.kind) {
    case VNode::kRoot:
    case VNode::kDir: {
      c.path = JoinPath(parent.path, name);
      auto node = get_node_(c.path);
      if (!node.ok()) {
        if (node.status().IsNotFound()) return Errno(ENOENT, "no such entry: " + c.path);
        return node.status();
      }
      if (node->type == NodeType::kDirectory) {
        c.kind = VNode::kDir;
      } else if (node->type == NodeType::kFile) {
        c.kind = VNode::kStream;
        c.file = node->id;
      } else {
        return Errno(ENOENT, "not a stream: " + c.path);  // symlinks have no events
      }
      return c;
    }
    case VNode::kStream: {
      const std::optional<uint64_t> n = ParseEventName(name);
      if (!n) return Errno(ENOENT, "not an event number: " + std::string(name));
      c.kind = VNode::kEvent;
      c.path = parent.path;
      c.file = parent.file;
      c.number = *n;
      return c;
    }
    case VNode::kEvent:
      return Errno(ENOTDIR, "an event is a file");
  }
  return Errno(EIO, "unknown view node");
}

Result<Attr> EventView::Lookup(uint64_t parent, std::string_view name) {
  KVFS_ASSIGN_OR_RETURN(VNode p, Find(parent));
  KVFS_ASSIGN_OR_RETURN(VNode c, Child(p, name));
  KVFS_ASSIGN_OR_RETURN(Attr a, AttrOf(c, 0));  // exists?
  a.id = Ref(c, 1);
  return a;
}

Result<Attr> EventView::GetAttr(uint64_t id) {
  KVFS_ASSIGN_OR_RETURN(VNode v, Find(id));
  return AttrOf(v, id);
}

Status EventView::ReadDir(uint64_t id, std::string_view after, bool plus,
                          const std::function<bool(const DirEntry&)>& fn) {
  KVFS_ASSIGN_OR_RETURN(VNode v, Find(id));
  switch (v.kind) {
    case VNode::kEvent:
      return Errno(ENOTDIR, "an event is a file");
    case VNode::kRoot:
    case VNode::kDir: {
      KVFS_ASSIGN_OR_RETURN(Attr self, AttrOf(v, id));
      (void)self;
      return scan_children_(v.path, after, [&](std::string_view name, const Node& node) {
        VNode c;
        c.path = JoinPath(v.path, name);
        if (node.type == NodeType::kDirectory) {
          c.kind = VNode::kDir;
        } else if (node.type == NodeType::kFile) {
          c.kind = VNode::kStream;
          c.file = node.id;
        } else {
          return true;  // symlinks: not shown
        }
        auto a = AttrOf(c, 0);
        if (!a.ok()) return true;  // changed meanwhile
        DirEntry e{std::string(name), *a};
        return Offer(c, plus, &e, fn);
      });
    }
    case VNode::kStream: {
      KVFS_ASSIGN_OR_RETURN(Attr self, AttrOf(v, id));
      uint64_t from = 0;
      if (!after.empty()) {
        const std::optional<uint64_t> n = ParseEventName(after);
        if (!n) return Status::OK();
        from = *n + 1;
      }
      const std::string stream = StreamOfFile(v.file);
      while (from < self.size) {
        auto events = events_->ListEvents(stream, from, kListChunk);
        if (!events.ok()) return events.status().IsNotFound() ? Status::OK() : events.status();
        if (events->empty()) break;
        for (const engines::EventInfo& ev : *events) {
          VNode c;
          c.kind = VNode::kEvent;
          c.path = v.path;
          c.file = v.file;
          c.number = ev.number;
          DirEntry e;
          e.name = EventName(ev.number);
          e.attr = self;
          e.attr.type = NodeType::kFile;
          e.attr.mode = self.mode & 0444;
          e.attr.size = ev.size;
          e.attr.atime_ns = e.attr.mtime_ns = e.attr.ctime_ns = ev.timestamp_ns;
          if (!Offer(c, plus, &e, fn)) return Status::OK();
        }
        from = events->back().number + 1;
      }
      return Status::OK();
    }
  }
  return Errno(EIO, "unknown view node");
}

bool EventView::Offer(const VNode& v, bool plus, DirEntry* e,
                      const std::function<bool(const DirEntry&)>& fn) {
  // The entry needs its id before the caller sees it. Without `plus` the reference is only
  // borrowed for the number (d_ino is informational; a lookup may give another).
  e->attr.id = Ref(v, 1);
  const bool consumed = fn(*e);
  if (!consumed || !plus) Forget(e->attr.id, 1);
  return consumed;
}

Result<std::string> EventView::Read(uint64_t id, uint64_t offset, size_t size) {
  KVFS_ASSIGN_OR_RETURN(VNode v, Find(id));
  if (v.kind != VNode::kEvent) return Errno(EISDIR, "a directory");
  KVFS_ASSIGN_OR_RETURN(std::string data, events_->ReadEvent(StreamOfFile(v.file), v.number));
  if (offset >= data.size()) return std::string();
  return data.substr(offset, size);
}

}  // namespace kvfs::fusefs
