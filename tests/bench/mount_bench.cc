// mount_bench: file-system workloads through plain system calls, on any directory: a kvfs
// mount, a plain ext4 directory, a FUSE passthrough. Not a test: it measures and asserts nothing
// beyond "the calls succeeded and the bytes read back are the bytes written".
// scripts/bench-mount runs it on each of those in one run and writes the side-by-side table.
//
//   mount_bench --dir DIR --label NAME [--files N] [--file-bytes B] [--seconds S]
//               [--threads 1,4,16] [--workloads LIST] [--csv FILE]
//
// Workloads (in this order; --workloads picks some):
//   create      N files of B bytes in DIR/files (open O_CREAT, write, close): files/s
//   stat        stat(2) of every file: stats/s
//   ls          `ls -l DIR/files` (the real tool, output discarded): runs/s, and files/s
//   read        every file opened, read whole and checked, closed, page cache warm: files/s
//   read-cold   the same after dropping the kernel's caches (needs root): files/s
//   delete      unlink(2) of every file: files/s
//   fsync/T     T threads, each appending B bytes then fdatasync(2) to its own file, for S s
//   seqwrite    one file of --big-mb MiB written in 1 MiB writes, then fsync: MiB/s
//   seqread     that file read back in 1 MiB reads after dropping the caches (root): MiB/s
//
// Each result is printed as a CSV line "label,workload,ops,seconds,ops_per_sec" on stdout (and
// appended to --csv FILE).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct Args {
  std::string dir;
  std::string label;
  uint64_t files = 20000;
  size_t file_bytes = 4096;
  double seconds = 3;
  std::vector<int> threads = {1, 4};
  std::vector<std::string> workloads;  // empty: all
  uint64_t big_mb = 1024;
  std::string csv;
};

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "mount_bench: %s\n", what.c_str());
  std::exit(1);
}

[[noreturn]] void DieErrno(const std::string& what) { Die(what + ": " + std::strerror(errno)); }

bool Wanted(const Args& a, const std::string& w) {
  if (a.workloads.empty()) return true;
  for (const std::string& x : a.workloads) {
    if (x == w || (x == "fsync" && w.starts_with("fsync/"))) return true;
  }
  return false;
}

void Report(const Args& a, const std::string& workload, uint64_t ops, double secs) {
  std::ostringstream line;
  line << a.label << "," << workload << "," << ops << "," << secs << ","
       << (secs > 0 ? ops / secs : 0) << "\n";
  std::fputs(line.str().c_str(), stdout);
  std::fflush(stdout);
  if (!a.csv.empty()) {
    std::ofstream out(a.csv, std::ios::app);
    out << line.str();
  }
  std::fprintf(stderr, "  %-10s %-10s %12.0f ops/s\n", a.label.c_str(), workload.c_str(),
               secs > 0 ? ops / secs : 0);
}

template <typename Fn>
double Time(const Fn& fn) {
  const auto t0 = Clock::now();
  fn();
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string FilePath(const std::string& dir, uint64_t i) { return dir + "/f" + std::to_string(i); }

// File i's content: distinct per file, so a read that returned another file's bytes is caught.
std::string Content(uint64_t i, size_t n) {
  std::string s(n, '\0');
  std::mt19937_64 rng(i);
  for (size_t k = 0; k < n; k += 8) {
    const uint64_t v = rng();
    std::memcpy(s.data() + k, &v, std::min<size_t>(8, n - k));
  }
  return s;
}

void WriteAll(int fd, const char* p, size_t n, const std::string& what) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) DieErrno("write " + what);
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void CreateFiles(const Args& a, const std::string& dir) {
  for (uint64_t i = 0; i < a.files; ++i) {
    const std::string path = FilePath(dir, i);
    const int fd = ::open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) DieErrno("create " + path);
    const std::string c = Content(i, a.file_bytes);
    WriteAll(fd, c.data(), c.size(), path);
    if (::close(fd) != 0) DieErrno("close " + path);
  }
}

void ReadFiles(const Args& a, const std::string& dir) {
  std::string buf(a.file_bytes + 1, '\0');
  for (uint64_t i = 0; i < a.files; ++i) {
    const std::string path = FilePath(dir, i);
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) DieErrno("open " + path);
    size_t got = 0;
    for (;;) {
      const ssize_t r = ::read(fd, buf.data() + got, buf.size() - got);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) DieErrno("read " + path);
      if (r == 0 || got + r == buf.size()) {
        got += r;
        break;
      }
      got += r;
    }
    ::close(fd);
    if (got != a.file_bytes ||
        std::memcmp(buf.data(), Content(i, a.file_bytes).data(), a.file_bytes) != 0) {
      Die(path + ": read back differs from what was written");
    }
  }
}

void DropCaches() {
  ::sync();
  std::ofstream out("/proc/sys/vm/drop_caches");
  out << "3\n";
  if (!out.flush()) Die("cannot drop caches (read-cold needs root)");
}

// T threads appending B bytes + fdatasync to files of their own for S seconds.
uint64_t SyncedAppends(const Args& a, int threads, double* secs) {
  const std::string dir = a.dir + "/fsync";
  fs::create_directories(dir);
  std::vector<int> fds;
  for (int t = 0; t < threads; ++t) {
    const std::string path = dir + "/t" + std::to_string(t);
    const int fd = ::open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) DieErrno("create " + path);
    fds.push_back(fd);
  }
  const std::string block = Content(7, a.file_bytes);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> total{0};
  std::vector<std::thread> ts;
  const auto t0 = Clock::now();
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      uint64_t n = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        WriteAll(fds[t], block.data(), block.size(), "fsync file");
        if (::fdatasync(fds[t]) != 0) DieErrno("fdatasync");
        ++n;
      }
      total += n;
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(a.seconds));
  stop = true;
  for (auto& th : ts) th.join();
  *secs = std::chrono::duration<double>(Clock::now() - t0).count();
  for (int fd : fds) ::close(fd);
  fs::remove_all(dir);
  return total.load();
}

