#include "sync/status.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace kvfs {

std::string_view StatusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return "OK";
    case StatusCode::kNotFound:
      return "NotFound";
    case StatusCode::kAlreadyExists:
      return "AlreadyExists";
    case StatusCode::kInvalidArgument:
      return "InvalidArgument";
    case StatusCode::kCorruption:
      return "Corruption";
    case StatusCode::kIOError:
      return "IOError";
    case StatusCode::kNoSpace:
      return "NoSpace";
    case StatusCode::kBusy:
      return "Busy";
    case StatusCode::kFailed:
      return "Failed";
    case StatusCode::kNotSupported:
      return "NotSupported";
  }
  return "Unknown";
}

Status::Status(StatusCode code, std::string message, int sys_errno) {
  if (code == StatusCode::kOk) return;
  rep_ = std::make_unique<Rep>(Rep{code, sys_errno, std::move(message)});
}

Status::Status(const Status& other)
    : rep_(other.rep_ ? std::make_unique<Rep>(*other.rep_) : nullptr) {}

Status& Status::operator=(const Status& other) {
  if (this != &other) rep_ = other.rep_ ? std::make_unique<Rep>(*other.rep_) : nullptr;
  return *this;
}

const std::string& Status::message() const {
  static const std::string kEmpty;
  return rep_ ? rep_->message : kEmpty;
}

const char* ErrnoText(int err) {
  const char* text = ::strerrordesc_np(err);
  return text != nullptr ? text : "unknown error";
}

Status Status::FromErrno(int err, std::string_view context) {
  std::string msg(context);
  msg += ": ";
  msg += ErrnoText(err);
  switch (err) {
    case ENOENT:
      return {StatusCode::kNotFound, std::move(msg), err};
    case EEXIST:
      return {StatusCode::kAlreadyExists, std::move(msg), err};
    case ENOSPC:
    case EDQUOT:
      return {StatusCode::kNoSpace, std::move(msg), err};
    case EWOULDBLOCK:
      return {StatusCode::kBusy, std::move(msg), err};
    case EINVAL:
    case ENAMETOOLONG:
    case ENOTDIR:
    case EISDIR:
    case ENOTEMPTY:
      return {StatusCode::kInvalidArgument, std::move(msg), err};
    default:
      return {StatusCode::kIOError, std::move(msg), err};
  }
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  std::string s(StatusCodeName(rep_->code));
  s += ": ";
  s += rep_->message;
  return s;
}

Status Status::WithContext(std::string_view prefix) const {
  if (ok()) return Status();
  std::string msg(prefix);
  msg += ": ";
  msg += rep_->message;
  return Status(rep_->code, std::move(msg), rep_->sys_errno);
}

void DieOnBadResultAccess(const Status& status) {
  std::fprintf(stderr, "kvfs: value() of a failed Result: %s\n", status.ToString().c_str());
  std::abort();
}

}  // namespace kvfs
