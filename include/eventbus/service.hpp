#pragma once
// A producing service wired from its configuration: the one way to build the pipeline that gets
// each published event to Kafka exactly once from this process.
//
//   #include <eventbus/config.hpp>
//   #include <eventbus/service.hpp>
//   #include <iostream>
//   int main() {
//     auto cfg = eventbus::load_config("config/eventbus.json", eventbus::process_environment());
//     if (!cfg) { std::cerr << cfg.error().to_string() << "\n"; return 2; }
//     auto svc = eventbus::service::start(*cfg);  // opens the store and starts its relay, or the mirror
//     if (!svc) { std::cerr << svc.error().to_string() << "\n"; return 2; }
//     auto audit = svc->bus().subscribe("order.*", "audit", [](const eventbus::event& ev) {
//       std::cout << ev.event_type() << " " << ev.aggregate_id() << "\n";
//     });
//     const auto published = svc->bus().publish(eventbus::make_event(
//         {.event_type = "order.created", .aggregate_type = "order", .aggregate_id = "o-1"}));
//     if (!published) std::cerr << published.rejection().to_string() << "\n";
//     if (auto stopped = svc->stop(); !stopped) std::cerr << stopped.error().to_string() << "\n";
//   }
//
// What it builds, by store.backend:
//  - none: a dispatcher whose kafka_sink mirrors every accepted event to Kafka.
//  - sqlite, postgresql: a dispatcher that stores every event before anything else (the
//    transactional outbox), and an outbox_relay, started here, that takes stored events to Kafka in
//    store order. Several instances on one PostgreSQL database: one relays, the others stand by
//    (the relay lease), and any of them may publish.
// Never both: a dispatcher with a store refuses a kafka_sink (it would send every event twice).

#include <chrono>
#include <memory>

#include "eventbus/config.hpp"
#include "eventbus/dispatcher.hpp"
#include "eventbus/error.hpp"
#include "eventbus/kafka/kafka_sink.hpp"
#include "eventbus/metrics.hpp"
#include "eventbus/metrics_server.hpp"
#include "eventbus/store/outbox_relay.hpp"

namespace eventbus {

struct service_stats {
  dispatcher_stats published{};   // the dispatcher's: accepted, rejected, handler failures
  std::uint64_t to_kafka = 0;     // events Kafka acknowledged (mirrored, or relayed and marked)
  std::uint64_t failed = 0;       // failed deliveries (mirror: lost for Kafka; relay: sent again)
  std::int64_t outbox_backlog = 0;  // store: events not yet published, as the relay last read it
  bool relaying = false;          // store: this instance holds the relay lease
};

class service {
 public:
  /// Builds and starts the pipeline `config` describes. Metrics (handler latency, published
  /// events, store appends, the outbox backlog) go to `metrics` when given. errc::store_failed when
  /// the store cannot be opened; errc::invalid_argument (naming the option) for unusable settings.
  [[nodiscard]] static result<service> start(const app_config& config, std::shared_ptr<eventbus::metrics> metrics = {});

  service(service&&) noexcept;
  service& operator=(service&&) noexcept;
  ~service();  // stop()

  /// Where the service publishes and subscribes its in-process handlers.
  [[nodiscard]] dispatcher& bus() noexcept;
  /// The store events go to first; nullptr when store.backend is none.
  [[nodiscard]] const std::shared_ptr<outbox_store>& store() const noexcept;
  [[nodiscard]] service_stats stats() const noexcept;

  /// Registers what /readyz asks: "kafka" (the mirror reaches the cluster) or "store" (a round trip
  /// to the database).
  void add_readiness_checks(metrics_server& server);

  /// Stops taking publishes, runs the handler calls already scheduled, then:
  ///  - mirror: waits up to the producer's close_timeout for Kafka to acknowledge what is in flight;
  ///    errc::timed_out naming how many were not delivered (they are lost for Kafka: this process
  ///    held them only in memory).
  ///  - store: gives the relay, when it leads, up to close_timeout to publish the backlog, then
  ///    stops it; what Kafka has not acknowledged stays in the store, and the next relay on it (this
  ///    service restarted, or another instance) sends it. Nothing is lost.
  /// Idempotent: a second call returns the first one's outcome.
  [[nodiscard]] result<void> stop();

 private:
  struct impl;
  explicit service(std::unique_ptr<impl> i) noexcept;
  std::unique_ptr<impl> impl_;
};

}  // namespace eventbus
