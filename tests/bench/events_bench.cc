// events_bench: the event store at the engine level. For each stream length N it appends N
// events of --event-bytes to one stream (sync mode none, one sync at the end), closes, then
// measures the reopen (the index rebuilt from the keys) and the latency of reading event K for
// random K (EventStore::ReadEvent: one index lookup, one pread). Not a test: it asserts only
// that each event read back is the one written.
//
//   events_bench --dir DIR [--counts 1000,1000000,10000000] [--event-bytes 100] [--reads 20000]
//
// Prints one CSV line per N: events,append_s,reopen_ms,read_p50_us,read_p99_us,read_max_us.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "engines/engine.h"
#include "engines/events/events.h"
#include "fusefs/file_store.h"
#include "fusefs/layout.h"
#include "sync/file_system.h"

namespace {

using Clock = std::chrono::steady_clock;
using kvfs::engines::AsEventStore;
using kvfs::engines::Engine;
using kvfs::engines::EngineOptions;
using kvfs::engines::EventStore;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "events_bench: %s\n", what.c_str());
  std::exit(1);
}

std::string EventData(uint64_t n, size_t bytes) {
  std::string s = std::to_string(n) + ":";
  s.resize(bytes, static_cast<char>('a' + n % 26));
  return s;
}

// Runs argv, waits for it; dies unless it exits 0.
void Run(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) Die("fork failed");
  if (pid == 0) {
    ::execv(args[0], args.data());
    std::_Exit(127);
  }
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    Die(argv[0] + " " + argv[1] + " failed");
  }
}

struct Percentiles {
  double p50, p99, max;
};

Percentiles Summarise(std::vector<double> us) {
  std::sort(us.begin(), us.end());
  return {us[us.size() / 2], us[us.size() * 99 / 100], us.back()};
}

// A store holding one stream file "s" of n events, written through the file layer as the
// daemon writes it (sync mode none, one sync at the end). Returns the seconds it took.
double WriteStreamFile(const std::string& store, uint64_t n, size_t event_bytes) {
  std::filesystem::remove_all(store);
  if (::mkdir(store.c_str(), 0700) != 0) Die("mkdir " + store);
  EngineOptions o;
  o.sync_mode = kvfs::sync::SyncMode::kNone;
  o.background_work = false;
  auto e = kvfs::engines::OpenEngine("events", kvfs::sync::DefaultFileSystem(), store, o);
  if (!e.ok()) Die(e.status().ToString());
  auto files = kvfs::fusefs::FileStore::Open(std::move(*e), {});
  if (!files.ok()) Die(files.status().ToString());
  const kvfs::fusefs::Caller caller{::geteuid(), ::getegid(), 022};
  const auto t0 = Clock::now();
  auto attr = (*files)->Create(kvfs::fusefs::kRootId, "s", 0644, caller);
  if (!attr.ok()) Die(attr.status().ToString());
  uint64_t offset = 0;
  for (uint64_t k = 0; k < n; ++k) {
    const std::string data = EventData(k, event_bytes);
    auto w = (*files)->Write(attr->id, offset, data);
    if (!w.ok()) Die(w.status().ToString());
    offset += data.size();
  }
  if (!(*files)->SyncAll().ok()) Die("sync");
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  if (!(*files)->Close().ok()) Die("close");
  return s;
}

