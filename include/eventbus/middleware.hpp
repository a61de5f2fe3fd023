#pragma once
// Worker handler middleware, in the manner of Watermill's router: every handler call ("attempt")
// runs through a chain of small pieces, each wrapping the rest. A piece sees the attempt, may act
// before and after calling `next`, and returns the attempt's outcome; the worker then acts on it
// (done, call again after `retry_after`, or dead-letter). Waiting never happens inside the chain:
// a retry is scheduled by the worker and holds back only the record's own partition.
//
// Every worker runs, outermost first:
//   timing (its stats and metrics) -> retry(policy) -> recover -> worker_options::middleware... -> handler
// and the pieces are public, so they can be reused and tested on their own:
//
//   #include <eventbus/kafka/worker.hpp>
//   eventbus::middleware log_slow = [](const eventbus::attempt_context& ctx, const eventbus::next_step& next) {
//     const auto start = std::chrono::steady_clock::now();
//     auto outcome = next(ctx);
//     if (std::chrono::steady_clock::now() - start > std::chrono::seconds(1)) { /* log ctx.handler */ }
//     return outcome;
//   };
//   eventbus::worker w({.group_id = "billing", .topics = {"^app\\.order\\..*"}, .middleware = {log_slow}});

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "eventbus/event.hpp"
#include "eventbus/handler.hpp"
#include "eventbus/retry.hpp"

namespace eventbus {

/// One call of one handler on one record.
struct attempt_context {
  const event& ev;
  std::string_view handler;  // the name given at subscribe
  int attempt = 1;           // 1 for the first call
  std::string_view topic;
  std::int32_t partition = -1;
  std::int64_t offset = -1;
};

enum class attempt_result {
  succeeded,
  retry,        // call again after retry_after
  dead_letter,  // give up: the record goes to the dead-letter topic
};

struct attempt_outcome {
  attempt_result result = attempt_result::succeeded;
  std::string error{};                       // why, when it did not succeed
  std::chrono::milliseconds retry_after{0};  // with attempt_result::retry
};

[[nodiscard]] std::string_view to_string(attempt_result result) noexcept;

class next_step;

/// A piece of the chain. Calls `next(ctx)` to run the rest (or not, to short-circuit).
using middleware = std::function<attempt_outcome(const attempt_context& ctx, const next_step& next)>;

/// The rest of the chain after a middleware: the following pieces, then the handler.
class next_step {
 public:
  next_step(const std::vector<middleware>& chain, const handler_fn& handler, std::size_t index = 0) noexcept
      : chain_(&chain), handler_(&handler), index_(index) {}

  /// Runs the rest. The handler itself succeeds by returning and fails by throwing (the `recover`
  /// piece turns exceptions into outcomes).
  attempt_outcome operator()(const attempt_context& ctx) const;

 private:
  const std::vector<middleware>* chain_;
  const handler_fn* handler_;
  std::size_t index_;
};

/// Runs `handler` on `ctx` through `chain` (first element outermost).
[[nodiscard]] inline attempt_outcome run_chain(const std::vector<middleware>& chain, const handler_fn& handler,
                                               const attempt_context& ctx) {
  return next_step(chain, handler)(ctx);
}

namespace middlewares {

/// Exceptions become outcomes: eventbus::permanent_error -> dead_letter ("permanent: <what>"); any
/// other exception -> retry (its what()). Nothing escapes.
[[nodiscard]] middleware recover();

/// A retry outcome becomes dead_letter once the call was the policy's last attempt; otherwise it
/// gets the policy's backoff (with jitter) as retry_after.
[[nodiscard]] middleware retry(retry_policy policy);

/// Receives every attempt, failed ones included, with how long it took. Must not throw.
using attempt_observer =
    std::function<void(const attempt_context& ctx, const attempt_outcome& outcome, std::chrono::nanoseconds took)>;

/// Times each attempt and reports it to `observe` (the worker's stats and metrics hang here).
[[nodiscard]] middleware timing(attempt_observer observe);

}  // namespace middlewares
}  // namespace eventbus
