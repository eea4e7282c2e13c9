// EtcdWatcher: the etcd engine's change feed (Engine::SubscribeChanges). One long-lived
// POST /v3/watch through the JSON gateway, on a thread of its own, streaming every change under
// the store's prefix (with each change's previous value) to one callback, in revision order.
//
// No change is missed: every revision's events come in one answer (etcd never splits a
// revision) and are handed over together; when the stream breaks (a member killed or
// restarted, the connection reset, an error answer) the watcher connects again, to the next
// endpoint, from the revision after the last one it handed over. If that revision has been
// compacted away meanwhile, etcd cancels the watch naming the compaction's revision C: the
// callback then gets an `everything` set (anything may have changed up to C) and the watch
// resumes from C. The sequence key (the prefix itself, etcd.h) is not a store key: revisions
// changing only it (a settling txn) hand nothing over.
//
// A member that stops answering without closing its connections (SIGSTOP, a partition that
// drops packets) holds the stream until the operating system gives up on it; the request
// asks the member to end the watch when it loses its leader ("hasleader"), as etcd's own
// clients do.
//
// Thread safety: Stop and the test probes may be called from any thread; the callback runs
// on the watcher's thread only.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "engines/engine.h"
#include "sync/mutex.h"

namespace kvfs::engines::etcd {

struct WatchSettings {
  std::vector<std::string> endpoints;  // "http://host:port"
  std::string prefix;                  // the store's key prefix
  uint64_t start_revision = 1;         // the first revision to hand over
  // The pause after every endpoint failed once in a row (a cluster electing a leader).
  std::chrono::milliseconds retry_pause{100};
  // TLS, as the store's client uses it ("" = none).
  std::string ca_file, cert_file, key_file;
  // etcd auth: the token for the next stream (unset or "" = none). `refused` is the token the
  // last stream was refused with (HTTP 401), so that a new one is fetched.
  std::function<Result<std::string>(const std::string& refused)> token;
};

class EtcdWatcher {
 public:
  EtcdWatcher(WatchSettings settings, ChangeFn fn);
  ~EtcdWatcher();  // Stop()
  EtcdWatcher(const EtcdWatcher&) = delete;
  EtcdWatcher& operator=(const EtcdWatcher&) = delete;

  // Ends the stream and joins the thread; the callback is not called afterwards. Idempotent.
  void Stop();

  // Tests: ends the current stream as a broken connection would (the watcher reconnects);
  // the endpoint of the stream now open ("" if none); how many streams were opened.
  void DropConnection();
  std::string endpoint() const;
  uint64_t connections() const { return connections_.load(); }

 private:
  void Run();
  // One stream from `*next_revision`, until it breaks or Stop; advances *next_revision past
  // every revision handed over. Sets *compacted to etcd's compaction revision if it cancelled
  // the watch for that.
  void Stream(const std::string& endpoint, uint64_t* next_revision, uint64_t* compacted);

  const WatchSettings settings_;
  const ChangeFn fn_;
  void* multi_ = nullptr;  // CURLM*, alive as long as the watcher
  mutable Mutex mu_;
  CondVar cv_{&mu_};
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool drop_ ABSL_GUARDED_BY(mu_) = false;
  std::string endpoint_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> connections_{0};
  std::string refused_token_;  // the watch thread's alone: the token the last stream was refused
  std::thread thread_;
};

}  // namespace kvfs::engines::etcd
