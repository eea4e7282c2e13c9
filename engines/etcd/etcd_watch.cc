#include "engines/etcd/etcd_watch.h"

#include <curl/curl.h>

#include <nlohmann/json.hpp>
#include <utility>

#include "engines/etcd/etcd_client.h"

namespace kvfs::engines::etcd {
namespace {

using Json = nlohmann::json;

// What one stream's write callback keeps.
struct StreamState {
  const std::string* prefix = nullptr;
  const ChangeFn* fn = nullptr;
  uint64_t* next_revision = nullptr;
  uint64_t* compacted = nullptr;
  std::string buffer;   // bytes of an answer not yet ended by its newline
  bool broken = false;  // an answer asks to end the stream (cancelled, an error, bad JSON)
};

// Hands over the events of one answer, one set per revision. False: the stream must end.
bool HandleAnswer(StreamState* st, const std::string& line) {
  Json j;
  try {
    j = Json::parse(line);
  } catch (const std::exception&) {
    return false;
  }
  if (!j.contains("result")) return false;  // {"error": ...}: the gateway ends the watch
  const Json& r = j["result"];
  if (r.value("canceled", false)) {
    *st->compacted = JsonU64(r, "compact_revision");
    return false;
  }
  if (!r.contains("events") || !r["events"].is_array()) return true;
  ChangeSet set;
  auto flush = [&] {
    if (set.revision == 0) return;
    if (!set.changes.empty()) (*st->fn)(set);
    *st->next_revision = set.revision + 1;
    set = ChangeSet();
  };
  for (const Json& e : r["events"]) {
    if (!e.contains("kv")) return false;
    const Json& kv = e["kv"];
    const uint64_t revision = JsonU64(kv, "mod_revision");
    if (revision == 0) return false;
    if (revision != set.revision) flush();
    set.revision = revision;
    auto key = FromBase64(kv.value("key", std::string()));
    if (!key.ok() || !key->starts_with(*st->prefix)) return false;
    if (key->size() == st->prefix->size()) continue;  // the sequence key: not a store key
    KeyChange c;
    c.key = key->substr(st->prefix->size());
    c.deleted = e.value("type", std::string()) == "DELETE";
    if (!c.deleted && kv.contains("value")) {
      auto v = FromBase64(kv["value"].get<std::string>());
      if (!v.ok()) return false;
      c.value = std::move(*v);
    }
    if (e.contains("prev_kv")) {
      const Json& p = e["prev_kv"];
      std::string prev;
      if (p.contains("value")) {
        auto v = FromBase64(p["value"].get<std::string>());
        if (!v.ok()) return false;
        prev = std::move(*v);
      }
      c.previous = std::move(prev);
    }
    set.changes.push_back(std::move(c));
  }
  flush();
  return true;
}

size_t OnData(char* data, size_t size, size_t n, void* user) {
  auto* st = static_cast<StreamState*>(user);
  st->buffer.append(data, size * n);
  size_t start = 0;
  for (size_t nl = st->buffer.find('\n'); nl != std::string::npos;
       nl = st->buffer.find('\n', start)) {
    const std::string line = st->buffer.substr(start, nl - start);
    start = nl + 1;
    if (line.find_first_not_of(" \r\t") == std::string::npos) continue;
    if (!HandleAnswer(st, line)) {
      st->broken = true;
      return 0;  // ends the transfer (CURLE_WRITE_ERROR)
    }
  }
  st->buffer.erase(0, start);
  return size * n;
}

}  // namespace

EtcdWatcher::EtcdWatcher(WatchSettings settings, ChangeFn fn)
    : settings_(std::move(settings)), fn_(std::move(fn)) {
  curl_global_init(CURL_GLOBAL_DEFAULT);  // the client did it already; counted, harmless
  multi_ = curl_multi_init();
  thread_ = std::thread([this] { Run(); });
}

EtcdWatcher::~EtcdWatcher() {
  Stop();
  if (multi_ != nullptr) curl_multi_cleanup(static_cast<CURLM*>(multi_));
}

void EtcdWatcher::Stop() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
    cv_.SignalAll();
  }
  if (multi_ != nullptr) curl_multi_wakeup(static_cast<CURLM*>(multi_));
  if (thread_.joinable()) thread_.join();
}

