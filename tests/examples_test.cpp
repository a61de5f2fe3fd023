// The example programs as a user runs them (and as docker-compose does): a broker, the order
// service and the order worker as three processes, configured through EVENTBUS_* variables; the
// outbox example; and the event-sourced service with its worker.

#include <doctest/doctest.h>
#include <sqlite3.h>

#include <cstdio>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "eventbus/store/sqlite_store.hpp"
#include "http_support.hpp"
#include "kafka_test_support.hpp"
#include "process_support.hpp"
#include "test_support.hpp"

using namespace eventbus::testing;
using namespace std::chrono_literals;

TEST_CASE("the example service publishes, the example worker handles, both export metrics and stop on SIGTERM") {
  auto broker = spawn({EVENTBUS_CLI_PATH, "dev-broker", "--partitions", "4", "--topic", "app.order.order.created",
                       "--topic", "app.order.order.paid"});
  const std::string bootstrap = broker.read_line();
  REQUIRE(bootstrap.rfind("127.0.0.1:", 0) == 0);

  const auto service_port = free_port(), worker_port = free_port();
  auto worker = spawn({EVENTBUS_EXAMPLES_DIR "/order_worker", EVENTBUS_CONFIG_DIR "/eventbus.json"},
                      {{"EVENTBUS_BOOTSTRAP_SERVERS", bootstrap},
                       {"EVENTBUS_GROUP_ID", "examples"},
                       {"EVENTBUS_WORKER_TOPICS", "^app\\.order\\..*"},
                       {"EVENTBUS_METRICS_LISTEN", "127.0.0.1:" + std::to_string(worker_port)},
                       {"EVENTBUS_KAFKA_FETCH_WAIT_MAX_MS", "50"}},
                      false);
  auto service = spawn({EVENTBUS_EXAMPLES_DIR "/order_service", EVENTBUS_CONFIG_DIR "/eventbus.json", "100"},
                       {{"EVENTBUS_BOOTSTRAP_SERVERS", bootstrap},
                        {"EVENTBUS_METRICS_LISTEN", "127.0.0.1:" + std::to_string(service_port)}},
                       false);

  // The worker joins, consumes both topics, and its invoice handler is timed.
  const auto worker_metric = [&](const std::string& name, const std::map<std::string, std::string>& labels) {
    return sample_value(http_get(worker_port, "/metrics").body, name, labels).value_or(0);
  };
  CHECK(wait_until([&] { return http_get(worker_port, "/readyz").status == 200; }, 30s));
  // Both topics: the first assignment may cover one, a rebalance then brings the other.
  CHECK(wait_until([&] {
    return worker_metric("eventbus_handler_duration_seconds_count", {{"handler", "invoice"}, {"outcome", "success"}}) >= 20 &&
           worker_metric("eventbus_events_consumed_total", {{"topic", "app.order.order.created"}}) > 0;
  }, 30s));
  CHECK(worker_metric("eventbus_dead_letters_total", {}) == 0);

  // The service's deliveries and its local handler are counted too; it is ready (Kafka answers).
  const auto service_page = http_get(service_port, "/metrics").body;
  CHECK(sample_value(service_page, "eventbus_events_published_total",
                     {{"topic", "app.order.order.paid"}, {"outcome", "delivered"}})
            .value_or(0) > 0);
  CHECK(sample_value(service_page, "eventbus_handler_duration_seconds_count", {{"handler", "revenue"}}).value_or(0) > 0);
  CHECK(http_get(service_port, "/readyz").status == 200);
  // Both list their handlers on /handlers.
  CHECK(http_get(service_port, "/handlers").body.find(R"("name":"revenue")") != std::string::npos);
  CHECK(http_get(worker_port, "/handlers").body.find(R"("name":"invoice")") != std::string::npos);

  CHECK(service.stop(SIGTERM) == 0);
  CHECK(worker.stop(SIGINT) == 0);
  CHECK(broker.stop(SIGTERM) == 0);
}

