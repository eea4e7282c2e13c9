// The B-tree's page format (FORMAT.md has every byte and the reasons): a 32-byte header on every
// page (CRC32C, type, count, page number, next, LSN), slotted leaf and internal nodes whose cells
// spill long payloads to overflow pages, free-list trunk pages and the meta page (page 0).
//
// Everything here works on one page image in memory and never touches a file. Decoders of bytes
// read from disk return kCorruption naming the page rather than reading out of bounds: a page
// that passed CheckPage may still hold a bad slot or cell, and every accessor that a damaged
// page could send out of bounds checks.
//
// Thread safety: plain functions over caller-owned buffers.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sync/status.h"
#include "sync/wal_format.h"

namespace kvfs::engines::btree {

using PageNo = uint32_t;
// An installed page image: immutable once the buffer pool holds it (copy on write).
using PageRef = std::shared_ptr<const std::string>;

inline constexpr size_t kDefaultPageSize = 4096;
inline constexpr size_t kMinPageSize = 512;
inline constexpr size_t kMaxPageSize = 32768;  // node offsets are 16 bits
inline constexpr size_t kPageHeaderSize = 32;

enum class PageType : uint8_t {
  kMeta = 1,
  kLeaf = 2,
  kInternal = 3,
  kOverflow = 4,
  kTrunk = 5,  // a free-list page: the numbers of free pages
  kFree = 6,   // a free page (its number is in a trunk)
};

// Header field offsets.
inline constexpr size_t kCrcOffset = 0;       // u32: CRC32C of bytes [4, page_size)
inline constexpr size_t kTypeOffset = 4;      // u8
inline constexpr size_t kCountOffset = 6;     // u16: cells (nodes) or entries (trunk)
inline constexpr size_t kPageNoOffset = 8;    // u32: the page's own number
inline constexpr size_t kNextOffset = 12;     // u32: leaf right sibling, internal leftmost
                                              // child, overflow/trunk next page (0 = none)
inline constexpr size_t kLsnOffset = 16;      // u64: LSN of the last batch that changed it
inline constexpr size_t kContentOffset = 24;  // u16: nodes: start of the cell area
inline constexpr size_t kGarbageOffset = 26;  // u16: nodes: dead bytes inside the cell area

using sync::wal::DecodeFixed32;
using sync::wal::DecodeFixed64;
using sync::wal::EncodeFixed32;
using sync::wal::EncodeFixed64;
inline uint16_t DecodeFixed16(const char* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
inline void EncodeFixed16(char* p, uint16_t v) { std::memcpy(p, &v, 2); }

// --- Header -------------------------------------------------------------------------------------

inline PageType TypeOf(const char* p) { return static_cast<PageType>(p[kTypeOffset]); }
inline uint16_t CountOf(const char* p) { return DecodeFixed16(p + kCountOffset); }
inline PageNo NextOf(const char* p) { return DecodeFixed32(p + kNextOffset); }
inline uint64_t LsnOf(const char* p) { return DecodeFixed64(p + kLsnOffset); }
inline void SetCount(char* p, uint16_t n) { EncodeFixed16(p + kCountOffset, n); }
inline void SetNext(char* p, PageNo n) { EncodeFixed32(p + kNextOffset, n); }

// Zeroes `p` and writes a header of `type` for page `pgno` (nodes: an empty cell area).
void InitPage(char* p, size_t page_size, PageType type, PageNo pgno);
// Stamps the LSN and the CRC32C: the last thing done to an image before it is installed.
void SealPage(char* p, size_t page_size, uint64_t lsn);
// Whether a page read at `offset` of `path` is sound: its CRC, its own number, a known type,
// and its LSN below `lsn_bound` (the checkpoint the page file is at: a page of a later state
// came from a checkpoint that was never recorded). kCorruption naming the file and offset.
Status CheckPage(const char* p, size_t page_size, PageNo pgno, uint64_t lsn_bound,
                 const std::string& path, uint64_t offset);

// --- Payload spill ------------------------------------------------------------------------------

// Bytes an overflow page carries.
inline size_t OverflowCapacity(size_t page_size) { return page_size - kPageHeaderSize; }
// The largest payload kept whole in a cell: a quarter of a page less the cell's fixed bytes, so
// that any four cells fit a page and every split leaves two non-empty halves.
inline size_t MaxLocal(size_t page_size) { return (page_size - kPageHeaderSize) / 4 - 24; }
// How many of a payload's bytes stay in the cell (the rest go to overflow pages). Whole up to
// MaxLocal. Beyond it, the local part is chosen so that the spilled rest fills whole overflow
// pages (SQLite's rule), with the key kept local whenever it is at most MaxLocal: a 17-byte key
// with a 4096-byte value fills exactly one 4 KiB overflow page.
size_t LocalSize(size_t key_size, size_t payload_size, size_t page_size);
inline size_t OverflowPages(size_t spilled, size_t page_size) {
  return (spilled + OverflowCapacity(page_size) - 1) / OverflowCapacity(page_size);
}

// --- Cells --------------------------------------------------------------------------------------
//
// leaf cell:     key_size(4) value_size(4) local payload [first overflow page(4)]
// internal cell: child(4) key_size(4) local key [first overflow page(4)]
// The payload is key then value (internal: the key alone); the local part is LocalSize bytes.

struct Cell {
  uint32_t key_size = 0;
  uint32_t value_size = 0;  // leaves only
  PageNo child = 0;         // internal only
  std::string_view local;   // the local payload bytes
  PageNo overflow = 0;      // first overflow page, 0 when the payload is whole
  size_t size = 0;          // the cell's bytes in the page

  size_t payload_size() const { return size_t{key_size} + value_size; }
  bool key_is_local() const { return local.size() >= key_size; }
  std::string_view local_key() const { return local.substr(0, key_size); }
};

// Builds a cell; `local` must be LocalSize bytes of the payload and `overflow` set iff spilled.
std::string EncodeLeafCell(uint32_t key_size, uint32_t value_size, std::string_view local,
                           PageNo overflow);
std::string EncodeInternalCell(PageNo child, uint32_t key_size, std::string_view local,
                               PageNo overflow);

// --- Slotted nodes (leaf and internal) ----------------------------------------------------------

// The cell in slot `i`, bounds-checked against the page (kCorruption naming page `pgno`).
Result<Cell> NodeCell(const char* p, size_t page_size, int i);
// Bytes free for one more cell (its slot included), counting garbage that a compaction frees.
size_t NodeFree(const char* p, size_t page_size);
// Bytes the live cells and their slots use.
size_t NodeUsed(const char* p, size_t page_size);
// Inserts `cell` at slot `i` (0 <= i <= count), compacting first if the gap is too small.
// False (page unchanged) if it does not fit.
bool NodeInsert(char* p, size_t page_size, int i, std::string_view cell);
// Removes slot `i`; its bytes become garbage.
Status NodeRemove(char* p, size_t page_size, int i);
// Rewrites the page's cells as `cells`, in order, keeping type, number and next.
void NodeBuild(char* p, size_t page_size, const std::vector<std::string>& cells);
// Every cell's bytes, in slot order.
Result<std::vector<std::string>> NodeCells(const char* p, size_t page_size);
// The child page of child index `i`: 0 is the leftmost (header), i > 0 is cell i-1's child.
Result<PageNo> ChildAt(const char* p, size_t page_size, int i);
// Sets the child of cell `i` in place (the cell's first 4 bytes).
Status SetCellChild(char* p, size_t page_size, int i, PageNo child);

// --- Meta page (page 0) -------------------------------------------------------------------------

inline constexpr char kMetaMagic[8] = {'k', 'v', 'f', 's', 'B', 'T', 'R', '1'};
inline constexpr uint32_t kFormatVersion = 1;

struct Meta {
  uint32_t page_size = kDefaultPageSize;
  PageNo root = 0;          // 0: the tree is empty
  uint32_t height = 0;      // levels, leaves included; 0 when empty
  uint32_t page_count = 1;  // pages [0, page_count) exist (allocated, in use or free)
  PageNo free_head = 0;     // first trunk page, 0 when the free list is empty
  uint32_t free_count = 0;  // free pages, trunks included
  uint64_t live_keys = 0;
};

void EncodeMeta(char* p, const Meta& m);
Result<Meta> DecodeMeta(const char* p, size_t page_size);

// --- Free-list trunk ----------------------------------------------------------------------------

inline size_t TrunkCapacity(size_t page_size) { return (page_size - kPageHeaderSize) / 4; }
inline PageNo TrunkEntry(const char* p, int i) {
  return DecodeFixed32(p + kPageHeaderSize + 4 * static_cast<size_t>(i));
}
inline void SetTrunkEntry(char* p, int i, PageNo pg) {
  EncodeFixed32(p + kPageHeaderSize + 4 * static_cast<size_t>(i), pg);
}

const char* PageTypeName(PageType t);

}  // namespace kvfs::engines::btree