void EtcdWatcher::DropConnection() {
  {
    MutexLock lock(&mu_);
    drop_ = true;
  }
  curl_multi_wakeup(static_cast<CURLM*>(multi_));
}

std::string EtcdWatcher::endpoint() const {
  MutexLock lock(&mu_);
  return endpoint_;
}

void EtcdWatcher::Run() {
  uint64_t next = settings_.start_revision;
  const size_t n = settings_.endpoints.size();
  size_t index = 0;
  size_t failures = 0;  // streams in a row that broke without handing anything over
  while (true) {
    {
      MutexLock lock(&mu_);
      if (stop_) return;
    }
    const uint64_t before = next;
    uint64_t compacted = 0;
    Stream(settings_.endpoints[index], &next, &compacted);
    {
      MutexLock lock(&mu_);
      if (stop_) return;
    }
    if (compacted > 0) {
      // The history from `next` on is gone: everything may have changed up to the compaction;
      // the watch goes on from there.
      ChangeSet all;
      all.everything = true;
      all.revision = compacted;
      fn_(all);
      next = compacted;
      failures = 0;
      continue;
    }
    failures = next == before ? failures + 1 : 0;
    index = (index + 1) % n;
    if (failures >= n) {
      failures = 0;
      MutexLock lock(&mu_);
      // A retry loop's pause, cut short by Stop.
      if (!stop_) cv_.WaitUntil(std::chrono::steady_clock::now() + settings_.retry_pause);
    }
  }
}

void EtcdWatcher::Stream(const std::string& endpoint, uint64_t* next_revision,
                         uint64_t* compacted) {
  CURLM* multi = static_cast<CURLM*>(multi_);
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return;
  const Json req = {{"create_request",
                     {{"key", Base64(settings_.prefix)},
                      {"range_end", Base64(PrefixEnd(settings_.prefix))},
                      {"start_revision", std::to_string(*next_revision)},
                      {"prev_kv", true}}}};
  const std::string body = req.dump();
  const std::string url = endpoint + "/v3/watch";
  StreamState st;
  st.prefix = &settings_.prefix;
  st.fn = &fn_;
  st.next_revision = next_revision;
  st.compacted = compacted;
  struct curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, "Content-Type: application/json");
  headers = curl_slist_append(headers, "Expect:");
  // etcd's "require leader" (clientv3.WithRequireLeader): a member cut off from its leader
  // cancels the watch rather than serving a stream that no longer moves.
  headers = curl_slist_append(headers, "Grpc-Metadata-hasleader: true");
  std::string token;
  if (settings_.token) {
    Result<std::string> t = settings_.token(refused_token_);
    if (!t.ok()) {  // the next attempt asks again
      curl_slist_free_all(headers);
      curl_easy_cleanup(curl);
      return;
    }
    token = *t;
    if (!token.empty()) headers = curl_slist_append(headers, ("Authorization: " + token).c_str());
  }
  if (!settings_.ca_file.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, settings_.ca_file.c_str());
  if (!settings_.cert_file.empty()) {
    curl_easy_setopt(curl, CURLOPT_SSLCERT, settings_.cert_file.c_str());
    curl_easy_setopt(curl, CURLOPT_SSLKEY, settings_.key_file.c_str());
  }
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_POST, 1L);
  curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, OnData);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &st);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(curl, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(curl, CURLOPT_TCP_KEEPIDLE, 10L);
  curl_easy_setopt(curl, CURLOPT_TCP_KEEPINTVL, 5L);
  curl_multi_add_handle(multi, curl);
  {
    MutexLock lock(&mu_);
    endpoint_ = endpoint;
    drop_ = false;
  }
  connections_.fetch_add(1);
  while (true) {
    int running = 0;
    if (curl_multi_perform(multi, &running) != CURLM_OK) break;
    if (running == 0) break;  // the stream ended: broken, refused, or ended by OnData
    {
      MutexLock lock(&mu_);
      if (stop_ || drop_) break;
    }
    int ready = 0;
    curl_multi_poll(multi, nullptr, 0, 1000, &ready);
  }
  {
    MutexLock lock(&mu_);
    endpoint_.clear();
  }
  long http = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &http);
  refused_token_ = http == 401 ? token : std::string();
  curl_multi_remove_handle(multi, curl);
  curl_easy_cleanup(curl);
  curl_slist_free_all(headers);
}

}  // namespace kvfs::engines::etcd
