#include "engines/btree/tree.h"

#include <algorithm>
#include <functional>

namespace kvfs::engines::btree {
namespace {

constexpr int kMaxHeight = 64;

// Damage found by the tree's own checks (the page's checksum matched): the page and its byte
// offset in the page file, whose path the engine adds.
Status Bad(size_t page_size, PageNo pgno, const std::string& what) {
  return Status::Corruption("page " + std::to_string(pgno) + " at offset " +
                            std::to_string(uint64_t{pgno} * page_size) + ": " + what);
}

std::string ShortestSeparator(const std::string& left, const std::string& right) {
  size_t l = 0;
  while (l < left.size() && l < right.size() && left[l] == right[l]) ++l;
  return right.substr(0, std::min(right.size(), l + 1));
}

// The split point of `cells` by bytes: the first index at which the left part holds half.
size_t SplitPoint(const std::vector<std::string>& cells, size_t lo, size_t hi) {
  size_t total = 0;
  for (const std::string& c : cells) total += c.size() + 2;
  size_t acc = 0;
  size_t k = 0;
  while (k < cells.size() && acc + cells[k].size() + 2 <= total / 2) acc += cells[k++].size() + 2;
  return std::clamp(k, lo, hi);
}

}  // namespace

// --- Readers ------------------------------------------------------------------------------------

Result<const char*> PoolReader::Read(PageNo pgno) {
  KVFS_ASSIGN_OR_RETURN(PageRef ref, pager_->Get(pgno));
  held_.push_back(std::move(ref));
  return held_.back()->data();
}

Result<const char*> Txn::Read(PageNo pgno) {
  auto it = images_.find(pgno);
  if (it != images_.end()) return static_cast<const char*>(it->second->data());
  KVFS_ASSIGN_OR_RETURN(PageRef ref, pager_->Get(pgno));
  held_.push_back(std::move(ref));
  return held_.back()->data();
}

Result<char*> Txn::Write(PageNo pgno) {
  auto it = images_.find(pgno);
  if (it != images_.end()) return it->second->data();
  KVFS_ASSIGN_OR_RETURN(PageRef ref, pager_->Get(pgno));
  auto copy = std::make_shared<std::string>(*ref);
  char* p = copy->data();
  images_.emplace(pgno, std::move(copy));
  return p;
}

char* Txn::Fresh(PageNo pgno, PageType type) {
  auto& slot = images_[pgno];
  if (slot == nullptr) slot = std::make_shared<std::string>(page_size_, '\0');
  InitPage(slot->data(), page_size_, type, pgno);
  return slot->data();
}

std::vector<std::pair<PageNo, std::shared_ptr<std::string>>> Txn::TakeImages() {
  std::vector<std::pair<PageNo, std::shared_ptr<std::string>>> out(images_.begin(), images_.end());
  images_.clear();
  held_.clear();
  return out;
}

// --- Reading ------------------------------------------------------------------------------------

Result<Meta> Tree::LoadMeta(PageReader* r) const {
  KVFS_ASSIGN_OR_RETURN(const char* p, r->Read(0));
  return DecodeMeta(p, page_size_);
}

Status Tree::ReadPayload(PageReader* r, const Cell& c, size_t from, size_t n,
                         std::string* out) const {
  out->clear();
  out->reserve(n);
  const size_t end = from + n;
  if (from < c.local.size()) {
    out->append(c.local.substr(from, std::min(end, c.local.size()) - from));
  }
  size_t pos = c.local.size();  // payload offset where the next overflow page starts
  PageNo pg = c.overflow;
  const size_t cap = OverflowCapacity(page_size_);
  const size_t payload = c.payload_size();
  while (pos < end) {
    if (pg == 0) return Bad(page_size_, 0, "overflow chain ends early");
    KVFS_ASSIGN_OR_RETURN(const char* p, r->Read(pg));
    const size_t here = std::min(cap, payload - pos);
    if (TypeOf(p) != PageType::kOverflow || DecodeFixed16(p + kContentOffset) != here) {
      return Bad(page_size_, pg, "not the overflow page its chain expects");
    }
    const size_t a = std::max(from, pos);
    const size_t b = std::min(end, pos + here);
    if (a < b) out->append(p + kPageHeaderSize + (a - pos), b - a);
    pos += here;
    pg = NextOf(p);
  }
  return Status::OK();
}

Result<std::string> Tree::KeyOf(PageReader* r, const Cell& c) const {
  if (c.key_is_local()) return std::string(c.local_key());
  std::string key;
  KVFS_RETURN_IF_ERROR(ReadPayload(r, c, 0, c.key_size, &key));
  return key;
}

Result<std::string> Tree::ValueOf(PageReader* r, const Cell& c) const {
  if (c.overflow == 0) return std::string(c.local.substr(c.key_size));
  std::string value;
  KVFS_RETURN_IF_ERROR(ReadPayload(r, c, c.key_size, c.value_size, &value));
  return value;
}

Result<std::vector<PageNo>> Tree::ChainOf(PageReader* r, const Cell& c) const {
  std::vector<PageNo> chain;
  if (c.overflow == 0) return chain;
  const size_t spilled = c.payload_size() - c.local.size();
  const size_t n = OverflowPages(spilled, page_size_);
  PageNo pg = c.overflow;
  for (size_t i = 0; i < n; ++i) {
    if (pg == 0) return Bad(page_size_, 0, "overflow chain ends early");
    chain.push_back(pg);
    KVFS_ASSIGN_OR_RETURN(const char* p, r->Read(pg));
    if (TypeOf(p) != PageType::kOverflow) return Bad(page_size_, pg, "not an overflow page");
    pg = NextOf(p);
  }
  return chain;
}

Result<int> Tree::CompareKey(PageReader* r, const Cell& c, std::string_view key) const {
  if (c.key_is_local()) return c.local_key().compare(key);
  const std::string_view local = c.local;
  const int prefix = local.compare(key.substr(0, local.size()));
  if (prefix != 0) return prefix;
  KVFS_ASSIGN_OR_RETURN(std::string full, KeyOf(r, c));
  return full.compare(key);
}

Result<std::pair<int, bool>> Tree::LowerBound(PageReader* r, const char* p,
                                              std::string_view key) const {
  int lo = 0;
  int hi = CountOf(p);
  bool exact = false;
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    KVFS_ASSIGN_OR_RETURN(Cell c, NodeCell(p, page_size_, mid));
    KVFS_ASSIGN_OR_RETURN(int cmp, CompareKey(r, c, key));
    if (cmp < 0) {
      lo = mid + 1;
    } else {
      if (cmp == 0) exact = true;
      hi = mid;
    }
  }
  // `exact` was seen at some mid >= lo; it is at lo only if the key there is equal.
  if (exact) {
    KVFS_ASSIGN_OR_RETURN(Cell c, NodeCell(p, page_size_, lo));
    KVFS_ASSIGN_OR_RETURN(int cmp, CompareKey(r, c, key));
    exact = cmp == 0;
  }
  return std::make_pair(lo, exact);
}

