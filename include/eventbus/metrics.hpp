#pragma once
// The Prometheus metrics of docs/metrics.md, in one prometheus-cpp registry. Give the same
// `std::shared_ptr<metrics>` to the dispatcher, the Kafka sink and workers (their `metrics`
// option), serve it with eventbus::metrics_server, and add your own families to registry().
//
//   #include <eventbus/metrics_server.hpp>
//   #include <eventbus/kafka/worker.hpp>
//   auto m = std::make_shared<eventbus::metrics>();
//   eventbus::worker w({.group_id = "billing", .topics = {"^app\\.order\\..*"}, .metrics = m});
//   eventbus::metrics_server server(m);          // http://127.0.0.1:9464/metrics
//
// Labels never carry ids (event, aggregate, correlation): handler names, event types, topics,
// partitions and reasons only, so the number of series stays bounded.

#include <chrono>
#include <cstdint>
#include <memory>
#include <cstddef>
#include <string_view>

#include "eventbus/handler.hpp"

namespace prometheus {
class Registry;
}

namespace eventbus {

namespace detail {
struct worker_load;
struct metrics_access;
}  // namespace detail

/// Handler latency buckets, in seconds: 0.5 ms to 30 s.
inline constexpr double handler_duration_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                      0.25,   0.5,   1.0,    2.5,   5.0,  10.0,  30.0};

class metrics {
 public:
  /// Registers the families in `registry`, or in a registry of its own.
  explicit metrics(std::shared_ptr<prometheus::Registry> registry = nullptr);
  ~metrics();
  metrics(const metrics&) = delete;
  metrics& operator=(const metrics&) = delete;

  /// Bounds on what any input can make a scrape hold: label values are cut to max_label_bytes, and
  /// past max_series label sets in one family, new ones are counted in one series labelled
  /// overflow_label.
  static constexpr std::size_t max_label_bytes = 256;
  static constexpr std::size_t max_series = 10'000;
  static constexpr std::string_view overflow_label = "_other";

  [[nodiscard]] prometheus::Registry& registry() noexcept;
  [[nodiscard]] std::shared_ptr<prometheus::Registry> shared_registry() const noexcept;

  // Recording. Thread-safe; each series is looked up once and cached, so repeated calls cost a
  // shared lock and a hash of the labels.

  /// eventbus_handler_duration_seconds{handler, event_type, outcome="success"|"error"}
  void observe_handler(std::string_view handler, std::string_view event_type, bool success,
                       std::chrono::nanoseconds took);
  /// The same, as a dispatcher_options::observe_handler. Keeps this object alive.
  [[nodiscard]] static handler_observer handler_observer_for(std::shared_ptr<metrics> m);
  /// eventbus_events_filtered_total, as a dispatcher_options::observe_filtered. Keeps this object alive.
  [[nodiscard]] static filtered_observer filtered_observer_for(std::shared_ptr<metrics> m);
  /// eventbus_handler_retries_total{handler, event_type}
  void count_retry(std::string_view handler, std::string_view event_type);
  /// eventbus_dead_letters_total{topic, handler, reason} (topic: the record's original topic)
  void count_dead_letter(std::string_view topic, std::string_view handler, std::string_view reason);
  /// eventbus_dead_letters_dropped_total{topic, handler, reason}: records given up because the
  /// cluster refused their dead letter for good (not authorized, say); each is also logged.
  void count_dead_letter_dropped(std::string_view topic, std::string_view handler, std::string_view reason);
  /// Starts a worker's failure counters at 0 for one handler on one topic it consumes:
  /// eventbus_handler_retries_total{handler, event_type}, eventbus_dead_letters_total and
  /// eventbus_dead_letters_dropped_total{topic, handler, reason="handler-error"|"timeout"}. A series
  /// otherwise appears with its first failure, and dashboards and rate() alerts read "no data"
  /// instead of 0. Workers call it on assignment.
  void declare_handler_failures(std::string_view topic, std::string_view handler, std::string_view event_type);
  /// The same for the failures of records that reach no handler, on `topic`: reason "validation"
  /// and "deserialization" (handler "").
  void declare_record_failures(std::string_view topic);
  /// eventbus_events_published_total{topic, outcome="delivered"|"failed"}
  void count_published(std::string_view topic, bool delivered);
  /// eventbus_events_consumed_total{topic}
  void count_consumed(std::string_view topic, std::uint64_t records = 1);
  /// eventbus_consumer_lag{topic, partition}
  void set_consumer_lag(std::string_view topic, std::int32_t partition, std::int64_t lag);
  /// eventbus_producer_queue_messages
  void set_producer_queue(std::int64_t messages);

