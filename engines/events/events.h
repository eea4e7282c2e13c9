// The event store: append-only streams of checksummed, numbered, timestamped events, behind
// the Engine interface (so the shared contract and crash suites run over it) plus the calls an
// event store needs (EventStore below). Registered as "events". FORMAT.md has every byte.
//
// Storage: a layer over the Bitcask engine (engines/bitcask), whose data files are the shared
// write-ahead log's segments (sync/wal.h): appended, sealed, never rewritten in place. Each
// event is one key of that store whose key is its index entry (stream id, number, offset,
// size, timestamp) and whose value is a CRC32C over all of it and the payload; the Engine
// interface's keys live beside them under a prefix of their own. So recovery is the log's
// (damage is Corruption naming the segment and offset, a torn tail is told from damage), the
// durability contract is the log's, and a compaction is Bitcask's merge (new files written,
// synced and renamed into place, MANIFEST replaced atomically, old files deleted last).
//
// The index from (stream, event number) to position is rebuilt at every open from the keys
// alone (no value is read): Bitcask's keydir already holds them, so the open costs one pass
// over the keys in memory on top of the log replay. The open checks every stream's numbering
// (0, 1, 2, ... without a gap or a duplicate, offsets contiguous) and refuses the store,
// naming the stream and the event, if it is broken. Verify (kvfs check) also reads every
// event and checks its CRC32C.
//
// Durability: an Append is in the log when it returns (durable on return in `always` mode;
// otherwise at the next Sync, which covers every stream: one log). Appends are written to the
// log in the order they were numbered (one append lock held across the log write, never
// across a sync), so a power cut keeps a prefix of each stream: never a gap.
//
// Deleting a stream is one log record (its name record removed, a "dead" marker written);
// the dead stream's events are invisible at once and removed by Compact, which then merges.
//
// Thread safety: every method may be called from any thread at once, except Close.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engines/engine.h"

namespace kvfs::engines {

// The largest event payload Append takes (the mount's own limit is smaller: one FUSE write).
inline constexpr size_t kMaxEventSize = size_t{16} << 20;
inline constexpr size_t kMaxStreamNameSize = 4096;

struct EventInfo {
  uint64_t number = 0;       // 0, 1, 2, ... within its stream
  uint64_t offset = 0;       // payload bytes of the events before it in its stream
  uint32_t size = 0;         // payload bytes
  int64_t timestamp_ns = 0;  // CLOCK_REALTIME when appended (ns since the epoch)
};

struct StreamInfo {
  std::string name;
  uint64_t id = 0;      // never reused within a store while anything of the old one remains
  uint64_t events = 0;  // the number the next event gets
  uint64_t bytes = 0;   // the offset the next event gets
  int64_t created_ns = 0;
  int64_t last_ns = 0;  // the last event's timestamp (created_ns if it has none)
};

// Where an append must land (optimistic concurrency, the "expected version" of event stores).
// Unset fields are not checked.
struct AppendExpectation {
  std::optional<uint64_t> events;  // the stream holds exactly this many events
  std::optional<uint64_t> bytes;   // ... and this many bytes
  bool must_exist = false;         // kNotFound if the stream does not exist (else it is created)
};

// What an expectation that failed returns: kInvalidArgument with sys_errno EPERM (the errno the
// mount answers; ext4 answers EPERM for writes an append-only file refuses).
bool IsWrongPosition(const Status& s);

// One change to a stream, for ApplyWithStreams.
struct StreamOp {
  enum class Kind { kAppend, kDelete };
  Kind kind = Kind::kAppend;
  std::string stream;
  std::string_view data;     // kAppend: the event's payload
  AppendExpectation expect;  // kAppend
};

class EventStore {
 public:
  EventStore() = default;
  EventStore(const EventStore&) = delete;
  EventStore& operator=(const EventStore&) = delete;
  virtual ~EventStore() = default;

  // Appends one event of `data` (at most kMaxEventSize bytes) to `stream` (1 to
  // kMaxStreamNameSize bytes), creating the stream unless expect.must_exist. Returns the
  // event's number, offset and timestamp. Nothing is written if an expectation fails.
  virtual Result<EventInfo> Append(std::string_view stream, std::string_view data,
                                   const AppendExpectation& expect) = 0;
  // Applies `batch` (keys of the Engine interface) and `ops`, in order, as one log record: all
  // of it or nothing, after a crash too. An append's expectation is checked against the state
  // the ops before it leave; if one fails nothing is written. A kDelete of a stream that does
  // not exist is not an error. `appended` (may be null) receives each append's EventInfo.
  // The file layer (fusefs) writes a file's node and its event this way.
  virtual Status ApplyWithStreams(const WriteBatch& batch, std::span<const StreamOp> ops,
                                  std::vector<EventInfo>* appended) = 0;
  // Creates an empty stream; kAlreadyExists if it exists.
  virtual Result<StreamInfo> CreateStream(std::string_view stream) = 0;
  // kNotFound if the stream does not exist. Durable like an append.
  virtual Status DeleteStream(std::string_view stream) = 0;
  virtual Result<StreamInfo> Stat(std::string_view stream) = 0;
  // Every stream in name order until fn returns false.
  virtual Status ListStreams(const std::function<bool(const StreamInfo&)>& fn) = 0;
  // The index entries of events from..from+max-1 (fewer at the end). Reads no event.
  virtual Result<std::vector<EventInfo>> ListEvents(std::string_view stream, uint64_t from,
                                                    size_t max) = 0;
  // Event `number`'s payload, its CRC32C checked: one index lookup and one read, whatever the
  // stream's length. kNotFound past the end.
  virtual Result<std::string> ReadEvent(std::string_view stream, uint64_t number,
                                        EventInfo* info = nullptr) = 0;
  // Bytes [offset, offset + size) of the stream's payloads concatenated (fewer at the end):
  // the stream read as a file. Every event touched is checked.
  virtual Result<std::string> ReadBytes(std::string_view stream, uint64_t offset, size_t size) = 0;
};

// The EventStore of an engine opened as "events"; null for any other engine.
EventStore* AsEventStore(Engine* engine);

}  // namespace kvfs::engines
