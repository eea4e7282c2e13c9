#include "engines/btree/pager.h"

#include <algorithm>

#include "sync/durable.h"

namespace kvfs::engines::btree {

Pager::Pager(sync::FileSystem* fs, std::string path, size_t page_size, size_t capacity)
    : fs_(fs), path_(std::move(path)), page_size_(page_size), capacity_(capacity) {}

Status Pager::Open(bool read_only, bool torn_tail_restored, bool must_hold_pages) {
  KVFS_ASSIGN_OR_RETURN(bool exists, fs_->Exists(path_));
  if (must_hold_pages && !exists) {
    return Status::Corruption(path_ + ": missing, but the MANIFEST records a checkpoint of it");
  }
  if (!read_only) {
    if (!exists) {
      // The name must survive a power cut before a checkpoint relies on the file.
      KVFS_ASSIGN_OR_RETURN(file_, fs_->NewRandomRWFile(path_, /*create=*/true));
      KVFS_RETURN_IF_ERROR(file_->Sync());
      KVFS_RETURN_IF_ERROR(sync::SyncDir(fs_, sync::DirName(path_)));
    } else {
      KVFS_ASSIGN_OR_RETURN(file_, fs_->NewRandomRWFile(path_, /*create=*/false));
    }
    exists = true;
  }
  if (!exists) return Status::OK();
  KVFS_ASSIGN_OR_RETURN(reader_, fs_->NewRandomAccessFile(path_));
  KVFS_ASSIGN_OR_RETURN(uint64_t size, reader_->Size());
  // A torn in-place write that extended the file leaves part of a page at its end; that is
  // the tail of a checkpoint whose doublewrite copy the open restores, and damage otherwise.
  if (size % page_size_ != 0 && !torn_tail_restored) {
    return Status::Corruption(path_ + ": size " + std::to_string(size) +
                              " is not a whole number of " + std::to_string(page_size_) +
                              "-byte pages (cut short at offset " +
                              std::to_string(size - size % page_size_) + ")");
  }
  if (must_hold_pages && size < page_size_) {
    return Status::Corruption(path_ +
                              " at offset 0: empty, but the MANIFEST records a "
                              "checkpoint of it (" +
                              std::to_string(size) + " bytes)");
  }
  file_pages_.store(size / page_size_, std::memory_order_release);
  return Status::OK();
}

void Pager::Close() {
  if (file_ != nullptr) file_->Close().PermitUnchecked();
  file_.reset();
  reader_.reset();
  MutexLock lock(&mu_);
  frames_.clear();
  ring_.clear();
  dirty_.store(0, std::memory_order_relaxed);
}

Result<PageRef> Pager::ReadFromFile(PageNo pgno) {
  const uint64_t offset = uint64_t{pgno} * page_size_;
  if (pgno >= file_pages()) {
    if (pgno == 0 && file_pages() == 0) {
      // A store never checkpointed: its meta page is the fresh one.
      auto image = std::make_shared<std::string>(page_size_, '\0');
      InitPage(image->data(), page_size_, PageType::kMeta, 0);
      Meta m;
      m.page_size = static_cast<uint32_t>(page_size_);
      EncodeMeta(image->data(), m);
      SealPage(image->data(), page_size_, 0);
      return PageRef(std::move(image));
    }
    return Status::Corruption(path_ + " at offset " + std::to_string(offset) + " (page " +
                              std::to_string(pgno) + "): past the end of the file (" +
                              std::to_string(file_pages() * page_size_) + " bytes)");
  }
  auto image = std::make_shared<std::string>(page_size_, '\0');
  KVFS_ASSIGN_OR_RETURN(size_t got, reader_->Read(offset, page_size_, image->data()));
  if (got != page_size_) {
    return Status::Corruption(path_ + " at offset " + std::to_string(offset) + " (page " +
                              std::to_string(pgno) + "): cut short");
  }
  KVFS_RETURN_IF_ERROR(CheckPage(image->data(), page_size_, pgno,
                                 lsn_bound_.load(std::memory_order_acquire), path_, offset));
  return PageRef(std::move(image));
}

Result<PageRef> Pager::Get(PageNo pgno) {
  {
    MutexLock lock(&mu_);
    auto it = frames_.find(pgno);
    if (it != frames_.end()) {
      it->second.referenced = true;
      ++hits_;
      return it->second.image;
    }
    ++misses_;
  }
  // Read outside the lock. No newer image of this page can be installed meanwhile: only the
  // writer installs, and it either is this caller or waits for the readers (the engine's
  // tree lock), so the image read is current.
  KVFS_ASSIGN_OR_RETURN(PageRef image, ReadFromFile(pgno));
  MutexLock lock(&mu_);
  return AddClean(pgno, std::move(image));
}

PageRef Pager::AddClean(PageNo pgno, PageRef image) {
  auto [it, added] = frames_.try_emplace(pgno);
  if (!added) return it->second.image;  // another reader was first
  it->second.image = std::move(image);
  it->second.referenced = true;
  AddToRing(pgno, &it->second);
  PageRef out = it->second.image;
  EvictIfFull();
  return out;
}

void Pager::AddToRing(PageNo pgno, Frame* f) {
  f->ring_pos = ring_.size();
  ring_.push_back(pgno);
}

void Pager::RemoveFromRing(Frame* f) {
  const size_t pos = f->ring_pos;
  const PageNo last = ring_.back();
  ring_[pos] = last;
  frames_.find(last)->second.ring_pos = pos;
  ring_.pop_back();
  f->ring_pos = kNotInRing;
}

void Pager::EvictIfFull() {
  // Every pass clears the referenced bits it passes, so two passes find a victim.
  size_t steps = 2 * ring_.size() + 1;
  while (frames_.size() > capacity_ && !ring_.empty() && steps-- > 0) {
    if (hand_ >= ring_.size()) hand_ = 0;
    auto it = frames_.find(ring_[hand_]);
    if (it->second.referenced) {
      it->second.referenced = false;
      ++hand_;
    } else {
      RemoveFromRing(&it->second);
      frames_.erase(it);
      ++evictions_;
    }
  }
}

void Pager::SetFrame(PageNo pgno, PageRef image) {
  auto it = frames_.try_emplace(pgno).first;
  if (!it->second.dirty) dirty_.fetch_add(1, std::memory_order_relaxed);
  if (it->second.ring_pos != kNotInRing) RemoveFromRing(&it->second);
  it->second.image = std::move(image);
  it->second.dirty = true;
  it->second.referenced = true;
}

void Pager::Install(std::vector<std::pair<PageNo, std::shared_ptr<std::string>>>* pages,
                    uint64_t lsn) {
  // The CRC waits for the checkpoint that writes the page: a hot page changes many times
  // between two checkpoints, and only the image written needs one.
  for (auto& [pgno, image] : *pages) EncodeFixed64(image->data() + kLsnOffset, lsn);
  MutexLock lock(&mu_);
  for (auto& [pgno, image] : *pages) SetFrame(pgno, std::move(image));
  EvictIfFull();
}

void Pager::InstallSealed(PageNo pgno, PageRef image) {
  MutexLock lock(&mu_);
  SetFrame(pgno, std::move(image));
}

PageImages Pager::DirtyPages() const {
  PageImages out;
  {
    MutexLock lock(&mu_);
    for (const auto& [pgno, frame] : frames_) {
      if (frame.dirty) out.emplace_back(pgno, frame.image);
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return out;
}

void Pager::MarkClean(const PageImages& written) {
  MutexLock lock(&mu_);
  for (const auto& [pgno, image] : written) {
    auto it = frames_.find(pgno);
    if (it == frames_.end() || !it->second.dirty || it->second.image != image) continue;
    it->second.dirty = false;
    dirty_.fetch_sub(1, std::memory_order_relaxed);
    AddToRing(pgno, &it->second);
  }
  EvictIfFull();
}

Status Pager::WriteInPlace(const PageImages& pages) {
  if (file_ == nullptr) return Status::NotSupported(path_ + " is open read-only");
  // Runs of adjacent pages go in one write, up to 1 MiB.
  constexpr size_t kMaxRun = size_t{1} << 20;
  std::string run;
  uint64_t run_start = 0;
  uint64_t end_pages = file_pages();
  const auto flush = [&]() -> Status {
    if (run.empty()) return Status::OK();
    KVFS_RETURN_IF_ERROR(file_->Write(run_start * page_size_, run));
    pages_written_.fetch_add(run.size() / page_size_, std::memory_order_relaxed);
    end_pages = std::max<uint64_t>(end_pages, run_start + run.size() / page_size_);
    run.clear();
    return Status::OK();
  };
  for (const auto& [pgno, image] : pages) {
    if (!run.empty() &&
        (pgno != run_start + run.size() / page_size_ || run.size() + page_size_ > kMaxRun)) {
      KVFS_RETURN_IF_ERROR(flush());
    }
    if (run.empty()) run_start = pgno;
    run.append(*image);
  }
  KVFS_RETURN_IF_ERROR(flush());
  KVFS_RETURN_IF_ERROR(file_->DataSync());
  file_pages_.store(end_pages, std::memory_order_release);
  return Status::OK();
}

PagerStats Pager::stats() const {
  PagerStats s;
  MutexLock lock(&mu_);
  s.hits = hits_;
  s.misses = misses_;
  s.evictions = evictions_;
  s.pages_written = pages_written_.load(std::memory_order_relaxed);
  s.resident = frames_.size();
  s.dirty = dirty_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace kvfs::engines::btree
