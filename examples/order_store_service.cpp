// A service that keeps its own rows and its events in one SQLite transaction (the transactional
// outbox): an order row and its order.placed event commit together or not at all, and the outbox
// relay takes the event to Kafka once it is stored, surviving crashes and Kafka outages.
//
//   order_store_service [ORDERS] [DB_FILE]      (Kafka: $EVENTBUS_BOOTSTRAP_SERVERS, else embedded)

#include <sqlite3.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "eventbus/store/outbox_relay.hpp"
#include "eventbus/store/sqlite_store.hpp"

int main(int argc, char** argv) {
  const int orders = argc > 1 ? std::atoi(argv[1]) : 5;
  const std::string path = argc > 2 ? argv[2] : "orders.db";
  const char* bootstrap = std::getenv("EVENTBUS_BOOTSTRAP_SERVERS");

  auto store = eventbus::open_sqlite_store({.path = path});  // creates the event store's tables
  eventbus::outbox_relay relay(store, eventbus::producer_options{.kafka = {.bootstrap_servers = bootstrap ? bootstrap : "embedded"}});
  relay.start();

  sqlite3* db = nullptr;  // the service's own connection, to the same file
  if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) return 1;
  sqlite3_exec(db, "CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, total REAL)", nullptr, nullptr, nullptr);
  for (int i = 0; i < orders; ++i) {
    const std::string id = "o-" + std::to_string(std::chrono::system_clock::now().time_since_epoch().count()) + "-" + std::to_string(i);
    const auto placed = eventbus::make_event({.event_type = "order.placed", .aggregate_type = "order",
                                              .aggregate_id = id, .payload = {{"total", 10.0 * (i + 1)}}});
    sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
    const std::string insert = "INSERT INTO orders VALUES ('" + id + "', " + std::to_string(10.0 * (i + 1)) + ")";
    const bool row = sqlite3_exec(db, insert.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK;
    const auto appended = eventbus::append_in_transaction(db, "order", id, eventbus::expected_version::none(), std::span(&placed, 1));
    if (!row || !appended) {
      sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);  // neither the row nor the event
      std::fprintf(stderr, "order %s not placed: %s\n", id.c_str(),
                   appended ? sqlite3_errmsg(db) : appended.error().to_string().c_str());
      continue;
    }
    sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);  // both: the event is safe from here on
    relay.notify();
  }
  sqlite3_close(db);

  // Wait until the relay has taken every stored event to Kafka (a real service just keeps running).
  for (int i = 0; i < 300 && store->backlog().value().events > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const auto left = store->backlog().value().events;
  std::printf("%d orders stored, %lld events not yet in Kafka\n", orders, static_cast<long long>(left));
  return left == 0 ? 0 : 1;
}
