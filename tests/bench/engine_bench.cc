// engine_bench: kvfs engines and peer libraries side by side, on identical workloads. Not a test.
//
//   engine_bench --dir DIR [--store S]... [--stores S,S,...] [--engine NAME] [--keys N]
//                [--value-bytes B] [--seconds S] [--threads 1,4,16] [--prefix-scans N]
//                [--cache-mb N] [--repeat N] [--md FILE] [--csv FILE]
//                [--perf-control FIFO --perf-workload NAME]
//
// Profiling one workload of one store:
//   mkfifo /tmp/ctl
//   perf record -D -1 --control fifo:/tmp/ctl -g -- engine_bench --store kvfs:lsm --dir DIR
//     --perf-control /tmp/ctl --perf-workload readrandom
//
// Stores: kvfs:ENGINE (any registered engine, through Engine/OpenEngine), leveldb, rocksdb,
// lmdb (those compiled in: see tests/bench/CMakeLists.txt), or "all". --engine NAME means
// --store kvfs:NAME. Default: kvfs:bitcask.
//
// Each store runs in its own forked process (so peak memory and /proc/self/io are its own)
// in a fresh subdirectory of DIR, one store after another; --repeat N does that N times over
// and reports each figure from the median round (with the range). Every store gets the same keys
// (16 bytes, "key" + 13 digits), the same incompressible values of B bytes and the same
// random orders (fixed seeds). Workloads, in this order:
//   fillseq       fresh store, N puts in key order, buffered, one Sync at the end
//   fillrandom    fresh store, N puts of distinct keys in random order, buffered, Sync at end
//   overwrite     N puts over the existing keys in another random order, Sync at end
//   readrandom    N gets of existing keys in random order (every value checked)
//   readseq       one full ordered scan of keys and values
//   prefixscan    scans of a 14-byte prefix shared by exactly 100 keys
//   reopen        close, then open of the store holding N keys (only the open is timed)
//   batch100      N puts over the existing keys in atomic batches of 100, Sync at end
//   deleterandom  N deletes of every key in random order, Sync at end
//   fillsync/T    fresh store, T threads putting random keys with every put durable, for S s
// Per workload: ops/s, p50/p99 latency per operation, peak RSS during it, bytes the process
// wrote to disk (/proc/self/io) per user byte, and the space the store directory uses after.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "tests/bench/bench_store.h"

namespace {

using Clock = std::chrono::steady_clock;
using kvfs::bench::BatchOp;
using kvfs::bench::BenchStore;
using kvfs::bench::StoreSpec;
using kvfs::bench::WriteMode;
namespace fs = std::filesystem;

struct Args {
  std::vector<std::string> stores;
  std::string dir;
  uint64_t keys = 1000000;
  size_t value_bytes = 100;
  double seconds = 5;
  std::vector<int> threads = {1, 4, 16};
  uint64_t prefix_scans = 0;  // 0: min(10,000, keys / 100)
  // Rounds: each runs every store once, in turn; a figure is the median round's.
  int repeat = 1;
  std::string md_path;
  std::string csv_path;
  std::string command;
  // --perf-control FIFO --perf-workload NAME: "enable" / "disable" are written to FIFO around
  // NAME's timed body, for `perf record -D -1 --control fifo:FIFO` (profile one workload).
  std::string perf_fifo;
  std::string perf_workload;
};

constexpr size_t kKeyBytes = 16;
constexpr size_t kBatch = 100;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "engine_bench: %s\n", what.c_str());
  std::exit(1);
}

void Check(const kvfs::Status& s, const std::string& what) {
  if (!s.ok()) Die(what + ": " + s.ToString());
}

std::string Key(uint64_t i) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "key%013llu", static_cast<unsigned long long>(i));
  return std::string(buf, kKeyBytes);  // 16 bytes for any i below 10^13
}

