// btree_bench: the B-tree engine's own choices, measured side by side in one run. Not a test.
//
//   btree_bench --dir DIR [--page-sizes 4096,8192,16384] [--chunks N] [--small N]
//               [--overwrites N] [--double-write on,off] [--rounds R]
//
// For each page size (and doublewrite setting), in a fresh store on the real disk, sync mode
// none, 64 MiB cache:
//   chunks     N puts of daemon-sized chunks (a 17-byte key, a 4096-byte value) in random order,
//              then Compact (a checkpoint): puts/s and the bytes the page file takes per byte of
//              data (space amplification)
//   overwrite  N random overwrites of those chunks, then Compact: puts/s, page file growth,
//              and the bytes checkpoints wrote (doublewrite + in place) per byte overwritten
//   small      N puts of 16-byte keys with 100-byte values in random order, then Compact;
//              readrandom: N gets of them: ops/s
// Rounds alternate the configurations; each figure is the median round's.
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "engines/btree/btree.h"
#include "sync/file_system.h"

namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

void Check(const kvfs::Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "btree_bench: %s: %s\n", what, s.ToString().c_str());
    std::exit(1);
  }
}

double Seconds(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

uint64_t DirBytes(const std::string& dir, const std::string& name) {
  uint64_t total = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    if (!name.empty() && e.path().filename() != name) continue;
    struct stat st {};
    if (::stat(e.path().c_str(), &st) == 0) total += static_cast<uint64_t>(st.st_blocks) * 512;
  }
  return total;
}

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string x; std::getline(in, x, ',');) out.push_back(x);
  return out;
}

std::string ChunkKey(uint64_t i) {
  char b[32];
  std::snprintf(b, sizeof(b), "c%08llx/%08llx", static_cast<unsigned long long>(i / 1000),
                static_cast<unsigned long long>(i % 1000));
  return b;  // 17 bytes, as the daemon's chunk keys
}

std::string SmallKey(uint64_t i) {
  char b[32];
  std::snprintf(b, sizeof(b), "key%013llu", static_cast<unsigned long long>(i));
  return b;
}

std::string Value(std::mt19937_64& rng, size_t n) {
  std::string v(n, '\0');
  for (size_t i = 0; i < n; i += 8) {
    const uint64_t r = rng();
    std::memcpy(v.data() + i, &r, std::min<size_t>(8, n - i));
  }
  return v;
}

struct Row {
  std::map<std::string, double> figures;
};

