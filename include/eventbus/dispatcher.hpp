#pragma once
// The in-process dispatcher: publish(event) runs every handler subscribed to its type, each isolated
// from the others, then hands the event to every sink (the Kafka mirror).
//
// Thread safety: every member function may be called from any thread at any time, including from
// inside a handler: subscribe, unsubscribe and clear while events are being published are safe.
// A handler added during a publish may or may not see that event; one removed is not started again.
//
// Patterns: an exact type ("order.created"), a prefix ("order.*": every type starting "order."),
// or "*" (every event). Handlers of one event start in subscription order.
//
// Execution:
//  - dispatch_mode::thread_pool (default): each handler call is a task on a bounded pool. When the
//    queue has no room, publish() waits up to enqueue_timeout, then returns errc::queue_full and
//    nothing of that event was scheduled or mirrored: retry, or slow down. A publish from inside a
//    handler is never blocked (it could be waiting on itself): it may exceed the capacity.
//    A handler may run concurrently with itself for different events.
//    Priorities (priority_levels > 1): publish(ev, {.priority = p}) queues the event's handler calls
//    at level p; a free pool thread starts the oldest call of the highest level waiting. Calls of
//    one level start in publish order. Strict: lower levels wait while higher ones have calls
//    queued (see docs/handlers.md, Priorities, for when that starves them).
//  - dispatch_mode::caller_thread: handlers run inside publish(), one after another. A nested
//    publish from a handler runs its handlers before the outer publish continues.
//
// Shutdown: shutdown() (and the destructor) stops accepting publishes from outside the pool
// (errc::shut_down), runs every scheduled handler call, including those the handlers publish while
// draining, and joins the pool.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "eventbus/error.hpp"
#include "eventbus/event.hpp"
#include "eventbus/store/event_store.hpp"
#include "eventbus/handler.hpp"
#include "eventbus/handler_options.hpp"
#include "eventbus/middleware.hpp"
#include "eventbus/sink.hpp"
#include "eventbus/subscription.hpp"
#include "eventbus/typed_event.hpp"

namespace eventbus {

enum class dispatch_mode { thread_pool, caller_thread };

struct dispatcher_options {
  dispatch_mode mode = dispatch_mode::thread_pool;
  std::size_t pool_size = 4;         // handler threads (thread_pool mode)
  std::size_t queue_capacity = 4096;  // scheduled handler calls not yet started
  std::chrono::milliseconds enqueue_timeout{1000};  // how long publish() waits for room
  /// Priorities publish() accepts: 0 .. priority_levels - 1, higher first (thread_pool mode), 1..16.
  std::size_t priority_levels = 1;
  /// Called after every handler call with its outcome and duration, e.g. with
  /// eventbus::metrics::handler_observer() for the latency histogram. Must not throw; none if empty.
  handler_observer observe_handler{};
  /// Pieces around every handler call, outermost first (middleware.hpp; shipped ones in
  /// middlewares.hpp), outside each handler's own handler_options::middleware. An outcome other
  /// than succeeded is a failed call (logged, counted); a deferred one (a rate limit) waits on the
  /// pool thread, then the chain runs again.
  std::vector<eventbus::middleware> middleware{};
  /// Told of every event a handler's condition rejected, e.g. with
  /// eventbus::metrics::filtered_observer_for(m) for eventbus_events_filtered_total. Must not throw.
  filtered_observer observe_filtered{};
  /// The event store (transactional outbox). When set, publish() stores the event first, and only
  /// once it is stored runs handlers and sinks; a store that refuses it rejects the publish
  /// (errc::store_failed), nothing dispatched. The accepted result carries a delivery of sink
  /// "store" (offset: the store position): the event is durable then. Kafka gets it through an
  /// outbox_relay; add_sink refuses a kafka_sink here (it would send every event twice).
  std::shared_ptr<event_store> store{};

