// The event store engine (events.h has the contract, FORMAT.md the bytes): a layer over a
// Bitcask store, with the per-stream index in memory.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <thread>
#include <utility>

#include "engines/bitcask/bitcask.h"
#include "engines/events/events.h"
#include "engines/events/format.h"

namespace kvfs::engines {
namespace events {
namespace {

// Deletions per log record when Compact removes a dead stream's events.
constexpr size_t kPurgeBatch = 1024;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct Stream {
  std::string name;
  uint64_t id = 0;
  int64_t created_ns = 0;
  std::vector<EventInfo> events;  // events[n].number == n
  uint64_t bytes = 0;

  StreamInfo Info() const {
    return StreamInfo{name,  id,         events.size(),
                      bytes, created_ns, events.empty() ? created_ns : events.back().timestamp_ns};
  }
};

// What the keys say: every live stream with its events, the dead streams, the next id.
struct Index {
  std::map<std::string, std::unique_ptr<Stream>, std::less<>> streams;
  std::map<uint64_t, Stream*> by_id;
  std::set<uint64_t> dead;
  uint64_t dead_events = 0;
  uint64_t events = 0;
  uint64_t next_id = 1;
  // A salvage open only: streams cut at their first break, and what was left out.
  std::set<uint64_t> cut;
  std::vector<std::string> salvage_notes;
};

class EventsEngine final : public Engine, public EventStore {
 public:
  EventsEngine(std::string dir, EngineOptions options, std::unique_ptr<Engine> kv)
      : dir_(std::move(dir)), options_(std::move(options)), kv_(std::move(kv)) {}
  ~EventsEngine() override { Close().PermitUnchecked(); }

  Status Open();

  // --- Engine ----------------------------------------------------------------------------
  std::string_view name() const override { return "events"; }
  Result<std::string> Get(std::string_view key) override;
  Status Apply(const WriteBatch& batch) override;
  Status Scan(const ScanOptions& options, const ScanFn& fn) override;
  Status Sync(SyncKind kind) override { return kv_->Sync(kind); }
  void DeferBatchSyncs() override { kv_->DeferBatchSyncs(); }
  Status SyncBatchIfDue() override { return kv_->SyncBatchIfDue(); }
  Status Compact() override;
  EngineStats stats() const override { return kv_->stats(); }
  Status Verify() override;
  Status Close() override;

  // --- EventStore ------------------------------------------------------------------------
  Result<EventInfo> Append(std::string_view stream, std::string_view data,
                           const AppendExpectation& expect) override;
  Status ApplyWithStreams(const WriteBatch& batch, std::span<const StreamOp> ops,
                          std::vector<EventInfo>* appended) override;
  Result<StreamInfo> CreateStream(std::string_view stream) override;
  Status DeleteStream(std::string_view stream) override;
  Result<StreamInfo> Stat(std::string_view stream) override;
  Status ListStreams(const std::function<bool(const StreamInfo&)>& fn) override;
  Result<std::vector<EventInfo>> ListEvents(std::string_view stream, uint64_t from,
                                            size_t max) override;
  Result<std::string> ReadEvent(std::string_view stream, uint64_t number, EventInfo* info) override;
  Result<std::string> ReadBytes(std::string_view stream, uint64_t offset, size_t size) override;

 private:
  Status BuildIndex(Index* index);
  // Deletes the events of every dead stream, then its marker (Compact's first half; the
  // background thread's whole job, after which Bitcask's merge finds the garbage).
  Status PurgeDead();
  void PurgeLoop();
  void WakePurge();
  // `batch`'s keys moved under the Engine interface's prefix, into `inner`; kInvalidArgument
  // for a key the interface does not take.
  static Status TranslateUserBatch(const WriteBatch& batch, WriteBatch* inner);
  Status CheckWritable() const;
  Status CheckName(std::string_view stream) const;
  // In `always` mode the Bitcask store is opened in `none` mode and each mutation syncs here,
  // after the append lock is released, so concurrent appenders share one log sync.
  Status SyncIfAlways() {
    return options_.sync_mode == sync::SyncMode::kAlways ? kv_->Sync(SyncKind::kData)
                                                         : Status::OK();
  }
  std::string Where(std::string_view stream) const {
    return "events store " + dir_ + ", stream '" + Printable(stream) + "'";
  }
  Result<std::string> ReadChecked(std::string_view stream, uint64_t id, const EventInfo& e);

