// Bitcask merge (Compact and the background thread): the protocol is in FORMAT.md, "Merge".
#include <algorithm>
#include <utility>

#include "engines/bitcask/bitcask_engine.h"
#include "engines/bitcask/format.h"
#include "sync/durable.h"

namespace kvfs::engines::bitcask {

Status BitcaskEngine::Compact() {
  if (options_.read_only) {
    return Status::NotSupported("bitcask store " + dir_ + " is open read-only");
  }
  return CountError(Merge());
}

Status BitcaskEngine::Merge() {
  std::lock_guard<std::mutex> merge_lock(merge_mu_);
  return MergeLocked();
}

Status BitcaskEngine::MergeLocked() {
  KVFS_RETURN_IF_ERROR(CheckWritable());
  // M: once the Applies in flight have reached the keydir, every record below the log's next
  // LSN is there, and every later Apply gets an LSN >= M. Only these waits pause writers.
  uint64_t m;
  {
    std::unique_lock<std::mutex> lock(gate_mu_);
    gate_closed_ = true;
    gate_cv_.wait(lock, [this] { return in_flight_ == 0; });
    m = wal_->last_lsn() + 1;
    gate_closed_ = false;
    gate_cv_.notify_all();
  }
  // Nothing logged since the last merge (LSNs start at 1): nothing to fold in.
  if (m <= std::max<uint64_t>(merged_lsn_, 1)) return Status::OK();

  // Copy every live entry below M. Entries below M only ever get replaced by ones at or above
  // M, so walking the keydir in chunks (the shared lock dropped between) sees each at most
  // once and misses none that is still live.
  MergeWriter writer(fs_, merged_dir_, bopts_.merged_file_size, next_file_number_);
  std::vector<std::pair<std::string, Location>> moved;    // key, new location
  std::vector<std::pair<std::string, uint64_t>> dropped;  // tombstones below M: key, LSN
  Status copied = [&]() -> Status {
    std::string cursor;
    bool started = false;
    std::vector<std::pair<std::string, Location>> chunk;
    for (;;) {
      chunk.clear();
      bool done;
      {
        std::shared_lock<std::shared_mutex> lock(keydir_mu_);
        auto it = started ? keydir_.upper_bound(cursor) : keydir_.begin();
        for (size_t n = 0; it != keydir_.end() && n < kChunk; ++it, ++n) {
          if (it->second.lsn >= m) continue;
          if (it->second.tombstone) {
            dropped.emplace_back(it->first, it->second.lsn);
          } else {
            chunk.emplace_back(it->first, it->second);
          }
        }
        done = it == keydir_.end();
        // `it` is the next key to visit; the cursor is the last one visited.
        if (!done) {
          cursor = std::prev(it)->first;
          started = true;
        }
      }
      for (const auto& [key, loc] : chunk) {
        // Only this merge removes files, so the handle may be taken without the lock.
        Result<std::shared_ptr<sync::RandomAccessFile>> file = files_.Get(loc.kind, loc.file);
        if (!file.ok()) return file.status();
        Result<std::string> entry = ReadEntryBytes(key, loc, **file);
        if (!entry.ok()) {
          std::optional<Location> now = Lookup(key);
          if (!now || now->lsn != loc.lsn) continue;  // replaced meanwhile: not copied
          return entry.status();
        }
        Location to;
        KVFS_RETURN_IF_ERROR(writer.Add(key, loc.lsn, *entry, &to));
        moved.emplace_back(key, to);
      }
      if (done) break;
    }
    // A key whose entry was already at or above M when the walk reached it was not copied: its
    // entry below M is superseded, and after the switch recovery will find only the newer one,
    // in the log. That record must therefore be durable before the MANIFEST moves past the old
    // one (in `batch` and `none` modes it may not be yet). Every such record was appended
    // before this call, so one log sync covers them all.
    KVFS_RETURN_IF_ERROR(wal_->Sync());
    KVFS_RETURN_IF_ERROR(writer.Finish());
    return sync::SyncDir(fs_, merged_dir_);
  }();
  if (!copied.ok()) {
    // Nothing names the new files yet. A failed sync or write fails the store like any other
    // (the kernel may have dropped pages it did not write); ENOSPC, and damage found in what
    // was read, leave it as it was.
    writer.Abandon();
    if (!copied.IsNoSpace() && !copied.IsCorruption()) LatchFailure(copied);
    return copied;
  }

  // The new files are durable; the MANIFEST switches recovery over to them in one rename.
  bitcask::Manifest manifest;
  manifest.merged_lsn = m;
  manifest.next_file_number = writer.next_number();
  manifest.files = writer.files();
  sync::ReplaceOutcome outcome;
  Status written = sync::WriteFileAtomically(fs_, sync::JoinPath(dir_, kManifestName),
                                             bitcask::EncodeManifest(manifest), &outcome);
  if (!written.ok()) {
    if (outcome == sync::ReplaceOutcome::kUnchanged) {
      // The old MANIFEST stands for certain: no MANIFEST names the new files.
      writer.Abandon();
      if (!written.IsNoSpace()) LatchFailure(written);
      return written;
    }
    // The rename may have happened, durably or not: either MANIFEST may be the one on disk now
    // or after a crash, so neither set of files, nor the log below either merged LSN, may go.
    // Refuse writes until a reopen settles which.
    LatchFailure(written);
    return written;
  }
  next_file_number_ = writer.next_number();
  merged_files_ = writer.files();
  merged_lsn_ = m;

  // Repoint the moved keys whose entry is unchanged, and drop the tombstones below M, a chunk
  // per exclusive hold. A reader between chunks sees old or new locations of the same bytes.
  for (size_t i = 0; i < moved.size() || i < dropped.size(); i += kChunk) {
    std::unique_lock<std::shared_mutex> lock(keydir_mu_);
    for (size_t j = i; j < std::min(moved.size(), i + kChunk); ++j) {
      auto it = keydir_.find(moved[j].first);
      if (it != keydir_.end() && it->second.lsn == moved[j].second.lsn && !it->second.tombstone) {
        it->second = moved[j].second;
      }
    }
    for (size_t j = i; j < std::min(dropped.size(), i + kChunk); ++j) {
      auto it = keydir_.find(dropped[j].first);
      if (it != keydir_.end() && it->second.lsn == dropped[j].second && it->second.tombstone) {
        keydir_.erase(it);
      }
    }
  }
  {
    std::unique_lock<std::shared_mutex> lock(keydir_mu_);
    merged_bytes_ = writer.bytes();
    // Segments whose records are all below M are about to go. One that took records during
    // the merge keeps its entry (its byte count then overstates; it only steers the trigger).
    for (auto it = segments_.begin(); it != segments_.end();) {
      it = it->second.max_lsn < m ? segments_.erase(it) : std::next(it);
    }
  }

  // Now the log below M is represented in the merged files: delete its segments.
  KVFS_RETURN_IF_ERROR(wal_->Checkpoint(m));
  counters_.Add(counters_.compactions, 1);
  {
    std::shared_lock<std::shared_mutex> lock(keydir_mu_);
    files_.EvictWalUnless([&](uint64_t n) { return segments_.count(n) > 0; });
  }
  // Old merged files (and any leftovers) are no longer named by the MANIFEST.
  KVFS_ASSIGN_OR_RETURN(std::vector<std::string> names, fs_->ListDir(merged_dir_));
  bool removed = false;
  for (const std::string& name : names) {
    std::optional<uint64_t> n = bitcask::ParseDataFileName(name);
    if (!n) n = bitcask::ParseHintFileName(name);
    if (n && std::binary_search(merged_files_.begin(), merged_files_.end(), *n)) continue;
    KVFS_RETURN_IF_ERROR(fs_->RemoveFile(sync::JoinPath(merged_dir_, name)));
    if (n) files_.Evict(FileKind::kMerged, *n);
    removed = true;
  }
  if (removed) {
    Status synced = sync::SyncDir(fs_, merged_dir_);
    if (!synced.ok()) {
      LatchFailure(synced);  // a failed sync is final, here as anywhere
      return synced;
    }
  }
  return Status::OK();
}

bool BitcaskEngine::MergeDue() const {
  if (!CheckWritable().ok()) return false;
  std::shared_lock<std::shared_mutex> lock(keydir_mu_);
  if (segments_.size() <= bopts_.merge_min_sealed_segments) return false;
  const uint64_t sealed = segments_.size() - 1;
  uint64_t data = merged_bytes_;
  for (const auto& [n, s] : segments_) data += s.bytes;
  const uint64_t dead = data > live_bytes_ ? data - live_bytes_ : 0;
  return sealed >= bopts_.merge_max_sealed_segments ||
         static_cast<double>(dead) >= bopts_.merge_garbage_ratio * static_cast<double>(data);
}

void BitcaskEngine::BackgroundLoop() {
  // After a failed merge (ENOSPC, a damaged entry) the next attempt waits twice as long, up to
  // 64 intervals, so a full disk is not hammered with merges that cannot finish.
  int backoff = 0;
  std::unique_lock<std::mutex> lock(bg_mu_);
  while (!bg_stop_) {
    bg_cv_.wait_for(lock, bopts_.merge_check_interval * (1 << backoff));
    if (bg_stop_) break;
    lock.unlock();
    const bool due = MergeDue();
    merge_checks_.fetch_add(1, std::memory_order_relaxed);
    if (due) {
      // The error is counted in stats().errors; a write or sync failure has also latched the
      // store failed, which stops further merges (MergeDue checks it) and is reported to the
      // next writer.
      Status s = CountError(Merge());
      backoff = s.ok() ? 0 : std::min(backoff + 1, 6);
    }
    lock.lock();
  }
}

}  // namespace kvfs::engines::bitcask
