#pragma once
// A handler is a function of an event. It fails by throwing; eventbus catches, logs and counts the
// failure, and never lets it reach the publisher or another handler.

#include <chrono>
#include <concepts>
#include <functional>

#include "eventbus/event.hpp"
#include "eventbus/typed_event.hpp"

namespace eventbus {

using handler_fn = std::function<void(const event&)>;

/// Told of each finished handler call: which handler, on which event, whether it returned
/// normally, and how long it ran.
using handler_observer =
    std::function<void(std::string_view handler, const event& ev, bool success, std::chrono::nanoseconds took)>;

/// Told of each event a handler's condition (handler_options::when) rejected.
using filtered_observer = std::function<void(std::string_view handler, const event& ev)>;

/// Adapts a function of a typed event (`fn(const T&)` or `fn(const T&, const event&)`) to a
/// handler_fn. A payload that does not decode into T fails the call with an eventbus::exception
/// (errc::payload_mismatch) naming the event type and the JSON problem.
template <typed_event T, class F>
  requires std::invocable<F&, const T&> || std::invocable<F&, const T&, const event&>
[[nodiscard]] handler_fn make_typed_handler(F fn) {
  return [fn = std::move(fn)](const event& ev) mutable {
    const T value = payload_as<T>(ev).value();
    if constexpr (std::invocable<F&, const T&, const event&>)
      fn(value, ev);
    else
      fn(value);
  };
}

}  // namespace eventbus
