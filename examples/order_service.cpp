// A minimal producing microservice: publishes an order workflow through eventbus::service, which
// runs a local handler and gets every event to Kafka (app.order.order.created, ...) exactly once
// from here: mirrored at once (store.backend none), or stored first and relayed by the outbox
// (store.backend sqlite or postgresql). Serves /metrics, /healthz and /readyz; stops cleanly on
// SIGINT/SIGTERM.
//
//   order_service [CONFIG.json] [EVENTS_PER_SECOND] [ORDERS]   (EVENTBUS_* variables override the file)
//
// With ORDERS it publishes that many orders, then waits for the stop signal.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "eventbus/config.hpp"
#include "eventbus/metrics_server.hpp"
#include "eventbus/service.hpp"
#include "eventbus/stop_signal.hpp"

int main(int argc, char** argv) {
  eventbus::watch_stop_signals();  // from here on, SIGINT/SIGTERM ask for a clean stop
  const auto cfg = argc > 1 ? eventbus::load_config(argv[1], eventbus::process_environment())
                            : eventbus::parse_config(nlohmann::json::object(), eventbus::process_environment());
  if (!cfg) {
    std::fprintf(stderr, "order_service: %s\n", cfg.error().to_string().c_str());
    return 2;
  }
  cfg->apply_logging();  // log.level, log.format (EVENTBUS_LOG_LEVEL, EVENTBUS_LOG_FORMAT=json)
  const int rate = argc > 2 ? std::max(1, std::atoi(argv[2])) : 20;
  const long orders = argc > 3 ? std::max(1L, std::atol(argv[3])) : -1;  // -1: until stopped

  auto metrics = std::make_shared<eventbus::metrics>();
  auto svc = eventbus::service::start(*cfg, metrics);  // the store and its relay, or the mirror
  if (!svc) {
    std::fprintf(stderr, "order_service: %s\n", svc.error().to_string().c_str());
    return 2;
  }
  // After the service: the server's checks and /handlers read it, so the server must go first.
  eventbus::metrics_server server(metrics, cfg->metrics_listen);
  svc->add_readiness_checks(server);
  eventbus::dispatcher& bus = svc->bus();
  server.add_handlers("dispatcher", [&] { return bus.handlers(); });  // GET /handlers, `eventbus handlers --url`

  // A local handler: in-process reactions run isolated from each other and from the publisher.
  std::atomic<long> revenue_cents{0};
  auto revenue = bus.subscribe("order.paid", "revenue", [&](const eventbus::event& ev) {
    revenue_cents += ev.payload().value("total_cents", 0L);
  });

  std::atomic<bool> stopping{false};
  std::atomic<long> rejected{0};
  std::thread publisher([&] {
    for (long n = 0; !stopping.load() && n != orders; ++n) {
      const std::string order = "order-" + std::to_string(n);
      const eventbus::event created = eventbus::make_event(
          {.event_type = "order.created", .aggregate_type = "order", .aggregate_id = order,
           .payload = {{"customer_id", "c-" + std::to_string(n % 97)}, {"total_cents", 1000 + n % 9000}}});
      if (!bus.publish(created)) ++rejected;
      if (!bus.publish(eventbus::make_event({.event_type = "order.paid", .aggregate_type = "order",
                                             .aggregate_id = order, .payload = {{"total_cents", 1000 + n % 9000}},
                                             .causation_id = created.event_id()})))
        ++rejected;
      std::this_thread::sleep_for(std::chrono::milliseconds(1000 / rate));  // a steady rate, not a sync
    }
    if (orders > 0) {
      std::printf("published %ld orders\n", orders);
      std::fflush(stdout);
    }
  });

  std::fprintf(stderr, "order_service: publishing %d orders/s to %s (store: %s); metrics on port %u\n", rate,
               cfg->kafka.bootstrap_servers.c_str(), std::string(eventbus::to_string(cfg->store.backend)).c_str(),
               server.port());
  eventbus::wait_for_stop_signal();
  stopping = true;
  publisher.join();
  const auto stopped = svc->stop();  // handlers finish; then the mirror flushes, or the relay drains
  const auto stats = svc->stats();
  const std::string trouble = stopped ? "" : " (" + stopped.error().to_string() + ")";
  std::fprintf(stderr, "order_service: stopped; %llu in Kafka, %llu failed deliveries, %ld publishes rejected%s\n",
               static_cast<unsigned long long>(stats.to_kafka), static_cast<unsigned long long>(stats.failed),
               rejected.load(), trouble.c_str());
  return stopped ? 0 : 1;
}