uint64_t Mix(uint64_t x) {  // splitmix64's finalizer
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Values are windows into a pool of random bytes: incompressible, distinct per (key, round),
// and free to produce (no generation inside the timed loops).
class Values {
 public:
  explicit Values(size_t value_bytes)
      : n_(value_bytes), pool_((size_t{4} << 20) + value_bytes, '\0') {
    std::mt19937_64 rng(301);
    for (size_t i = 0; i < pool_.size(); i += 8) {
      const uint64_t r = rng();
      std::memcpy(&pool_[i], &r, std::min<size_t>(8, pool_.size() - i));
    }
  }
  std::string_view Get(uint64_t key, uint64_t round) const {
    const size_t off = Mix(key * 8 + round) % (pool_.size() - n_);
    return {pool_.data() + off, n_};
  }

 private:
  size_t n_;
  std::string pool_;
};

std::vector<uint64_t> Permutation(uint64_t n, uint64_t seed) {
  std::vector<uint64_t> p(n);
  for (uint64_t i = 0; i < n; ++i) p[i] = i;
  std::mt19937_64 rng(seed);
  std::shuffle(p.begin(), p.end(), rng);
  return p;
}

// Latencies in ns, log-linear buckets (32 per power of two: within about 3%).
class Histogram {
 public:
  Histogram() : buckets_(kBuckets, 0) {}
  void Add(uint64_t ns) {
    ++buckets_[Index(ns)];
    ++count_;
  }
  void Merge(const Histogram& o) {
    for (size_t i = 0; i < kBuckets; ++i) buckets_[i] += o.buckets_[i];
    count_ += o.count_;
  }
  uint64_t count() const { return count_; }
  uint64_t Percentile(double p) const {
    if (count_ == 0) return 0;
    const uint64_t want = std::max<uint64_t>(1, static_cast<uint64_t>(std::ceil(p * count_)));
    uint64_t seen = 0;
    for (size_t i = 0; i < kBuckets; ++i) {
      seen += buckets_[i];
      if (seen >= want) return Mid(i);
    }
    return Mid(kBuckets - 1);
  }

 private:
  static constexpr size_t kSub = 32;
  static constexpr size_t kBuckets = 60 * kSub + 2 * kSub;
  static size_t Index(uint64_t v) {
    if (v < 2 * kSub) return v;
    const int shift = 63 - __builtin_clzll(v) - 5;
    return shift * kSub + (v >> shift);
  }
  static uint64_t Mid(size_t i) {
    if (i < 2 * kSub) return i;
    const size_t shift = i / kSub - 1;
    const uint64_t m = i % kSub + kSub;
    return (m << shift) + ((uint64_t{1} << shift) >> 1);
  }
  std::vector<uint64_t> buckets_;
  uint64_t count_ = 0;
};

uint64_t Ns(Clock::time_point a, Clock::time_point b) {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(b - a).count());
}

// ---- process and machine facts ----

struct IoCounters {
  uint64_t wchar = 0;       // bytes passed to write(2), pwrite(2) and friends
  uint64_t page_bytes = 0;  // write_bytes - cancelled_write_bytes: page cache dirtied
};

IoCounters ReadIo() {
  std::ifstream in("/proc/self/io");
  std::string name;
  uint64_t value = 0, written = 0, cancelled = 0;
  IoCounters io;
  while (in >> name >> value) {
    if (name == "wchar:") io.wchar = value;
    if (name == "write_bytes:") written = value;
    if (name == "cancelled_write_bytes:") cancelled = value;
  }
  io.page_bytes = written - std::min(written, cancelled);
  return io;
}

// Peak RSS since the last ResetPeakRss (VmHWM, reset through /proc/self/clear_refs); if the
// reset is refused, the process's peak so far.
bool ResetPeakRss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return out.good();
}

uint64_t PeakRssBytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("VmHWM:")) return std::strtoull(line.c_str() + 6, nullptr, 10) * 1024;
  }
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<uint64_t>(ru.ru_maxrss) * 1024;
}

uint64_t SpaceUsed(const std::string& dir) {  // like du: allocated blocks
  uint64_t total = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    struct stat st {};
    if (lstat(it->path().c_str(), &st) == 0 && !S_ISDIR(st.st_mode))
      total += static_cast<uint64_t>(st.st_blocks) * 512;
  }
  return total;
}

// Flushes every dirty page of the file system holding `dir`, so the write-back a workload left
// behind is not paid by the next one (or the next store).
void SyncFileSystem(const std::string& dir) {
  const int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;
  (void)syncfs(fd);
  close(fd);
}

std::string LoadAverage() {  // the 1-minute load average
  std::ifstream in("/proc/loadavg");
  std::string one;
  in >> one;
  return one;
}

std::string ReadFirst(const std::string& path, const std::string& prefix) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with(prefix)) {
      auto colon = line.find(':');
      std::string v = colon == std::string::npos ? line : line.substr(colon + 1);
      v.erase(0, v.find_first_not_of(" \t"));
      return v;
    }
  }
  return "?";
}

std::string Machine(const std::string& dir) {
  utsname u{};
  uname(&u);
  std::string canonical = fs::weakly_canonical(dir).string();
  std::ifstream mounts("/proc/self/mounts");
  std::string dev, mnt, type, rest, best_dev = "?", best_mnt, best_type = "?";
  while (mounts >> dev >> mnt >> type && std::getline(mounts, rest)) {
    const bool under = canonical == mnt || mnt == "/" || canonical.starts_with(mnt + "/");
    if (under && mnt.size() >= best_mnt.size()) best_dev = dev, best_mnt = mnt, best_type = type;
  }
  const uint64_t mem_kib =
      std::strtoull(ReadFirst("/proc/meminfo", "MemTotal").c_str(), nullptr, 10);
  std::ostringstream o;
  o << sysconf(_SC_NPROCESSORS_ONLN) << " CPUs (" << ReadFirst("/proc/cpuinfo", "model name")
    << "), " << (mem_kib >> 20) << " GiB RAM, Linux " << u.release << " " << u.machine
    << "; benchmark directory " << dir << " on " << best_type << " (" << best_dev << " at "
    << best_mnt << ")";
  return o.str();
}

std::string Now() {
  const std::time_t t = std::time(nullptr);
  char buf[64];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M UTC", std::gmtime(&t));
  return buf;
}

// ---- one result row ----

