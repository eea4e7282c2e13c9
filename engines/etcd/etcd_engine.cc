// The etcd engine (etcd.h): batches as txns, reads as linearizable ranges, through EtcdClient.
#include <absl/container/flat_hash_map.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <deque>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "engines/engine.h"
#include "engines/engine_counters.h"
#include "engines/engine_open.h"
#include "engines/etcd/etcd.h"
#include "engines/etcd/etcd_client.h"
#include "engines/etcd/etcd_watch.h"
#include "engines/store_failure.h"
#include "sync/mutex.h"

namespace kvfs::engines {
namespace etcd {
namespace {

using Json = nlohmann::json;

// Keys of a range page: small enough that a page of 1 MiB values stays a modest answer.
constexpr int kPageKeys = 1000;
constexpr int kPageValues = 64;
// A group of batches merged into one txn stays within etcd's default --max-txn-ops (128) and
// well under its default --max-request-bytes (1.5 MiB); a batch bigger alone goes alone.
constexpr size_t kGroupOps = 128;
constexpr size_t kGroupBytes = size_t{512} * 1024;

std::string Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return std::string(s);
}

Result<Json> ParseAnswer(const std::string& body) {
  try {
    return Json::parse(body);
  } catch (const std::exception& e) {
    return Status::IOError(std::string("etcd: an answer that is not JSON: ") + e.what());
  }
}

class EtcdEngine final : public Engine {
 public:
  EtcdEngine(sync::FileSystem* fs, std::string dir, EngineOptions options, EtcdSettings settings)
      : fs_(fs),
        dir_(std::move(dir)),
        options_(std::move(options)),
        settings_(std::move(settings)),
        client_(ClientSettings{settings_.endpoints, settings_.timeout, settings_.ca_file,
                               settings_.cert_file, settings_.key_file, settings_.user,
                               settings_.password}),
        failure_("etcd store " + dir_),
        writer_id_(NewWriterId()) {}

  Status Open() {
    KVFS_ASSIGN_OR_RETURN(lock_, OpenDataDir(fs_, dir_, name(), options_.read_only));
    // One linearizable read: the cluster is there and has a quorum, or the open fails now
    // (naming the endpoints) rather than at the first write.
    Json req = {{"key", Base64(settings_.prefix)},
                {"range_end", Base64(PrefixEnd(settings_.prefix))},
                {"count_only", true}};
    auto answer = client_.Call("/v3/kv/range", req.dump(), /*is_write=*/false);
    if (!answer.ok()) {
      std::string eps;
      for (const std::string& e : settings_.endpoints) eps += (eps.empty() ? "" : ",") + e;
      const Status& st = answer.status();
      const char* why = st.message().find(": TLS: ") != std::string::npos
                            ? " cannot be reached over TLS"
                        : st.sys_errno() == EACCES || st.code() == StatusCode::kInvalidArgument
                            ? " refuses the store"
                            : " does not answer";
      return st.WithContext("etcd store " + dir_ + ": cluster " + eps + why);
    }
    KVFS_ASSIGN_OR_RETURN(Json j, ParseAnswer(*answer));
    // The change feed starts after the revision this read saw: whatever a subscriber read
    // since is at least as new.
    open_revision_ = j.contains("header") ? JsonU64(j["header"], "revision") : 0;
    // The sequence key as it is now: this engine's first write compares against it, and so
    // takes the store over from any earlier writer (whose next write then fails its compare).
    const Json seq_req = {{"key", Base64(SeqKey())}};
    auto seq = client_.Call("/v3/kv/range", seq_req.dump(), /*is_write=*/false);
    if (!seq.ok()) return seq.status().WithContext("etcd store " + dir_ + ": sequence key");
    KVFS_ASSIGN_OR_RETURN(Json sj, ParseAnswer(*seq));
    uint64_t keys = JsonU64(j, "count");
    if (sj.contains("kvs") && !sj["kvs"].empty()) {
      KVFS_ASSIGN_OR_RETURN(std::string v, ValueOf(sj["kvs"][0]));
      MutexLock lock(&write_mu_);
      expected_ = std::move(v);
      if (keys > 0) --keys;
    }
    recovery_.AddFact("keys", keys);
    return Status::OK();
  }

