// ProgressLine: long offline work (kvfs check) reports its progress on one terminal line,
// rewritten in place with '\r' at most every `interval` (a few times a second):
//
//   lsm: 1234567 keys, 512.0 MiB verified, 180.3 MB/s, 12 s left
//
// what was verified so far (items and bytes), the rate since the phase started and, when the
// phase's total bytes are known, the time left at that rate. Nothing is drawn in a phase's first
// interval, so quick work never shows a line.
//
// Only for a terminal: ForStderr() gives a line that writes nothing unless stderr is a terminal,
// so what scripts and logs read stays exactly what it was. Other output on the same terminal
// must Clear() the line first, or it lands after the progress text.
//
// Thread safety: one thread at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace kvfs::fusefs {

class ProgressLine {
 public:
  using WriteFn = std::function<void(std::string_view)>;
  using ClockFn = std::function<int64_t()>;  // monotonic nanoseconds

  static constexpr int64_t kDefaultIntervalNs = 250'000'000;

  // Draws on stderr when it is a terminal (isatty), else does nothing; steady_clock's time.
  static ProgressLine ForStderr();

  // Draws through `write` (null: draws nothing) with the time `clock` tells.
  ProgressLine(WriteFn write, ClockFn clock, int64_t interval_ns = kDefaultIntervalNs);

  bool enabled() const { return write_ != nullptr; }

  // Begins a phase, "LABEL: N UNIT, ...", counting from zero, `total_bytes` to verify in all
  // (0: unknown, no time left shown). A line still shown is overwritten by the next draw.
  void Start(std::string label, std::string unit, uint64_t total_bytes);
  // `items` and `bytes` more were verified; redraws if `interval` has passed since the last
  // draw (or the start).
  void Add(uint64_t items, uint64_t bytes);
  // Erases the line, if one is shown.
  void Clear();

  // The line for the current counts, `now_ns` (what Add draws, without '\r').
  std::string Render(int64_t now_ns) const;

 private:
  WriteFn write_;
  ClockFn clock_;
  int64_t interval_ns_;
  std::string label_;
  std::string unit_;
  uint64_t total_bytes_ = 0;
  uint64_t items_ = 0;
  uint64_t bytes_ = 0;
  int64_t start_ns_ = 0;
  int64_t last_draw_ns_ = 0;
  size_t shown_ = 0;  // length of the line on screen; 0 = none
};

// The sum of the sizes of the regular files under `dir` (0 if it cannot be read): what a check
// of a store reads, about.
uint64_t DirectoryBytes(const std::string& dir);

}  // namespace kvfs::fusefs
