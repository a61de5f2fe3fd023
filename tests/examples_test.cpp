// The example programs as a user runs them (and as docker-compose does): a broker, the order
// service and the order worker as three processes, configured through EVENTBUS_* variables.

#include <doctest/doctest.h>

#include <string>

#include "http_support.hpp"
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
