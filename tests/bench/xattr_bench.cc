// xattr_bench: the cost of one setxattr through the file layer (FileStore, no mount) as a
// function of how many other attributes the file has. For each engine and each count N it
// creates a file with N attributes (names "user.aNNNNN", 8-byte values: 3,000 of them fit the
// 64 KiB an older kvfs allowed per file), then times --ops setxattr calls that replace a value
// (the set keeps its size), twice: each call on the next attribute in turn (every one of the
// N is rewritten), then every call on the same one; it prints the mean of each. Sync mode
// none: the engine's and the file layer's work, no fsync. Not a test: it asserts only that
// every call succeeds. Uses only FileStore's public calls, so the same source builds against
// an older kvfs for a before/after comparison.
//
//   xattr_bench --dir DIR [--engines bitcask,btree,lsm] [--counts 10,3000] [--ops 3000]
//
// Prints one CSV line per engine and count:
//   engine,attributes,ops,us_each_in_turn,us_same_one
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "engines/engine.h"
#include "fusefs/file_store.h"
#include "sync/file_system.h"

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "xattr_bench: %s\n", what.c_str());
  std::exit(1);
}

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string part; std::getline(in, part, ',');) out.push_back(part);
  return out;
}

std::string Name(int i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "user.a%05d", i);
  return buf;
}

void Check(const kvfs::Status& s, const char* what) {
  if (!s.ok()) Die(std::string(what) + ": " + s.ToString());
}

struct Times {
  double each_in_turn;
  double same_one;
};

Times Run(const std::string& engine_name, const std::string& dir, int count, int ops) {
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  kvfs::engines::EngineOptions o;
  o.sync_mode = kvfs::sync::SyncMode::kNone;
  auto engine = kvfs::engines::OpenEngine(engine_name, kvfs::sync::DefaultFileSystem(), dir, o);
  if (!engine.ok()) Die(engine.status().ToString());
  auto st = kvfs::fusefs::FileStore::Open(std::move(*engine), {});
  if (!st.ok()) Die(st.status().ToString());
  auto f = (*st)->Create(kvfs::fusefs::kRootId, "f", 0644, {0, 0, 022});
  if (!f.ok()) Die(f.status().ToString());
  for (int i = 0; i < count; ++i) Check((*st)->SetXattr(f->id, Name(i), "12345678", 0), "fill");
  auto time = [&](bool same) {
    const auto start = Clock::now();
    for (int i = 0; i < ops; ++i) {
      std::string value = std::to_string(i);
      value.resize(8, '.');  // 8 bytes, as the values it replaces
      Check((*st)->SetXattr(f->id, Name(same ? count / 2 : i % count), value, 0), "setxattr");
    }
    return std::chrono::duration<double, std::micro>(Clock::now() - start).count() / ops;
  };
  const Times t{time(false), time(true)};
  Check((*st)->Close(), "close");
  std::filesystem::remove_all(dir);
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir;
  std::vector<std::string> engines = {"bitcask", "btree", "lsm"};
  std::vector<int> counts = {10, 3000};
  int ops = 3000;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const std::string value = argv[i + 1];
    if (flag == "--dir") {
      dir = value;
    } else if (flag == "--engines") {
      engines = Split(value);
    } else if (flag == "--counts") {
      counts.clear();
      for (const std::string& c : Split(value)) counts.push_back(std::stoi(c));
    } else if (flag == "--ops") {
      ops = std::stoi(value);
    } else {
      Die("unknown flag " + flag);
    }
  }
  if (dir.empty()) Die("usage: xattr_bench --dir DIR [--engines a,b] [--counts 10,3000] [--ops N]");
  std::printf("engine,attributes,ops,us_each_in_turn,us_same_one\n");
  for (const std::string& e : engines) {
    for (int count : counts) {
      const Times t = Run(e, dir + "/" + e, count, ops);
      std::printf("%s,%d,%d,%.1f,%.1f\n", e.c_str(), count, ops, t.each_in_turn, t.same_one);
      std::fflush(stdout);
    }
  }
  return 0;
}
