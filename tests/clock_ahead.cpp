// A wall clock running ahead, for child processes of tests that prove wall clocks play no part
// (LD_PRELOAD=libclock_ahead.so EVENTBUS_CLOCK_AHEAD_SECONDS=3600). Only the realtime clocks move;
// monotonic clocks are left alone.
//
// Why not Debian's libfaketime: preloaded into a sanitizer build it can deadlock in its own
// initialisation (ASan calls clock_gettime while libfaketime resolves its symbols; wolfcw/libfaketime
// #365), which hung a CI run. This library calls the kernel directly, so it needs no symbol lookup,
// no allocation and no lock; and it is built without sanitizers (a sanitized object must not be
// loaded ahead of the sanitizer runtime).

#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdlib>
#include <ctime>

namespace {

long ahead_seconds() {
  static const long seconds = [] {
    const char* text = std::getenv("EVENTBUS_CLOCK_AHEAD_SECONDS");
    return text == nullptr ? 0L : std::strtol(text, nullptr, 10);
  }();
  return seconds;
}

bool is_wall_clock(clockid_t clock) { return clock == CLOCK_REALTIME || clock == CLOCK_REALTIME_COARSE; }

}  // namespace

extern "C" {

__attribute__((visibility("default"))) int clock_gettime(clockid_t clock, timespec* now) noexcept {
  const long result = syscall(SYS_clock_gettime, clock, now);
  if (result == 0 && is_wall_clock(clock)) now->tv_sec += ahead_seconds();
  return static_cast<int>(result);
}

__attribute__((visibility("default"))) int gettimeofday(timeval* __restrict now, void* __restrict /*zone: obsolete*/) noexcept {
  timespec wall{};
  if (clock_gettime(CLOCK_REALTIME, &wall) != 0) return -1;
  now->tv_sec = wall.tv_sec;
  now->tv_usec = wall.tv_nsec / 1000;
  return 0;
}

__attribute__((visibility("default"))) time_t time(time_t* now) noexcept {
  timespec wall{};
  if (clock_gettime(CLOCK_REALTIME, &wall) != 0) return static_cast<time_t>(-1);
  if (now != nullptr) *now = wall.tv_sec;
  return wall.tv_sec;
}

}  // extern "C"
