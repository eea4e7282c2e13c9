// kvfs_workload: a multi-process file workload with a durable record of what every sync
// acknowledged, and the checker that compares a tree after a crash against that record.
//
//   kvfs_workload run DIR LOGDIR [--workers N] [--ops M] [--seed S]
//   kvfs_workload check DIR LOGDIR [--floor synced|completed] [--acked-before NS]
//
// `run` creates DIR/w0 .. DIR/w<N-1> (synced), then forks N workers. Worker w works only in
// DIR/w<w>: creates, writes at offsets, appends, truncates, renames (to new names and over
// files), unlinks, mkdirs, rmdirs, mknods (FIFOs and character devices), hard links,
// fallocates (punched holes, zeroed ranges, reservations), with fsync, fdatasync and fsync on
// directories in between. The checker also walks every file's holes (SEEK_HOLE, SEEK_DATA):
// a hole over bytes that are not zeros is a failure.
// Every operation is one system call that changes the tree, one atomic batch in kvfs, except a
// write, which the kernel may hand over in pieces split at page boundaries (PartialWrites). Its
// log LOGDIR/w<w>.log, on the real disk and written before and after each call, says:
//   B <i> <op> <args...>   operation i is about to run (everything needed to replay it)
//   E <i> <ns>             operation i returned success, seen at CLOCK_MONOTONIC time ns
//   A <i>                  operation i was a sync and returned success
//   F <i> <errno>          operation i failed: the worker stops (the power went, or EIO)
// A worker stops at its first failure, or after M operations.
//
// `check` replays each log into the sequence of trees the worker's directory went through and
// requires the tree now in DIR/w<w> to be EXACTLY one of them, no older than the floor:
//   synced     (a power cut) the tree after the last acknowledged sync: everything a sync
//              covered is there; later operations may or may not be;
//   completed  (the daemon was killed, the machine kept running) the tree after the last
//              operation that returned: what a call acknowledged is in the log already.
// --acked-before NS raises the floor to the last operation that returned at or before
// CLOCK_MONOTONIC time NS (sync = "batch" after a power cut: what was acknowledged longer than
// the batch window before the cut had been synced by the log's own timer).
// The newest candidate is the tree after the last operation begun (it may have landed). Since
// kvfs logs every operation (every piece of a write) as one batch in one log, the tree is always
// one of these, or one of them plus a prefix of the next write's pieces: nothing half-done,
// nothing never written. Exit 0 if every worker matches, 1 otherwise (with the
// nearest candidate's differences), 2 on bad usage.
#include <dirent.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace {

// path (relative to the worker's dir) -> "d", "f:" + content, "p" (a FIFO) or "c:" + rdev (a
// character device); and for each name of a file with several names, "#g " + path -> "=" + a
// group tag, the same for all its names (Canonical turns the tags into the group's first name,
// so that a model and a snapshot compare)
using Tree = std::map<std::string, std::string>;

[[noreturn]] void Usage() {
  std::fprintf(stderr,
               "usage: kvfs_workload run DIR LOGDIR [--workers N] [--ops M] [--seed S]\n"
               "       kvfs_workload check DIR LOGDIR [--floor synced|completed] "
               "[--acked-before NS]\n");
  std::exit(2);
}

// CLOCK_MONOTONIC in nanoseconds: one clock for every process on the machine, so a test can
// compare the times in the logs with the moment it cut the power.
uint64_t MonotonicNs() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

// The bytes operation `i` of worker `w` writes: reproducible from the log line alone.
std::string Content(uint64_t seed, uint64_t i, size_t len) {
  std::mt19937_64 rng(seed * 1000003 + i);
  std::string s(len, '\0');
  for (char& c : s) c = static_cast<char>('a' + rng() % 26);
  return s;
}

// One parsed log operation.
struct Op {
  uint64_t i = 0;
  std::string kind;
  std::vector<std::string> args;
};

bool IsUnder(const std::string& p, const std::string& dir) {
  return p.size() > dir.size() && p.compare(0, dir.size(), dir) == 0 && p[dir.size()] == '/';
}

std::string GroupKey(const std::string& path) { return "#g " + path; }

