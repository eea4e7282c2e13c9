// The file layout's decoders (fusefs/layout.h) on arbitrary bytes, and their round trips.
//
// The input is tried as a node value (DecodeNode), an 8-byte integer value (DecodeU64), a node
// key (PathOfNodeKey), an orphan key (IdOfOrphanKey) and an xattr key (IdOfXattrKey).
// Properties:
// - every decoder returns; DecodeNode allocates no more than the input justifies;
// - a decoded node re-encodes to a value that decodes to the same node, no longer than the
//   input; a decoded u64 re-encodes to the input; a decoded node key is NodeKey of its path;
// - values and keys built from the input (a node with xattrs and inline data, a path of
//   valid names) decode back to themselves.
#include <fuzzer/FuzzedDataProvider.h>

#include <string>

#include "fusefs/layout.h"
#include "tests/fuzz/fuzz_util.h"

namespace kvfs::fuzz {
namespace {

using fusefs::Node;
using fusefs::NodeType;

void CheckDecoders(std::string_view input) {
  auto node = fusefs::DecodeNode(input, "Mfuzz");
  // A version-1 directory's link count is not in its record (0, counted by FileStore): give it
  // one, as the layout upgrade does, before the round trip.
  if (node.ok() && node->type == NodeType::kDirectory && node->nlink == 0) node->nlink = 2;
  if (node.ok() && node->chunks == fusefs::kUnknownChunks) node->chunks = 0;  // likewise
  // A version-1 or -2 node's xattr set moves to keys (the upgrade); its totals stay.
  if (node.ok()) node->inline_xattrs.clear();
  if (node.ok()) {
    const std::string enc = fusefs::EncodeNode(*node);
    // A version-1 node re-encodes in version 3 with nlink, rdev and chunks (20 bytes) added;
    // versions 1 and 2 with the three xattr fields (16 bytes) for their set (at least 4).
    const size_t added = (input[0] == 1 ? 20 : 0) + (input[0] < 3 ? 12 : 0);
    FUZZ_CHECK(enc.size() <= input.size() + added, "re-encoded node is longer than its input");
    auto again = fusefs::DecodeNode(enc, "Mfuzz");
    FUZZ_CHECK(again.ok(), again.status().ToString());
    FUZZ_CHECK(*again == *node, "node round trip");
  } else {
    FUZZ_CHECK(node.status().IsCorruption(), node.status().ToString());
  }

  auto u = fusefs::DecodeU64(input, "N");
  FUZZ_CHECK(u.ok() == (input.size() == 8), "DecodeU64 length rule");
  if (u.ok()) FUZZ_CHECK(fusefs::EncodeU64(*u) == input, "u64 round trip");

  auto path = fusefs::PathOfNodeKey(input);
  if (path.ok()) {
    FUZZ_CHECK(fusefs::NodeKey(*path) == input, "PathOfNodeKey(" + fusefs::EscapeKey(input) +
                                                    ") = '" + fusefs::EscapeKey(*path) +
                                                    "', whose NodeKey is another key");
  }

  auto id = fusefs::IdOfOrphanKey(input);
  if (id.ok()) FUZZ_CHECK(fusefs::OrphanKey(*id) == input, "orphan key round trip");
  auto xid = fusefs::IdOfXattrKey(input);
  if (xid.ok()) {
    FUZZ_CHECK(fusefs::XattrKey(*xid, input.substr(9)) == input, "xattr key round trip");
  }
}

void CheckRoundTrips(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  Node n;
  n.type = static_cast<NodeType>(in.ConsumeIntegralInRange<uint8_t>(1, 3));
  n.mode = in.ConsumeIntegral<uint32_t>() & 07777;
  n.uid = in.ConsumeIntegral<uint32_t>();
  n.gid = in.ConsumeIntegral<uint32_t>();
  n.id = in.ConsumeIntegral<uint64_t>();
  n.atime_ns = in.ConsumeIntegral<int64_t>();
  n.mtime_ns = in.ConsumeIntegral<int64_t>();
  n.ctime_ns = in.ConsumeIntegral<int64_t>();
  n.data_inline = in.ConsumeBool();
  n.nlink = n.type == NodeType::kDirectory ? in.ConsumeIntegralInRange<uint32_t>(2, UINT32_MAX)
                                           : in.ConsumeIntegralInRange<uint32_t>(1, UINT32_MAX);
  n.rdev = in.ConsumeIntegral<uint64_t>();
  n.xattr_count = in.ConsumeIntegralInRange<uint32_t>(0, 4096);
  if (n.xattr_count > 0) {
    n.xattr_name_bytes = in.ConsumeIntegralInRange<uint32_t>(n.xattr_count, UINT32_MAX);
    n.xattr_value_bytes = in.ConsumeIntegral<uint64_t>();
  }
  n.inline_data = in.ConsumeRandomLengthString(fusefs::kInlineMax);
  n.size = n.type == NodeType::kFile && n.data_inline
               ? n.inline_data.size()
               : in.ConsumeIntegralInRange<uint64_t>(0, fusefs::kMaxFileSize);
  if (n.type == NodeType::kFile && !n.data_inline) {
    n.chunks = in.ConsumeIntegralInRange<uint64_t>(
        0, (n.size + fusefs::kChunkSize - 1) / fusefs::kChunkSize);
  }
  auto back = fusefs::DecodeNode(fusefs::EncodeNode(n), "Mbuilt");
  FUZZ_CHECK(back.ok(), back.status().ToString());
  FUZZ_CHECK(*back == n, "built node round trip");

  // A path of valid names: its key decodes back to it.
  std::string p;
  const int depth = in.ConsumeIntegralInRange(1, 6);
  for (int i = 0; i < depth; ++i) {
    std::string name = in.ConsumeRandomLengthString(fusefs::kMaxNameLength);
    if (!fusefs::ValidateName(name).ok()) continue;
    p = fusefs::JoinPath(p, name);
  }
  auto decoded = fusefs::PathOfNodeKey(fusefs::NodeKey(p));
  FUZZ_CHECK(decoded.ok() && *decoded == p, "path round trip: " + fusefs::EscapeKey(p));
  FUZZ_CHECK(
      fusefs::NodeKey(p).rfind(fusefs::ChildrenPrefix(fusefs::ParentOf(p)), 0) == 0 || p.empty(),
      "a node key is under its parent's children prefix");
}

}  // namespace
}  // namespace kvfs::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kvfs::fuzz::CheckDecoders(kvfs::fuzz::AsView(data, size));
  kvfs::fuzz::CheckRoundTrips(data, size);
  return 0;
}
