// Status and Result<T>: how every kvfs layer reports failure.
//
// No exception crosses a folder boundary. A function that can fail returns a Status (or a
// Result<T> carrying either a value or a Status). Both are [[nodiscard]]: dropping one on the
// floor is a compile error under -Werror, so an ignored I/O error is always a visible decision.
//
// A Status carries a code (what kind of failure, for the caller to branch on), the errno that
// caused it when it came from the OS (so the FUSE layer can answer with the right errno), and a
// message that names the file or key involved. OK is represented by a null pointer and costs
// nothing to create, copy or test.
//
// Thread safety: a Status is a value; distinct objects may be used from distinct threads.
#pragma once

#include <cerrno>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace kvfs {

enum class StatusCode {
  kOk = 0,
  kNotFound,         // the file, directory or key does not exist
  kAlreadyExists,    // the file, directory or key exists and must not
  kInvalidArgument,  // the caller asked for something malformed
  kCorruption,       // bytes on disk fail a checksum or a format check
  kIOError,          // the OS or the device reported an error
  kNoSpace,          // ENOSPC or EDQUOT: retrying after space is freed may succeed
  kBusy,             // a lock is held by someone else
  kFailed,           // an earlier sync failed; the owner refuses writes until reopened
  kNotSupported,     // the operation makes no sense for this object
};

// The short name of a code, as it appears in Status::ToString().
std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() noexcept = default;  // OK
  Status(StatusCode code, std::string message, int sys_errno = 0);
  Status(const Status& other);
  Status& operator=(const Status& other);
  Status(Status&&) noexcept = default;
  Status& operator=(Status&&) noexcept = default;
  ~Status() = default;

  static Status OK() { return Status(); }
  static Status NotFound(std::string msg) {
    return {StatusCode::kNotFound, std::move(msg), ENOENT};
  }
  static Status AlreadyExists(std::string msg) {
    return {StatusCode::kAlreadyExists, std::move(msg), EEXIST};
  }
  static Status InvalidArgument(std::string msg) {
    return {StatusCode::kInvalidArgument, std::move(msg), EINVAL};
  }
  static Status Corruption(std::string msg) {
    return {StatusCode::kCorruption, std::move(msg), EIO};
  }
  static Status IOError(std::string msg, int sys_errno = EIO) {
    return {StatusCode::kIOError, std::move(msg), sys_errno};
  }
  static Status NoSpace(std::string msg) { return {StatusCode::kNoSpace, std::move(msg), ENOSPC}; }
  static Status Busy(std::string msg) { return {StatusCode::kBusy, std::move(msg), EBUSY}; }
  static Status Failed(std::string msg) { return {StatusCode::kFailed, std::move(msg), EIO}; }
  static Status NotSupported(std::string msg) {
    return {StatusCode::kNotSupported, std::move(msg), ENOTSUP};
  }

  // Maps an errno from a system call to the matching code. `context` names the operation and
  // the path, e.g. "fdatasync /data/wal/000001.log"; strerror(err) is appended.
  static Status FromErrno(int err, std::string_view context);

  bool ok() const { return rep_ == nullptr; }
  StatusCode code() const { return rep_ ? rep_->code : StatusCode::kOk; }
  // The errno to report to a FUSE caller: the OS errno when the failure came from one,
  // otherwise the conventional errno of the code. 0 when OK.
  int sys_errno() const { return rep_ ? rep_->sys_errno : 0; }
  const std::string& message() const;

  bool IsNotFound() const { return code() == StatusCode::kNotFound; }
  bool IsAlreadyExists() const { return code() == StatusCode::kAlreadyExists; }
  bool IsCorruption() const { return code() == StatusCode::kCorruption; }
  bool IsIOError() const { return code() == StatusCode::kIOError; }
  bool IsNoSpace() const { return code() == StatusCode::kNoSpace; }
  bool IsBusy() const { return code() == StatusCode::kBusy; }
  bool IsFailed() const { return code() == StatusCode::kFailed; }

  // "OK" or "<code name>: <message>".
  std::string ToString() const;

  // Returns a copy whose message is "<prefix>: <message>", same code and errno.
  Status WithContext(std::string_view prefix) const;

  // Marks a Status as deliberately ignored, so every such place can be found with grep.
  void PermitUnchecked() const {}

 private:
  struct Rep {
    StatusCode code;
    int sys_errno;
    std::string message;
  };
  std::unique_ptr<Rep> rep_;
};

// Either a value or a non-OK Status. Accessing the value of an error Result is a bug and
// asserts.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}         // NOLINT(google-explicit-constructor)
  Result(Status status) : status_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    if (status_.ok()) status_ = Status(StatusCode::kInvalidArgument, "Result built from OK status");
  }

  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  Status&& TakeStatus() && { return std::move(status_); }

  T& value() & { return Checked(); }
  const T& value() const& { return const_cast<Result*>(this)->Checked(); }
  T&& value() && { return std::move(Checked()); }
  T& operator*() & { return Checked(); }
  const T& operator*() const& { return const_cast<Result*>(this)->Checked(); }
  T* operator->() { return &Checked(); }
  const T* operator->() const { return &const_cast<Result*>(this)->Checked(); }

 private:
  T& Checked();

  std::optional<T> value_;
  Status status_;
};

[[noreturn]] void DieOnBadResultAccess(const Status& status);

template <typename T>
T& Result<T>::Checked() {
  if (!value_.has_value()) DieOnBadResultAccess(status_);
  return *value_;
}

// The text of an errno value ("No such file or directory"), thread-safe (std::strerror may
// share a buffer between threads).
const char* ErrnoText(int err);

}  // namespace kvfs

#define KVFS_CONCAT_INNER(a, b) a##b
#define KVFS_CONCAT(a, b) KVFS_CONCAT_INNER(a, b)

// Returns the Status of `expr` from the enclosing function if it is not OK.
#define KVFS_RETURN_IF_ERROR(expr)               \
  do {                                           \
    ::kvfs::Status kvfs_status_ = (expr);        \
    if (!kvfs_status_.ok()) return kvfs_status_; \
  } while (0)

// Evaluates `rexpr` (a Result<T>); on error returns its Status, otherwise moves the value into
// `lhs`, which may be a declaration: KVFS_ASSIGN_OR_RETURN(auto file, fs->NewWritableFile(p));
#define KVFS_ASSIGN_OR_RETURN(lhs, rexpr) \
  KVFS_ASSIGN_OR_RETURN_IMPL(KVFS_CONCAT(kvfs_result_, __LINE__), lhs, rexpr)
// `tmp` and `lhs` cannot be parenthesised: one is a name being declared, the other may be.
// NOLINTBEGIN(bugprone-macro-parentheses)
#define KVFS_ASSIGN_OR_RETURN_IMPL(tmp, lhs, rexpr)  \
  auto tmp = (rexpr);                                \
  if (!tmp.ok()) return std::move(tmp).TakeStatus(); \
  lhs = std::move(tmp).value()
// NOLINTEND(bugprone-macro-parentheses)
