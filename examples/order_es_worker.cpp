// The worker of the event-sourced order example: for every order.paid event that reaches Kafka it
// writes one ledger row, once. Delivery is at least once (a restart before the offset commit, the
// relay resending after a crash, a replay all hand it an event again), so the handler runs through
// an inbox: its ledger row and the record "ledger handled this event id" commit in one transaction
// in the worker's own SQLite database, and an event already recorded is skipped and counted.
//
//   order_es_worker [CONFIG.json]   (EVENTBUS_* variables override the file; worker.group is required;
//                                    store.path is the worker's database, with the ledger table)
//
// Serves /metrics (eventbus_inbox_duplicates_total{handler="ledger"} among them) and stops cleanly
// on SIGINT/SIGTERM.

#include <cstdio>

#include "eventbus/config.hpp"
#include "eventbus/metrics_server.hpp"
#include "eventbus/stop_signal.hpp"
#include "eventbus/store/inbox.hpp"
#include "eventbus/kafka/worker.hpp"
#include "order_aggregate.hpp"
#include "sqlite_statement.hpp"

int main(int argc, char** argv) try {
  eventbus::watch_stop_signals();  // from here on, SIGINT/SIGTERM ask for a clean stop
  auto cfg = argc > 1 ? eventbus::load_config(argv[1], eventbus::process_environment())
                      : eventbus::parse_config(nlohmann::json::object(), eventbus::process_environment());
  if (!cfg) {
    std::fprintf(stderr, "order_es_worker: %s\n", cfg.error().to_string().c_str());
    return 2;
  }
  cfg->apply_logging();
  // The inbox's records live next to the ledger, in this worker's own SQLite store (not the
  // service's: each service owns its database).
  if (cfg->store.backend == eventbus::store_backend::none) cfg->store.backend = eventbus::store_backend::sqlite;
  if (cfg->store.backend != eventbus::store_backend::sqlite) {
    std::fprintf(stderr, "order_es_worker: store.backend: must be sqlite (the ledger's SQL is SQLite's)\n");
    return 2;
  }
  auto options = cfg->make_worker_options();  // names the key: "worker.group: must not be empty ..."
  if (!options) {
    std::fprintf(stderr, "order_es_worker: %s\n", options.error().to_string().c_str());
    return 2;
  }
  auto metrics = std::make_shared<eventbus::metrics>();
  options->metrics = metrics;
  auto store = cfg->open_store(metrics);  // creates the file, with the inbox's table
  if (!store) {
    std::fprintf(stderr, "order_es_worker: %s\n", store.error().to_string().c_str());
    return 2;
  }
  examples::statement(examples::open_database(cfg->store.sqlite.path).get(),
                      "CREATE TABLE IF NOT EXISTS ledger (order_id TEXT NOT NULL, amount_cents INTEGER NOT NULL, "
                      "event_id TEXT NOT NULL)")
      .step();

  eventbus::inbox once(*store, {.metrics = metrics});
  eventbus::worker w(*options);
  eventbus::metrics_server server(metrics, cfg->metrics_listen);
  server.add_readiness_check("worker", [&] { return w.in_group(); });
  // Writes go through tx.sqlite(), the connection of the inbox's transaction: a write on another
  // connection would not be part of it. Throwing rolls both back, and the worker retries.
  auto ledger = w.subscribe("order.paid", "ledger", once.wrap("ledger", [](const eventbus::event& ev, eventbus::store_transaction& tx) {
    const auto paid = eventbus::payload_as<orders::order_paid>(ev);
    if (!paid) throw eventbus::permanent_error(paid.error().to_string());  // a dead letter: retrying cannot fix it
    examples::statement(tx.sqlite(), "INSERT INTO ledger (order_id, amount_cents, event_id) VALUES (?1, ?2, ?3)")
        .bind(1, ev.aggregate_id()).bind(2, paid->amount_cents).bind(3, ev.event_id()).step();
  }));

  w.start();
  std::fprintf(stderr, "order_es_worker: group %s on %s; metrics on port %u\n", options->group_id.c_str(),
               options->kafka.bootstrap_servers.c_str(), server.port());
  eventbus::wait_for_stop_signal();
  w.stop();
  const auto s = w.stats();
  std::fprintf(stderr, "order_es_worker: stopped; %llu handled, %llu duplicates skipped, %llu dead letters\n",
               static_cast<unsigned long long>(s.handled), static_cast<unsigned long long>(once.duplicates()),
               static_cast<unsigned long long>(s.dead_letters));
  return 0;
} catch (const std::exception& e) {  // a database that cannot be opened or written, say
  std::fprintf(stderr, "order_es_worker: %s\n", e.what());
  return 1;
}
