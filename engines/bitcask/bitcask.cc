// The Bitcask engine: open and recovery, reads, writes, stats, close. The contract is in
// bitcask.h, the file formats in FORMAT.md, the merge in merge.cc.
#include <algorithm>
#include <utility>

#include "engines/bitcask/bitcask_engine.h"
#include "engines/bitcask/format.h"
#include "engines/engine_open.h"
#include "sync/durable.h"
#include "sync/wal_format.h"

namespace kvfs::engines {
namespace bitcask {

Status BitcaskEngine::Open(BitcaskRecoveryReport* report) {
  KVFS_ASSIGN_OR_RETURN(lock_, OpenDataDir(fs_, dir_, name(), options_.read_only));

  // The MANIFEST names the live merged files; without one there are none yet.
  bitcask::Manifest manifest;
  const std::string manifest_path = sync::JoinPath(dir_, kManifestName);
  KVFS_ASSIGN_OR_RETURN(bool have_manifest, fs_->Exists(manifest_path));
  if (have_manifest) {
    KVFS_ASSIGN_OR_RETURN(std::string bytes, sync::ReadFileToString(fs_, manifest_path));
    KVFS_ASSIGN_OR_RETURN(manifest, bitcask::DecodeManifest(bytes, manifest_path));
  }
  merged_lsn_ = manifest.merged_lsn;
  next_file_number_ = manifest.next_file_number;
  merged_files_ = manifest.files;
  report->merged_lsn = merged_lsn_;
  report->merged_files = merged_files_.size();

  // Anything else in merged/ is left over from a merge that did not reach its MANIFEST. Such
  // files are deleted on the MANIFEST's word, so it must be the one a crash would leave:
  // CreateDirDurably fsyncs its parent, the directory of the MANIFEST, which makes a replacement
  // whose own directory fsync failed durable, or fails (that fsync failed earlier in this
  // process) before anything is deleted.
  if (!options_.read_only) KVFS_RETURN_IF_ERROR(sync::CreateDirDurably(fs_, merged_dir_));
  KVFS_ASSIGN_OR_RETURN(bool have_merged_dir, fs_->Exists(merged_dir_));
  if (have_merged_dir) {
    KVFS_ASSIGN_OR_RETURN(std::vector<std::string> names, fs_->ListDir(merged_dir_));
    auto named = [&](std::optional<uint64_t> n) {
      return n && std::binary_search(merged_files_.begin(), merged_files_.end(), *n);
    };
    for (const std::string& name : names) {
      if (named(bitcask::ParseDataFileName(name)) || named(bitcask::ParseHintFileName(name))) {
        continue;
      }
      if (options_.read_only) continue;
      KVFS_RETURN_IF_ERROR(fs_->RemoveFile(sync::JoinPath(merged_dir_, name)));
      ++report->leftover_files_removed;
    }
    if (report->leftover_files_removed > 0) {
      KVFS_RETURN_IF_ERROR(sync::SyncDir(fs_, merged_dir_));
    }
  }
  keydir_.BeginBulkLoad();
  for (uint64_t number : merged_files_) KVFS_RETURN_IF_ERROR(LoadMergedFile(number, report));

  // Then the log from merged_lsn on, each record a batch whose entries stay where they are.
  const sync::WalRecordFn replay = [this](const sync::WalRecord& r) -> Status {
    std::unique_lock<std::shared_mutex> lock(keydir_mu_);
    SegmentInfo& seg = segments_[r.segment];
    seg.max_lsn = std::max(seg.max_lsn, r.lsn);
    seg.bytes += r.payload.size();
    Status s = ForEachEntry(r.payload, "", [&](const BatchEntry& e) -> Status {
      if (!IsValidKey(e.key, bopts_.max_key_size)) return Status::Corruption("invalid key length");
      Install(e.key,
              Location{r.lsn, r.segment, r.payload_offset + e.offset, static_cast<uint32_t>(e.size),
                       FileKind::kWal, e.kind == EntryKind::kDelete});
      return Status::OK();
    });
    // The record is named only when it is damaged: a million records replayed at open
    // would otherwise build a million names.
    if (s.ok()) return s;
    return s.WithContext(files_.PathOf(FileKind::kWal, r.segment) + " record LSN " +
                         std::to_string(r.lsn) + " at offset " +
                         std::to_string(r.payload_offset - sync::wal::kRecordHeaderSize));
  };
  KVFS_ASSIGN_OR_RETURN(wal_, OpenLog(fs_, wal_dir_, LogOptionsFor(options_), options_, merged_lsn_,
                                      replay, &recovery_));
  keydir_.EndBulkLoad();
  report->Describe(&recovery_);
  if (options_.read_only) return Status::OK();
  // Finishes the cleanup of a merge that made its MANIFEST durable but crashed before this.
  KVFS_RETURN_IF_ERROR(wal_->Checkpoint(merged_lsn_));
  if (options_.background_work) bg_ = std::thread([this] { BackgroundLoop(); });
  return Status::OK();
}

Status BitcaskEngine::LoadMergedFile(uint64_t number, BitcaskRecoveryReport* report) {
  KVFS_ASSIGN_OR_RETURN(auto file, files_.Get(FileKind::kMerged, number));
  const std::string& path = file->path();
  KVFS_ASSIGN_OR_RETURN(uint64_t size, file->Size());
  BufferedReader reader(file.get(), size);
  if (size < kDataHeaderSize) {
    return Status::Corruption("merged data file " + path + ": header cut short");
  }
  KVFS_ASSIGN_OR_RETURN(std::string_view header, reader.Read(0, kDataHeaderSize));
  KVFS_RETURN_IF_ERROR(bitcask::CheckDataHeader(header, number, path));

  if (bopts_.use_hints) {
    const std::string hint_path = sync::JoinPath(merged_dir_, bitcask::HintFileName(number));
    Status hint_status = [&]() -> Status {
      KVFS_ASSIGN_OR_RETURN(std::string bytes, sync::ReadFileToString(fs_, hint_path));
      KVFS_ASSIGN_OR_RETURN(auto entries, bitcask::DecodeHintFile(bytes, number, hint_path));
      // A hint must describe entries that fit the data file; the entries' own CRCs are
      // checked when they are read.
      for (const bitcask::HintEntry& e : entries) {
        if (e.entry_offset < kDataHeaderSize + kRecordPrefixSize ||
            e.entry_size < kEntryHeaderSize + e.key.size() || e.entry_offset > size ||
            e.entry_size > size - e.entry_offset || !IsValidKey(e.key, bopts_.max_key_size)) {
          std::string why = "hint file " + hint_path;
          why += ": entry for a key at offset " + std::to_string(e.entry_offset);
          why += " does not fit " + path;
          return Status::Corruption(why);
        }
      }
      std::unique_lock<std::shared_mutex> lock(keydir_mu_);
      for (bitcask::HintEntry& e : entries) {
        Install(e.key, Location{e.lsn, number, e.entry_offset, static_cast<uint32_t>(e.entry_size),
                                FileKind::kMerged, false});
        merged_bytes_ += e.entry_size;
      }
      report->keys_from_hints += entries.size();
      return Status::OK();
    }();
    if (hint_status.ok()) {
      ++report->hint_files_used;
      return Status::OK();
    }
    report->hint_files_rejected.push_back(hint_status.ToString());
  }

  // No usable hint: every record is read and verified. The file was complete and durable
  // before the MANIFEST named it, so any damage, even at the very end, is corruption.
  uint64_t pos = kDataHeaderSize;
  while (pos < size) {
    // Named only on damage: a file without hints is scanned entry by entry at open.
    const auto damaged = [&](std::string_view what) {
      return Status::Corruption("merged data file " + path + " at offset " + std::to_string(pos) +
                                ": " + std::string(what));
    };
    if (size - pos < kRecordPrefixSize + kEntryHeaderSize) return damaged("record cut short");
    KVFS_ASSIGN_OR_RETURN(std::string_view prefix,
                          reader.Read(pos, kRecordPrefixSize + kEntryHeaderSize));
    const std::optional<uint64_t> lsn = bitcask::DecodeRecordPrefix(prefix.data());
    if (!lsn) return damaged("record checksum mismatch");
    const uint64_t key_size = sync::wal::DecodeFixed32(prefix.data() + kRecordPrefixSize + 5);
    const uint64_t value_size = sync::wal::DecodeFixed32(prefix.data() + kRecordPrefixSize + 9);
    const uint64_t entry_size = kEntryHeaderSize + key_size + value_size;
    if (entry_size > size - pos - kRecordPrefixSize) return damaged("record runs past the end");
    KVFS_ASSIGN_OR_RETURN(std::string_view entry_bytes,
                          reader.Read(pos + kRecordPrefixSize, entry_size));
    Result<BatchEntry> decoded = DecodeEntry(entry_bytes, "");
    if (!decoded.ok()) return damaged(decoded.status().message());
    const BatchEntry& e = *decoded;
    if (e.kind != EntryKind::kPut || !IsValidKey(e.key, bopts_.max_key_size)) {
      return damaged("not a put of a valid key");
    }
    {
      std::unique_lock<std::shared_mutex> lock(keydir_mu_);
      Install(e.key, Location{*lsn, number, pos + kRecordPrefixSize,
                              static_cast<uint32_t>(entry_size), FileKind::kMerged, false});
      merged_bytes_ += entry_size;
    }
    ++report->entries_scanned;
    pos += kRecordPrefixSize + entry_size;
  }
  return Status::OK();
}

void BitcaskEngine::Install(std::string_view key, const Location& loc) {
  auto [it, present] = keydir_.FindOrHint(key);
  if (!present) {
    keydir_.insert(it, std::string(key), loc);
  } else {
    // Concurrent Applies may reach here out of LSN order; the later LSN wins. Equal LSNs are
    // entries of one batch, where the later entry wins.
    if (loc.lsn < it->second.lsn) return;
    if (!it->second.tombstone) {
      live_bytes_ -= it->second.size;
      live_keys_.fetch_sub(1, std::memory_order_relaxed);
    }
    it->second = loc;
  }
  if (!loc.tombstone) {
    live_bytes_ += loc.size;
    live_keys_.fetch_add(1, std::memory_order_relaxed);
  }
}

Status BitcaskEngine::CheckWritable() const {
  if (options_.read_only) {
    return Status::NotSupported("bitcask store " + dir_ + " is open read-only");
  }
  return failure_.CheckWritable(*wal_);
}

void BitcaskEngine::LatchFailure(const Status& s) { failure_.Latch(s); }

void BitcaskEngine::EnterGate() {
  std::unique_lock<std::mutex> lock(gate_mu_);
  gate_cv_.wait(lock, [this] { return !gate_closed_; });
  ++in_flight_;
}

void BitcaskEngine::LeaveGate() {
  std::lock_guard<std::mutex> lock(gate_mu_);
  if (--in_flight_ == 0 && gate_closed_) gate_cv_.notify_all();
}

Status BitcaskEngine::Apply(const WriteBatch& batch) {
  // Validate everything before writing anything; the entries are decoded once, here.
  std::vector<BatchEntry> entries;
  KVFS_RETURN_IF_ERROR(CountError(AppendValidEntries(batch, &entries, bopts_.max_key_size)));
  KVFS_RETURN_IF_ERROR(CountError(CheckWritable()));
  if (entries.empty()) return Status::OK();

  EnterGate();
  Result<sync::WalPosition> pos = wal_->AppendWithPosition(batch.encoded());
  if (!pos.ok()) {
    LeaveGate();
    return CountError(pos.status());
  }
  bool new_segment = false;
  {
    // One exclusive hold for the whole batch: readers see all of it or none.
    std::unique_lock<std::shared_mutex> lock(keydir_mu_);
    new_segment = segments_.empty() || pos->segment > segments_.rbegin()->first;
    SegmentInfo& seg = segments_[pos->segment];
    seg.max_lsn = std::max(seg.max_lsn, pos->lsn);
    seg.bytes += batch.encoded().size();
    for (const BatchEntry& e : entries) {
      Install(e.key, Location{pos->lsn, pos->segment, pos->payload_offset + e.offset,
                              static_cast<uint32_t>(e.size), FileKind::kWal,
                              e.kind == EntryKind::kDelete});
    }
  }
  LeaveGate();

  counters_.CountBatch(EngineCounters::Tally(entries));
  if (new_segment && bg_.joinable()) bg_cv_.notify_one();
  return Status::OK();
}

std::optional<Location> BitcaskEngine::Lookup(std::string_view key) const {
  std::shared_lock<std::shared_mutex> lock(keydir_mu_);
  auto it = keydir_.find(key);
  if (it == keydir_.end() || it->second.tombstone) return std::nullopt;
  return it->second;
}

Result<std::string> BitcaskEngine::ReadEntryBytes(std::string_view key, const Location& loc,
                                                  const sync::RandomAccessFile& file) {
  std::string buf(loc.size, '\0');
  // Every read is a point lookup's hot path: the location's name is built only for an error.
  const auto damaged = [&](std::string_view what) {
    return Status::Corruption(file.path() + " offset " + std::to_string(loc.offset) + ": " +
                              std::string(what));
  };
  KVFS_ASSIGN_OR_RETURN(size_t got, file.Read(loc.offset, loc.size, buf.data()));
  if (got != loc.size) return damaged("entry cut short (file too short)");
  Result<BatchEntry> e = DecodeEntry(buf, "");
  if (!e.ok()) return damaged(e.status().message());
  if (e->key != key) return damaged("entry holds another key");
  if (e->kind != EntryKind::kPut) return damaged("entry is not a put");
  if (e->size != loc.size) return damaged("entry size differs from keydir");
  return buf;
}

Result<std::string> BitcaskEngine::ReadValue(std::string_view key, const Location& loc,
                                             const sync::RandomAccessFile& file) {
  KVFS_ASSIGN_OR_RETURN(std::string entry, ReadEntryBytes(key, loc, file));
  entry.erase(0, kEntryHeaderSize + key.size());  // in place: no second allocation
  return entry;
}

Result<std::string> BitcaskEngine::Get(std::string_view key) {
  counters_.Add(counters_.gets, 1);
  Location loc;
  std::shared_ptr<sync::RandomAccessFile> file;
  {
    // The location and a handle of its file are taken together: a merge removes a file only
    // after repointing every key away from it under the exclusive lock, so the handle is of
    // the file the location names and stays readable (unlink semantics) during the read.
    std::shared_lock<std::shared_mutex> lock(keydir_mu_);
    auto it = keydir_.find(key);
    if (it == keydir_.end() || it->second.tombstone) {
      return Status::NotFound("no key '" + std::string(key) + "'");
    }
    loc = it->second;
    Result<std::shared_ptr<sync::RandomAccessFile>> f = files_.Get(loc.kind, loc.file);
    if (!f.ok()) return CountError(f.status());
    file = std::move(f).value();
  }
  Result<std::string> value = ReadValue(key, loc, *file);
  if (!value.ok()) return CountError(value.status());
  counters_.Add(counters_.bytes_read, value->size());
  return value;
}

Status BitcaskEngine::Scan(const ScanOptions& options, const ScanFn& fn) {
  counters_.Add(counters_.scans, 1);
  std::string cursor = options.start_after;  // every key visited so far is <= cursor
  bool started = !cursor.empty();
  struct Item {
    std::string key;
    Location loc;
    std::shared_ptr<sync::RandomAccessFile> file;  // null for keys_only
  };
  std::vector<Item> chunk;
  for (;;) {
    chunk.clear();
    bool done = false;
    {
      // As in Get, locations and file handles are taken together under the lock.
      std::shared_lock<std::shared_mutex> lock(keydir_mu_);
      auto it = started ? keydir_.upper_bound(cursor) : keydir_.lower_bound(options.prefix);
      if (it != keydir_.end() && it->first < options.prefix) {
        it = keydir_.lower_bound(options.prefix);
      }
      size_t visited = 0;
      for (; it != keydir_.end() && visited < kChunk * 4 && chunk.size() < kChunk; ++it) {
        if (!it->first.starts_with(options.prefix)) break;
        ++visited;
        cursor = it->first;
        if (it->second.tombstone) continue;
        Item item{it->first, it->second, nullptr};
        if (!options.keys_only) {
          const bool same = !chunk.empty() && chunk.back().loc.kind == item.loc.kind &&
                            chunk.back().loc.file == item.loc.file;
          if (same) {
            item.file = chunk.back().file;
          } else {
            Result<std::shared_ptr<sync::RandomAccessFile>> f =
                files_.Get(item.loc.kind, item.loc.file);
            if (!f.ok()) return CountError(f.status());
            item.file = std::move(f).value();
          }
        }
        chunk.push_back(std::move(item));
      }
      done = it == keydir_.end() || !it->first.starts_with(options.prefix);
      started = true;
    }
    for (const Item& item : chunk) {
      std::string value;
      if (!options.keys_only) {
        Result<std::string> v = ReadValue(item.key, item.loc, *item.file);
        if (!v.ok()) return CountError(v.status());
        value = std::move(v).value();
        counters_.Add(counters_.bytes_read, value.size());
      }
      if (!fn(item.key, value)) return Status::OK();
    }
    if (done) return Status::OK();
  }
}

Status BitcaskEngine::Sync(SyncKind kind) {
  counters_.Add(counters_.syncs, 1);
  if (options_.read_only) return Status::OK();  // nothing was written
  return CountError(wal_->Sync(kind == SyncKind::kData));
}

void BitcaskEngine::DeferBatchSyncs() {
  if (wal_ != nullptr) wal_->DeferBatchSyncs();
}

Status BitcaskEngine::SyncBatchIfDue() {
  if (wal_ == nullptr) return Status::OK();  // read-only: nothing was written
  return CountError(wal_->SyncBatchIfDue());
}

EngineStats BitcaskEngine::stats() const {
  EngineStats s;
  counters_.Fill(&s);
  s.live_keys = live_keys_.load(std::memory_order_relaxed);
  if (wal_ != nullptr) s.wal = wal_->stats();
  return s;
}

Status BitcaskEngine::Close() {
  std::lock_guard<std::mutex> close_lock(close_mu_);
  if (closed_) return Status::OK();
  closed_ = true;
  {
    std::lock_guard<std::mutex> lock(bg_mu_);
    bg_stop_ = true;
  }
  bg_cv_.notify_all();
  if (bg_.joinable()) bg_.join();
  Status s;
  if (wal_ != nullptr) s = wal_->Close();
  files_.Clear();
  lock_.reset();
  return s;
}

}  // namespace bitcask

void BitcaskRecoveryReport::Describe(RecoveryReport* report) const {
  report->AddFact("merged_lsn", merged_lsn);
  report->AddFact("merged_files", merged_files);
  report->AddFact("hint_files_used", hint_files_used);
  report->AddFact("keys_from_hints", keys_from_hints);
  report->AddFact("entries_scanned", entries_scanned);
  report->AddFact("leftover_files_removed", leftover_files_removed);
  for (const std::string& h : hint_files_rejected) {
    report->warnings.push_back("hint file rejected, its data file was scanned instead: " + h);
  }
}

Result<std::unique_ptr<Engine>> OpenBitcaskWith(sync::FileSystem* fs, const std::string& dir,
                                                const EngineOptions& options,
                                                const BitcaskOptions& bitcask_options,
                                                BitcaskRecoveryReport* report) {
  BitcaskRecoveryReport local;
  if (report == nullptr) report = &local;
  *report = BitcaskRecoveryReport();
  auto engine = std::make_unique<bitcask::BitcaskEngine>(fs, dir, options, bitcask_options);
  KVFS_RETURN_IF_ERROR(engine->Open(report));
  return std::unique_ptr<Engine>(std::move(engine));
}

BitcaskDebugStats GetBitcaskDebugStats(const Engine& engine) {
  return static_cast<const bitcask::BitcaskEngine&>(engine).debug_stats();
}

Result<std::unique_ptr<Engine>> OpenBitcask(sync::FileSystem* fs, const std::string& dir,
                                            const EngineOptions& options) {
  return OpenBitcaskWith(fs, dir, options, BitcaskOptions());
}

}  // namespace kvfs::engines
