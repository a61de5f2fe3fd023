#pragma once
// Unit tests of one handler with one event, without Kafka: run_handler calls the handler the way a
// worker does (its condition, the worker's retry policy, the recover piece, the worker's and the
// handler's own middleware) and reports what a worker would have done. It never sleeps: backoffs
// and deferrals are reported, not waited for, so a test of five retries takes microseconds.
//
//   #include <eventbus/testing.hpp>
//   int main() {
//     int calls = 0;
//     const eventbus::handler_fn flaky = [&](const eventbus::event&) {
//       if (++calls < 3) throw std::runtime_error("database busy");
//     };
//     const auto ev = eventbus::make_event({.event_type = "order.created", .aggregate_type = "order",
//                                           .aggregate_id = "o-1", .payload = {{"total", 5}}});
//     const auto report = eventbus::testing::run_handler(flaky, ev, {.retry = {.max_attempts = 5}});
//     return report.succeeded() && report.attempts == 3 && report.backoffs.size() == 2 ? 0 : 1;
//   }

#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

#include "eventbus/event.hpp"
#include "eventbus/handler.hpp"
#include "eventbus/handler_options.hpp"
#include "eventbus/middleware.hpp"
#include "eventbus/retry.hpp"

namespace eventbus::testing {

struct run_options {
  retry_policy retry{};                     // the worker's (worker_options::retry)
  std::vector<eventbus::middleware> middleware{};  // the worker's pieces (worker_options::middleware)
  handler_options handler{};                // the subscription's condition and pieces
  std::string handler_name = "handler-under-test";
  /// Deferrals (rate limits) run through before giving up with attempt_result::deferred.
  std::size_t max_deferrals = 10'000;
};

struct handler_report {
  /// succeeded, or dead_letter (what a worker would dead-letter), or deferred (still deferred
  /// after max_deferrals).
  attempt_result result = attempt_result::succeeded;
  bool filtered = false;  // the condition rejected the event: the handler did not run (a success)
  int attempts = 0;       // handler calls (attempts through the chain), deferrals not included
  std::size_t deferrals = 0;
  std::vector<std::string> errors;                  // the error of each failed attempt, in order
  std::vector<std::chrono::milliseconds> backoffs;  // the wait before each retry (not slept)
  std::string dead_letter_reason;                   // with dead_letter: "handler-error", "unauthorized", ...

  [[nodiscard]] bool succeeded() const noexcept { return result == attempt_result::succeeded; }
};

/// Runs `handler` on `ev` as a worker would, to the end (success, dead letter). Throws
/// eventbus::exception (errc::invalid_argument) for an invalid retry policy or an empty handler.
[[nodiscard]] handler_report run_handler(const handler_fn& handler, const event& ev, run_options options = {});

}  // namespace eventbus::testing
