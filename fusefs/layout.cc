#include "fusefs/layout.h"

#include <cstdio>
#include <cstring>

namespace kvfs::fusefs {

namespace {

constexpr uint8_t kNodeVersion1 = 1;
constexpr uint8_t kNodeVersion2 = 2;
constexpr uint8_t kNodeVersion = 3;
constexpr uint8_t kFlagInline = 1;
constexpr uint8_t kFlagLinked = 2;

void PutFixed(std::string* out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}

// Reads little-endian fields off the front of a buffer; any overrun sets `bad`.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  uint64_t Fixed(int bytes) {
    if (in_.size() < static_cast<size_t>(bytes)) {
      bad_ = true;
      return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v |= uint64_t{static_cast<uint8_t>(in_[i])} << (8 * i);
    in_.remove_prefix(bytes);
    return v;
  }
  std::string_view Bytes(uint64_t n) {
    if (in_.size() < n) {
      bad_ = true;
      return {};
    }
    std::string_view out = in_.substr(0, n);
    in_.remove_prefix(n);
    return out;
  }
  bool bad() const { return bad_; }
  size_t left() const { return in_.size(); }

 private:
  std::string_view in_;
  bool bad_ = false;
};

std::string_view Hex(std::string_view key, std::string* buf) {
  // Keys carry NULs and ids: print them escaped so a message stays one readable line.
  for (char c : key.substr(0, 200)) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f && c != '\\') {
      buf->push_back(c);
    } else {
      char h[8];
      std::snprintf(h, sizeof(h), "\\x%02x", u);
      buf->append(h);
    }
  }
  return *buf;
}

}  // namespace

std::string EscapeKey(std::string_view key) {
  std::string buf;
  Hex(key, &buf);
  return buf;
}

std::string NodeKey(std::string_view path) {
  if (path.empty()) return "R";
  std::string key = "M";
  key.append(ParentOf(path));
  key.push_back('\0');
  key.append(NameOf(path));
  return key;
}

std::string ChildrenPrefix(std::string_view dir_path) {
  std::string key = "M";
  key.append(dir_path);
  key.push_back('\0');
  return key;
}

std::string SubtreePrefix(std::string_view dir_path) {
  std::string key = "M";
  key.append(dir_path);
  key.push_back('/');
  return key;
}

std::string SubtreeBase(std::string_view dir_path) { return "M" + std::string(dir_path); }

namespace {
constexpr uint8_t kMoveVersion = 1;
constexpr uint8_t kMoveRename = 1;
constexpr uint8_t kMoveExchange = 2;
}  // namespace

std::string EncodeMove(const MoveRecord& m) {
  std::string out;
  out.push_back(static_cast<char>(kMoveVersion));
  out.push_back(static_cast<char>(m.exchange ? kMoveExchange : kMoveRename));
  out.push_back(static_cast<char>(m.phase));
  PutFixed(&out, m.from.size(), 4);
  out.append(m.from);
  PutFixed(&out, m.to.size(), 4);
  out.append(m.to);
  return out;
}

Result<MoveRecord> DecodeMove(std::string_view value) {
  Reader r(value);
  const uint64_t version = r.Fixed(1);
  const uint64_t kind = r.Fixed(1);
  MoveRecord m;
  m.phase = static_cast<uint8_t>(r.Fixed(1));
  m.from = std::string(r.Bytes(r.Fixed(4)));
  m.to = std::string(r.Bytes(r.Fixed(4)));
  if (r.bad() || r.left() != 0 || version != kMoveVersion ||
      (kind != kMoveRename && kind != kMoveExchange) || m.from.empty() || m.to.empty() ||
      m.phase > (kind == kMoveExchange ? 2 : 0)) {
    return Status::Corruption("key Y: malformed move record '" + EscapeKey(value) + "'");
  }
  m.exchange = kind == kMoveExchange;
  return m;
}

std::string EncodeU64(uint64_t v) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(v >> (56 - 8 * i));
  return out;
}

