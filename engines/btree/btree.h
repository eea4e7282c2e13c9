// B-tree: a B+tree over fixed-size pages in one page file, with a bounded buffer pool, the
// shared write-ahead log for durability, and atomic checkpoints through a doublewrite file.
//
// Layout of a data directory (details in FORMAT.md):
//   <dir>/LOCK         held while the store is open; a second open gets kBusy
//   <dir>/wal/         the write-ahead log (sync::Wal): one record per batch, its WriteBatch
//                      encoding, appended before the batch is acknowledged
//   <dir>/pages        the page file: page 0 the meta page, then leaves, internal nodes,
//                      overflow pages and free-list pages, each with a CRC32C and its LSN
//   <dir>/doublewrite  the pages of the last checkpoint, written before they go in place
//   <dir>/MANIFEST     the redo LSN R of the last completed checkpoint: the page file holds
//                      exactly the tree of the batches below R; recovery replays the log from R
//
// Writes: a batch is appended to the log with no engine lock held (concurrent writers share
// one write and, in `always` mode, one fdatasync), then applied in LSN order, one at a time, to
// private copies of the pages it changes (copy on write), which are installed in the buffer
// pool under a short exclusive hold of the tree lock. Reads take the tree lock shared for one
// descent and never wait for a log sync or for a writer's page changes.
//
// Checkpoints (Compact, the background thread, or a writer when dirty pages reach half the
// cache or the log grows past `checkpoint_log_bytes`): snapshot the dirty pages and R between two
// batches, sync the log up to R, write the pages to the doublewrite file and sync it, write them
// in place and sync the page file, replace the MANIFEST, then delete the log segments below R.
//
// EngineOptions: sync_mode, batch_records, batch_interval and segment_size configure the log;
// cache_size bounds the buffer pool (dirty pages are written only by checkpoints); a read_only
// open creates and deletes nothing and refuses writes and Compact with kNotSupported.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "engines/engine.h"

namespace kvfs::engines {

struct BtreeOptions {
  // A power of two from 512 to 32768. A new store only: an existing one keeps the size its
  // MANIFEST records.
  size_t page_size = 4096;
  // A checkpoint once this many log bytes were appended since the last one; 0: twice the log's
  // segment size.
  uint64_t checkpoint_log_bytes = 0;
  // Measurement only: skips the doublewrite file, so a power cut that tears an in-place page
  // write corrupts the tree. Never off in a store that matters.
  bool double_write = true;
};

// What Open found in the B-tree's own files; Engine::recovery() carries the same as facts.
struct BtreeRecoveryReport {
  uint64_t checkpoint_lsn = 0;        // the redo LSN recovery started from
  uint64_t doublewrite_restored = 0;  // pages taken from the doublewrite file
  uint64_t page_size = 0;
  uint64_t pages = 0;  // in the tree's meta page after recovery
  uint64_t free_pages = 0;
  uint64_t height = 0;
  uint64_t live_keys = 0;

  void Describe(RecoveryReport* report) const;
};

// Opens (creating if missing) the B-tree store in `dir`. `report` may be null.
Result<std::unique_ptr<Engine>> OpenBtreeWith(sync::FileSystem* fs, const std::string& dir,
                                              const EngineOptions& options,
                                              const BtreeOptions& btree_options,
                                              BtreeRecoveryReport* report = nullptr);

// OpenBtreeWith default BtreeOptions; the "btree" entry of the engine registry.
Result<std::unique_ptr<Engine>> OpenBtree(sync::FileSystem* fs, const std::string& dir,
                                          const EngineOptions& options);

}  // namespace kvfs::engines