  std::string_view name() const override { return "etcd"; }

  Result<std::string> Get(std::string_view key) override {
    EngineCounters::Add(counters_.gets, 1);
    if (!IsValidKey(key)) return counters_.CountError(InvalidKeyError(key));
    const Json req = {{"key", Base64(Key(key))}};
    auto answer = client_.Call("/v3/kv/range", req.dump(), /*is_write=*/false);
    if (!answer.ok()) return counters_.CountError(answer.status());
    auto j = ParseAnswer(*answer);
    if (!j.ok()) return counters_.CountError(j.status());
    if (!j->contains("kvs") || (*j)["kvs"].empty()) {
      return Status::NotFound("etcd store " + dir_ + ": no such key");
    }
    auto value = ValueOf((*j)["kvs"][0]);
    if (!value.ok()) return counters_.CountError(value.status());
    EngineCounters::Add(counters_.bytes_read, value->size());
    return value;
  }

  Status Apply(const WriteBatch& batch) override {
    if (options_.read_only) {
      return counters_.CountError(
          Status::NotSupported("etcd store " + dir_ + " is open read-only"));
    }
    KVFS_RETURN_IF_ERROR(counters_.CountError(failure_.Refusal()));
    std::vector<BatchEntry> entries;
    KVFS_RETURN_IF_ERROR(counters_.CountError(AppendValidEntries(batch, &entries)));
    if (entries.empty()) return Status::OK();
    // Group commit: while a txn is in flight (write_mu_ held), later batches queue; the next
    // holder of write_mu_ sends every queued batch, in queue order, as one txn under one
    // compare, and every caller of the group gets its answer. The caller's entries stay valid
    // while it waits here.
    Queued me;
    me.entries = &entries;
    {
      MutexLock q(&queue_mu_);
      queue_.push_back(&me);
    }
    MutexLock lock(&write_mu_);
    while (true) {
      std::vector<Queued*> group;
      {
        MutexLock q(&queue_mu_);
        if (me.done) return counters_.CountError(me.result);
        // From the front of the queue, in order, within the cluster's default limits (so that
        // merging never makes a txn etcd refuses where each batch alone would pass).
        size_t ops = 0;
        size_t bytes = 0;
        while (!queue_.empty()) {
          Queued* next = queue_.front();
          size_t next_bytes = 0;
          for (const BatchEntry& e : *next->entries) next_bytes += e.key.size() + e.value.size();
          if (!group.empty() &&
              (ops + next->entries->size() > kGroupOps || bytes + next_bytes > kGroupBytes)) {
            break;
          }
          ops += next->entries->size();
          bytes += next_bytes;
          group.push_back(next);
          queue_.pop_front();
        }
      }
      const std::vector<Status> answers = SendGroupLocked(group);
      MutexLock q(&queue_mu_);
      for (size_t i = 0; i < group.size(); ++i) {
        group[i]->result = answers[i];
        group[i]->done = true;
      }
    }
  }

  Status Scan(const ScanOptions& o, const ScanFn& fn) override {
    EngineCounters::Add(counters_.scans, 1);
    const std::string lo = Key(o.prefix);
    std::string from = lo;
    if (!o.start_after.empty()) {
      std::string after = Key(o.start_after);
      after.push_back('\0');
      if (after > from) from = std::move(after);
    }
    const std::string end = PrefixEnd(lo);
    const std::string end64 = Base64(end);
    while (true) {
      Json req = {{"key", Base64(from)},
                  {"range_end", end64},
                  {"limit", o.keys_only ? kPageKeys : kPageValues}};
      if (o.keys_only) req["keys_only"] = true;
      auto answer = client_.Call("/v3/kv/range", req.dump(), /*is_write=*/false);
      if (!answer.ok()) return counters_.CountError(answer.status());
      auto j = ParseAnswer(*answer);
      if (!j.ok()) return counters_.CountError(j.status());
      if (!j->contains("kvs")) return Status::OK();
      std::string last_key;
      for (const Json& kv : (*j)["kvs"]) {
        auto key = FromBase64(kv.value("key", std::string()));
        if (!key.ok()) return counters_.CountError(key.status());
        if (!key->starts_with(settings_.prefix)) {
          return counters_.CountError(
              Status::Corruption("etcd store " + dir_ + ": a key outside its prefix in a range"));
        }
        if (key->size() == settings_.prefix.size()) {  // the sequence key: not a store key
          last_key = std::move(*key);
          continue;
        }
        std::string value;
        if (!o.keys_only) {
          auto v = ValueOf(kv);
          if (!v.ok()) return counters_.CountError(v.status());
          value = std::move(*v);
          EngineCounters::Add(counters_.bytes_read, value.size());
        }
        if (!fn(std::string_view(*key).substr(settings_.prefix.size()), value)) {
          return Status::OK();
        }
        last_key = std::move(*key);
      }
      if (!j->value("more", false) || last_key.empty()) return Status::OK();
      from = last_key;
      from.push_back('\0');
    }
  }

