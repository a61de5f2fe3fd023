#pragma once
// Helpers shared by the test suites: waiting on conditions with a deadline, and small event factories.

#include <chrono>
#include <functional>
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

inline event make_test_event(std::string type = "order.created", std::string aggregate_id = "o-1",
                             nlohmann::json payload = nlohmann::json::object()) {
  const auto dot = type.find('.');
  return make_event({.event_type = type, .aggregate_type = type.substr(0, dot), .aggregate_id = std::move(aggregate_id),
                     .payload = std::move(payload)});
}

}  // namespace eventbus::testing
