#pragma once
// Shipped middleware (middleware.hpp) for dispatchers and workers: structured logging of every
// call, authorization, and rate limiting. Each is a plain piece: put it in
// dispatcher_options::middleware or worker_options::middleware (every handler), or in one
// subscription's handler_options::middleware (that handler only).
//
//   #include <eventbus/kafka/worker.hpp>
//   #include <eventbus/middlewares.hpp>
//   int main() {
//     auto m = std::make_shared<eventbus::metrics>();
//     eventbus::worker_options options{.group_id = "billing", .metrics = m};
//     options.middleware = {
//         eventbus::middlewares::logging(eventbus::log_level::debug),
//         eventbus::middlewares::authorize(eventbus::metadata_map{{"tenant", "acme"}}, m),
//         eventbus::middlewares::rate_limit({.per_second = 1000, .per = eventbus::middlewares::limit_scope::key, .metrics = m}),
//     };
//     eventbus::worker w(std::move(options));
//   }

#include <functional>
#include <memory>
#include <string_view>

#include "eventbus/event.hpp"
#include "eventbus/log.hpp"
#include "eventbus/metrics.hpp"
#include "eventbus/middleware.hpp"

namespace eventbus::middlewares {

/// One log line per call (a worker: per attempt), structured as key=value pairs:
///   handler call: handler=charge event_type=order.created event_id=... aggregate_id=o-1 attempt=1
///   outcome=succeeded duration_ms=0.412 [reason=... error="..."]
/// (outcome "threw" for an exception on its way to the recover piece.)
/// Successes at `level`; other outcomes at `level` or warn, whichever is higher. A deferral (rate
/// limit) is not logged: it is not a call. Lines below the process's log level cost nothing.
[[nodiscard]] middleware logging(log_level level = log_level::info);

/// Who may run a handler on an event: true to let the call through.
using authorization = std::function<bool(const attempt_context& ctx)>;

/// Lets a call through only when `allow` says so. A refused call fails with reason "unauthorized"
/// (a worker dead-letters the record for that handler at once, no retry; a dispatcher counts a
/// failed call) and is counted in eventbus_events_unauthorized_total{handler} when `m` is set.
/// A throwing `allow` refuses.
[[nodiscard]] middleware authorize(authorization allow, std::shared_ptr<metrics> m = nullptr);

/// The claims form: the event's metadata must hold every entry of `required_claims` with that
/// exact value (e.g. {{"tenant", "acme"}}). Throws eventbus::exception (errc::invalid_argument) for
/// an empty map (it would let everything through).
[[nodiscard]] middleware authorize(metadata_map required_claims, std::shared_ptr<metrics> m = nullptr);

/// What a rate limit counts calls by.
enum class limit_scope {
  handler,  // one bucket per handler name
  key,      // one bucket per handler and aggregate id (the Kafka key)
};
/// What happens to a call over the limit.
enum class over_limit {
  wait,    // deferred until a token is there: a worker holds no handler thread meanwhile (its key
           // waits, in order); a dispatcher waits on its pool thread
  reject,  // fails at once with reason "rate-limited" (a worker dead-letters the record)
};

struct rate_limit_options {
  double per_second = 0;  // required: calls let through per second, per bucket (> 0)
  double burst = 1;       // calls a full bucket lets through at once (>= 1)
  limit_scope per = limit_scope::handler;
  over_limit when_over = over_limit::wait;
  /// Buckets kept with limit_scope::key; past it, full (idle) buckets are dropped first.
  std::size_t max_keys = 100'000;
  /// eventbus_events_rate_limited_total{handler, outcome="deferred"|"rejected"}; none if null.
  std::shared_ptr<eventbus::metrics> metrics{};
};

/// A token bucket: `per_second` calls on average, `burst` at once. Throws eventbus::exception
/// (errc::invalid_argument, naming the option) for a rate that is not positive and finite, a burst
/// below 1, or max_keys 0.
[[nodiscard]] middleware rate_limit(rate_limit_options options);

}  // namespace eventbus::middlewares
