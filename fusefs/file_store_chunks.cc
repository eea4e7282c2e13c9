// A file's bytes: inline in its node while small, otherwise in chunks keyed by its id (layout.h),
// read, written and resized under the invariants layout.h states.
#include <algorithm>
#include <cstring>

#include "fusefs/file_store_impl.h"

namespace kvfs::fusefs {
namespace {

uint64_t ChunkCount(uint64_t size) { return (size + kChunkSize - 1) / kChunkSize; }

}  // namespace

using internal::Errno;

Result<std::vector<std::string>> FileStore::Impl::ChunkKeysFrom(uint64_t id, uint64_t first) {
  std::vector<std::string> keys;
  engines::ScanOptions so;
  so.prefix = ChunkPrefix(id);
  so.keys_only = true;
  if (first > 0) so.start_after = ChunkKey(id, first - 1);
  KVFS_RETURN_IF_ERROR(engine->Scan(so, [&](std::string_view key, std::string_view) {
    keys.emplace_back(key);
    return true;
  }));
  return keys;
}

Result<std::string> FileStore::Impl::ReadData(const Node& node, uint64_t offset, uint64_t n) {
  if (offset >= node.size) return std::string();
  n = std::min(n, node.size - offset);
  if (node.data_inline) return node.inline_data.substr(offset, n);
  if (events != nullptr) return events->ReadBytes(StreamOfFile(node.id), offset, n);
  std::string out(n, '\0');
  const uint64_t first = offset / kChunkSize;
  const uint64_t last = (offset + n - 1) / kChunkSize;
  if (last - first >= 2) {
    // Many chunks: one ordered scan over their keys instead of a lookup each.
    engines::ScanOptions so;
    so.prefix = ChunkPrefix(node.id);
    if (first > 0) so.start_after = ChunkKey(node.id, first - 1);
    Status bad;
    KVFS_RETURN_IF_ERROR(engine->Scan(so, [&](std::string_view key, std::string_view data) {
      auto chunk = DecodeU64(key.substr(so.prefix.size()), key);
      if (!chunk.ok()) {
        bad = chunk.status();
        return false;
      }
      if (*chunk > last) return false;
      const uint64_t start = *chunk * kChunkSize;  // file offset of the chunk's first byte
      const uint64_t from = std::max(start, offset);
      const uint64_t to = std::min(start + data.size(), offset + n);
      if (to > from)
        std::memcpy(out.data() + (from - offset), data.data() + (from - start), to - from);
      return true;
    }));
    KVFS_RETURN_IF_ERROR(bad);
    return out;
  }
  uint64_t pos = offset;
  while (pos < offset + n) {
    const uint64_t chunk = pos / kChunkSize;
    const uint64_t in_chunk = pos % kChunkSize;
    const uint64_t take = std::min(kChunkSize - in_chunk, offset + n - pos);
    auto data = engine->Get(ChunkKey(node.id, chunk));
    if (data.ok()) {
      if (data->size() > in_chunk) {
        const uint64_t have = std::min<uint64_t>(take, data->size() - in_chunk);
        std::memcpy(out.data() + (pos - offset), data->data() + in_chunk, have);
      }
    } else if (!data.status().IsNotFound()) {
      return data.status();
    }
    pos += take;
  }
  return out;
}

Status FileStore::Impl::Resize(Node* node, uint64_t new_size, engines::WriteBatch* batch) {
  if (new_size > kMaxFileSize)
    return Errno(EFBIG, "file size beyond " + std::to_string(kMaxFileSize));
  const uint64_t old_size = node->size;
  if (node->data_inline) {
    if (new_size <= kInlineMax) {
      node->inline_data.resize(new_size, '\0');
    } else {
      node->chunks = node->inline_data.empty() ? 0 : 1;
      if (!node->inline_data.empty()) batch->Put(ChunkKey(node->id, 0), node->inline_data);
      node->inline_data.clear();
      node->data_inline = false;
    }
    node->size = new_size;
    return Status::OK();
  }
  if (new_size >= old_size) {
    node->size = new_size;  // a hole: missing bytes read as zeros
    return Status::OK();
  }
  if (new_size <= kInlineMax) {
    KVFS_ASSIGN_OR_RETURN(node->inline_data, ReadData(*node, 0, new_size));
    KVFS_ASSIGN_OR_RETURN(auto keys, ChunkKeysFrom(node->id, 0));
    for (const auto& k : keys) batch->Delete(k);
    node->data_inline = true;
    node->chunks = 0;
    node->size = new_size;
    return Status::OK();
  }
  const uint64_t keep = ChunkCount(new_size);
  KVFS_ASSIGN_OR_RETURN(auto keys, ChunkKeysFrom(node->id, keep));
  for (const auto& k : keys) batch->Delete(k);
  node->chunks -= std::min<uint64_t>(node->chunks, keys.size());
  if (new_size % kChunkSize != 0) {
    const std::string last = ChunkKey(node->id, keep - 1);
    auto data = engine->Get(last);
    if (data.ok() && data->size() > new_size % kChunkSize) {
      data->resize(new_size % kChunkSize);
      batch->Put(last, *data);
    } else if (!data.ok() && !data.status().IsNotFound()) {
      return data.status();
    }
  }
  node->size = new_size;
  return Status::OK();
}

Status FileStore::Impl::ZeroRange(Node* node, uint64_t from, uint64_t to,
                                  engines::WriteBatch* batch) {
  if (from >= to) return Status::OK();
  if (node->data_inline) {
    std::fill(node->inline_data.begin() + static_cast<std::ptrdiff_t>(from),
              node->inline_data.begin() + static_cast<std::ptrdiff_t>(to), '\0');
    return Status::OK();
  }
  const uint64_t first = from / kChunkSize;
  const uint64_t last = (to - 1) / kChunkSize;
  // The chunks held in [first, last], by one scan that stops past `last`.
  std::vector<std::pair<uint64_t, std::string>> held;
  Status bad;
  engines::ScanOptions so;
  so.prefix = ChunkPrefix(node->id);
  if (first > 0) so.start_after = ChunkKey(node->id, first - 1);
  KVFS_RETURN_IF_ERROR(engine->Scan(so, [&](std::string_view key, std::string_view value) {
    auto chunk = DecodeU64(key.substr(so.prefix.size()), key);
    if (!chunk.ok()) {
      bad = chunk.status();
      return false;
    }
    if (*chunk > last) return false;
    const uint64_t start = *chunk * kChunkSize;
    const bool whole = from <= start && (to >= start + kChunkSize || to >= node->size);
    held.emplace_back(*chunk, whole ? std::string() : std::string(value));
    return true;
  }));
  KVFS_RETURN_IF_ERROR(bad);
  for (auto& [chunk, bytes] : held) {
    const uint64_t start = chunk * kChunkSize;
    const bool whole = from <= start && (to >= start + kChunkSize || to >= node->size);
    if (whole) {
      batch->Delete(ChunkKey(node->id, chunk));
      --node->chunks;
      continue;
    }
    const uint64_t zero_from = std::max(from, start) - start;
    const uint64_t zero_to = std::min<uint64_t>(to - start, bytes.size());
    if (zero_from < zero_to) {
      std::fill(bytes.begin() + static_cast<std::ptrdiff_t>(zero_from),
                bytes.begin() + static_cast<std::ptrdiff_t>(zero_to), '\0');
      batch->Put(ChunkKey(node->id, chunk), bytes);
    }
  }
  return Status::OK();
}

Status FileStore::Impl::WriteData(Node* node, uint64_t offset, std::string_view data,
                                  engines::WriteBatch* batch) {
  const uint64_t end = offset + data.size();
  if (end > kMaxFileSize || end < offset) {
    return Errno(EFBIG, "write past the largest file size " + std::to_string(kMaxFileSize));
  }
  if (node->data_inline && end <= kInlineMax) {
    if (node->inline_data.size() < end) node->inline_data.resize(end, '\0');
    node->inline_data.replace(offset, data.size(), data);
    node->size = node->inline_data.size();
    return Status::OK();
  }
  // Chunked from here on. A just-converted inline file's chunk 0 is in `pending`.
  std::string pending0;
  bool have_pending0 = false;
  // Which chunks below the old size exist: all of them in a file without holes; otherwise a
  // chunk this write covers whole is looked up (only for st_blocks' count).
  bool was_inline = false;
  const bool dense = node->chunks == ChunkCount(node->size);
  if (node->data_inline) {
    pending0 = std::move(node->inline_data);
    have_pending0 = !pending0.empty();
    node->inline_data.clear();
    node->data_inline = false;
    node->chunks = 0;
    was_inline = true;
  }
  uint64_t pos = offset;
  while (pos < end) {
    const uint64_t chunk = pos / kChunkSize;
    const uint64_t in_chunk = pos % kChunkSize;
    const uint64_t take = std::min(kChunkSize - in_chunk, end - pos);
    std::string bytes;
    bool existed = false;
    // A write covering the whole chunk needs no read of the old bytes.
    if (!(in_chunk == 0 && take == kChunkSize)) {
      if (chunk == 0 && have_pending0) {
        bytes = pending0;
      } else if (!was_inline && chunk * kChunkSize < node->size) {
        auto old = engine->Get(ChunkKey(node->id, chunk));
        if (old.ok()) {
          bytes = std::move(*old);
          existed = true;
        } else if (!old.status().IsNotFound()) {
          return old.status();
        }
      }
    } else if (!was_inline && chunk * kChunkSize < node->size) {
      existed = dense;
      if (!dense) {
        auto old = engine->Get(ChunkKey(node->id, chunk));
        if (!old.ok() && !old.status().IsNotFound()) return old.status();
        existed = old.ok();
      }
    }
    if (!existed) ++node->chunks;
    if (bytes.size() < in_chunk + take) bytes.resize(in_chunk + take, '\0');
    bytes.replace(in_chunk, take, data.substr(pos - offset, take));
    batch->Put(ChunkKey(node->id, chunk), bytes);
    if (chunk == 0) have_pending0 = false;
    pos += take;
  }
  if (have_pending0) {
    batch->Put(ChunkKey(node->id, 0), pending0);
    ++node->chunks;
  }
  node->size = std::max(node->size, end);
  return Status::OK();
}

}  // namespace kvfs::fusefs
