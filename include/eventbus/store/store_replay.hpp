#pragma once
// Replaying stored history: the events a read_filter selects, in store order, either through a
// dispatcher's handlers (debugging, rebuilding a read model) or produced to Kafka again (so every
// worker group handles them again, with its retries and dead letters).
//
//   #include <eventbus/store/sqlite_store.hpp>
//   auto store = eventbus::open_sqlite_store({.path = "orders.db"});
//   eventbus::dispatcher projections({.mode = eventbus::dispatch_mode::caller_thread});
//   auto sub = projections.subscribe("order.*", "order_totals", [](const eventbus::event& ev) { /* fold it in */ });
//   auto done = eventbus::replay_to_handlers(*store, projections, {.filter = {.aggregate_type = "order"}});
//
// Replayed events keep their ids: consumers that deduplicate on event_id see them as duplicates,
// which is what makes a replay to Kafka safe to repeat.

#include <chrono>
#include <cstdint>
#include <functional>

#include "eventbus/dispatcher.hpp"
#include "eventbus/error.hpp"
#include "eventbus/kafka/kafka_sink.hpp"
#include "eventbus/store/event_store.hpp"

namespace eventbus {

struct store_replay_summary {
  std::uint64_t events = 0;            // read from the store and replayed
  std::uint64_t handler_calls = 0;     // replay_to_handlers: handler calls made
  std::uint64_t handler_failures = 0;  // replay_to_handlers: calls that threw (logged; the replay goes on)
  std::uint64_t delivered = 0;         // replay_to_kafka: acknowledged by Kafka
  std::uint64_t failed = 0;            // replay_to_kafka: deliveries that failed
};

struct store_replay_options {
  read_filter filter{};
  std::uint64_t limit = 0;  // at most this many events; 0: all that match
  /// Called after each event with the running totals (progress on long runs); none if empty.
  std::function<void(const store_replay_summary&)> progress{};
  /// replay_to_kafka: how long to wait at the end for the last acknowledgements.
  std::chrono::milliseconds flush_timeout{60'000};
};

/// Runs the selected events through `handlers`' matching handlers (dispatcher::run_handlers), one
/// event at a time on the calling thread, in store order. Nothing is stored again or mirrored.
/// A failing handler is counted and the replay goes on; a store that fails ends it with its error.
[[nodiscard]] result<store_replay_summary> replay_to_handlers(event_store& store, dispatcher& handlers,
                                                              const store_replay_options& options = {});

/// Produces the selected events to Kafka through `sink` (the mirror's topics, keys, headers and
/// bytes) in store order and waits for their acknowledgements. errc::timed_out when some were not
/// acknowledged within flush_timeout; delivery failures are counted in the summary.
[[nodiscard]] result<store_replay_summary> replay_to_kafka(event_store& store, kafka_sink& sink,
                                                           const store_replay_options& options = {});

}  // namespace eventbus
