// Memtable flushes and MANIFEST updates. The order is the durability protocol (FORMAT.md,
// "Flush"): blob file and table durable (temp name, fdatasync, rename, directory fsync), then
// the MANIFEST naming them durable, and only then the log checkpoint and the memtable release.
// A crash anywhere leaves the old MANIFEST, whose log LSN still covers the memtable's batches.
#include <algorithm>

#include "engines/lsm/lsm_engine.h"
#include "engines/lsm/table_builder.h"

namespace kvfs::engines::lsm {

Status LsmEngine::FinishTableFile(sync::WritableFile* file, const std::string& tmp,
                                  uint64_t number) {
  KVFS_RETURN_IF_ERROR(file->DataSync());
  KVFS_RETURN_IF_ERROR(file->Close());
  // The rename is made durable by the directory fsync that follows all of a job's renames.
  return fs_->Rename(tmp, TablePath(number));
}

Status LsmEngine::LogAndApply(const VersionEdit& edit, const MemTable* flushed,
                              std::vector<uint64_t>* dead_blobs, bool* edit_files_unnamed) {
  *edit_files_unnamed = true;
  std::lock_guard<std::mutex> lock(manifest_mu_);
  // A failed store writes no MANIFEST: the one on disk may be a replacement whose directory
  // fsync failed, whose files the installed version does not know.
  KVFS_RETURN_IF_ERROR(FailedStatus());
  std::shared_ptr<const Version> base = current();
  std::vector<uint64_t> dead;
  std::shared_ptr<Version> next = ApplyEdit(*base, edit, &dead);
  const std::string bytes = EncodeManifest(next->ToManifest(next_file_number_.load()));
  sync::ReplaceOutcome outcome;
  Status s = sync::WriteFileAtomically(fs_, sync::JoinPath(dir_, kManifestName), bytes, &outcome);
  if (!s.ok()) {
    // Unless the old MANIFEST stands for certain, the new one may be the one on disk now or
    // after a crash: the files of both must stay, and the store refuses writes until a reopen
    // settles which. A failure before the rename leaves the edit's new files named by nothing;
    // only ENOSPC there leaves the store usable.
    *edit_files_unnamed = outcome == sync::ReplaceOutcome::kUnchanged;
    if (!s.IsNoSpace() || !*edit_files_unnamed) LatchFailure(s);
    return s;
  }
  {
    std::lock_guard<std::mutex> state_lock(state_mu_);
    version_ = std::move(next);
    if (flushed != nullptr) {
      auto it = std::find_if(imms_.begin(), imms_.end(), [&](const std::shared_ptr<MemTable>& m) {
        return m.get() == flushed;
      });
      if (it != imms_.end()) imms_.erase(it);
      bg_no_space_ = Status::OK();
    }
    InstallSuperVersion();
  }
  state_cv_.notify_all();  // stalled writers
  if (dead_blobs != nullptr) *dead_blobs = std::move(dead);
  return Status::OK();
}

void LsmEngine::RemoveObsolete(const std::vector<uint64_t>& tables,
                               const std::vector<uint64_t>& blobs) {
  // Only after the MANIFEST without them is durable. Readers still holding them keep their
  // open handles. A failed removal leaves an orphan, which the next open deletes.
  for (uint64_t n : tables) fs_->RemoveFile(TablePath(n)).PermitUnchecked();
  for (uint64_t n : blobs) fs_->RemoveFile(BlobPath(n)).PermitUnchecked();
  blob_files_deleted_.fetch_add(blobs.size(), std::memory_order_relaxed);
}

Status LsmEngine::FlushAll() {
  std::lock_guard<std::mutex> lock(flush_mu_);
  for (;;) {
    {
      std::lock_guard<std::mutex> state_lock(state_mu_);
      if (imms_.empty()) return Status::OK();
    }
    KVFS_RETURN_IF_ERROR(FlushOne());
  }
}

Status LsmEngine::FlushOne() {
  KVFS_RETURN_IF_ERROR(FailedStatus());
  const ThreadCpuTimer cpu(&flush_cpu_ns_);
  std::shared_ptr<MemTable> imm;
  std::shared_ptr<const Version> base;
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    if (imms_.empty()) return Status::OK();
    imm = imms_.front();
    base = version_;
  }
  const uint64_t boundary = imm->boundary();

  std::unique_ptr<sync::WritableFile> table_file;
  std::unique_ptr<TableBuilder> builder;
  std::unique_ptr<BlobWriter> blob;
  uint64_t table_number = 0, blob_number = 0;
  std::set<uint64_t> table_blobs;
  auto cleanup = [&] {
    // Best effort: gives the space back (the failure may be ENOSPC). Leftovers are orphans.
    if (table_number != 0) {
      if (table_file) table_file->Close().PermitUnchecked();
      fs_->RemoveFile(TablePath(table_number) + kTempSuffix).PermitUnchecked();
      fs_->RemoveFile(TablePath(table_number)).PermitUnchecked();
    }
    if (blob_number != 0) {
      fs_->RemoveFile(BlobPath(blob_number) + kTempSuffix).PermitUnchecked();
      fs_->RemoveFile(BlobPath(blob_number)).PermitUnchecked();
    }
  };