TEST_CASE("the example service on a SQLite store: every event reaches Kafka exactly once, through the relay") {
  auto broker = spawn({EVENTBUS_CLI_PATH, "dev-broker", "--partitions", "2", "--topic", "app.order.order.created",
                       "--topic", "app.order.order.paid"});
  const std::string bootstrap = broker.read_line();
  REQUIRE(bootstrap.rfind("127.0.0.1:", 0) == 0);
  const std::string db = "example_service_orders.db";
  for (const char* suffix : {"", "-wal", "-shm"}) std::remove((db + suffix).c_str());

  constexpr int orders = 150;  // two events each
  auto service = spawn({EVENTBUS_EXAMPLES_DIR "/order_service", EVENTBUS_CONFIG_DIR "/eventbus.json", "500",
                        std::to_string(orders)},
                       {{"EVENTBUS_BOOTSTRAP_SERVERS", bootstrap},
                        {"EVENTBUS_METRICS_LISTEN", "127.0.0.1:0"},
                        {"EVENTBUS_STORE_BACKEND", "sqlite"},
                        {"EVENTBUS_STORE_PATH", db}});
  CHECK(service.read_line() == "published 150 orders");
  CHECK(service.stop(SIGTERM) == 0);  // the relay drains the outbox before the service exits

  // Every stored event is in Kafka exactly once: no mirror sent it besides the relay.
  std::multiset<std::string> ids;
  for (const char* topic : {"app.order.order.created", "app.order.order.paid"}) {
    CHECK(topic_record_count(bootstrap, topic) == orders);  // all the records there are: none twice
    for (const auto& record : read_topic(bootstrap, topic, orders, 10s)) ids.insert(record.headers.at("event_id"));
  }
  CHECK(ids.size() == 2 * orders);
  CHECK(std::set<std::string>(ids.begin(), ids.end()).size() == ids.size());

  auto store = eventbus::open_sqlite_store({.path = db, .read_only = true});
  std::size_t stored = 0;
  REQUIRE(store->read_all({}, [&](const eventbus::stored_event& e) {
    stored += ids.count(e.ev.event_id());  // each stored event is one of those read from Kafka
    return true;
  }).ok());
  CHECK(stored == 2 * orders);
  CHECK(store->backlog()->events == 0);
  CHECK(broker.stop(SIGTERM) == 0);
  for (const char* suffix : {"", "-wal", "-shm"}) std::remove((db + suffix).c_str());
}

TEST_CASE("the example worker refuses to start without a group, naming the key") {
  auto worker = spawn({EVENTBUS_EXAMPLES_DIR "/order_worker"}, {{"EVENTBUS_METRICS_LISTEN", "127.0.0.1:0"}}, false);
  int status = 0;
  REQUIRE(waitpid(worker.pid, &status, 0) == worker.pid);
  worker.pid = -1;
  CHECK(WIFEXITED(status));  // an error message and exit code 2, not a crash
  CHECK(WEXITSTATUS(status) == 2);
}

TEST_CASE("the outbox example stores its rows and events together and relays every event to Kafka") {
  const std::string db = "example_orders.db";
  for (const char* suffix : {"", "-wal", "-shm"}) std::remove((db + suffix).c_str());
  auto service = spawn({EVENTBUS_EXAMPLES_DIR "/order_store_service", "7", db}, {{"EVENTBUS_BOOTSTRAP_SERVERS", "embedded"}});
  CHECK(service.read_line() == "7 orders stored, 0 events not yet in Kafka");
  CHECK(service.stop(0) == 0);
  for (const char* suffix : {"", "-wal", "-shm"}) std::remove((db + suffix).c_str());
}

namespace {

using table = std::vector<std::vector<std::string>>;

// The rows `sql` returns from the SQLite file `path`, each column as text; nullopt when the query
// fails (its table not created yet, say).
std::optional<table> query(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  table rows;
  bool ok = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK &&
            sqlite3_busy_timeout(db, 5000) == SQLITE_OK;
  ok = ok && sqlite3_exec(db, sql.c_str(), [](void* out, int columns, char** values, char**) {
               auto& row = static_cast<table*>(out)->emplace_back();
               for (int c = 0; c < columns; ++c) row.emplace_back(values[c] != nullptr ? values[c] : "NULL");
               return 0;
             }, &rows, nullptr) == SQLITE_OK;
  sqlite3_close(db);
  if (!ok) return std::nullopt;
  return rows;
}

std::string single(const std::string& path, const std::string& sql) {
  const auto rows = query(path, sql);
  return rows && rows->size() == 1 && rows->front().size() == 1 ? rows->front().front() : "(none)";
}

void remove_database(const std::string& path) {
  for (const char* suffix : {"", "-wal", "-shm"}) std::remove((path + suffix).c_str());
}

}  // namespace

