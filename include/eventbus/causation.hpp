#pragma once
// Causation chains that follow themselves. While a handler runs (a dispatcher's, inline or on its
// pool, or a worker's), the event it handles is this thread's current cause, and every event made
// then (make_event, typed events) continues the chain unless the caller set the fields:
//   - causation_id   = the cause's event_id
//   - correlation_id = the cause's correlation_id, or its event_id when it had none
//   - metadata["traceparent"] (W3C Trace Context) = the cause's trace, with a new span id
//
//   #include <eventbus/dispatcher.hpp>
//   eventbus::dispatcher bus;
//   auto sub = bus.subscribe("order.placed", "reserve_stock", [&](const eventbus::event& placed) {
//     (void)bus.publish(eventbus::make_event({.event_type = "stock.reserved", .aggregate_type = "stock",
//                                             .aggregate_id = "sku-1"}));   // caused by `placed`
//   });
//
// Code that resumes a workflow outside a handler (a scheduled job, a reply from another system)
// can make an event the cause explicitly with a cause_scope.

#include <optional>
#include <string>
#include <string_view>

#include "eventbus/event.hpp"

namespace eventbus {

namespace detail {
// The current cause of this thread (constinit: no initialisation check per access). Read and
// written inline: a scope opens around every handler call.
extern thread_local constinit const event* t_current_cause;
}  // namespace detail

/// The event whose handler is running on this thread (the innermost one), or null.
[[nodiscard]] const event* current_cause() noexcept;

/// Makes `cause` this thread's current cause until the scope ends, then restores the previous one.
/// Scopes nest. `cause` must outlive the scope.
class cause_scope {
 public:
  explicit cause_scope(const event& cause) noexcept : previous_(detail::t_current_cause) {
    detail::t_current_cause = &cause;
  }
  ~cause_scope() { detail::t_current_cause = previous_; }
  cause_scope(const cause_scope&) = delete;
  cause_scope& operator=(const cause_scope&) = delete;

 private:
  const event* previous_;
};

/// A W3C traceparent that continues `parent`'s trace: same trace id and flags, a new random span
/// id, version 00. Nothing when `parent` is not a valid traceparent.
[[nodiscard]] std::optional<std::string> child_traceparent(std::string_view parent);

}  // namespace eventbus
