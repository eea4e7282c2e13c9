// InodeMap: how FUSE inode numbers name the nodes of the mounted stores and the virtual nodes.
//
// A FileStore names its nodes by immutable 64-bit ids (the store root is kRootId == 1, new
// ids come from a persistent high-water mark, so an id is never reused and inode generations
// can stay 0). The daemon hands out inode numbers that the kernel passes back:
//
// - single-store mode (`kvfs mount --engine NAME`: one store at the mount's root):
//   ino == id. The store's root is FUSE_ROOT_ID (1) without any translation.
// - multi-store mode (one top-level directory per store): ino 1 is the virtual mount root and
//   a store's node is ((store_index + 1) << 48) | id, so ids must stay below 2^48 (at a
//   million creates a second, nine years); an id beyond is refused with EOVERFLOW.
// - in both modes the virtual control nodes (/.kvfs and the files in it) live at the top of
//   the range: kVirtualBase | n. Ids never get there (single-store ids stay far below 2^63).
//
// The numbers are stable for the life of a mount, and the same ino is st_ino in stat(2).
// Pure arithmetic: thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>

namespace kvfs::fusefs {

enum class InodeKind {
  kMountRoot,  // multi-store mode's virtual root directory (ino 1)
  kVirtual,    // the control directory /.kvfs and its files
  kStore,      // a node of store `store` with FileStore id `id`
  kInvalid,    // a number this map never hands out
};

struct InodeRef {
  InodeKind kind = InodeKind::kInvalid;
  size_t store = 0;  // kStore
  uint64_t id = 0;   // kStore: the FileStore id; kVirtual: the virtual node number
};

inline constexpr uint64_t kMountRootIno = 1;  // FUSE_ROOT_ID
inline constexpr int kStoreShift = 48;
inline constexpr uint64_t kIdMask = (uint64_t{1} << kStoreShift) - 1;
inline constexpr uint64_t kVirtualBase = uint64_t{0xffff} << kStoreShift;
inline constexpr size_t kMaxStores = 0xfffe;

// The virtual nodes.
inline constexpr uint64_t kControlDirNode = 1;  // /.kvfs
inline constexpr uint64_t kStatsNode = 2;       // /.kvfs/stats
inline constexpr uint64_t kConfigNode = 3;      // /.kvfs/config
inline constexpr uint64_t kMetricsNode = 4;     // /.kvfs/metrics
inline constexpr uint64_t kLastVirtualNode = kMetricsNode;

class InodeMap {
 public:
  // `single_store`: one store mounted at the root (its root is ino 1).
  explicit InodeMap(bool single_store) : single_store_(single_store) {}

  bool single_store() const { return single_store_; }

  // The ino of node `id` of store `store`, or 0 if it cannot be represented (id too large).
  uint64_t StoreIno(size_t store, uint64_t id) const {
    if (single_store_) return id < kVirtualBase ? id : 0;
    if (id > kIdMask || id == 0 || store >= kMaxStores) return 0;
    return (uint64_t{store + 1} << kStoreShift) | id;
  }
  static uint64_t VirtualIno(uint64_t node) { return kVirtualBase | node; }

  InodeRef Decode(uint64_t ino) const {
    InodeRef r;
    if (ino >= kVirtualBase) {
      r.kind = InodeKind::kVirtual;
      r.id = ino & kIdMask;
      return r;
    }
    if (single_store_) {
      if (ino == 0) return r;
      r.kind = InodeKind::kStore;
      r.store = 0;
      r.id = ino;
      return r;
    }
    if (ino == kMountRootIno) {
      r.kind = InodeKind::kMountRoot;
      return r;
    }
    const uint64_t store = ino >> kStoreShift;
    if (store == 0 || (ino & kIdMask) == 0) return r;
    r.kind = InodeKind::kStore;
    r.store = static_cast<size_t>(store - 1);
    r.id = ino & kIdMask;
    return r;
  }

 private:
  bool single_store_;
};

}  // namespace kvfs::fusefs
