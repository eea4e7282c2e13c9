// The LSM engine: open and recovery, reads, writes, stats, close. The contract is in lsm.h,
// the file formats in FORMAT.md, flushes in flush.cc, compactions in compaction.cc.
#include "engines/lsm/lsm_engine.h"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <span>
#include <unordered_set>
#include <utility>

#include "absl/container/inlined_vector.h"
#include "engines/engine_open.h"

namespace kvfs::engines {
namespace lsm {

namespace {

uint64_t MemtableSize(const EngineOptions& o, const LsmOptions& l) {
  if (l.memtable_size != 0) return l.memtable_size;
  // About one log segment per flush for small segments, so each checkpoint frees a segment;
  // capped, because every Get searches the memtable first, each skiplist step a cache miss
  // (docs/decisions.md, "Measured small choices", for the cap's size).
  return std::clamp<uint64_t>(o.segment_size, 4096, uint64_t{4} << 20);
}

// A batch's entries, decoded. Most batches are one Put (Engine::Put): inline storage spares
// each of them an allocation.
using BatchEntries = absl::InlinedVector<BatchEntry, 1>;

bool HasRepeatedKey(std::span<const BatchEntry> entries) {
  if (entries.size() <= 16) {
    for (size_t i = 0; i < entries.size(); ++i) {
      for (size_t j = i + 1; j < entries.size(); ++j) {
        if (entries[j].key == entries[i].key) return true;
      }
    }
    return false;
  }
  // Sorting the keys costs one allocation; the hash set below costs one per entry, and almost
  // every batch has no repeated key.
  std::vector<std::string_view> keys;
  keys.reserve(entries.size());
  for (const BatchEntry& e : entries) keys.push_back(e.key);
  std::sort(keys.begin(), keys.end());
  return std::adjacent_find(keys.begin(), keys.end()) != keys.end();
}

// Keeps only the last entry of each key: a batch's later entries win, and the memtable gets
// distinct (key, LSN) pairs, so a reader never sees an intermediate state of one key.
void Deduplicate(BatchEntries* entries) {
  if (entries->size() < 2 || !HasRepeatedKey(*entries)) return;
  // Rare (a batch that names a key twice), so one path for every size.
  BatchEntries out;
  out.reserve(entries->size());
  std::unordered_set<std::string_view> seen;
  for (size_t i = entries->size(); i-- > 0;) {
    if (seen.insert((*entries)[i].key).second) out.push_back((*entries)[i]);
  }
  std::reverse(out.begin(), out.end());
  *entries = std::move(out);
}

}  // namespace

LsmEngine::LsmEngine(sync::FileSystem* fs, std::string dir, const EngineOptions& options,
                     LsmOptions lsm_options)
    : fs_(fs),
      dir_(std::move(dir)),
      wal_dir_(sync::JoinPath(dir_, kWalDirName)),
      options_(options),
      lopts_(lsm_options),
      memtable_size_(MemtableSize(options, lsm_options)),
      cache_(options.cache_size),
      compact_pointer_(kNumLevels) {}

Status LsmEngine::Open(LsmRecoveryReport* report) {
  KVFS_ASSIGN_OR_RETURN(lock_, OpenDataDir(fs_, dir_, name(), options_.read_only));

  KVFS_ASSIGN_OR_RETURN(std::vector<std::string> names, fs_->ListDir(dir_));
  const std::string manifest_path = sync::JoinPath(dir_, kManifestName);
  ManifestData m;
  if (std::find(names.begin(), names.end(), kManifestName) != names.end()) {
    KVFS_ASSIGN_OR_RETURN(std::string bytes, sync::ReadFileToString(fs_, manifest_path));
    KVFS_ASSIGN_OR_RETURN(m, DecodeManifest(bytes, manifest_path));
    // Files it does not name, and log segments below its LSN, are deleted below on its word, so
    // it must be the MANIFEST a crash would leave. One that replaced another while its directory
    // fsync failed is visible yet maybe not durable: this fsync makes it durable, or fails (a
    // sync of the directory failed earlier in this process) before anything is deleted.
    if (!options_.read_only) KVFS_RETURN_IF_ERROR(sync::SyncDir(fs_, dir_));
  } else {
    // Only a store that never got its first MANIFEST lacks one, and such a store has no table:
    // tables without a MANIFEST mean it was lost, and deleting them as orphans would lose data.
    for (const std::string& name : names) {
      if (ParseTableFileName(name) || ParseBlobFileName(name)) {
        return Status::Corruption("lsm store " + dir_ + " has table or blob files (" + name +
                                  ") but no MANIFEST");
      }
    }
    if (!options_.read_only) {
      KVFS_RETURN_IF_ERROR(sync::WriteFileAtomically(fs_, manifest_path, EncodeManifest(m)));
    }
  }
  report->log_lsn = m.log_lsn;
  next_file_number_.store(m.next_file_number);

  // Files the MANIFEST does not name were being written by a flush or compaction that did not
  // finish (or were obsolete and not yet deleted): nothing refers to them.
  std::set<uint64_t> named;
  for (const TableMeta& t : m.tables) named.insert(t.number);
  for (const BlobMeta& b : m.blobs) named.insert(b.number);
  bool removed = false;
  for (const std::string& name : names) {
    std::optional<uint64_t> n = ParseTableFileName(name);
    if (!n) n = ParseBlobFileName(name);
    const bool orphan = n ? named.count(*n) == 0 : name.ends_with(kTempSuffix);
    if (!orphan || options_.read_only) continue;
    KVFS_RETURN_IF_ERROR(fs_->RemoveFile(sync::JoinPath(dir_, name)));
    ++report->orphans_removed;
    removed = true;
  }
  if (removed) KVFS_RETURN_IF_ERROR(sync::SyncDir(fs_, dir_));

  auto v = std::make_shared<Version>();
  v->log_lsn = m.log_lsn;
  VersionEdit edit;
  for (const BlobMeta& b : m.blobs) {
    KVFS_ASSIGN_OR_RETURN(std::shared_ptr<BlobReader> r,
                          BlobReader::Open(fs_, BlobPath(b.number), b.number));
    if (r->file_size() < b.file_size) {
      return Status::Corruption("blob file " + r->path() + " at offset " +
                                std::to_string(r->file_size()) + ": cut short (the MANIFEST says " +
                                std::to_string(b.file_size) + " bytes)");
    }
    edit.added_blobs.push_back(BlobFile{b, std::move(r)});
  }
  for (const TableMeta& t : m.tables) {
    KVFS_ASSIGN_OR_RETURN(TablePtr table, OpenTable(t));
    edit.added.push_back(std::move(table));
  }
  report->tables = m.tables.size();
  report->blob_files = m.blobs.size();
  version_ = ApplyEdit(*v, edit, nullptr);

  // Then the log from the MANIFEST's LSN on, each record one batch.
  mem_ = std::make_shared<MemTable>();
  const sync::WalRecordFn replay = [this](const sync::WalRecord& r) {
    const std::string where = "log record LSN " + std::to_string(r.lsn) + " in " + wal_dir_;
    BatchEntries entries;
    KVFS_RETURN_IF_ERROR(ForEachEntry(r.payload, where, [&](const BatchEntry& e) -> Status {
      if (!IsValidKey(e.key)) return Status::Corruption(where + ": invalid key length");
      entries.push_back(e);
      return Status::OK();
    }));
    Deduplicate(&entries);
    mem_->AddBatch(r.lsn, entries);
    return Status::OK();
  };
  sync::WalOptions wo = LogOptionsFor(options_);
  // Segments no bigger than a memtable, so each flush's checkpoint frees the segments before it
  // and the log holds about two memtables, not a segment's worth of flushed records that every
  // reopen reads and checks again.
  wo.segment_size = std::min(options_.segment_size, std::max<uint64_t>(memtable_size_, 4096));
  KVFS_ASSIGN_OR_RETURN(wal_, OpenLog(fs_, wal_dir_, wo, options_, m.log_lsn, replay, &recovery_));
  report->Describe(&recovery_);
  // Finishes the cleanup of a flush whose MANIFEST became durable just before a crash.
  if (wal_ != nullptr) KVFS_RETURN_IF_ERROR(wal_->Checkpoint(m.log_lsn));
  {
    std::unique_lock<std::mutex> lock(state_mu_);
    InstallSuperVersion();
    // What the log replayed becomes a level-0 table (as LevelDB does), and the segments
    // holding it are dropped: every open starts a fresh log segment, so without this a store
    // opened often with few writes in between would keep every segment it ever had.
    if (wal_ != nullptr && !mem_->empty()) SwitchMemtable(lock);
  }
  // With background work, the flush thread flushes that memtable like any other, after the open
  // returns (half the time a reopen took was this flush: table, MANIFEST, segment deletions and
  // their syncs); readers see it as an immutable memtable meanwhile. Without, it is flushed here.
  if (wal_ != nullptr && !options_.background_work) {
    // A full disk does not keep the store from opening: the log still holds the batches, and
    // the flush is retried by the next writer.
    Status flushed = FlushAll();
    if (!flushed.ok() && !flushed.IsNoSpace()) return flushed;
  }
  if (options_.background_work && !options_.read_only) {
    flush_thread_ = std::thread([this] { FlushLoop(); });
    compaction_thread_ = std::thread([this] { CompactionLoop(); });
  }
  return Status::OK();
}

Result<TablePtr> LsmEngine::OpenTable(const TableMeta& meta) {
  const std::string path = TablePath(meta.number);
  KVFS_ASSIGN_OR_RETURN(std::shared_ptr<TableReader> r,
                        TableReader::Open(fs_, path, meta.number, &cache_));
  if (r->file_size() != meta.file_size || r->entries() != meta.entries) {
    return Status::Corruption("table " + path +
                              " at offset 0: size or entry count differs from "
                              "the MANIFEST's (" +
                              std::to_string(r->file_size()) + " bytes, " +
                              std::to_string(r->entries()) + " entries; expected " +
                              std::to_string(meta.file_size) + ", " + std::to_string(meta.entries) +
                              ")");
  }
  return TablePtr(std::make_shared<const Table>(Table{meta, std::move(r)}));
}

void LsmEngine::InstallSuperVersion() {
  auto sv = std::make_shared<SuperVersion>();
  sv->mem = mem_;
  sv->imms.assign(imms_.rbegin(), imms_.rend());
  sv->version = version_;
  std::lock_guard<std::mutex> lock(sv_mu_);
  sv_ = std::move(sv);
}

std::shared_ptr<const SuperVersion> LsmEngine::GetSuperVersion() const {
  std::lock_guard<std::mutex> lock(sv_mu_);
  return sv_;
}

std::shared_ptr<const Version> LsmEngine::current() const {
  std::lock_guard<std::mutex> lock(state_mu_);
  return version_;
}

Status LsmEngine::CheckWritable() const {
  if (options_.read_only) return Status::NotSupported("lsm store " + dir_ + " is open read-only");
  return failure_.CheckWritable(*wal_);
}

void LsmEngine::LatchFailure(const Status& s) {
  failure_.Latch(s);
  // Stalled writers must not wait for background work that will not come.
  std::lock_guard<std::mutex> lock(state_mu_);
  state_cv_.notify_all();
}

Status LsmEngine::Background(Status s) {
  if (!s.ok() && !s.IsNoSpace()) LatchFailure(s);
  return s;
}

void LsmEngine::SwitchMemtable(std::unique_lock<std::mutex>& lock) {
  switching_ = true;
  // Every write that has its LSN must be in the memtable before the boundary is drawn.
  state_cv_.wait(lock, [this] { return in_flight_.load() == 0; });
  mem_->set_boundary(wal_->last_lsn() + 1);
  imms_.push_back(std::move(mem_));
  mem_ = std::make_shared<MemTable>();
  InstallSuperVersion();
  switching_ = false;
  state_cv_.notify_all();
}

Status LsmEngine::MakeRoomForWrite(std::unique_lock<std::mutex>& lock) {
  bool slowed = false;
  for (;;) {
    KVFS_RETURN_IF_ERROR(FailedStatus());
    if (switching_) {
      state_cv_.wait(lock);
      continue;
    }
    if (!options_.background_work) {
      // No background threads: the writer that finds an immutable memtable flushes it, and
      // compacts when level 0 is due. Nothing is written for this batch until that succeeded.
      if (!imms_.empty()) {
        lock.unlock();
        Status s = FlushAll();
        if (s.ok()) {
          std::lock_guard<std::mutex> compaction_lock(compaction_mu_);
          s = CompactWhileDue(false);
        }
        lock.lock();
        KVFS_RETURN_IF_ERROR(s);
        continue;
      }
      if (mem_->ApproximateMemoryUsage() >= memtable_size_) {
        SwitchMemtable(lock);
        continue;
      }
      return Status::OK();
    }
    const size_t l0 = version_->levels[0].size();
    if (!slowed && l0 >= lopts_.l0_slowdown_trigger && l0 < lopts_.l0_stop_trigger) {
      // Give the compaction some of the writers' time before a hard stop is needed.
      slowed = true;
      slowdowns_.fetch_add(1, std::memory_order_relaxed);
      lock.unlock();
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      lock.lock();
      continue;
    }
    if (mem_->ApproximateMemoryUsage() < memtable_size_) return Status::OK();
    if (imms_.size() >= lopts_.max_immutable_memtables || l0 >= lopts_.l0_stop_trigger) {
      if (!bg_no_space_.ok()) return bg_no_space_;
      if (stopping_) return Status::Failed("lsm store " + dir_ + " is closing");
      stalls_.fetch_add(1, std::memory_order_relaxed);
      state_cv_.wait(lock);
      continue;
    }
    SwitchMemtable(lock);
    state_cv_.notify_all();  // wakes the flush thread
  }
}

Status LsmEngine::Apply(const WriteBatch& batch) {
  BatchEntries entries;
  KVFS_RETURN_IF_ERROR(CountError(AppendValidEntries(batch, &entries)));
  KVFS_RETURN_IF_ERROR(CountError(CheckWritable()));
  if (entries.empty()) return Status::OK();
  const EngineCounters::BatchTally tally = EngineCounters::Tally(entries);
  Deduplicate(&entries);

  std::shared_ptr<MemTable> mem;
  {
    std::unique_lock<std::mutex> lock(state_mu_);
    KVFS_RETURN_IF_ERROR(CountError(MakeRoomForWrite(lock)));
    ++in_flight_;
    mem = mem_;
  }
  Result<uint64_t> lsn = wal_->Append(batch.encoded());
  if (lsn.ok()) mem->AddBatch(*lsn, entries);
  if (in_flight_.fetch_sub(1) == 1 && switching_.load()) {
    std::lock_guard<std::mutex> lock(state_mu_);
    state_cv_.notify_all();
  }
  if (!lsn.ok()) return CountError(lsn.status());
  counters_.CountBatch(tally);
  return Status::OK();
}

Result<std::string> LsmEngine::Get(std::string_view key) {
  counters_.Add(counters_.gets, 1);
  const std::shared_ptr<const SuperVersion> sv = GetSuperVersion();
  std::string value;
  auto not_found = [&] { return Status::NotFound("no key '" + std::string(key) + "'"); };
  switch (sv->mem->Get(key, &value)) {
    case MemTable::Lookup::kFound:
      counters_.Add(counters_.bytes_read, value.size());
      return value;
    case MemTable::Lookup::kDeleted:
      return not_found();
    case MemTable::Lookup::kNotFound:
      break;
  }
  for (const auto& imm : sv->imms) {
    switch (imm->Get(key, &value)) {
      case MemTable::Lookup::kFound:
        counters_.Add(counters_.bytes_read, value.size());
        return value;
      case MemTable::Lookup::kDeleted:
        return not_found();
      case MemTable::Lookup::kNotFound:
        break;
    }
  }
  Result<std::optional<Version::Found>> found = sv->version->Get(key);
  if (!found.ok()) return CountError(found.status());
  if (!found->has_value() || (*found)->kind == ValueKind::kDeletion) return not_found();
  if ((*found)->kind == ValueKind::kBlob) {
    Result<std::string> blob = sv->version->ReadBlob(key, (*found)->payload);
    if (!blob.ok()) return CountError(blob.status());
    value = std::move(blob).value();
  } else {
    value = std::move((*found)->payload);
  }
  counters_.Add(counters_.bytes_read, value.size());
  return value;
}

Status LsmEngine::Scan(const ScanOptions& options, const ScanFn& fn) {
  counters_.Add(counters_.scans, 1);
  // The super version pins the memtables, tables and blob files for the whole scan: flushes and
  // compactions may install new ones meanwhile, and delete files, without disturbing it.
  const std::shared_ptr<const SuperVersion> sv = GetSuperVersion();
  std::vector<std::unique_ptr<InternalIterator>> children;
  children.push_back(sv->mem->NewIterator());
  for (const auto& imm : sv->imms) children.push_back(imm->NewIterator());
  sv->version->AddIterators(&children);
  if (!options_.read_only) {  // a read-only store compacts nothing
    bool seek_due = false;
    for (const TablePtr& t : sv->version->levels[0]) seek_due |= t->reader->ChargeScanSeek();
    if (seek_due) RequestL0SeekCompaction();
  }
  std::unique_ptr<InternalIterator> it = NewMergingIterator(std::move(children), true);
  const std::string& start = std::max(options.prefix, options.start_after);
  it->Seek(start);
  std::string blob_value;
  uint64_t bytes = 0;  // counted once at the end: an atomic add per row showed in profiles
  Status s = [&]() -> Status {
    for (; it->Valid(); it->Next()) {
      const std::string_view key = it->key();
      if (!key.starts_with(options.prefix)) break;
      if (!options.start_after.empty() && key <= options.start_after) continue;
      const ValueKind kind = it->kind();
      if (kind == ValueKind::kDeletion) continue;
      std::string_view value;
      if (!options.keys_only) {
        if (kind == ValueKind::kBlob) {
          KVFS_ASSIGN_OR_RETURN(blob_value, sv->version->ReadBlob(key, it->value()));
          value = blob_value;
        } else {
          value = it->value();
        }
        bytes += value.size();
      }
      if (!fn(key, value)) return Status::OK();
    }
    return it->status();
  }();
  counters_.Add(counters_.bytes_read, bytes);
  return CountError(std::move(s));
}

Status LsmEngine::Sync(SyncKind kind) {
  counters_.Add(counters_.syncs, 1);
  if (options_.read_only) return Status::OK();  // nothing was written
  return CountError(wal_->Sync(kind == SyncKind::kData));
}

void LsmEngine::DeferBatchSyncs() {
  if (wal_ != nullptr) wal_->DeferBatchSyncs();
}

Status LsmEngine::SyncBatchIfDue() {
  if (wal_ == nullptr) return Status::OK();  // read-only: nothing was written
  return CountError(wal_->SyncBatchIfDue());
}

EngineStats LsmEngine::stats() const {
  EngineStats s;
  counters_.Fill(&s);
  // Approximate: entries of every memtable and table, overwritten versions and tombstones
  // included (exact counting would need a read per write).
  if (auto sv = GetSuperVersion()) {
    s.live_keys = sv->mem->entries() + sv->version->EntryCount();
    for (const auto& imm : sv->imms) s.live_keys += imm->entries();
  }
  if (wal_ != nullptr) s.wal = wal_->stats();
  return s;
}

uint64_t ThreadCpuTimer::Now() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000 + static_cast<uint64_t>(ts.tv_nsec);
}

LsmDebugStats LsmEngine::debug_stats() const {
  LsmDebugStats d;
  d.flushes = flushes_.load();
  d.compactions = counters_.compactions.load();
  d.trivial_moves = trivial_moves_.load();
  d.blob_gcs = blob_gcs_.load();
  d.blob_files_deleted = blob_files_deleted_.load();
  d.stalls = stalls_.load();
  d.slowdowns = slowdowns_.load();
  d.compaction_bytes_written = compaction_bytes_.load();
  d.flush_bytes_written = flush_bytes_.load();
  d.compaction_cpu_seconds = compaction_cpu_ns_.load() / 1e9;
  d.flush_cpu_seconds = flush_cpu_ns_.load() / 1e9;
  d.seek_compactions = seek_compactions_.load();
  d.split_compactions = split_compactions_.load();
  if (auto sv = GetSuperVersion()) {
    for (const auto& level : sv->version->levels) d.tables_per_level.push_back(level.size());
    d.blob_files = sv->version->blobs.size();
    d.immutable_memtables = sv->imms.size();
  }
  return d;
}

Status LsmEngine::Close() {
  std::lock_guard<std::mutex> close_lock(close_mu_);
  if (closed_) return Status::OK();
  closed_ = true;
  // A shutdown checkpoint: every memtable, the active one included, is flushed (the usual
  // protocol: tables and MANIFEST durable, then the log checkpointed), so the next open finds
  // the log's records already in tables and replays nothing into a memtable; a restart after a
  // clean close costs opening the tables. With background work the flush thread does it, as
  // every other flush (run on the closing thread it slowed stores opened later in the process:
  // docs/decisions.md, "The LSM's Close is a shutdown checkpoint"). A failure loses nothing and
  // fails no close: the
  // log still holds every batch, and the next open replays them. (FlushOne does nothing once
  // the store has latched a failure.)
  if (wal_ != nullptr && flush_thread_.joinable()) {
    std::unique_lock<std::mutex> lock(state_mu_);
    while (switching_) state_cv_.wait(lock);
    if (!mem_->empty()) {
      SwitchMemtable(lock);
      state_cv_.notify_all();  // wakes the flush thread
    }
    // Bounded waits: a flush thread that latches a failure exits without a word.
    while (!imms_.empty() && FailedStatus().ok() && bg_no_space_.ok()) {
      state_cv_.wait_for(lock, std::chrono::milliseconds(100));
    }
  }
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    stopping_ = true;
  }
  state_cv_.notify_all();
  if (flush_thread_.joinable()) flush_thread_.join();
  if (compaction_thread_.joinable()) compaction_thread_.join();
  // Without background work (or after a background failure, when FlushOne does nothing), the
  // closing thread flushes what is left.
  if (wal_ != nullptr) {
    {
      std::unique_lock<std::mutex> lock(state_mu_);
      if (!mem_->empty()) SwitchMemtable(lock);
    }
    FlushAll().PermitUnchecked();
  }
  Status s;
  if (wal_ != nullptr) s = wal_->Close();
  lock_.reset();
  return s;
}

}  // namespace lsm

Result<std::unique_ptr<Engine>> OpenLsmWith(sync::FileSystem* fs, const std::string& dir,
                                            const EngineOptions& options,
                                            const LsmOptions& lsm_options,
                                            LsmRecoveryReport* report) {
  LsmRecoveryReport local;
  if (report == nullptr) report = &local;
  *report = LsmRecoveryReport();
  auto engine = std::make_unique<lsm::LsmEngine>(fs, dir, options, lsm_options);
  KVFS_RETURN_IF_ERROR(engine->Open(report));
  return std::unique_ptr<Engine>(std::move(engine));
}

void LsmRecoveryReport::Describe(RecoveryReport* report) const {
  report->AddFact("log_lsn", log_lsn);
  report->AddFact("tables", tables);
  report->AddFact("blob_files", blob_files);
  report->AddFact("orphans_removed", orphans_removed);
}

Result<std::unique_ptr<Engine>> OpenLsm(sync::FileSystem* fs, const std::string& dir,
                                        const EngineOptions& options) {
  return OpenLsmWith(fs, dir, options, LsmOptions());
}

LsmDebugStats GetLsmDebugStats(const Engine& engine) {
  return static_cast<const lsm::LsmEngine&>(engine).debug_stats();
}

}  // namespace kvfs::engines