  Status Sync(SyncKind /*kind*/) override {
    EngineCounters::Add(counters_.syncs, 1);
    // Every acknowledged batch is committed, on a quorum's disks: nothing to wait for but an
    // unknown outcome to settle.
    KVFS_RETURN_IF_ERROR(counters_.CountError(failure_.Refusal()));
    if (options_.read_only) return Status::OK();
    MutexLock lock(&write_mu_);
    return counters_.CountError(SettleLocked());
  }

  Status Compact() override {
    if (options_.read_only) return Status::OK();
    const Json probe = {{"key", Base64(settings_.prefix)}, {"count_only", true}};
    auto answer = client_.Call("/v3/kv/range", probe.dump(), /*is_write=*/false);
    if (!answer.ok()) return counters_.CountError(answer.status());
    KVFS_ASSIGN_OR_RETURN(Json j, ParseAnswer(*answer));
    const uint64_t revision = j.contains("header") ? JsonU64(j["header"], "revision") : 0;
    if (revision == 0) return Status::OK();
    const Json req = {{"revision", std::to_string(revision)}};
    auto done = client_.Call("/v3/kv/compaction", req.dump(), /*is_write=*/false);
    if (!done.ok() && done.status().message().find("compacted") == std::string::npos) {
      return counters_.CountError(done.status());
    }
    EngineCounters::Add(counters_.compactions, 1);
    return Status::OK();
  }

  EngineStats stats() const override {
    EngineStats s;
    counters_.Fill(&s);
    return s;
  }

  Status Close() override {
    std::unique_ptr<EtcdWatcher> watcher;
    {
      MutexLock lock(&watch_mu_);
      watcher = std::move(watcher_);
    }
    if (watcher != nullptr) watcher->Stop();
    lock_.reset();
    return Status::OK();
  }

  ~EtcdEngine() override {
    MutexLock lock(&watch_mu_);
    if (watcher_ != nullptr) watcher_->Stop();
  }

  Status SubscribeChanges(ChangeFn fn) override {
    MutexLock lock(&watch_mu_);
    if (watcher_ != nullptr) {
      return Status::InvalidArgument("etcd store " + dir_ + ": its changes have a subscriber");
    }
    WatchSettings ws;
    ws.endpoints = settings_.endpoints;
    ws.prefix = settings_.prefix;
    ws.start_revision = open_revision_ + 1;
    ws.ca_file = settings_.ca_file;
    ws.cert_file = settings_.cert_file;
    ws.key_file = settings_.key_file;
    ws.token = [this](const std::string& refused) { return client_.AuthToken(refused); };
    watcher_ = std::make_unique<EtcdWatcher>(std::move(ws), std::move(fn));
    return Status::OK();
  }

  // Tests (etcd.h): the change feed's watcher, or null.
  EtcdWatcher* watcher() {
    MutexLock lock(&watch_mu_);
    return watcher_.get();
  }

 private:
  // The answer to one batch's txn.
  struct TxnResult {
    Status status;                    // not OK: the call failed (refused, or no answer in time)
    bool unknown = false;             // with a failed call: the txn may have been applied
    bool succeeded = false;           // with OK: the compare held and the txn applied
    std::optional<std::string> seen;  // with OK and !succeeded: the sequence key's value
  };

  static std::string NewWriterId() {
    std::random_device rd;
    std::string id;
    constexpr char kHex[] = "0123456789abcdef";
    for (int i = 0; i < 4; ++i) {
      const uint32_t w = rd();
      for (int b = 0; b < 8; ++b) id.push_back(kHex[(w >> (4 * b)) & 0xf]);
    }
    return id;
  }