struct Row {
  std::string workload;
  std::string store;
  uint64_t ops = 0;
  double seconds = 0;
  uint64_t p50_ns = 0;  // 0: not a per-operation latency (readseq)
  uint64_t p99_ns = 0;
  uint64_t peak_rss = 0;
  uint64_t disk_bytes = 0;  // written through write(2)/pwrite(2) (wchar)
  uint64_t page_bytes = 0;  // page cache bytes dirtied (write_bytes - cancelled)
  uint64_t user_bytes = 0;
  uint64_t space_bytes = 0;
  // Filled in by Median: how many rounds measured this, and their lowest and highest ops/s.
  int runs = 1;
  double min_ops_per_sec = 0;
  double max_ops_per_sec = 0;
  double ops_per_sec() const { return seconds > 0 ? ops / seconds : 0; }
};

// One row per (workload, store) of several rounds' rows: the median round's row, whole (its
// latencies and bytes go with its throughput), with the range of ops/s across the rounds. With
// an even count, the lower of the two middle rounds. In the order the rows first appear.
std::vector<Row> Median(const std::vector<std::vector<Row>>& rounds) {
  std::vector<Row> out;
  std::set<std::pair<std::string, std::string>> done;
  for (const std::vector<Row>& first_round : rounds)
    for (const Row& first : first_round) {
      if (!done.insert({first.workload, first.store}).second) continue;
      std::vector<Row> same;
      for (const std::vector<Row>& round : rounds)
        for (const Row& r : round)
          if (r.workload == first.workload && r.store == first.store) same.push_back(r);
      std::sort(same.begin(), same.end(),
                [](const Row& a, const Row& b) { return a.ops_per_sec() < b.ops_per_sec(); });
      Row m = same[(same.size() - 1) / 2];
      m.runs = static_cast<int>(same.size());
      m.min_ops_per_sec = same.front().ops_per_sec();
      m.max_ops_per_sec = same.back().ops_per_sec();
      out.push_back(m);
    }
  return out;
}

std::string Serialize(const Row& r) {
  std::ostringstream o;
  o.precision(17);
  o << "row\t" << r.workload << "\t" << r.store << "\t" << r.ops << "\t" << r.seconds << "\t"
    << r.p50_ns << "\t" << r.p99_ns << "\t" << r.peak_rss << "\t" << r.disk_bytes << "\t"
    << r.page_bytes << "\t" << r.user_bytes << "\t" << r.space_bytes << "\n";
  return o.str();
}

bool Deserialize(const std::string& line, Row* r) {
  std::istringstream in(line);
  std::string tag;
  if (!std::getline(in, tag, '\t') || tag != "row") return false;
  std::getline(in, r->workload, '\t');
  std::getline(in, r->store, '\t');
  in >> r->ops >> r->seconds >> r->p50_ns >> r->p99_ns >> r->peak_rss >> r->disk_bytes >>
      r->page_bytes >> r->user_bytes >> r->space_bytes;
  return !in.fail();
}

// ---- the child: one store, every workload ----

class Runner {
 public:
  Runner(const Args& a, const StoreSpec& spec, const std::string& dir, int out_fd)
      : a_(a), spec_(spec), dir_(dir), out_fd_(out_fd), values_(a.value_bytes) {
    reset_rss_ok_ = ResetPeakRss();
  }