Result<uint64_t> DecodeU64(std::string_view bytes, std::string_view key) {
  if (bytes.size() != 8) {
    return Status::Corruption("key " + EscapeKey(key) + ": expected 8 bytes, found " +
                              std::to_string(bytes.size()));
  }
  uint64_t v = 0;
  for (char c : bytes) v = (v << 8) | static_cast<uint8_t>(c);
  return v;
}

std::string ChunkPrefix(uint64_t id) { return "D" + EncodeU64(id); }

std::string ChunkKey(uint64_t id, uint64_t chunk) { return ChunkPrefix(id) + EncodeU64(chunk); }

std::string OrphanKey(uint64_t id) { return std::string(kOrphanPrefix) + EncodeU64(id); }
std::string PurgeKey(uint64_t id) { return std::string(kPurgePrefix) + EncodeU64(id); }

std::string EncodePurgeRecord(const PurgeRecord& r) {
  std::string v = EncodeU64(r.first);
  if (r.truncate) v.push_back('T');
  return v;
}

Result<PurgeRecord> DecodePurgeRecord(std::string_view value, std::string_view key) {
  PurgeRecord r;
  if (value.size() == 9 && value[8] == 'T') {
    r.truncate = true;
    value.remove_suffix(1);
  }
  if (value.size() != 8) {
    return Status::Corruption("purge record " + EscapeKey(key) +
                              ": expected 8 bytes, or 8 and 'T', found " +
                              std::to_string(value.size() + (r.truncate ? 1 : 0)) + " bytes");
  }
  KVFS_ASSIGN_OR_RETURN(r.first, DecodeU64(value, key));
  if (r.first > kMaxFileSize / kChunkSize) {
    return Status::Corruption("purge record " + EscapeKey(key) + ": first chunk " +
                              std::to_string(r.first) + " is past the largest file");
  }
  return r;
}

std::string SharedKey(uint64_t id) { return std::string(kSharedPrefix) + EncodeU64(id); }

std::string XattrPrefix(uint64_t id) { return std::string(kXattrPrefix) + EncodeU64(id); }

std::string XattrKey(uint64_t id, std::string_view name) {
  std::string key = XattrPrefix(id);
  key.append(name);
  return key;
}

Result<uint64_t> IdOfXattrKey(std::string_view key) {
  if (key.size() < 10 || key[0] != kXattrPrefix[0]) {
    return Status::InvalidArgument("not an xattr key: " + EscapeKey(key));
  }
  return DecodeU64(key.substr(1, 8), key);
}

Result<std::string> PathOfNodeKey(std::string_view key) {
  if (key == "R") return std::string();
  if (key.size() < 3 || key[0] != 'M') {
    return Status::InvalidArgument("not a node key: " + EscapeKey(key));
  }
  const size_t nul = key.find('\0', 1);
  // A name holding '/' is no key NodeKey makes: its path would have another key.
  if (nul == std::string_view::npos || nul + 1 == key.size() ||
      key.find('/', nul + 1) != std::string_view::npos) {
    return Status::InvalidArgument("not a node key: " + EscapeKey(key));
  }
  return JoinPath(key.substr(1, nul - 1), key.substr(nul + 1));
}

Result<uint64_t> IdOfOrphanKey(std::string_view key) {
  if (key.size() != 9 || key[0] != kOrphanPrefix[0]) {
    return Status::InvalidArgument("not an orphan key: " + EscapeKey(key));
  }
  return DecodeU64(key.substr(1), key);
}

Result<uint64_t> IdOfPurgeKey(std::string_view key) {
  if (key.size() != 9 || key[0] != kPurgePrefix[0]) {
    return Status::InvalidArgument("not a purge key: " + EscapeKey(key));
  }
  return DecodeU64(key.substr(1), key);
}

std::string JoinPath(std::string_view dir, std::string_view name) {
  std::string out(dir);
  if (!out.empty()) out.push_back('/');
  out.append(name);
  return out;
}

