// The metrics of docs/metrics.md as Prometheus sees them: scraped over HTTP from metrics_server after
// handling known events, with counts that must match what happened.

#include <doctest/doctest.h>

#include <atomic>
#include <future>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "eventbus/dispatcher.hpp"
#include "eventbus/kafka/embedded_broker.hpp"
#include "eventbus/kafka/kafka_sink.hpp"
#include "eventbus/metrics.hpp"
#include "eventbus/metrics_server.hpp"
#include "eventbus/kafka/worker.hpp"
#include "http_support.hpp"
#include "test_support.hpp"

using namespace eventbus;
using namespace std::chrono_literals;
using testing::http_get;
using testing::sample_value;
using testing::wait_until;

namespace {

constexpr const char* orders = "app.order.order.created";

}  // namespace

TEST_CASE("a worker's handler latency, retries, dead letters, consumption and lag are scraped over HTTP") {
  embedded_broker broker;
  broker.create_topic(orders, 1);
  auto m = std::make_shared<metrics>();
  metrics_server server(m, "127.0.0.1:0");
  REQUIRE(server.port() > 0);

  {
    kafka_sink sink({.kafka = {.bootstrap_servers = broker.bootstrap_servers(), .properties = {{"log_level", "3"}}},
                     .metrics = m});
    for (int i = 0; i < 5; ++i)
      REQUIRE(sink.accept(make_event({.event_type = "order.created", .aggregate_type = "order",
                                      .aggregate_id = "o-" + std::to_string(i), .payload = {{"seq", i}}}))
                  .get()
                  .ok());
  }
  worker w({.kafka = {.bootstrap_servers = broker.bootstrap_servers(),
                      .properties = {{"fetch.wait.max.ms", "10"}, {"log_level", "3"}}},
            .group_id = "g-metrics",
            .topics = {orders},
            .retry = {.max_attempts = 3, .initial_backoff = 1ms, .max_backoff = 5ms, .jitter = 0.0},
            .commit_interval = 100ms,
            .metrics = m});
  std::atomic<int> flaky_calls{0};
  auto flaky = w.subscribe("order.created", "flaky", [&](const event& ev) {  // seq 1 fails twice, then works
    if (ev.payload()["seq"] == 1 && flaky_calls.fetch_add(1) < 2) throw std::runtime_error("busy");
  });
  auto strict = w.subscribe("order.created", "strict", [](const event& ev) {  // seq 3: never
    if (ev.payload()["seq"] == 3) throw permanent_error("bad order");
  });
  w.start();
  REQUIRE(wait_until([&] { return w.stats().handled == 5; }, 20s));

  const auto scrape = [&] { return http_get(server.port(), "/metrics"); };
  const auto page = scrape();
  REQUIRE(page.status == 200);
  const auto& text = page.body;
  const auto count = [&](const std::string& handler, const std::string& outcome) {
    return sample_value(text, "eventbus_handler_duration_seconds_count",
                        {{"handler", handler}, {"event_type", "order.created"}, {"outcome", outcome}});
  };
  CHECK(count("flaky", "success") == 5.0);
  CHECK(count("flaky", "error") == 2.0);
  CHECK(count("strict", "success") == 4.0);
  CHECK(count("strict", "error") == 1.0);
  // Every attempt is in the buckets; the largest finite bucket is 30 s, the smallest 0.5 ms.
  const auto bucket = [&](const char* le) {
    return sample_value(text, "eventbus_handler_duration_seconds_bucket",
                        {{"handler", "flaky"}, {"outcome", "success"}, {"le", le}});
  };
  CHECK(bucket("0.0005").has_value());
  CHECK(bucket("30") == 5.0);
  CHECK(bucket("+Inf") == 5.0);
  CHECK(sample_value(text, "eventbus_handler_retries_total", {{"handler", "flaky"}, {"event_type", "order.created"}}) == 2.0);
  // Failures that did not happen read 0, not "no data": the series start at 0 on assignment.
  CHECK(sample_value(text, "eventbus_handler_retries_total", {{"handler", "strict"}, {"event_type", "order.created"}}) == 0.0);
  CHECK(sample_value(text, "eventbus_dead_letters_total",
                     {{"topic", orders}, {"handler", "flaky"}, {"reason", "handler-error"}}) == 0.0);
  CHECK(sample_value(text, "eventbus_dead_letters_dropped_total",
                     {{"topic", orders}, {"handler", "strict"}, {"reason", "handler-error"}}) == 0.0);
  CHECK(sample_value(text, "eventbus_dead_letters_total", {{"topic", orders}, {"handler", ""}, {"reason", "validation"}}) == 0.0);
  CHECK(sample_value(text, "eventbus_dead_letters_total",
                     {{"topic", orders}, {"handler", "strict"}, {"reason", "handler-error"}}) == 1.0);
  CHECK(sample_value(text, "eventbus_events_consumed_total", {{"topic", orders}}) == 5.0);
  CHECK(sample_value(text, "eventbus_events_published_total", {{"topic", orders}, {"outcome", "delivered"}}) == 5.0);
  CHECK(sample_value(text, "eventbus_producer_queue_messages").has_value());
  // No ids in labels: no event id, aggregate id or offset appears anywhere.
  CHECK(text.find("o-1") == std::string::npos);

  // Lag is refreshed every 2 s from the fetched high watermark: all 5 handled, so it reaches 0.
  CHECK(wait_until([&] {
    return sample_value(scrape().body, "eventbus_consumer_lag", {{"topic", orders}, {"partition", "0"}}) == 0.0;
  }, 10s));

  // Event age: each of the 5 records once, at its first attempt (retries are not new ages), and
  // none of them older than the test.
  const auto after = scrape().body;
  CHECK(sample_value(after, "eventbus_event_age_seconds_count", {{"stage", "handled"}, {"event_type", "order.created"}}) == 5.0);
  CHECK(sample_value(after, "eventbus_event_age_seconds_bucket",
                     {{"stage", "handled"}, {"event_type", "order.created"}, {"le", "300"}}) == 5.0);
  // In its group while it runs; out of it once stopped.
  CHECK(sample_value(after, "eventbus_worker_in_group", {{"group", "g-metrics"}}) == 1.0);
  w.stop();
  CHECK(sample_value(scrape().body, "eventbus_worker_in_group", {{"group", "g-metrics"}}) == 0.0);
}

