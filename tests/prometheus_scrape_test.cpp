// A real Prometheus server (Debian's `prometheus` package) scrapes a running worker's /metrics,
// and its HTTP API returns the handler-latency series: the exposition is what Prometheus accepts.

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "eventbus/kafka/embedded_broker.hpp"
#include "eventbus/kafka/kafka_sink.hpp"
#include "eventbus/metrics_server.hpp"
#include "eventbus/kafka/worker.hpp"
#include "http_support.hpp"
#include "process_support.hpp"
#include "test_support.hpp"

using namespace eventbus;
using namespace std::chrono_literals;

TEST_CASE("a Prometheus server scrapes a running worker and serves its handler latency series") {
  const std::string prometheus = EVENTBUS_PROMETHEUS;
  if (prometheus.empty() || !std::filesystem::exists(prometheus)) {
    MESSAGE("skipped: the prometheus binary is not installed (scripts/setup.sh installs Debian's package)");
    return;
  }
  embedded_broker broker;
  broker.create_topic("app.order.order.created", 2);
  auto m = std::make_shared<metrics>();
  metrics_server server(m, "127.0.0.1:0");
  worker w({.kafka = {.bootstrap_servers = broker.bootstrap_servers(),
                      .properties = {{"fetch.wait.max.ms", "10"}, {"log_level", "3"}}},
            .group_id = "g-prometheus",
            .topics = {"app.order.order.created"},
            .metrics = m});
  auto audit = w.subscribe("order.created", "audit", [](const event&) {});
  w.start();
  {
    kafka_sink sink({.kafka = {.bootstrap_servers = broker.bootstrap_servers(), .properties = {{"log_level", "3"}}}});
    for (int i = 0; i < 3; ++i)
      REQUIRE(sink.accept(testing::make_test_event("order.created", "o-" + std::to_string(i))).get().ok());
  }
  REQUIRE(testing::wait_until([&] { return w.stats().handled == 3; }, 20s));

  const auto dir = std::filesystem::temp_directory_path() / ("eventbus-prometheus-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "prometheus.yml") << "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: worker\n"
                                        << "    static_configs:\n      - targets: ['127.0.0.1:" << server.port() << "']\n";
  const auto port = testing::free_port();
  auto prom = testing::spawn({prometheus, "--config.file=" + (dir / "prometheus.yml").string(),
                              "--storage.tsdb.path=" + (dir / "data").string(),
                              "--web.listen-address=127.0.0.1:" + std::to_string(port), "--log.level=warn"},
                             {}, false);

  // eventbus_handler_duration_seconds_count{handler="audit",outcome="success"}, URL-encoded.
  const std::string query = "/api/v1/query?query=eventbus_handler_duration_seconds_count%7Bhandler%3D%22audit%22%2C"
                            "outcome%3D%22success%22%7D";
  nlohmann::json answer;
  const bool scraped = testing::wait_until([&] {
    const auto reply = testing::http_get(port, query);
    if (reply.status != 200) return false;
    answer = nlohmann::json::parse(reply.body, nullptr, false);
    return !answer.is_discarded() && answer["status"] == "success" && !answer["data"]["result"].empty();
  }, 30s);
  CHECK(prom.stop(SIGTERM) == 0);
  w.stop();
  std::filesystem::remove_all(dir);
  REQUIRE_MESSAGE(scraped, "Prometheus never returned the series: " << answer.dump());
  const auto& series = answer["data"]["result"][0];
  CHECK(series["metric"]["event_type"] == "order.created");
  CHECK(series["metric"]["job"] == "worker");
  CHECK(series["value"][1] == "3");
}
