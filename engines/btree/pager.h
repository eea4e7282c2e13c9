// Pager: the page file and the buffer pool over it. The tree (tree.h) sees pages only through
// it and never touches a file, as SQLite's btree.c sees pager.c.
//
// The pool holds immutable page images (PageRef): a writer never changes an installed image but
// installs new ones (copy on write, tree.h's Txn), so a reader holding a PageRef reads it with
// no latch at all, and a checkpoint takes a consistent snapshot of every dirty page by copying
// pointers. Each frame is clean (its image is the one in the page file) or dirty (newer), with
// the page's LSN (the last batch that changed it) in the image's header.
//
// Bound and eviction: at most `capacity` frames are kept once clean frames can be dropped;
// eviction is CLOCK over clean frames only (a referenced bit, cleared on the first pass). Dirty
// frames are never evicted (no-steal): the page file changes only at a checkpoint, through the
// double-write file (checkpoint.h), so it always holds exactly the tree of one checkpoint. The
// engine keeps dirty frames bounded by checkpointing once they reach half the capacity, and
// every write-back (WriteInPlace) is preceded by a log sync covering the images' LSNs.
//
// Reads from disk are verified (CheckPage: CRC32C, page number, type, LSN below the checkpoint
// the file is at); a bad page is kCorruption naming the page file and the byte offset.
//
// Thread safety: Get, DirtyPages, MarkClean, stats and the counts may be called from any thread;
// Install and WriteInPlace by one thread at a time (the engine's writer and its checkpoint,
// which it serialises). Lock order: the engine's locks, then mu_ (a leaf; never held across
// I/O).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "engines/btree/page.h"
#include "sync/file_system.h"
#include "sync/mutex.h"

namespace kvfs::engines::btree {

struct PagerStats {
  uint64_t hits = 0;
  uint64_t misses = 0;  // pages read from the page file
  uint64_t evictions = 0;
  uint64_t pages_written = 0;  // in place, by checkpoints
  uint64_t resident = 0;
  uint64_t dirty = 0;
};

using PageImages = std::vector<std::pair<PageNo, PageRef>>;

class Pager {
 public:
  Pager(sync::FileSystem* fs, std::string path, size_t page_size, size_t capacity);
  Pager(const Pager&) = delete;
  Pager& operator=(const Pager&) = delete;

  // Opens the page file; a writable open creates it durably when missing. A read-only open of
  // a store with no page file sees an empty one. A size that is not a whole number of pages is
  // kCorruption unless `torn_tail_restored` (the doublewrite file holds the torn last page).
  // `must_hold_pages` (a checkpoint was recorded): a missing or empty file is kCorruption.
  Status Open(bool read_only, bool torn_tail_restored, bool must_hold_pages);
  void Close();

  size_t page_size() const { return page_size_; }
  size_t capacity() const { return capacity_; }
  const std::string& path() const { return path_; }
  // Pages the file holds.
  uint64_t file_pages() const { return file_pages_.load(std::memory_order_acquire); }
  // Pages read from the file must have an LSN below `lsn` (the redo LSN of the checkpoint the
  // file holds). Set by the open, and by each checkpoint before it writes.
  void set_lsn_bound(uint64_t lsn) { lsn_bound_.store(lsn, std::memory_order_release); }

  // The image of `pgno`: from the pool, or read from the page file and verified. Page 0 of an
  // empty page file is a fresh meta page. kCorruption for a page past the end of the file.
  Result<PageRef> Get(PageNo pgno);
  // Installs new images as dirty, stamping each with `lsn` (the CRC is the checkpoint's:
  // SealPage before an image is written).
  void Install(std::vector<std::pair<PageNo, std::shared_ptr<std::string>>>* pages, uint64_t lsn);
  // Installs an image exactly as given (sealed), as dirty: a double-write overlay at open.
  void InstallSealed(PageNo pgno, PageRef image);

  // Every dirty frame's image, by page number.
  PageImages DirtyPages() const;
  // Marks clean each of `written` whose frame still holds that image (a newer one stays dirty).
  void MarkClean(const PageImages& written);
  // Writes the images (sealed) in place (adjacent pages in one write) and DataSyncs the file.
  Status WriteInPlace(const PageImages& pages);

  size_t dirty_count() const { return dirty_.load(std::memory_order_relaxed); }
  PagerStats stats() const;

 private:
  static constexpr size_t kNotInRing = SIZE_MAX;
  struct Frame {
    PageRef image;
    bool dirty = false;
    bool referenced = false;
    size_t ring_pos = kNotInRing;  // where in ring_ (clean frames only)
  };

  Result<PageRef> ReadFromFile(PageNo pgno);
  // Adds a clean frame, evicting clean ones past the capacity.
  PageRef AddClean(PageNo pgno, PageRef image) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EvictIfFull() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetFrame(PageNo pgno, PageRef image) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AddToRing(PageNo pgno, Frame* f) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RemoveFromRing(Frame* f) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  sync::FileSystem* const fs_;
  const std::string path_;
  const size_t page_size_;
  const size_t capacity_;
  std::unique_ptr<sync::RandomRWFile> file_;        // writable opens; used by one thread
  std::unique_ptr<sync::RandomAccessFile> reader_;  // concurrent reads
  std::atomic<uint64_t> file_pages_{0};
  std::atomic<uint64_t> lsn_bound_{0};
  std::atomic<size_t> dirty_{0};

  mutable Mutex mu_;
  absl::flat_hash_map<PageNo, Frame> frames_ ABSL_GUARDED_BY(mu_);
  // CLOCK over the clean frames only (a dirty frame leaves the ring, and comes back when a
  // checkpoint has written it), so a pool full of dirty pages costs nothing to scan.
  std::vector<PageNo> ring_ ABSL_GUARDED_BY(mu_);
  size_t hand_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t hits_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t misses_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t evictions_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<uint64_t> pages_written_{0};
};

}  // namespace kvfs::engines::btree