  void Run() {
    const uint64_t n = a_.keys;
    const uint64_t entry = kKeyBytes + a_.value_bytes;

    Measure(
        "fillseq", n * entry, [&] { Fresh(WriteMode::kBuffered); },
        [&](Histogram& h) {
          for (uint64_t i = 0; i < n; ++i)
            Op(h, [&] { return store_->Put(Key(i), values_.Get(i, 0)); });
          Check(store_->Sync(), "sync");
          return n;
        });

    Measure(
        "fillrandom", n * entry, [&] { Fresh(WriteMode::kBuffered); },
        [&](Histogram& h) {
          for (uint64_t i : Permutation(n, 1))
            Op(h, [&] { return store_->Put(Key(i), values_.Get(i, 0)); });
          Check(store_->Sync(), "sync");
          return n;
        });

    Measure("overwrite", n * entry, nullptr, [&](Histogram& h) {
      for (uint64_t i : Permutation(n, 2))
        Op(h, [&] { return store_->Put(Key(i), values_.Get(i, 1)); });
      Check(store_->Sync(), "sync");
      return n;
    });

    Measure("readrandom", 0, nullptr, [&](Histogram& h) {
      std::string value;
      uint64_t found = 0;
      for (uint64_t i : Permutation(n, 3)) {
        const std::string key = Key(i);
        const auto t0 = Clock::now();
        const kvfs::Status s = store_->Get(key, &value);
        h.Add(Ns(t0, Clock::now()));
        if (s.ok() && value == values_.Get(i, 1)) ++found;
      }
      if (found != n)
        Die(spec_.name + " readrandom: " + std::to_string(found) + " of " + std::to_string(n) +
            " keys found with the right value");
      return n;
    });

    Measure("readseq", 0, nullptr, [&](Histogram&) {
      uint64_t rows = 0, bytes = 0;
      Check(store_->Scan("", &rows, &bytes), "scan");
      if (rows != n) Die(spec_.name + " readseq: " + std::to_string(rows) + " rows");
      return rows;
    });

    const uint64_t groups = std::max<uint64_t>(1, n / 100);
    const uint64_t scans = a_.prefix_scans ? a_.prefix_scans : std::min<uint64_t>(10000, groups);
    Measure("prefixscan", 0, nullptr, [&](Histogram& h) {
      std::mt19937_64 rng(4);
      for (uint64_t s = 0; s < scans; ++s) {
        const std::string prefix = Key((rng() % groups) * 100).substr(0, 14);
        uint64_t rows = 0, bytes = 0;
        Op(h, [&] { return store_->Scan(prefix, &rows, &bytes); });
        if (n >= 100 && rows != 100)
          Die(spec_.name + " prefixscan: " + std::to_string(rows) + " rows");
      }
      return scans;
    });

    Check(store_->Close(), "close");
    store_.reset();
    Measure("reopen", 0, nullptr, [&](Histogram& h) {
      const auto t0 = Clock::now();
      Open(WriteMode::kBuffered);
      h.Add(Ns(t0, Clock::now()));
      return uint64_t{1};
    });

    Measure("batch100", n * entry, nullptr, [&](Histogram& h) {
      const std::vector<uint64_t> order = Permutation(n, 5);
      std::vector<std::string> keys(kBatch);
      std::vector<BatchOp> ops;
      for (uint64_t start = 0; start < n; start += kBatch) {
        ops.clear();
        for (uint64_t j = start; j < std::min(n, start + kBatch); ++j) {
          keys[j - start] = Key(order[j]);
          ops.push_back({false, keys[j - start], values_.Get(order[j], 2)});
        }
        Op(h, [&] { return store_->Apply(ops); });
      }
      Check(store_->Sync(), "sync");
      return n;
    });

    Measure("deleterandom", n * kKeyBytes, nullptr, [&](Histogram& h) {
      for (uint64_t i : Permutation(n, 6)) Op(h, [&] { return store_->Delete(Key(i)); });
      Check(store_->Sync(), "sync");
      return n;
    });
    std::string value;
    if (store_->Get(Key(n / 2), &value).code() != kvfs::StatusCode::kNotFound)
      Die(spec_.name + " deleterandom: a deleted key is still there");

    for (int threads : a_.threads) {
      std::atomic<uint64_t> total{0};
      Measure(
          "fillsync/" + std::to_string(threads), 0, [&] { Fresh(WriteMode::kSyncEachWrite); },
          [&](Histogram& h) {
            std::atomic<bool> stop{false};
            std::vector<Histogram> hs(threads);
            std::vector<std::thread> ts;
            for (int t = 0; t < threads; ++t) {
              ts.emplace_back([&, t] {
                std::mt19937_64 rng(1000 + t);
                uint64_t ops = 0;
                while (!stop.load(std::memory_order_relaxed)) {
                  const uint64_t i = rng() % n;
                  const std::string key = Key(i);
                  const std::string_view v = values_.Get(i, 3 + ops % 4);
                  const auto t0 = Clock::now();
                  Check(store_->Put(key, v), "synced put");
                  hs[t].Add(Ns(t0, Clock::now()));
                  ++ops;
                }
                total += ops;
              });
            }
            std::this_thread::sleep_for(std::chrono::duration<double>(a_.seconds));
            stop = true;
            for (auto& th : ts) th.join();
            for (const Histogram& x : hs) h.Merge(x);
            return total.load();
          },
          &total, entry);
    }
    Check(store_->Close(), "close");
    store_.reset();
  }

 private:
  template <typename Fn>
  void Op(Histogram& h, const Fn& fn) {
    const auto t0 = Clock::now();
    const kvfs::Status s = fn();
    h.Add(Ns(t0, Clock::now()));
    if (!s.ok()) Die(spec_.name + ": " + s.ToString());
  }

  void Open(WriteMode mode) {
    auto s = kvfs::bench::OpenStore(spec_, dir_, mode);
    if (!s.ok()) Die(spec_.name + " open: " + s.status().ToString());
    store_ = std::move(*s);
  }

  void Fresh(WriteMode mode) {
    if (store_) Check(store_->Close(), "close");
    store_.reset();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    Open(mode);
  }

