#include "sync/status.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "tests/test_util.h"

namespace kvfs {
namespace {

TEST(StatusTest, DefaultIsOkWithNoErrnoAndEmptyMessage) {
  const Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kOk);
  EXPECT_EQ(s.sys_errno(), 0);
  EXPECT_EQ(s.message(), "");
  EXPECT_EQ(s.ToString(), "OK");
  EXPECT_TRUE(Status::OK().ok());
}

TEST(StatusTest, ConstructingWithOkCodeIsOk) {
  const Status s(StatusCode::kOk, "ignored", EIO);
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.sys_errno(), 0);
  EXPECT_EQ(s.message(), "");
}

TEST(StatusTest, FactoriesSetCodeConventionalErrnoAndMessage) {
  struct Case {
    Status status;
    StatusCode code;
    int sys_errno;
  };
  const Case cases[] = {
      {Status::NotFound("m"), StatusCode::kNotFound, ENOENT},
      {Status::AlreadyExists("m"), StatusCode::kAlreadyExists, EEXIST},
      {Status::InvalidArgument("m"), StatusCode::kInvalidArgument, EINVAL},
      {Status::Corruption("m"), StatusCode::kCorruption, EIO},
      {Status::IOError("m"), StatusCode::kIOError, EIO},
      {Status::NoSpace("m"), StatusCode::kNoSpace, ENOSPC},
      {Status::Busy("m"), StatusCode::kBusy, EBUSY},
      {Status::Failed("m"), StatusCode::kFailed, EIO},
      {Status::NotSupported("m"), StatusCode::kNotSupported, ENOTSUP},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(StatusCodeName(c.code));
    EXPECT_FALSE(c.status.ok());
    EXPECT_EQ(c.status.code(), c.code);
    EXPECT_EQ(c.status.sys_errno(), c.sys_errno);
    EXPECT_EQ(c.status.message(), "m");
  }
}

TEST(StatusTest, IOErrorKeepsGivenErrno) {
  EXPECT_EQ(Status::IOError("m", EROFS).sys_errno(), EROFS);
}

TEST(StatusTest, PredicatesMatchTheirCodeOnly) {
  EXPECT_TRUE(Status::NotFound("").IsNotFound());
  EXPECT_TRUE(Status::AlreadyExists("").IsAlreadyExists());
  EXPECT_TRUE(Status::Corruption("").IsCorruption());
  EXPECT_TRUE(Status::IOError("").IsIOError());
  EXPECT_TRUE(Status::NoSpace("").IsNoSpace());
  EXPECT_TRUE(Status::Busy("").IsBusy());
  EXPECT_TRUE(Status::Failed("").IsFailed());
  EXPECT_FALSE(Status::IOError("").IsNotFound());
  EXPECT_FALSE(Status::OK().IsIOError());
  EXPECT_FALSE(Status::Failed("").IsIOError());
}

TEST(StatusTest, CodeNamesAreDistinctAndReadable) {
  EXPECT_EQ(StatusCodeName(StatusCode::kOk), "OK");
  EXPECT_EQ(StatusCodeName(StatusCode::kNotFound), "NotFound");
  EXPECT_EQ(StatusCodeName(StatusCode::kAlreadyExists), "AlreadyExists");
  EXPECT_EQ(StatusCodeName(StatusCode::kInvalidArgument), "InvalidArgument");
  EXPECT_EQ(StatusCodeName(StatusCode::kCorruption), "Corruption");
  EXPECT_EQ(StatusCodeName(StatusCode::kIOError), "IOError");
  EXPECT_EQ(StatusCodeName(StatusCode::kNoSpace), "NoSpace");
  EXPECT_EQ(StatusCodeName(StatusCode::kBusy), "Busy");
  EXPECT_EQ(StatusCodeName(StatusCode::kFailed), "Failed");
  EXPECT_EQ(StatusCodeName(StatusCode::kNotSupported), "NotSupported");
}

TEST(StatusTest, ToStringIsCodeNameColonMessage) {
  EXPECT_EQ(Status::NotFound("/data/x").ToString(), "NotFound: /data/x");
  EXPECT_EQ(Status::Busy("lock").ToString(), "Busy: lock");
}

TEST(StatusTest, FromErrnoMapsErrnoToCode) {
  struct Case {
    int err;
    StatusCode code;
  };
  const Case cases[] = {
      {ENOENT, StatusCode::kNotFound},
      {EEXIST, StatusCode::kAlreadyExists},
      {ENOSPC, StatusCode::kNoSpace},
      {EDQUOT, StatusCode::kNoSpace},
      {EWOULDBLOCK, StatusCode::kBusy},
      {EINVAL, StatusCode::kInvalidArgument},
      {ENAMETOOLONG, StatusCode::kInvalidArgument},
      {ENOTDIR, StatusCode::kInvalidArgument},
      {EISDIR, StatusCode::kInvalidArgument},
      {ENOTEMPTY, StatusCode::kInvalidArgument},
      {EIO, StatusCode::kIOError},
      {EROFS, StatusCode::kIOError},
      {EACCES, StatusCode::kIOError},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::strerror(c.err));
    const Status s = Status::FromErrno(c.err, "op /p");
    EXPECT_EQ(s.code(), c.code);
    EXPECT_EQ(s.sys_errno(), c.err) << "the OS errno is kept, not the code's convention";
  }
}

