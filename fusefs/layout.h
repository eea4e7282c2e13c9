// The file layout: how a directory tree is stored as keys and values of one engine. Shared by
// the daemon (FileStore) and the offline tools, so `kvfs get DATA_DIR a/b` and `cat MNT/a/b`
// see the same bytes.
//
// Keys (bytewise order matters: readdir is one ordered prefix scan):
//   "R"                                  the store root directory's node
//   "M" <parent path> "\0" <name>        the node of path <parent path>/<name>; the parent path
//                                        of a top-level name is "" (so its key is "M\0name")
//   "D" <id: 8 bytes BE> <chunk: 8 BE>   bytes [chunk*kChunkSize, ...) of file <id>
//   "I" <id: 8 bytes BE>                 the shared record of file <id> once it has more than one
//                                        name (hard links): its attributes, xattrs and inline
//                                        data, nlink = its names; each name's "M" record is then
//                                        a stub (flag bit 1: type and id only) pointing here
//   "O" <id: 8 bytes BE>                 orphan: file <id> was unlinked while open; its node
//                                        (value) tells how many chunks to delete at next mount
//   "P" <id: 8 bytes BE>                 purge record: chunk keys of file <id> from a first
//                                        chunk on (and maybe its "X" keys) are garbage that the
//                                        reclaimer deletes in bounded batches, the last batch
//                                        deleting this record too. Two kinds (PurgeRecord):
//                                        value 8 bytes BE `first`: the file is gone (no name, no
//                                        orphan record), its chunks from `first` on and (first
//                                        0) its "X" keys are garbage; ids are never reused, so
//                                        nothing can reach them. Value 8 bytes BE `first` then
//                                        'T': a truncate of a file that may still live: it
//                                        holds no live chunk key at or past `first` (reads see
//                                        holes there; a write that puts a chunk there moves
//                                        `first` past it in its batch), its xattrs are its own.
//   "N"                                  the file-id high-water mark (8 bytes BE): ids below it
//                                        may be in use, ids from it are free
//   "X" <id: 8 bytes BE> <name>          extended attribute <name> of file <id>: its value, as
//                                        is; keyed by id, so every name of a file (hard links)
//                                        shares them and a rename moves none
//   "Y"                                  move record: a directory rename too big for one
//                                        batch is under way (MoveRecord below); at most one.
//                                        Written in the rename's first batch with the top
//                                        directory's own move; the descendants then move in
//                                        batches of at most kMoveBatch nodes, the last one
//                                        deleting it. A writable open finishes a move a crash
//                                        cut short before anything else; read-only opens
//                                        refuse the store until then (docs/decisions.md)
//   "Y" <rest>  (<rest> starts "\0" or "/") a node staged by a directory exchange: the node
//                                        whose key was "M" <dir> <rest>, parked while the other
//                                        directory's subtree takes its place
//   "V"                                  layout format version ("kvfs-layout 3"; a store of
//                                        layout 1 or 2 is rewritten to 3 by its first writable
//                                        open)
//
// Why paths and not parent ids in node keys: a key IS the path (the engine's keys read as the
// tree), listing a directory is one prefix scan, and lookups need no id->path index on disk.
// The price: renaming a directory rewrites the node of everything below it (one batch up to
// kMoveBatch descendants, else the bounded batches of a move record, "Y"); file data and xattrs
// are keyed by the immutable file id, so they never move.
//
// The children of directory P are exactly the keys with prefix "M" P "\0" (names contain
// neither '/' nor NUL); its whole subtree is that prefix plus prefix "M" P "/".
//
// A node value (little-endian, version 3):
//   u8 version, u8 type, u32 mode (permission bits 07777), u32 uid, u32 gid, u64 id, u64 size,
//   i64 atime_ns, i64 mtime_ns, i64 ctime_ns, u8 flags (bit 0: data inline),
//   u32 nlink (directories: 2 + subdirectories; others: their names), u64 rdev (devices),
//   u64 chunks (files: how many chunk keys it holds, for st_blocks; 0 while inline),
//   u32 xattr count, u32 xattr name bytes, u64 xattr value bytes (its "X" keys: how many, and
//   the bytes of their names and of their values, so a limit or listxattr's size needs no
//   scan); u32 inline length, inline bytes (a file's data when inline, a symlink's target).
// Flags: bit 0 data inline; bit 1 a link stub: a name of a file with several names, whose
// record says only its type and id (everything else zero, nlink 1); the file is "I" <id>.
// Version 2 (layout 2) is version 3 with the node's whole xattr set inside it instead of the
// three xattr fields: u32 xattr count, then per xattr: u16 name length, name, u32 value length,
// value. It still decodes (the set in `inline_xattrs`, the three fields counted from it), and
// the first writable open of a layout-2 store moves every set to "X" keys (docs/decisions.md).
// Version 1 (written by kvfs before hard links and special files) is version 2 without nlink,
// rdev and chunks; it still decodes: a non-directory's nlink is then 1 and a directory's 0, and
// a chunked file's chunks kUnknownChunks, "not counted" (FileStore counts them when it reads
// the node, and its first writable open rewrites every directory and chunked file node in
// version 3, docs/decisions.md). Decoding checks every length against the buffer and returns
// Corruption naming the key; a version above 3 is refused by name.
//
// Files of at most kInlineMax bytes keep their data in the node (one key per small file);
// larger files keep it in chunks of kChunkSize bytes, so a 4 KiB write into a 1 GiB file
// rewrites one chunk. A chunk may be shorter than kChunkSize or absent: the missing bytes up
// to the file's size read as zeros (holes).
//
// Why 4 KiB chunks, a page each: a write rewrites every chunk it touches, whole, so a program
// appending 4 KiB and calling fdatasync (a log, a database) logs and syncs about one page per
// write rather than a bigger chunk (docs/decisions.md, "Measured small choices"). Large files
// pay in keys instead (a 1 GiB file is 262,144 chunk keys), which an ordered scan reads back in
// order (FileStore reads a range of chunks with one scan).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "sync/status.h"