  // Runs `setup` (its disk writes count, its time does not), then times `body`, which returns
  // the number of operations. `user_bytes` is the key and value bytes the workload writes; for
  // fillsync it is the ops count (via *ops_counter) times `entry_bytes`.
  template <typename Setup, typename Body>
  void Measure(const std::string& name, uint64_t user_bytes, const Setup& setup, const Body& body,
               std::atomic<uint64_t>* ops_counter = nullptr, uint64_t entry_bytes = 0) {
    SyncFileSystem(fs::path(dir_).parent_path().string());
    if (reset_rss_ok_) ResetPeakRss();
    const IoCounters io0 = ReadIo();
    if constexpr (!std::is_same_v<Setup, std::nullptr_t>) setup();
    Histogram h;
    const bool profiled = !a_.perf_fifo.empty() && name == a_.perf_workload;
    if (profiled) PerfControl("enable");
    const auto t0 = Clock::now();
    const uint64_t ops = body(h);
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    if (profiled) PerfControl("disable");
    Row r;
    r.workload = name;
    r.store = spec_.name;
    r.ops = ops;
    r.seconds = secs;
    if (name != "readseq") {
      r.p50_ns = h.Percentile(0.50);
      r.p99_ns = h.Percentile(0.99);
    }
    r.peak_rss = PeakRssBytes();
    const IoCounters io1 = ReadIo();
    r.disk_bytes = io1.wchar - io0.wchar;
    r.page_bytes = io1.page_bytes - std::min(io1.page_bytes, io0.page_bytes);
    r.user_bytes = ops_counter ? ops_counter->load() * entry_bytes : user_bytes;
    r.space_bytes = SpaceUsed(dir_);
    const std::string shape = store_ ? store_->Shape() : "";
    std::fprintf(stderr, "  %-14s %-13s %12.0f ops/s  p50 %8.1f us  p99 %8.1f us%s%s\n",
                 spec_.name.c_str(), name.c_str(), r.ops_per_sec(), r.p50_ns / 1e3, r.p99_ns / 1e3,
                 shape.empty() ? "" : "  after: ", shape.c_str());
    const std::string line = Serialize(r);
    if (write(out_fd_, line.data(), line.size()) != static_cast<ssize_t>(line.size()))
      Die("write to parent");
  }

  void PerfControl(const char* command) {
    std::ofstream fifo(a_.perf_fifo);
    fifo << command << "\n";
    if (!fifo.flush()) Die("cannot write to " + a_.perf_fifo);
  }

  const Args& a_;
  const StoreSpec& spec_;
  const std::string dir_;
  const int out_fd_;
  const Values values_;
  bool reset_rss_ok_ = false;
  std::unique_ptr<BenchStore> store_;
};

// Runs one store in a forked child; returns its rows, or an error description.
std::vector<Row> RunForked(const Args& a, const StoreSpec& spec, std::string* error) {
  std::string sub = spec.name;
  std::replace(sub.begin(), sub.end(), ':', '-');
  const std::string store_dir = (fs::path(a.dir) / sub).string();
  int fds[2];
  if (pipe(fds) != 0) Die("pipe");
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = fork();
  if (pid < 0) Die("fork");
  if (pid == 0) {
    close(fds[0]);
    fs::remove_all(store_dir);
    Runner(a, spec, store_dir, fds[1]).Run();
    fs::remove_all(store_dir);
    std::fflush(stderr);
    _exit(0);
  }
  close(fds[1]);
  std::string buf;
  char chunk[4096];
  ssize_t got;
  while ((got = read(fds[0], chunk, sizeof(chunk))) > 0) buf.append(chunk, got);
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  std::vector<Row> rows;
  std::istringstream in(buf);
  std::string line;
  while (std::getline(in, line)) {
    Row r;
    if (Deserialize(line, &r)) rows.push_back(r);
  }
  if (WIFSIGNALED(status)) {
    *error = "killed by signal " + std::to_string(WTERMSIG(status));
  } else if (WEXITSTATUS(status) != 0) {
    *error = "exited with status " + std::to_string(WEXITSTATUS(status));
  }
  return rows;
}

// ---- output ----

std::string Thousands(double v) {
  const long long n = std::llround(v);
  const std::string digits = std::to_string(n < 0 ? -n : n);
  std::string out = n < 0 ? "-" : "";
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(digits[i]);
  }
  return out;
}

std::string Fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
  return buf;
}

std::string Us(uint64_t ns) {
  if (ns == 0) return "-";
  return ns >= 100000 ? Thousands(ns / 1e3) : Fixed(ns / 1e3, 1);
}

std::string Mib(uint64_t b) { return Fixed(b / 1048576.0, 1); }

std::string Amp(const Row& r) {
  return r.user_bytes ? Fixed(double(r.disk_bytes) / r.user_bytes, 2) : "-";
}

const Row* Find(const std::vector<Row>& rows, const std::string& workload,
                const std::string& store) {
  for (const Row& r : rows)
    if (r.workload == workload && r.store == store) return &r;
  return nullptr;
}

const char* const kPeers[] = {"leveldb", "rocksdb", "lmdb"};
const char* const kPeerTitles[] = {"LevelDB", "RocksDB", "LMDB"};

// kvfs ops/s over the peer's, for a kvfs row; "" otherwise.
std::string Ratio(const std::vector<Row>& rows, const Row& r, const char* peer) {
  if (!r.store.starts_with("kvfs:")) return "";
  const Row* p = Find(rows, r.workload, peer);
  if (p == nullptr || p->ops_per_sec() <= 0) return "";
  return Fixed(r.ops_per_sec() / p->ops_per_sec(), 2);
}

