#include "sync/crc32c.h"

#include <gtest/gtest.h>

#include <string>

namespace kvfs::sync::crc32c {
namespace {

TEST(Crc32cTest, CheckValueOfStandardString) {
  // The check value of CRC-32C (RFC 3720, and every CRC catalogue).
  EXPECT_EQ(Value("123456789"), 0xE3069283u);
}

TEST(Crc32cTest, ThirtyTwoZeroBytes) {
  // RFC 3720, appendix B.4.
  const std::string zeros(32, '\0');
  EXPECT_EQ(Value(zeros), 0x8A9136AAu);
}

TEST(Crc32cTest, ThirtyTwoOnesBytes) {
  // RFC 3720, appendix B.4.
  const std::string ones(32, '\xff');
  EXPECT_EQ(Value(ones), 0x62A8AB43u);
}

TEST(Crc32cTest, IncreasingBytes) {
  // RFC 3720, appendix B.4: bytes 0x00..0x1f.
  std::string data;
  for (int i = 0; i < 32; ++i) data.push_back(static_cast<char>(i));
  EXPECT_EQ(Value(data), 0x46DD794Eu);
}

TEST(Crc32cTest, EmptyInputIsZero) {
  EXPECT_EQ(Value(""), 0u);
  EXPECT_EQ(Extend(0x12345678u, "", 0), 0x12345678u);
}

TEST(Crc32cTest, ExtendInPiecesEqualsWhole) {
  std::string data;
  for (int i = 0; i < 1000; ++i) data.push_back(static_cast<char>(i * 31 + 7));
  const uint32_t whole = Value(data);
  for (size_t split : {size_t{0}, size_t{1}, size_t{7}, size_t{500}, size_t{999}, data.size()}) {
    SCOPED_TRACE(split);
    const uint32_t first = Value(data.data(), split);
    EXPECT_EQ(Extend(first, data.data() + split, data.size() - split), whole);
  }
}

TEST(Crc32cTest, ExtendByteAtATimeEqualsWhole) {
  const std::string data = "hello, durable world";
  uint32_t crc = 0;
  for (char c : data) crc = Extend(crc, &c, 1);
  EXPECT_EQ(crc, Value(data));
}

TEST(Crc32cTest, DifferentDataDifferentValue) {
  EXPECT_NE(Value("a"), Value("b"));
  EXPECT_NE(Value("foo"), Value("bar"));
}

}  // namespace
}  // namespace kvfs::sync::crc32c
