// Builds against an installed eventbus through find_package: proves the exported targets work.
#include <eventbus/dispatcher.hpp>

int main() {
  eventbus::dispatcher bus({.mode = eventbus::dispatch_mode::caller_thread});
  int seen = 0;
  auto sub = bus.subscribe("order.created", "count", [&](const eventbus::event&) { ++seen; });
  auto outcome = bus.publish(eventbus::make_event(
      {.event_type = "order.created", .aggregate_type = "order", .aggregate_id = "o-1"}));
  return outcome.accepted() && seen == 1 ? 0 : 1;
}
