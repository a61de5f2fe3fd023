#pragma once
// Helpers shared by the test suites: waiting on conditions with a deadline, and small event factories.

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "eventbus/event.hpp"

namespace eventbus::testing {

/// Polls `condition` until it holds or `timeout` passes; returns its last value. Synchronisation
/// by condition, never by a fixed sleep. A condition that costs something to check (reads files,
/// asks the broker) gets a longer `poll_every`: checked every millisecond, it would take a core
/// from the very processes it waits for.
inline bool wait_until(const std::function<bool()>& condition,
                       std::chrono::milliseconds timeout = std::chrono::seconds(10),
                       std::chrono::milliseconds poll_every = std::chrono::milliseconds(1)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return condition();
    std::this_thread::sleep_for(poll_every);
  }
  return true;
}

/// A gate handlers wait at until the test opens it, or give up after `limit` (so a failing test
/// never leaves a thread blocked for good); waiting() counts who waits now.
class gate {
 public:
  void wait(std::chrono::milliseconds limit = std::chrono::seconds(60)) {
    std::unique_lock lock(mu_);
    ++waiting_;
    cv_.wait_for(lock, limit, [&] { return open_; });
    --waiting_;
  }
  void open() {
    {
      const std::lock_guard lock(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }
  int waiting() {
    const std::lock_guard lock(mu_);
    return waiting_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
  int waiting_ = 0;
};

inline event make_test_event(std::string type = "order.created", std::string aggregate_id = "o-1",
                             nlohmann::json payload = nlohmann::json::object()) {
  const auto dot = type.find('.');
  return make_event({.event_type = type, .aggregate_type = type.substr(0, dot), .aggregate_id = std::move(aggregate_id),
                     .payload = std::move(payload)});
}

}  // namespace eventbus::testing