TEST_CASE("dispatcher handler calls are timed through observe_handler, failures as outcome error") {
  auto m = std::make_shared<metrics>();
  metrics_server server(m, "127.0.0.1:0");
  dispatcher bus({.mode = dispatch_mode::caller_thread, .observe_handler = metrics::handler_observer_for(m)});
  auto ok = bus.subscribe("order.*", "audit", [](const event&) {});
  auto bad = bus.subscribe("order.created", "mailer", [](const event&) { throw std::runtime_error("smtp down"); });
  for (int i = 0; i < 3; ++i) (void)bus.publish(testing::make_test_event("order.created"));
  (void)bus.publish(testing::make_test_event("order.paid"));

  const auto text = http_get(server.port(), "/metrics").body;
  const auto count = [&](const char* handler, const char* type, const char* outcome) {
    return sample_value(text, "eventbus_handler_duration_seconds_count",
                        {{"handler", handler}, {"event_type", type}, {"outcome", outcome}})
        .value_or(-1);
  };
  CHECK(count("audit", "order.created", "success") == 3.0);
  CHECK(count("audit", "order.paid", "success") == 1.0);
  CHECK(count("mailer", "order.created", "error") == 3.0);
  CHECK(count("mailer", "order.created", "success") == -1.0);
}

TEST_CASE("healthz answers while the process runs and readyz names the checks that fail") {
  auto m = std::make_shared<metrics>();
  metrics_server server(m, "127.0.0.1:0");
  const auto health = http_get(server.port(), "/healthz");
  CHECK(health.status == 200);
  CHECK(http_get(server.port(), "/readyz").status == 200);  // no checks: ready

  std::atomic<bool> connected{false};
  server.add_readiness_check("kafka", [&] { return connected.load(); });
  server.add_readiness_check("throws", [] { return true; });
  const auto not_ready = http_get(server.port(), "/readyz");
  CHECK(not_ready.status == 503);
  CHECK(not_ready.body == "not ready: kafka\n");
  connected = true;
  CHECK(http_get(server.port(), "/readyz").status == 200);
  server.add_readiness_check("broken", []() -> bool { throw std::runtime_error("check bug"); });
  CHECK(http_get(server.port(), "/readyz").body == "not ready: broken\n");
  CHECK(http_get(server.port(), "/nothing").status == 404);
}

