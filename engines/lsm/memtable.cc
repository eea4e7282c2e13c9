#include "engines/lsm/memtable.h"

#include <thread>

namespace kvfs::engines::lsm {

void MemTable::AddBatch(uint64_t seq, std::span<const BatchEntry> entries) {
  std::lock_guard<std::mutex> lock(write_mu_);
  // Odd while inserting: a Get that overlaps retries (see Get).
  seqlock_.fetch_add(1, std::memory_order_acq_rel);
  for (const BatchEntry& e : entries) {
    list_.Insert(seq, e.kind == EntryKind::kPut ? ValueKind::kValue : ValueKind::kDeletion, e.key,
                 e.kind == EntryKind::kPut ? e.value : std::string_view());
  }
  seqlock_.fetch_add(1, std::memory_order_release);
  entries_.fetch_add(entries.size(), std::memory_order_relaxed);
}

MemTable::Lookup MemTable::LookupLocked(std::string_view key, std::string* value) const {
  const SkipList::Node* n = list_.Seek(key, UINT64_MAX);
  if (n == nullptr || n->key() != key) return Lookup::kNotFound;
  if (n->kind == ValueKind::kDeletion) return Lookup::kDeleted;
  value->assign(n->value());
  return Lookup::kFound;
}

MemTable::Lookup MemTable::Get(std::string_view key, std::string* value) const {
  for (int attempt = 0; attempt < 8; ++attempt) {
    const uint64_t before = seqlock_.load(std::memory_order_acquire);
    if (before & 1) {
      std::this_thread::yield();
      continue;
    }
    const Lookup r = LookupLocked(key, value);
    // Reaching a node of a batch means acquiring its publication, which the writer made after
    // making the counter odd: so if this Get saw any of a batch still being inserted (or one
    // inserted meanwhile), the counter has moved and it retries. An unchanged counter means
    // the answer is from between batches. (No fence needed, and none that TSan cannot model.)
    if (seqlock_.load(std::memory_order_acquire) == before) return r;
  }
  std::lock_guard<std::mutex> lock(write_mu_);
  return LookupLocked(key, value);
}

namespace {

class MemTableIterator final : public InternalIterator {
 public:
  explicit MemTableIterator(const SkipList* list) : list_(list) {}
  bool Valid() const override { return node_ != nullptr; }
  void SeekToFirst() override { node_ = list_->First(); }
  void Seek(std::string_view target) override { node_ = list_->Seek(target, UINT64_MAX); }
  void Next() override { node_ = node_->Next(0); }
  std::string_view key() const override { return node_->key(); }
  ValueKind kind() const override { return node_->kind; }
  std::string_view value() const override { return node_->value(); }
  uint64_t seq() const override { return node_->seq; }
  Status status() const override { return Status::OK(); }

 private:
  const SkipList* const list_;
  const SkipList::Node* node_ = nullptr;
};

}  // namespace

std::unique_ptr<InternalIterator> MemTable::NewIterator() const {
  return std::make_unique<MemTableIterator>(&list_);
}

}  // namespace kvfs::engines::lsm