std::string Markdown(const Args& a, const std::string& machine, const std::string& date,
                     const std::vector<StoreSpec>& specs, const std::vector<Row>& rows,
                     const std::vector<std::string>& workloads,
                     const std::vector<std::string>& notes,
                     const std::map<std::string, std::string>& loads) {
  std::ostringstream o;
  o << "# kvfs engines and peers, side by side\n\n";
  o << "Generated by `tests/bench/engine_bench` (" << date << "): `" << a.command << "`\n\n";
  o << "- Machine: " << machine << "\n";
  o << "- Workload size: " << Thousands(a.keys) << " keys of " << kKeyBytes << " bytes, "
    << a.value_bytes << "-byte incompressible values; synced fills run " << a.seconds
    << " s per thread count.\n";
  if (a.repeat > 1) {
    o << "- Each store ran alone, in its own process, in a fresh directory, one after another, in "
      << a.repeat
      << " rounds (every store once per round, so drift on the shared machine hits them alike). "
         "Every figure is the median round's; the throughput table gives the lowest and highest "
         "round in brackets.\n\n";
  } else {
    o << "- Each store ran alone, in its own process, in a fresh directory, one after another "
         "(one run: figures drift between runs on a shared machine; compare within a table).\n\n";
  }
  o << "## Stores\n\n| store | version | settings | load average (1 min) before, after "
       "|\n|---|---|---|---|\n";
  for (const StoreSpec& s : specs) {
    auto load = loads.find(s.name);
    o << "| " << s.name << " | " << (s.available ? s.version : "-") << " | "
      << (s.available ? s.settings : "not run: " + s.why_not) << " | "
      << (load == loads.end() ? "-" : load->second) << " |\n";
  }
  o << "\nThe machine has 2 CPUs and one disk: a load average well above 0 means something "
       "else ran beside the benchmark (synced-write figures suffer first).\n";
  for (const std::string& n : notes) o << "\n**" << n << "**\n";

  std::vector<std::string> ran;
  for (const StoreSpec& s : specs)
    if (Find(rows, "fillseq", s.name) || Find(rows, "fillrandom", s.name)) ran.push_back(s.name);
  std::vector<std::string> peers_ran;
  for (const char* p : kPeers)
    if (std::find(ran.begin(), ran.end(), p) != ran.end()) peers_ran.push_back(p);

  o << "\n## Throughput, operations per second (higher is better; reopen: its time)\n\n"
       "Ratios: kvfs ops/s over the peer's (above 1: kvfs is faster; for reopen, the peer's "
       "time over kvfs's).\n\n| workload |";
  for (const std::string& s : ran) o << " " << s << " |";
  for (const std::string& s : ran)
    if (s.starts_with("kvfs:"))
      for (const std::string& p : peers_ran) o << " " << s.substr(5) << " / " << p << " |";
  o << "\n|---|";
  for (size_t i = 0; i < ran.size(); ++i) o << "---:|";
  for (const std::string& s : ran)
    if (s.starts_with("kvfs:"))
      for (size_t i = 0; i < peers_ran.size(); ++i) o << "---:|";
  o << "\n";
  for (const std::string& w : workloads) {
    o << "| " << w << " |";
    for (const std::string& s : ran) {
      const Row* r = Find(rows, w, s);
      if (r == nullptr) {
        o << " - |";
      } else if (w == "reopen") {  // one operation: show its time
        o << " " << Fixed(r->seconds * 1e3, 1) << " ms";
        if (r->runs > 1) {
          o << " (" << Fixed(1e3 / r->max_ops_per_sec, 1) << "-"
            << Fixed(1e3 / r->min_ops_per_sec, 1) << ")";
        }
        o << " |";
      } else {
        o << " " << Thousands(r->ops_per_sec());
        if (r->runs > 1) {
          o << " (" << Thousands(r->min_ops_per_sec) << "-" << Thousands(r->max_ops_per_sec) << ")";
        }
        o << " |";
      }
    }
    for (const std::string& s : ran) {
      if (!s.starts_with("kvfs:")) continue;
      const Row* r = Find(rows, w, s);
      for (const std::string& p : peers_ran)
        o << " " << (r ? Ratio(rows, *r, p.c_str()) : "") << " |";
    }
    o << "\n";
  }

  o << "\n## Every measurement\n\n"
       "| workload | store | ops/s | p50 us | p99 us | peak RSS MiB | written MiB | write "
       "amp | space MiB |";
  for (const char* t : kPeerTitles) o << " kvfs/" << t << " |";
  o << "\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const std::string& w : workloads) {
    for (const std::string& s : ran) {
      const Row* r = Find(rows, w, s);
      if (r == nullptr) continue;
      o << "| " << w << " | " << s << " | " << Thousands(r->ops_per_sec()) << " | " << Us(r->p50_ns)
        << " | " << Us(r->p99_ns) << " | " << Mib(r->peak_rss) << " | " << Mib(r->disk_bytes)
        << " | " << Amp(*r) << " | " << Mib(r->space_bytes) << " |";
      for (const char* p : kPeers) o << " " << Ratio(rows, *r, p) << " |";
      o << "\n";
    }
  }

  o << R"(
## How to read this

