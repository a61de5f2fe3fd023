#pragma once
// Handler middleware, in the manner of Watermill's router, for workers and dispatchers alike:
// every handler call ("attempt") runs through a chain of small pieces, each wrapping the rest. A
// piece sees the attempt, may act before and after calling `next`, and returns the attempt's
// outcome; the worker then acts on it (done, call again after `retry_after`, or dead-letter), the
// dispatcher counts anything but success as a failed call. Waiting never happens inside a worker's
// chain: a retry (or a deferral) is scheduled by the worker and holds back only the record's key.
//
// Every worker runs, outermost first:
//   timing (its stats and metrics) -> retry(policy) -> recover -> worker_options::middleware...
//     -> the handler's own handler_options::middleware... -> handler
// and a dispatcher: recover -> dispatcher_options::middleware... -> handler_options::middleware... -> handler.
// The pieces are public, so they can be reused and tested on their own (shipped ones:
// eventbus/middlewares.hpp):
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
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <type_traits>
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
  std::string_view topic{};
  std::int32_t partition = -1;
  std::int64_t offset = -1;
};

enum class attempt_result {
  succeeded,
  retry,        // call again after retry_after
  dead_letter,  // give up: the record goes to the dead-letter topic
  /// Not run now (a rate limit): call again after retry_after, and it is not an attempt (the
  /// retry policy does not count it). A worker waits on a timer, holding no handler thread; a
  /// dispatcher waits on its pool thread.
  deferred,
};

struct attempt_outcome {
  attempt_result result = attempt_result::succeeded;
  std::string error{};                       // why, when it did not succeed
  std::chrono::milliseconds retry_after{0};  // with attempt_result::retry and ::deferred
  /// With attempt_result::dead_letter: the dead letter's reason (x-eventbus-dlq-reason); empty
  /// means "handler-error". Shipped pieces use "unauthorized" and "rate-limited".
  std::string reason{};
  /// Set by the retry piece when it turned a failure into a dead letter because the policy's
  /// attempts were spent (a worker with durable stages parks such a record instead, unless its
  /// last stage is spent too).
  bool retries_exhausted = false;
};

[[nodiscard]] std::string_view to_string(attempt_result result) noexcept;

class next_step;

/// A piece of the chain: a function `attempt_outcome(const attempt_context&, const next_step&)`
/// that calls `next(ctx)` to run the rest (or not, to short-circuit), with a name that
/// /handlers and logs show ("custom" unless given).
class middleware {
 public:
  using function = std::function<attempt_outcome(const attempt_context& ctx, const next_step& next)>;

  template <class F>
    requires std::is_invocable_r_v<attempt_outcome, F&, const attempt_context&, const next_step&> &&
             (!std::is_same_v<std::remove_cvref_t<F>, middleware>)
  middleware(F fn) : fn_(std::move(fn)) {}  // NOLINT(google-explicit-constructor): a lambda is a piece
  middleware(std::string name, function fn) : name_(std::move(name)), fn_(std::move(fn)) {}
  /// An empty piece, as an empty std::function would be: options refuse it, naming its position.
  middleware(std::nullptr_t) noexcept {}  // NOLINT(google-explicit-constructor)

  attempt_outcome operator()(const attempt_context& ctx, const next_step& next) const { return fn_(ctx, next); }
  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  /// False for a piece made from an empty function (options refuse it).
  explicit operator bool() const noexcept { return static_cast<bool>(fn_); }

 private:
  std::string name_ = "custom";
  function fn_;
};

/// The rest of the chain after a middleware: the following pieces (of `outer`, then of `inner`),
/// then the handler.
class next_step {
 public:
  next_step(const std::vector<middleware>& chain, const handler_fn& handler, std::size_t index = 0) noexcept
      : outer_(&chain), inner_(&no_pieces()), handler_(&handler), index_(index) {}
  next_step(const std::vector<middleware>& outer, const std::vector<middleware>& inner, const handler_fn& handler,
            std::size_t index = 0) noexcept
      : outer_(&outer), inner_(&inner), handler_(&handler), index_(index) {}

  /// Runs the rest. The handler itself succeeds by returning and fails by throwing (the `recover`
  /// piece turns exceptions into outcomes).
  attempt_outcome operator()(const attempt_context& ctx) const;

 private:
  static const std::vector<middleware>& no_pieces() noexcept;
  const std::vector<middleware>* outer_;
  const std::vector<middleware>* inner_;
  const handler_fn* handler_;
  std::size_t index_;
};

/// Runs `handler` on `ctx` through `chain` (first element outermost).
[[nodiscard]] inline attempt_outcome run_chain(const std::vector<middleware>& chain, const handler_fn& handler,
                                               const attempt_context& ctx) {
  return next_step(chain, handler)(ctx);
}
/// Runs `handler` on `ctx` through `outer`, then `inner` (the bus's pieces, then the handler's own).
[[nodiscard]] inline attempt_outcome run_chain(const std::vector<middleware>& outer,
                                               const std::vector<middleware>& inner, const handler_fn& handler,
                                               const attempt_context& ctx) {
  return next_step(outer, inner, handler)(ctx);
}

namespace middlewares {

/// Exceptions become outcomes: eventbus::permanent_error -> dead_letter ("permanent: <what>"); an
/// eventbus::exception of errc::payload_mismatch with field "version" (a typed event of a schema
/// version with no upcaster path to its handler's, upcaster.hpp) -> dead_letter with reason
/// "validation"; any other exception -> retry (its what()). Nothing escapes.
[[nodiscard]] middleware recover();

/// A retry outcome becomes dead_letter once the call was the policy's last attempt; otherwise it
/// gets the policy's backoff (with jitter) as retry_after.
[[nodiscard]] middleware retry(retry_policy policy);

/// Receives every attempt, failed ones included, with how long it took. Must not throw.
using attempt_observer =
    std::function<void(const attempt_context& ctx, const attempt_outcome& outcome, std::chrono::nanoseconds took)>;

/// Times each attempt and reports it to `observe` (the worker's stats and metrics hang here).
/// Deferred outcomes are not attempts and are not reported.
[[nodiscard]] middleware timing(attempt_observer observe);

}  // namespace middlewares
}  // namespace eventbus
