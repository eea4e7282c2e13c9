#include "engines/etcd/etcd_client.h"

#include <absl/strings/escaping.h>
#include <curl/curl.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <utility>

namespace kvfs::engines::etcd {
namespace {

using Clock = std::chrono::steady_clock;

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

size_t Append(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

// What to do about one attempt's answer.
enum class Verdict {
  kDone,        // a definite answer (success or refusal)
  kNextMember,  // transient: try the next endpoint while the deadline allows
  kBadToken     // the auth token is unknown to the member (expired): authenticate again
};

bool Contains(std::string_view text, std::string_view word) {
  return text.find(word) != std::string_view::npos;
}

// Classifies an error answer of the gateway: {"error": "...", "code": N} (gRPC codes), from
// `url`.
Verdict Classify(const std::string& url, const std::string& body, long http, Status* out) {
  std::string message = body;
  int code = -1;
  try {
    const nlohmann::json j = nlohmann::json::parse(body);
    if (j.contains("message") && j["message"].is_string()) message = j["message"];
    if (j.contains("error") && j["error"].is_string()) message = j["error"];
    if (j.contains("code") && j["code"].is_number_integer()) code = j["code"];
  } catch (const std::exception&) {
    // Not JSON: keep the text.
  }
  const std::string what = "etcd: " + url + ": " + message + " (HTTP " + std::to_string(http) + ")";
  if (Contains(message, "invalid auth token")) {
    *out = Status::IOError(what, EACCES);
    return Verdict::kBadToken;
  }
  if (Contains(message, "user name is empty")) {
    *out = Status::IOError(
        what + "; the cluster has auth enabled: set the store's user and password", EACCES);
    return Verdict::kDone;
  }
  if (Contains(message, "CommonName of client")) {
    *out = Status::InvalidArgument(
        what +
        "; with auth enabled, etcd's JSON gateway refuses a client certificate that has "
        "a CommonName: use one without (the user and password say who the client is)");
    return Verdict::kDone;
  }
  if (Contains(message, "authentication failed")) {
    *out = Status::IOError(what + "; check the store's user and password", EACCES);
    return Verdict::kDone;
  }
  if (Contains(message, "database space exceeded")) {
    *out = Status::NoSpace(what +
                           "; the cluster's database quota is full "
                           "(compact and defragment it, or raise --quota-backend-bytes)");
    return Verdict::kDone;
  }
  if (Contains(message, "request is too large") || Contains(message, "larger than max")) {
    *out = Status(StatusCode::kInvalidArgument,
                  what + "; the batch is over the cluster's --max-request-bytes", EFBIG);
    return Verdict::kDone;
  }
  if (Contains(message, "too many operations in txn")) {
    *out = Status(StatusCode::kInvalidArgument,
                  what + "; the batch has more operations than the cluster's --max-txn-ops", EFBIG);
    return Verdict::kDone;
  }
  // Unavailable (14), DeadlineExceeded (4), Aborted (10), Unknown (2) as etcd uses them for
  // leader trouble and its own proposal timeout: another member (or the same, later) may serve.
  if (code == 14 || code == 4 || code == 10 || http == 503 || http == 502 || http == 504 ||
      Contains(message, "leader") || Contains(message, "timed out") ||
      Contains(message, "not capable") || Contains(message, "stopped")) {
    *out = Status::IOError(what);
    return Verdict::kNextMember;
  }
  if (code == 3 || http == 400) {
    *out = Status::InvalidArgument(what);
  } else if (code == 7 || code == 16) {
    *out = Status::IOError(what, EACCES);
  } else {
    *out = Status::IOError(what);
  }
  return Verdict::kDone;
}

}  // namespace

struct EtcdClient::Handle {
  Handle() : curl(curl_easy_init()) {}
  ~Handle() {
    if (curl != nullptr) curl_easy_cleanup(curl);
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  CURL* curl;
};

EtcdClient::EtcdClient(ClientSettings settings) : settings_(std::move(settings)) { GlobalInit(); }

EtcdClient::~EtcdClient() = default;

std::unique_ptr<EtcdClient::Handle> EtcdClient::TakeHandle() {
  {
    MutexLock lock(&mu_);
    if (!idle_.empty()) {
      auto h = std::move(idle_.back());
      idle_.pop_back();
      return h;
    }
  }
  return std::make_unique<Handle>();
}

void EtcdClient::ReturnHandle(std::unique_ptr<Handle> h) {
  MutexLock lock(&mu_);
  if (idle_.size() < 64) idle_.push_back(std::move(h));
}

Result<std::string> EtcdClient::Call(std::string_view path, const std::string& body, bool is_write,
                                     Outcome* outcome) {
  if (outcome != nullptr) *outcome = Outcome::kNotApplied;
  const Deadline deadline = Clock::now() + settings_.timeout;
  if (settings_.user.empty()) {
    return CallWithToken(path, body, is_write, outcome, "", deadline, nullptr);
  }
  KVFS_ASSIGN_OR_RETURN(std::string token, Token("", deadline));
  bool refused = false;
  auto answer = CallWithToken(path, body, is_write, outcome, token, deadline, &refused);
  if (!refused) return answer;
  // The token expired (its TTL passed, or the members restarted and forgot it): a new one,
  // and the call again, within the same deadline. The refused attempt applied nothing.
  KVFS_ASSIGN_OR_RETURN(token, Token(token, deadline));
  return CallWithToken(path, body, is_write, outcome, token, deadline, nullptr);
}

Result<std::string> EtcdClient::AuthToken(const std::string& refused) {
  if (settings_.user.empty()) return std::string();
  return Token(refused, std::chrono::steady_clock::now() + settings_.timeout);
}

Result<std::string> EtcdClient::Token(const std::string& refused, Deadline deadline) {
  MutexLock lock(&auth_mu_);
  if (!token_.empty() && token_ != refused) return token_;
  const nlohmann::json req = {{"name", settings_.user}, {"password", settings_.password}};
  auto answer = CallWithToken("/v3/auth/authenticate", req.dump(), /*is_write=*/false, nullptr, "",
                              deadline, nullptr);
  if (!answer.ok()) {
    return answer.status().WithContext("etcd: authenticating as user \"" + settings_.user + "\"");
  }
  std::string token;
  try {
    const nlohmann::json j = nlohmann::json::parse(*answer);
    if (j.contains("token") && j["token"].is_string()) token = j["token"];
  } catch (const std::exception&) {
    // Left empty: refused below.
  }
  if (token.empty()) {
    return Status::IOError("etcd: authenticating as user \"" + settings_.user +
                           "\": an answer without a token");
  }
  token_ = token;
  return token;
}

Result<std::string> EtcdClient::CallWithToken(std::string_view path, const std::string& body,
                                              bool is_write, Outcome* outcome,
                                              const std::string& token, Deadline deadline,
                                              bool* token_refused) {
  // An attempt may take a third of the deadline (at least 200 ms), so that a member that
  // accepts connections but never answers (stopped, or cut off from the others) leaves time
  // for the next one.
  const auto attempt_cap =
      std::max<std::chrono::milliseconds>(settings_.timeout / 3, std::chrono::milliseconds(200));
  auto handle = TakeHandle();
  if (handle->curl == nullptr) return Status::IOError("etcd: curl_easy_init failed");
  CURL* curl = handle->curl;
  const size_t n = settings_.endpoints.size();
  size_t index = preferred_.load(std::memory_order_relaxed) % n;
  Status last = Status::IOError("etcd: no endpoint tried");
  int attempts = 0;
  while (true) {
    const auto now = Clock::now();
    if (now >= deadline && attempts > 0) break;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
    const long ms = std::max<long>(1, std::min(left, attempt_cap).count());
    const std::string url = settings_.endpoints[index] + std::string(path);
    std::string response;
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, Append);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &response);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, ms);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, ms);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_TCP_NODELAY, 1L);
    if (!settings_.ca_file.empty())
      curl_easy_setopt(curl, CURLOPT_CAINFO, settings_.ca_file.c_str());
    if (!settings_.cert_file.empty()) {
      curl_easy_setopt(curl, CURLOPT_SSLCERT, settings_.cert_file.c_str());
      curl_easy_setopt(curl, CURLOPT_SSLKEY, settings_.key_file.c_str());
    }
    char error[CURL_ERROR_SIZE] = {0};
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error);
    // No "Expect: 100-continue" round trip for big bodies.
    struct curl_slist* headers = nullptr;
    headers = curl_slist_append(headers, "Content-Type: application/json");
    headers = curl_slist_append(headers, "Expect:");
    if (!token.empty()) headers = curl_slist_append(headers, ("Authorization: " + token).c_str());
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    const CURLcode rc = curl_easy_perform(curl);
    curl_slist_free_all(headers);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, nullptr);
    ++attempts;
    if (rc == CURLE_OK) {
      long http = 0;
      curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &http);
      if (http == 200) {
        preferred_.store(index, std::memory_order_relaxed);
        ReturnHandle(std::move(handle));
        return response;
      }
      const Verdict v = Classify(url, response, http, &last);
      if (v == Verdict::kDone || (v == Verdict::kBadToken && token_refused != nullptr)) {
        if (v == Verdict::kBadToken) *token_refused = true;
        ReturnHandle(std::move(handle));
        return last;
      }
      // A write a member refused for leader trouble may still have been proposed.
      if (is_write && outcome != nullptr) *outcome = Outcome::kUnknown;
    } else if (rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE ||
               rc == CURLE_SSL_CERTPROBLEM || rc == CURLE_SSL_CRL_BADFILE) {
      // TLS that no other attempt mends: the member's certificate is not one the CA file
      // vouches for, or a file of ours cannot be used. Nothing was sent.
      std::string files = "ca_file " + (settings_.ca_file.empty() ? std::string("(the system's)")
                                                                  : settings_.ca_file);
      if (!settings_.cert_file.empty()) {
        files += ", cert_file " + settings_.cert_file + ", key_file " + settings_.key_file;
      }
      ReturnHandle(std::move(handle));
      std::string message = "etcd: " + url + ": TLS: " + curl_easy_strerror(rc);
      if (error[0] != 0) {
        message += " (";
        message += error;
        message += ")";
      }
      message += "; with " + files;
      return Status(StatusCode::kIOError, std::move(message), EIO);
    } else {
      last = Status::IOError("etcd: " + url + ": " + curl_easy_strerror(rc) +
                             (error[0] != 0 ? std::string(" (") + error + ")" : std::string()));
      const bool never_sent = rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
                              rc == CURLE_COULDNT_RESOLVE_PROXY;
      if (is_write && !never_sent && outcome != nullptr) *outcome = Outcome::kUnknown;
    }
    index = (index + 1) % n;
    if (index == preferred_.load(std::memory_order_relaxed) % n) {
      // Every member tried once: pause briefly before the next round (a retry loop against a
      // cluster electing a leader, not a wait for another thread).
      const auto pause = std::min<Clock::duration>(
          std::chrono::milliseconds(50),
          std::max<Clock::duration>(deadline - Clock::now(), Clock::duration{0}));
      std::this_thread::sleep_for(pause);
    }
  }
  // The handle's connection may be half-used: drop it.
  return Status::IOError("etcd: no member answered within " +
                         std::to_string(settings_.timeout.count()) +
                         " ms (last: " + last.message() + ")");
}

std::string PrefixEnd(std::string prefix) {
  while (!prefix.empty() && static_cast<unsigned char>(prefix.back()) == 0xff) prefix.pop_back();
  if (prefix.empty()) return std::string(1, '\0');
  prefix.back() = static_cast<char>(static_cast<unsigned char>(prefix.back()) + 1);
  return prefix;
}

uint64_t JsonU64(const nlohmann::json& j, const char* field) {
  if (!j.is_object() || !j.contains(field)) return 0;
  const nlohmann::json& v = j[field];
  if (v.is_number_unsigned() || v.is_number_integer()) return v.get<uint64_t>();
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    uint64_t out = 0;
    std::from_chars(s.data(), s.data() + s.size(), out);
    return out;
  }
  return 0;
}

std::string Base64(std::string_view bytes) {
  return absl::Base64Escape(absl::string_view(bytes.data(), bytes.size()));
}

Result<std::string> FromBase64(std::string_view text) {
  std::string out;
  if (!absl::Base64Unescape(absl::string_view(text.data(), text.size()), &out)) {
    return Status::InvalidArgument("etcd: bad base64 in an answer");
  }
  return out;
}

}  // namespace kvfs::engines::etcd
