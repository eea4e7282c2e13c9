// SkipList and Arena: the memtable's ordered index.
//
// Entries are (key, seq, kind, value), ordered by key ascending, then seq descending, so the
// newest version of a key comes first. Nodes live in an arena and are never removed or changed
// once linked: the whole list is freed at once with its memtable.
//
// Thread safety: Insert must be serialised by the caller (one writer at a time); any number of
// readers may search and iterate concurrently with it and with each other, without locks. A
// node's fields and payload are written before the node is published by a release store of the
// level-0 link, and readers follow links with acquire loads, so a reader that reaches a node
// sees it whole.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string_view>
#include <vector>

#include "engines/lsm/format.h"
#include "engines/lsm/key_compare.h"

namespace kvfs::engines::lsm {

// Bump allocator. Allocate is writer-only; MemoryUsage may be read from any thread.
class Arena {
 public:
  Arena() = default;
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  // 8-byte aligned, valid until the arena is destroyed.
  char* Allocate(size_t bytes) {
    bytes = (bytes + 7) & ~size_t{7};
    // What was asked for, not the blocks: a small memtable (tests) must not look full because
    // of its first block.
    usage_.fetch_add(bytes, std::memory_order_relaxed);
    if (bytes > remaining_) {
      if (bytes > kBlockSize / 4) return NewBlock(bytes);  // big values get their own block
      ptr_ = NewBlock(kBlockSize);
      remaining_ = kBlockSize;
    }
    char* p = ptr_;
    ptr_ += bytes;
    remaining_ -= bytes;
    return p;
  }
  size_t MemoryUsage() const { return usage_.load(std::memory_order_relaxed); }

 private:
  static constexpr size_t kBlockSize = size_t{256} << 10;
  char* NewBlock(size_t bytes) {
    blocks_.push_back(std::make_unique_for_overwrite<uint64_t[]>((bytes + 7) / 8));
    return reinterpret_cast<char*>(blocks_.back().get());
  }
  char* ptr_ = nullptr;
  size_t remaining_ = 0;
  std::vector<std::unique_ptr<uint64_t[]>> blocks_;
  std::atomic<size_t> usage_{0};
};

class SkipList {
 public:
  static constexpr int kMaxHeight = 12;

  struct Node {
    uint64_t seq;
    uint32_t key_size;
    uint32_t value_size;
    ValueKind kind;
    uint8_t height;

    // The tower of links follows the header, then the key and the value.
    std::atomic<Node*>* tower() { return reinterpret_cast<std::atomic<Node*>*>(this + 1); }
    const std::atomic<Node*>* tower() const {
      return reinterpret_cast<const std::atomic<Node*>*>(this + 1);
    }
    Node* Next(int level) const { return tower()[level].load(std::memory_order_acquire); }
    const char* payload() const { return reinterpret_cast<const char*>(tower() + height); }
    std::string_view key() const { return {payload(), key_size}; }
    std::string_view value() const { return {payload() + key_size, value_size}; }
  };
  static_assert(sizeof(Node) % alignof(std::atomic<Node*>) == 0);

  explicit SkipList(Arena* arena)
      : arena_(arena), head_(NewNode(0, ValueKind::kValue, {}, {}, kMaxHeight)) {
    for (Node*& r : rightmost_) r = head_;
  }
  SkipList(const SkipList&) = delete;
  SkipList& operator=(const SkipList&) = delete;

  // Writer only. (key, seq) must not be in the list yet.
  void Insert(uint64_t seq, ValueKind kind, std::string_view key, std::string_view value) {
    Node* prev[kMaxHeight];
    if (tail_ != nullptr && Compare(tail_, key, seq) < 0) {
      // Appending past the last node (sequential keys: fill in order, a file's chunks): the
      // rightmost node of every level is the predecessor, no search needed.
      for (int i = 0; i < kMaxHeight; ++i) prev[i] = rightmost_[i];
    } else {
      FindGreaterOrEqual(key, seq, prev);
    }
    const int height = RandomHeight();
    const int max = max_height_.load(std::memory_order_relaxed);
    if (height > max) {
      for (int i = max; i < height; ++i) prev[i] = head_;
      // Readers that see the new height before the node find head_'s null link there: fine.
      max_height_.store(height, std::memory_order_relaxed);
    }
    Node* n = NewNode(seq, kind, key, value, height);
    for (int i = 0; i < height; ++i) {
      n->tower()[i].store(prev[i]->tower()[i].load(std::memory_order_relaxed),
                          std::memory_order_relaxed);
      prev[i]->tower()[i].store(n, std::memory_order_release);  // publishes n at level i
      if (rightmost_[i] == prev[i]) rightmost_[i] = n;
    }
    if (n->Next(0) == nullptr) tail_ = n;
  }

  // The first node at or after (key, seq), or null.
  const Node* Seek(std::string_view key, uint64_t seq) const {
    return FindGreaterOrEqual(key, seq, nullptr);
  }
  const Node* First() const { return head_->Next(0); }

 private:
  // <0 if node sorts before (key, seq).
  static int Compare(const Node* n, std::string_view key, uint64_t seq) {
    const int c = CompareKeys(n->key(), key);
    if (c != 0) return c;
    return n->seq > seq ? -1 : (n->seq < seq ? 1 : 0);
  }

  Node* FindGreaterOrEqual(std::string_view key, uint64_t seq, Node** prev) const {
    Node* x = head_;
    int level = max_height_.load(std::memory_order_relaxed) - 1;
    for (;;) {
      Node* next = x->Next(level);
      if (next != nullptr && Compare(next, key, seq) < 0) {
        x = next;
      } else {
        if (prev != nullptr) prev[level] = x;
        if (level == 0) return next;
        --level;
      }
    }
  }

  Node* NewNode(uint64_t seq, ValueKind kind, std::string_view key, std::string_view value,
                int height) {
    const size_t size =
        sizeof(Node) + sizeof(std::atomic<Node*>) * height + key.size() + value.size();
    char* mem = arena_->Allocate(size);
    Node* n =
        new (mem) Node{seq, static_cast<uint32_t>(key.size()), static_cast<uint32_t>(value.size()),
                       kind, static_cast<uint8_t>(height)};
    for (int i = 0; i < height; ++i) new (&n->tower()[i]) std::atomic<Node*>(nullptr);
    char* p = const_cast<char*>(n->payload());
    if (!key.empty()) std::memcpy(p, key.data(), key.size());
    if (!value.empty()) std::memcpy(p + key.size(), value.data(), value.size());
    return n;
  }

  int RandomHeight() {
    int h = 1;
    while (h < kMaxHeight) {
      rng_ ^= rng_ << 13;
      rng_ ^= rng_ >> 7;
      rng_ ^= rng_ << 17;
      if ((rng_ & 3) != 0) break;  // each level is 1/4 as populated as the one below
      ++h;
    }
    return h;
  }

  Arena* const arena_;
  Node* const head_;
  std::atomic<int> max_height_{1};
  uint64_t rng_ = 0x9e3779b97f4a7c15ull;  // writer only
  Node* tail_ = nullptr;                  // writer only: the last node of level 0
  Node* rightmost_[kMaxHeight];           // writer only: the last node of each level
};

}  // namespace kvfs::engines::lsm
