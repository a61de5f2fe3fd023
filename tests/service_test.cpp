// eventbus::service: the pipeline a configuration describes, on the embedded broker. With a store
// (SQLite, PostgreSQL) publish stores and the relay sends; without one the mirror sends; never
// both, so each event reaches Kafka once.

#include <doctest/doctest.h>

#include <set>
#include <string>

#include "eventbus/kafka/embedded_broker.hpp"
#include "eventbus/service.hpp"
#include "kafka_test_support.hpp"
#include "store_support.hpp"
#include "test_support.hpp"

using namespace eventbus;
using namespace std::chrono_literals;
using eventbus::testing::read_topic;
using eventbus::testing::topic_record_count;
using eventbus::testing::wait_until;

namespace {

constexpr const char* placed_topic = "app.order.order.placed";

// A service's config as a deployment writes it: the file's keys, the broker and the store.
app_config config_for(const embedded_broker& broker, const std::string& backend, const std::string& where) {
  nlohmann::json doc = {{"kafka", {{"bootstrap_servers", broker.bootstrap_servers()}, {"properties", {{"log_level", "0"}}}}},
                        {"store", {{"backend", backend}, {"relay", {{"interval_ms", 20}}}}}};
  if (backend == "sqlite") doc["store"]["path"] = where;
  if (backend == "postgresql") doc["store"]["dsn"] = where;
  auto parsed = parse_config(doc);
  REQUIRE_MESSAGE(parsed.ok(), parsed.error().to_string());
  return *parsed;
}

std::vector<std::string> publish_orders(dispatcher& bus, int count, const std::string& prefix) {
  std::vector<std::string> ids;
  for (int i = 0; i < count; ++i) {
    const auto ev = make_event({.event_type = "order.placed", .aggregate_type = "order",
                                .aggregate_id = prefix + std::to_string(i % 7), .payload = {{"seq", i}}});
    REQUIRE(bus.publish(ev).accepted());
    ids.push_back(ev.event_id());
  }
  return ids;
}

std::multiset<std::string> ids_in_kafka(const embedded_broker& broker, std::size_t expected) {
  std::multiset<std::string> ids;
  for (const auto& r : read_topic(broker.bootstrap_servers(), placed_topic, expected, 10s)) ids.insert(r.headers.at("event_id"));
  return ids;
}

}  // namespace

TEST_CASE("a dispatcher with a store refuses a Kafka sink, naming both") {
  auto store = open_sqlite_store({.path = testing::fresh_sqlite_path("service_refuses_sink")});
  dispatcher bus({.store = store});
  try {
    bus.add_sink(std::make_shared<kafka_sink>(producer_options{.kafka = {.bootstrap_servers = "127.0.0.1:1"}}));
    FAIL("a kafka_sink was added to a dispatcher with a store");
  } catch (const exception& e) {
    CHECK(e.error().code() == errc::invalid_argument);
    CHECK(e.error().field() == "sink");
    CHECK(e.error().message().find("store") != std::string::npos);
    CHECK(e.error().message().find("twice") != std::string::npos);
  }
}

TEST_CASE("a service built from its config sends each event to Kafka once: mirrored, or stored and relayed") {
  for (const std::string backend : {"none", "sqlite", "postgresql"}) {
    CAPTURE(backend);
    embedded_broker broker;
    const std::string where = backend == "sqlite"       ? testing::fresh_sqlite_path("service_" + backend)
                              : backend == "postgresql" ? testing::fresh_postgres_database("service_pg")
                                                        : "";
    auto svc = service::start(config_for(broker, backend, where));
    REQUIRE_MESSAGE(svc.ok(), svc.error().to_string());
    CHECK((svc->store() != nullptr) == (backend != "none"));
    std::atomic<int> handled{0};
    auto local = svc->bus().subscribe("order.placed", "count", [&](const event&) { ++handled; });

    const auto sent = publish_orders(svc->bus(), 200, "o-");
    REQUIRE(svc->stop().ok());  // the mirror flushed, or the relay drained the outbox
    CHECK(handled.load() == 200);
    CHECK(topic_record_count(broker.bootstrap_servers(), placed_topic) == 200);
    CHECK(ids_in_kafka(broker, 200) == std::multiset<std::string>(sent.begin(), sent.end()));
    CHECK(svc->stats().to_kafka == 200);
    if (svc->store()) CHECK(svc->store()->backlog()->events == 0);
    CHECK(svc->stop().ok());  // again: the same outcome
  }
}

TEST_CASE("two service instances on one PostgreSQL store: both publish, one relays, each event reaches Kafka once") {
  embedded_broker broker;
  const std::string dsn = testing::fresh_postgres_database("service_pair");
  auto first = service::start(config_for(broker, "postgresql", dsn));
  auto second = service::start(config_for(broker, "postgresql", dsn));
  REQUIRE(first.ok());
  REQUIRE(second.ok());
  auto sent = publish_orders(first->bus(), 100, "a-");
  const auto more = publish_orders(second->bus(), 100, "b-");
  sent.insert(sent.end(), more.begin(), more.end());
  CHECK(wait_until([&] { return first->stats().to_kafka + second->stats().to_kafka == 200; }, 20s));
  CHECK(first->stats().relaying != second->stats().relaying);  // exactly one holds the lease
  REQUIRE(first->stop().ok());
  REQUIRE(second->stop().ok());
  CHECK(topic_record_count(broker.bootstrap_servers(), placed_topic) == 200);
  CHECK(ids_in_kafka(broker, 200) == std::multiset<std::string>(sent.begin(), sent.end()));
}

TEST_CASE("a service whose store cannot be opened is an error naming it, not a half-built service") {
  embedded_broker broker;
  const auto svc = service::start(config_for(broker, "sqlite", "no/such/directory/orders.db"));
  REQUIRE_FALSE(svc.ok());
  CHECK(svc.error().code() == errc::store_failed);
  CHECK(svc.error().to_string().find("no/such/directory/orders.db") != std::string::npos);
}