  // The store's sequence key: the prefix itself, i.e. the empty key, which no batch, Get or
  // Scan can name (IsValidKey refuses it; Scan skips it).
  const std::string& SeqKey() const { return settings_.prefix; }

  std::string NextToken() ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_) {
    return writer_id_ + "/" + std::to_string(++counter_);
  }

  // One txn: if the sequence key holds what this engine last put (expected_), apply `ops` and
  // put `next` there; else apply nothing and read the key.
  TxnResult SendTxn(Json ops, const std::string& next) ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_) {
    const std::string seq64 = Base64(SeqKey());
    Json compare;
    if (expected_.has_value()) {
      compare = {
          {"key", seq64}, {"target", "VALUE"}, {"result", "EQUAL"}, {"value", Base64(*expected_)}};
    } else {
      compare = {{"key", seq64}, {"target", "VERSION"}, {"result", "EQUAL"}, {"version", "0"}};
    }
    ops.push_back({{"requestPut", {{"key", seq64}, {"value", Base64(next)}}}});
    const Json req = {{"compare", Json::array({compare})},
                      {"success", std::move(ops)},
                      {"failure", Json::array({{{"requestRange", {{"key", seq64}}}}})}};
    TxnResult r;
    Outcome outcome = Outcome::kNotApplied;
    auto answer = client_.Call("/v3/kv/txn", req.dump(), /*is_write=*/true, &outcome);
    if (!answer.ok()) {
      r.status = answer.status();
      r.unknown = outcome == Outcome::kUnknown;
      return r;
    }
    auto j = ParseAnswer(*answer);
    if (!j.ok()) {
      r.status = j.status();
      r.unknown = true;
      return r;
    }
    r.succeeded = j->value("succeeded", false);
    if (r.succeeded) return r;
    // The failure branch's range of the sequence key.
    const Json* range = nullptr;
    if (j->contains("responses") && !(*j)["responses"].empty()) {
      const Json& first = (*j)["responses"][0];
      if (first.contains("response_range")) range = &first["response_range"];
      if (first.contains("responseRange")) range = &first["responseRange"];
    }
    if (range == nullptr) {
      r.status = Status::IOError("etcd: a failed txn's answer without its range");
      r.unknown = true;
      return r;
    }
    if (range->contains("kvs") && !(*range)["kvs"].empty()) {
      auto v = ValueOf((*range)["kvs"][0]);
      if (!v.ok()) {
        r.status = v.status();
        r.unknown = true;
        return r;
      }
      r.seen = std::move(*v);
    }
    // The client retries a txn on another member when an attempt got no answer: if the first
    // attempt applied, the retry's compare fails and finds this very txn's token.
    if (r.seen.has_value() && *r.seen == next) r.succeeded = true;
    return r;
  }

  // A caller's batch waiting for its group (Apply).
  struct Queued {
    const std::vector<BatchEntry>* entries = nullptr;
    Status result;  // with done: its group's answer
    bool done = false;
  };