// Event K through the mount: open + read + close of its file in the view, timed.
void MeasureThroughMount(const std::string& kvfs, const std::string& mnt, const std::string& dir,
                         uint64_t n, size_t event_bytes, int reads) {
  const std::string store = dir + "/file-events-" + std::to_string(n);
  const double write_s = WriteStreamFile(store, n, event_bytes);
  const auto t0 = Clock::now();
  Run({kvfs, "mount", mnt, "--data", store, "--engine", "events"});
  const double mount_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  std::mt19937_64 rng(n);
  std::vector<double> us;
  us.reserve(reads);
  std::string buf(event_bytes + 1, '\0');
  for (int i = 0; i < reads; ++i) {
    const uint64_t k = rng() % n;
    char name[32];
    std::snprintf(name, sizeof name, "%020llu", static_cast<unsigned long long>(k));
    const std::string path = mnt + "/.events/s/" + name;
    const auto r0 = Clock::now();
    const int fd = ::open(path.c_str(), O_RDONLY);
    const ssize_t got = fd < 0 ? -1 : ::read(fd, buf.data(), buf.size());
    if (fd >= 0) ::close(fd);
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - r0).count());
    if (got < 0 ||
        std::string_view(buf.data(), static_cast<size_t>(got)) != EventData(k, event_bytes)) {
      Run({kvfs, "umount", mnt});
      Die("event " + std::to_string(k) + " through the mount");
    }
  }
  Run({kvfs, "umount", mnt});
  const Percentiles p = Summarise(us);
  std::printf(
      "mount,%llu,write_s=%.2f,mount_ms=%.1f,read_p50_us=%.2f,read_p99_us=%.2f,"
      "read_max_us=%.1f\n",
      static_cast<unsigned long long>(n), write_s, mount_ms, p.p50, p.p99, p.max);
  std::fflush(stdout);
  std::filesystem::remove_all(store);
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir;
  std::vector<uint64_t> counts = {1000, 1000000, 10000000};
  size_t event_bytes = 100;
  int reads = 20000;
  std::string kvfs;
  std::string mnt;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const std::string value = argv[i + 1];
    if (flag == "--dir") {
      dir = value;
    } else if (flag == "--counts") {
      counts.clear();
      std::stringstream in(value);
      for (std::string c; std::getline(in, c, ',');) counts.push_back(std::stoull(c));
    } else if (flag == "--event-bytes") {
      event_bytes = std::stoul(value);
    } else if (flag == "--reads") {
      reads = std::stoi(value);
    } else if (flag == "--kvfs") {
      kvfs = value;
    } else if (flag == "--mnt") {
      mnt = value;
    } else {
      Die("unknown flag " + flag);
    }
  }
  if (dir.empty() || kvfs.empty() != mnt.empty()) {
    Die("usage: events_bench --dir DIR [--counts N,...] [--event-bytes B] [--reads R] "
        "[--kvfs BIN --mnt MNT]");
  }
  if (!kvfs.empty()) {
    for (uint64_t n : counts) MeasureThroughMount(kvfs, mnt, dir, n, event_bytes, reads);
    return 0;
  }
  std::printf("events,append_s,reopen_ms,read_p50_us,read_p99_us,read_max_us\n");
  for (uint64_t n : counts) {
    const std::string store = dir + "/events-" + std::to_string(n);
    std::filesystem::remove_all(store);
    EngineOptions o;
    o.sync_mode = kvfs::sync::SyncMode::kNone;
    o.background_work = false;
    double append_s = 0;
    {
      auto e = kvfs::engines::OpenEngine("events", kvfs::sync::DefaultFileSystem(), store, o);
      if (!e.ok()) Die(e.status().ToString());
      EventStore* es = AsEventStore(e->get());
      const auto t0 = Clock::now();
      for (uint64_t k = 0; k < n; ++k) {
        auto r = es->Append("s", EventData(k, event_bytes), {});
        if (!r.ok()) Die(r.status().ToString());
      }
      if (!(*e)->Sync(kvfs::engines::SyncKind::kData).ok()) Die("sync");
      append_s = std::chrono::duration<double>(Clock::now() - t0).count();
      if (!(*e)->Close().ok()) Die("close");
    }
    const auto t0 = Clock::now();
    auto e = kvfs::engines::OpenEngine("events", kvfs::sync::DefaultFileSystem(), store, o);
    const double reopen_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    if (!e.ok()) Die(e.status().ToString());
    EventStore* es = AsEventStore(e->get());
    std::mt19937_64 rng(n);
    std::vector<double> us;
    us.reserve(reads);
    for (int i = 0; i < reads; ++i) {
      const uint64_t k = rng() % n;
      const auto r0 = Clock::now();
      auto ev = es->ReadEvent("s", k);
      us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - r0).count());
      if (!ev.ok() || *ev != EventData(k, event_bytes)) Die("event " + std::to_string(k));
    }
    const Percentiles p = Summarise(us);
    std::printf("%llu,%.2f,%.1f,%.2f,%.2f,%.1f\n", static_cast<unsigned long long>(n), append_s,
                reopen_ms, p.p50, p.p99, p.max);
    std::fflush(stdout);
    if (!(*e)->Close().ok()) Die("close");
    e->reset();
    std::filesystem::remove_all(store);
  }
  return 0;
}