Result<int> Tree::ChildIndex(PageReader* r, const char* p, std::string_view key) const {
  // The number of separators <= key.
  int lo = 0;
  int hi = CountOf(p);
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    KVFS_ASSIGN_OR_RETURN(Cell c, NodeCell(p, page_size_, mid));
    KVFS_ASSIGN_OR_RETURN(int cmp, CompareKey(r, c, key));
    if (cmp <= 0) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

Result<PageNo> Tree::Descend(PageReader* r, const Meta& m, std::string_view key,
                             std::vector<PathStep>* path) const {
  PageNo pg = m.root;
  if (m.height > kMaxHeight) return Bad(page_size_, 0, "tree height " + std::to_string(m.height));
  for (uint32_t level = 1;; ++level) {
    if (pg == 0 || pg >= m.page_count) {
      return Bad(page_size_, pg,
                 "child pointer out of range (" + std::to_string(m.page_count) + " pages)");
    }
    KVFS_ASSIGN_OR_RETURN(const char* p, r->Read(pg));
    const PageType want = level == m.height ? PageType::kLeaf : PageType::kInternal;
    if (TypeOf(p) != want) {
      return Bad(page_size_, pg,
                 std::string("a ") + PageTypeName(TypeOf(p)) + " page where the tree needs a " +
                     PageTypeName(want) + " page");
    }
    if (want == PageType::kLeaf) return pg;
    KVFS_ASSIGN_OR_RETURN(int idx, ChildIndex(r, p, key));
    if (path != nullptr) path->push_back({pg, idx});
    KVFS_ASSIGN_OR_RETURN(pg, ChildAt(p, page_size_, idx));
  }
}

Result<std::optional<std::string>> Tree::Get(PageReader* r, const Meta& m,
                                             std::string_view key) const {
  if (m.root == 0) return std::optional<std::string>();
  KVFS_ASSIGN_OR_RETURN(PageNo leaf, Descend(r, m, key, nullptr));
  KVFS_ASSIGN_OR_RETURN(const char* p, r->Read(leaf));
  KVFS_ASSIGN_OR_RETURN(auto found, LowerBound(r, p, key));
  if (!found.second) return std::optional<std::string>();
  KVFS_ASSIGN_OR_RETURN(Cell c, NodeCell(p, page_size_, found.first));
  KVFS_ASSIGN_OR_RETURN(std::string value, ValueOf(r, c));
  return std::optional<std::string>(std::move(value));
}

Status Tree::ScanChunk(PageReader* r, const Meta& m, std::string_view from, bool after,
                       std::string_view prefix, bool keys_only, size_t max_items,
                       std::vector<ScanItem>* out, bool* done) const {
  *done = true;
  if (m.root == 0) return Status::OK();
  KVFS_ASSIGN_OR_RETURN(PageNo leaf, Descend(r, m, from, nullptr));
  KVFS_ASSIGN_OR_RETURN(const char* p, r->Read(leaf));
  KVFS_ASSIGN_OR_RETURN(auto found, LowerBound(r, p, from));
  int i = found.first + (after && found.second ? 1 : 0);
  for (uint64_t hops = 0; hops <= m.page_count; ++hops) {
    for (; i < CountOf(p); ++i) {
      KVFS_ASSIGN_OR_RETURN(Cell c, NodeCell(p, page_size_, i));
      ScanItem item;
      KVFS_ASSIGN_OR_RETURN(item.key, KeyOf(r, c));
      if (!std::string_view(item.key).starts_with(prefix)) return Status::OK();
      if (out->size() >= max_items) {
        *done = false;
        return Status::OK();
      }
      if (!keys_only) {
        KVFS_ASSIGN_OR_RETURN(item.value, ValueOf(r, c));
      }
      out->push_back(std::move(item));
    }
    const PageNo next = NextOf(p);
    if (next == 0) return Status::OK();
    if (next >= m.page_count) return Bad(page_size_, leaf, "right link out of range");
    leaf = next;
    KVFS_ASSIGN_OR_RETURN(p, r->Read(leaf));
    if (TypeOf(p) != PageType::kLeaf) return Bad(page_size_, leaf, "right link to a non-leaf page");
    i = 0;
  }
  return Bad(page_size_, leaf, "leaf links form a cycle");
}

// --- Space --------------------------------------------------------------------------------------

Result<PageNo> Tree::Alloc(Txn* t, Meta* m) const {
  if (m->free_head != 0) {
    const PageNo trunk = m->free_head;
    KVFS_ASSIGN_OR_RETURN(char* p, t->Write(trunk));
    const int n = CountOf(p);
    --m->free_count;
    if (n > 0) {
      const PageNo pg = TrunkEntry(p, n - 1);
      SetCount(p, static_cast<uint16_t>(n - 1));
      if (pg == 0 || pg >= m->page_count)
        return Bad(page_size_, trunk, "free-list entry out of range");
      return pg;
    }
    m->free_head = NextOf(p);  // the empty trunk itself is the page handed out
    return trunk;
  }
  if (m->page_count == UINT32_MAX) return Status::NoSpace("B-tree page file is full");
  return m->page_count++;
}

Status Tree::Free(Txn* t, Meta* m, PageNo pgno) const {
  ++m->free_count;
  if (m->free_head != 0) {
    KVFS_ASSIGN_OR_RETURN(char* p, t->Write(m->free_head));
    const int n = CountOf(p);
    if (static_cast<size_t>(n) < TrunkCapacity(page_size_)) {
      SetTrunkEntry(p, n, pgno);
      SetCount(p, static_cast<uint16_t>(n + 1));
      // The page's image says it is free, so `kvfs check` can tell; its old contents are dead.
      t->Fresh(pgno, PageType::kFree);
      return Status::OK();
    }
  }
  char* p = t->Fresh(pgno, PageType::kTrunk);
  SetNext(p, m->free_head);
  m->free_head = pgno;
  return Status::OK();
}

Status Tree::FreeChain(Txn* t, Meta* m, const Cell& c) const {
  KVFS_ASSIGN_OR_RETURN(std::vector<PageNo> chain, ChainOf(t, c));
  for (PageNo pg : chain) KVFS_RETURN_IF_ERROR(Free(t, m, pg));
  return Status::OK();
}

Result<PageNo> Tree::WriteOverflow(Txn* t, Meta* m, std::string_view spilled,
                                   std::vector<PageNo> reuse) const {
  const size_t cap = OverflowCapacity(page_size_);
  const size_t n = OverflowPages(spilled.size(), page_size_);
  std::vector<PageNo> pages;
  for (size_t i = 0; i < n; ++i) {
    if (i < reuse.size()) {
      pages.push_back(reuse[i]);
    } else {
      KVFS_ASSIGN_OR_RETURN(PageNo pg, Alloc(t, m));
      pages.push_back(pg);
    }
  }
  for (size_t i = n; i < reuse.size(); ++i) KVFS_RETURN_IF_ERROR(Free(t, m, reuse[i]));
  for (size_t i = 0; i < n; ++i) {
    char* p = t->Fresh(pages[i], PageType::kOverflow);
    const std::string_view part = spilled.substr(i * cap, cap);
    std::memcpy(p + kPageHeaderSize, part.data(), part.size());
    EncodeFixed16(p + kContentOffset, static_cast<uint16_t>(part.size()));
    SetNext(p, i + 1 < n ? pages[i + 1] : 0);
  }
  return pages.front();
}

Result<std::string> Tree::MakeLeafCell(Txn* t, Meta* m, std::string_view key,
                                       std::string_view value, std::vector<PageNo> reuse) const {
  const size_t payload = key.size() + value.size();
  const size_t local = LocalSize(key.size(), payload, page_size_);
  const auto k = static_cast<uint32_t>(key.size());
  const auto v = static_cast<uint32_t>(value.size());
  if (local == payload) {
    for (PageNo pg : reuse) KVFS_RETURN_IF_ERROR(Free(t, m, pg));
    std::string kv;
    kv.reserve(payload);
    kv.append(key).append(value);
    return EncodeLeafCell(k, v, kv, 0);
  }
  std::string all;
  all.reserve(payload);
  all.append(key).append(value);
  const std::string_view whole(all);
  KVFS_ASSIGN_OR_RETURN(PageNo first, WriteOverflow(t, m, whole.substr(local), std::move(reuse)));
  return EncodeLeafCell(k, v, whole.substr(0, local), first);
}

Result<std::string> Tree::MakeInternalCell(Txn* t, Meta* m, PageNo child,
                                           std::string_view key) const {
  const size_t local = LocalSize(key.size(), key.size(), page_size_);
  const auto k = static_cast<uint32_t>(key.size());
  if (local == key.size()) return EncodeInternalCell(child, k, key, 0);
  KVFS_ASSIGN_OR_RETURN(PageNo first, WriteOverflow(t, m, key.substr(local), {}));
  return EncodeInternalCell(child, k, key.substr(0, local), first);
}

Status Tree::StoreMeta(Txn* t, const Meta& m) const {
  KVFS_ASSIGN_OR_RETURN(char* p, t->Write(0));
  EncodeMeta(p, m);
  return Status::OK();
}

// --- Insert -------------------------------------------------------------------------------------

Status Tree::Put(Txn* t, std::string_view key, std::string_view value) const {
  KVFS_ASSIGN_OR_RETURN(Meta m, LoadMeta(t));
  if (m.root == 0) {
    KVFS_ASSIGN_OR_RETURN(m.root, Alloc(t, &m));
    t->Fresh(m.root, PageType::kLeaf);
    m.height = 1;
  }
  std::vector<PathStep> path;
  KVFS_ASSIGN_OR_RETURN(PageNo leaf, Descend(t, m, key, &path));
  KVFS_ASSIGN_OR_RETURN(const char* p, t->Read(leaf));
  KVFS_ASSIGN_OR_RETURN(auto found, LowerBound(t, p, key));
  const int idx = found.first;
  std::vector<PageNo> reuse;
  if (found.second) {
    // An overwrite rewrites the old value's overflow pages in place when it needs as many.
    KVFS_ASSIGN_OR_RETURN(Cell old, NodeCell(p, page_size_, idx));
    KVFS_ASSIGN_OR_RETURN(reuse, ChainOf(t, old));
  }
  KVFS_ASSIGN_OR_RETURN(std::string cell, MakeLeafCell(t, &m, key, value, std::move(reuse)));
  KVFS_ASSIGN_OR_RETURN(char* w, t->Write(leaf));
  if (found.second) {
    KVFS_RETURN_IF_ERROR(NodeRemove(w, page_size_, idx));
  } else {
    ++m.live_keys;
  }
  if (!NodeInsert(w, page_size_, idx, cell)) {
    KVFS_RETURN_IF_ERROR(SplitLeaf(t, &m, &path, leaf, idx, cell));
  }
  return StoreMeta(t, m);
}

Status Tree::SplitLeaf(Txn* t, Meta* m, std::vector<PathStep>* path, PageNo leaf, int idx,
                       const std::string& cell) const {
  KVFS_ASSIGN_OR_RETURN(char* w, t->Write(leaf));
  KVFS_ASSIGN_OR_RETURN(std::vector<std::string> cells, NodeCells(w, page_size_));
  cells.insert(cells.begin() + idx, cell);
  const size_t k = SplitPoint(cells, 1, cells.size() - 1);
  KVFS_ASSIGN_OR_RETURN(PageNo right, Alloc(t, m));
  char* rw = t->Fresh(right, PageType::kLeaf);
  KVFS_ASSIGN_OR_RETURN(w, t->Write(leaf));  // Alloc may have touched other pages only
  SetNext(rw, NextOf(w));
  NodeBuild(rw, page_size_, std::vector<std::string>(cells.begin() + k, cells.end()));
  NodeBuild(w, page_size_, std::vector<std::string>(cells.begin(), cells.begin() + k));
  SetNext(w, right);
  KVFS_ASSIGN_OR_RETURN(Cell last, NodeCell(w, page_size_, static_cast<int>(k) - 1));
  KVFS_ASSIGN_OR_RETURN(Cell first, NodeCell(rw, page_size_, 0));
  KVFS_ASSIGN_OR_RETURN(std::string left_key, KeyOf(t, last));
  KVFS_ASSIGN_OR_RETURN(std::string right_key, KeyOf(t, first));
  KVFS_ASSIGN_OR_RETURN(std::string sep,
                        MakeInternalCell(t, m, right, ShortestSeparator(left_key, right_key)));
  return InsertIntoParent(t, m, path, leaf, std::move(sep));
}

Status Tree::InsertIntoParent(Txn* t, Meta* m, std::vector<PathStep>* path, PageNo left,
                              std::string cell) const {
  for (;;) {
    if (path->empty()) {
      KVFS_ASSIGN_OR_RETURN(PageNo root, Alloc(t, m));
      char* p = t->Fresh(root, PageType::kInternal);
      SetNext(p, left);
      if (!NodeInsert(p, page_size_, 0, cell))
        return Bad(page_size_, root, "separator does not fit");
      m->root = root;
      ++m->height;
      return Status::OK();
    }
    const PathStep step = path->back();
    path->pop_back();
    KVFS_ASSIGN_OR_RETURN(char* w, t->Write(step.page));
    if (NodeInsert(w, page_size_, step.child, cell)) return Status::OK();
    // Split the internal node: the middle cell moves up, its child becoming the right node's
    // leftmost child.
    KVFS_ASSIGN_OR_RETURN(std::vector<std::string> cells, NodeCells(w, page_size_));
    cells.insert(cells.begin() + step.child, std::move(cell));
    const size_t mid = SplitPoint(cells, 1, cells.size() - 2);
    KVFS_ASSIGN_OR_RETURN(PageNo right, Alloc(t, m));
    char* rw = t->Fresh(right, PageType::kInternal);
    SetNext(rw, DecodeFixed32(cells[mid].data()));
    NodeBuild(rw, page_size_, std::vector<std::string>(cells.begin() + mid + 1, cells.end()));
    KVFS_ASSIGN_OR_RETURN(w, t->Write(step.page));
    NodeBuild(w, page_size_, std::vector<std::string>(cells.begin(), cells.begin() + mid));
    cell = std::move(cells[mid]);
    EncodeFixed32(cell.data(), right);
    left = step.page;
  }
}

// --- Delete -------------------------------------------------------------------------------------

Status Tree::Delete(Txn* t, std::string_view key) const {
  KVFS_ASSIGN_OR_RETURN(Meta m, LoadMeta(t));
  if (m.root == 0) return Status::OK();
  std::vector<PathStep> path;
  KVFS_ASSIGN_OR_RETURN(PageNo leaf, Descend(t, m, key, &path));
  KVFS_ASSIGN_OR_RETURN(const char* p, t->Read(leaf));
  KVFS_ASSIGN_OR_RETURN(auto found, LowerBound(t, p, key));
  if (!found.second) return Status::OK();
  KVFS_ASSIGN_OR_RETURN(Cell c, NodeCell(p, page_size_, found.first));
  KVFS_RETURN_IF_ERROR(FreeChain(t, &m, c));
  KVFS_ASSIGN_OR_RETURN(char* w, t->Write(leaf));
  KVFS_RETURN_IF_ERROR(NodeRemove(w, page_size_, found.first));
  --m.live_keys;
  KVFS_RETURN_IF_ERROR(Rebalance(t, &m, &path, leaf));
  return StoreMeta(t, m);
}

Status Tree::Rebalance(Txn* t, Meta* m, std::vector<PathStep>* path, PageNo node) const {
  const size_t usable = page_size_ - kPageHeaderSize;
  for (;;) {
    KVFS_ASSIGN_OR_RETURN(const char* p, t->Read(node));
    const bool leaf = TypeOf(p) == PageType::kLeaf;
    if (path->empty()) {  // the root
      if (CountOf(p) == 0) {
        m->root = leaf ? 0 : NextOf(p);
        --m->height;
        KVFS_RETURN_IF_ERROR(Free(t, m, node));
      }
      return Status::OK();
    }
    if (NodeUsed(p, page_size_) >= usable / 4) return Status::OK();
    const PathStep step = path->back();
    KVFS_ASSIGN_OR_RETURN(const char* pp, t->Read(step.page));
    if (CountOf(pp) == 0) return Status::OK();
    const int sep_idx = step.child > 0 ? step.child - 1 : 0;
    KVFS_ASSIGN_OR_RETURN(PageNo left, ChildAt(pp, page_size_, sep_idx));
    KVFS_ASSIGN_OR_RETURN(PageNo right, ChildAt(pp, page_size_, sep_idx + 1));
    KVFS_ASSIGN_OR_RETURN(Cell sep, NodeCell(pp, page_size_, sep_idx));
    KVFS_ASSIGN_OR_RETURN(const char* lp, t->Read(left));
    KVFS_ASSIGN_OR_RETURN(const char* rp, t->Read(right));
    KVFS_ASSIGN_OR_RETURN(std::vector<std::string> merged, NodeCells(lp, page_size_));
    KVFS_ASSIGN_OR_RETURN(std::vector<std::string> rcells, NodeCells(rp, page_size_));
    size_t need = NodeUsed(lp, page_size_) + NodeUsed(rp, page_size_);
    if (!leaf) {
      // The separator comes down between the two, pointing at the right node's leftmost child;
      // its key (and overflow chain) moves with it.
      std::string down(pp + DecodeFixed16(pp + kPageHeaderSize + 2 * static_cast<size_t>(sep_idx)),
                       sep.size);
      EncodeFixed32(down.data(), NextOf(rp));
      need += down.size() + 2;
      merged.push_back(std::move(down));
    }
    if (need > usable) return Status::OK();  // lazy: no redistribution
    const PageNo right_next = NextOf(rp);
    merged.insert(merged.end(), rcells.begin(), rcells.end());
    if (leaf) KVFS_RETURN_IF_ERROR(FreeChain(t, m, sep));
    KVFS_ASSIGN_OR_RETURN(char* lw, t->Write(left));
    NodeBuild(lw, page_size_, merged);
    if (leaf) SetNext(lw, right_next);
    KVFS_RETURN_IF_ERROR(Free(t, m, right));
    KVFS_ASSIGN_OR_RETURN(char* pw, t->Write(step.page));
    KVFS_RETURN_IF_ERROR(NodeRemove(pw, page_size_, sep_idx));
    path->pop_back();
    node = step.page;
  }
}

// --- Verify -------------------------------------------------------------------------------------

Status Tree::Verify(PageReader* r, VerifyReport* report) const {
  KVFS_ASSIGN_OR_RETURN(Meta m, LoadMeta(r));
  report->pages = m.page_count;
  report->height = m.height;
  std::vector<bool> seen(m.page_count, false);
  seen[0] = true;
  const auto mark = [&](PageNo pg, const std::string& by) -> Status {
    if (pg == 0 || pg >= m.page_count) {
      return Bad(
          page_size_, pg,
          "referenced by " + by + " but out of range (" + std::to_string(m.page_count) + " pages)");
    }
    if (seen[pg]) return Bad(page_size_, pg, "reachable twice (again from " + by + ")");
    seen[pg] = true;
    return Status::OK();
  };
  const auto chain = [&](const Cell& c, PageNo owner) -> Status {
    if (c.overflow == 0) return Status::OK();
    const size_t spilled = c.payload_size() - c.local.size();
    PageNo pg = c.overflow;
    size_t left = spilled;
    while (left > 0) {
      KVFS_RETURN_IF_ERROR(mark(pg, "an overflow chain of page " + std::to_string(owner)));
      KVFS_ASSIGN_OR_RETURN(const char* p, r->Read(pg));
      const size_t here = std::min(left, OverflowCapacity(page_size_));
      if (TypeOf(p) != PageType::kOverflow || DecodeFixed16(p + kContentOffset) != here) {
        return Bad(page_size_, pg, "not the overflow page its chain expects");
      }
      left -= here;
      ++report->overflow;
      pg = NextOf(p);
    }
    if (pg != 0) return Bad(page_size_, owner, "overflow chain longer than its payload");
    return Status::OK();
  };
  std::vector<PageNo> leaves;
  // Every key under `pg` must be in [lo, hi) (unset: unbounded).
  std::function<Status(PageNo, uint32_t, const std::optional<std::string>&,
                       const std::optional<std::string>&)>
      walk = [&](PageNo pg, uint32_t level, const std::optional<std::string>& lo,
                 const std::optional<std::string>& hi) -> Status {
    KVFS_ASSIGN_OR_RETURN(const char* p, r->Read(pg));
    const PageType want = level == m.height ? PageType::kLeaf : PageType::kInternal;
    if (TypeOf(p) != want) {
      return Bad(page_size_, pg,
                 std::string("a ") + PageTypeName(TypeOf(p)) + " page at tree level " +
                     std::to_string(level) + " (want " + PageTypeName(want) + ")");
    }
    std::optional<std::string> prev = lo;
    std::vector<std::string> keys;
    for (int i = 0; i < CountOf(p); ++i) {
      KVFS_ASSIGN_OR_RETURN(Cell c, NodeCell(p, page_size_, i));
      KVFS_RETURN_IF_ERROR(chain(c, pg));
      KVFS_ASSIGN_OR_RETURN(std::string key, KeyOf(r, c));
      const bool ordered = !prev || (i == 0 ? *prev <= key : *prev < key);
      if (!ordered) return Bad(page_size_, pg, "key " + std::to_string(i) + " out of order");
      if (hi && !(key < *hi))
        return Bad(page_size_, pg,
                   "key " + std::to_string(i) + " not below its parent's separator");
      prev = key;
      keys.push_back(std::move(key));
    }
    if (want == PageType::kLeaf) {
      leaves.push_back(pg);
      report->keys += CountOf(p);
      ++report->leaves;
      r->Release();
      return Status::OK();
    }
    ++report->internal;
    std::vector<PageNo> children;
    for (int i = 0; i <= CountOf(p); ++i) {
      KVFS_ASSIGN_OR_RETURN(PageNo child, ChildAt(p, page_size_, i));
      KVFS_RETURN_IF_ERROR(mark(child, "internal page " + std::to_string(pg)));
      children.push_back(child);
    }
    r->Release();  // `p` is not used past here
    for (size_t i = 0; i < children.size(); ++i) {
      const std::optional<std::string> clo = i == 0 ? lo : std::optional<std::string>(keys[i - 1]);
      const std::optional<std::string> chi =
          i + 1 == children.size() ? hi : std::optional<std::string>(keys[i]);
      KVFS_RETURN_IF_ERROR(walk(children[i], level + 1, clo, chi));
    }
    return Status::OK();
  };
  if (m.root != 0) {
    KVFS_RETURN_IF_ERROR(mark(m.root, "the meta page"));
    KVFS_RETURN_IF_ERROR(walk(m.root, 1, std::nullopt, std::nullopt));
  }
  for (size_t i = 0; i < leaves.size(); ++i) {
    KVFS_ASSIGN_OR_RETURN(const char* p, r->Read(leaves[i]));
    const PageNo want = i + 1 < leaves.size() ? leaves[i + 1] : 0;
    if (NextOf(p) != want) {
      return Bad(
          page_size_, leaves[i],
          "right link " + std::to_string(NextOf(p)) + ", the next leaf is " + std::to_string(want));
    }
    r->Release();
  }
  if (report->keys != m.live_keys) {
    return Bad(page_size_, 0,
               "meta page counts " + std::to_string(m.live_keys) + " keys, the leaves hold " +
                   std::to_string(report->keys));
  }
  uint64_t free = 0;
  for (PageNo trunk = m.free_head; trunk != 0;) {
    KVFS_RETURN_IF_ERROR(mark(trunk, "the free list"));
    KVFS_ASSIGN_OR_RETURN(const char* p, r->Read(trunk));
    if (TypeOf(p) != PageType::kTrunk)
      return Bad(page_size_, trunk, "free-list trunk of the wrong type");
    ++report->trunks;
    ++free;
    std::vector<PageNo> entries(CountOf(p));
    for (int i = 0; i < CountOf(p); ++i) entries[i] = TrunkEntry(p, i);
    const PageNo next = NextOf(p);
    r->Release();
    for (PageNo pg : entries) {
      KVFS_RETURN_IF_ERROR(mark(pg, "free-list trunk " + std::to_string(trunk)));
      KVFS_ASSIGN_OR_RETURN(const char* fp, r->Read(pg));
      if (TypeOf(fp) != PageType::kFree)
        return Bad(page_size_, pg, "on the free list but not a free page");
      ++report->free;
      ++free;
      r->Release();
    }
    trunk = next;
  }
  if (free != m.free_count) {
    return Bad(page_size_, 0,
               "meta page counts " + std::to_string(m.free_count) + " free pages, the list " +
                   std::to_string(free));
  }
  for (PageNo pg = 1; pg < m.page_count; ++pg) {
    if (!seen[pg]) return Bad(page_size_, pg, "neither in the tree nor on the free list (leaked)");
  }
  return Status::OK();
}

}  // namespace kvfs::engines::btree
