// engine_bench: one kvfs engine's throughput through the Engine interface. Not a test.
//
//   engine_bench --engine NAME --dir DIR [--keys N] [--value-bytes B] [--seconds S]
//
// Workloads (16-byte keys "key%012d"+padding, incompressible values of B bytes):
//   fillseq      N puts in key order, sync mode none, one Sync at the end
//   overwrite    N puts in random order over the same keys
//   readrandom   N gets of random existing keys
//   scan         every key and value in order; then 1,000 prefix scans of 100 keys each
//   reopen       Close and Open of the store holding N keys (recovery time); for bitcask also
//                after a merge: from hint files, and by scanning the merged data files
//   fillsync     puts in sync mode always from 1 and 4 threads, for S seconds each
// Prints ops/s per workload; compare engines (and peers) by running them in one session.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "engines/bitcask/bitcask.h"
#include "engines/engine.h"
#include "sync/posix_file_system.h"

namespace {

using Clock = std::chrono::steady_clock;
using kvfs::engines::EngineOptions;

struct Args {
  std::string engine = "bitcask";
  std::string dir;
  uint64_t keys = 1000000;
  size_t value_bytes = 100;
  double seconds = 5;
};

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "engine_bench: %s\n", what.c_str());
  std::exit(1);
}

void Check(const kvfs::Status& s, const char* what) {
  if (!s.ok()) Die(std::string(what) + ": " + s.ToString());
}

std::string Key(uint64_t i) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "key%013llu", static_cast<unsigned long long>(i));
  return std::string(buf, 16);  // 16 bytes for any i below 10^13
}

std::string RandomValue(std::mt19937_64& rng, size_t n) {
  std::string v(n, '\0');
  for (size_t i = 0; i < n; i += 8) {
    const uint64_t r = rng();
    for (size_t j = 0; j < 8 && i + j < n; ++j) v[i + j] = static_cast<char>(r >> (8 * j));
  }
  return v;
}

