#pragma once
// What one subscription adds to its handler, on a dispatcher and on a worker alike: a condition
// (the handler runs only for the events it accepts) and middleware of its own.
//
//   #include <eventbus/dispatcher.hpp>
//   #include <eventbus/middlewares.hpp>
//   struct order_created {
//     static constexpr std::string_view event_type = "order.created";
//     static constexpr std::string_view aggregate_type = "order";
//     double total = 0;
//   };
//   NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(order_created, total)
//   int main() {
//     eventbus::dispatcher bus({.mode = eventbus::dispatch_mode::caller_thread});
//     auto big = bus.subscribe("order.created", "review-big-orders", [](const eventbus::event&) { /* ... */ },
//                              {.when = eventbus::when<order_created>([](const order_created& o) { return o.total > 100; }),
//                               .middleware = {eventbus::middlewares::logging(eventbus::log_level::info)}});
//   }

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <string>
#include <functional>
#include <string_view>
#include <vector>

#include "eventbus/event.hpp"
#include "eventbus/middleware.hpp"
#include "eventbus/typed_event.hpp"

namespace eventbus {

/// A condition over an event (envelope and payload). An event it rejects is not handled by that
/// handler: it is counted (eventbus_events_filtered_total{handler}) and, in a worker, committed
/// like a handled one. One that throws fails the call like the handler would (retried in a worker).
using event_filter = std::function<bool(const event& ev)>;

/// The typed form: accepts events of T::event_type whose payload decodes into T and satisfies
/// `pred`; rejects events of other types. A payload of T's type that does not decode is accepted,
/// so the handler reports the mismatch (a condition never hides a broken event).
template <typed_event T, class P>
  requires std::predicate<P&, const T&>
[[nodiscard]] event_filter when(P pred) {
  return [pred = std::move(pred)](const event& ev) mutable {
    if (ev.event_type() != T::event_type) return false;
    auto value = payload_as<T>(ev);
    return !value.ok() || static_cast<bool>(pred(value.value()));
  };
}

struct handler_options {
  /// When set, the handler runs only for the events this accepts.
  event_filter when{};
  /// Pieces around this handler only, outermost first, inside the bus's or worker's own pieces.
  std::vector<eventbus::middleware> middleware{};
};

/// What /handlers and `eventbus handlers` show for one handler name of a dispatcher or worker.
struct handler_info {
  std::string name{};
  std::vector<std::string> patterns{};   // every pattern subscribed under this name
  bool has_condition = false;            // a handler_options::when on any of them
  std::size_t max_events = 0;            // a worker's batch handler: its batch_options::max_events; else 0
  std::vector<std::string> middleware{};  // names of its own pieces (handler_options::middleware)
  std::uint64_t in_flight = 0;           // calls running now
  std::uint64_t calls = 0;               // calls made (attempts and batch calls, in a worker), failed ones included
  std::uint64_t failures = 0;            // calls that did not succeed
  std::uint64_t filtered = 0;            // events its condition rejected
};

}  // namespace eventbus