  const std::string dir_;
  const EngineOptions options_;
  std::unique_ptr<Engine> kv_;

  // Lock order: compact_mu_ -> append_mu_ -> index_mu_. append_mu_ serialises the mutations
  // of streams and is held across their log append (so the log holds each stream's events in
  // number order, and a power cut keeps a prefix), never across a sync this engine starts.
  // index_mu_ guards index_ and is never held across I/O.
  std::mutex compact_mu_;
  std::mutex append_mu_;
  // The background purge (EngineOptions::background_work): woken when a stream is deleted.
  std::mutex bg_mu_;  // a leaf
  std::condition_variable bg_cv_;
  bool bg_due_ = false;   // guarded by bg_mu_
  bool bg_stop_ = false;  // guarded by bg_mu_
  std::thread bg_;
  std::mutex close_mu_;
  bool closed_ = false;  // guarded by close_mu_
  mutable std::shared_mutex index_mu_;
  Index index_;  // guarded by index_mu_ (written with append_mu_ held too)
};

Status EventsEngine::Open() {
  recovery_ = kv_->recovery();
  KVFS_RETURN_IF_ERROR(BuildIndex(&index_));
  recovery_.AddFact("streams", index_.streams.size());
  recovery_.AddFact("events", index_.events);
  recovery_.AddFact("dead_streams", index_.dead.size());
  recovery_.AddFact("dead_events", index_.dead_events);
  for (const std::string& note : index_.salvage_notes) recovery_.warnings.push_back(note);
  if (options_.background_work && !options_.read_only) {
    bg_due_ = !index_.dead.empty();  // a purge a crash interrupted
    bg_ = std::thread([this] { PurgeLoop(); });
  }
  return Status::OK();
}

void EventsEngine::WakePurge() {
  if (!bg_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(bg_mu_);
    bg_due_ = true;
  }
  bg_cv_.notify_one();
}

void EventsEngine::PurgeLoop() {
  std::unique_lock<std::mutex> lock(bg_mu_);
  while (!bg_stop_) {
    bg_cv_.wait(lock, [this] { return bg_stop_ || bg_due_; });
    if (bg_stop_) break;
    bg_due_ = false;
    lock.unlock();
    // A failure (a failed sync latches the store failed) leaves the markers: the next open or
    // Compact finishes the job.
    PurgeDead().PermitUnchecked();
    lock.lock();
  }
}

Status EventsEngine::BuildIndex(Index* index) {
  Status err;
  auto fail = [&](const Status& s) {
    err = s.WithContext("events store " + dir_);
    return false;
  };
  ScanOptions o;
  o.prefix = TagPrefix(kStreamTag);
  KVFS_RETURN_IF_ERROR(kv_->Scan(o, [&](std::string_view key, std::string_view value) {
    const std::string_view name = key.substr(2);
    Result<StreamRecord> r = DecodeStreamValue(value, name);
    if (!r.ok()) return fail(r.status());
    if (index->by_id.contains(r->id)) {
      return fail(Status::Corruption("streams '" + Printable(index->by_id[r->id]->name) +
                                     "' and '" + Printable(name) + "' share id " +
                                     std::to_string(r->id)));
    }
    auto s = std::make_unique<Stream>();
    s->name = std::string(name);
    s->id = r->id;
    s->created_ns = r->created_ns;
    index->by_id[r->id] = s.get();
    index->next_id = std::max(index->next_id, r->id + 1);
    index->streams.emplace(s->name, std::move(s));
    return true;
  }));
  KVFS_RETURN_IF_ERROR(err);
  o.keys_only = true;
  o.prefix = TagPrefix(kDeadTag);
  KVFS_RETURN_IF_ERROR(kv_->Scan(o, [&](std::string_view key, std::string_view) {
    Result<uint64_t> id = DecodeDeadKey(key);
    if (!id.ok()) return fail(id.status());
    if (index->by_id.contains(*id)) {
      return fail(
          Status::Corruption("stream id " + std::to_string(*id) + " is both live and dead"));
    }
    index->dead.insert(*id);
    index->next_id = std::max(index->next_id, *id + 1);
    return true;
  }));
  KVFS_RETURN_IF_ERROR(err);
  o.prefix = TagPrefix(kEventTag);
  KVFS_RETURN_IF_ERROR(kv_->Scan(o, [&](std::string_view key, std::string_view) {
    Result<std::pair<uint64_t, EventInfo>> d = DecodeEventKey(key);
    if (!d.ok()) return fail(d.status());
    const auto& [id, e] = *d;
    index->next_id = std::max(index->next_id, id + 1);
    if (index->dead.contains(id)) {
      ++index->dead_events;
      return true;
    }
    auto it = index->by_id.find(id);
    if (it == index->by_id.end()) {
      const std::string why = "event " + std::to_string(e.number) + " of stream id " +
                              std::to_string(id) + ", which no stream record names";
      if (!options_.salvage) return fail(Status::Corruption(why));
      index->salvage_notes.push_back("salvage leaves out " + why);
      return true;
    }
    Stream& s = *it->second;
    if (index->cut.contains(id)) return true;
    if (e.number != s.events.size() || e.offset != s.bytes || e.size > kMaxEventSize) {
      std::string why = e.number < s.events.size() ? "a duplicate of event "
                        : e.number > s.events.size()
                            ? "a gap: event " + std::to_string(e.number) + " follows event "
                            : "event ";
      if (e.number == s.events.size()) {
        why += std::to_string(e.number) + " at offset " + std::to_string(e.offset) + " (" +
               std::to_string(e.size) + " bytes) where offset " + std::to_string(s.bytes) +
               " was expected";
      } else if (e.number < s.events.size()) {
        why += std::to_string(e.number);
      } else {
        why += s.events.empty() ? "none" : std::to_string(s.events.size() - 1);
      }
      if (!options_.salvage) {
        return fail(Status::Corruption("stream '" + Printable(s.name) + "': " + why));
      }
      // Salvage keeps the stream up to its first break: what follows cannot be numbered.
      index->cut.insert(id);
      index->salvage_notes.push_back("stream '" + Printable(s.name) + "': " + why +
                                     "; salvage keeps its first " +
                                     std::to_string(s.events.size()) + " events");
      return true;
    }
    s.events.push_back(e);
    s.bytes += e.size;
    ++index->events;
    return true;
  }));
  return err;
}

Status EventsEngine::CheckWritable() const {
  if (options_.read_only) return Status::NotSupported("events store " + dir_ + " is read-only");
  return Status::OK();
}

Status EventsEngine::CheckName(std::string_view stream) const {
  if (stream.empty() || stream.size() > kMaxStreamNameSize) {
    return Status::InvalidArgument("stream names are 1 to " + std::to_string(kMaxStreamNameSize) +
                                   " bytes, not " + std::to_string(stream.size()));
  }
  return Status::OK();
}

// --- The Engine interface: keys under "k" ----------------------------------------------------

Result<std::string> EventsEngine::Get(std::string_view key) {
  Result<std::string> v = kv_->Get(UserKey(key));
  if (v.status().IsNotFound()) return Status::NotFound("no key '" + Printable(key) + "'");
  return v;
}

Status EventsEngine::TranslateUserBatch(const WriteBatch& batch, WriteBatch* inner) {
  return ForEachEntry(batch.encoded(), "write batch", [&](const BatchEntry& e) {
    if (e.key.empty() || e.key.size() > kMaxKeySize) {
      return Status::InvalidArgument("key of " + std::to_string(e.key.size()) +
                                     " bytes: keys must be 1 to " + std::to_string(kMaxKeySize) +
                                     " bytes");
    }
    if (e.kind == EntryKind::kPut) {
      inner->Put(UserKey(e.key), e.value);
    } else {
      inner->Delete(UserKey(e.key));
    }
    return Status::OK();
  });
}

Status EventsEngine::Apply(const WriteBatch& batch) {
  WriteBatch inner;
  KVFS_RETURN_IF_ERROR(TranslateUserBatch(batch, &inner));
  KVFS_RETURN_IF_ERROR(kv_->Apply(inner));
  return SyncIfAlways();
}

Status EventsEngine::Scan(const ScanOptions& options, const ScanFn& fn) {
  // UserKey keeps the order, and the store's own keys lie in one stretch between the
  // interface's keys that start with NUL and the others: a scan that would cross it runs as two
  // scans, one on each side, so a full scan never walks the events.
  bool stopped = false;
  const auto visit = [&](std::string_view key, std::string_view value) {
    if (!fn(KeyOfUser(key), value)) stopped = true;
    return !stopped;
  };
  ScanOptions inner = options;
  inner.prefix = UserKey(options.prefix);
  inner.start_after = options.start_after.empty() ? "" : UserKey(options.start_after);
  if (!options.prefix.empty()) return kv_->Scan(inner, visit);
  const bool from_nul = options.start_after.empty() || options.start_after[0] == '\0';
  if (from_nul) {
    ScanOptions nul = inner;
    nul.prefix = std::string(2, '\0');
    KVFS_RETURN_IF_ERROR(kv_->Scan(nul, visit));
    if (stopped) return Status::OK();
    inner.start_after = std::string{'\0', '\xff'};  // past every key of the store's own
  }
  return kv_->Scan(inner, visit);
}

Status EventsEngine::Compact() {
  KVFS_RETURN_IF_ERROR(PurgeDead());
  return kv_->Compact();
}

Status EventsEngine::PurgeDead() {
  KVFS_RETURN_IF_ERROR(CheckWritable());
  std::lock_guard<std::mutex> compact(compact_mu_);
  std::vector<uint64_t> dead;
  {
    std::shared_lock<std::shared_mutex> lock(index_mu_);
    dead.assign(index_.dead.begin(), index_.dead.end());
  }
  // A dead stream's id is in no live record and gets no new event, so its events are deleted
  // without the append lock. The marker goes last: until then a crash leaves it, and the next
  // Compact finishes the job.
  for (uint64_t id : dead) {
    ScanOptions o;
    o.prefix = EventPrefix(id);
    o.keys_only = true;
    for (;;) {
      WriteBatch b;
      KVFS_RETURN_IF_ERROR(kv_->Scan(o, [&](std::string_view key, std::string_view) {
        b.Delete(key);
        return b.count() < kPurgeBatch;
      }));
      if (b.empty()) break;
      KVFS_RETURN_IF_ERROR(kv_->Apply(b));
    }
    KVFS_RETURN_IF_ERROR(kv_->Delete(DeadKey(id)));
    std::unique_lock<std::shared_mutex> lock(index_mu_);
    index_.dead.erase(id);
  }
  if (!dead.empty()) KVFS_RETURN_IF_ERROR(SyncIfAlways());
  return Status::OK();
}

Status EventsEngine::Verify() {
  KVFS_RETURN_IF_ERROR(kv_->Verify());
  // The numbering, from the keys as they are now, then every event's checksum.
  Index fresh;
  KVFS_RETURN_IF_ERROR(BuildIndex(&fresh));
  Status err;
  ScanOptions all;
  all.keys_only = true;
  KVFS_RETURN_IF_ERROR(kv_->Scan(all, [&](std::string_view key, std::string_view) {
    if (IsUserKey(key)) return true;
    const char tag = key[1];
    if (tag != kStreamTag && tag != kEventTag && tag != kDeadTag) {
      err = Status::Corruption("events store " + dir_ + ": a key no part of the store writes: '" +
                               Printable(key) + "'");
      return false;
    }
    return true;
  }));
  KVFS_RETURN_IF_ERROR(err);
  for (const auto& [name, stream] : fresh.streams) {
    for (const EventInfo& e : stream->events) {
      KVFS_RETURN_IF_ERROR(ReadChecked(name, stream->id, e).status());
    }
  }
  return Status::OK();
}

Status EventsEngine::Close() {
  std::lock_guard<std::mutex> close(close_mu_);
  if (closed_) return Status::OK();
  closed_ = true;
  {
    std::lock_guard<std::mutex> lock(bg_mu_);
    bg_stop_ = true;
  }
  bg_cv_.notify_all();
  if (bg_.joinable()) bg_.join();
  return kv_->Close();
}

// --- The EventStore calls ----------------------------------------------------------------------

Result<EventInfo> EventsEngine::Append(std::string_view stream, std::string_view data,
                                       const AppendExpectation& expect) {
  StreamOp op;
  op.stream = std::string(stream);
  op.data = data;
  op.expect = expect;
  std::vector<EventInfo> appended;
  KVFS_RETURN_IF_ERROR(
      ApplyWithStreams(WriteBatch(), std::span<const StreamOp>(&op, 1), &appended));
  return appended.front();
}

Status EventsEngine::ApplyWithStreams(const WriteBatch& batch, std::span<const StreamOp> ops,
                                      std::vector<EventInfo>* appended) {
  KVFS_RETURN_IF_ERROR(CheckWritable());
  for (const StreamOp& op : ops) {
    KVFS_RETURN_IF_ERROR(CheckName(op.stream));
    if (op.kind == StreamOp::Kind::kAppend && op.data.size() > kMaxEventSize) {
      return Status(StatusCode::kInvalidArgument,
                    "an event of " + std::to_string(op.data.size()) + " bytes: at most " +
                        std::to_string(kMaxEventSize),
                    EFBIG);
    }
  }
  WriteBatch inner;
  KVFS_RETURN_IF_ERROR(TranslateUserBatch(batch, &inner));
  // What the ops do to each stream they touch, applied to the index once the log has it.
  struct Pending {
    Stream* existing = nullptr;  // the stream as the index has it (null: none)
    bool exists = false;         // after the ops so far
    bool created = false;        // by these ops (under `id`)
    uint64_t id = 0;
    int64_t created_ns = 0;
    uint64_t events = 0;
    uint64_t bytes = 0;
    std::vector<EventInfo> added;
    std::vector<uint64_t> dead;  // ids these ops deleted
  };
  std::vector<EventInfo> infos;
  {
    std::lock_guard<std::mutex> append(append_mu_);
    std::map<std::string, Pending, std::less<>> touched;
    uint64_t next_id = 0;
    {
      std::shared_lock<std::shared_mutex> lock(index_mu_);
      next_id = index_.next_id;
      for (const StreamOp& op : ops) {
        if (touched.contains(op.stream)) continue;
        Pending p;
        auto it = index_.streams.find(op.stream);
        if (it != index_.streams.end()) {
          p.existing = it->second.get();
          p.exists = true;
          p.id = p.existing->id;
          p.events = p.existing->events.size();
          p.bytes = p.existing->bytes;
        }
        touched.emplace(op.stream, std::move(p));
      }
    }
    const int64_t now = NowNs();
    for (const StreamOp& op : ops) {
      Pending& p = touched.find(op.stream)->second;
      if (op.kind == StreamOp::Kind::kDelete) {
        if (!p.exists) continue;
        inner.Delete(StreamKey(op.stream));
        inner.Put(DeadKey(p.id), "");
        p.dead.push_back(p.id);
        p.exists = p.created = false;
        p.events = p.bytes = 0;
        p.added.clear();
        continue;
      }
      if (!p.exists) {
        if (op.expect.must_exist) return Status::NotFound(Where(op.stream) + " does not exist");
        p.exists = p.created = true;
        p.id = next_id++;
        p.created_ns = now;
        inner.Put(StreamKey(op.stream), StreamValue(p.id, now));
      }
      const AppendExpectation& x = op.expect;
      if ((x.events && *x.events != p.events) || (x.bytes && *x.bytes != p.bytes)) {
        return Status(StatusCode::kInvalidArgument,
                      Where(op.stream) + " ends at event " + std::to_string(p.events) +
                          ", offset " + std::to_string(p.bytes) + "; the append expected " +
                          (x.events ? "event " + std::to_string(*x.events) : "") +
                          (x.events && x.bytes ? ", " : "") +
                          (x.bytes ? "offset " + std::to_string(*x.bytes) : ""),
                      EPERM);
      }
      EventInfo e{p.events, p.bytes, static_cast<uint32_t>(op.data.size()), now};
      const std::string key = EventKey(p.id, e);
      inner.Put(key, EventValue(key, op.data));
      ++p.events;
      p.bytes += e.size;
      p.added.push_back(e);
      infos.push_back(e);
    }
    if (!inner.empty()) KVFS_RETURN_IF_ERROR(kv_->Apply(inner));
    std::unique_lock<std::shared_mutex> lock(index_mu_);
    for (auto& [name, p] : touched) {
      if (p.existing != nullptr && (!p.exists || p.created)) {  // the existing one was deleted
        index_.events -= p.existing->events.size();
        index_.by_id.erase(p.existing->id);
        index_.streams.erase(index_.streams.find(name));
      }
      for (uint64_t id : p.dead) index_.dead.insert(id);
      if (!p.exists) continue;
      Stream* s = p.existing;
      if (p.created) {
        auto fresh = std::make_unique<Stream>();
        fresh->name = name;
        fresh->id = p.id;
        fresh->created_ns = p.created_ns;
        s = fresh.get();
        index_.by_id[p.id] = s;
        index_.streams.emplace(name, std::move(fresh));
      }
      s->events.insert(s->events.end(), p.added.begin(), p.added.end());
      s->bytes = p.bytes;
      index_.events += p.added.size();
    }
    index_.next_id = next_id;
  }
  bool deleted = false;
  for (const StreamOp& op : ops) deleted |= op.kind == StreamOp::Kind::kDelete;
  if (deleted) WakePurge();
  KVFS_RETURN_IF_ERROR(SyncIfAlways());
  if (appended != nullptr) *appended = std::move(infos);
  return Status::OK();
}

Result<StreamInfo> EventsEngine::CreateStream(std::string_view stream) {
  KVFS_RETURN_IF_ERROR(CheckWritable());
  KVFS_RETURN_IF_ERROR(CheckName(stream));
  StreamInfo info;
  {
    std::lock_guard<std::mutex> append(append_mu_);
    uint64_t id = 0;
    {
      std::shared_lock<std::shared_mutex> lock(index_mu_);
      if (index_.streams.contains(stream)) {
        return Status::AlreadyExists(Where(stream) + " exists");
      }
      id = index_.next_id;
    }
    const int64_t created = NowNs();
    KVFS_RETURN_IF_ERROR(kv_->Put(StreamKey(stream), StreamValue(id, created)));
    auto s = std::make_unique<Stream>();
    s->name = std::string(stream);
    s->id = id;
    s->created_ns = created;
    info = s->Info();
    std::unique_lock<std::shared_mutex> lock(index_mu_);
    index_.by_id[id] = s.get();
    index_.streams.emplace(s->name, std::move(s));
    index_.next_id = id + 1;
  }
  KVFS_RETURN_IF_ERROR(SyncIfAlways());
  return info;
}

Status EventsEngine::DeleteStream(std::string_view stream) {
  KVFS_RETURN_IF_ERROR(Stat(stream).status());
  StreamOp op;
  op.kind = StreamOp::Kind::kDelete;
  op.stream = std::string(stream);
  return ApplyWithStreams(WriteBatch(), std::span<const StreamOp>(&op, 1), nullptr);
}

Result<StreamInfo> EventsEngine::Stat(std::string_view stream) {
  std::shared_lock<std::shared_mutex> lock(index_mu_);
  auto it = index_.streams.find(stream);
  if (it == index_.streams.end()) return Status::NotFound(Where(stream) + " does not exist");
  return it->second->Info();
}

Status EventsEngine::ListStreams(const std::function<bool(const StreamInfo&)>& fn) {
  std::vector<StreamInfo> all;
  {
    std::shared_lock<std::shared_mutex> lock(index_mu_);
    all.reserve(index_.streams.size());
    for (const auto& [name, s] : index_.streams) all.push_back(s->Info());
  }
  for (const StreamInfo& s : all) {
    if (!fn(s)) break;
  }
  return Status::OK();
}

Result<std::vector<EventInfo>> EventsEngine::ListEvents(std::string_view stream, uint64_t from,
                                                        size_t max) {
  std::shared_lock<std::shared_mutex> lock(index_mu_);
  auto it = index_.streams.find(stream);
  if (it == index_.streams.end()) return Status::NotFound(Where(stream) + " does not exist");
  const std::vector<EventInfo>& ev = it->second->events;
  std::vector<EventInfo> out;
  if (from >= ev.size()) return out;
  const uint64_t end = from + std::min<uint64_t>(max, ev.size() - from);
  out.assign(ev.begin() + static_cast<ptrdiff_t>(from), ev.begin() + static_cast<ptrdiff_t>(end));
  return out;
}

Result<std::string> EventsEngine::ReadChecked(std::string_view stream, uint64_t id,
                                              const EventInfo& e) {
  const std::string key = EventKey(id, e);
  Result<std::string> value = kv_->Get(key);
  if (!value.ok()) {
    if (value.status().IsNotFound()) {
      return Status::NotFound(Where(stream) + ": event " + std::to_string(e.number) +
                              " is gone (the stream was deleted)");
    }
    return value.status().WithContext(Where(stream) + ", event " + std::to_string(e.number));
  }
  KVFS_ASSIGN_OR_RETURN(std::string_view payload, CheckEventValue(key, *value, Where(stream)));
  // The payload is the value's tail: drop the checksum in place rather than copy.
  (void)payload;
  value->erase(0, 4);
  return value;
}

Result<std::string> EventsEngine::ReadEvent(std::string_view stream, uint64_t number,
                                            EventInfo* info) {
  uint64_t id = 0;
  EventInfo e;
  {
    std::shared_lock<std::shared_mutex> lock(index_mu_);
    auto it = index_.streams.find(stream);
    if (it == index_.streams.end()) return Status::NotFound(Where(stream) + " does not exist");
    if (number >= it->second->events.size()) {
      return Status::NotFound(Where(stream) + " has " + std::to_string(it->second->events.size()) +
                              " events, no event " + std::to_string(number));
    }
    id = it->second->id;
    e = it->second->events[number];
  }
  if (info != nullptr) *info = e;
  return ReadChecked(stream, id, e);
}

Result<std::string> EventsEngine::ReadBytes(std::string_view stream, uint64_t offset, size_t size) {
  uint64_t id = 0;
  std::vector<EventInfo> touched;
  {
    std::shared_lock<std::shared_mutex> lock(index_mu_);
    auto it = index_.streams.find(stream);
    if (it == index_.streams.end()) return Status::NotFound(Where(stream) + " does not exist");
    const Stream& s = *it->second;
    id = s.id;
    if (offset >= s.bytes || size == 0) return std::string();
    // The last event starting at or before `offset` (empty events start where the next does).
    auto first = std::upper_bound(s.events.begin(), s.events.end(), offset,
                                  [](uint64_t off, const EventInfo& e) { return off < e.offset; });
    --first;
    const uint64_t end = offset + size;
    for (auto e = first; e != s.events.end() && e->offset < end; ++e) {
      if (e->size > 0) touched.push_back(*e);
    }
  }
  std::string out;
  out.reserve(size);
  const uint64_t end = offset + size;
  for (const EventInfo& e : touched) {
    KVFS_ASSIGN_OR_RETURN(std::string payload, ReadChecked(stream, id, e));
    const uint64_t from = std::max(offset, e.offset);
    const uint64_t to = std::min(end, e.offset + e.size);
    if (from < to) out.append(payload, from - e.offset, to - from);
  }
  return out;
}

}  // namespace
}  // namespace events

bool IsWrongPosition(const Status& s) {
  return s.code() == StatusCode::kInvalidArgument && s.sys_errno() == EPERM;
}

EventStore* AsEventStore(Engine* engine) {
  return engine == nullptr ? nullptr : dynamic_cast<EventStore*>(engine);
}

Result<std::unique_ptr<Engine>> OpenEvents(sync::FileSystem* fs, const std::string& dir,
                                           const EngineOptions& options) {
  EngineOptions kv_options = options;
  if (options.sync_mode == sync::SyncMode::kAlways) kv_options.sync_mode = sync::SyncMode::kNone;
  BitcaskOptions b;
  b.max_key_size = kMaxKeySize + 1;  // the Engine interface's keys carry a one-byte prefix
  // Events are never overwritten, so merges run for the garbage of deleted streams only, never
  // to bound the log's length (which would copy every event again and again).
  b.merge_max_sealed_segments = UINT32_MAX;
  KVFS_ASSIGN_OR_RETURN(std::unique_ptr<Engine> kv, OpenBitcaskWith(fs, dir, kv_options, b));
  auto engine = std::make_unique<events::EventsEngine>(dir, options, std::move(kv));
  KVFS_RETURN_IF_ERROR(engine->Open());
  return std::unique_ptr<Engine>(std::move(engine));
}

}  // namespace kvfs::engines
