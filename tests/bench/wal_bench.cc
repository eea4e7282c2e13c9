// wal_bench: what the write-ahead log's durability choices cost, side by side in one run on
// one disk. Not a test: it asserts nothing and prints ratios.
//
//   wal_bench [--dir DIR] [--seconds S] [--record-bytes N]
//
// Part 1: synced appends/s. The Wal in `always` mode from 1, 4 and 16 threads (group commit)
//         next to plain loops of pwrite+fdatasync per record: one thread on one growing file,
//         and N threads each on a growing file of its own (what N independent writers get).
// Part 2: one thread, pwrite+sync of each record, on a growing file, on a file preallocated
//         with fallocate, and on a file whose blocks were already written (zero-filled first);
//         each with fdatasync and with fsync.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "sync/posix_file_system.h"
#include "sync/wal.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Args {
  std::string dir = ".";
  double seconds = 3;
  size_t record_bytes = 4096;
};

void Die(const std::string& what) {
  std::fprintf(stderr, "wal_bench: %s\n", what.c_str());
  std::exit(1);
}

// Runs `op` from `threads` threads until `seconds` pass; returns operations per second.
template <typename Op>
double Run(int threads, double seconds, Op op) {
  std::atomic<uint64_t> ops{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> ts;
  const auto start = Clock::now();
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      uint64_t n = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        op(t, n);
        ++n;
      }
      ops += n;
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));  // the measuring window
  stop = true;
  for (auto& th : ts) th.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  return static_cast<double>(ops.load()) / elapsed;
}

enum class Layout { kGrowing, kFallocated, kZeroFilled };
constexpr uint64_t kFileSpan = uint64_t{256} << 20;  // wraps around within this many bytes

int OpenDataFile(const std::string& path, Layout layout) {
  int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) Die("open " + path + ": " + std::strerror(errno));
  if (layout == Layout::kFallocated && ::fallocate(fd, 0, 0, kFileSpan) != 0) {
    Die("fallocate " + path + ": " + std::strerror(errno));
  }
  if (layout == Layout::kZeroFilled) {
    std::string zeros(1 << 20, '\0');
    for (uint64_t off = 0; off < kFileSpan; off += zeros.size()) {
      if (::pwrite(fd, zeros.data(), zeros.size(), static_cast<off_t>(off)) < 0) Die("pwrite");
    }
  }
  if (layout != Layout::kGrowing && ::fsync(fd) != 0) Die("fsync " + path);
  return fd;
}

// One pwrite + sync per record on per-thread files, the plain way to make a record durable.
double PlainLoop(const Args& a, int threads, Layout layout, bool data_only) {
  std::vector<int> fds;
  for (int t = 0; t < threads; ++t) {
    fds.push_back(OpenDataFile(a.dir + "/plain-" + std::to_string(t), layout));
  }
  const std::string record(a.record_bytes, 'r');
  const double rate = Run(threads, a.seconds, [&](int t, uint64_t n) {
    const uint64_t off = (n * record.size()) % kFileSpan;
    if (::pwrite(fds[t], record.data(), record.size(), static_cast<off_t>(off)) !=
        static_cast<ssize_t>(record.size())) {
      Die("pwrite");
    }
    if ((data_only ? ::fdatasync(fds[t]) : ::fsync(fds[t])) != 0) Die("sync");
  });
  for (int t = 0; t < threads; ++t) {
    ::close(fds[t]);
    ::unlink((a.dir + "/plain-" + std::to_string(t)).c_str());
  }
  return rate;
}

