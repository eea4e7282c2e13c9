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

std::optional<uint64_t> FileStore::Impl::TruncatedFrom(uint64_t id) {
  if (truncated_ids.load() == 0) return std::nullopt;
  MutexLock lock(&trunc_mu);
  auto it = truncated.find(id);
  if (it == truncated.end()) return std::nullopt;
  return it->second;
}

void FileStore::Impl::SetTruncatedFrom(uint64_t id, std::optional<uint64_t> first) {
  MutexLock lock(&trunc_mu);
  if (first) {
    truncated[id] = *first;
  } else {
    truncated.erase(id);
  }
  truncated_ids = truncated.size();
}

Status FileStore::Impl::LoadTruncated() {
  Status bad;
  engines::ScanOptions so;
  so.prefix = std::string(kPurgePrefix);
  KVFS_RETURN_IF_ERROR(engine->Scan(so, [&](std::string_view key, std::string_view value) {
    auto id = IdOfPurgeKey(key);
    if (!id.ok()) {
      bad = Status::Corruption(id.status().message());
      return false;
    }
    auto record = DecodePurgeRecord(value, key);
    if (!record.ok()) {
      bad = record.status();
      return false;
    }
    if (record->truncate) SetTruncatedFrom(*id, record->first);
    return true;
  }));
  return bad;
}

Status internal::ForChunksIn(engines::Engine* engine, uint64_t id, uint64_t from, uint64_t to,
                             absl::FunctionRef<bool(std::string_view, uint64_t)> fn) {
  Status bad;
  engines::ScanOptions so;
  so.prefix = ChunkPrefix(id);
  so.keys_only = true;
  if (from > 0) so.start_after = ChunkKey(id, from - 1);
  KVFS_RETURN_IF_ERROR(engine->Scan(so, [&](std::string_view key, std::string_view) {
    auto chunk = DecodeU64(key.substr(so.prefix.size()), key);
    if (!chunk.ok()) {
      bad = chunk.status();
      return false;
    }
    return *chunk < to && fn(key, *chunk);
  }));
  return bad;
}

Result<uint64_t> FileStore::Impl::CountChunks(uint64_t id, uint64_t from, uint64_t to) {
  uint64_t n = 0;
  KVFS_RETURN_IF_ERROR(
      internal::ForChunksIn(engine.get(), id, from, to, [&](std::string_view, uint64_t) {
        ++n;
        return true;
      }));
  return n;
}

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
  // Chunks at or past a pending truncate's first chunk are garbage: holes.
  const uint64_t garbage = TruncatedFrom(node.id).value_or(UINT64_MAX);
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
      if (*chunk > last || *chunk >= garbage) return false;
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
    if (chunk >= garbage) break;
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

Status FileStore::Impl::Resize(Node* node, uint64_t new_size, engines::WriteBatch* batch,
                               std::optional<uint64_t>* trunc_after) {
  if (new_size > kMaxFileSize)
    return Errno(EFBIG, "file size beyond " + std::to_string(kMaxFileSize));
  const uint64_t old_size = node->size;
  const std::optional<uint64_t> pending = TruncatedFrom(node->id);
  const uint64_t garbage = pending.value_or(UINT64_MAX);
  auto record = [&](uint64_t first) {
    batch->Put(PurgeKey(node->id), EncodePurgeRecord({first, /*truncate=*/true}));
    *trunc_after = first;
  };
  if (node->data_inline) {
    if (new_size <= kInlineMax) {
      node->inline_data.resize(new_size, '\0');
    } else {
      node->chunks = node->inline_data.empty() ? 0 : 1;
      if (!node->inline_data.empty()) {
        batch->Put(ChunkKey(node->id, 0), node->inline_data);
        // A record pending for an inline file starts at 0: chunk 0 is live again.
        if (garbage == 0) record(1);
      }
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
    // Every chunk is garbage now; with none live, a pending record already covers the rest.
    if (node->chunks > 0) record(0);
    node->data_inline = true;
    node->chunks = 0;
    node->size = new_size;
    return Status::OK();
  }
  const uint64_t keep = ChunkCount(new_size);
  // The live chunks dropped: those in [keep, end), where keys at or past a pending record's
  // first chunk are garbage already.
  const uint64_t end = std::min(garbage, ChunkCount(old_size));
  uint64_t dropped = 0;
  if (keep < end) {
    if (node->chunks == ChunkCount(old_size)) {
      dropped = end - keep;  // dense: every chunk below the old end is held
    } else if (keep <= end - keep) {
      KVFS_ASSIGN_OR_RETURN(uint64_t kept, CountChunks(node->id, 0, keep));
      dropped = node->chunks - std::min(kept, node->chunks);
    } else {
      KVFS_ASSIGN_OR_RETURN(dropped, CountChunks(node->id, keep, end));
    }
  }
  // No live key is left at or past `keep`, and none was past a pending record's first chunk.
  if (dropped > 0) record(keep);
  node->chunks -= std::min(node->chunks, dropped);
  if (new_size % kChunkSize != 0 && keep - 1 < garbage) {
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
  // Chunks at or past a pending truncate's first chunk are holes already (and not counted).
  const uint64_t garbage = TruncatedFrom(node->id).value_or(UINT64_MAX);
  if (first >= garbage) return Status::OK();
  const uint64_t last = std::min((to - 1) / kChunkSize, garbage - 1);
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
                                  engines::WriteBatch* batch,
                                  std::optional<uint64_t>* trunc_after) {
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
  // Chunks at or past a pending truncate's first chunk are garbage: never read, not counted.
  // This write puts chunks [lo, hi] (and chunk 0 of an inline file with data); if that reaches
  // the garbage, the garbage below `lo` goes first, so that moving the record past `hi` leaves
  // no old key below it.
  uint64_t garbage = TruncatedFrom(node->id).value_or(UINT64_MAX);
  const bool puts0 = node->data_inline && !node->inline_data.empty();
  if (!data.empty() || puts0) {
    const uint64_t lo = data.empty() ? 0 : offset / kChunkSize;
    const uint64_t hi = data.empty() ? 0 : (end - 1) / kChunkSize;
    if (hi >= garbage) {
      if (lo > garbage) {
        KVFS_RETURN_IF_ERROR(PurgeTruncatedNow(node->id, garbage, lo));
        garbage = lo;
      }
      batch->Put(PurgeKey(node->id), EncodePurgeRecord({hi + 1, /*truncate=*/true}));
      *trunc_after = hi + 1;
    }
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
      } else if (!was_inline && chunk * kChunkSize < node->size && chunk < garbage) {
        auto old = engine->Get(ChunkKey(node->id, chunk));
        if (old.ok()) {
          bytes = std::move(*old);
          existed = true;
        } else if (!old.status().IsNotFound()) {
          return old.status();
        }
      }
    } else if (!was_inline && chunk * kChunkSize < node->size && chunk < garbage) {
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
