#pragma once
// Handlers that register themselves: a handler file declares one static registered_handler, and
// the service subscribes every registered handler with one call, on a dispatcher or a worker.
// (What `eventbus new handler` generates.)
//
//   #include <eventbus/handler_catalog.hpp>
//   #include <eventbus/kafka/worker.hpp>
//   static const eventbus::registered_handler send_receipt{
//       "send-receipt", "order.paid", [](const eventbus::event& ev) { /* ... */ }};
//   int main() {
//     eventbus::worker w({.group_id = "receipts"});
//     std::vector<eventbus::subscription> subs = eventbus::subscribe_all(w);  // send-receipt and every other one
//     w.start();
//   }
//
// Registration happens while static objects are initialised, before main: only in object files
// the program links. A handler in a static library that nothing else references is dropped by
// the linker; link such handlers as an OBJECT library (or with --whole-archive). subscribe_all
// refuses to subscribe nothing, so a dropped file is noticed at start.

#include <concepts>
#include <string>
#include <string_view>
#include <vector>

#include "eventbus/handler.hpp"
#include "eventbus/handler_options.hpp"
#include "eventbus/subscription.hpp"
#include "eventbus/typed_event.hpp"

namespace eventbus {

/// Where a registration is written: the caller's file and line, taken by the default arguments at
/// the call site. (Not std::source_location: clang before 15 cannot build it with libstdc++ 12.)
struct code_location {
  constexpr code_location(const char* in_file = __builtin_FILE(), unsigned at_line = __builtin_LINE()) noexcept
      : file(in_file), line(at_line) {}
  const char* file;
  unsigned line;
};

/// One handler in the process's catalog. Declare it as a static (namespace-scope) object.
class registered_handler {
 public:
  registered_handler(std::string name, std::string pattern, handler_fn fn, handler_options options = {},
                     code_location where = {});
  /// Typed: the handler of T::event_type, `fn(const T&)` or `fn(const T&, const event&)`.
  template <typed_event T, class F>
  [[nodiscard]] static registered_handler of(std::string name, F fn, handler_options options = {},
                                             code_location where = {}) {
    return registered_handler(std::move(name), std::string(T::event_type), make_typed_handler<T>(std::move(fn)),
                              std::move(options), where);
  }
  registered_handler(const registered_handler&) = delete;
  registered_handler& operator=(const registered_handler&) = delete;
  ~registered_handler() = default;
};

/// A catalog entry, as registered.
struct catalog_entry {
  std::string name;
  std::string pattern;
  handler_fn fn;
  handler_options options;
  std::string where;  // "file:line" of the registration
};

/// Every registered handler, in registration order. Throws eventbus::exception
/// (errc::invalid_argument, field "handler_name") when two share a name, naming both places.
[[nodiscard]] std::vector<catalog_entry> registered_handlers();

namespace detail {
/// The entries subscribe_all takes: those whose pattern lies within `only` ("*": all; "order.*":
/// patterns starting "order."; an exact type: that pattern). Throws (invalid_argument) for a
/// duplicate name, a malformed `only`, or nothing to subscribe.
[[nodiscard]] std::vector<catalog_entry> catalog_within(std::string_view only);
}  // namespace detail

/// Subscribes every registered handler within `only` to `target` (a dispatcher or a worker), with
/// its condition and middleware. Throws eventbus::exception (errc::invalid_argument) for a
/// duplicate name (naming both registrations), when nothing lies within `only` (a typo or a file
/// the linker dropped), or as the target's subscribe throws (naming the handler).
template <class Target>
  requires requires(Target& t, std::string s, handler_fn fn, handler_options o) {
    { t.subscribe(s, s, fn, o) } -> std::same_as<subscription>;
  }
[[nodiscard]] std::vector<subscription> subscribe_all(Target& target, std::string_view only = "*") {
  std::vector<subscription> subscriptions;
  for (auto& entry : detail::catalog_within(only))
    subscriptions.push_back(target.subscribe(std::move(entry.pattern), std::move(entry.name), std::move(entry.fn),
                                             std::move(entry.options)));
  return subscriptions;
}

}  // namespace eventbus