// The other names of `path`'s file (hard links) hold what it holds.
void Propagate(const std::string& path, Tree* t) {
  auto g = t->find(GroupKey(path));
  if (g == t->end()) return;
  const std::string tag = g->second;
  const std::string content = (*t)[path];
  for (auto& [k, v] : *t) {
    if (k.rfind("#g ", 0) == 0 && v == tag && k != g->first) (*t)[k.substr(3)] = content;
  }
}

// `t` with each group of names of one file tagged by its first name, and a group of one name
// untagged: a model's tags and a snapshot's inode numbers become the same.
Tree Canonical(const Tree& t) {
  std::map<std::string, std::vector<std::string>> groups;
  Tree out;
  for (const auto& [k, v] : t) {
    if (k.rfind("#g ", 0) == 0) {
      groups[v].push_back(k.substr(3));
    } else {
      out[k] = v;
    }
  }
  for (auto& [tag, names] : groups) {
    if (names.size() < 2) continue;
    std::sort(names.begin(), names.end());
    for (const std::string& n : names) out[GroupKey(n)] = "=" + names.front();
  }
  return out;
}

// Applies `op` to `t` as the file system should. `seed` is the worker's content seed.
void Apply(const Op& op, uint64_t seed, Tree* t) {
  const auto& a = op.args;
  if (op.kind == "create") {
    (*t)[a[0]] = "f:";
  } else if (op.kind == "mkdir") {
    (*t)[a[0]] = "d";
  } else if (op.kind == "mknod") {
    (*t)[a[0]] = a[1] == "0" ? "p" : "c:" + a[1];
  } else if (op.kind == "write" || op.kind == "append") {
    std::string& f = (*t)[a[0]];
    const uint64_t off = op.kind == "write" ? std::stoull(a[1]) : f.size() - 2;
    const size_t len = std::stoull(a[2]);
    const std::string data = Content(seed, op.i, len);
    if (f.size() < 2 + off + len) f.resize(2 + off + len, '\0');
    f.replace(2 + off, len, data);
    Propagate(a[0], t);
  } else if (op.kind == "truncate") {
    (*t)[a[0]].resize(2 + std::stoull(a[1]), '\0');
    Propagate(a[0], t);
  } else if (op.kind == "unlink" || op.kind == "rmdir") {
    t->erase(a[0]);
    t->erase(GroupKey(a[0]));
  } else if (op.kind == "fallocate") {
    // args: path, mode (0 reserve, 1 punch, 2 zero range), keep_size, offset, length
    std::string& f = (*t)[a[0]];
    const int mode = std::stoi(a[1]);
    const bool keep = a[2] == "1";
    const uint64_t off = std::stoull(a[3]), end = off + std::stoull(a[4]);
    const uint64_t size = f.size() - 2;
    if (mode != 0 && off < size) {
      std::fill(f.begin() + static_cast<std::ptrdiff_t>(2 + off),
                f.begin() + static_cast<std::ptrdiff_t>(2 + std::min(end, size)), '\0');
    }
    if (mode != 1 && !keep && end > size) f.resize(2 + end, '\0');
    Propagate(a[0], t);
  } else if (op.kind == "link") {
    (*t)[a[1]] = (*t)[a[0]];
    std::string& tag = (*t)[GroupKey(a[0])];
    if (tag.empty()) tag = "=" + std::to_string(op.i);
    (*t)[GroupKey(a[1])] = tag;
  } else if (op.kind == "rename") {
    auto from_tag = t->find(GroupKey(a[0]));
    auto to_tag = t->find(GroupKey(a[1]));
    if (from_tag != t->end() && to_tag != t->end() && from_tag->second == to_tag->second) {
      return;  // two names of one file: rename(2) does nothing
    }
    t->erase(GroupKey(a[1]));
    Tree moved;
    for (auto it = t->begin(); it != t->end();) {
      const bool group = it->first.rfind("#g ", 0) == 0;
      const std::string p = group ? it->first.substr(3) : it->first;
      if (p == a[0] || IsUnder(p, a[0])) {
        const std::string dest = a[1] + p.substr(a[0].size());
        moved[group ? GroupKey(dest) : dest] = it->second;
        it = t->erase(it);
      } else {
        ++it;
      }
    }
    for (auto& [p, v] : moved) (*t)[p] = v;
  }
  // fsync, fdatasync, fsyncdir change nothing in the tree.
}