TEST_CASE("metrics_server refuses a malformed or busy listen address, naming it") {
  auto m = std::make_shared<metrics>();
  const auto field_of = [&](const std::string& listen) -> std::string {
    try {
      metrics_server s(m, listen);
    } catch (const exception& e) {
      return e.error().field();
    }
    return "";
  };
  CHECK(field_of("9464") == "listen");
  CHECK(field_of("127.0.0.1:99999") == "listen");
  CHECK(field_of("127.0.0.1:") == "listen");
  metrics_server taken(m, "127.0.0.1:0");
  CHECK(field_of("127.0.0.1:" + std::to_string(taken.port())) == "listen");
  CHECK_THROWS_AS(metrics_server(nullptr, "127.0.0.1:0"), exception);
}

TEST_CASE("observations interleaved over many series and two metrics objects each land on their own series") {
  // Each thread remembers the series it used lately, per metrics object: more series than it
  // remembers, alternating, from two threads, must still count exactly.
  auto first = std::make_shared<metrics>(), second = std::make_shared<metrics>();
  metrics_server server_a(first, "127.0.0.1:0"), server_b(second, "127.0.0.1:0");
  constexpr int handlers = 11, rounds = 30;
  const auto observe = [&](int thread) {
    for (int r = 0; r < rounds; ++r)
      for (int h = 0; h < handlers; ++h) {
        const std::string name = "h" + std::to_string(h);
        first->observe_handler(name, "order.created", (r + thread) % 2 == 0, 1ms);
        if (h % 3 == 0) second->observe_handler(name, "order.created", true, 1ms);
      }
  };
  std::thread other(observe, 1);
  observe(0);
  other.join();
  const auto a = http_get(server_a.port(), "/metrics").body, b = http_get(server_b.port(), "/metrics").body;
  for (int h = 0; h < handlers; ++h) {
    const std::string name = "h" + std::to_string(h);
    CAPTURE(name);
    for (const char* outcome : {"success", "error"})
      CHECK(sample_value(a, "eventbus_handler_duration_seconds_count",
                         {{"handler", name}, {"event_type", "order.created"}, {"outcome", outcome}}) == rounds);
    CHECK(sample_value(b, "eventbus_handler_duration_seconds_count",
                       {{"handler", name}, {"event_type", "order.created"}, {"outcome", "success"}})
              .value_or(0) == (h % 3 == 0 ? 2 * rounds : 0));
  }
}

TEST_CASE("label values from outside are cut and the number of series is capped") {
  auto m = std::make_shared<metrics>();
  metrics_server server(m, "127.0.0.1:0");
  // 20 KB event types, more distinct ones than a family may hold: the scrape stays bounded.
  const std::size_t distinct = metrics::max_series + 2000;
  for (std::size_t i = 0; i < distinct; ++i) {
    std::string type = std::to_string(i) + ".";
    type.append(20'000, 'x');
    m->count_retry("h", type);
  }
  const auto scrape = http_get(server.port(), "/metrics");
  REQUIRE(scrape.status == 200);
  std::size_t series = 0, longest = 0;
  std::istringstream lines(scrape.body);
  for (std::string line; std::getline(lines, line);) {
    if (!line.starts_with("eventbus_handler_retries_total{")) continue;
    ++series;
    longest = std::max(longest, line.size());
  }
  CHECK(series == metrics::max_series + 1);  // the capped ones, and "_other"
  CHECK(longest < 2 * metrics::max_label_bytes);
  CHECK(sample_value(scrape.body, "eventbus_handler_retries_total", {{"handler", "_other"}, {"event_type", "_other"}}) ==
        doctest::Approx(2000));
}

TEST_CASE("idle and half-open connections do not keep a probe from answering") {
  auto m = std::make_shared<metrics>();
  metrics_server server(m, "127.0.0.1:0");
  std::vector<int> idle;
  for (int i = 0; i < 200; ++i) {  // connected, never sending a request
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(server.port());
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0);
    idle.push_back(fd);
  }
  const auto asked = std::chrono::steady_clock::now();
  auto probe = std::async(std::launch::async, [&] { return http_get(server.port(), "/healthz").status; });
  // A liveness probe's bound (Kubernetes' default timeoutSeconds is 1): it restarts the process
  // when it is missed. Before: 16 threads, each held 2 s per idle connection: 25 s.
  REQUIRE(probe.wait_for(10s) == std::future_status::ready);
  const auto waited = std::chrono::steady_clock::now() - asked;
  CHECK_MESSAGE(waited < 1s, "the probe waited " << std::chrono::duration<double>(waited).count() << " s");
  CHECK(probe.get() == 200);
  for (const int fd : idle) close(fd);
}
