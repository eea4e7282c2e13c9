// The B-tree engine: open and recovery, reads, writes, checkpoints, stats, close. The contract
// is in btree.h, the files and the concurrency rules in FORMAT.md.
#include "engines/btree/btree_engine.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "engines/btree/checkpoint.h"
#include "sync/durable.h"
#include "sync/wal_format.h"

namespace kvfs::engines {
namespace btree {

BtreeEngine::BtreeEngine(sync::FileSystem* fs, std::string dir, EngineOptions options,
                         BtreeOptions btree_options)
    : fs_(fs),
      dir_(std::move(dir)),
      wal_dir_(sync::JoinPath(dir_, kWalDirName)),
      options_(std::move(options)),
      bopts_(btree_options) {
  checkpoint_log_bytes_ =
      bopts_.checkpoint_log_bytes != 0 ? bopts_.checkpoint_log_bytes : 2 * options_.segment_size;
}

Status BtreeEngine::Open(BtreeRecoveryReport* report) {
  const size_t ps = bopts_.page_size;
  if (ps < kMinPageSize || ps > kMaxPageSize || (ps & (ps - 1)) != 0) {
    return Status::InvalidArgument("B-tree page size " + std::to_string(ps) +
                                   ": a power of two from 512 to 32768");
  }
  KVFS_ASSIGN_OR_RETURN(lock_, OpenDataDir(fs_, dir_, name(), options_.read_only));
  // The MANIFEST read below must be the one a power cut would leave: this fsync makes a
  // replacement whose own directory fsync failed durable, or fails (that fsync failed earlier in
  // this process), before anything is built on it.
  if (!options_.read_only) KVFS_RETURN_IF_ERROR(sync::SyncDir(fs_, dir_));

  // The checkpoint the page file is at, and a doublewrite file from a later one that reached
  // its in-place writes (checkpoint.h has the rule).
  size_t page_size = ps;
  uint64_t redo = 0;
  const std::string ckpt_path = sync::JoinPath(dir_, kCheckpointFileName);
  KVFS_ASSIGN_OR_RETURN(bool have_ckpt, fs_->Exists(ckpt_path));
  if (have_ckpt) {
    KVFS_ASSIGN_OR_RETURN(std::string bytes, sync::ReadFileToString(fs_, ckpt_path));
    KVFS_ASSIGN_OR_RETURN(CheckpointRecord ckpt, DecodeCheckpoint(bytes, ckpt_path));
    page_size = ckpt.page_size;
    redo = ckpt.redo_lsn;
  }
  const std::string dw_path = sync::JoinPath(dir_, kDoubleWriteFileName);
  KVFS_ASSIGN_OR_RETURN(bool have_dw, fs_->Exists(dw_path));
  std::optional<DoubleWrite> dw;
  if (have_dw) {
    KVFS_ASSIGN_OR_RETURN(std::string bytes, sync::ReadFileToString(fs_, dw_path));
    dw = DecodeDoubleWrite(bytes);
    if (dw && (dw->redo_lsn <= redo || (have_ckpt && dw->page_size != page_size))) dw.reset();
    if (dw) {
      page_size = dw->page_size;
      redo = dw->redo_lsn;
    }
  } else if (!options_.read_only) {
    KVFS_ASSIGN_OR_RETURN(auto f, sync::CreateFileDurably(fs_, dw_path));
    KVFS_RETURN_IF_ERROR(f->Close());
  }

  const size_t capacity = std::max<size_t>(64, options_.cache_size / page_size);
  pager_ = std::make_unique<Pager>(fs_, sync::JoinPath(dir_, kPageFileName), page_size, capacity);
  // Every recorded checkpoint wrote at least the meta page: a MANIFEST without a page file is
  // a page file lost, not a new store.
  KVFS_RETURN_IF_ERROR(pager_->Open(options_.read_only, dw.has_value(), have_ckpt));
  pager_->set_lsn_bound(redo);
  if (dw) {
    for (auto& [pgno, image] : dw->pages) pager_->InstallSealed(pgno, image);
    report->doublewrite_restored = dw->pages.size();
  }
  tree_ = std::make_unique<Tree>(page_size);
  report->checkpoint_lsn = redo;
  report->page_size = page_size;

  // Redo: every batch from R on, through the same code as Apply, into the pool. The pool may
  // grow past its capacity here (dirty pages wait for the checkpoint that ends the open).
  const sync::WalRecordFn replay = [this](const sync::WalRecord& r) -> Status {
    std::vector<BatchEntry> entries;
    Status s = ForEachEntry(r.payload, "", [&](const BatchEntry& e) {
      entries.push_back(e);
      return Status::OK();
    });
    if (s.ok()) {
      MutexLock lock(&write_mu_);
      s = ApplyEntries(entries, r.lsn);
    }
    if (s.ok()) return s;
    return s.WithContext(sync::JoinPath(wal_dir_, sync::wal::SegmentFileName(r.segment)) +
                         " record LSN " + std::to_string(r.lsn) + " at offset " +
                         std::to_string(r.payload_offset - sync::wal::kRecordHeaderSize));
  };
  KVFS_ASSIGN_OR_RETURN(
      wal_, OpenLog(fs_, wal_dir_, LogOptionsFor(options_), options_, redo, replay, &recovery_));
  {
    // The next append's LSN follows the last record the log holds (or the checkpoint).
    MutexLock lock(&seq_mu_);
    applied_lsn_ = wal_ != nullptr ? wal_->last_lsn() : applied_lsn_;
  }

  PoolReader reader(pager_.get());
  KVFS_ASSIGN_OR_RETURN(Meta meta, tree_->LoadMeta(&reader));
  {
    MutexLock lock(&tree_mu_);
    meta_ = meta;
  }
  live_keys_.store(meta.live_keys, std::memory_order_relaxed);
  report->pages = meta.page_count;
  report->free_pages = meta.free_count;
  report->height = meta.height;
  report->live_keys = meta.live_keys;
  report->Describe(&recovery_);
  if (options_.read_only) return Status::OK();
  // The recovered state goes to the page file now, so the pool is back within its bound and
  // the next open replays nothing; this also finishes a log checkpoint a crash interrupted.
  if (recovery_.log.records_replayed > 0 || dw) {
    KVFS_RETURN_IF_ERROR(Checkpoint());
  } else {
    KVFS_RETURN_IF_ERROR(wal_->Checkpoint(redo));
  }
  if (options_.background_work) bg_ = std::thread([this] { BackgroundLoop(); });
  return Status::OK();
}

Status BtreeEngine::CheckWritable() const {
  if (options_.read_only) {
    return Status::NotSupported("btree store " + dir_ + " is open read-only");
  }
  return failure_.CheckWritable(*wal_);
}

void BtreeEngine::LatchFailure(const Status& s) { failure_.Latch(s); }

Status BtreeEngine::ApplyEntries(const std::vector<BatchEntry>& entries, uint64_t lsn) {
  Status s = [&]() -> Status {
    // After a batch failed to apply, none after it may: the tree would skip one.
    KVFS_RETURN_IF_ERROR(failure_.Refusal());
    Txn txn(pager_.get());
    for (const BatchEntry& e : entries) {
      KVFS_RETURN_IF_ERROR(e.kind == EntryKind::kPut ? tree_->Put(&txn, e.key, e.value)
                                                     : tree_->Delete(&txn, e.key));
    }
    auto images = txn.TakeImages();
    std::optional<Meta> meta;
    for (const auto& [pgno, image] : images) {
      if (pgno != 0) continue;
      KVFS_ASSIGN_OR_RETURN(meta, DecodeMeta(image->data(), pager_->page_size()));
      live_keys_.store(meta->live_keys, std::memory_order_relaxed);
    }
    MutexLock lock(&tree_mu_);
    pager_->Install(&images, lsn);
    if (meta) meta_ = *meta;
    return Status::OK();
  }();
  // The batch's turn is over whether or not it applied: the next one may go.
  MutexLock lock(&seq_mu_);
  applied_lsn_ = lsn;
  seq_cv_.SignalAll();
  return s;
}

Status BtreeEngine::Apply(const WriteBatch& batch) {
  std::vector<BatchEntry> entries;
  KVFS_RETURN_IF_ERROR(CountError(AppendValidEntries(batch, &entries)));
  KVFS_RETURN_IF_ERROR(CountError(CheckWritable()));
  if (entries.empty()) return Status::OK();

  // The log first, with no engine lock held: concurrent appenders share one write and (in
  // `always` mode, inside Append) one fdatasync. Then the tree, strictly in LSN order, so that
  // replaying the log rebuilds what readers saw.
  Result<uint64_t> lsn = wal_->Append(batch.encoded());
  if (!lsn.ok()) return CountError(lsn.status());
  {
    MutexLock lock(&seq_mu_);
    while (applied_lsn_ + 1 < *lsn) {
      // A predecessor whose append succeeded always takes its turn; a failed log ends the
      // wait too (no later append can have succeeded, but never hang on it).
      if (!wal_->health().ok()) return CountError(CheckWritable());
      seq_cv_.WaitUntil(std::chrono::steady_clock::now() + std::chrono::milliseconds(10));
    }
  }
  Status applied;
  {
    MutexLock lock(&write_mu_);
    applied = ApplyEntries(entries, *lsn);
  }
  if (!applied.ok()) {
    // The log holds a batch the tree could not take (a damaged page): nothing more may be
    // written on top of it; a reopen replays it, or names the damage again.
    LatchFailure(applied);
    return CountError(applied);
  }
  log_bytes_since_checkpoint_.fetch_add(batch.encoded().size(), std::memory_order_relaxed);
  counters_.CountBatch(EngineCounters::Tally(entries));
  MaybeCheckpoint();
  return Status::OK();
}

Result<std::string> BtreeEngine::Get(std::string_view key) {
  counters_.Add(counters_.gets, 1);
  Result<std::optional<std::string>> v = [&] {
    ReaderMutexLock lock(&tree_mu_);
    PoolReader reader(pager_.get());
    return tree_->Get(&reader, meta_, key);
  }();
  if (!v.ok()) return CountError(v.status().WithContext("btree store " + dir_));
  if (!v->has_value()) return Status::NotFound("no key '" + std::string(key) + "'");
  counters_.Add(counters_.bytes_read, (*v)->size());
  return std::move(**v);
}

Status BtreeEngine::Scan(const ScanOptions& options, const ScanFn& fn) {
  counters_.Add(counters_.scans, 1);
  std::string from = options.prefix;
  bool after = false;
  if (!options.start_after.empty() && options.start_after >= options.prefix) {
    from = options.start_after;
    after = true;
  }
  std::vector<ScanItem> chunk;
  for (;;) {
    chunk.clear();
    bool done = false;
    {
      ReaderMutexLock lock(&tree_mu_);
      PoolReader reader(pager_.get());
      Status s = tree_->ScanChunk(&reader, meta_, from, after, options.prefix, options.keys_only,
                                  kScanChunk, &chunk, &done);
      if (!s.ok()) return CountError(s.WithContext("btree store " + dir_));
    }
    for (const ScanItem& item : chunk) {
      counters_.Add(counters_.bytes_read, item.value.size());
      if (!fn(item.key, item.value)) return Status::OK();
    }
    if (done || chunk.empty()) return Status::OK();
    from = chunk.back().key;
    after = true;
  }
}

Status BtreeEngine::Sync(SyncKind kind) {
  counters_.Add(counters_.syncs, 1);
  if (options_.read_only) return Status::OK();
  return CountError(wal_->Sync(kind == SyncKind::kData));
}

void BtreeEngine::DeferBatchSyncs() {
  if (wal_ != nullptr) wal_->DeferBatchSyncs();
}

Status BtreeEngine::SyncBatchIfDue() {
  if (wal_ == nullptr) return Status::OK();  // read-only: nothing was written
  return CountError(wal_->SyncBatchIfDue());
}

Status BtreeEngine::Compact() {
  KVFS_RETURN_IF_ERROR(CountError(CheckWritable()));
  KVFS_RETURN_IF_ERROR(CountError(Checkpoint()));
  counters_.Add(counters_.compactions, 1);
  return Status::OK();
}

Status BtreeEngine::Verify() {
  ReaderMutexLock lock(&tree_mu_);
  PoolReader reader(pager_.get());
  VerifyReport report;
  Status s = tree_->Verify(&reader, &report);
  if (!s.ok()) return s.WithContext("btree store " + dir_ + " (" + pager_->path() + ")");
  return s;
}

bool BtreeEngine::CheckpointDue() const {
  return pager_->dirty_count() * 2 >= pager_->capacity() ||
         log_bytes_since_checkpoint_.load(std::memory_order_relaxed) >= checkpoint_log_bytes_;
}

void BtreeEngine::MaybeCheckpoint() {
  if (!CheckpointDue()) return;
  // A background thread takes it unless the dirty pages reach the whole cache: then the writer
  // that got there checkpoints itself (back-pressure instead of an unbounded pool).
  if (bg_.joinable() && pager_->dirty_count() < pager_->capacity()) {
    MutexLock lock(&bg_mu_);
    bg_wanted_ = true;
    bg_cv_.Signal();
    return;
  }
  // A failure is latched by Checkpoint and refuses the next write; this batch is in the log.
  Checkpoint().PermitUnchecked();
}

void BtreeEngine::BackgroundLoop() {
  for (;;) {
    {
      MutexLock lock(&bg_mu_);
      while (!bg_stop_ && !bg_wanted_) {
        bg_cv_.WaitUntil(std::chrono::steady_clock::now() + std::chrono::seconds(1));
        if (CheckpointDue()) break;
      }
      if (bg_stop_) return;
      bg_wanted_ = false;
    }
    if (CheckpointDue()) Checkpoint().PermitUnchecked();
  }
}

Status BtreeEngine::Checkpoint() {
  MutexLock lock(&ckpt_mu_);
  return CheckpointLocked();
}

Status BtreeEngine::CheckpointLocked() {
  if (options_.read_only) return Status::NotSupported("btree store " + dir_ + " is read-only");
  KVFS_RETURN_IF_ERROR(failure_.cause());
  // Between two batches: every batch below `redo` is installed, none at or past it.
  uint64_t redo = 0;
  PageImages dirty;
  {
    MutexLock lock(&write_mu_);
    {
      MutexLock seq(&seq_mu_);
      redo = applied_lsn_ + 1;  // appended batches past it are replayed from the log
    }
    dirty = pager_->DirtyPages();
    log_bytes_since_checkpoint_.store(0, std::memory_order_relaxed);
  }
  // Every batch dirties the meta page: with none dirty, nothing was written since the last
  // checkpoint (so a recorded checkpoint always wrote pages, which the open relies on).
  if (dirty.empty()) return Status::OK();
  // The images written carry their CRC; the pool's keep none (Pager::Install).
  PageImages sealed;
  sealed.reserve(dirty.size());
  for (const auto& [pgno, image] : dirty) {
    auto copy = std::make_shared<std::string>(*image);
    SealPage(copy->data(), copy->size(), LsnOf(copy->data()));
    sealed.emplace_back(pgno, std::move(copy));
  }
  bool in_place = false;
  Status s = [&]() -> Status {
    // The WAL rule: no page reaches the page file before the log records that changed it.
    KVFS_RETURN_IF_ERROR(wal_->SyncUpTo(redo - 1));
    {
      if (bopts_.double_write) {
        KVFS_ASSIGN_OR_RETURN(auto f,
                              fs_->NewWritableFile(sync::JoinPath(dir_, kDoubleWriteFileName),
                                                   sync::CreateMode::kTruncate));
        KVFS_RETURN_IF_ERROR(f->Append(EncodeDoubleWrite(redo, pager_->page_size(), sealed)));
        KVFS_RETURN_IF_ERROR(f->DataSync());
        KVFS_RETURN_IF_ERROR(f->Close());
      }
      in_place = true;
      pager_->set_lsn_bound(redo);
      KVFS_RETURN_IF_ERROR(pager_->WriteInPlace(sealed));
    }
    KVFS_RETURN_IF_ERROR(sync::WriteFileAtomically(
        fs_, sync::JoinPath(dir_, kCheckpointFileName),
        EncodeCheckpoint({redo, static_cast<uint32_t>(pager_->page_size())})));
    pager_->MarkClean(dirty);
    return wal_->Checkpoint(redo);
  }();
  if (!s.ok()) {
    // Room may come back for a checkpoint that failed before the page file was touched; after
    // that, the page file is between two states and only a reopen (recovery) may go on.
    if (!(s.IsNoSpace() && !in_place)) LatchFailure(s);
    return s;
  }
  checkpoints_.fetch_add(1, std::memory_order_relaxed);
  return Status::OK();
}

EngineStats BtreeEngine::stats() const {
  EngineStats s;
  counters_.Fill(&s);
  s.live_keys = live_keys_.load(std::memory_order_relaxed);
  if (wal_ != nullptr) s.wal = wal_->stats();
  return s;
}

Status BtreeEngine::Close() {
  MutexLock close_lock(&close_mu_);
  if (closed_) return Status::OK();
  closed_ = true;
  {
    MutexLock lock(&bg_mu_);
    bg_stop_ = true;
    bg_cv_.SignalAll();
  }
  if (bg_.joinable()) bg_.join();
  Status s;
  if (wal_ != nullptr) {
    // A clean close folds the log into the page file, so the next open replays nothing.
    if (CheckWritable().ok()) s = Checkpoint();
    Status w = wal_->Close();
    if (s.ok()) s = w;
  }
  if (pager_ != nullptr) pager_->Close();
  lock_.reset();
  return s;
}

}  // namespace btree

void BtreeRecoveryReport::Describe(RecoveryReport* report) const {
  report->AddFact("checkpoint_lsn", checkpoint_lsn);
  report->AddFact("doublewrite_pages_restored", doublewrite_restored);
  report->AddFact("page_size", page_size);
  report->AddFact("pages", pages);
  report->AddFact("free_pages", free_pages);
  report->AddFact("height", height);
  report->AddFact("live_keys", live_keys);
}

Result<std::unique_ptr<Engine>> OpenBtreeWith(sync::FileSystem* fs, const std::string& dir,
                                              const EngineOptions& options,
                                              const BtreeOptions& btree_options,
                                              BtreeRecoveryReport* report) {
  BtreeRecoveryReport local;
  if (report == nullptr) report = &local;
  *report = BtreeRecoveryReport();
  auto engine = std::make_unique<btree::BtreeEngine>(fs, dir, options, btree_options);
  KVFS_RETURN_IF_ERROR(engine->Open(report));
  return std::unique_ptr<Engine>(std::move(engine));
}

Result<std::unique_ptr<Engine>> OpenBtree(sync::FileSystem* fs, const std::string& dir,
                                          const EngineOptions& options) {
  return OpenBtreeWith(fs, dir, options, BtreeOptions());
}

}  // namespace kvfs::engines
