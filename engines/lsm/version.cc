#include "engines/lsm/version.h"

#include <algorithm>

#include "engines/lsm/bloom.h"
#include "engines/lsm/key_compare.h"

namespace kvfs::engines::lsm {

ManifestData Version::ToManifest(uint64_t next_file_number) const {
  ManifestData m;
  m.log_lsn = log_lsn;
  m.next_file_number = next_file_number;
  for (const auto& level : levels) {
    for (const TablePtr& t : level) m.tables.push_back(t->meta);
  }
  for (const auto& [number, blob] : blobs) m.blobs.push_back(blob.meta);
  return m;
}

uint64_t Version::LevelBytes(int level) const {
  uint64_t n = 0;
  for (const TablePtr& t : levels[level]) n += t->meta.file_size;
  return n;
}

uint64_t Version::TableCount() const {
  uint64_t n = 0;
  for (const auto& level : levels) n += level.size();
  return n;
}

uint64_t Version::EntryCount() const {
  uint64_t n = 0;
  for (const auto& level : levels) {
    for (const TablePtr& t : level) n += t->meta.entries;
  }
  return n;
}

namespace {

// The table of sorted run `run` whose range may hold `key`, or null.
const Table* FindInRun(const std::vector<TablePtr>& run, std::string_view key) {
  auto it = std::lower_bound(
      run.begin(), run.end(), key,
      [](const TablePtr& t, std::string_view k) { return CompareKeys(t->meta.largest, k) < 0; });
  if (it == run.end() || key < (*it)->meta.smallest) return nullptr;
  return it->get();
}

Result<std::optional<Version::Found>> GetFromTable(const Table& t, std::string_view key,
                                                   uint64_t hash) {
  KVFS_ASSIGN_OR_RETURN(std::optional<TableReader::Entry> e, t.reader->Get(key, hash));
  if (!e) return std::optional<Version::Found>();
  return std::optional<Version::Found>(Version::Found{e->kind, std::move(e->payload)});
}

}  // namespace

Result<std::optional<Version::Found>> Version::Get(std::string_view key) const {
  const uint64_t hash = BloomHash(key);
  for (const TablePtr& t : levels[0]) {
    if (key < t->meta.smallest || key > t->meta.largest) continue;
    KVFS_ASSIGN_OR_RETURN(std::optional<Found> f, GetFromTable(*t, key, hash));
    if (f) return f;
  }
  for (int level = 1; level < kNumLevels; ++level) {
    const Table* t = FindInRun(levels[level], key);
    if (t == nullptr) continue;
    KVFS_ASSIGN_OR_RETURN(std::optional<Found> f, GetFromTable(*t, key, hash));
    if (f) return f;
  }
  return std::optional<Found>();
}

Result<std::string> Version::ReadBlob(std::string_view key, std::string_view encoded_ref) const {
  const std::optional<BlobRef> ref = DecodeBlobRef(encoded_ref);
  if (!ref) {
    return Status::Corruption("malformed blob reference for key '" + std::string(key) + "'");
  }
  auto it = blobs.find(ref->file);
  if (it == blobs.end()) {
    return Status::Corruption("key '" + std::string(key) + "' refers to blob file " +
                              BlobFileName(ref->file) + ", which the MANIFEST does not list");
  }
  return it->second.reader->Read(key, *ref);
}

bool Version::KeyRangeBelowHas(int level, std::string_view key) const {
  for (int l = level + 1; l < kNumLevels; ++l) {
    if (l == 0) {
      for (const TablePtr& t : levels[0]) {
        if (key >= t->meta.smallest && key <= t->meta.largest) return true;
      }
    } else if (FindInRun(levels[l], key) != nullptr) {
      return true;
    }
  }
  return false;
}

std::vector<TablePtr> Version::Overlapping(int level, std::string_view smallest,
                                           std::string_view largest) const {
  std::vector<TablePtr> out;
  for (const TablePtr& t : levels[level]) {
    if (t->meta.largest >= smallest && t->meta.smallest <= largest) out.push_back(t);
  }
  return out;
}

void Version::AddIterators(std::vector<std::unique_ptr<InternalIterator>>* out) const {
  for (const TablePtr& t : levels[0]) out->push_back(t->reader->NewIterator());
  for (int level = 1; level < kNumLevels; ++level) {
    if (!levels[level].empty()) out->push_back(NewLevelIterator(&levels[level]));
  }
}

std::shared_ptr<Version> ApplyEdit(const Version& base, const VersionEdit& edit,
                                   std::vector<uint64_t>* dead_blobs) {
  auto v = std::make_shared<Version>();
  v->log_lsn = edit.log_lsn.value_or(base.log_lsn);
  for (int level = 0; level < kNumLevels; ++level) {
    for (const TablePtr& t : base.levels[level]) {
      if (edit.removed.count(t->meta.number) == 0) v->levels[level].push_back(t);
    }
  }
  for (const TablePtr& t : edit.added) v->levels[t->meta.level].push_back(t);
  // Level 0 newest first: flushes cover disjoint LSN ranges, and a rewritten table keeps its
  // entries' LSNs, so the highest LSN orders them even when file numbers do not.
  std::sort(v->levels[0].begin(), v->levels[0].end(), [](const TablePtr& a, const TablePtr& b) {
    if (a->meta.largest_seq != b->meta.largest_seq) {
      return a->meta.largest_seq > b->meta.largest_seq;
    }
    return a->meta.number > b->meta.number;
  });
  for (int level = 1; level < kNumLevels; ++level) {
    std::sort(
        v->levels[level].begin(), v->levels[level].end(),
        [](const TablePtr& a, const TablePtr& b) { return a->meta.smallest < b->meta.smallest; });
  }
  v->blobs = base.blobs;
  for (const BlobFile& b : edit.added_blobs) v->blobs[b.meta.number] = b;
  for (const auto& [number, bytes] : edit.garbage) {
    auto it = v->blobs.find(number);
    if (it == v->blobs.end()) continue;
    BlobMeta& m = it->second.meta;
    m.garbage_bytes = std::min(m.total_bytes, m.garbage_bytes + bytes);
  }
  std::set<uint64_t> referenced;
  for (const auto& level : v->levels) {
    for (const TablePtr& t : level)
      referenced.insert(t->meta.blob_files.begin(), t->meta.blob_files.end());
  }
  for (auto it = v->blobs.begin(); it != v->blobs.end();) {
    // Dead only if no table refers to it: the byte count alone is never trusted to delete data.
    if (referenced.count(it->first) == 0 &&
        (it->second.meta.garbage_bytes >= it->second.meta.total_bytes)) {
      if (dead_blobs != nullptr) dead_blobs->push_back(it->first);
      it = v->blobs.erase(it);
    } else {
      ++it;
    }
  }
  return v;
}

namespace {

class LevelIterator final : public InternalIterator {
 public:
  LevelIterator(const std::vector<TablePtr>* tables, TableReader::ReadMode mode)
      : tables_(*tables), mode_(mode) {}