double WalAlways(const Args& a, int threads, kvfs::sync::Preallocation preallocation) {
  kvfs::sync::PosixFileSystem fs;
  const std::string dir = a.dir + "/wal-bench-log";
  std::filesystem::remove_all(dir);
  kvfs::sync::WalOptions o;
  o.sync_mode = kvfs::sync::SyncMode::kAlways;
  o.preallocation = preallocation;
  auto wal = kvfs::sync::Wal::Open(&fs, dir, o, 0,
                                   [](uint64_t, std::string_view) { return kvfs::Status::OK(); });
  if (!wal.ok()) Die(wal.status().ToString());
  const std::string record(a.record_bytes, 'w');
  const double rate = Run(threads, a.seconds, [&](int, uint64_t) {
    auto lsn = (*wal)->Append(record);
    if (!lsn.ok()) Die(lsn.status().ToString());
  });
  const kvfs::sync::WalStats st = (*wal)->stats();
  std::printf("      (%llu appends, %llu syncs: %.1f appends per fdatasync, largest group %llu)\n",
              static_cast<unsigned long long>(st.appends),
              static_cast<unsigned long long>(st.syncs),
              st.syncs ? static_cast<double>(st.appends) / static_cast<double>(st.syncs) : 0.0,
              static_cast<unsigned long long>(st.max_group));
  (*wal).reset();
  std::filesystem::remove_all(dir);
  return rate;
}

Args Parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Die(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--dir")
      a.dir = value();
    else if (arg == "--seconds")
      a.seconds = std::atof(value().c_str());
    else if (arg == "--record-bytes")
      a.record_bytes = std::strtoul(value().c_str(), nullptr, 10);
    else
      Die("usage: wal_bench [--dir DIR] [--seconds S] [--record-bytes N]");
  }
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = Parse(argc, argv);
  std::printf("wal_bench: dir %s, %zu-byte records, %.1f s per measurement\n\n", a.dir.c_str(),
              a.record_bytes, a.seconds);

  std::printf("1. Synced appends/s: Wal(always) vs plain pwrite+fdatasync loops (growing files)\n");
  std::printf("   %-8s %14s %14s %14s %10s %10s\n", "threads", "wal always", "plain 1 file",
              "plain N files", "wal/1file", "wal/Nfiles");
  PlainLoop(a, 1, Layout::kGrowing, true);  // warm-up: the first seconds on a quiet disk lie
  const double plain_one = PlainLoop(a, 1, Layout::kGrowing, true);
  for (int threads : {1, 4, 16}) {
    const double wal = WalAlways(a, threads, kvfs::sync::Preallocation::kZeroFill);
    const double plain_n = threads == 1 ? plain_one : PlainLoop(a, threads, Layout::kGrowing, true);
    std::printf("   %-8d %14.0f %14.0f %14.0f %9.2fx %9.2fx\n", threads, wal, plain_one, plain_n,
                wal / plain_one, wal / plain_n);
  }
  const double wal_fallocate = WalAlways(a, 1, kvfs::sync::Preallocation::kFallocate);
  const double wal_growing = WalAlways(a, 1, kvfs::sync::Preallocation::kNone);
  std::printf("   Wal(always), 1 thread, segments fallocated: %.0f/s; growing: %.0f/s\n\n",
              wal_fallocate, wal_growing);

  std::printf("2. One thread, pwrite+sync per record, by file layout\n");
  std::printf("   %-26s %12s %12s %14s\n", "layout", "fdatasync/s", "fsync/s", "fdatasync/fsync");
  double growing_fdatasync = 0;
  for (auto [layout, name] : {std::pair{Layout::kGrowing, "growing file"},
                              std::pair{Layout::kFallocated, "preallocated (fallocate)"},
                              std::pair{Layout::kZeroFilled, "preallocated (zero-filled)"}}) {
    const double fdatasync_rate = PlainLoop(a, 1, layout, true);
    const double fsync_rate = PlainLoop(a, 1, layout, false);
    if (layout == Layout::kGrowing) growing_fdatasync = fdatasync_rate;
    std::printf("   %-26s %12.0f %12.0f %13.2fx   (%.2fx the growing file)\n", name, fdatasync_rate,
                fsync_rate, fdatasync_rate / fsync_rate, fdatasync_rate / growing_fdatasync);
  }
  return 0;
}
