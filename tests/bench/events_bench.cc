// events_bench: the event store at the engine level. For each stream length N it appends N
// events of --event-bytes to one stream (sync mode none, one sync at the end), closes, then
// measures the reopen (the index rebuilt from the keys) and the latency of reading event K for
// random K (EventStore::ReadEvent: one index lookup, one pread). Not a test: it asserts only
// that each event read back is the one written.
//
//   events_bench --dir DIR [--counts 1000,1000000,10000000] [--event-bytes 100] [--reads 20000]
//
// Prints one CSV line per N: events,append_s,reopen_ms,read_p50_us,read_p99_us,read_max_us.
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

}  // namespace

int main(int argc, char** argv) {
  std::string dir;
  std::vector<uint64_t> counts = {1000, 1000000, 10000000};
  size_t event_bytes = 100;
  int reads = 20000;
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
    } else {
      Die("unknown flag " + flag);
    }
  }
  if (dir.empty()) Die("usage: events_bench --dir DIR [--counts N,...] [--event-bytes B]");
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
    std::sort(us.begin(), us.end());
    std::printf("%llu,%.2f,%.1f,%.2f,%.2f,%.1f\n", static_cast<unsigned long long>(n), append_s,
                reopen_ms, us[us.size() / 2], us[us.size() * 99 / 100], us.back());
    std::fflush(stdout);
    if (!(*e)->Close().ok()) Die("close");
    e->reset();
    std::filesystem::remove_all(store);
  }
  return 0;
}