  bool Valid() const override { return cur_ != nullptr && cur_->Valid(); }
  void SeekToFirst() override {
    Open(0);
    if (cur_) cur_->SeekToFirst();
    SkipEmpty();
  }
  void Seek(std::string_view target) override {
    auto it = std::lower_bound(
        tables_.begin(), tables_.end(), target,
        [](const TablePtr& t, std::string_view k) { return CompareKeys(t->meta.largest, k) < 0; });
    Open(it - tables_.begin());
    if (cur_) cur_->Seek(target);
    SkipEmpty();
  }
  void Next() override {
    cur_->Next();
    SkipEmpty();
  }
  std::string_view key() const override { return cur_->key(); }
  ValueKind kind() const override { return cur_->kind(); }
  std::string_view value() const override { return cur_->value(); }
  uint64_t seq() const override { return cur_->seq(); }
  Status status() const override { return status_; }
  bool unique_keys() const override { return true; }  // its tables' key ranges do not overlap

 private:
  void Open(size_t i) {
    i_ = i;
    cur_ = i < tables_.size() ? tables_[i]->reader->NewIterator(mode_) : nullptr;
  }
  void SkipEmpty() {
    while (cur_ != nullptr && !cur_->Valid()) {
      if (!cur_->status().ok()) {
        status_ = cur_->status();
        cur_.reset();
        return;
      }
      Open(i_ + 1);
      if (cur_) cur_->SeekToFirst();
    }
  }

