// etcd_bench: synced 4 KiB puts through the etcd engine against plain etcd puts from the same
// client code (engines/etcd/etcd_client.h), at 1, 4 and 16 threads, on a 3-member etcd
// cluster the bench starts on loopback (tests/engines/etcd_cluster.h). Not a test.
//
//   etcd_bench [--seconds S] [--threads 1,4,16] [--value-bytes B] [--mount KVFS --rounds R]
//
// Engine: each thread Puts a random key of its own (prefix "bench/") then Syncs (kData): what a
// synced write costs through the Engine interface (one txn, then a Sync that waits for
// nothing). Plain: each thread POSTs /v3/kv/put of the same keys and values through EtcdClient.
// Per row: ops/s, p50 and p99 latency, and the engine's ops/s over plain's.
//
// With --mount KVFS (the kvfs binary): the benchmark instead. `KVFS mount -f` serves a
// store on the same cluster (prefix "mountbench/"), and each thread appends B bytes to a file of
// its own through the mount and fdatasyncs it, against plain puts of B bytes at the same
// concurrency; R rounds alternate the two, each row giving mount / plain.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "engines/engine.h"
#include "engines/etcd/etcd_client.h"
#include "sync/fault_file_system.h"
#include "tests/engines/etcd_cluster.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Row {
  double ops_per_s = 0;
  double p50_us = 0, p99_us = 0;
};

// Runs `op(thread, i)` on `threads` threads for `seconds`; every op must succeed.
template <typename Op>
Row Run(int threads, double seconds, const Op& op) {
  std::atomic<bool> stop{false};
  std::vector<std::vector<double>> lat(threads);
  std::vector<std::thread> ts;
  const auto start = Clock::now();
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      for (uint64_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
        const auto a = Clock::now();
        if (!op(t, i)) {
          std::fprintf(stderr, "etcd_bench: an operation failed\n");
          std::exit(1);
        }
        lat[t].push_back(std::chrono::duration<double, std::micro>(Clock::now() - a).count());
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));  // the measured window
  stop = true;
  for (auto& th : ts) th.join();
  const double took = std::chrono::duration<double>(Clock::now() - start).count();
  std::vector<double> all;
  for (auto& l : lat) all.insert(all.end(), l.begin(), l.end());
  std::sort(all.begin(), all.end());
  Row r;
  r.ops_per_s = static_cast<double>(all.size()) / took;
  if (!all.empty()) {
    r.p50_us = all[all.size() / 2];
    r.p99_us = all[std::min(all.size() - 1, all.size() * 99 / 100)];
  }
  return r;
}

std::string Key(int t, uint64_t i, uint64_t salt) {
  return "t" + std::to_string(t) + "/" + std::to_string((i * 2654435761u + salt) % 100000);
}

// st_dev of `path`, or 0.
dev_t DevOf(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? st.st_dev : 0;
}