// A write(2) reaches the file system in pieces: the kernel sends a FUSE WRITE, and waits for
// it, up to each page it could not fill whole (a partial page not in its cache), so a write is
// atomic only per piece, as on a local disk. The trees after each proper prefix of a write or
// append that ends at a page boundary, in order.
std::vector<Tree> PartialWrites(const Op& op, uint64_t seed, const Tree& before) {
  std::vector<Tree> out;
  if (op.kind != "write" && op.kind != "append") return out;
  auto f = before.find(op.args[0]);
  if (f == before.end()) return out;
  const uint64_t off = op.kind == "write" ? std::stoull(op.args[1]) : f->second.size() - 2;
  const uint64_t len = std::stoull(op.args[2]);
  const std::string data = Content(seed, op.i, len);
  constexpr uint64_t kPage = 4096;
  for (uint64_t cut = (off / kPage + 1) * kPage; cut < off + len; cut += kPage) {
    Tree t = before;
    std::string& content = t[op.args[0]];
    if (content.size() < 2 + cut) content.resize(2 + cut, '\0');
    content.replace(2 + off, cut - off, data.substr(0, cut - off));
    Propagate(op.args[0], &t);
    out.push_back(Canonical(t));
  }
  return out;
}

// --- run ---------------------------------------------------------------------------------

class Worker {
 public:
  Worker(std::string dir, const std::string& log_path, uint64_t seed)
      : dir_(std::move(dir)), seed_(seed), rng_(seed) {
    log_ = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (log_ < 0) {
      std::perror(log_path.c_str());
      std::exit(3);
    }
  }

  int Run(uint64_t ops) {
    Log("S " + std::to_string(seed_));
    for (uint64_t i = 1; i <= ops; ++i) {
      if (!Step(i)) return 0;
    }
    return 0;
  }

 private:
  void Log(const std::string& line) {
    const std::string l = line + "\n";
    if (::write(log_, l.data(), l.size()) != static_cast<ssize_t>(l.size())) std::exit(3);
  }

  std::string P(const std::string& rel) const { return dir_ + "/" + rel; }

