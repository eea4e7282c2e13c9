// FileStore's extended attributes: one engine key per attribute ("X" <id> <name>, layout.h),
// and in the file's node how many it has and their names' and values' bytes. So a setxattr or
// removexattr is one Get (the old value: its size and whether it exists) and one batch (the
// attribute's key and the node), whatever the number of other attributes; getxattr is one Get
// and listxattr one prefix scan. Keyed by the file's id: every name of a file shares them, a
// rename moves none, and they go with the file (Drop, PurgeOrphan).
//
// A store of layout 1 or 2 holds each file's whole set inside its node (Node::inline_xattrs).
// Read-only, it is read from there; a writable open moves every set to keys first (UpgradeLayout),
// so a writable store never meets one.
#include <sys/xattr.h>

#include <cerrno>
#include <optional>

#include "fusefs/file_store_impl.h"
#include "fusefs/time_ns.h"

namespace kvfs::fusefs {

using internal::Errno;
using internal::Loaded;

namespace {

// The kernel refuses these before asking (fs/xattr.c); the file layer answers the same.
Status CheckName(std::string_view name) {
  if (name.empty() || name.size() > kMaxXattrNameLength) {
    return Errno(ERANGE, "attribute name of " + std::to_string(name.size()) + " bytes");
  }
  return Status::OK();
}

Status InlineInWritableStore(const Node& n) {
  return Status::Corruption("file " + std::to_string(n.id) +
                            " holds its xattrs inside its node in a layout-3 store (the layout "
                            "upgrade moves them to keys): left unchanged");
}

std::string NoAttribute(std::string_view name) { return "no attribute " + EscapeKey(name); }

}  // namespace

void internal::MoveInlineXattrs(Node* n, engines::WriteBatch* batch) {
  for (const auto& [name, value] : n->inline_xattrs) batch->Put(XattrKey(n->id, name), value);
  n->inline_xattrs.clear();  // the totals were counted from the set when it was decoded
}

bool internal::NeedsOrphanRecord(const Node& n) {
  return (n.type == NodeType::kFile && !n.data_inline) || n.xattr_count > 0;
}

void FileStore::Impl::PutOrphanRecord(const Node& n, engines::WriteBatch* batch) {
  if (!internal::NeedsOrphanRecord(n)) {
    batch->Delete(OrphanKey(n.id));
    return;
  }
  Node record = n;
  record.inline_data.clear();
  if (n.type == NodeType::kFile && n.data_inline) record.size = 0;  // its data is not kept
  batch->Put(OrphanKey(n.id), EncodeNode(record));
}

Status FileStore::Impl::DropXattrs(const Node& n, engines::WriteBatch* batch) {
  if (n.xattr_count == 0) return Status::OK();
  engines::ScanOptions so;
  so.prefix = XattrPrefix(n.id);
  so.keys_only = true;
  return engine->Scan(so, [&](std::string_view key, std::string_view) {
    batch->Delete(key);
    return true;
  });
}

Result<std::string> FileStore::GetXattr(uint64_t id, std::string_view name) {
  Impl& s = *impl_;
  KVFS_RETURN_IF_ERROR(CheckName(name));
  ReaderMutexLock ns(&s.ns_mu);
  // The node's counts and its keys of one moment (a change takes the inode lock exclusively).
  internal::InodeLocks::Hold inode(&s.inode_locks, id, /*exclusive=*/false);
  if (s.IsViewId(id)) return Errno(ENODATA, NoAttribute(name));
  KVFS_ASSIGN_OR_RETURN(Loaded l, s.Load(id));
  const Node& n = l.node;
  if (!n.inline_xattrs.empty()) {  // a layout-2 store, read-only
    auto it = n.inline_xattrs.find(std::string(name));
    if (it == n.inline_xattrs.end()) return Errno(ENODATA, NoAttribute(name));
    return it->second;
  }
  if (n.xattr_count == 0) return Errno(ENODATA, NoAttribute(name));
  auto value = s.engine->Get(XattrKey(n.id, name));
  if (!value.ok() && value.status().IsNotFound()) return Errno(ENODATA, NoAttribute(name));
  return value;
}

Result<std::vector<std::string>> FileStore::ListXattr(uint64_t id) {
  Impl& s = *impl_;
  ReaderMutexLock ns(&s.ns_mu);
  // The node's counts and its keys of one moment (a change takes the inode lock exclusively).
  internal::InodeLocks::Hold inode(&s.inode_locks, id, /*exclusive=*/false);
  if (s.IsViewId(id)) return std::vector<std::string>();
  KVFS_ASSIGN_OR_RETURN(Loaded l, s.Load(id));
  const Node& n = l.node;
  std::vector<std::string> names;
  if (!n.inline_xattrs.empty()) {
    for (const auto& [name, value] : n.inline_xattrs) names.push_back(name);
    return names;
  }
  if (n.xattr_count == 0) return names;
  names.reserve(n.xattr_count);
  engines::ScanOptions so;
  so.prefix = XattrPrefix(n.id);
  so.keys_only = true;
  KVFS_RETURN_IF_ERROR(s.engine->Scan(so, [&](std::string_view key, std::string_view) {
    names.emplace_back(key.substr(so.prefix.size()));
    return true;
  }));
  return names;
}

Result<XattrUsage> FileStore::XattrUsageOf(uint64_t id) {
  Impl& s = *impl_;
  ReaderMutexLock ns(&s.ns_mu);
  // The node's counts and its keys of one moment (a change takes the inode lock exclusively).
  internal::InodeLocks::Hold inode(&s.inode_locks, id, /*exclusive=*/false);
  KVFS_ASSIGN_OR_RETURN(Loaded l, s.Load(id));
  return XattrUsage{l.node.xattr_count, l.node.xattr_name_bytes, l.node.xattr_value_bytes,
                    !l.node.inline_xattrs.empty()};
}

Status FileStore::Impl::ChangeXattr(uint64_t id, std::string_view name, XattrChange change) {
  KVFS_RETURN_IF_ERROR(CheckName(name));
  {
    ReaderMutexLock ns(&ns_mu);
    internal::InodeLocks::Hold inode(&inode_locks, id, /*exclusive=*/true);
    KVFS_RETURN_IF_ERROR(CheckWritable());
    KVFS_ASSIGN_OR_RETURN(Loaded l, Load(id));
    Node& n = l.node;
    if (!n.inline_xattrs.empty()) return InlineInWritableStore(n);
    const std::string key = XattrKey(n.id, name);
    engines::WriteBatch batch;
    KVFS_RETURN_IF_ERROR(change(n, key, &batch));
    n.ctime_ns = NowNs();  // as ext4
    PutNode(l, &batch);
    if (l.orphan) PutOrphanRecord(n, &batch);
    KVFS_RETURN_IF_ERROR(ApplyBatch(batch));
  }
  return SyncIfOwed();
}

Status FileStore::SetXattr(uint64_t id, std::string_view name, std::string_view value, int flags) {
  if (value.size() > kMaxXattrValueLength) return Errno(E2BIG, "attribute value over 64 KiB");
  Impl& s = *impl_;
  return s.ChangeXattr(id, name, [&](Node& n, const std::string& key, engines::WriteBatch* batch) {
    std::optional<size_t> old;  // the present value's size
    if (n.xattr_count > 0) {
      auto v = s.engine->Get(key);
      if (v.ok()) {
        old = v->size();
      } else if (!v.status().IsNotFound()) {
        return v.status();
      }
    }
    if ((flags & XATTR_CREATE) && old) return Errno(EEXIST, "attribute exists: " + EscapeKey(name));
    if ((flags & XATTR_REPLACE) && !old) return Errno(ENODATA, NoAttribute(name));
    const uint64_t count = n.xattr_count + (old ? 0 : 1);
    const uint64_t names = n.xattr_name_bytes + (old ? 0 : name.size());
    const uint64_t values = n.xattr_value_bytes - old.value_or(0) + value.size();
    if (names + count > kMaxXattrList) {
      return Errno(ENOSPC, "the file's attribute names would pass 64 KiB (listxattr's limit)");
    }
    if (names + values > kMaxXattrTotal) {
      return Errno(ENOSPC, "the file's attribute names and values would pass 1 MiB");
    }
    n.xattr_count = static_cast<uint32_t>(count);
    n.xattr_name_bytes = static_cast<uint32_t>(names);
    n.xattr_value_bytes = values;
    batch->Put(key, value);
    return Status::OK();
  });
}

Status FileStore::RemoveXattr(uint64_t id, std::string_view name) {
  Impl& s = *impl_;
  return s.ChangeXattr(id, name, [&](Node& n, const std::string& key, engines::WriteBatch* batch) {
    if (n.xattr_count == 0) return Errno(ENODATA, NoAttribute(name));
    auto old = s.engine->Get(key);
    if (!old.ok()) {
      if (old.status().IsNotFound()) return Errno(ENODATA, NoAttribute(name));
      return old.status();
    }
    if (n.xattr_name_bytes < name.size() || n.xattr_value_bytes < old->size()) {
      return Status::Corruption("file " + std::to_string(n.id) +
                                ": its node counts fewer xattr bytes than its keys hold");
    }
    n.xattr_count -= 1;
    n.xattr_name_bytes -= static_cast<uint32_t>(name.size());
    n.xattr_value_bytes -= old->size();
    batch->Delete(key);
    return Status::OK();
  });
}

}  // namespace kvfs::fusefs
