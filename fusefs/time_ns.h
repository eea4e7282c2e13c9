// Times as kvfs keeps them: int64 nanoseconds since the Unix epoch (wall clock), and their
// struct timespec form for stat(2).
#pragma once

#include <time.h>

#include <cstdint>

namespace kvfs::fusefs {

// The wall clock (CLOCK_REALTIME), as file times are.
inline int64_t NowNs() {
  timespec ts;
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

// Times before the epoch keep tv_nsec in [0, 1e9), as the kernel wants.
inline timespec ToTimespec(int64_t ns) {
  int64_t sec = ns / 1000000000;
  int64_t rem = ns % 1000000000;
  if (rem < 0) {
    rem += 1000000000;
    --sec;
  }
  timespec ts;
  ts.tv_sec = static_cast<time_t>(sec);
  ts.tv_nsec = static_cast<long>(rem);
  return ts;
}

inline int64_t FromTimespec(const timespec& ts) {
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

}  // namespace kvfs::fusefs