TEST(StatusTest, FromErrnoMessageIsContextThenStrerror) {
  const Status s = Status::FromErrno(EIO, "fdatasync /data/wal/000001.log");
  EXPECT_EQ(s.message(), std::string("fdatasync /data/wal/000001.log: ") + std::strerror(EIO));
}

TEST(StatusTest, WithContextPrefixesMessageAndKeepsCodeAndErrno) {
  const Status s = Status::FromErrno(ENOSPC, "pwrite /f").WithContext("appending record 7");
  EXPECT_EQ(s.code(), StatusCode::kNoSpace);
  EXPECT_EQ(s.sys_errno(), ENOSPC);
  EXPECT_EQ(s.message(), std::string("appending record 7: pwrite /f: ") + std::strerror(ENOSPC));
}

TEST(StatusTest, WithContextOnOkStaysOk) { EXPECT_TRUE(Status::OK().WithContext("x").ok()); }

TEST(StatusTest, CopyIsDeepAndIndependent) {
  const Status original = Status::IOError("disk", EROFS);
  Status copy(original);
  EXPECT_EQ(copy.ToString(), original.ToString());
  EXPECT_EQ(copy.sys_errno(), EROFS);
  copy = Status::NotFound("other");
  EXPECT_EQ(original.ToString(), "IOError: disk");
  EXPECT_EQ(copy.ToString(), "NotFound: other");
}

TEST(StatusTest, CopyAssignOfOkClearsError) {
  Status s = Status::IOError("x");
  const Status ok;
  s = ok;
  EXPECT_TRUE(s.ok());
}

TEST(StatusTest, SelfCopyAssignKeepsValue) {
  Status s = Status::Busy("held");
  const Status& alias = s;
  s = alias;
  EXPECT_EQ(s.ToString(), "Busy: held");
}

TEST(StatusTest, MoveTransfersError) {
  Status from = Status::Corruption("crc");
  const Status to(std::move(from));
  EXPECT_EQ(to.ToString(), "Corruption: crc");
}

TEST(ResultTest, HoldsValue) {
  Result<int> r(42);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r.status().ok());
  EXPECT_EQ(r.value(), 42);
  EXPECT_EQ(*r, 42);
}

TEST(ResultTest, HoldsError) {
  const Result<int> r(Status::NotFound("k"));
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsNotFound());
  EXPECT_EQ(r.status().message(), "k");
}

TEST(ResultTest, BuiltFromOkStatusIsAnError) {
  const Result<int> r(Status::OK());
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
}

TEST(ResultTest, ArrowAndMoveOutOfValue) {
  Result<std::string> r(std::string("hello"));
  EXPECT_EQ(r->size(), 5u);
  const std::string taken = std::move(r).value();
  EXPECT_EQ(taken, "hello");
}

TEST(ResultTest, TakeStatusMovesTheError) {
  Result<int> r(Status::Busy("b"));
  const Status s = std::move(r).TakeStatus();
  EXPECT_EQ(s.ToString(), "Busy: b");
}

TEST(ResultDeathTest, ValueOfErrorAborts) {
  Result<int> r(Status::IOError("boom"));
  EXPECT_DEATH((void)r.value(), "value\\(\\) of a failed Result: IOError: boom");
}

Result<int> ParsePositive(int x) {
  if (x <= 0) return Status::InvalidArgument("not positive: " + std::to_string(x));
  return x;
}

Result<int> DoubleViaMacro(int x, int* reached) {
  KVFS_ASSIGN_OR_RETURN(int v, ParsePositive(x));
  ++*reached;
  return 2 * v;
}

Status CheckViaMacro(int x, int* reached) {
  KVFS_RETURN_IF_ERROR(ParsePositive(x).status());
  ++*reached;
  return Status::OK();
}

TEST(ResultTest, AssignOrReturnAssignsValue) {
  int reached = 0;
  const Result<int> r = DoubleViaMacro(21, &reached);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 42);
  EXPECT_EQ(reached, 1);
}

TEST(ResultTest, AssignOrReturnPropagatesError) {
  int reached = 0;
  const Result<int> r = DoubleViaMacro(-1, &reached);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().ToString(), "InvalidArgument: not positive: -1");
  EXPECT_EQ(reached, 0);
}

TEST(ResultTest, AssignOrReturnIntoExistingVariable) {
  auto f = []() -> Status {
    int v = 0;
    KVFS_ASSIGN_OR_RETURN(v, ParsePositive(5));
    return v == 5 ? Status::OK() : Status::IOError("wrong value");
  };
  EXPECT_OK(f());
}

TEST(StatusTest, ReturnIfErrorContinuesOnOkAndReturnsError) {
  int reached = 0;
  EXPECT_OK(CheckViaMacro(3, &reached));
  EXPECT_EQ(reached, 1);
  const Status s = CheckViaMacro(0, &reached);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(reached, 1);
}

}  // namespace
}  // namespace kvfs
