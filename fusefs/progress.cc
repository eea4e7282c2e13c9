#include "fusefs/progress.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <system_error>
#include <utility>

namespace kvfs::fusefs {
namespace {

std::string Printf(const char* format, double value) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), format, value);
  return buf;
}

// 512 B, 1.5 KiB, 12.0 MiB, 3.2 GiB.
std::string Size(uint64_t bytes) {
  if (bytes < 1024) return std::to_string(bytes) + " B";
  const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes) / 1024;
  size_t u = 0;
  while (v >= 1024 && u + 1 < std::size(units)) {
    v /= 1024;
    ++u;
  }
  return Printf("%.1f ", v) + units[u];
}

// 7 s, 3 min 05 s, 2 h 07 min.
std::string Duration(uint64_t seconds) {
  char buf[64];
  if (seconds < 60) {
    std::snprintf(buf, sizeof(buf), "%llu s", static_cast<unsigned long long>(seconds));
  } else if (seconds < 3600) {
    std::snprintf(buf, sizeof(buf), "%llu min %02llu s",
                  static_cast<unsigned long long>(seconds / 60),
                  static_cast<unsigned long long>(seconds % 60));
  } else {
    std::snprintf(buf, sizeof(buf), "%llu h %02llu min",
                  static_cast<unsigned long long>(seconds / 3600),
                  static_cast<unsigned long long>(seconds % 3600 / 60));
  }
  return buf;
}

int64_t SteadyNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

ProgressLine ProgressLine::ForStderr() {
  WriteFn write;
  if (::isatty(STDERR_FILENO) == 1) {
    write = [](std::string_view s) {
      std::fwrite(s.data(), 1, s.size(), stderr);
      std::fflush(stderr);
    };
  }
  return ProgressLine(std::move(write), SteadyNowNs);
}

ProgressLine::ProgressLine(WriteFn write, ClockFn clock, int64_t interval_ns)
    : write_(std::move(write)), clock_(std::move(clock)), interval_ns_(interval_ns) {}

void ProgressLine::Start(std::string label, std::string unit, uint64_t total_bytes) {
  label_ = std::move(label);
  unit_ = std::move(unit);
  total_bytes_ = total_bytes;
  items_ = 0;
  bytes_ = 0;
  if (!enabled()) return;
  start_ns_ = last_draw_ns_ = clock_();
}

void ProgressLine::Add(uint64_t items, uint64_t bytes) {
  items_ += items;
  bytes_ += bytes;
  if (!enabled()) return;
  const int64_t now = clock_();
  if (now - last_draw_ns_ < interval_ns_) return;
  last_draw_ns_ = now;
  const std::string line = Render(now);
  std::string out = "\r" + line;
  if (shown_ > line.size()) out.append(shown_ - line.size(), ' ');  // the rest of a longer line
  shown_ = line.size();
  write_(out);
}

void ProgressLine::Clear() {
  if (!enabled() || shown_ == 0) return;
  write_("\r" + std::string(shown_, ' ') + "\r");
  shown_ = 0;
}

std::string ProgressLine::Render(int64_t now_ns) const {
  const double seconds = static_cast<double>(now_ns - start_ns_) / 1e9;
  const double rate = seconds > 0 ? static_cast<double>(bytes_) / seconds : 0;  // bytes/s
  std::string line = label_ + ": " + std::to_string(items_) + " " + unit_ + ", " + Size(bytes_) +
                     " verified, " + Printf("%.1f MB/s", rate / 1e6);
  if (total_bytes_ > bytes_ && rate > 0) {
    const double left = static_cast<double>(total_bytes_ - bytes_) / rate;
    line += ", " + Duration(static_cast<uint64_t>(left + 0.999)) + " left";
  }
  return line;
}

uint64_t DirectoryBytes(const std::string& dir) {
  std::error_code ec;
  uint64_t total = 0;
  for (std::filesystem::recursive_directory_iterator it(dir, ec), end; !ec && it != end;
       it.increment(ec)) {
    std::error_code size_ec;
    if (!it->is_regular_file(size_ec)) continue;
    const uintmax_t size = it->file_size(size_ec);
    if (!size_ec) total += size;
  }
  return total;
}

}  // namespace kvfs::fusefs