  const std::vector<TablePtr>& tables_;
  const TableReader::ReadMode mode_;
  size_t i_ = 0;
  std::unique_ptr<InternalIterator> cur_;
  Status status_;
};

class MergingIterator final : public InternalIterator {
 public:
  MergingIterator(std::vector<std::unique_ptr<InternalIterator>> children, bool newest_only)
      : newest_only_(newest_only) {
    children_.reserve(children.size());
    for (auto& c : children) {
      const bool unique = c->unique_keys();
      children_.push_back(Child{std::move(c), {}, false, false, unique});
    }
  }

  bool Valid() const override { return current_ >= 0; }
  void SeekToFirst() override {
    for (Child& c : children_) {
      c.it->SeekToFirst();
      Refresh(&c);
    }
    FindSmallest();
  }
  void Seek(std::string_view target) override {
    for (Child& c : children_) {
      c.it->Seek(target);
      Refresh(&c);
    }
    FindSmallest();
  }
  void Next() override {
    if (newest_only_) {
      // Skip every other version of this key: the children FindSmallest found holding it
      // (older versions within a memtable come right after, so such a child may move more than
      // once; a table or level moves once). The key is copied for that comparison: moving the
      // child that holds it may overwrite it.
      if (smallest_in_repeating_child_) key_.assign(children_[current_].key);
      for (size_t i = 0; i < children_.size(); ++i) {
        Child& c = children_[i];
        if (!c.at_smallest) continue;
        c.it->Next();
        Refresh(&c);
        if (c.unique) continue;
        while (c.valid && CompareKeys(c.key, key_) == 0) {
          c.it->Next();
          Refresh(&c);
        }
      }
    } else {
      Child& c = children_[current_];
      c.it->Next();
      Refresh(&c);
    }
    FindSmallest();
  }
  std::string_view key() const override { return children_[current_].key; }
  ValueKind kind() const override { return children_[current_].it->kind(); }
  std::string_view value() const override { return children_[current_].it->value(); }
  uint64_t seq() const override { return children_[current_].it->seq(); }
  Status status() const override { return status_; }

 private:
  // A child and its current key, kept here so that finding the smallest costs no virtual call.
  struct Child {
    std::unique_ptr<InternalIterator> it;
    std::string_view key;  // valid until the child moves
    bool valid;
    bool at_smallest = false;  // set by FindSmallest: its key is the merged current key
    bool unique = false;       // it->unique_keys()
  };

  void Refresh(Child* c) {
    c->valid = c->it->Valid();
    if (c->valid) {
      c->key = c->it->key();
    } else if (!c->it->status().ok() && status_.ok()) {
      status_ = c->it->status();
    }
  }

  // One three-way comparison per child finds the smallest key and every child holding it.
  void FindSmallest() {
    current_ = -1;
    // A source that failed may have hidden a newer version: stop rather than guess.
    if (!status_.ok()) return;
    for (size_t i = 0; i < children_.size(); ++i) {
      Child& c = children_[i];
      c.at_smallest = false;
      if (!c.valid) continue;
      const int cmp = current_ < 0 ? -1 : CompareKeys(c.key, children_[current_].key);
      if (cmp < 0) {
        // A new smallest: the ones marked so far hold a larger key.
        for (size_t j = 0; j < i; ++j) children_[j].at_smallest = false;
        current_ = static_cast<int>(i);
        c.at_smallest = true;
      } else if (cmp == 0) {
        c.at_smallest = true;  // an older version (on equal keys the lower index, newer, stays)
      }
    }
    if (!newest_only_) return;  // only Next's skipping of older versions needs the flag
    smallest_in_repeating_child_ = false;
    for (const Child& c : children_) {
      if (c.at_smallest && !c.unique) smallest_in_repeating_child_ = true;
    }
  }

  std::vector<Child> children_;
  const bool newest_only_;
  int current_ = -1;
  bool smallest_in_repeating_child_ = false;  // a memtable holds the current key
  std::string key_;
  Status status_;
};

}  // namespace

std::unique_ptr<InternalIterator> NewLevelIterator(const std::vector<TablePtr>* tables,
                                                   TableReader::ReadMode mode) {
  return std::make_unique<LevelIterator>(tables, mode);
}

std::unique_ptr<InternalIterator> NewMergingIterator(
    std::vector<std::unique_ptr<InternalIterator>> children, bool newest_only) {
  return std::make_unique<MergingIterator>(std::move(children), newest_only);
}

}  // namespace kvfs::engines::lsm