  // Runs operation i: logs it, does it, logs the outcome. False once it failed.
  bool Step(uint64_t i) {
    std::vector<std::string> dirs{""}, files, all;
    for (const auto& [p, v] : model_) {
      if (p[0] == '#') continue;  // hard-link groups
      all.push_back(p);
      if (v == "d") dirs.push_back(p);
      if (v[0] == 'f') files.push_back(p);
    }
    auto pick = [&](const std::vector<std::string>& v) { return v[rng_() % v.size()]; };
    auto join = [](const std::string& d, const std::string& n) {
      return d.empty() ? n : d + "/" + n;
    };
    Op op;
    op.i = i;
    const int r = static_cast<int>(rng_() % 19);
    if (r < 2 || files.empty()) {
      op.kind = "create";
      op.args = {join(pick(dirs), "f" + std::to_string(i))};
    } else if (r < 5) {
      op.kind = "write";
      const std::string f = pick(files);
      const uint64_t size = model_[f].size() - 2;
      const uint64_t offsets[] = {0, size, size / 2, 4096, 65536 - 100};
      const size_t lens[] = {1, 512, 4096, 10000, 32768};
      op.args = {f, std::to_string(offsets[rng_() % 5]), std::to_string(lens[rng_() % 5])};
    } else if (r < 7) {
      op.kind = "append";
      op.args = {pick(files), "0", std::to_string(1 + rng_() % 6000)};
    } else if (r == 7) {
      op.kind = "truncate";
      const std::string f = pick(files);
      const uint64_t size = model_[f].size() - 2;
      const uint64_t sizes[] = {0, size / 2, size + 3000, 70000};
      op.args = {f, std::to_string(sizes[rng_() % 4])};
    } else if (r == 8) {
      op.kind = "mkdir";
      op.args = {join(pick(dirs), "d" + std::to_string(i))};
    } else if (r == 9) {
      const std::string p = pick(all);
      if (model_[p] == "d") {
        auto next = model_.upper_bound(p);
        if (next != model_.end() && IsUnder(next->first, p)) return Sync(i, "fsyncdir", "");
        op.kind = "rmdir";
      } else {
        op.kind = "unlink";
      }
      op.args = {p};
    } else if (r == 10) {
      op.kind = "rename";
      const std::string from = pick(all);
      const std::string to_dir = pick(dirs);
      if (to_dir == from || IsUnder(to_dir, from)) return Sync(i, "fsyncdir", "");
      std::string to = join(to_dir, "r" + std::to_string(i));
      if (model_[from] != "d" && files.size() > 1 && rng_() % 2 == 0) to = pick(files);
      if (to == from) return Sync(i, "fsyncdir", "");
      op.args = {from, to};
    } else if (r < 13) {
      return Sync(i, rng_() % 2 ? "fsync" : "fdatasync", pick(files));
    } else if (r == 18) {
      op.kind = "fallocate";
      const std::string f = pick(files);
      const uint64_t size = model_[f].size() - 2;
      const int mode = static_cast<int>(rng_() % 3);
      const uint64_t offsets[] = {0, 4096, size / 2, 4000, size};
      const uint64_t lens[] = {1, 100, 4096, 3 * 4096 + 5, 70000};
      op.args = {f, std::to_string(mode), mode == 1 || rng_() % 2 ? "1" : "0",
                 std::to_string(offsets[rng_() % 5]), std::to_string(lens[rng_() % 5])};
    } else if (r == 17) {
      op.kind = "link";
      op.args = {pick(files), join(pick(dirs), "h" + std::to_string(i))};
    } else if (r == 16) {
      // A FIFO (rdev 0) or a character device with a number from the operation's index.
      op.kind = "mknod";
      op.args = {join(pick(dirs), "n" + std::to_string(i)),
                 std::to_string(rng_() % 2 ? 0 : makedev(1 + i % 200, i % 1000))};
    } else {
      return Sync(i, "fsyncdir", pick(dirs));
    }
    std::string line = "B " + std::to_string(i) + " " + op.kind;
    for (const auto& a : op.args) line += " " + a;
    Log(line);
    const int err = Do(op);
    if (err != 0) {
      Log("F " + std::to_string(i) + " " + std::to_string(err));
      return false;
    }
    Apply(op, seed_, &model_);
    Log("E " + std::to_string(i) + " " + std::to_string(MonotonicNs()));
    return true;
  }

