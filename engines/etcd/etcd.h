// The etcd engine: a store whose keys live in an etcd (3.4) cluster under a key prefix, so that
// several stores, and several kvfs daemons, can share one cluster.
//
// Configured by the store's engine options ([store.options] in the config file):
//   endpoints  = "https://10.0.0.1:2379,https://10.0.0.2:2379"   required: client URLs
//   prefix     = "kvfs/home/"    required: every key of the store lives under it
//   timeout_ms = "5000"          optional: 100..600000, default 5000
//   ca_file    = "/etc/kvfs/etcd-ca.pem"   optional (https): the CA the members' certificates
//                                           are checked against; default the system's
//   cert_file, key_file          optional (https), both or neither: a client certificate and
//                                its key, for a cluster started with --client-cert-auth
//   user, password               optional, both or neither: etcd auth (a token from
//                                /v3/auth/authenticate, renewed when the cluster forgets it)
//
// Mapping onto the Engine contract (engines/engine.h):
// - Apply is one etcd txn (atomic: whole or not at all), acknowledged once the cluster has
//   committed it, which etcd does only once a quorum of members has it in their fsynced raft
//   logs. So every acknowledged batch is already durable; Sync has nothing left to wait for
//   and returns OK unless the store has failed. The sync modes change nothing.
// - Get is a range of one key, Scan ranges with paging; both linearizable (etcd's default).
// - A batch over the cluster's --max-request-bytes or --max-txn-ops is refused whole with EFBIG:
//   nothing is applied, the store goes on. A full database quota ("mvcc: database space
//   exceeded") is ENOSPC, and its outcome is unknown: etcd applies the txn that crosses the
//   quota whole, then answers with that error (later ones it refuses up front). So the store
//   latches it as below: later writes are refused, with ENOSPC, until it is reopened.
// - Every batch's txn also compares the store's sequence key (the prefix itself: the empty
//   key, which no batch, Get or Scan names) against the token this engine last put there, and
//   puts a new one. So one engine writes a store at a time: one whose compare fails because
//   another engine wrote since is fenced off, refusing every later write and sync with EROFS
//   naming the prefix. An engine reads the key at open and takes over with its first write.
//   Write txns go one at a time (each compares what the previous one put); batches applied
//   meanwhile from other threads queue and go out together as the next txn (group commit).
// - Every call has a deadline (timeout_ms). A read that misses it is EIO. A write that misses it
//   may still be applied later by the cluster (its outcome is unknown): EIO, and the next write
//   or sync first settles it with a txn that moves the sequence key past the value the unknown
//   one compares (until that gets an answer, writes and syncs are EIO, nothing sent). Found
//   not applied, it never can be, and writes go on; found applied after its caller was told
//   EIO, the store latches the failure (store_failure.h) and refuses writes until reopened,
//   since its caller's view may be stale. docs/decisions.md has the argument.
// - Compact compacts the cluster's revision history up to now (it frees no space by itself:
//   the cluster's operator defragments).
// - SubscribeChanges is a change feed from an etcd watch of the prefix (etcd_watch.h): every
//   change committed after the open, by any writer, this engine's own too; none is missed
//   across a reconnect, and a compacted gap is reported as an `everything` set.
// - The data directory holds only the LOCK: one open per directory, as for every engine.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "sync/status.h"

namespace kvfs::engines {
class Engine;
}  // namespace kvfs::engines

namespace kvfs::engines::etcd {

inline constexpr char kEndpointsKey[] = "endpoints";
inline constexpr char kPrefixKey[] = "prefix";
inline constexpr char kTimeoutKey[] = "timeout_ms";
inline constexpr char kCaFileKey[] = "ca_file";
inline constexpr char kCertFileKey[] = "cert_file";
inline constexpr char kKeyFileKey[] = "key_file";
inline constexpr char kUserKey[] = "user";
inline constexpr char kPasswordKey[] = "password";
inline constexpr int64_t kDefaultTimeoutMs = 5000;
inline constexpr int64_t kMinTimeoutMs = 100;
inline constexpr int64_t kMaxTimeoutMs = 600000;

struct EtcdSettings {
  std::vector<std::string> endpoints;
  std::string prefix;
  std::chrono::milliseconds timeout{kDefaultTimeoutMs};
  std::string ca_file, cert_file, key_file;  // TLS; "" = none
  std::string user, password;                // etcd auth; "" = none
};

// The option keys the engine takes, for the config's EngineOptionKeys.
std::vector<std::string> OptionKeys();

// Tests: the change feed of an etcd engine that has a subscriber. DropWatchConnection ends its
// stream as a broken connection would (false if there is none); WatchEndpoint is the member it
// streams from now ("" if none); WatchConnections counts the streams opened.
bool DropWatchConnection(Engine* engine);
std::string WatchEndpoint(Engine* engine);
uint64_t WatchConnections(Engine* engine);

// Reads the engine options; kInvalidArgument naming the option on anything missing or wrong.
Result<EtcdSettings> ParseSettings(const std::map<std::string, std::string, std::less<>>& options);

}  // namespace kvfs::engines::etcd