// `kvfs mount MNT --config CFG -f` as a child, live once MNT's st_dev differs from its parent's
// (polled, 30 s at most); its pid, or -1.
pid_t MountKvfs(const std::string& kvfs, const std::string& mnt, const std::string& config,
                const std::string& log) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    ::execl(kvfs.c_str(), kvfs.c_str(), "mount", mnt.c_str(), "--config", config.c_str(), "-f",
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  const auto until = Clock::now() + std::chrono::seconds(30);
  while (Clock::now() < until) {
    if (DevOf(mnt) != DevOf(mnt + "/..")) return pid;
    if (::waitpid(pid, nullptr, WNOHANG) == pid) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // polling the mount, not a sync
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 5;
  std::vector<int> thread_counts = {1, 4, 16};
  size_t value_bytes = 4096;
  std::string kvfs_binary;
  int rounds = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--mount") == 0) kvfs_binary = argv[i + 1];
    if (std::strcmp(argv[i], "--rounds") == 0) rounds = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--seconds") == 0) seconds = std::atof(argv[i + 1]);
    if (std::strcmp(argv[i], "--value-bytes") == 0)
      value_bytes = std::strtoul(argv[i + 1], nullptr, 10);
    if (std::strcmp(argv[i], "--threads") == 0) {
      thread_counts.clear();
      std::string s = argv[i + 1];
      for (size_t p = 0; p <= s.size();) {
        const size_t c = std::min(s.find(',', p), s.size());
        thread_counts.push_back(std::atoi(s.substr(p, c - p).c_str()));
        p = c + 1;
      }
    }
  }
  kvfs::test::EtcdCluster cluster;
  if (kvfs::Status s = cluster.Start(); !s.ok()) {
    std::fprintf(stderr, "etcd_bench: cluster: %s\n", s.ToString().c_str());
    return 1;
  }
  std::string value(value_bytes, '\0');
  std::mt19937_64 rng(42);
  for (char& c : value) c = static_cast<char>(rng());

  kvfs::sync::FaultFileSystem fs(1);
  kvfs::engines::EngineOptions o;
  o.settings = {{"endpoints", cluster.endpoints()}, {"prefix", "bench/"}};
  auto engine = kvfs::engines::OpenEngine("etcd", &fs, "/bench", o);
  if (!engine.ok()) {
    std::fprintf(stderr, "etcd_bench: open: %s\n", engine.status().ToString().c_str());
    return 1;
  }
  kvfs::engines::etcd::ClientSettings client_settings;
  client_settings.endpoints = {cluster.client_url(0), cluster.client_url(1), cluster.client_url(2)};
  client_settings.timeout = std::chrono::milliseconds(5000);
  kvfs::engines::etcd::EtcdClient client(client_settings);
  const std::string value64 = kvfs::engines::etcd::Base64(value);

  if (!kvfs_binary.empty()) {
    const std::string base = cluster.dir() + "/kvfs";
    const std::string mnt = base + "/mnt", config = base + "/kvfs.toml";
    std::filesystem::create_directories(mnt);
    std::filesystem::create_directories(base + "/data");
    std::filesystem::permissions(base + "/data", std::filesystem::perms::owner_all);  // private
    {
      std::ofstream out(config);
      out << "[[store]]\nname = \"e\"\nengine = \"etcd\"\ndata_dir = \"" << base
          << "/data\"\n[store.options]\nendpoints = \"" << cluster.endpoints()
          << "\"\nprefix = \"mountbench/\"\ntimeout_ms = \"5000\"\n";
    }
    const pid_t daemon = MountKvfs(kvfs_binary, mnt, config, base + "/daemon.log");
    if (daemon < 0) {
      std::ifstream in(base + "/daemon.log");
      const std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      std::fprintf(stderr, "etcd_bench: kvfs mount failed; its log:\n%s\n", log.c_str());
      return 1;
    }
    std::printf(
        "etcd_bench --mount: 3-member cluster on 127.0.0.1-3, %zu-byte appends + fdatasync "
        "through a kvfs mount vs plain /v3/kv/put of %zu bytes, %.1f s per cell, rounds "
        "alternate\n\n",
        value_bytes, value_bytes, seconds);
    std::printf(
        "| writers | round | mount append+fdatasync ops/s | p50 us | p99 us | plain put ops/s | "
        "p50 us | p99 us | mount / plain |\n|---|---|---|---|---|---|---|---|---|\n");
    int file = 0;
    for (const int threads : thread_counts) {
      for (int r = 0; r < rounds; ++r) {
        std::vector<int> fds;
        for (int t = 0; t < threads; ++t) {
          const std::string path = mnt + "/e/f" + std::to_string(file++);
          fds.push_back(::open(path.c_str(), O_CREAT | O_WRONLY | O_APPEND, 0644));
          if (fds.back() < 0) {
            std::perror(path.c_str());
            return 1;
          }
        }
        const Row m = Run(threads, seconds, [&](int t, uint64_t) {
          return ::write(fds[t], value.data(), value.size()) ==
                     static_cast<ssize_t>(value.size()) &&
                 ::fdatasync(fds[t]) == 0;
        });
        for (int fd : fds) ::close(fd);
        const Row p = Run(threads, seconds, [&](int t, uint64_t i) {
          const nlohmann::json req = {{"key", kvfs::engines::etcd::Base64("bench/" + Key(t, i, 3))},
                                      {"value", value64}};
          return client.Call("/v3/kv/put", req.dump(), /*is_write=*/true).ok();
        });
        std::printf("| %d | %d | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.2f |\n", threads,
                    r + 1, m.ops_per_s, m.p50_us, m.p99_us, p.ops_per_s, p.p50_us, p.p99_us,
                    m.ops_per_s / p.ops_per_s);
        std::fflush(stdout);
      }
    }
    const std::string umount = "fusermount3 -u " + mnt;
    if (std::system(umount.c_str()) != 0) ::kill(daemon, SIGTERM);  // NOLINT(cert-env33-c)
    ::waitpid(daemon, nullptr, 0);
    (void)(*engine)->Close();
    return 0;
  }

  std::printf("etcd_bench: 3-member cluster on loopback, %zu-byte values, %.1f s per row\n\n",
              value_bytes, seconds);
  std::printf(
      "| threads | engine put+sync ops/s | p50 us | p99 us | plain put ops/s | p50 us | "
      "p99 us | engine / plain |\n|---|---|---|---|---|---|---|---|\n");
  for (const int threads : thread_counts) {
    const Row e = Run(threads, seconds, [&](int t, uint64_t i) {
      return (*engine)->Put(Key(t, i, 1), value).ok() &&
             (*engine)->Sync(kvfs::engines::SyncKind::kData).ok();
    });
    const Row p = Run(threads, seconds, [&](int t, uint64_t i) {
      const nlohmann::json req = {{"key", kvfs::engines::etcd::Base64("bench/" + Key(t, i, 2))},
                                  {"value", value64}};
      return client.Call("/v3/kv/put", req.dump(), /*is_write=*/true).ok();
    });
    std::printf("| %d | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.2f |\n", threads, e.ops_per_s,
                e.p50_us, e.p99_us, p.ops_per_s, p.p50_us, p.p99_us, e.ops_per_s / p.ops_per_s);
    std::fflush(stdout);
  }
  (void)(*engine)->Close();
  return 0;
}