  // Sends `group` as one txn (falling back to one txn each when etcd refuses the merged one
  // definitely), after settling any unknown outcome; each batch's answer.
  std::vector<Status> SendGroupLocked(const std::vector<Queued*>& group)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_) {
    std::vector<Status> answers(group.size(), SendMergedLocked(group));
    const Status& s = answers.front();
    // A definite refusal (EFBIG, a bad request) applied nothing and left the sequence key
    // where it was. Merged, it may be one batch's fault (or the cluster's limits below the
    // defaults): each batch alone gets its own answer.
    if (group.size() == 1 || s.ok() || s.IsFailed() || s.IsNoSpace() ||
        s.code() == StatusCode::kIOError) {
      return answers;
    }
    for (size_t i = 0; i < group.size(); ++i) answers[i] = SendMergedLocked({group[i]});
    return answers;
  }

  // One txn of the batches of `group`; its answer.
  Status SendMergedLocked(const std::vector<Queued*>& group)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_) {
    // Fenced off meanwhile (another writer), or failed for good: refuse before sending.
    KVFS_RETURN_IF_ERROR(failure_.Refusal());
    // An earlier write whose outcome is unknown is settled first: nothing is sent on top of
    // it until the cluster has said whether it applied (docs/decisions.md).
    KVFS_RETURN_IF_ERROR(SettleLocked());
    // etcd refuses a txn naming one key twice: the last entry of each key is the one that
    // counts (batches apply in order, each in order), so only it is sent.
    absl::flat_hash_map<std::string_view, std::pair<size_t, size_t>> last;
    size_t total = 0;
    for (size_t b = 0; b < group.size(); ++b) {
      const std::vector<BatchEntry>& entries = *group[b]->entries;
      total += entries.size();
      for (size_t i = 0; i < entries.size(); ++i) last[entries[i].key] = {b, i};
    }
    Json ops = Json::array();
    for (size_t b = 0; b < group.size(); ++b) {
      const std::vector<BatchEntry>& entries = *group[b]->entries;
      for (size_t i = 0; i < entries.size(); ++i) {
        const BatchEntry& e = entries[i];
        if (last[e.key] != std::pair<size_t, size_t>(b, i)) continue;
        if (e.kind == EntryKind::kPut) {
          ops.push_back(
              {{"requestPut", {{"key", Base64(Key(e.key))}, {"value", Base64(e.value)}}}});
        } else {
          ops.push_back({{"requestDeleteRange", {{"key", Base64(Key(e.key))}}}});
        }
      }
    }
    const std::string next = NextToken();
    TxnResult r = SendTxn(std::move(ops), next);
    if (r.status.ok() && r.succeeded) {
      expected_ = next;
      for (const Queued* g : group) counters_.CountBatch(EngineCounters::Tally(*g->entries));
      return Status::OK();
    }
    if (r.status.ok()) {
      // The compare failed: the sequence key is not what this engine last wrote, and nothing
      // of its own is in flight, so another writer has written the store since.
      return Fence(r.seen);
    }
    Status s = r.status.WithContext("etcd store " + dir_ + ": " + std::to_string(group.size()) +
                                    " batches of " + std::to_string(total) + " entries");
    if (r.unknown && s.code() == StatusCode::kIOError) {
      // Applied or not, nobody can tell yet. The next write or sync settles it before
      // anything else is sent (SettleLocked); until then both are refused with EIO.
      pending_.push_back(next);
      return s;
    }
    // "database space exceeded": etcd refuses up front once its alarm is raised, but the txn
    // that crosses the quota is applied whole and then answered with that error; a settling
    // txn would be refused the same way, so the store stays failed until reopened.
    if (s.IsNoSpace()) {
      failure_.Latch(s);
      return s;
    }
    // A definite refusal (EFBIG, a bad request): nothing applied, the sequence key where it
    // was (SendGroupLocked retries a merged group batch by batch).
    return s;
  }

  // Settles the writes whose outcome is unknown (pending_: the tokens they would have put):
  // one txn that compares the sequence key against the last value known to be there and puts
  // a new one. If it applies, none of them applied and, the key having moved on, none ever
  // can (each compares the value it replaced). If its compare fails, the key's value says
  // which applied. OK: settled, writes go on; else EIO (still unknown) or the fencing error.
  Status SettleLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_) {
    if (pending_.empty()) return Status::OK();
    const std::string next = NextToken();
    TxnResult r = SendTxn(Json::array(), next);
    if (!r.status.ok()) {
      if (r.unknown) pending_.push_back(next);
      return Status::IOError("etcd store " + dir_ + " (prefix \"" + settings_.prefix +
                             "\"): an earlier write's outcome is still unknown, nothing is "
                             "written until the cluster answers: " +
                             r.status.message());
    }
    const std::string batch = pending_.front();
    if (r.succeeded) {
      expected_ = next;  // none applied, and none ever can: the value each compares is gone
      pending_.clear();
      return Status::OK();
    }
    // One of them applied: the key holds its token, and every other one compares a value now
    // gone. A settling txn's token: it fenced the batch out before it could apply.
    bool ours = false;
    for (const std::string& t : pending_) ours = ours || (r.seen.has_value() && *r.seen == t);
    if (!ours) return Fence(r.seen);
    expected_ = *r.seen;
    pending_.clear();
    if (*r.seen != batch) return Status::OK();
    // The batch applied, after its caller was told EIO. The store is consistent (every write
    // whole or absent, and known now), but the caller's view may not be: it took the batch
    // for failed (the file layer keeps caches of what it wrote). So, as after a failed fsync,
    // nothing more is written until the store is reopened and its caller reads it afresh.
    failure_.Latch(Status::IOError(
        "etcd store " + dir_ + " (prefix \"" + settings_.prefix +
        "\"): a batch reported failed (its outcome unknown) turned out applied once the "
        "cluster answered; reopen the store so that its users see it"));
    return failure_.Refusal();
  }

  // Another writer has written the sequence key: this engine refuses every write from now on.
  Status Fence(const std::optional<std::string>& seen) ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_) {
    Status s =
        Status(StatusCode::kIOError,
               "etcd store " + dir_ + ": another writer has written the store under prefix \"" +
                   settings_.prefix + "\" since this one last did (its sequence key holds " +
                   (seen.has_value() ? "\"" + *seen + "\"" : std::string("nothing")) +
                   ", not this engine's \"" + expected_.value_or("") +
                   "\"): one writer per store; this one is fenced off and writes nothing "
                   "more (reopen it to take the store over)",
               EROFS);
    failure_.Latch(s);
    return failure_.Refusal();
  }

  std::string Key(std::string_view key) const {
    std::string k = settings_.prefix;
    k.append(key);
    return k;
  }

  // A range answer's value: the gateway leaves an empty value out.
  static Result<std::string> ValueOf(const Json& kv) {
    if (!kv.contains("value")) return std::string();
    return FromBase64(kv["value"].get<std::string>());
  }

  sync::FileSystem* const fs_;
  const std::string dir_;
  const EngineOptions options_;
  const EtcdSettings settings_;
  EtcdClient client_;
  StoreFailure failure_;
  const std::string writer_id_;
  // One write txn at a time: each compares the sequence key against the value the previous
  // one put (docs/decisions.md, "etcd: fencing").
  Mutex write_mu_;
  uint64_t counter_ ABSL_GUARDED_BY(write_mu_) = 0;
  // What this engine last knew the sequence key to hold (nullopt: no key).
  std::optional<std::string> expected_ ABSL_GUARDED_BY(write_mu_);
  // Batches waiting for the txn in flight (group commit, Apply).
  Mutex queue_mu_ ABSL_ACQUIRED_AFTER(write_mu_);
  std::deque<Queued*> queue_ ABSL_GUARDED_BY(queue_mu_);
  // Tokens of txns (a batch, then settling ones) whose outcome is unknown.
  std::vector<std::string> pending_ ABSL_GUARDED_BY(write_mu_);
  std::unique_ptr<sync::FileLock> lock_;
  EngineCounters counters_;
  uint64_t open_revision_ = 0;  // the cluster's revision at open (set by Open)
  // The change feed (SubscribeChanges), stopped by Close.
  Mutex watch_mu_;
  std::unique_ptr<EtcdWatcher> watcher_ ABSL_GUARDED_BY(watch_mu_);
};

}  // namespace

