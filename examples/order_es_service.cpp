// An event-sourced order service. Place, pay and ship are commands on the order aggregate
// (order_aggregate.hpp): each reads the order's events from the store, decides, and appends what
// it raises at the version it read. A projection keeps the orders_by_status table in the store's
// own SQLite file, and the outbox relay (started by eventbus::service) takes every event to Kafka
// (app.order.order.placed, .paid, .shipped), where order_es_worker applies its effect once.
//
//   order_es_service [CONFIG.json] [ORDERS]   (EVENTBUS_* variables override the file)
//
// It places ORDERS orders (default 10, at least 3), pays two of every three and ships every third,
// then tries two commands the orders refuse and prints why ("refused: ..."), prints the
// orders_by_status counts, and exits once Kafka has every event. store.path is the SQLite file.

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "eventbus/config.hpp"
#include "eventbus/service.hpp"
#include "eventbus/store/aggregate.hpp"
#include "eventbus/store/projection.hpp"
#include "order_aggregate.hpp"
#include "sqlite_statement.hpp"

namespace {

// One row per order with its status. Each row keeps the store position of the last event it
// shows, so an event the projection hands again (it is at least once: after a crash it repeats
// what came after its last checkpoint) finds its position there and changes nothing.
void create_orders_by_status(sqlite3* db) {
  examples::statement(db, "CREATE TABLE IF NOT EXISTS orders_by_status (order_id TEXT PRIMARY KEY, status TEXT NOT NULL, "
                          "total_cents INTEGER NOT NULL, position INTEGER NOT NULL)")
      .step();
}

// Throws on a failure: the projection calls it again with backoff, then stops at this event.
void project(sqlite3* db, const eventbus::stored_event& e) {
  const auto& type = e.ev.event_type();
  if (type == orders::order_placed::event_type) {
    const auto placed = eventbus::payload_as<orders::order_placed>(e.ev).value();  // throws if it does not decode
    examples::statement(db, "INSERT INTO orders_by_status (order_id, status, total_cents, position) "
                            "VALUES (?1, 'placed', ?2, ?3) ON CONFLICT (order_id) DO NOTHING")
        .bind(1, e.ev.aggregate_id()).bind(2, placed.total_cents).bind(3, e.position).step();
  } else if (type == orders::order_paid::event_type || type == orders::order_shipped::event_type) {
    examples::statement(db, "UPDATE orders_by_status SET status = ?2, position = ?3 WHERE order_id = ?1 AND position < ?3")
        .bind(1, e.ev.aggregate_id()).bind(2, type == orders::order_paid::event_type ? "paid" : "shipped")
        .bind(3, e.position).step();
  }  // an order event type this version does not know: a newer writer's; nothing to show for it
}

}  // namespace

int main(int argc, char** argv) try {
  auto cfg = argc > 1 ? eventbus::load_config(argv[1], eventbus::process_environment())
                      : eventbus::parse_config(nlohmann::json::object(), eventbus::process_environment());
  if (!cfg) {
    std::fprintf(stderr, "order_es_service: %s\n", cfg.error().to_string().c_str());
    return 2;
  }
  cfg->apply_logging();
  const int count = argc > 2 ? std::max(3, std::atoi(argv[2])) : 10;
  // Event sourcing needs a store, and the read model lives in the store's SQLite file.
  if (cfg->store.backend == eventbus::store_backend::none) cfg->store.backend = eventbus::store_backend::sqlite;
  if (cfg->store.backend != eventbus::store_backend::sqlite) {
    std::fprintf(stderr, "order_es_service: store.backend: must be sqlite (orders_by_status is a table in the store's file)\n");
    return 2;
  }
  auto svc = eventbus::service::start(*cfg);  // opens the store and starts its outbox relay
  if (!svc) {
    std::fprintf(stderr, "order_es_service: %s\n", svc.error().to_string().c_str());
    return 2;
  }
  const auto store = svc->store();

  auto db = examples::open_database(cfg->store.sqlite.path);  // the projection's own connection
  create_orders_by_status(db.get());
  eventbus::projection by_status(store, {.name = "orders_by_status", .filter = {.aggregate_type = "order"}},
                                 [&](const eventbus::stored_event& e) { project(db.get(), e); });
  by_status.start();

  // Another instance may append to the same order between our read and our append: run_command
  // then reads the newer events and decides again, up to 5 times.
  // (snapshot_every = 100 would go here once snapshots land; an order's 3 events never need one.)
  const eventbus::aggregate_options options{.max_conflict_retries = 5};
  const auto run = [&](const std::string& id, auto command) {
    auto done = eventbus::run_command<orders::order>(*store, id, command, options);
    if (!done)  // invalid_argument: the order's rules said no; else the store failed or kept conflicting
      std::printf("%s: %s\n", done.error().code() == eventbus::errc::invalid_argument ? "refused" : "failed",
                  done.error().to_string().c_str());
    return done.ok();
  };
  bool all_done = true;
  for (int i = 0; i < count; ++i) {
    const std::string id = "o-" + std::to_string(i);
    all_done &= run(id, orders::place(id, "c-" + std::to_string(i % 7), 1000 * (i + 1)));
    if (i % 3 != 2) all_done &= run(id, orders::pay(id));
    if (i % 3 == 0) all_done &= run(id, orders::ship(id, "ups"));
  }
  // Two commands the orders refuse: nothing is appended.
  const bool paid_twice = run("o-0", orders::pay("o-0"));
  const bool shipped_unpaid = run("o-2", orders::ship("o-2", "ups"));

  // Read-your-writes: the table shows every event appended above before it is printed.
  if (auto caught_up = by_status.wait_until_caught_up(std::chrono::seconds(30)); !caught_up) {
    std::fprintf(stderr, "order_es_service: orders_by_status: %s\n", caught_up.error().to_string().c_str());
    return 1;
  }
  by_status.stop();
  std::string counts;
  examples::statement rows(db.get(), "SELECT status, COUNT(*) FROM orders_by_status GROUP BY status ORDER BY status");
  while (rows.step()) counts += (counts.empty() ? "" : ", ") + rows.text(0) + " " + std::to_string(rows.integer(1));
  std::printf("orders_by_status: %s\n", counts.c_str());

  const auto stopped = svc->stop();  // the relay publishes the backlog (up to kafka's close_timeout)
  const auto stored = store->last_position().value();
  const auto left = store->backlog().value().events;
  std::printf("%lld events stored, %lld not yet in Kafka\n", static_cast<long long>(stored), static_cast<long long>(left));
  if (!stopped) std::fprintf(stderr, "order_es_service: %s\n", stopped.error().to_string().c_str());
  return all_done && !paid_twice && !shipped_unpaid && stopped && left == 0 ? 0 : 1;
} catch (const std::exception& e) {  // a database that cannot be opened or written, say
  std::fprintf(stderr, "order_es_service: %s\n", e.what());
  return 1;
}