namespace kvfs::fusefs {

inline constexpr uint64_t kChunkSize = uint64_t{4} << 10;
inline constexpr uint64_t kInlineMax = 4096;
// st_blksize: the I/O size stdio and cp pick, independent of the chunk size (one FUSE round
// trip per 128 KiB written, not per chunk).
inline constexpr uint64_t kPreferredIoSize = uint64_t{128} << 10;
inline constexpr size_t kMaxNameLength = 255;      // NAME_MAX
inline constexpr size_t kMaxPathLength = 4095;     // PATH_MAX - 1, per store
inline constexpr size_t kMaxSymlinkLength = 4095;  // as Linux
// Extended attributes, per file (docs/decisions.md): a name of at most 255 bytes and a value of
// at most 64 KiB (XATTR_NAME_MAX, XATTR_SIZE_MAX: the kernel refuses more before asking us);
// the names, each with its NUL, fit listxattr's largest buffer (XATTR_LIST_MAX, 64 KiB, so the
// list can always be read whole); names and values together at most 1 MiB. Past either total
// setxattr answers ENOSPC, as ext4 does when a file's attributes fill their block.
inline constexpr size_t kMaxXattrNameLength = 255;
inline constexpr size_t kMaxXattrValueLength = size_t{64} << 10;
inline constexpr size_t kMaxXattrList = size_t{64} << 10;  // sum of (name length + 1)
inline constexpr size_t kMaxXattrTotal = size_t{1} << 20;  // names + values of one file
// Largest file size: chunk indexes stay far from overflow and below what the kernel accepts.
inline constexpr uint64_t kMaxFileSize = uint64_t{1} << 42;  // 4 TiB
inline constexpr uint64_t kRootId = 1;
inline constexpr uint64_t kFirstFreeId = 16;  // ids below are reserved
inline constexpr std::string_view kLayoutVersion = "kvfs-layout 3";
// The layout before xattrs had keys (node versions 1 and 2, xattrs inside the node); read, and
// upgraded by a writable open.
inline constexpr std::string_view kLayoutVersion2 = "kvfs-layout 2";
// The layout before directory link counts (node version 1 only); read, and upgraded by a
// writable open.
inline constexpr std::string_view kLayoutVersion1 = "kvfs-layout 1";

// kFifo to kSocket (special files) hold no data: only their type, mode, owner, times and (for
// devices) rdev; opening one is the kernel's business, never the daemon's.
enum class NodeType : uint8_t {
  kFile = 1,
  kDirectory = 2,
  kSymlink = 3,
  kFifo = 4,
  kCharDevice = 5,
  kBlockDevice = 6,
  kSocket = 7,
};
inline constexpr uint8_t kLastNodeType = 7;
inline constexpr uint64_t kUnknownChunks = UINT64_MAX;
// A FIFO, a device or a socket.
inline bool IsSpecial(NodeType t) { return static_cast<uint8_t>(t) >= 4; }

struct Node {
  NodeType type = NodeType::kFile;
  uint32_t mode = 0;  // permission bits only (07777); the type is `type`
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t id = 0;
  uint64_t size = 0;  // files: data bytes; symlinks: target length; others: 0
  int64_t atime_ns = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  bool data_inline = true;  // files: data in `inline_data`, else in chunks
  // Directories: 2 + subdirectories (0: not counted, a version-1 record); others: their names.
  uint32_t nlink = 1;
  uint64_t rdev = 0;  // character and block devices: the device number
  // Files: the chunk keys it holds (holes hold none), so st_blocks tells the space held;
  // kUnknownChunks in a version-1 record until counted.
  uint64_t chunks = 0;
  // A name record: a stub whose file is the shared record SharedKey(id). In a node FileStore
  // loaded through a stub: the node is the shared record's, and lives at SharedKey(id).
  bool linked = false;
  // Its "X" keys: how many, their names' bytes, their values' bytes.
  uint32_t xattr_count = 0;
  uint32_t xattr_name_bytes = 0;
  uint64_t xattr_value_bytes = 0;
  // A version-1 or -2 record's xattr set, which it holds itself (no "X" keys); always empty in
  // a version-3 record, and never encoded (the layout upgrade moves it to keys first).
  std::map<std::string, std::string> inline_xattrs;
  std::string inline_data;  // inline file data, or the symlink's target

