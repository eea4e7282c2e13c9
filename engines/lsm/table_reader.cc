#include "engines/lsm/table_reader.h"

#include <algorithm>

#include "engines/lsm/bloom.h"
#include "engines/lsm/key_compare.h"

namespace kvfs::engines::lsm {

Result<std::shared_ptr<TableReader>> TableReader::Open(sync::FileSystem* fs,
                                                       const std::string& path, uint64_t number,
                                                       BlockCache* cache) {
  KVFS_ASSIGN_OR_RETURN(std::unique_ptr<sync::RandomAccessFile> file,
                        fs->NewRandomAccessFile(path));
  KVFS_ASSIGN_OR_RETURN(uint64_t size, file->Size());
  return Open(std::shared_ptr<sync::RandomAccessFile>(std::move(file)), size, number, cache);
}

Result<std::shared_ptr<TableReader>> TableReader::Open(std::shared_ptr<sync::RandomAccessFile> file,
                                                       uint64_t file_size, uint64_t number,
                                                       BlockCache* cache) {
  const std::string& path = file->path();
  if (file_size < kFooterSize) {
    return Status::Corruption("table " + path + " at offset 0: file of " +
                              std::to_string(file_size) + " bytes is too short for a footer");
  }
  std::string footer_bytes(kFooterSize, '\0');
  KVFS_ASSIGN_OR_RETURN(size_t got,
                        file->Read(file_size - kFooterSize, kFooterSize, footer_bytes.data()));
  if (got != kFooterSize) {
    return Status::Corruption("table " + path + " at offset " +
                              std::to_string(file_size - kFooterSize) + ": footer cut short");
  }
  KVFS_ASSIGN_OR_RETURN(Footer footer, DecodeFooter(footer_bytes, file_size, path));

  std::shared_ptr<TableReader> t(new TableReader());
  t->file_ = std::move(file);
  t->file_size_ = file_size;
  t->number_ = number;
  t->entries_ = footer.entries;
  t->seeks_left_.store(std::max<int64_t>(100, static_cast<int64_t>(file_size / 16384)),
                       std::memory_order_relaxed);
  t->cache_ = cache;
  KVFS_ASSIGN_OR_RETURN(t->filter_, ReadBlock(*t->file_, file_size, footer.filter));
  if (!BloomIsWellFormed(t->filter_)) {
    return Status::Corruption("table " + path + " at offset " +
                              std::to_string(footer.filter.offset) + ": malformed bloom filter");
  }
  KVFS_ASSIGN_OR_RETURN(std::string index, ReadBlock(*t->file_, file_size, footer.index));
  BlockCursor cursor(index, &path, footer.index.offset);
  const uint64_t data_end = footer.filter.offset;  // data blocks come before the filter
  while (cursor.Next()) {
    IndexEntry e;
    e.key_offset = static_cast<uint32_t>(t->index_keys_.size());
    e.key_size = static_cast<uint32_t>(cursor.key().size());
    t->index_keys_.append(cursor.key());
    if (!DecodeHandle(cursor.value(), &e.handle) || e.handle.offset > data_end ||
        e.handle.size > data_end - e.handle.offset ||
        data_end - e.handle.offset - e.handle.size < kBlockTrailerSize) {
      return Status::Corruption("table " + path + " at offset " +
                                std::to_string(footer.index.offset) + ": index entry for block " +
                                std::to_string(t->index_.size()) +
                                " points outside the data blocks");
    }
    t->index_.push_back(e);
  }
  KVFS_RETURN_IF_ERROR(cursor.status());
  if (cache != nullptr) t->slots_ = std::make_shared<BlockCache::Slots>(t->index_.size());
  if (t->index_.empty() != (footer.entries == 0)) {
    return Status::Corruption("table " + path + " at offset " +
                              std::to_string(footer.index.offset) +
                              ": index and entry count disagree");
  }
  return t;
}

Result<BlockCache::Block> TableReader::DataBlock(size_t i, bool fill_cache) const {
  const BlockHandle& h = index_[i].handle;
  if (slots_ != nullptr) {
    if (BlockCache::Block b = slots_->Lookup(i)) return b;
  }
  KVFS_ASSIGN_OR_RETURN(std::string contents, ReadBlock(*file_, file_size_, h));
  KVFS_RETURN_IF_ERROR(CheckAgainstIndex(i, contents));
  auto block = std::make_shared<const std::string>(std::move(contents));
  if (slots_ != nullptr && fill_cache) cache_->Insert(slots_, i, block);
  return block;
}

Status TableReader::CheckAgainstIndex(size_t i, std::string_view contents) const {
  // A checksum proves the block is what was written, not that it is well formed or that the
  // index describes it. This walk checks its entries and restart points (BlockCursor), and that
  // its keys lie in (previous block's last key, its own last key]: Get and Seek rely on both.
  const BlockHandle& h = index_[i].handle;
  BlockCursor cursor(contents, &path(), h.offset);
  bool first = true;
  std::string last;
  while (cursor.Next()) {
    if (first && i > 0 && cursor.key() <= IndexKey(i - 1)) {
      return Status::Corruption("table " + path() + " at offset " + std::to_string(h.offset) +
                                ": block's first key is not above the previous block's last");
    }
    first = false;
    last.assign(cursor.key());
  }
  KVFS_RETURN_IF_ERROR(cursor.status());
  if (first || last != IndexKey(i)) {
    return Status::Corruption("table " + path() + " at offset " + std::to_string(h.offset) +
                              ": block's last key differs from its index entry's");
  }
  return Status::OK();
}

size_t TableReader::FindBlock(std::string_view key) const {
  size_t lo = 0, hi = index_.size();
  while (lo < hi) {
    const size_t mid = lo + (hi - lo) / 2;
    if (CompareKeys(IndexKey(mid), key) < 0) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

bool TableReader::MayContain(uint64_t hash) const { return BloomMayContainHash(filter_, hash); }

Result<std::optional<TableReader::Entry>> TableReader::Get(std::string_view key,
                                                           uint64_t hash) const {
  if (!MayContain(hash)) return std::optional<Entry>();
  const size_t i = FindBlock(key);
  if (i == index_.size()) return std::optional<Entry>();
  KVFS_ASSIGN_OR_RETURN(BlockCache::Block block, DataBlock(i));
  BlockCursor cursor(*block, &path(), index_[i].handle.offset, BlockCursor::Trust::kVerified);
  if (!cursor.Seek(key)) {
    KVFS_RETURN_IF_ERROR(cursor.status());
    return std::optional<Entry>();
  }
  if (cursor.key() != key) return std::optional<Entry>();
  Entry e;
  uint8_t kind;
  std::string_view payload;
  if (!DecodeDataValue(cursor.value(), &kind, &e.seq, &payload)) {
    return Status::Corruption("table " + path() + " at offset " +
                              std::to_string(index_[i].handle.offset) + ": malformed entry value");
  }
  e.kind = static_cast<ValueKind>(kind);
  e.payload.assign(payload);
  return std::optional<Entry>(std::move(e));
}

std::vector<BlockHandle> TableReader::DataBlocksForTesting() const {
  std::vector<BlockHandle> out;
  for (const IndexEntry& e : index_) out.push_back(e.handle);
  return out;
}

class TableIterator final : public InternalIterator {
 public:
  TableIterator(std::shared_ptr<const TableReader> t, TableReader::ReadMode mode)
      : t_(std::move(t)), sequential_(mode == TableReader::ReadMode::kSequential) {}

  bool Valid() const override { return valid_; }
  void SeekToFirst() override {
    status_ = Status::OK();
    sequential_blocks_ = 0;
    LoadBlock(0);
    Advance();
  }
  void Seek(std::string_view target) override {
    status_ = Status::OK();
    sequential_blocks_ = 0;
    LoadBlock(t_->FindBlock(target));
    if (!cursor_.has_value()) return;
    check_first_key_ = false;  // the walk starts inside the block
    if (sequential_) {
      // The binary search below trusts the block's order, which its walk has not checked yet
      // (a compaction's upper half starts with a seek): check it whole first.
      Result<std::string_view> c = SequentialBlock(block_index_);  // still in chunk_
      Status checked = c.ok() ? t_->CheckAgainstIndex(block_index_, *c) : c.status();
      if (!checked.ok()) {
        Stop(std::move(checked));
        return;
      }
      cursor_->Reset(*c, t_->index_[block_index_].handle.offset, BlockCursor::Trust::kVerified);
    }
    if (cursor_->Seek(target)) {
      TakeEntry();
      return;
    }
    // Every key of the block is below the target (the index said otherwise: it was checked
    // against the block, so only an empty tail): go on with the next block.
    if (NextBlock()) Advance();
  }
  void Next() override { Advance(); }
  std::string_view key() const override { return cursor_->key(); }
  ValueKind kind() const override { return kind_; }
  std::string_view value() const override { return payload_; }
  uint64_t seq() const override { return seq_; }
  Status status() const override { return status_; }
  bool unique_keys() const override { return true; }  // a table holds a key once

 private:
  void LoadBlock(size_t i) {
    block_index_ = i;
    valid_ = false;
    if (i >= t_->index_.size()) {
      cursor_.reset();
      block_.reset();
      return;
    }
    const uint64_t offset = t_->index_[i].handle.offset;
    std::string_view contents;
    BlockCursor::Trust trust = BlockCursor::Trust::kVerified;
    if (sequential_) {
      Result<std::string_view> c = SequentialBlock(i);
      if (!c.ok()) {
        Stop(c.status());
        return;
      }
      contents = *c;
      trust = BlockCursor::Trust::kUnchecked;  // the walk checks entries and restarts
      check_first_key_ = true;
    } else {
      // A seek's block and the one after it enter the cache; past those the iterator is a long
      // scan, whose blocks would only push out what lookups reuse.
      Result<BlockCache::Block> b = t_->DataBlock(i, sequential_blocks_ < kCachedScanBlocks);
      if (!b.ok()) {
        Stop(b.status());
        return;
      }
      block_ = std::move(b).value();
      contents = *block_;
    }
    if (cursor_.has_value()) {
      cursor_->Reset(contents, offset, trust);
    } else {
      cursor_.emplace(contents, &t_->path(), offset, trust);
    }
  }

  // Block i's checked contents, out of chunk_: one read brings in kSequentialReadBytes of
  // blocks (or the rest of the data blocks), so a compaction makes a read per many blocks.
  Result<std::string_view> SequentialBlock(size_t i) {
    const BlockHandle& h = t_->index_[i].handle;
    const uint64_t need = h.size + kBlockTrailerSize;  // Open checked it lies in the file
    if (h.offset < chunk_offset_ || h.offset + need > chunk_offset_ + chunk_size_) {
      const BlockHandle& last = t_->index_.back().handle;
      const uint64_t data_end = last.offset + last.size + kBlockTrailerSize;
      const uint64_t n =
          std::max(need, std::min<uint64_t>(TableReader::kSequentialReadBytes,
                                            data_end > h.offset ? data_end - h.offset : 0));
      if (chunk_.size() < n) chunk_.resize(n);
      chunk_size_ = 0;
      KVFS_ASSIGN_OR_RETURN(size_t got, t_->file_->Read(h.offset, n, chunk_.data()));
      if (got != n) {
        return Status::Corruption("table " + t_->path() + " at offset " + std::to_string(h.offset) +
                                  ": block cut short (file too short)");
      }
      chunk_offset_ = h.offset;
      chunk_size_ = n;
    }
    return CheckBlock(std::string_view(chunk_.data() + (h.offset - chunk_offset_), need),
                      t_->path(), h.offset);
  }

  // A block walked from its first entry lies between the previous block's last key and its own
  // index key (TableReader::CheckAgainstIndex, for blocks not read through the cache).
  bool CheckFirstKey() {
    check_first_key_ = false;
    if (block_index_ == 0 || cursor_->key() > t_->IndexKey(block_index_ - 1)) return true;
    Stop(Status::Corruption("table " + t_->path() + " at offset " +
                            std::to_string(t_->index_[block_index_].handle.offset) +
                            ": block's first key is not above the previous block's last"));
    return false;
  }
  bool CheckLastKey() {
    if (cursor_->key() == t_->IndexKey(block_index_)) return true;
    Stop(Status::Corruption("table " + t_->path() + " at offset " +
                            std::to_string(t_->index_[block_index_].handle.offset) +
                            ": block's last key differs from its index entry's"));
    return false;
  }

  void Stop(Status s) {
    status_ = std::move(s);
    cursor_.reset();
    block_.reset();
    valid_ = false;
  }

  // Makes the cursor's entry the iterator's.
  void TakeEntry() {
    uint8_t kind;
    if (!DecodeDataValue(cursor_->value(), &kind, &seq_, &payload_)) {
      Stop(Status::Corruption("table " + t_->path() + " at offset " +
                              std::to_string(t_->index_[block_index_].handle.offset) +
                              ": malformed entry value"));
      return;
    }
    kind_ = static_cast<ValueKind>(kind);
    valid_ = true;
  }

  // To the next entry, crossing into the next block when this one is done.
  void Advance() {
    valid_ = false;
    while (cursor_.has_value()) {
      if (cursor_->Next()) {
        if (check_first_key_ && !CheckFirstKey()) return;
        TakeEntry();
        return;
      }
      if (!NextBlock()) return;
    }
  }

  // The cursor has run out: on damage keeps its status and stops (false), else loads the next
  // block (none past the last).
  bool NextBlock() {
    if (!cursor_->status().ok()) {
      Stop(cursor_->status());
      return false;
    }
    if (sequential_ && !CheckLastKey()) return false;
    ++sequential_blocks_;
    LoadBlock(block_index_ + 1);
    return true;
  }

  static constexpr size_t kCachedScanBlocks = 2;

  std::shared_ptr<const TableReader> t_;
  const bool sequential_;
  size_t block_index_ = 0;
  size_t sequential_blocks_ = 0;  // blocks entered by Next since the last seek
  BlockCache::Block block_;       // kCached: the cursor's block
  std::string chunk_;             // kSequential: file bytes [chunk_offset_, + chunk_size_)
  uint64_t chunk_offset_ = 0;
  uint64_t chunk_size_ = 0;
  bool check_first_key_ = false;  // kSequential: the block was entered at its first entry
  std::optional<BlockCursor> cursor_;
  bool valid_ = false;
  ValueKind kind_ = ValueKind::kValue;
  uint64_t seq_ = 0;
  std::string_view payload_;
  Status status_;
};

std::unique_ptr<InternalIterator> TableReader::NewIterator(ReadMode mode) const {
  return std::make_unique<TableIterator>(shared_from_this(), mode);
}

}  // namespace kvfs::engines::lsm