bool DropWatchConnection(Engine* engine) {
  auto* e = dynamic_cast<EtcdEngine*>(engine);
  if (e == nullptr || e->watcher() == nullptr) return false;
  e->watcher()->DropConnection();
  return true;
}

std::string WatchEndpoint(Engine* engine) {
  auto* e = dynamic_cast<EtcdEngine*>(engine);
  if (e == nullptr || e->watcher() == nullptr) return {};
  return e->watcher()->endpoint();
}

uint64_t WatchConnections(Engine* engine) {
  auto* e = dynamic_cast<EtcdEngine*>(engine);
  if (e == nullptr || e->watcher() == nullptr) return 0;
  return e->watcher()->connections();
}

std::vector<std::string> OptionKeys() {
  return {kEndpointsKey, kPrefixKey,  kTimeoutKey, kCaFileKey,
          kCertFileKey,  kKeyFileKey, kUserKey,    kPasswordKey};
}

Result<EtcdSettings> ParseSettings(const std::map<std::string, std::string, std::less<>>& options) {
  EtcdSettings s;
  const std::vector<std::string> keys = OptionKeys();
  for (const auto& [key, value] : options) {
    if (std::find(keys.begin(), keys.end(), key) == keys.end()) {
      return Status::InvalidArgument(
          "etcd engine: unknown option \"" + key +
          "\" (it takes endpoints, prefix, timeout_ms, ca_file, cert_file, key_file, user, "
          "password)");
    }
  }
  // A file option names a file this process can read, now: a typo is refused naming it.
  for (const char* key : {kCaFileKey, kCertFileKey, kKeyFileKey}) {
    auto f = options.find(key);
    if (f == options.end()) continue;
    if (f->second.empty() || ::access(f->second.c_str(), R_OK) != 0) {
      const int err = f->second.empty() ? ENOENT : errno;
      return Status::InvalidArgument(std::string("etcd engine: option ") + key + ": \"" +
                                     f->second + "\" cannot be read (" + ErrnoText(err) + ")");
    }
  }
  auto value = [&](const char* key) {
    auto f = options.find(key);
    return f == options.end() ? std::string() : f->second;
  };
  s.ca_file = value(kCaFileKey);
  s.cert_file = value(kCertFileKey);
  s.key_file = value(kKeyFileKey);
  if (s.cert_file.empty() != s.key_file.empty()) {
    return Status::InvalidArgument(
        "etcd engine: options cert_file and key_file go together (a client certificate and "
        "its key)");
  }
  s.user = value(kUserKey);
  s.password = value(kPasswordKey);
  if (options.contains(kUserKey) != options.contains(kPasswordKey) ||
      (options.contains(kUserKey) && s.user.empty())) {
    return Status::InvalidArgument(
        "etcd engine: options user and password go together (etcd auth), and user is not "
        "empty");
  }
  auto it = options.find(kEndpointsKey);
  if (it == options.end() || Trim(it->second).empty()) {
    return Status::InvalidArgument(
        "etcd engine: option endpoints is required (client URLs, comma-separated, e.g. "
        "\"http://127.0.0.1:2379\")");
  }
  std::string_view rest = it->second;
  while (true) {
    const size_t comma = rest.find(',');
    std::string url = Trim(rest.substr(0, comma));
    if (!url.starts_with("http://") && !url.starts_with("https://")) {
      return Status::InvalidArgument("etcd engine: option endpoints: \"" + url +
                                     "\" is not an http:// or https:// URL");
    }
    while (url.ends_with('/')) url.pop_back();
    if (url.size() <= 8 || url.find_first_of(" \t\"") != std::string::npos) {
      return Status::InvalidArgument("etcd engine: option endpoints: \"" + url +
                                     "\" names no host");
    }
    s.endpoints.push_back(std::move(url));
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  it = options.find(kPrefixKey);
  if (it == options.end() || it->second.empty()) {
    return Status::InvalidArgument(
        "etcd engine: option prefix is required and not empty (every key of the store lives "
        "under it; stores sharing a cluster need prefixes that do not start one another)");
  }
  s.prefix = it->second;
  it = options.find(kTimeoutKey);
  if (it != options.end()) {
    int64_t ms = 0;
    const std::string& t = it->second;
    auto [ptr, ec] = std::from_chars(t.data(), t.data() + t.size(), ms);
    if (ec != std::errc() || ptr != t.data() + t.size() || ms < kMinTimeoutMs ||
        ms > kMaxTimeoutMs) {
      return Status::InvalidArgument("etcd engine: option timeout_ms: \"" + t +
                                     "\" is not a whole number of milliseconds in " +
                                     std::to_string(kMinTimeoutMs) + ".." +
                                     std::to_string(kMaxTimeoutMs));
    }
    s.timeout = std::chrono::milliseconds(ms);
  }
  return s;
}

}  // namespace etcd

Result<std::unique_ptr<Engine>> OpenEtcd(sync::FileSystem* fs, const std::string& dir,
                                         const EngineOptions& options) {
  KVFS_ASSIGN_OR_RETURN(etcd::EtcdSettings settings, etcd::ParseSettings(options.settings));
  auto engine = std::make_unique<etcd::EtcdEngine>(fs, dir, options, std::move(settings));
  KVFS_RETURN_IF_ERROR(engine->Open());
  return std::unique_ptr<Engine>(std::move(engine));
}

}  // namespace kvfs::engines