std::string_view ParentOf(std::string_view path) {
  const size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? std::string_view() : path.substr(0, slash);
}

std::string_view NameOf(std::string_view path) {
  const size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

Status ValidateName(std::string_view name) {
  if (name.size() > kMaxNameLength) {
    return Status(StatusCode::kInvalidArgument,
                  "name longer than " + std::to_string(kMaxNameLength) + " bytes", ENAMETOOLONG);
  }
  if (name.empty() || name == "." || name == ".." ||
      name.find_first_of(std::string_view("/\0", 2)) != std::string_view::npos) {
    return Status::InvalidArgument("invalid name '" + EscapeKey(name) + "'");
  }
  return Status::OK();
}

std::string EncodeNode(const Node& node) {
  std::string out;
  out.reserve(64 + node.inline_data.size());
  PutFixed(&out, kNodeVersion, 1);
  PutFixed(&out, static_cast<uint8_t>(node.type), 1);
  PutFixed(&out, node.mode, 4);
  PutFixed(&out, node.uid, 4);
  PutFixed(&out, node.gid, 4);
  PutFixed(&out, node.id, 8);
  PutFixed(&out, node.size, 8);
  PutFixed(&out, static_cast<uint64_t>(node.atime_ns), 8);
  PutFixed(&out, static_cast<uint64_t>(node.mtime_ns), 8);
  PutFixed(&out, static_cast<uint64_t>(node.ctime_ns), 8);
  PutFixed(&out, (node.data_inline ? kFlagInline : 0) | (node.linked ? kFlagLinked : 0), 1);
  PutFixed(&out, node.nlink, 4);
  PutFixed(&out, node.rdev, 8);
  PutFixed(&out, node.chunks, 8);
  PutFixed(&out, node.xattr_count, 4);
  PutFixed(&out, node.xattr_name_bytes, 4);
  PutFixed(&out, node.xattr_value_bytes, 8);
  PutFixed(&out, node.inline_data.size(), 4);
  out.append(node.inline_data);
  return out;
}

std::string EncodeLinkStub(const Node& node) {
  Node stub;
  stub.type = node.type;
  stub.id = node.id;
  stub.linked = true;
  return EncodeNode(stub);
}

std::string EncodeShared(const Node& node) {
  Node shared = node;
  shared.linked = false;
  return EncodeNode(shared);
}

Result<Node> DecodeNode(std::string_view value, std::string_view key) {
  auto bad = [&](const std::string& what) {
    return Status::Corruption("node " + EscapeKey(key) + ": " + what);
  };
  Reader r(value);
  Node n;
  const uint64_t version = r.Fixed(1);
  if (!r.bad() && version != kNodeVersion && version != kNodeVersion2 && version != kNodeVersion1) {
    return bad("unknown node version " + std::to_string(version));
  }
  const uint64_t type = r.Fixed(1);
  // Special files came with version 2.
  const uint64_t last_type = version == kNodeVersion1 ? 3 : kLastNodeType;
  if (!r.bad() && (type < 1 || type > last_type)) {
    return bad("unknown node type " + std::to_string(type));
  }
  n.type = static_cast<NodeType>(type);
  n.mode = static_cast<uint32_t>(r.Fixed(4));
  if (n.mode & ~07777u) return bad("mode has bits outside 07777");
  n.uid = static_cast<uint32_t>(r.Fixed(4));
  n.gid = static_cast<uint32_t>(r.Fixed(4));
  n.id = r.Fixed(8);
  n.size = r.Fixed(8);
  n.atime_ns = static_cast<int64_t>(r.Fixed(8));
  n.mtime_ns = static_cast<int64_t>(r.Fixed(8));
  n.ctime_ns = static_cast<int64_t>(r.Fixed(8));
  const uint64_t flags = r.Fixed(1);
  const uint64_t known_flags = version == kNodeVersion1 ? kFlagInline : kFlagInline | kFlagLinked;
  if (flags & ~known_flags) return bad("unknown flags");
  n.data_inline = (flags & kFlagInline) != 0;
  n.linked = (flags & kFlagLinked) != 0;
  if (version != kNodeVersion1) {
    n.nlink = static_cast<uint32_t>(r.Fixed(4));
    n.rdev = r.Fixed(8);
    n.chunks = r.Fixed(8);
  } else {
    n.nlink = n.type == NodeType::kDirectory ? 0 : 1;  // a directory's is counted by FileStore
    n.chunks = n.type == NodeType::kFile && !n.data_inline ? kUnknownChunks : 0;
  }
  if (version == kNodeVersion) {
    n.xattr_count = static_cast<uint32_t>(r.Fixed(4));
    n.xattr_name_bytes = static_cast<uint32_t>(r.Fixed(4));
    n.xattr_value_bytes = r.Fixed(8);
    // Every name has a byte at least; no names, no bytes.
    if (n.xattr_name_bytes < n.xattr_count ||
        (n.xattr_count == 0 && (n.xattr_name_bytes != 0 || n.xattr_value_bytes != 0))) {
      return bad("xattr totals out of range (" + std::to_string(n.xattr_count) + " names of " +
                 std::to_string(n.xattr_name_bytes) + " bytes, values of " +
                 std::to_string(n.xattr_value_bytes) + " bytes)");
    }
  } else {
    // Versions 1 and 2: the set itself.
    const uint64_t xattrs = r.Fixed(4);
    // Each xattr takes at least 6 bytes: a count beyond that is garbage, not an allocation.
    if (xattrs > r.left() / 6) return bad("xattr count " + std::to_string(xattrs) + " overruns");
    for (uint64_t i = 0; i < xattrs && !r.bad(); ++i) {
      std::string_view name = r.Bytes(r.Fixed(2));
      std::string_view val = r.Bytes(r.Fixed(4));
      // The kernel never passes an empty name (ERANGE): one here is damage, and it could not
      // be counted in the version-3 totals (every name a byte at least).
      if (!r.bad() && name.empty()) return bad("an xattr with an empty name");
      if (n.inline_xattrs.emplace(name, val).second) {
        ++n.xattr_count;
        n.xattr_name_bytes += static_cast<uint32_t>(name.size());
        n.xattr_value_bytes += val.size();
      }
    }
  }
  const uint64_t inline_len = r.Fixed(4);
  n.inline_data = std::string(r.Bytes(inline_len));
  if (r.bad()) return bad("truncated record (" + std::to_string(value.size()) + " bytes)");
  if (r.left() != 0) return bad(std::to_string(r.left()) + " trailing bytes");
  if (n.type == NodeType::kFile && n.data_inline && n.inline_data.size() != n.size) {
    return bad("inline data of " + std::to_string(n.inline_data.size()) + " bytes, size " +
               std::to_string(n.size));
  }
  if (version != kNodeVersion1 && n.type == NodeType::kDirectory && n.nlink < 2) {
    return bad("directory link count " + std::to_string(n.nlink));
  }
  if (version != kNodeVersion1 && n.type != NodeType::kDirectory && n.nlink == 0) {
    return bad("link count 0");
  }
  if (n.linked && (n.type == NodeType::kDirectory || n.size != 0 || !n.inline_data.empty() ||
                   n.xattr_count != 0 || n.nlink != 1)) {
    return bad("a link stub with more than a type and an id");
  }
  if (version != kNodeVersion1 && n.chunks != 0 &&
      (n.type != NodeType::kFile || n.data_inline ||
       n.chunks > (n.size + kChunkSize - 1) / kChunkSize)) {
    return bad(std::to_string(n.chunks) + " chunks for " + std::to_string(n.size) + " bytes");
  }
  if (IsSpecial(n.type) && (n.size != 0 || !n.inline_data.empty())) {
    return bad("a special file with data");
  }
  if (n.size > kMaxFileSize) return bad("size " + std::to_string(n.size) + " beyond the limit");
  return n;
}

}  // namespace kvfs::fusefs