// Sequential write of a --big-mb MiB file in 1 MiB writes (then fsync), and its read back
// with cold caches, both as MiB/s.
void BigFile(const Args& a) {
  const std::string path = a.dir + "/big";
  constexpr size_t kIo = 1 << 20;
  std::string block = Content(11, kIo);
  if (Wanted(a, "seqwrite") || !fs::exists(path)) {
    const double secs = Time([&] {
      const int fd = ::open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0644);
      if (fd < 0) DieErrno("create " + path);
      for (uint64_t i = 0; i < a.big_mb; ++i) {
        block[0] = static_cast<char>(i);  // each MiB distinct
        WriteAll(fd, block.data(), block.size(), path);
      }
      if (::fsync(fd) != 0) DieErrno("fsync " + path);
      ::close(fd);
    });
    if (Wanted(a, "seqwrite")) Report(a, "seqwrite", a.big_mb, secs);
  }
  if (Wanted(a, "seqread")) {
    DropCaches();
    std::string buf(kIo, '\0');
    const double secs = Time([&] {
      const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) DieErrno("open " + path);
      for (uint64_t i = 0; i < a.big_mb; ++i) {
        size_t got = 0;
        while (got < kIo) {
          const ssize_t r = ::read(fd, buf.data() + got, kIo - got);
          if (r < 0 && errno == EINTR) continue;
          if (r <= 0) DieErrno("read " + path);
          got += r;
        }
        block[0] = static_cast<char>(i);
        if (buf != block) Die(path + ": MiB " + std::to_string(i) + " reads back wrong");
      }
      ::close(fd);
    });
    Report(a, "seqread", a.big_mb, secs);
  }
  fs::remove(path);
}

Args Parse(int argc, char** argv) {
  Args a;
  const char* usage =
      "usage: mount_bench --dir DIR --label NAME [--files N] [--file-bytes B] [--seconds S] "
      "[--threads 1,4,16] [--workloads create,stat,ls,read,read-cold,delete,fsync,seqwrite,"
      "seqread] [--big-mb N] [--csv FILE]";
  auto list = [](const std::string& s) {
    std::vector<std::string> out;
    std::istringstream in(s);
    std::string x;
    while (std::getline(in, x, ',')) out.push_back(x);
    return out;
  };
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Die(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--dir") {
      a.dir = value();
    } else if (arg == "--label") {
      a.label = value();
    } else if (arg == "--files") {
      a.files = std::strtoull(value().c_str(), nullptr, 10);
    } else if (arg == "--file-bytes") {
      a.file_bytes = std::strtoul(value().c_str(), nullptr, 10);
    } else if (arg == "--seconds") {
      a.seconds = std::atof(value().c_str());
    } else if (arg == "--threads") {
      a.threads.clear();
      for (const std::string& t : list(value())) a.threads.push_back(std::atoi(t.c_str()));
    } else if (arg == "--workloads") {
      a.workloads = list(value());
    } else if (arg == "--csv") {
      a.csv = value();
    } else if (arg == "--big-mb") {
      a.big_mb = std::strtoull(value().c_str(), nullptr, 10);
    } else {
      Die(usage);
    }
  }
  if (a.dir.empty() || a.label.empty()) Die(usage);
  if (a.files == 0 || a.file_bytes == 0) Die("--files and --file-bytes must be positive");
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = Parse(argc, argv);
  const std::string dir = a.dir + "/files";
  fs::remove_all(dir);
  fs::create_directories(dir);

  if (Wanted(a, "create")) Report(a, "create", a.files, Time([&] { CreateFiles(a, dir); }));
  if (Wanted(a, "stat")) {
    const double secs = Time([&] {
      struct stat st;
      for (uint64_t i = 0; i < a.files; ++i) {
        if (::stat(FilePath(dir, i).c_str(), &st) != 0) DieErrno("stat");
        if (static_cast<size_t>(st.st_size) != a.file_bytes) Die("stat: wrong size");
      }
    });
    Report(a, "stat", a.files, secs);
  }
  if (Wanted(a, "ls")) {
    const std::string cmd = "ls -l '" + dir + "' > /dev/null";
    const double secs = Time([&] {
      if (std::system(cmd.c_str()) != 0) Die("ls -l failed");
    });
    Report(a, "ls", a.files, secs);  // files listed per second
  }
  if (Wanted(a, "read")) Report(a, "read", a.files, Time([&] { ReadFiles(a, dir); }));
  if (Wanted(a, "read-cold")) {
    DropCaches();
    Report(a, "read-cold", a.files, Time([&] { ReadFiles(a, dir); }));
  }
  if (Wanted(a, "delete")) {
    const double secs = Time([&] {
      for (uint64_t i = 0; i < a.files; ++i) {
        if (::unlink(FilePath(dir, i).c_str()) != 0) DieErrno("unlink");
      }
    });
    Report(a, "delete", a.files, secs);
  }
  for (int t : a.threads) {
    const std::string w = "fsync/" + std::to_string(t);
    if (!Wanted(a, w)) continue;
    double secs = 0;
    const uint64_t ops = SyncedAppends(a, t, &secs);
    Report(a, w, ops, secs);
  }
  fs::remove_all(dir);
  if (Wanted(a, "seqwrite") || Wanted(a, "seqread")) BigFile(a);
  return 0;
}
