#include "engines/btree/page.h"

#include <algorithm>

#include "sync/crc32c.h"

namespace kvfs::engines::btree {
namespace {

size_t SlotPos(int i) { return kPageHeaderSize + 2 * static_cast<size_t>(i); }
uint16_t ContentStart(const char* p) { return DecodeFixed16(p + kContentOffset); }
uint16_t Garbage(const char* p) { return DecodeFixed16(p + kGarbageOffset); }

Status BadNode(const char* p, std::string_view what) {
  return Status::Corruption("page " + std::to_string(DecodeFixed32(p + kPageNoOffset)) + ": " +
                            std::string(what));
}

}  // namespace

const char* PageTypeName(PageType t) {
  switch (t) {
    case PageType::kMeta:
      return "meta";
    case PageType::kLeaf:
      return "leaf";
    case PageType::kInternal:
      return "internal";
    case PageType::kOverflow:
      return "overflow";
    case PageType::kTrunk:
      return "free-list trunk";
    case PageType::kFree:
      return "free";
  }
  return "unknown";
}

void InitPage(char* p, size_t page_size, PageType type, PageNo pgno) {
  std::memset(p, 0, page_size);
  p[kTypeOffset] = static_cast<char>(type);
  EncodeFixed32(p + kPageNoOffset, pgno);
  if (type == PageType::kLeaf || type == PageType::kInternal) {
    EncodeFixed16(p + kContentOffset, static_cast<uint16_t>(page_size));
  }
}

void SealPage(char* p, size_t page_size, uint64_t lsn) {
  EncodeFixed64(p + kLsnOffset, lsn);
  EncodeFixed32(p + kCrcOffset, sync::crc32c::Value(p + 4, page_size - 4));
}

Status CheckPage(const char* p, size_t page_size, PageNo pgno, uint64_t lsn_bound,
                 const std::string& path, uint64_t offset) {
  const auto bad = [&](const std::string& what) {
    return Status::Corruption(path + " at offset " + std::to_string(offset) + " (page " +
                              std::to_string(pgno) + "): " + what);
  };
  if (DecodeFixed32(p + kCrcOffset) != sync::crc32c::Value(p + 4, page_size - 4)) {
    return bad("page checksum mismatch (a torn or damaged page)");
  }
  if (DecodeFixed32(p + kPageNoOffset) != pgno) {
    return bad("holds page " + std::to_string(DecodeFixed32(p + kPageNoOffset)));
  }
  const auto type = static_cast<uint8_t>(p[kTypeOffset]);
  if (type < static_cast<uint8_t>(PageType::kMeta) ||
      type > static_cast<uint8_t>(PageType::kFree)) {
    return bad("unknown page type " + std::to_string(type));
  }
  if (lsn_bound != 0 && LsnOf(p) >= lsn_bound) {
    return bad("page LSN " + std::to_string(LsnOf(p)) + " is past the checkpoint (redo LSN " +
               std::to_string(lsn_bound) + ")");
  }
  const PageType t = TypeOf(p);
  if (t == PageType::kLeaf || t == PageType::kInternal) {
    const size_t n = CountOf(p);
    const size_t start = ContentStart(p);
    if (SlotPos(static_cast<int>(n)) > start || start > page_size || Garbage(p) > page_size) {
      return bad("slot directory overlaps the cell area");
    }
  }
  if (t == PageType::kTrunk && CountOf(p) > TrunkCapacity(page_size)) {
    return bad("free-list trunk holds more entries than fit");
  }
  return Status::OK();
}

size_t LocalSize(size_t key_size, size_t payload_size, size_t page_size) {
  const size_t max_local = MaxLocal(page_size);
  if (payload_size <= max_local) return payload_size;
  const size_t min_local = std::max<size_t>(32, std::min(key_size, max_local));
  size_t local = min_local + (payload_size - min_local) % OverflowCapacity(page_size);
  if (local > max_local) local = min_local;
  return local;
}

namespace {

// Both cell kinds: two 4-byte fields, the local bytes, then the first overflow page if any.
std::string EncodeCell(uint32_t first, uint32_t second, std::string_view local, PageNo overflow) {
  std::string c(8, '\0');
  EncodeFixed32(c.data(), first);
  EncodeFixed32(c.data() + 4, second);
  c.append(local);
  if (overflow != 0) {
    char b[4];
    EncodeFixed32(b, overflow);
    c.append(b, 4);
  }
  return c;
}

}  // namespace

std::string EncodeLeafCell(uint32_t key_size, uint32_t value_size, std::string_view local,
                           PageNo overflow) {
  return EncodeCell(key_size, value_size, local, overflow);
}

std::string EncodeInternalCell(PageNo child, uint32_t key_size, std::string_view local,
                               PageNo overflow) {
  return EncodeCell(child, key_size, local, overflow);
}

Result<Cell> NodeCell(const char* p, size_t page_size, int i) {
  if (i < 0 || i >= CountOf(p)) return BadNode(p, "slot " + std::to_string(i) + " out of range");
  const size_t off = DecodeFixed16(p + SlotPos(i));
  if (off < ContentStart(p) || off + 8 > page_size) {
    return BadNode(p, "slot " + std::to_string(i) + " points outside the cell area");
  }
  Cell c;
  const char* q = p + off;
  size_t payload = 0;
  if (TypeOf(p) == PageType::kLeaf) {
    c.key_size = DecodeFixed32(q);
    c.value_size = DecodeFixed32(q + 4);
    payload = size_t{c.key_size} + c.value_size;
  } else {
    c.child = DecodeFixed32(q);
    c.key_size = DecodeFixed32(q + 4);
    payload = c.key_size;
  }
  const size_t local = LocalSize(c.key_size, payload, page_size);
  const bool spilled = local < payload;
  c.size = 8 + local + (spilled ? 4 : 0);
  if (off + c.size > page_size) {
    return BadNode(p, "cell " + std::to_string(i) + " runs past the page end");
  }
  c.local = std::string_view(q + 8, local);
  if (spilled) c.overflow = DecodeFixed32(q + 8 + local);
  return c;
}

size_t NodeFree(const char* p, size_t /*page_size*/) {
  const size_t used_end = SlotPos(CountOf(p));
  const size_t start = ContentStart(p);
  return (start > used_end ? start - used_end : 0) + Garbage(p);
}

size_t NodeUsed(const char* p, size_t page_size) {
  return page_size - kPageHeaderSize - NodeFree(p, page_size);
}

Result<std::vector<std::string>> NodeCells(const char* p, size_t page_size) {
  std::vector<std::string> cells;
  const int n = CountOf(p);
  cells.reserve(n);
  for (int i = 0; i < n; ++i) {
    KVFS_ASSIGN_OR_RETURN(Cell c, NodeCell(p, page_size, i));
    const size_t off = DecodeFixed16(p + SlotPos(i));
    cells.emplace_back(p + off, c.size);
  }
  return cells;
}

void NodeBuild(char* p, size_t page_size, const std::vector<std::string>& cells) {
  size_t start = page_size;
  // The cells may point into this very page: build into a copy first.
  std::string out(page_size, '\0');
  std::memcpy(out.data(), p, kPageHeaderSize);
  for (size_t i = 0; i < cells.size(); ++i) {
    start -= cells[i].size();
    std::memcpy(out.data() + start, cells[i].data(), cells[i].size());
    EncodeFixed16(out.data() + SlotPos(static_cast<int>(i)), static_cast<uint16_t>(start));
  }
  SetCount(out.data(), static_cast<uint16_t>(cells.size()));
  EncodeFixed16(out.data() + kContentOffset, static_cast<uint16_t>(start));
  EncodeFixed16(out.data() + kGarbageOffset, 0);
  std::memcpy(p, out.data(), page_size);
}

bool NodeInsert(char* p, size_t page_size, int i, std::string_view cell) {
  const int n = CountOf(p);
  const size_t need = cell.size() + 2;
  if (need > NodeFree(p, page_size)) return false;
  size_t start = ContentStart(p);
  if (start < SlotPos(n + 1) + cell.size()) {
    // Enough room only once the garbage is squeezed out.
    Result<std::vector<std::string>> cells = NodeCells(p, page_size);
    if (!cells.ok()) return false;
    NodeBuild(p, page_size, *cells);
    start = ContentStart(p);
  }
  start -= cell.size();
  std::memcpy(p + start, cell.data(), cell.size());
  std::memmove(p + SlotPos(i + 1), p + SlotPos(i), 2 * static_cast<size_t>(n - i));
  EncodeFixed16(p + SlotPos(i), static_cast<uint16_t>(start));
  EncodeFixed16(p + kContentOffset, static_cast<uint16_t>(start));
  SetCount(p, static_cast<uint16_t>(n + 1));
  return true;
}

Status NodeRemove(char* p, size_t page_size, int i) {
  KVFS_ASSIGN_OR_RETURN(Cell c, NodeCell(p, page_size, i));
  const int n = CountOf(p);
  std::memmove(p + SlotPos(i), p + SlotPos(i + 1), 2 * static_cast<size_t>(n - i - 1));
  SetCount(p, static_cast<uint16_t>(n - 1));
  EncodeFixed16(p + kGarbageOffset, static_cast<uint16_t>(Garbage(p) + c.size));
  if (n == 1) {  // empty: the whole cell area is free again
    EncodeFixed16(p + kContentOffset, static_cast<uint16_t>(page_size));
    EncodeFixed16(p + kGarbageOffset, 0);
  }
  return Status::OK();
}

Result<PageNo> ChildAt(const char* p, size_t page_size, int i) {
  if (i == 0) return NextOf(p);
  KVFS_ASSIGN_OR_RETURN(Cell c, NodeCell(p, page_size, i - 1));
  return c.child;
}

Status SetCellChild(char* p, size_t page_size, int i, PageNo child) {
  KVFS_ASSIGN_OR_RETURN(Cell c, NodeCell(p, page_size, i));
  (void)c;
  EncodeFixed32(p + DecodeFixed16(p + SlotPos(i)), child);
  return Status::OK();
}

void EncodeMeta(char* p, const Meta& m) {
  char* q = p + kPageHeaderSize;
  std::memcpy(q, kMetaMagic, 8);
  EncodeFixed32(q + 8, kFormatVersion);
  EncodeFixed32(q + 12, m.page_size);
  EncodeFixed32(q + 16, m.root);
  EncodeFixed32(q + 20, m.height);
  EncodeFixed32(q + 24, m.page_count);
  EncodeFixed32(q + 28, m.free_head);
  EncodeFixed32(q + 32, m.free_count);
  EncodeFixed32(q + 36, 0);
  EncodeFixed64(q + 40, m.live_keys);
}

Result<Meta> DecodeMeta(const char* p, size_t page_size) {
  const char* q = p + kPageHeaderSize;
  if (TypeOf(p) != PageType::kMeta || std::memcmp(q, kMetaMagic, 8) != 0) {
    return Status::Corruption("page 0 is not a B-tree meta page");
  }
  if (DecodeFixed32(q + 8) != kFormatVersion) {
    return Status::Corruption("meta page: unknown format version " +
                              std::to_string(DecodeFixed32(q + 8)));
  }
  Meta m;
  m.page_size = DecodeFixed32(q + 12);
  m.root = DecodeFixed32(q + 16);
  m.height = DecodeFixed32(q + 20);
  m.page_count = DecodeFixed32(q + 24);
  m.free_head = DecodeFixed32(q + 28);
  m.free_count = DecodeFixed32(q + 32);
  m.live_keys = DecodeFixed64(q + 40);
  if (m.page_size != page_size) {
    return Status::Corruption("meta page: page size " + std::to_string(m.page_size) +
                              " differs from the store's " + std::to_string(page_size));
  }
  if (m.page_count == 0 || m.root >= m.page_count || m.free_head >= m.page_count ||
      m.free_count >= m.page_count || (m.root == 0) != (m.height == 0)) {
    return Status::Corruption("meta page: inconsistent fields (root " + std::to_string(m.root) +
                              ", pages " + std::to_string(m.page_count) + ")");
  }
  return m;
}

}  // namespace kvfs::engines::btree