double Seconds(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

void Report(const char* name, uint64_t ops, double secs) {
  std::printf("%-12s %12.0f ops/s  (%llu ops in %.2f s)\n", name, static_cast<double>(ops) / secs,
              static_cast<unsigned long long>(ops), secs);
  std::fflush(stdout);
}

std::unique_ptr<kvfs::engines::Engine> Open(const Args& a, kvfs::sync::SyncMode mode) {
  EngineOptions o;
  o.sync_mode = mode;
  auto e = kvfs::engines::OpenEngine(a.engine, kvfs::sync::DefaultFileSystem(), a.dir, o);
  if (!e.ok()) Die("open: " + e.status().ToString());
  return std::move(*e);
}

Args Parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Die(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--engine") {
      a.engine = value();
    } else if (arg == "--dir") {
      a.dir = value();
    } else if (arg == "--keys") {
      a.keys = std::strtoull(value().c_str(), nullptr, 10);
    } else if (arg == "--value-bytes") {
      a.value_bytes = std::strtoul(value().c_str(), nullptr, 10);
    } else if (arg == "--seconds") {
      a.seconds = std::atof(value().c_str());
    } else {
      Die("usage: engine_bench --engine NAME --dir DIR [--keys N] [--value-bytes B] "
          "[--seconds S]");
    }
  }
  if (a.dir.empty()) Die("--dir is required");
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = Parse(argc, argv);
  std::filesystem::remove_all(a.dir);
  std::printf("engine_bench: %s in %s, %llu keys, %zu-byte values\n", a.engine.c_str(),
              a.dir.c_str(), static_cast<unsigned long long>(a.keys), a.value_bytes);
  std::mt19937_64 rng(42);
  std::vector<uint64_t> order(a.keys);
  for (uint64_t i = 0; i < a.keys; ++i) order[i] = i;

  auto engine = Open(a, kvfs::sync::SyncMode::kNone);
  auto start = Clock::now();
  for (uint64_t i = 0; i < a.keys; ++i)
    Check(engine->Put(Key(i), RandomValue(rng, a.value_bytes)), "put");
  Check(engine->Sync(kvfs::engines::SyncKind::kData), "sync");
  Report("fillseq", a.keys, Seconds(start));

  std::shuffle(order.begin(), order.end(), rng);
  start = Clock::now();
  for (uint64_t i : order) Check(engine->Put(Key(i), RandomValue(rng, a.value_bytes)), "put");
  Check(engine->Sync(kvfs::engines::SyncKind::kData), "sync");
  Report("overwrite", a.keys, Seconds(start));

  std::shuffle(order.begin(), order.end(), rng);
  start = Clock::now();
  uint64_t found = 0;
  for (uint64_t i : order) found += engine->Get(Key(i)).ok() ? 1 : 0;
  Report("readrandom", a.keys, Seconds(start));
  if (found != a.keys) Die("readrandom found " + std::to_string(found) + " keys");

  start = Clock::now();
  uint64_t scanned = 0;
  Check(engine->Scan({}, [&](std::string_view, std::string_view) { return ++scanned > 0; }),
        "scan");
  Report("scan", scanned, Seconds(start));
  start = Clock::now();
  uint64_t prefix_rows = 0;
  for (int i = 0; i < 1000; ++i) {
    kvfs::engines::ScanOptions so;
    so.prefix = Key(rng() % a.keys).substr(0, 14);  // a prefix shared by 100 keys
    Check(engine->Scan(so, [&](std::string_view, std::string_view) { return ++prefix_rows > 0; }),
          "prefix scan");
  }
  Report("prefixscan", 1000, Seconds(start));

  Check(engine->Close(), "close");
  engine.reset();
  start = Clock::now();
  engine = Open(a, kvfs::sync::SyncMode::kNone);
  std::printf("%-12s %12.3f s to reopen %llu keys\n", "reopen", Seconds(start),
              static_cast<unsigned long long>(a.keys));
  if (a.engine == "bitcask") {
    start = Clock::now();
    Check(engine->Compact(), "merge");
    // Often little is left to do here: the background merge runs during the fills.
    std::printf("%-12s %12.3f s for a final merge\n", "merge", Seconds(start));
    Check(engine->Close(), "close");
    engine.reset();
    for (bool hints : {true, false}) {
      EngineOptions o;
      o.sync_mode = kvfs::sync::SyncMode::kNone;
      o.background_work = false;
      kvfs::engines::BitcaskOptions bo;
      bo.use_hints = hints;
      kvfs::engines::BitcaskRecoveryReport report;
      start = Clock::now();
      auto e =
          kvfs::engines::OpenBitcaskWith(kvfs::sync::DefaultFileSystem(), a.dir, o, bo, &report);
      const double secs = Seconds(start);
      if (!e.ok()) Die("open: " + e.status().ToString());
      std::printf(
          "%-12s %12.3f s to reopen %llu keys after a merge, %s (%llu keys from hints, "
          "%llu entries scanned)\n",
          "reopen", secs, static_cast<unsigned long long>(a.keys),
          hints ? "from hint files" : "scanning data files",
          static_cast<unsigned long long>(report.keys_from_hints),
          static_cast<unsigned long long>(report.entries_scanned));
      Check((*e)->Close(), "close");
    }
  } else {
    Check(engine->Close(), "close");
    engine.reset();
  }

  for (int threads : {1, 4}) {
    engine = Open(a, kvfs::sync::SyncMode::kAlways);
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> ops{0};
    std::vector<std::thread> ts;
    start = Clock::now();
    for (int t = 0; t < threads; ++t) {
      ts.emplace_back([&, t] {
        std::mt19937_64 r(t);
        uint64_t n = 0;
        while (!stop.load(std::memory_order_relaxed)) {
          Check(engine->Put(Key(r() % a.keys), RandomValue(r, a.value_bytes)), "put");
          ++n;
        }
        ops += n;
      });
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(a.seconds));  // measuring window
    stop = true;
    for (auto& th : ts) th.join();
    const std::string name = "fillsync/" + std::to_string(threads);
    Report(name.c_str(), ops.load(), Seconds(start));
    Check(engine->Close(), "close");
    engine.reset();
  }
  return 0;
}
