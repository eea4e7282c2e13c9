// StoreFailure: what every engine keeps after a fatal failure and how it refuses writes.
#include "engines/store_failure.h"

#include <gtest/gtest.h>

#include <cerrno>

#include "tests/test_util.h"

namespace kvfs::engines {
namespace {

TEST(StoreFailure, KeepsTheFirstCauseAndRefusesWithItsErrno) {
  StoreFailure failure("lsm store /data/x");
  EXPECT_FALSE(failure.failed());
  EXPECT_OK(failure.cause());
  EXPECT_OK(failure.Refusal());

  failure.Latch(Status::OK());  // not a failure
  EXPECT_FALSE(failure.failed());

  failure.Latch(Status::IOError("fdatasync of 000001.wal failed", EROFS));
  failure.Latch(Status::Corruption("a later symptom"));
  EXPECT_TRUE(failure.failed());
  EXPECT_EQ(failure.cause().sys_errno(), EROFS);
  EXPECT_NE(failure.cause().message().find("fdatasync"), std::string::npos);

  Status refusal = failure.Refusal();
  EXPECT_TRUE(refusal.IsFailed()) << refusal.ToString();
  EXPECT_EQ(refusal.sys_errno(), EROFS);
  EXPECT_NE(refusal.message().find("lsm store /data/x refuses writes after a failure"),
            std::string::npos)
      << refusal.ToString();
  EXPECT_EQ(refusal.message().find("a later symptom"), std::string::npos) << refusal.ToString();
}

TEST(StoreFailure, ACauseWithoutAnErrnoIsRefusedWithEio) {
  StoreFailure failure("btree store /data/y");
  failure.Latch(Status(StatusCode::kCorruption, "page 7 checksum mismatch", 0));
  EXPECT_EQ(failure.cause().sys_errno(), 0);
  EXPECT_EQ(failure.Refusal().sys_errno(), EIO);
}

}  // namespace
}  // namespace kvfs::engines
