// A minimal producing microservice: publishes an order workflow through the dispatcher, which runs
// a local handler and mirrors every event to Kafka (app.order.order.created, ...). Serves
// /metrics, /healthz and /readyz; stops cleanly on SIGINT/SIGTERM.
//
//   order_service [CONFIG.json] [EVENTS_PER_SECOND]     (EVENTBUS_* variables override the file)

#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "eventbus/config.hpp"
#include "eventbus/dispatcher.hpp"
#include "eventbus/kafka/kafka_sink.hpp"
#include "eventbus/metrics_server.hpp"
#include "eventbus/stop_signal.hpp"

int main(int argc, char** argv) {
  eventbus::watch_stop_signals();  // from here on, SIGINT/SIGTERM ask for a clean stop
  const auto cfg = argc > 1 ? eventbus::load_config(argv[1], eventbus::process_environment())
                            : eventbus::parse_config(nlohmann::json::object(), eventbus::process_environment());
  if (!cfg) {
    std::fprintf(stderr, "order_service: %s\n", cfg.error().to_string().c_str());
    return 2;
  }
  cfg.value().apply_logging();  // log.level, log.format (EVENTBUS_LOG_LEVEL, EVENTBUS_LOG_FORMAT=json)
  const int rate = argc > 2 ? std::max(1, std::atoi(argv[2])) : 20;

  auto metrics = std::make_shared<eventbus::metrics>();
  eventbus::metrics_server server(metrics, cfg.value().metrics_listen);
  auto producer = cfg.value().make_producer_options();
  producer.metrics = metrics;
  auto kafka = std::make_shared<eventbus::kafka_sink>(producer);

  auto dispatch = cfg.value().make_dispatcher_options();
  dispatch.observe_handler = eventbus::metrics::handler_observer_for(metrics);
  eventbus::dispatcher bus(dispatch);
  bus.add_sink(kafka);
  server.add_readiness_check("kafka", [&] { return kafka->connected(std::chrono::milliseconds(500)); });

  // A local handler: in-process reactions run isolated from each other and from the publisher.
  std::atomic<long> revenue_cents{0};
  auto revenue = bus.subscribe("order.paid", "revenue", [&](const eventbus::event& ev) {
    revenue_cents += ev.payload().value("total_cents", 0L);
  });

  std::atomic<bool> stopping{false};
  std::thread publisher([&] {
    for (long n = 0; !stopping.load(); ++n) {
      const std::string order = "order-" + std::to_string(n);
      const eventbus::event created = eventbus::make_event(
          {.event_type = "order.created", .aggregate_type = "order", .aggregate_id = order,
           .payload = {{"customer_id", "c-" + std::to_string(n % 97)}, {"total_cents", 1000 + n % 9000}}});
      (void)bus.publish(created);
      (void)bus.publish(eventbus::make_event({.event_type = "order.paid", .aggregate_type = "order",
                                              .aggregate_id = order, .payload = {{"total_cents", 1000 + n % 9000}},
                                              .causation_id = created.event_id()}));
      std::this_thread::sleep_for(std::chrono::milliseconds(1000 / rate));  // a steady rate, not a sync
    }
  });

  std::fprintf(stderr, "order_service: publishing %d orders/s to %s; metrics on port %u\n", rate,
               cfg.value().kafka.bootstrap_servers.c_str(), server.port());
  eventbus::wait_for_stop_signal();
  stopping = true;
  publisher.join();
  const bool flushed = kafka->flush(std::chrono::seconds(10)).ok();
  std::fprintf(stderr, "order_service: stopped; %llu delivered, %llu failed%s\n",
               static_cast<unsigned long long>(kafka->stats().delivered),
               static_cast<unsigned long long>(kafka->stats().failed), flushed ? "" : " (some undelivered)");
  return 0;
}