  // One mutation as one system call; 0 or the errno.
  int Do(const Op& op) {
    const auto& a = op.args;
    int rc = 0;
    if (op.kind == "create") {
      const int fd = ::open(P(a[0]).c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
      if (fd < 0) return errno;
      rc = ::close(fd);
    } else if (op.kind == "write" || op.kind == "append") {
      const int flags = O_WRONLY | O_CLOEXEC | (op.kind == "append" ? O_APPEND : 0);
      const int fd = ::open(P(a[0]).c_str(), flags);
      if (fd < 0) return errno;
      const size_t len = std::stoull(a[2]);
      const std::string data = Content(seed_, op.i, len);
      const ssize_t n = op.kind == "append" ? ::write(fd, data.data(), len)
                                            : ::pwrite(fd, data.data(), len, std::stoll(a[1]));
      const int werr = n < 0 ? errno : (static_cast<size_t>(n) != len ? EIO : 0);
      if (::close(fd) != 0 && werr == 0) return errno;
      return werr;
    } else if (op.kind == "truncate") {
      rc = ::truncate(P(a[0]).c_str(), std::stoll(a[1]));
    } else if (op.kind == "mkdir") {
      rc = ::mkdir(P(a[0]).c_str(), 0755);
    } else if (op.kind == "rmdir") {
      rc = ::rmdir(P(a[0]).c_str());
    } else if (op.kind == "unlink") {
      rc = ::unlink(P(a[0]).c_str());
    } else if (op.kind == "rename") {
      rc = ::rename(P(a[0]).c_str(), P(a[1]).c_str());
    } else if (op.kind == "link") {
      rc = ::link(P(a[0]).c_str(), P(a[1]).c_str());
    } else if (op.kind == "fallocate") {
      const int fd = ::open(P(a[0]).c_str(), O_WRONLY | O_CLOEXEC);
      if (fd < 0) return errno;
      const int kinds[] = {0, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE};
      const int mode = kinds[std::stoi(a[1])] | (a[2] == "1" ? FALLOC_FL_KEEP_SIZE : 0);
      rc = ::fallocate(fd, mode, std::stoll(a[3]), std::stoll(a[4]));
      const int err = rc == 0 ? 0 : errno;
      if (::close(fd) != 0 && err == 0) return errno;
      return err;
    } else if (op.kind == "mknod") {
      const dev_t rdev = std::stoull(a[1]);
      rc = ::mknod(P(a[0]).c_str(), (rdev == 0 ? S_IFIFO : S_IFCHR) | 0644, rdev);
    }
    return rc == 0 ? 0 : errno;
  }

  bool Sync(uint64_t i, const std::string& kind, const std::string& rel) {
    Log("B " + std::to_string(i) + " " + kind + " " + (rel.empty() ? "." : rel));
    const bool dir = kind == "fsyncdir";
    const int fd = ::open(P(rel).c_str(), (dir ? O_RDONLY | O_DIRECTORY : O_WRONLY) | O_CLOEXEC);
    int err = fd < 0 ? errno : 0;
    if (err == 0) {
      const int rc = kind == "fdatasync" ? ::fdatasync(fd) : ::fsync(fd);
      if (rc != 0) err = errno;
      ::close(fd);
    }
    if (err != 0) {
      Log("F " + std::to_string(i) + " " + std::to_string(err));
      return false;
    }
    Log("E " + std::to_string(i) + " " + std::to_string(MonotonicNs()));
    Log("A " + std::to_string(i));
    return true;
  }

  std::string dir_;
  uint64_t seed_;
  std::mt19937_64 rng_;
  int log_ = -1;
  Tree model_;
};

int SyncPath(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno;
  const int rc = ::fsync(fd);
  const int err = rc == 0 ? 0 : errno;
  ::close(fd);
  return err;
}

int Run(const std::string& dir, const std::string& logdir, int workers, uint64_t ops,
        uint64_t seed) {
  std::printf("kvfs_workload run: %d workers x %llu ops, seed %llu (replay with --seed)\n", workers,
              static_cast<unsigned long long>(ops), static_cast<unsigned long long>(seed));
  std::fflush(stdout);
  ::mkdir(logdir.c_str(), 0755);
  for (int w = 0; w < workers; ++w) {
    const std::string d = dir + "/w" + std::to_string(w);
    if (::mkdir(d.c_str(), 0755) != 0) {
      std::fprintf(stderr, "mkdir %s: %s\n", d.c_str(), std::strerror(errno));
      return 1;
    }
  }
  if (int err = SyncPath(dir); err != 0) {
    std::fprintf(stderr, "fsync %s: %s\n", dir.c_str(), std::strerror(err));
    return 1;
  }
  std::vector<pid_t> pids;
  for (int w = 0; w < workers; ++w) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      Worker worker(dir + "/w" + std::to_string(w), logdir + "/w" + std::to_string(w) + ".log",
                    seed * 7919 + w);
      ::_exit(worker.Run(ops));
    }
    pids.push_back(pid);
  }
  int failed = 0;
  for (pid_t pid : pids) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++failed;
  }
  return failed == 0 ? 0 : 1;
}

// --- check -------------------------------------------------------------------------------

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return true;
}

// "" if every hole lseek(SEEK_HOLE/SEEK_DATA) reports in `path` reads as zeros in `data` (its
// content), else where one does not.
std::string HoleOverData(const std::string& path, const std::string& data) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::string("open: ") + std::strerror(errno);
  std::string bad;
  const off_t size = static_cast<off_t>(data.size());
  for (off_t pos = 0; pos < size && bad.empty();) {
    const off_t hole = ::lseek(fd, pos, SEEK_HOLE);
    if (hole < 0 || hole > size) {
      bad = "SEEK_HOLE from " + std::to_string(pos) + ": " + std::to_string(hole);
      break;
    }
    if (hole == size) break;
    off_t next = ::lseek(fd, hole, SEEK_DATA);
    if (next < 0) next = size;  // ENXIO: a hole to the end
    if (next <= hole) {         // the hole's first byte cannot be data
      bad = "SEEK_DATA from the hole at " + std::to_string(hole) + ": " + std::to_string(next);
      break;
    }
    for (off_t i = hole; i < next; ++i) {
      if (data[static_cast<size_t>(i)] != '\0') {
        bad = "a hole at " + std::to_string(i) + " over a byte that is not zero";
        break;
      }
    }
    pos = next;
  }
  ::close(fd);
  return bad;
}

