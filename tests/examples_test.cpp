// The example programs as a user runs them (and as docker-compose does): a broker, the order
// service and the order worker as three processes, configured through EVENTBUS_* variables.

#include <doctest/doctest.h>

#include <cstdio>
#include <set>
#include <string>

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