  /// Throws eventbus::exception (errc::invalid_argument, naming the option) when unusable.
  void validate() const;
};

/// How one event is published.
struct publish_options {
  /// 0 (the default and the lowest) .. dispatcher_options::priority_levels - 1; anything above is
  /// rejected (errc::invalid_argument, field "priority"). caller_thread mode runs handlers inside
  /// publish(), so there is nothing to order, but the range is still checked.
  std::size_t priority = 0;
};

/// What dispatcher::run_handlers did with one event.
struct handler_run {
  std::size_t calls = 0;     // handlers whose pattern matched
  std::size_t failures = 0;  // of those, calls that threw (logged, counted in stats().handler_failures)
};

struct dispatcher_stats {
  std::uint64_t published = 0;         // events accepted
  std::uint64_t rejected = 0;          // publishes refused (queue full, shut down, a priority out of range)
  std::uint64_t handler_failures = 0;  // handler calls that threw
};

/// What publish() did with an event: accepted (handlers scheduled, sinks handed the event) or
/// rejected with a reason; and, for each sink, the eventual delivery.
class [[nodiscard]] publish_result {
 public:
  // User-provided, not defaulted: GCC zero-filled the whole object (120 bytes) on every publish.
  publish_result() noexcept {}  // NOLINT(modernize-use-equals-default)
  static publish_result rejected(error reason);

  [[nodiscard]] bool accepted() const noexcept { return !rejection_.has_value(); }
  explicit operator bool() const noexcept { return accepted(); }
  /// Why it was rejected. Precondition: !accepted().
  [[nodiscard]] const error& rejection() const;

  /// Blocks until every sink has settled. The deliveries in sink order, or the rejection, or the
  /// first sink failure. May be called again: it returns the same outcome.
  [[nodiscard]] result<std::vector<delivery>> wait() const;
  /// True when wait() would not block.
  [[nodiscard]] bool is_ready() const noexcept;

 private:
  friend class dispatcher;  // builds it in place (one object, returned without a copy)
  void add_delivery(delivery_future pending);
  std::optional<error> rejection_;
  delivery_future first_;               // one sink is the common case: no vector allocation
  std::vector<delivery_future> more_;
};

class dispatcher {
 public:
  /// Starts the pool (thread_pool mode). Throws eventbus::exception for invalid options.
  explicit dispatcher(dispatcher_options options = {});
  ~dispatcher();
  dispatcher(const dispatcher&) = delete;
  dispatcher& operator=(const dispatcher&) = delete;

  /// Registers `fn` under `handler_name` (used in logs and metrics) for `pattern`, with an optional
  /// condition and middleware of its own (handler_options.hpp). Throws eventbus::exception
  /// (errc::invalid_argument) for a malformed pattern, an empty name or fn, an empty middleware, or a
  /// (pattern, name) pair already registered. The same function may be subscribed to many patterns.
  [[nodiscard]] subscription subscribe(std::string pattern, std::string handler_name, handler_fn fn,
                                       handler_options options = {});

  /// Typed: subscribes to T::event_type; `fn(const T&)` or `fn(const T&, const event&)` receives the
  /// decoded payload. A payload that does not decode is a failed call (logged, counted).
  template <typed_event T, class F>
  [[nodiscard]] subscription subscribe(std::string handler_name, F fn, handler_options options = {}) {
    return subscribe(std::string(T::event_type), std::move(handler_name), make_typed_handler<T>(std::move(fn)),
                     std::move(options));
  }

  /// Every handler name subscribed now, with its patterns, condition, middleware and counts (what
  /// metrics_server's /handlers serves).
  [[nodiscard]] std::vector<handler_info> handlers() const;

  /// Removes every subscription (their handles become inactive).
  void clear() noexcept;

  /// Dispatches `ev` to its handlers, then to every sink. See the header comment for backpressure
  /// and priorities.
  [[nodiscard]] publish_result publish(const event& ev, publish_options how = {});

  /// Runs the handlers matching `ev` on the calling thread, one after another, and nothing else:
  /// the event is not stored, not handed to sinks and not counted as published. For replaying
  /// history through the handlers (replay_to_handlers), where the order must be the store's.
  /// Failures are isolated and counted as in publish(). Works after shutdown() too.
  handler_run run_handlers(const event& ev);

  /// Adds a sink that receives every accepted event from now on. Throws eventbus::exception
  /// (errc::invalid_argument) for a null sink, and for a Kafka sink (name() "kafka") on a dispatcher
  /// with a store: the store's outbox_relay already sends each event to Kafka.
  void add_sink(std::shared_ptr<event_sink> sink);

  /// Idempotent; see the header comment. Called from inside a handler it only stops intake.
  void shutdown() noexcept;

  [[nodiscard]] dispatcher_stats stats() const noexcept;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace eventbus
