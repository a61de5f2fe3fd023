#pragma once
// The worker's timers (backoffs over, dead-letter writes to try again): functions due at a time,
// run by the consumer thread in time order. Not thread-safe: one thread owns it.

#include <functional>
#include <map>
#include <optional>

#include "worker/records.hpp"

namespace eventbus::detail {

class timer_queue {
 public:
  using time_point = worker_clock::time_point;

  void at(time_point when, std::function<void()> fn) { timers_.emplace(when, std::move(fn)); }

  /// Runs every function due by `now`, earliest first; one that is added meanwhile and already
  /// due runs too. With `discard`, due functions are dropped instead (the worker is stopping).
  void run_due(time_point now, bool discard = false) {
    while (!timers_.empty() && timers_.begin()->first <= now) {
      auto fn = std::move(timers_.begin()->second);
      timers_.erase(timers_.begin());
      if (!discard) fn();
    }
  }

  /// When the earliest timer is due, if any.
  [[nodiscard]] std::optional<time_point> next_due() const {
    if (timers_.empty()) return std::nullopt;
    return timers_.begin()->first;
  }

 private:
  std::multimap<time_point, std::function<void()>> timers_;
};

}  // namespace eventbus::detail