- **Workloads** (same keys, values, orders and seeds for every store): `fillseq` N puts in key
  order into a fresh store; `fillrandom` N distinct keys in random order into a fresh store;
  `overwrite` N puts over those keys in another random order; `readrandom` N gets of existing
  keys in random order, every value checked; `readseq` one full ordered scan (ops = rows; no
  per-op latency); `prefixscan` scans of a 14-byte prefix matching exactly 100 keys (ops =
  scans); `reopen` the open of the store holding N keys after a close (ops/s = 1 / seconds;
  p50 = the open time; the close is not timed: kvfs's LSM flushes its memtables there, so its
  open replays no log, where LevelDB and RocksDB replay theirs at open); `batch100` N puts over the existing keys in atomic batches of 100
  (ops = puts, latency per batch); `deleterandom` a delete of every key in random order;
  `fillsync/T` T threads putting random keys into a fresh store, every put durable before it
  returns, for the stated seconds.
- **Buffered writes** (every workload but fillsync) end with one sync inside the timed
  window, so every store's data is durable at the end of what is measured. What buffered and
  synced mean per store is in the Stores table: kvfs sync mode none / always;
  LevelDB and RocksDB `WriteOptions.sync` false / true; LMDB has no unsynced mode at its
  default flags, so buffered writes are grouped 1,000 per durable transaction and synced
  writes are one durable transaction each.
- Before each workload the file system is synced (syncfs, untimed), so no workload pays
  for write-back another one left behind.
- **Latency**: every operation is timed (steady_clock around the call) into a log-linear
  histogram (about 3% resolution); p50 and p99 per operation, in microseconds.
- **Peak RSS**: the store's process high-water mark during the workload (VmHWM, reset before
  each workload through /proc/self/clear_refs), including the bench's own key orders
  (8 bytes per key) and a 4 MiB value pool.
- **Written**: bytes the store's process passed to write(2)/pwrite(2) during the workload
  (`wchar` of /proc/self/io, all threads): log appends, table and page writes, compactions,
  merges, zero-filled log segments. It counts what the engine writes, not what the device
  does: a synced 116-byte append costs a whole 4 KiB block (and journal blocks) on the disk.
  Stores that write through mmap would be undercounted (none here does: LMDB runs without
  MDB_WRITEMAP). For fresh-store workloads the open is included (Bitcask zero-fills its first
  64 MiB log segment there). Background flushes and compactions that run after a workload
  ends are charged to the next one. **Write amp** = written / user bytes (key + value per
  put, key per delete). The CSV also has `page_dirty_bytes` (`write_bytes -
  cancelled_write_bytes`), which on this kernel counts a whole large folio each time one is
  dirtied again after a sync (up to 1 MiB per synced append into Bitcask's zero-filled
  segments), so it overstates device writes and is not used for the ratio.
- **Space**: blocks allocated under the store directory after the workload (like `du`),
  including preallocated log segments.
- **Ratios** are kvfs ops/s over the peer's ops/s on the same workload (above 1: kvfs is
  faster).
)";
  return o.str();
}

std::string Csv(const std::vector<Row>& rows) {
  std::ostringstream o;
  o << "workload,store,ops,seconds,ops_per_sec,p50_us,p99_us,peak_rss_bytes,disk_write_bytes,"
       "page_dirty_bytes,user_bytes,write_amp,space_bytes,kvfs_over_leveldb,kvfs_over_rocksdb,kvfs_"
       "over_lmdb,runs,ops_per_sec_min,ops_per_sec_max\n";
  for (const Row& r : rows) {
    o << r.workload << "," << r.store << "," << r.ops << "," << Fixed(r.seconds, 6) << ","
      << Fixed(r.ops_per_sec(), 1) << "," << (r.p50_ns ? Fixed(r.p50_ns / 1e3, 2) : "") << ","
      << (r.p99_ns ? Fixed(r.p99_ns / 1e3, 2) : "") << "," << r.peak_rss << "," << r.disk_bytes
      << "," << r.page_bytes << "," << r.user_bytes << "," << (r.user_bytes ? Amp(r) : "") << ","
      << r.space_bytes;
    for (const char* p : kPeers) o << "," << Ratio(rows, r, p);
    o << "," << r.runs << "," << Fixed(r.runs > 1 ? r.min_ops_per_sec : r.ops_per_sec(), 1) << ","
      << Fixed(r.runs > 1 ? r.max_ops_per_sec : r.ops_per_sec(), 1) << "\n";
  }
  return o.str();
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  if (!out.good()) Die("cannot write " + path);
}

// ---- arguments ----

void AddStores(Args* a, const std::string& list) {
  std::istringstream in(list);
  std::string s;
  while (std::getline(in, s, ',')) {
    if (s == "all") {
      for (const std::string& n : kvfs::bench::AllStoreNames()) a->stores.push_back(n);
    } else if (!s.empty()) {
      a->stores.push_back(s);
    }
  }
}

