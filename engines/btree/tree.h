// The B+tree over the pager: lookups, leaf-linked range scans, inserts with splits, deletes
// with merges, overflow chains, the free list, and the verifier behind `kvfs check`.
//
// The tree never touches a file: it reads pages through a PageReader and changes them only in a
// Txn, a private copy-on-write set of page images that the engine installs in the pool as a
// whole once the batch is in the log (or drops, on any failure: nothing to undo).
//
// Shape (FORMAT.md): leaves hold (key, value) cells in key order and link to their right
// sibling; an internal node with separators s_1 < ... < s_n has children c_0 ... c_n, and every
// key k under c_i has s_i <= k < s_{i+1}. Separators are the shortest prefix of the right
// half's first key that is above the left half's last key. Payloads longer than MaxLocal spill
// to overflow chains (page.h). A node less than a quarter full after a delete is merged into its
// left (or right) sibling when both fit one page; there is no redistribution. An empty root leaf
// is freed (root 0); a root internal node left with one child gives way to it.
//
// Thread safety: a Tree is immutable configuration; a Txn belongs to one thread (the engine's
// single writer); a PoolReader to one reader.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engines/btree/page.h"
#include "engines/btree/pager.h"
#include "sync/status.h"

namespace kvfs::engines::btree {

// Read access to page images. The pointer stays valid as long as the reader lives (or until
// Release).
class PageReader {
 public:
  virtual ~PageReader() = default;
  virtual Result<const char*> Read(PageNo pgno) = 0;
  // Lets go of every image read so far (their pointers die): long walks call it between pages.
  virtual void Release() {}
};

// Reads installed images from the pool, holding each until Release.
class PoolReader final : public PageReader {
 public:
  explicit PoolReader(Pager* pager) : pager_(pager) { held_.reserve(8); }
  Result<const char*> Read(PageNo pgno) override;
  void Release() override { held_.clear(); }

 private:
  Pager* const pager_;
  std::vector<PageRef> held_;
};

// A batch's private page images (copy on write).
class Txn final : public PageReader {
 public:
  explicit Txn(Pager* pager) : pager_(pager), page_size_(pager->page_size()) {}
  // The private image if this Txn has one, else the installed one.
  Result<const char*> Read(PageNo pgno) override;
  // The private image, copied from the installed one on first use.
  Result<char*> Write(PageNo pgno);
  // A new private image of `type`, not read from anywhere (a page just allocated, or one whose
  // every byte is rewritten).
  char* Fresh(PageNo pgno, PageType type);
  // The images, for Pager::Install; the Txn is spent.
  std::vector<std::pair<PageNo, std::shared_ptr<std::string>>> TakeImages();
  size_t pages() const { return images_.size(); }

 private:
  Pager* const pager_;
  const size_t page_size_;
  std::map<PageNo, std::shared_ptr<std::string>> images_;
  std::vector<PageRef> held_;
};

struct VerifyReport {
  uint64_t pages = 0;  // page_count
  uint64_t leaves = 0, internal = 0, overflow = 0, trunks = 0, free = 0;
  uint64_t keys = 0;
  uint32_t height = 0;
};

struct ScanItem {
  std::string key;
  std::string value;
};

class Tree {
 public:
  explicit Tree(size_t page_size) : page_size_(page_size) {}

  Result<Meta> LoadMeta(PageReader* r) const;

  // The value of `key`, or nullopt. `m` is the meta page of the tree `r` reads (the engine
  // keeps it decoded, so a lookup does not read page 0).
  Result<std::optional<std::string>> Get(PageReader* r, const Meta& m, std::string_view key) const;
  // Appends to `out` up to `max_items` entries with keys starting with `prefix`, from the first
  // key >= `from` (> `from` when `after`). `done` is set when no more match.
  Status ScanChunk(PageReader* r, const Meta& m, std::string_view from, bool after,
                   std::string_view prefix, bool keys_only, size_t max_items,
                   std::vector<ScanItem>* out, bool* done) const;

  Status Put(Txn* t, std::string_view key, std::string_view value) const;
  // Deleting a missing key changes nothing.
  Status Delete(Txn* t, std::string_view key) const;

  // Walks every page: checksums (each page read), page types, key order within and across
  // pages against the separators, leaf links, overflow chains, the free list; no page
  // reachable twice, none both free and in the tree, none neither; the meta page's counts.
  Status Verify(PageReader* r, VerifyReport* report) const;

 private:
  struct PathStep {
    PageNo page;
    int child;  // the child index taken
  };

  Result<std::string> KeyOf(PageReader* r, const Cell& c) const;
  Result<std::string> ValueOf(PageReader* r, const Cell& c) const;
  Status ReadPayload(PageReader* r, const Cell& c, size_t from, size_t n, std::string* out) const;
  Result<std::vector<PageNo>> ChainOf(PageReader* r, const Cell& c) const;
  Result<int> CompareKey(PageReader* r, const Cell& c, std::string_view key) const;
  // Leaf: the first slot whose key is >= key, and whether it is equal.
  Result<std::pair<int, bool>> LowerBound(PageReader* r, const char* p, std::string_view key) const;
  // Internal: the child index to follow for `key`.
  Result<int> ChildIndex(PageReader* r, const char* p, std::string_view key) const;
  Result<PageNo> Descend(PageReader* r, const Meta& m, std::string_view key,
                         std::vector<PathStep>* path) const;

  Result<PageNo> Alloc(Txn* t, Meta* m) const;
  Status Free(Txn* t, Meta* m, PageNo pgno) const;
  Status FreeChain(Txn* t, Meta* m, const Cell& c) const;
  // Writes `spilled` into overflow pages, reusing `reuse` first; returns the first page.
  Result<PageNo> WriteOverflow(Txn* t, Meta* m, std::string_view spilled,
                               std::vector<PageNo> reuse) const;
  Result<std::string> MakeLeafCell(Txn* t, Meta* m, std::string_view key, std::string_view value,
                                   std::vector<PageNo> reuse) const;
  Result<std::string> MakeInternalCell(Txn* t, Meta* m, PageNo child, std::string_view key) const;
  Status SplitLeaf(Txn* t, Meta* m, std::vector<PathStep>* path, PageNo leaf, int idx,
                   const std::string& cell) const;
  Status InsertIntoParent(Txn* t, Meta* m, std::vector<PathStep>* path, PageNo left,
                          std::string cell) const;
  Status Rebalance(Txn* t, Meta* m, std::vector<PathStep>* path, PageNo node) const;
  Status StoreMeta(Txn* t, const Meta& m) const;

  const size_t page_size_;
};

}  // namespace kvfs::engines::btree
