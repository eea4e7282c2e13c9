// EtcdClient: etcd's v3 API through its JSON gateway (POST /v3/kv/range, /v3/kv/txn, ... on a
// member's client URL; keys and values base64), over libcurl, with failover between endpoints
// and one deadline per call. docs/decisions.md says why the gateway and not native gRPC.
//
// Every call either answers within its deadline (Settings::timeout) or fails:
// - TLS trouble that another attempt cannot mend (the member's certificate not trusted by the
//   CA file, a CA, certificate or key file that cannot be used) is kIOError (EIO) at once,
//   naming the endpoint and the file;
// - the cluster answered with a refusal: a request over --max-request-bytes or --max-txn-ops
//   is EFBIG (kInvalidArgument), nothing applied; "database space exceeded" is kNoSpace
//   (ENOSPC), which etcd also answers to the txn it applied that crossed the quota; any other
//   refusal kInvalidArgument or kIOError naming etcd's words;
// - no member answered within the deadline, or none could be reached: kIOError (EIO); with
//   Outcome::kUnknown if a write may have been sent (the caller cannot know whether it landed:
//   etcd applies a txn whole or not at all, but may apply it after the deadline).
// Transient trouble (a member down, refusing connections, resetting them, "no leader",
// "leader changed", etcd's own request timeout) is retried on the next endpoint until the
// deadline. Retrying a write is safe for the engine: a txn of puts and deletes is idempotent,
// and the engine's caller is still waiting for it (docs/decisions.md).
//
// Thread safety: every method may be called from any number of threads at once. Each call
// takes an idle libcurl handle (its kept-alive connection) from a pool, or makes one.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "sync/mutex.h"
#include "sync/status.h"

namespace kvfs::engines::etcd {

struct ClientSettings {
  std::vector<std::string> endpoints;  // "http://host:port" or "https://...", at least one
  std::chrono::milliseconds timeout{5000};
  // TLS (https endpoints): the CA file the members' certificates are checked against ("": the
  // system's), and a client certificate and its key (PEM files) for a cluster that asks for one.
  std::string ca_file, cert_file, key_file;
  // etcd auth: with a user, every call carries a token from /v3/auth/authenticate in its
  // Authorization header; a token the cluster no longer knows (its TTL passed, the members
  // restarted) is replaced by authenticating again, within the same call's deadline.
  std::string user, password;
};

// Whether a failed write may have been applied.
enum class Outcome { kNotApplied, kUnknown };

class EtcdClient {
 public:
  explicit EtcdClient(ClientSettings settings);
  ~EtcdClient();
  EtcdClient(const EtcdClient&) = delete;
  EtcdClient& operator=(const EtcdClient&) = delete;

  // POSTs `body` (JSON) to `path` ("/v3/kv/range") and returns the response body (JSON) of the
  // first member that answers 200. `is_write` only changes *outcome on failure.
  Result<std::string> Call(std::string_view path, const std::string& body, bool is_write,
                           Outcome* outcome = nullptr);

  const ClientSettings& settings() const { return settings_; }
  // The auth token for a request made elsewhere (the change feed's stream): "" without a user,
  // else the current token, or a new one if there is none or it is still `refused`.
  Result<std::string> AuthToken(const std::string& refused);

 private:
  struct Handle;
  using Deadline = std::chrono::steady_clock::time_point;
  std::unique_ptr<Handle> TakeHandle();
  void ReturnHandle(std::unique_ptr<Handle> h);
  // One call with `token` ("" for none) in its Authorization header, until `deadline`;
  // *token_refused set if a member refused the token (nothing applied on that attempt).
  Result<std::string> CallWithToken(std::string_view path, const std::string& body, bool is_write,
                                    Outcome* outcome, const std::string& token, Deadline deadline,
                                    bool* token_refused);
  // The token to use: the current one, or a new one from /v3/auth/authenticate if there is
  // none or it is still `refused`.
  Result<std::string> Token(const std::string& refused, Deadline deadline);

  const ClientSettings settings_;
  // The endpoint the last successful call used; calls start there.
  std::atomic<size_t> preferred_{0};
  Mutex mu_;
  std::vector<std::unique_ptr<Handle>> idle_ ABSL_GUARDED_BY(mu_);
  // etcd auth: one authentication at a time; the token it got.
  Mutex auth_mu_;
  std::string token_ ABSL_GUARDED_BY(auth_mu_);
};

// The base64 (standard alphabet, padded) of `bytes`, and back; kInvalidArgument on bad input.
std::string Base64(std::string_view bytes);
Result<std::string> FromBase64(std::string_view text);
// The smallest key greater than every key starting with `prefix` ("\0" = no end: etcd reads
// that as "every key >= key"), for a range request's range_end.
std::string PrefixEnd(std::string prefix);
// A 64-bit integer field of a gateway answer, which writes them as strings; 0 if absent.
uint64_t JsonU64(const nlohmann::json& j, const char* field);

}  // namespace kvfs::engines::etcd