  bool operator==(const Node&) const = default;
};

// Keys. `path` is relative to the store root, '/'-separated, "" for the root itself.
std::string NodeKey(std::string_view path);
std::string ChildrenPrefix(std::string_view dir_path);  // "M" dir "\0"
std::string SubtreePrefix(std::string_view dir_path);   // "M" dir "/" (deeper descendants)
std::string ChunkKey(uint64_t id, uint64_t chunk);
std::string ChunkPrefix(uint64_t id);
std::string OrphanKey(uint64_t id);
std::string SharedKey(uint64_t id);  // "I" <id>
inline constexpr std::string_view kSharedPrefix = "I";
std::string XattrKey(uint64_t id, std::string_view name);  // "X" <id> <name>
std::string XattrPrefix(uint64_t id);                      // "X" <id>
inline constexpr std::string_view kXattrPrefix = "X";
// The file id of an xattr key; InvalidArgument if `key` is none.
Result<uint64_t> IdOfXattrKey(std::string_view key);
// A directory rename moves at most this many descendants' nodes per batch (a delete and a put
// each): a subtree of at most kMoveBatch nodes moves in the rename's one batch, a bigger one
// through a move record ("Y") in batches of at most 2 * kMoveBatch + 1 entries.
inline constexpr size_t kMoveBatch = 512;
inline constexpr std::string_view kMoveKey = "Y";
// The key base of the nodes an exchange parks: "Y" <rest> (layout.h's key list).
inline constexpr std::string_view kStagingBase = "Y";
// A move under way: the descendants of the directory whose node key base is "M" <from> go to
// base "M" <to>; an exchange of two directories is three such moves, `phase` the one under
// way: 0 from's descendants to the staging base, 1 to's to from's base, 2 the staged ones to
// to's base. A rename has phase 0 only.
struct MoveRecord {
  bool exchange = false;
  uint8_t phase = 0;
  std::string from;  // store paths, as NodeKey takes them (never "", the root)
  std::string to;
  bool operator==(const MoveRecord&) const = default;
};
std::string EncodeMove(const MoveRecord& m);
// Corruption on any malformed input (version, kind, phase, lengths, an empty path).
Result<MoveRecord> DecodeMove(std::string_view value);
// The key base of a directory's descendants: "M" <dir>; its subtree is that base followed by
// "\0" (children) or "/" (deeper).
std::string SubtreeBase(std::string_view dir_path);
// A file has at most this many names (ext4's EXT4_LINK_MAX); link(2) past it is EMLINK.
inline constexpr uint32_t kMaxLinks = 65000;
inline constexpr std::string_view kOrphanPrefix = "O";
std::string PurgeKey(uint64_t id);  // "P" <id>
inline constexpr std::string_view kPurgePrefix = "P";
// A purge record's value (the "P" key above).
struct PurgeRecord {
  uint64_t first = 0;     // the first garbage chunk index
  bool truncate = false;  // a truncate's (the file may live; its xattrs are not garbage)
  bool operator==(const PurgeRecord&) const = default;
};
std::string EncodePurgeRecord(const PurgeRecord& r);
// Corruption naming `key` unless `value` is 8 bytes, or 8 bytes and 'T', with a first chunk
// below the largest file's chunk count.
Result<PurgeRecord> DecodePurgeRecord(std::string_view value, std::string_view key);
inline constexpr std::string_view kIdMarkKey = "N";
inline constexpr std::string_view kVersionKey = "V";

// The path a node key stands for (inverse of NodeKey); InvalidArgument if `key` is no node key.
Result<std::string> PathOfNodeKey(std::string_view key);
// The file id of an orphan key.
Result<uint64_t> IdOfOrphanKey(std::string_view key);
// The file id of a purge key.
Result<uint64_t> IdOfPurgeKey(std::string_view key);

std::string JoinPath(std::string_view dir, std::string_view name);  // "" + n = n
std::string_view ParentOf(std::string_view path);                   // "a/b" -> "a", "a" -> ""
std::string_view NameOf(std::string_view path);                     // "a/b" -> "b"

// OK if `name` can be a directory entry: 1..kMaxNameLength bytes (else ENAMETOOLONG), no '/'
// or NUL, not "." or ".." (EINVAL).
Status ValidateName(std::string_view name);

std::string EncodeNode(const Node& node);
// The name record of a file with several names: its type and id, flagged as a stub.
std::string EncodeLinkStub(const Node& node);
// The shared record of a file with several names (`node` without the stub flag).
std::string EncodeShared(const Node& node);
// Corruption naming `key` (which is only used in the message) on any malformed input.
Result<Node> DecodeNode(std::string_view value, std::string_view key);

// A key printable in a message (NUL and binary bytes as \xNN).
std::string EscapeKey(std::string_view key);

std::string EncodeU64(uint64_t v);  // 8 bytes big-endian
Result<uint64_t> DecodeU64(std::string_view bytes, std::string_view key);

}  // namespace kvfs::fusefs