TEST_CASE("the event-sourced example: commands on order aggregates, orders_by_status, Kafka, a ledger written once") {
  auto broker = spawn({EVENTBUS_CLI_PATH, "dev-broker", "--partitions", "2"});
  const std::string bootstrap = broker.read_line();
  REQUIRE(bootstrap.rfind("127.0.0.1:", 0) == 0);
  const std::string orders_db = "example_es_orders.db", ledger_db = "example_es_ledger.db";
  remove_database(orders_db);
  remove_database(ledger_db);

  // Ten orders: o-i is placed with a total of 1000 * (i + 1) cents, paid unless i % 3 == 2,
  // shipped when i % 3 == 0; then o-0 is paid again and o-2 shipped unpaid, both refused.
  auto service = spawn({EVENTBUS_EXAMPLES_DIR "/order_es_service", EVENTBUS_CONFIG_DIR "/eventbus.json", "10"},
                       {{"EVENTBUS_BOOTSTRAP_SERVERS", bootstrap}, {"EVENTBUS_STORE_PATH", orders_db}});
  CHECK(service.read_line() == "refused: order o-0 is paid already");
  CHECK(service.read_line() == "refused: order o-2 is not paid: it cannot be shipped");
  CHECK(service.read_line() == "orders_by_status: paid 3, placed 3, shipped 4");
  CHECK(service.read_line() == "21 events stored, 0 not yet in Kafka");
  CHECK(service.stop(0) == 0);  // signal 0: only waits for its exit

  // The read model, row by row, and what each order went through.
  std::map<std::string, std::string> rows;  // order id -> "status total_cents"
  for (const auto& row : query(orders_db, "SELECT order_id, status, total_cents FROM orders_by_status").value_or(table{}))
    rows[row.at(0)] = row.at(1) + " " + row.at(2);
  CHECK(rows.size() == 10);
  std::map<std::string, std::vector<std::string>> expected_types;  // per order, its events in version order
  std::multiset<std::string> paid_cents;
  for (int i = 0; i < 10; ++i) {
    const std::string id = "o-" + std::to_string(i), total = std::to_string(1000 * (i + 1));
    auto& types = expected_types[id] = {"order.placed"};
    if (i % 3 != 2) {
      types.push_back("order.paid");
      paid_cents.insert(total);
    }
    if (i % 3 == 0) types.push_back("order.shipped");
    CHECK(rows[id] == types.back().substr(std::string("order.").size()) + " " + total);
  }

  // The store: each order's events at versions 1, 2, 3 in the order the commands ran; the refused
  // commands appended nothing.
  std::map<std::string, std::set<std::string>> stored_ids;  // by event type
  {
    auto store = eventbus::open_sqlite_store({.path = orders_db, .read_only = true});
    for (const auto& entry : expected_types) {  // no structured binding: CHECK_MESSAGE's lambda takes `id`
      const auto& id = entry.first;
      const auto& types = entry.second;
      std::vector<std::string> seen;
      REQUIRE(store->load("order", id, 1, [&](const eventbus::stored_event& e) {
        CHECK(e.version == static_cast<std::int64_t>(seen.size()) + 1);
        seen.push_back(e.ev.event_type());
        stored_ids[e.ev.event_type()].insert(e.ev.event_id());
        return true;
      }).ok());
      CHECK_MESSAGE(seen == types, id);
    }
    CHECK(store->backlog()->events == 0);
  }

  // Kafka: every stored event once, on its type's topic.
  for (const auto& [type, count] : std::map<std::string, std::size_t>{{"placed", 10}, {"paid", 7}, {"shipped", 4}}) {
    const std::string topic = "app.order.order." + type;
    CHECK(topic_record_count(bootstrap, topic) == static_cast<std::int64_t>(count));
    std::set<std::string> ids;
    for (const auto& record : read_topic(bootstrap, topic, count, 10s)) ids.insert(record.headers.at("event_id"));
    CHECK_MESSAGE(ids == stored_ids["order." + type], topic);
  }

  // The worker writes one ledger row per payment: 7 rows, the amounts the orders were paid.
  const auto run_worker = [&](const std::string& group, int port) {
    return spawn({EVENTBUS_EXAMPLES_DIR "/order_es_worker", EVENTBUS_CONFIG_DIR "/eventbus.json"},
                 {{"EVENTBUS_BOOTSTRAP_SERVERS", bootstrap},
                  {"EVENTBUS_GROUP_ID", group},
                  {"EVENTBUS_WORKER_TOPICS", "app.order.order.paid"},
                  {"EVENTBUS_STORE_PATH", ledger_db},
                  {"EVENTBUS_METRICS_LISTEN", "127.0.0.1:" + std::to_string(port)},
                  {"EVENTBUS_KAFKA_FETCH_WAIT_MAX_MS", "50"}},
                 false);
  };
  const auto ledger_cents = [&] {
    std::multiset<std::string> cents;
    for (const auto& row : query(ledger_db, "SELECT amount_cents FROM ledger").value_or(table{}))
      cents.insert(row.at(0));
    return cents;
  };
  const auto duplicates = [&](int port) {
    return sample_value(http_get(port, "/metrics").body, "eventbus_inbox_duplicates_total", {{"handler", "ledger"}}).value_or(0);
  };
  {
    const int port = free_port();
    auto worker = run_worker("ledger", port);
    CHECK(wait_until([&] { return ledger_cents().size() >= 7; }, 30s));
    CHECK(ledger_cents() == paid_cents);
    CHECK(single(ledger_db, "SELECT COUNT(DISTINCT event_id) FROM ledger") == "7");
    CHECK(duplicates(port) == 0);
    CHECK(worker.stop(SIGTERM) == 0);
  }
  // A new group reads every payment again from the start, as a replay would: the inbox skips each
  // one, and the ledger is unchanged.
  {
    const int port = free_port();
    auto worker = run_worker("ledger-replay", port);
    CHECK(wait_until([&] { return duplicates(port) >= 7; }, 30s));
    CHECK(duplicates(port) == 7);
    CHECK(ledger_cents() == paid_cents);
    CHECK(worker.stop(SIGTERM) == 0);
  }
  CHECK(broker.stop(SIGTERM) == 0);
  remove_database(orders_db);
  remove_database(ledger_db);
}