  /// eventbus_store_appends_total{store, outcome="stored"|"conflict"|"already_stored"|"failed"}
  void count_append(std::string_view store, std::string_view outcome);
  /// eventbus_outbox_backlog_events{store} and eventbus_outbox_oldest_seconds{store}: events stored
  /// and not yet acknowledged by Kafka, and how long the oldest of them has waited.
  void set_outbox_backlog(std::string_view store, std::int64_t events, double oldest_seconds);
  /// eventbus_outbox_relayed_total{store, outcome="published"|"failed"}
  void count_relayed(std::string_view store, bool published, std::uint64_t events = 1);
  /// eventbus_outbox_relayed_total{store, outcome="parked"}: refused by Kafka for good, parked.
  void count_parked(std::string_view store, std::uint64_t events);
  /// eventbus_outbox_parked_events{store}: events parked in the store (what backlog().parked says).
  void set_outbox_parked(std::string_view store, std::int64_t events);
  /// A worker's durable stages, per consumed topic: eventbus_worker_parked_records{group, topic},
  /// eventbus_worker_parked_keys{group, topic}, and eventbus_worker_parked_oldest_due_seconds{group,
  /// topic} (how long ago the earliest parked record became due; 0 while none is due).
  void set_worker_parked(std::string_view group, std::string_view topic, std::int64_t records, std::int64_t keys,
                         double oldest_due_seconds);
  /// eventbus_event_age_seconds{stage, event_type}: `seconds` from an event's timestamp to `stage`
  /// ("handled": a worker starts its handlers; "relayed": Kafka acknowledged it for the relay).
  void observe_event_age(std::string_view stage, std::string_view event_type, double seconds);
  /// eventbus_worker_in_group{group}: +1 when a worker of `group` joins it, -1 when it leaves.
  void add_worker_in_group(std::string_view group, int change);
  /// eventbus_inbox_duplicates_total{handler}: redeliveries an inbox skipped (0 declares the series).
  void count_inbox_duplicates(std::string_view handler, std::uint64_t events = 1);
  /// eventbus_events_filtered_total{handler}: events a handler's condition rejected.
  void count_filtered(std::string_view handler);
  /// eventbus_events_unauthorized_total{handler}: events middlewares::authorize refused.
  void count_unauthorized(std::string_view handler);
  /// eventbus_events_rate_limited_total{handler, outcome="deferred"|"rejected"}: calls
  /// middlewares::rate_limit held back or refused.
  void count_rate_limited(std::string_view handler, bool rejected);
  /// eventbus_aggregate_snapshots_total{aggregate_type, outcome="taken"|"save_failed"|"loaded"|
  /// "ignored_schema_version"|"ignored_undecodable"|"ignored_unreadable"} (aggregate.hpp).
  void count_snapshot(std::string_view aggregate_type, std::string_view outcome);
  /// eventbus_projection_lag_events{projection}: events stored after its position.
  void set_projection_lag(std::string_view projection, std::int64_t events);
  /// eventbus_projection_errors_total{projection}: handler calls that threw (0 declares the series).
  void count_projection_errors(std::string_view projection, std::uint64_t errors = 1);
  /// eventbus_outbox_relay_leading{store}: 1 while this instance's relay holds the relay lease.
  void set_relay_leading(std::string_view store, bool leading);

 private:
  friend struct detail::metrics_access;  // workers report their load gauges (src/metrics/worker_load.hpp)
  void add_worker_load(std::string_view group, const detail::worker_load& change);

  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace eventbus