Args Parse(int argc, char** argv) {
  Args a;
  for (int i = 0; i < argc; ++i) {
    if (i > 0) a.command += ' ';
    a.command += argv[i];
  }
  const char* usage =
      "usage: engine_bench --dir DIR [--store kvfs:ENGINE|leveldb|rocksdb|lmdb|all]... "
      "[--stores S,S,...] [--engine NAME] [--keys N] [--value-bytes B] [--seconds S] "
      "[--threads 1,4,16] [--prefix-scans N] [--cache-mb N] [--repeat N] [--md FILE] "
      "[--csv FILE] [--perf-control FIFO --perf-workload NAME]";
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Die(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--store" || arg == "--stores") {
      AddStores(&a, value());
    } else if (arg == "--engine") {
      a.stores.push_back("kvfs:" + value());
    } else if (arg == "--dir") {
      a.dir = value();
    } else if (arg == "--keys") {
      a.keys = std::strtoull(value().c_str(), nullptr, 10);
    } else if (arg == "--value-bytes") {
      a.value_bytes = std::strtoul(value().c_str(), nullptr, 10);
    } else if (arg == "--seconds") {
      a.seconds = std::atof(value().c_str());
    } else if (arg == "--threads") {
      a.threads.clear();
      std::istringstream in(value());
      std::string t;
      while (std::getline(in, t, ',')) a.threads.push_back(std::atoi(t.c_str()));
    } else if (arg == "--prefix-scans") {
      a.prefix_scans = std::strtoull(value().c_str(), nullptr, 10);
    } else if (arg == "--repeat") {
      a.repeat = std::atoi(value().c_str());
    } else if (arg == "--md") {
      a.md_path = value();
    } else if (arg == "--csv") {
      a.csv_path = value();
    } else if (arg == "--cache-mb") {
      kvfs::bench::SetBlockCacheBytes(std::strtoull(value().c_str(), nullptr, 10) << 20);
    } else if (arg == "--perf-control") {
      a.perf_fifo = value();
    } else if (arg == "--perf-workload") {
      a.perf_workload = value();
    } else {
      Die(usage);
    }
  }
  if (a.dir.empty()) Die(std::string("--dir is required\n") + usage);
  if (a.keys == 0 || a.value_bytes == 0) Die("--keys and --value-bytes must be positive");
  if (a.repeat < 1) Die("--repeat takes a positive count");
  for (int t : a.threads)
    if (t <= 0) Die("--threads takes positive counts");
  if (a.stores.empty()) a.stores.push_back("kvfs:bitcask");
  std::vector<std::string> unique;
  for (const std::string& s : a.stores)
    if (std::find(unique.begin(), unique.end(), s) == unique.end()) unique.push_back(s);
  a.stores = unique;
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = Parse(argc, argv);
  fs::create_directories(a.dir);
  const std::string machine = Machine(a.dir);
  const std::string date = Now();
  std::fprintf(stderr, "engine_bench %s\n  %s\n  %llu keys, %zu-byte values, stores:", date.c_str(),
               machine.c_str(), static_cast<unsigned long long>(a.keys), a.value_bytes);
  for (const std::string& s : a.stores) std::fprintf(stderr, " %s", s.c_str());
  std::fprintf(stderr, "\n");

  std::vector<StoreSpec> specs;
  for (const std::string& name : a.stores) {
    specs.push_back(kvfs::bench::DescribeStore(name));
    if (!specs.back().available) {
      std::fprintf(stderr, "skipping %s: %s\n", name.c_str(), specs.back().why_not.c_str());
    }
  }
  std::vector<std::vector<Row>> rounds(a.repeat);
  std::vector<std::string> notes;
  std::map<std::string, std::string> first_load;  // each store's load before its first round
  std::map<std::string, std::string> loads;       // that, and the load after its last round
  for (int round = 0; round < a.repeat; ++round) {
    for (const StoreSpec& spec : specs) {
      if (!spec.available) continue;
      std::fprintf(stderr, "%s %s (round %d of %d)\n", spec.name.c_str(), spec.version.c_str(),
                   round + 1, a.repeat);
      std::string error;
      first_load.emplace(spec.name, LoadAverage());  // kept from round 1
      std::vector<Row> got = RunForked(a, spec, &error);
      loads[spec.name] = first_load[spec.name] + ", " + LoadAverage();
      rounds[round].insert(rounds[round].end(), got.begin(), got.end());
      if (!error.empty()) {
        notes.push_back(spec.name + " stopped early in round " + std::to_string(round + 1) + " (" +
                        error + "); its missing rows were not measured.");
        std::fprintf(stderr, "%s\n", notes.back().c_str());
      }
    }
  }
  // A store that stopped early in some round has fewer runs for the rows it missed there.
  const std::vector<Row> rows = Median(rounds);

  std::vector<std::string> workloads;
  for (const Row& r : rows)
    if (std::find(workloads.begin(), workloads.end(), r.workload) == workloads.end())
      workloads.push_back(r.workload);
  const std::string md = Markdown(a, machine, date, specs, rows, workloads, notes, loads);
  std::fputs(md.c_str(), stdout);
  if (!a.md_path.empty()) WriteFile(a.md_path, md);
  if (!a.csv_path.empty()) WriteFile(a.csv_path, Csv(rows));
  return notes.empty() ? 0 : 2;
}