  Status built = [&]() -> Status {
    std::unique_ptr<InternalIterator> it = imm->NewIterator();
    std::string last_key;
    bool first = true;
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      const std::string_view key = it->key();
      if (!first && key == last_key) continue;  // an older version in the same memtable
      first = false;
      last_key.assign(key);
      // A tombstone with nothing older anywhere has nothing left to hide.
      if (it->kind() == ValueKind::kDeletion && !base->KeyRangeBelowHas(-1, key)) continue;
      ValueKind kind = it->kind();
      std::string_view payload = it->value();
      std::string ref;
      if (kind == ValueKind::kValue && lopts_.min_blob_size != 0 &&
          payload.size() >= lopts_.min_blob_size) {
        if (!blob) {
          blob_number = NewFileNumber();
          KVFS_ASSIGN_OR_RETURN(
              blob, BlobWriter::Create(fs_, BlobPath(blob_number) + kTempSuffix, blob_number));
        }
        KVFS_ASSIGN_OR_RETURN(BlobRef r, blob->Add(key, payload));
        ref = EncodeBlobRef(r);
        kind = ValueKind::kBlob;
        payload = ref;
        table_blobs.insert(blob_number);
      }
      if (!builder) {
        table_number = NewFileNumber();
        KVFS_ASSIGN_OR_RETURN(table_file,
                              fs_->NewWritableFile(TablePath(table_number) + kTempSuffix,
                                                   sync::CreateMode::kTruncate));
        builder = std::make_unique<TableBuilder>(table_file.get(), lopts_.block_size,
                                                 lopts_.bloom_bits_per_key);
      }
      builder->Add(key, kind, it->seq(), payload);
      KVFS_RETURN_IF_ERROR(builder->status());
    }
    // The blob file first: the table about to become durable refers to it.
    if (blob) {
      KVFS_RETURN_IF_ERROR(blob->Finish());
      KVFS_RETURN_IF_ERROR(fs_->Rename(BlobPath(blob_number) + kTempSuffix, BlobPath(blob_number)));
    }
    if (builder) {
      KVFS_RETURN_IF_ERROR(builder->Finish());
      KVFS_RETURN_IF_ERROR(
          FinishTableFile(table_file.get(), TablePath(table_number) + kTempSuffix, table_number));
    }
    if (blob || builder) KVFS_RETURN_IF_ERROR(sync::SyncDir(fs_, dir_));
    return Status::OK();
  }();
  if (!built.ok()) {
    cleanup();
    return Background(built);
  }

  VersionEdit edit;
  edit.log_lsn = boundary;
  Status opened = [&]() -> Status {
    if (blob) {
      KVFS_ASSIGN_OR_RETURN(std::shared_ptr<BlobReader> r,
                            BlobReader::Open(fs_, BlobPath(blob_number), blob_number));
      BlobMeta meta{blob_number, blob->file_size(), blob->record_bytes(), 0};
      edit.added_blobs.push_back(BlobFile{meta, std::move(r)});
      flush_bytes_.fetch_add(blob->file_size(), std::memory_order_relaxed);
    }
    if (builder) {
      TableMeta meta;
      meta.number = table_number;
      meta.level = 0;
      meta.file_size = builder->file_size();
      meta.entries = builder->entries();
      meta.smallest = builder->smallest();
      meta.largest = builder->largest();
      meta.smallest_seq = builder->smallest_seq();
      meta.largest_seq = builder->largest_seq();
      meta.blob_files.assign(table_blobs.begin(), table_blobs.end());
      KVFS_ASSIGN_OR_RETURN(TablePtr t, OpenTable(meta));
      edit.added.push_back(std::move(t));
      flush_bytes_.fetch_add(meta.file_size, std::memory_order_relaxed);
    }
    return Status::OK();
  }();
  if (!opened.ok()) {
    cleanup();
    return Background(opened);
  }
  bool unnamed = false;
  Status logged = LogAndApply(edit, imm.get(), nullptr, &unnamed);
  if (!logged.ok()) {
    if (unnamed) cleanup();  // the old MANIFEST stands for certain: no MANIFEST names them
    return logged;
  }
  flushes_.fetch_add(1, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    compaction_wanted_ = true;
  }
  state_cv_.notify_all();
  // Only now is every batch below the boundary durable outside the log.
  return Background(wal_->Checkpoint(boundary));
}

void LsmEngine::FlushLoop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(state_mu_);
      state_cv_.wait(lock, [this] { return stopping_ || !imms_.empty(); });
      if (stopping_) return;
    }
    Status s;
    {
      std::lock_guard<std::mutex> lock(flush_mu_);
      s = FlushOne();
    }
    if (s.IsNoSpace()) {
      // Retried once space may have been freed; stalled writers get the error meanwhile.
      std::unique_lock<std::mutex> lock(state_mu_);
      bg_no_space_ = s;
      state_cv_.notify_all();
      state_cv_.wait_for(lock, std::chrono::milliseconds(100), [this] { return stopping_; });
    } else if (!s.ok()) {
      return;  // latched: the store refuses writes until reopened
    }
  }
}

}  // namespace kvfs::engines::lsm
