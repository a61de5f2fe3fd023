// A minimal worker: consumes the order topics in a consumer group, runs two handlers with retries
// and dead letters, exports handler latency on /metrics, and stops cleanly on SIGINT/SIGTERM
// (finishes in-flight handlers, commits, leaves the group). Run more copies to scale out.
//
//   order_worker [CONFIG.json]     (EVENTBUS_* variables override the file; worker.group is required)

#include <cstdio>
#include <stdexcept>

#include "eventbus/config.hpp"
#include "eventbus/metrics_server.hpp"
#include "eventbus/stop_signal.hpp"
#include "eventbus/kafka/worker.hpp"

int main(int argc, char** argv) {
  eventbus::watch_stop_signals();  // from here on, SIGINT/SIGTERM ask for a clean stop
  const auto cfg = argc > 1 ? eventbus::load_config(argv[1], eventbus::process_environment())
                            : eventbus::parse_config(nlohmann::json::object(), eventbus::process_environment());
  if (!cfg) {
    std::fprintf(stderr, "order_worker: %s\n", cfg.error().to_string().c_str());
    return 2;
  }
  cfg.value().apply_logging();  // log.level, log.format (EVENTBUS_LOG_LEVEL, EVENTBUS_LOG_FORMAT=json)
  auto made = cfg->make_worker_options();  // names the key: "worker.group: must not be empty ..."
  if (!made) {
    std::fprintf(stderr, "order_worker: %s\n", made.error().to_string().c_str());
    return 2;
  }
  eventbus::worker_options options = *made;
  auto metrics = std::make_shared<eventbus::metrics>();
  options.metrics = metrics;
  eventbus::worker w(options);
  // After the worker: the server's checks and /handlers read it, so the server must go first.
  eventbus::metrics_server server(metrics, cfg.value().metrics_listen);
  server.add_readiness_check("worker", [&] { return w.in_group(); });
  server.add_handlers("worker " + options.group_id, [&] { return w.handlers(); });  // GET /handlers

  // Handlers must be idempotent: delivery is at-least-once. Throwing means "retry me".
  auto audit = w.subscribe("*", "audit", [](const eventbus::event& ev) {
    std::printf("%s %s %s\n", ev.event_type().c_str(), ev.aggregate_id().c_str(), ev.event_id().c_str());
  });
  auto invoice = w.subscribe("order.paid", "invoice", [](const eventbus::event& ev) {
    const auto total = ev.payload().value("total_cents", -1L);
    if (total < 0) throw eventbus::permanent_error("order.paid without total_cents");  // dead letter, no retry
    // ... write the invoice; a std::runtime_error here is retried with backoff
  });

  w.start();
  std::fprintf(stderr, "order_worker: group %s on %s; metrics on port %u\n", options.group_id.c_str(),
               options.kafka.bootstrap_servers.c_str(), server.port());
  eventbus::wait_for_stop_signal();
  w.stop();
  const auto s = w.stats();
  std::fprintf(stderr, "order_worker: stopped; %llu handled, %llu retries, %llu dead letters\n",
               static_cast<unsigned long long>(s.handled), static_cast<unsigned long long>(s.retries),
               static_cast<unsigned long long>(s.dead_letters));
  return 0;
}
