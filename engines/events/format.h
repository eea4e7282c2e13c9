// The event store's keys and values inside its Bitcask store (FORMAT.md has the why).
//
//   <key>                                       an Engine-interface key not starting with NUL,
//                                               as given; one starting with NUL gets one more
//                                               NUL in front ("\0\0..."): so the log holds the
//                                               interface's keys as they are (what the shared
//                                               suites and the salvage read), order kept
//   "\0s" <stream name>                         a live stream: u8 version (1), u64 id,
//                                               i64 created_ns (little-endian)
//   "\0e" <id:8 BE> <number:8 BE> <offset:8 BE> one event; the key is its index entry. Value:
//       <size:4 BE> <timestamp_ns:8 BE>         CRC32C (u32 LE) of the key's 38 bytes and the
//                                               payload, then the payload
//   "\0x" <id:8 BE>                             a deleted stream whose events Compact removes
//
// The store's own keys are NUL then a tag ('s', 'e', 'x'): between the interface's keys that
// start with NUL ("\0\0...") and those that do not, so a scan of the interface's keys skips them
// in one jump. Big-endian in keys so that a stream's events sort by number.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "engines/events/events.h"
#include "sync/status.h"

namespace kvfs::engines::events {

inline constexpr char kStreamTag = 's';
inline constexpr char kEventTag = 'e';
inline constexpr char kDeadTag = 'x';
inline constexpr size_t kEventKeySize = 38;

// An Engine-interface key as stored, and back.
std::string UserKey(std::string_view key);
inline bool IsUserKey(std::string_view stored) {
  return stored.size() < 2 || stored[0] != '\0' || stored[1] == '\0';
}
inline std::string_view KeyOfUser(std::string_view stored) {
  return !stored.empty() && stored[0] == '\0' ? stored.substr(1) : stored;
}
// The prefix of the store's own keys with `tag`.
std::string TagPrefix(char tag);
inline constexpr size_t kStreamValueSize = 17;
inline constexpr uint8_t kStreamVersion = 1;

std::string EventKey(uint64_t id, const EventInfo& e);
std::string EventPrefix(uint64_t id);  // "e" <id>
// Id and index entry of an event key; Corruption if it is not one.
Result<std::pair<uint64_t, EventInfo>> DecodeEventKey(std::string_view key);
std::string EventValue(std::string_view key, std::string_view payload);
// The payload of `value` if its CRC32C matches `key`; Corruption naming `where` otherwise.
Result<std::string_view> CheckEventValue(std::string_view key, std::string_view value,
                                         std::string_view where);

std::string StreamKey(std::string_view name);
std::string StreamValue(uint64_t id, int64_t created_ns);
struct StreamRecord {
  uint64_t id = 0;
  int64_t created_ns = 0;
};
Result<StreamRecord> DecodeStreamValue(std::string_view value, std::string_view name);

std::string DeadKey(uint64_t id);
Result<uint64_t> DecodeDeadKey(std::string_view key);

// A name printable in a message (binary bytes as \xNN).
std::string Printable(std::string_view name);

}  // namespace kvfs::engines::events
