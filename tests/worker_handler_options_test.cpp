// Conditions and the shipped middleware on a worker against the embedded broker: a filtered
// record is committed like a handled one, an unauthorized one is dead-lettered with reason
// "unauthorized", and a rate-limited handler waits on a timer without holding a handler thread.

#include <doctest/doctest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <vector>

#include "eventbus/kafka/embedded_broker.hpp"
#include "eventbus/kafka/kafka_sink.hpp"
#include "eventbus/kafka/worker.hpp"
#include "eventbus/metrics_server.hpp"
#include "eventbus/middlewares.hpp"
#include "http_support.hpp"
#include "kafka_test_support.hpp"
#include "test_support.hpp"
#include "worker_test_support.hpp"

using namespace eventbus;
using namespace std::chrono_literals;
using eventbus::testing::committed_offset;
using eventbus::testing::read_topic;
using eventbus::testing::wait_until;

namespace {

constexpr const char* created = "app.order.order.created";
constexpr const char* noted = "app.order.order.noted";

worker_options test_worker(const embedded_broker& broker, std::string group) {
  return {.kafka = testing::mock_group_kafka(broker),
          .group_id = std::move(group),
          .topics = {created, noted},
          .retry = {.max_attempts = 3, .initial_backoff = 10ms, .max_backoff = 50ms, .jitter = 0.0},
          .commit_interval = 100ms};
}

void publish(const embedded_broker& broker, const std::vector<event>& events) {
  kafka_sink sink({.kafka = {.bootstrap_servers = broker.bootstrap_servers(), .properties = {{"log_level", "3"}}}});
  for (const auto& ev : events) REQUIRE(sink.accept(ev).get().ok());
}

event order(const std::string& type, const std::string& id, double total, metadata_map metadata = {}) {
  return make_event({.event_type = type, .aggregate_type = "order", .aggregate_id = id, .payload = {{"total", total}},
                     .metadata = std::move(metadata)});
}

}  // namespace

TEST_CASE("a worker skips records its handler's condition rejects, counts them, and commits them like handled ones") {
  embedded_broker broker;
  broker.create_topic(created, 1);
  broker.create_topic(noted, 1);
  std::vector<event> events;
  for (int i = 0; i < 10; ++i) events.push_back(order("order.created", "o-" + std::to_string(i), i * 30.0));
  publish(broker, events);
  auto m = std::make_shared<metrics>();
  auto options = test_worker(broker, "g-when");
  options.metrics = m;
  worker w(options);
  std::atomic<int> handled{0};
  auto sub = w.subscribe("order.created", "big", [&](const event& ev) {
    CHECK(ev.payload()["total"].get<double>() > 100);
    handled.fetch_add(1);
  }, {.when = [](const event& ev) { return ev.payload()["total"].get<double>() > 100; }});
  w.start();
  REQUIRE(wait_until([&] { return committed_offset(broker.bootstrap_servers(), "g-when", created, 0) == 10; }, 30s));
  w.stop();
  CHECK(handled.load() == 6);  // 120 .. 270
  CHECK(w.stats().handled == 10);
  const auto rows = w.handlers();
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].filtered == 4);
  CHECK(rows[0].calls == 6);
  eventbus::metrics_server server(m, "127.0.0.1:0");
  CHECK(testing::sample_value(testing::http_get(server.port(), "/metrics").body, "eventbus_events_filtered_total",
                              {{"handler", "big"}}) == 4);
}

TEST_CASE("a worker dead-letters what authorize refuses, with reason unauthorized and no retry") {
  embedded_broker broker;
  broker.create_topic(created, 1);
  broker.create_topic(noted, 1);
  publish(broker, {order("order.created", "o-1", 1, {{"tenant", "acme"}}), order("order.created", "o-2", 1, {{"tenant", "evil"}})});
  auto m = std::make_shared<metrics>();
  auto options = test_worker(broker, "g-auth");
  options.middleware = {middlewares::authorize(metadata_map{{"tenant", "acme"}}, m)};
  worker w(options);
  std::atomic<int> handled{0};
  auto sub = w.subscribe("order.created", "ship", [&](const event&) { handled.fetch_add(1); });
  w.start();
  REQUIRE(wait_until([&] { return w.stats().dead_letters == 1; }, 30s));
  REQUIRE(wait_until([&] { return committed_offset(broker.bootstrap_servers(), "g-auth", created, 0) == 2; }, 30s));
  w.stop();
  CHECK(handled.load() == 1);
  CHECK(w.stats().retries == 0);
  const auto dead = read_topic(broker.bootstrap_servers(), std::string(created) + ".dlq", 1);
  REQUIRE(dead.size() == 1);
  CHECK(dead[0].key == "o-2");
  CHECK(dead[0].headers.at("x-eventbus-dlq-reason") == "unauthorized");
  CHECK(dead[0].headers.at("x-eventbus-dlq-handler") == "ship");
  CHECK(dead[0].headers.at("x-eventbus-dlq-attempts") == "1");
}

TEST_CASE("a rate-limited handler waits on a timer: other handlers keep the only handler thread, and each key keeps its order") {
  embedded_broker broker;
  broker.create_topic(created, 1);
  broker.create_topic(noted, 1);
  std::vector<event> limited, unlimited;
  for (int i = 0; i < 6; ++i) limited.push_back(order("order.created", "o-" + std::to_string(i % 2), i));
  for (int i = 0; i < 40; ++i) unlimited.push_back(order("order.noted", "n-" + std::to_string(i), i));
  publish(broker, limited);
  publish(broker, unlimited);
  auto options = test_worker(broker, "g-rate");
  options.max_concurrency = 1;  // one handler thread: a rate limit that slept on it would stall everything
  worker w(options);
  std::mutex mu;
  std::vector<std::pair<std::string, double>> limited_seen;
  std::atomic<int> free_done{0};
  auto s1 = w.subscribe("order.created", "limited", [&](const event& ev) {
    const std::lock_guard lock(mu);
    limited_seen.emplace_back(ev.aggregate_id(), ev.payload()["total"].get<double>());
  }, {.middleware = {middlewares::rate_limit({.per_second = 2})}});
  auto s2 = w.subscribe("order.noted", "free", [&](const event&) { free_done.fetch_add(1); });
  const auto start = std::chrono::steady_clock::now();
  w.start();
  REQUIRE(wait_until([&] { return free_done.load() == 40; }, 30s));
  std::size_t limited_when_free_done = 0;
  {
    const std::lock_guard lock(mu);
    limited_when_free_done = limited_seen.size();
  }
  REQUIRE(wait_until([&] {
    const std::lock_guard lock(mu);
    return limited_seen.size() == 6;
  }, 30s));
  const auto took = std::chrono::steady_clock::now() - start;
  w.stop();
  CHECK(limited_when_free_done < 6);  // the free handler did not wait behind the limited one
  CHECK(took >= 2400ms);               // 6 calls at 2/s, the first one free: 2.5 s at least
  CHECK(w.stats().retries == 0);       // deferrals are not attempts
  // Per key, in offset order: o-0 gets 0, 2, 4; o-1 gets 1, 3, 5.
  std::map<std::string, std::vector<double>> per_key;
  for (const auto& [key, total] : limited_seen) per_key[key].push_back(total);
  CHECK(per_key["o-0"] == std::vector<double>{0, 2, 4});
  CHECK(per_key["o-1"] == std::vector<double>{1, 3, 5});
}
