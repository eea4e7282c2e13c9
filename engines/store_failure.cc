#include "engines/store_failure.h"

#include <cerrno>

namespace kvfs::engines {
namespace {

Status Refuse(const std::string& store, const std::string& why, const Status& cause) {
  return Status(StatusCode::kFailed, store + " " + why + ": " + cause.ToString(),
                cause.sys_errno() != 0 ? cause.sys_errno() : EIO);
}

}  // namespace

void StoreFailure::Latch(const Status& s) {
  if (s.ok()) return;
  MutexLock lock(&mu_);
  if (failure_.ok()) failure_ = s;
  failed_.store(true, std::memory_order_release);
}

Status StoreFailure::cause() const {
  if (!failed()) return Status::OK();
  MutexLock lock(&mu_);
  return failure_;
}

Status StoreFailure::Refusal() const {
  Status kept = cause();
  if (kept.ok()) return kept;
  return Refuse(store_, "refuses writes after a failure", kept);
}

Status StoreFailure::CheckWritable(const sync::Wal& wal) const {
  KVFS_RETURN_IF_ERROR(Refusal());
  Status health = wal.health();
  if (!health.ok()) return Refuse(store_, "refuses writes after a failed sync", health);
  return Status::OK();
}

}  // namespace kvfs::engines
