// The file layer's part of an events store (event_view.h has the semantics): appends, the
// append-only refusals, stream deletion in the same log record as a file's name.
#include <cerrno>
#include <mutex>
#include <shared_mutex>

#include "fusefs/file_store_impl.h"
#include "fusefs/time_ns.h"

namespace kvfs::fusefs {

using internal::Errno;
using internal::Loaded;

void FileStore::Impl::OpenEvents() {
  events = engines::AsEventStore(engine.get());
  if (events == nullptr) return;
  // The view calls these from FileStore's operations, which hold ns_mu.
  auto get_node = [this](const std::string& path) {
    ns_mu.AssertReaderHeld();
    return GetNode(path);
  };
  auto scan_children = [this](const std::string& dir, std::string_view after,
                              const std::function<bool(std::string_view, const Node&)>& fn) {
    engines::ScanOptions so;
    so.prefix = ChildrenPrefix(dir);
    if (!after.empty()) so.start_after = NodeKey(JoinPath(dir, after));
    Status inner;
    Status scan = engine->Scan(so, [&](std::string_view key, std::string_view value) {
      auto node = DecodeNode(value, key);
      if (!node.ok()) {
        inner = node.status();
        return false;
      }
      return fn(key.substr(key.find('\0') + 1), *node);
    });
    KVFS_RETURN_IF_ERROR(scan);
    return inner;
  };
  view = std::make_unique<EventView>(events, get_node, scan_children);
}

Status FileStore::Impl::ApplyBatch(const engines::WriteBatch& batch,
                                   std::vector<engines::StreamOp> ops) {
  Status s;
  if (events == nullptr) {
    s = engine->Apply(batch);
  } else {
    // StreamDropKey deletions become stream deletions in the same log record.
    engines::WriteBatch rest;
    s = engines::ForEachEntry(batch.encoded(), "write batch", [&](const engines::BatchEntry& e) {
      if (e.kind == engines::EntryKind::kDelete && e.key.size() == 9 && e.key[0] == 'Z') {
        engines::StreamOp op;
        op.kind = engines::StreamOp::Kind::kDelete;
        op.stream = std::string(e.key.substr(1));
        ops.push_back(std::move(op));
      } else if (e.kind == engines::EntryKind::kPut) {
        rest.Put(e.key, e.value);
      } else {
        rest.Delete(e.key);
      }
      return Status::OK();
    });
    if (s.ok())
      s = ops.empty() ? engine->Apply(rest) : events->ApplyWithStreams(rest, ops, nullptr);
  }
  if (s.ok()) return s;
  Count(&FileStoreStats::errors);
  if (s.IsFailed()) {
    failed = true;
    return Status(StatusCode::kFailed, s.message(), EROFS);
  }
  return s;
}

Result<size_t> FileStore::Impl::WriteEvent(uint64_t id, uint64_t offset, std::string_view data) {
  {
    // The file's inode lock orders appends to it: the second of two appends at one offset
    // loads the size the first left and is refused (EPERM) here. The engine checks the offset
    // again under its append lock all the same. Appends to different files run side by side.
    ReaderMutexLock ns(&ns_mu);
    internal::InodeLocks::Hold inode(&inode_locks, id, /*exclusive=*/true);
    KVFS_RETURN_IF_ERROR(CheckWritable());
    if (IsViewId(id)) return Errno(EROFS, "the event view is read-only");
    KVFS_ASSIGN_OR_RETURN(Loaded l, Load(id));
    if (l.node.type == NodeType::kDirectory) return Errno(EISDIR, "is a directory");
    if (l.node.type != NodeType::kFile) return Errno(EINVAL, "not a regular file");
    if (offset != l.node.size) {
      return Errno(EPERM, "append-only stream " + l.path + ": a write lands only at its end (" +
                              std::to_string(l.node.size) + "), not at " + std::to_string(offset));
    }
    if (data.empty()) return 0;
    if (data.size() > engines::kMaxEventSize) {
      return Errno(EFBIG, "an event of " + std::to_string(data.size()) + " bytes (at most " +
                              std::to_string(engines::kMaxEventSize) + ")");
    }
    const int64_t now = NowNs();
    l.node.size += data.size();
    l.node.data_inline = false;
    l.node.inline_data.clear();
    l.node.mtime_ns = l.node.ctime_ns = now;
    engines::WriteBatch batch;
    // An orphan's node lives in the id table: it changes there only once the append is in (a
    // racing append to it that the engine refuses must not leave its size behind).
    if (l.orphan) {
      batch.Put(OrphanKey(l.node.id), EncodeNode(l.node));
    } else {
      PutNode(l, &batch);
    }
    engines::StreamOp op;
    op.stream = StreamOfFile(id);
    op.data = data;
    op.expect.bytes = offset;  // the engine checks it again, under its append lock
    std::vector<engines::StreamOp> ops;
    ops.push_back(std::move(op));
    KVFS_RETURN_IF_ERROR(ApplyBatch(batch, std::move(ops)));
    if (l.orphan) PutNode(l, nullptr);
  }
  {
    MutexLock stats_lock(&stats_mu);
    stats.writes++;
    stats.write_bytes += data.size();
  }
  KVFS_RETURN_IF_ERROR(SyncIfOwed());
  return data.size();
}

Status FileStore::Impl::CheckResize(const Node& node, uint64_t size) const {
  if (events == nullptr || node.type != NodeType::kFile || size == node.size) return Status::OK();
  return Errno(EPERM, "append-only stream: its size cannot change but by appending (" +
                          std::to_string(node.size) + " -> " + std::to_string(size) + ")");
}

Status FileStore::Impl::CheckRename(const Node& src, const Node* dst, uint64_t new_parent,
                                    std::string_view new_name) const {
  if (events == nullptr) return Status::OK();
  if (IsReservedName(new_parent, new_name)) {
    return Errno(EPERM, std::string(kEventViewName) + " is reserved for the event view");
  }
  if (src.type == NodeType::kFile) return Errno(EPERM, "an append-only stream cannot be renamed");
  if (dst != nullptr && dst->type == NodeType::kFile) {
    return Errno(EPERM, "an append-only stream cannot be replaced by a rename");
  }
  return Status::OK();
}

}  // namespace kvfs::fusefs