// The tree under `root` as the file system shows it. False (with a message) on a read error.
// A name of a file with a link count above 1 gets its "#g" entry, tagged by inode number (the
// caller makes it Canonical), and "#nlink <path>" if the count is not the names found.
bool Snapshot(const std::string& root, const std::string& rel, Tree* out, std::string* error,
              std::map<ino_t, std::pair<nlink_t, std::vector<std::string>>>* linked) {
  const std::string path = rel.empty() ? root : root + "/" + rel;
  DIR* d = ::opendir(path.c_str());
  if (d == nullptr) {
    *error = "opendir " + path + ": " + std::strerror(errno);
    return false;
  }
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  ::closedir(d);
  for (const std::string& n : names) {
    const std::string r = rel.empty() ? n : rel + "/" + n;
    struct stat st;
    if (::lstat((root + "/" + r).c_str(), &st) != 0) {
      *error = "stat " + r + ": " + std::strerror(errno);
      return false;
    }
    if (S_ISDIR(st.st_mode)) {
      (*out)[r] = "d";
      if (!Snapshot(root, r, out, error, linked)) return false;
    } else if (S_ISFIFO(st.st_mode)) {
      (*out)[r] = "p";
    } else if (S_ISCHR(st.st_mode)) {
      (*out)[r] = "c:" + std::to_string(st.st_rdev);
    } else if (!S_ISREG(st.st_mode)) {
      (*out)[r] = "? mode " + std::to_string(st.st_mode);
    } else {
      std::string data;
      if (!ReadFile(root + "/" + r, &data)) {
        *error = "read " + r + " failed";
        return false;
      }
      (*out)[r] = "f:" + data;
      if (std::string bad = HoleOverData(root + "/" + r, data); !bad.empty()) {
        (*out)["#hole " + r] = bad;
      }
      if (st.st_nlink > 1) {
        (*out)[GroupKey(r)] = "=" + std::to_string(st.st_ino);
        auto& l = (*linked)[st.st_ino];
        l.first = st.st_nlink;
        l.second.push_back(r);
      }
    }
  }
  return true;
}

// A tree value in a message: a file by its size, anything else as it is.
std::string Describe(const std::string& v) {
  return v[0] == 'f' ? std::to_string(v.size() - 2) + " bytes" : "'" + v + "'";
}

std::string Diff(const Tree& want, const Tree& got) {
  std::string out;
  int shown = 0;
  for (const auto& [p, v] : want) {
    auto it = got.find(p);
    if (it == got.end()) {
      out += "  missing " + p + "\n";
    } else if (it->second != v) {
      out += "  differs " + p + " (want " + Describe(v) + ", got " + Describe(it->second) + ")\n";
    } else {
      continue;
    }
    if (++shown >= 10) return out + "  ...\n";
  }
  for (const auto& [p, v] : got) {
    if (!want.count(p)) {
      out += "  unexpected " + p + "\n";
      if (++shown >= 10) return out + "  ...\n";
    }
  }
  return out;
}

