// HandleTable: the handles (fuse_file_info::fh) handed to the kernel, owned here rather than by
// the kernel's promise of a RELEASE, because a session that ends while files or directories are
// open (an unmount, SIGTERM) gets no RELEASE for them. fh is the object's address.
//
// Thread safety: Add and Remove may be called from any thread at once; Get is pure arithmetic.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>

namespace kvfs::fusefs {

template <typename T>
class HandleTable {
 public:
  uint64_t Add(std::unique_ptr<T> handle) {
    T* raw = handle.get();
    std::lock_guard lock(mu_);
    handles_.emplace(raw, std::move(handle));
    return reinterpret_cast<uint64_t>(raw);
  }
  // fh is the handle's address, handed to the kernel and back (FUSE's fuse_file_info::fh).
  static T* Get(uint64_t fh) {
    return reinterpret_cast<T*>(fh);  // NOLINT(performance-no-int-to-ptr)
  }
  void Remove(uint64_t fh) {
    std::unique_ptr<T> gone;
    std::lock_guard lock(mu_);
    auto it = handles_.find(Get(fh));
    if (it == handles_.end()) return;
    gone = std::move(it->second);
    handles_.erase(it);
  }

 private:
  std::mutex mu_;
  std::unordered_map<T*, std::unique_ptr<T>> handles_;  // guarded by mu_
};

}  // namespace kvfs::fusefs