Row RunOnce(const std::string& dir, size_t page_size, bool double_write, uint64_t chunks,
            uint64_t small, uint64_t overwrites) {
  fs::remove_all(dir);
  kvfs::engines::EngineOptions o;
  o.sync_mode = kvfs::sync::SyncMode::kNone;
  kvfs::engines::BtreeOptions b;
  b.page_size = page_size;
  b.double_write = double_write;
  Row row;
  std::mt19937_64 rng(42);
  {
    auto e = kvfs::engines::OpenBtreeWith(kvfs::sync::DefaultFileSystem(), dir + "/chunks", o, b);
    Check(e.status(), "open");
    std::vector<uint64_t> order(chunks);
    for (uint64_t i = 0; i < chunks; ++i) order[i] = i;
    std::shuffle(order.begin(), order.end(), rng);
    auto t0 = Clock::now();
    for (uint64_t i : order) Check((*e)->Put(ChunkKey(i), Value(rng, 4096)), "put");
    Check((*e)->Compact(), "compact");
    row.figures["chunks puts/s"] = static_cast<double>(chunks) / Seconds(t0);
    const double live = static_cast<double>(chunks) * (17 + 4096);
    row.figures["chunks space/live"] =
        static_cast<double>(DirBytes(dir + "/chunks", "pages")) / live;
    const uint64_t before = DirBytes(dir + "/chunks", "pages");
    const uint64_t written0 = (*e)->stats().wal.bytes_appended;
    t0 = Clock::now();
    for (uint64_t n = 0; n < overwrites; ++n) {
      Check((*e)->Put(ChunkKey(rng() % chunks), Value(rng, 4096)), "overwrite");
    }
    Check((*e)->Compact(), "compact");
    row.figures["overwrite puts/s"] = static_cast<double>(overwrites) / Seconds(t0);
    row.figures["overwrite growth"] =
        static_cast<double>(DirBytes(dir + "/chunks", "pages")) / static_cast<double>(before);
    row.figures["overwrite space/live"] = static_cast<double>(DirBytes(dir + "/chunks", "")) / live;
    row.figures["overwrite log MiB"] =
        static_cast<double>((*e)->stats().wal.bytes_appended - written0) / 1048576.0;
    Check((*e)->Close(), "close");
  }
  {
    auto e = kvfs::engines::OpenBtreeWith(kvfs::sync::DefaultFileSystem(), dir + "/small", o, b);
    Check(e.status(), "open");
    std::vector<uint64_t> order(small);
    for (uint64_t i = 0; i < small; ++i) order[i] = i;
    std::shuffle(order.begin(), order.end(), rng);
    auto t0 = Clock::now();
    for (uint64_t i : order) Check((*e)->Put(SmallKey(i), Value(rng, 100)), "put");
    Check((*e)->Compact(), "compact");
    row.figures["small fillrandom/s"] = static_cast<double>(small) / Seconds(t0);
    row.figures["small space/live"] =
        static_cast<double>(DirBytes(dir + "/small", "pages")) / (static_cast<double>(small) * 116);
    std::shuffle(order.begin(), order.end(), rng);
    t0 = Clock::now();
    for (uint64_t i : order) Check((*e)->Get(SmallKey(i)).status(), "get");
    row.figures["small readrandom/s"] = static_cast<double>(small) / Seconds(t0);
    Check((*e)->Close(), "close");
  }
  fs::remove_all(dir);
  return row;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir;
  std::vector<std::string> page_sizes = {"4096", "8192", "16384"};
  std::vector<std::string> dws = {"on"};
  uint64_t chunks = 20000, small = 200000, overwrites = 40000;
  int rounds = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--dir")
      dir = v;
    else if (a == "--page-sizes")
      page_sizes = Split(v);
    else if (a == "--double-write")
      dws = Split(v);
    else if (a == "--chunks")
      chunks = std::stoull(v);
    else if (a == "--small")
      small = std::stoull(v);
    else if (a == "--overwrites")
      overwrites = std::stoull(v);
    else if (a == "--rounds")
      rounds = std::stoi(v);
    else
      dir.clear();  // an unknown option: the usage below
  }
  if (dir.empty()) {
    std::fprintf(stderr,
                 "usage: btree_bench --dir DIR [--page-sizes 4096,8192] [--chunks N] "
                 "[--small N] [--overwrites N] [--double-write on,off] [--rounds R]\n");
    return 2;
  }
  std::map<std::string, std::vector<Row>> rows;
  std::vector<std::string> configs;
  for (int r = 0; r < rounds; ++r) {
    for (const std::string& ps : page_sizes) {
      for (const std::string& dw : dws) {
        const std::string config = "page " + ps + ", doublewrite " + dw;
        if (r == 0) configs.push_back(config);
        rows[config].push_back(
            RunOnce(dir + "/run", std::stoull(ps), dw == "on", chunks, small, overwrites));
        std::fprintf(stderr, "round %d %s done\n", r + 1, config.c_str());
      }
    }
  }
  std::printf("| configuration | figure | median | rounds |\n|---|---|---|---|\n");
  for (const std::string& config : configs) {
    for (const auto& [figure, unused] : rows[config][0].figures) {
      std::vector<double> v;
      for (const Row& row : rows[config]) v.push_back(row.figures.at(figure));
      std::string all;
      for (double x : v) all += (all.empty() ? "" : " ") + std::to_string(x).substr(0, 9);
      std::sort(v.begin(), v.end());
      std::printf("| %s | %s | %.3f | %s |\n", config.c_str(), figure.c_str(), v[v.size() / 2],
                  all.c_str());
    }
  }
  return 0;
}