// `acked_before`: also count as the floor every operation that returned by then (0: none).
int CheckWorker(const std::string& dir, const std::string& log_path, bool floor_synced,
                uint64_t acked_before) {
  std::ifstream in(log_path);
  if (!in) {
    std::fprintf(stderr, "%s: cannot read\n", log_path.c_str());
    return 1;
  }
  uint64_t seed = 0;
  std::vector<Tree> history{Tree{}};  // history[k]: after the k-th begun operation
  // partial[k]: trees between history[k-1] and history[k] (a write the kernel sent in pieces)
  std::vector<std::vector<Tree>> partial{{}};
  size_t synced = 0, completed = 0, acked_early = 0;
  Tree t;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string tag;
    ls >> tag;
    if (tag == "S") {
      ls >> seed;
    } else if (tag == "B") {
      Op op;
      ls >> op.i >> op.kind;
      for (std::string a; ls >> a;) op.args.push_back(a);
      partial.push_back(PartialWrites(op, seed, t));
      Apply(op, seed, &t);
      history.push_back(Canonical(t));
    } else if (tag == "E") {
      completed = history.size() - 1;
      uint64_t i = 0, ns = 0;
      if ((ls >> i >> ns) && acked_before > 0 && ns <= acked_before) acked_early = completed;
    } else if (tag == "A") {
      synced = history.size() - 1;
    }
  }
  const size_t floor = std::max(floor_synced ? synced : completed, acked_early);
  const char* floor_why = floor == acked_early && acked_early > (floor_synced ? synced : completed)
                              ? "last acknowledged before --acked-before"
                          : floor_synced ? "last sync"
                                         : "last completed";
  Tree got;
  std::string error;
  std::map<ino_t, std::pair<nlink_t, std::vector<std::string>>> linked;
  if (!Snapshot(dir, "", &got, &error, &linked)) {
    std::printf("%s: FAIL: %s\n", dir.c_str(), error.c_str());
    return 1;
  }
  for (const auto& [ino, l] : linked) {
    if (l.first == l.second.size()) continue;
    got["#nlink " + l.second.front()] =
        std::to_string(l.first) + " for " + std::to_string(l.second.size()) + " names";
  }
  got = Canonical(got);
  size_t best = floor;
  size_t best_score = SIZE_MAX;
  for (size_t k = floor; k < history.size(); ++k) {
    if (history[k] == got) {
      std::printf("%s: ok: tree after operation %zu of %zu begun (floor %zu, %s)\n", dir.c_str(), k,
                  history.size() - 1, floor, floor_why);
      return 0;
    }
    if (k + 1 < partial.size()) {
      for (size_t p = 0; p < partial[k + 1].size(); ++p) {
        if (partial[k + 1][p] != got) continue;
        std::printf(
            "%s: ok: tree after operation %zu of %zu begun, and piece %zu of write %zu "
            "(floor %zu, %s)\n",
            dir.c_str(), k, history.size() - 1, p + 1, k + 1, floor, floor_why);
        return 0;
      }
    }
    const size_t score = Diff(history[k], got).size();
    if (score < best_score) best_score = score, best = k;
  }
  std::printf(
      "%s: FAIL: the tree is none of the trees after operations %zu..%zu (floor: %s); nearest "
      "is %zu:\n%s",
      dir.c_str(), floor, history.size() - 1, floor_why, best, Diff(history[best], got).c_str());
  return 1;
}

int Check(const std::string& dir, const std::string& logdir, bool floor_synced,
          uint64_t acked_before) {
  int failures = 0;
  int workers = 0;
  for (int w = 0;; ++w) {
    const std::string log = logdir + "/w" + std::to_string(w) + ".log";
    if (::access(log.c_str(), R_OK) != 0) break;
    ++workers;
    failures += CheckWorker(dir + "/w" + std::to_string(w), log, floor_synced, acked_before);
  }
  if (workers == 0) {
    std::fprintf(stderr, "no worker logs in %s\n", logdir.c_str());
    return 1;
  }
  std::printf("kvfs_workload check: %d workers, %d lost or wrong\n", workers, failures);
  return failures == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) Usage();
  const std::string cmd = argv[1], dir = argv[2], logdir = argv[3];
  int workers = 4;
  uint64_t ops = 200;
  uint64_t seed = static_cast<uint64_t>(::time(nullptr));
  std::string floor = "synced";
  uint64_t acked_before = 0;
  for (int i = 4; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) Usage();
    const std::string v = argv[++i];
    if (a == "--workers") {
      workers = std::atoi(v.c_str());
    } else if (a == "--ops") {
      ops = std::strtoull(v.c_str(), nullptr, 10);
    } else if (a == "--seed") {
      seed = std::strtoull(v.c_str(), nullptr, 10);
    } else if (a == "--floor") {
      floor = v;
    } else if (a == "--acked-before") {
      acked_before = std::strtoull(v.c_str(), nullptr, 10);
    } else {
      Usage();
    }
  }
  if (cmd == "run" && workers > 0) return Run(dir, logdir, workers, ops, seed);
  if (cmd == "check" && (floor == "synced" || floor == "completed")) {
    return Check(dir, logdir, floor == "synced", acked_before);
  }
  Usage();
}
