// A service that keeps its own rows and its events in one SQLite transaction (the transactional
// outbox): an order row and its order.placed event commit together or not at all, and the outbox
// relay takes the event to Kafka once it is stored, surviving crashes and Kafka outages.
//
//   order_store_service [ORDERS] [DB_FILE]      (Kafka: $EVENTBUS_BOOTSTRAP_SERVERS, else embedded)
//
// Every statement binds its values as parameters (never SQL pasted together from values: an id
// holding a quote would break the statement or inject another) and every SQLite call is checked.

#include <sqlite3.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <thread>

#include "eventbus/store/outbox_relay.hpp"
#include "eventbus/store/sqlite_store.hpp"

namespace {

// A statement without values (BEGIN, COMMIT, a schema): false, with SQLite's reason printed.
bool exec(sqlite3* db, const char* sql) {
  char* why = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &why) == SQLITE_OK) return true;
  std::fprintf(stderr, "order_store_service: %s: %s\n", sql, why != nullptr ? why : sqlite3_errmsg(db));
  sqlite3_free(why);
  return false;
}

// The service's own row, its values bound to the statement's parameters.
bool insert_order(sqlite3* db, const std::string& id, std::int64_t total_cents) {
  sqlite3_stmt* insert = nullptr;
  bool done = sqlite3_prepare_v2(db, "INSERT INTO orders (id, total_cents) VALUES (?1, ?2)", -1, &insert, nullptr) == SQLITE_OK &&
              sqlite3_bind_text(insert, 1, id.c_str(), -1, SQLITE_TRANSIENT) == SQLITE_OK &&
              sqlite3_bind_int64(insert, 2, total_cents) == SQLITE_OK && sqlite3_step(insert) == SQLITE_DONE;
  if (!done) std::fprintf(stderr, "order_store_service: insert order %s: %s\n", id.c_str(), sqlite3_errmsg(db));
  sqlite3_finalize(insert);  // a no-op on nullptr
  return done;
}

}  // namespace

int main(int argc, char** argv) try {
  const int orders = argc > 1 ? std::atoi(argv[1]) : 5;
  const std::string path = argc > 2 ? argv[2] : "orders.db";
  const char* bootstrap = std::getenv("EVENTBUS_BOOTSTRAP_SERVERS");

  auto store = eventbus::open_sqlite_store({.path = path});  // creates the event store's tables
  eventbus::outbox_relay relay(store, eventbus::producer_options{.kafka = {.bootstrap_servers = bootstrap ? bootstrap : "embedded"}});
  relay.start();

  sqlite3* db = nullptr;  // the service's own connection, to the same file
  if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) {
    std::fprintf(stderr, "order_store_service: open %s: %s\n", path.c_str(), sqlite3_errmsg(db));
    sqlite3_close(db);  // sqlite3_open makes a handle even when it fails
    return 1;
  }
  // The relay writes to the same file (it marks what Kafka acknowledged): wait for its lock
  // rather than fail with SQLITE_BUSY.
  sqlite3_busy_timeout(db, 5000);
  if (!exec(db, "CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, total_cents INTEGER NOT NULL)")) {
    sqlite3_close(db);
    return 1;
  }

  int stored = 0;
  for (int i = 0; i < orders; ++i) {
    const std::string id = "o-" + std::to_string(std::chrono::system_clock::now().time_since_epoch().count()) + "-" + std::to_string(i);
    const std::int64_t total_cents = 1000 * (i + 1);
    const auto placed = eventbus::make_event({.event_type = "order.placed", .aggregate_type = "order",
                                              .aggregate_id = id, .payload = {{"total_cents", total_cents}}});
    if (!exec(db, "BEGIN IMMEDIATE")) break;  // the database refuses writes: no point going on
    bool ok = insert_order(db, id, total_cents);
    if (ok) {
      const auto appended = eventbus::append_in_transaction(db, "order", id, eventbus::expected_version::none(), std::span(&placed, 1));
      if (!appended) std::fprintf(stderr, "order_store_service: order %s: %s\n", id.c_str(), appended.error().to_string().c_str());
      ok = appended.ok();
    }
    if (!ok) {
      if (!exec(db, "ROLLBACK")) break;  // neither the row nor the event
      continue;
    }
    if (!exec(db, "COMMIT")) break;  // both: the event is safe from here on
    ++stored;
    relay.notify();
  }
  sqlite3_close(db);

  // Wait until the relay has taken every stored event to Kafka (a real service just keeps running).
  for (int i = 0; i < 300 && store->backlog().value().events > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const auto left = store->backlog().value().events;
  std::printf("%d orders stored, %lld events not yet in Kafka\n", stored, static_cast<long long>(left));
  return stored == orders && left == 0 ? 0 : 1;
} catch (const std::exception& e) {  // the store cannot be opened or created, say
  std::fprintf(stderr, "order_store_service: %s\n", e.what());
  return 1;
}
