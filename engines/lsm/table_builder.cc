#include "engines/lsm/table_builder.h"

#include <algorithm>

namespace kvfs::engines::lsm {

namespace {
constexpr size_t kWriteBuffer = size_t{256} << 10;  // blocks are appended in ~256 KiB writes
}

void TableBuilder::Add(std::string_view key, ValueKind kind, uint64_t seq,
                       std::string_view payload) {
  if (entries_ == 0) smallest_.assign(key);
  ++entries_;
  smallest_seq_ = std::min(smallest_seq_, seq);
  largest_seq_ = std::max(largest_seq_, seq);
  bloom_.AddKey(key);
  scratch_.clear();
  EncodeDataValue(&scratch_, static_cast<uint8_t>(kind), seq, payload);
  data_.Add(key, scratch_);
  if (data_.size() >= block_size_) FinishDataBlock();
}

BlockHandle TableBuilder::AddBlock(std::string_view contents) {
  const BlockHandle h{offset_ + pending_.size(), contents.size()};
  AppendBlockWithTrailer(&pending_, contents);
  return h;
}

void TableBuilder::FinishDataBlock() {
  if (data_.empty()) return;
  const BlockHandle h = AddBlock(data_.Finish());
  std::string handle;
  EncodeHandle(&handle, h);
  // The index key is the block's last key: the first block whose last key is >= a target is
  // the only one that may hold it.
  index_.Add(data_.last_key(), handle);
  largest_ = data_.last_key();
  data_.Reset();
  WritePending(false);
}

void TableBuilder::WritePending(bool force) {
  if (pending_.empty() || (!force && pending_.size() < kWriteBuffer)) return;
  if (status_.ok()) status_ = file_->Append(pending_);
  offset_ += pending_.size();
  pending_.clear();
}

Status TableBuilder::Finish() {
  FinishDataBlock();
  Footer f;
  f.entries = entries_;
  f.filter = AddBlock(bloom_.Finish());
  f.index = AddBlock(index_.Finish());
  pending_ += EncodeFooter(f);
  WritePending(true);
  return status_;
}

}  // namespace kvfs::engines::lsm
