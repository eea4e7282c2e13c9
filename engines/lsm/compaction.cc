// Leveled compaction and blob garbage collection (FORMAT.md, "Compaction" and "Blob GC").
//
// A job merges its input tables into new ones (temp name, fdatasync, rename; blob files for
// relocated values likewise; one directory fsync), then one MANIFEST write removes the inputs
// and adds the outputs, and only then are the inputs deleted. Jobs run one at a time
// (compaction_mu_); flushes run beside them and only ever add level-0 tables, so a job's edit
// applies to whatever version is current when it finishes.
#include <algorithm>
#include <cmath>
#include <system_error>
#include <thread>

#include "engines/lsm/lsm_engine.h"
#include "engines/lsm/table_builder.h"

namespace kvfs::engines::lsm {

namespace {

uint64_t LevelTarget(const LsmOptions& o, int level) {
  double target = static_cast<double>(o.l1_target_bytes);
  for (int l = 1; l < level; ++l) target *= o.level_size_ratio;
  return static_cast<uint64_t>(target);
}

std::vector<TablePtr> TablesReferencing(const Version& v, const std::set<uint64_t>& blobs) {
  std::vector<TablePtr> out;
  for (const auto& level : v.levels) {
    for (const TablePtr& t : level) {
      for (uint64_t b : t->meta.blob_files) {
        if (blobs.count(b) != 0) {
          out.push_back(t);
          break;
        }
      }
    }
  }
  return out;
}

// True if two of the (single-table) runs have overlapping key ranges.
bool AnyOverlap(const std::vector<std::vector<TablePtr>>& runs) {
  std::vector<const TableMeta*> metas;
  for (const auto& run : runs) {
    for (const TablePtr& t : run) metas.push_back(&t->meta);
  }
  std::sort(metas.begin(), metas.end(),
            [](const TableMeta* a, const TableMeta* b) { return a->smallest < b->smallest; });
  for (size_t i = 1; i < metas.size(); ++i) {
    if (metas[i]->smallest <= metas[i - 1]->largest) return true;
  }
  return false;
}

}  // namespace

std::optional<CompactionJob> LsmEngine::PickCompaction(const Version& v) {
  // The level furthest over its budget: level 0 counts tables (each one is read by every
  // lookup), deeper levels count bytes.
  double best_score = 0;
  int best = -1;
  for (int level = 0; level < kNumLevels - 1; ++level) {
    const double score =
        level == 0 ? static_cast<double>(v.levels[0].size()) / lopts_.l0_compaction_trigger
                   : static_cast<double>(v.LevelBytes(level)) / LevelTarget(lopts_, level);
    if (score >= 1 && score > best_score) {
      best_score = score;
      best = level;
    }
  }
  if (best < 0 && !v.levels[0].empty() && l0_seek_due_.load(std::memory_order_relaxed)) {
    best = 0;  // below its trigger, but scans have paid more seeks in it than compacting costs
    seek_compactions_.fetch_add(1, std::memory_order_relaxed);
  }
  // Whatever compacts level 0 (or finds it empty) settles what the scans asked for.
  if (best == 0 || v.levels[0].empty()) l0_seek_due_.store(false, std::memory_order_relaxed);
  if (best < 0) return std::nullopt;
  CompactionJob job;
  job.level = best;
  job.output_level = best + 1;
  std::string smallest, largest;
  if (best == 0) {
    // Every level-0 table: they may overlap each other, so taking them all keeps level 1 older
    // than anything left in level 0.
    for (const TablePtr& t : v.levels[0]) {
      job.runs.push_back({t});
      if (smallest.empty() || t->meta.smallest < smallest) smallest = t->meta.smallest;
      if (largest.empty() || t->meta.largest > largest) largest = t->meta.largest;
    }
  } else {
    // Round robin through the level's key space, so every table's turn comes.
    const std::vector<TablePtr>& run = v.levels[best];
    const std::string& after = compact_pointer_[best];
    auto it = std::find_if(run.begin(), run.end(),
                           [&](const TablePtr& t) { return t->meta.smallest > after; });
    if (it == run.end()) it = run.begin();
    job.runs.push_back({*it});
    smallest = (*it)->meta.smallest;
    largest = (*it)->meta.largest;
    compact_pointer_[best] = largest;
  }
  std::vector<TablePtr> below = v.Overlapping(best + 1, smallest, largest);
  if (below.empty() && !AnyOverlap(job.runs)) {
    // Nothing to merge with (sequential keys: fills in order, a file's chunks): relink the
    // files one level down, a MANIFEST edit without I/O.
    job.kind = CompactionJob::Kind::kTrivialMove;
    return job;
  }
  if (!below.empty()) job.runs.push_back(std::move(below));
  job.kind = CompactionJob::Kind::kLevel;
  return job;
}

void LsmEngine::RequestL0SeekCompaction() {
  l0_seek_due_.store(true, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    compaction_wanted_ = true;
  }
  state_cv_.notify_all();  // the compaction thread (without one, the next writer's compaction)
}

std::optional<CompactionJob> LsmEngine::PickBlobGc(const Version& v) {
  std::set<uint64_t> due;
  for (const auto& [number, blob] : v.blobs) {
    const BlobMeta& m = blob.meta;
    if (m.total_bytes > 0 &&
        static_cast<double>(m.garbage_bytes) >= lopts_.blob_gc_ratio * m.total_bytes) {
      due.insert(number);
    }
  }
  if (due.empty()) return std::nullopt;
  CompactionJob job;
  job.kind = CompactionJob::Kind::kBlobGc;
  job.drop_tombstones = false;
  job.per_run = true;
  job.relocate = due;
  // Each referencing table is rewritten in place (same level), its references to due blob
  // files pointing at the copies afterwards. A due blob file no table refers to is simply
  // dropped by the job's edit (RunJob marks the rest of it dead).
  for (const TablePtr& t : TablesReferencing(v, due)) job.runs.push_back({t});
  return job;
}

std::string LsmEngine::SubcompactionSplit(const CompactionJob& job) const {
  // Level-0 jobs only (every level-0 table and the overlapping part of level 1: the big job
  // writers wait for), no blob relocation (one blob writer per job), at least the threshold.
  if (lopts_.subcompaction_min_bytes == 0 || job.kind != CompactionJob::Kind::kLevel ||
      job.level != 0 || job.per_run || !job.relocate.empty() || job.runs.size() < 2) {
    return {};
  }
  uint64_t bytes = 0;
  for (const auto& run : job.runs) {
    for (const TablePtr& t : run) bytes += t->meta.file_size;
  }
  if (bytes < lopts_.subcompaction_min_bytes) return {};
  // The level-1 run (the last, when there is one) cut at the table boundary nearest half its
  // bytes: its tables partition the key space the job covers.
  const std::vector<TablePtr>& below = job.runs.back();
  if (below.size() < 2 || below[0]->meta.level != job.output_level) return {};
  uint64_t below_bytes = 0;
  for (const TablePtr& t : below) below_bytes += t->meta.file_size;
  uint64_t seen = 0;
  for (size_t i = 1; i < below.size(); ++i) {
    seen += below[i - 1]->meta.file_size;
    if (2 * seen >= below_bytes) return below[i]->meta.smallest;
  }
  return {};
}

Status LsmEngine::RunJob(const CompactionJob& job) {
  KVFS_RETURN_IF_ERROR(FailedStatus());
  const ThreadCpuTimer cpu(&compaction_cpu_ns_);
  const std::shared_ptr<const Version> base = current();
  VersionEdit edit;
  std::vector<uint64_t> removed_tables;
  for (const auto& run : job.runs) {
    for (const TablePtr& t : run) {
      edit.removed.insert(t->meta.number);
      removed_tables.push_back(t->meta.number);
    }
  }
  if (job.kind == CompactionJob::Kind::kTrivialMove) {
    for (const auto& run : job.runs) {
      Table moved = *run[0];
      moved.meta.level = job.output_level;
      edit.added.push_back(std::make_shared<const Table>(std::move(moved)));
    }
    std::vector<uint64_t> dead;
    bool unnamed = false;  // a move writes no file
    KVFS_RETURN_IF_ERROR(LogAndApply(edit, nullptr, &dead, &unnamed));
    trivial_moves_.fetch_add(1, std::memory_order_relaxed);
    RemoveObsolete({}, dead);
    return Status::OK();
  }

  struct Output {
    uint64_t number = 0;
    std::unique_ptr<sync::WritableFile> file;
    std::unique_ptr<TableBuilder> builder;
    std::set<uint64_t> blobs;
    bool finished = false;
  };
  std::vector<Output> outputs;
  std::unique_ptr<BlobWriter> blob;  // relocated values
  uint64_t blob_number = 0;
  auto cleanup = [&] {
    for (Output& o : outputs) {
      if (o.file) o.file->Close().PermitUnchecked();
      fs_->RemoveFile(TablePath(o.number) + kTempSuffix).PermitUnchecked();
      fs_->RemoveFile(TablePath(o.number)).PermitUnchecked();
    }
    if (blob_number != 0) {
      fs_->RemoveFile(BlobPath(blob_number) + kTempSuffix).PermitUnchecked();
      fs_->RemoveFile(BlobPath(blob_number)).PermitUnchecked();
    }
  };
  const uint64_t split_at = job.per_run ? UINT64_MAX : lopts_.target_file_size;

  auto finish_output = [&](Output& o) -> Status {
    if (o.finished) return Status::OK();
    o.finished = true;
    KVFS_RETURN_IF_ERROR(o.builder->Finish());
    return FinishTableFile(o.file.get(), TablePath(o.number) + kTempSuffix, o.number);
  };

  // Merges one group of runs, the keys in [lo, hi) ("" = unbounded), into *outs at `level`,
  // counting blob records that became dead in *garbage. Relocation (blob GC) only with both
  // bounds open: its blob writer is one per job.
  auto merge = [&](const std::vector<std::vector<TablePtr>>& runs, int level, std::string_view lo,
                   std::string_view hi, std::vector<Output>* outs,
                   std::map<uint64_t, uint64_t>* garbage) -> Status {
    // Every input block is read once, in order: many blocks per read, none through the cache.
    constexpr TableReader::ReadMode kMode = TableReader::ReadMode::kSequential;
    std::vector<std::unique_ptr<InternalIterator>> children;
    children.reserve(runs.size());
    for (const auto& run : runs) {
      children.push_back(run.size() == 1 ? run[0]->reader->NewIterator(kMode)
                                         : NewLevelIterator(&run, kMode));
    }
    std::unique_ptr<InternalIterator> it = NewMergingIterator(std::move(children), false);
    Output* out = nullptr;
    std::string last_key, relocated_ref, value;
    bool first = true;
    if (lo.empty()) {
      it->SeekToFirst();
    } else {
      it->Seek(lo);
    }
    for (; it->Valid(); it->Next()) {
      const std::string_view key = it->key();
      if (!hi.empty() && CompareKeys(key, hi) >= 0) break;
      ValueKind kind = it->kind();
      std::string_view payload = it->value();
      std::optional<BlobRef> ref;
      if (kind == ValueKind::kBlob) {
        ref = DecodeBlobRef(payload);
        if (!ref) {
          return Status::Corruption("malformed blob reference for key '" + std::string(key) +
                                    "' in a table being compacted");
        }
      }
      if (!first && key == last_key) {
        // Shadowed by a newer version: its blob record, if any, is now dead.
        if (ref) (*garbage)[ref->file] += BlobRecordSize(key.size(), ref->size);
        continue;
      }
      first = false;
      last_key.assign(key);
      if (kind == ValueKind::kDeletion && job.drop_tombstones &&
          !base->KeyRangeBelowHas(level, key)) {
        continue;  // nothing older below the output level for it to hide
      }
      if (ref && job.relocate.count(ref->file) != 0) {
        KVFS_ASSIGN_OR_RETURN(value, base->ReadBlob(key, payload));
        if (!blob) {
          blob_number = NewFileNumber();
          KVFS_ASSIGN_OR_RETURN(
              blob, BlobWriter::Create(fs_, BlobPath(blob_number) + kTempSuffix, blob_number));
        }
        KVFS_ASSIGN_OR_RETURN(BlobRef moved, blob->Add(key, value));
        (*garbage)[ref->file] += BlobRecordSize(key.size(), ref->size);
        ref = moved;
        relocated_ref = EncodeBlobRef(moved);
        payload = relocated_ref;
      }
      if (out == nullptr) {
        outs->emplace_back();
        out = &outs->back();
        out->number = NewFileNumber();
        KVFS_ASSIGN_OR_RETURN(out->file, fs_->NewWritableFile(TablePath(out->number) + kTempSuffix,
                                                              sync::CreateMode::kTruncate));
        out->builder = std::make_unique<TableBuilder>(out->file.get(), lopts_.block_size,
                                                      lopts_.bloom_bits_per_key);
      }
      out->builder->Add(key, kind, it->seq(), payload);
      if (ref) out->blobs.insert(ref->file);
      KVFS_RETURN_IF_ERROR(out->builder->status());
      if (out->builder->EstimatedSize() >= split_at) {
        KVFS_RETURN_IF_ERROR(finish_output(*out));
        out = nullptr;
      }
    }
    KVFS_RETURN_IF_ERROR(it->status());
    if (out != nullptr) KVFS_RETURN_IF_ERROR(finish_output(*out));
    return Status::OK();
  };

  std::vector<int> output_levels;  // per output
  Status built = [&]() -> Status {
    if (job.per_run) {
      for (const auto& run : job.runs) {
        KVFS_RETURN_IF_ERROR(merge({run}, run[0]->meta.level, {}, {}, &outputs, &edit.garbage));
        output_levels.resize(outputs.size(), run[0]->meta.level);
      }
    } else if (const std::string split = SubcompactionSplit(job); !split.empty()) {
      // Two halves of the key space at once, the upper one on a second thread: writers are
      // slowed while level 0 waits for this job, so its time is what they lose. The halves'
      // outputs do not overlap (keys below the split, keys from it), and the one MANIFEST
      // edit below installs them together, exactly as one merge's would be.
      split_compactions_.fetch_add(1, std::memory_order_relaxed);
      std::vector<Output> upper;
      std::map<uint64_t, uint64_t> upper_garbage;
      Status upper_status;
      auto merge_upper = [&] {
        upper_status = merge(job.runs, job.output_level, split, {}, &upper, &upper_garbage);
      };
      std::thread upper_thread;
      try {
        upper_thread = std::thread([&] {
          const ThreadCpuTimer upper_cpu(&compaction_cpu_ns_);
          merge_upper();
        });
      } catch (const std::system_error&) {
        // No thread to be had (a process at its thread limit): the halves run one after the
        // other on this one, rather than the daemon dying of an uncaught exception.
      }
      const Status lower_status =
          merge(job.runs, job.output_level, {}, split, &outputs, &edit.garbage);
      if (upper_thread.joinable()) {
        upper_thread.join();
      } else {
        merge_upper();
      }
      for (Output& o : upper) outputs.push_back(std::move(o));  // cleanup() must see them too
      for (const auto& [file, bytes] : upper_garbage) edit.garbage[file] += bytes;
      KVFS_RETURN_IF_ERROR(lower_status);
      KVFS_RETURN_IF_ERROR(upper_status);
      output_levels.resize(outputs.size(), job.output_level);
    } else {
      KVFS_RETURN_IF_ERROR(merge(job.runs, job.output_level, {}, {}, &outputs, &edit.garbage));
      output_levels.resize(outputs.size(), job.output_level);
    }
    if (blob) {
      KVFS_RETURN_IF_ERROR(blob->Finish());
      KVFS_RETURN_IF_ERROR(fs_->Rename(BlobPath(blob_number) + kTempSuffix, BlobPath(blob_number)));
    }
    if (!outputs.empty() || blob) KVFS_RETURN_IF_ERROR(sync::SyncDir(fs_, dir_));
    if (blob) {
      KVFS_ASSIGN_OR_RETURN(std::shared_ptr<BlobReader> r,
                            BlobReader::Open(fs_, BlobPath(blob_number), blob_number));
      edit.added_blobs.push_back(BlobFile{
          BlobMeta{blob_number, blob->file_size(), blob->record_bytes(), 0}, std::move(r)});
      compaction_bytes_.fetch_add(blob->file_size(), std::memory_order_relaxed);
    }
    for (size_t i = 0; i < outputs.size(); ++i) {
      const Output& o = outputs[i];
      TableMeta meta;
      meta.number = o.number;
      meta.level = output_levels[i];
      meta.file_size = o.builder->file_size();
      meta.entries = o.builder->entries();
      meta.smallest = o.builder->smallest();
      meta.largest = o.builder->largest();
      meta.smallest_seq = o.builder->smallest_seq();
      meta.largest_seq = o.builder->largest_seq();
      meta.blob_files.assign(o.blobs.begin(), o.blobs.end());
      KVFS_ASSIGN_OR_RETURN(TablePtr t, OpenTable(meta));
      edit.added.push_back(std::move(t));
      compaction_bytes_.fetch_add(meta.file_size, std::memory_order_relaxed);
    }
    return Status::OK();
  }();
  if (!built.ok()) {
    cleanup();
    return Background(built);
  }
  if (job.kind == CompactionJob::Kind::kBlobGc) {
    // Every live value of a due blob file has been copied: whatever was not is dead.
    for (uint64_t b : job.relocate) {
      auto it = base->blobs.find(b);
      if (it != base->blobs.end()) edit.garbage[b] += it->second.meta.total_bytes;
    }
  }
  std::vector<uint64_t> dead;
  bool unnamed = false;
  Status logged = LogAndApply(edit, nullptr, &dead, &unnamed);
  if (!logged.ok()) {
    // The outputs may go only if the old MANIFEST stands for certain; the inputs stay either way.
    if (unnamed) cleanup();
    return logged;
  }
  counters_.Add(counters_.compactions, 1);
  if (job.kind == CompactionJob::Kind::kBlobGc) blob_gcs_.fetch_add(1, std::memory_order_relaxed);
  RemoveObsolete(removed_tables, dead);
  return Status::OK();
}

Status LsmEngine::CompactWhileDue(bool include_gc) {
  // Each job shrinks what made it due, so this ends; the bound is a guard against a bug.
  for (int i = 0; i < 1000; ++i) {
    const std::shared_ptr<const Version> v = current();
    std::optional<CompactionJob> job = PickCompaction(*v);
    if (!job && include_gc) job = PickBlobGc(*v);
    if (!job) return Status::OK();
    KVFS_RETURN_IF_ERROR(RunJob(*job));
  }
  return Status::OK();
}

Status LsmEngine::RunFullCompaction() {
  const std::shared_ptr<const Version> v = current();
  CompactionJob job;
  job.kind = CompactionJob::Kind::kFull;
  int deepest = 0;
  for (int level = 0; level < kNumLevels; ++level) {
    if (!v->levels[level].empty()) deepest = level;
  }
  for (const TablePtr& t : v->levels[0]) job.runs.push_back({t});
  for (int level = 1; level <= deepest; ++level) {
    if (!v->levels[level].empty()) job.runs.push_back(v->levels[level]);
  }
  if (job.runs.empty()) return Status::OK();
  job.level = 0;
  job.output_level = std::max(1, deepest);
  if (std::optional<CompactionJob> gc = PickBlobGc(*v)) job.relocate = gc->relocate;
  KVFS_RETURN_IF_ERROR(RunJob(job));
  // The merge counted every dead blob record exactly: collect what is now due.
  for (int i = 0; i < 4; ++i) {
    std::optional<CompactionJob> gc = PickBlobGc(*current());
    if (!gc) break;
    KVFS_RETURN_IF_ERROR(RunJob(*gc));
  }
  return Status::OK();
}

Status LsmEngine::Compact() {
  if (options_.read_only) return Status::NotSupported("lsm store " + dir_ + " is open read-only");
  KVFS_RETURN_IF_ERROR(CountError(CheckWritable()));
  std::lock_guard<std::mutex> compaction_lock(compaction_mu_);
  {
    std::unique_lock<std::mutex> lock(state_mu_);
    while (switching_) state_cv_.wait(lock);
    if (!mem_->empty()) SwitchMemtable(lock);
  }
  KVFS_RETURN_IF_ERROR(CountError(FlushAll()));
  return CountError(RunFullCompaction());
}

void LsmEngine::CompactionLoop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(state_mu_);
      state_cv_.wait(lock, [this] { return stopping_ || compaction_wanted_; });
      if (stopping_) return;
      compaction_wanted_ = false;
    }
    Status s;
    {
      std::lock_guard<std::mutex> lock(compaction_mu_);
      s = CompactWhileDue(true);
    }
    if (s.IsNoSpace()) {
      std::unique_lock<std::mutex> lock(state_mu_);
      state_cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stopping_; });
      compaction_wanted_ = true;
    } else if (!s.ok()) {
      return;  // latched
    }
  }
}

}  // namespace kvfs::engines::lsm
