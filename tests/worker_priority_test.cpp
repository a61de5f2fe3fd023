// Priority tiers on a worker against the embedded broker: urgent records overtake a backlog of
// less urgent ones (their latency stays close to an idle worker's) while the backlog keeps moving;
// without tiers the same urgent records wait behind it. And tiers that would do nothing are refused.

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include "eventbus/kafka/embedded_broker.hpp"
#include "eventbus/kafka/kafka_sink.hpp"
#include "eventbus/kafka/worker.hpp"
#include "test_support.hpp"
#include "worker_test_support.hpp"
#include "worker/topic_tiers.hpp"

using namespace eventbus;
using namespace std::chrono_literals;
using eventbus::testing::wait_until;

namespace {

constexpr const char* bulk_topic = "app.bulk.bulk.imported";
constexpr const char* urgent_topic = "app.payment.payment.refunded";
constexpr int backlog_size = 10'000;
constexpr int urgent_count = 40;

std::int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct run_figures {
  double urgent_median_ms = 0;
  int bulk_handled_during_stream = 0;
  int bulk_left_after_stream = 0;
};

// A worker with four handler threads; bulk records take 1 ms each. Optionally a backlog of 10,000
// bulk records first, then 40 urgent records, one every 25 ms. Returns the urgent records' median
// latency (sent -> handler start) and how the bulk tier moved meanwhile.
run_figures run(bool tiers, bool backlog, const std::string& group) {
  embedded_broker broker;
  broker.create_topic(bulk_topic, 2);
  broker.create_topic(urgent_topic, 1);
  kafka_sink sink({.kafka = {.bootstrap_servers = broker.bootstrap_servers(), .properties = {{"log_level", "3"}}}});
  // The producer learns the urgent topic's metadata first (a round trip on the first send), so
  // the stream's latencies are the worker's alone. The handler ignores this record.
  REQUIRE(sink.accept(make_event({.event_type = "payment.refunded", .aggregate_type = "payment",
                                  .aggregate_id = "warm-up", .payload = {{"warm_up", true}}})).get().ok());
  if (backlog) {
    std::vector<delivery_future> sent;
    sent.reserve(backlog_size);
    for (int i = 0; i < backlog_size; ++i)
      sent.push_back(sink.accept(make_event({.event_type = "bulk.imported", .aggregate_type = "bulk",
                                             .aggregate_id = "b-" + std::to_string(i)})));  // many aggregates, as bulk imports have
    for (const auto& f : sent) REQUIRE(f.get().ok());
  }

  worker_options options{.kafka = testing::mock_group_kafka(broker), .group_id = group,
                         .topics = {bulk_topic, urgent_topic}, .max_concurrency = 4, .commit_interval = 100ms};
  if (tiers) options.priority_tiers = {{urgent_topic}};
  worker w(options);
  std::atomic<int> bulk_handled{0}, urgent_handled{0};
  std::mutex mu;
  std::vector<double> latencies_ms;
  auto bulk = w.subscribe("bulk.imported", "import", [&](const event&) {
    std::this_thread::sleep_for(1ms);  // the work a bulk record costs
    bulk_handled.fetch_add(1);
  });
  auto urgent = w.subscribe("payment.refunded", "refund", [&](const event& ev) {
    if (ev.payload().contains("warm_up")) return;
    const auto waited = static_cast<double>(steady_ns() - ev.payload()["sent_ns"].get<std::int64_t>()) / 1e6;
    const std::lock_guard lock(mu);
    latencies_ms.push_back(waited);
    urgent_handled.fetch_add(1);
  });
  w.start();
  REQUIRE(wait_until([&] { return w.assigned_partitions() == 3; }, 30s));
  if (backlog) REQUIRE(wait_until([&] { return bulk_handled.load() >= 200; }, 30s));  // the backlog is being worked

  const int bulk_before = bulk_handled.load();
  std::vector<delivery_future> sent;
  for (int i = 0; i < urgent_count; ++i) {
    sent.push_back(sink.accept(make_event({.event_type = "payment.refunded", .aggregate_type = "payment",
                                           .aggregate_id = "p-" + std::to_string(i), .payload = {{"sent_ns", steady_ns()}}})));
    std::this_thread::sleep_for(25ms);  // the urgent stream's pace (load, not synchronisation)
  }
  for (const auto& f : sent) REQUIRE(f.get().ok());
  REQUIRE(wait_until([&] { return urgent_handled.load() == urgent_count; }, 60s));
  run_figures figures;
  figures.bulk_handled_during_stream = bulk_handled.load() - bulk_before;
  figures.bulk_left_after_stream = backlog ? backlog_size - bulk_handled.load() : 0;
  w.stop();
  std::sort(latencies_ms.begin(), latencies_ms.end());
  figures.urgent_median_ms = latencies_ms[latencies_ms.size() / 2];
  MESSAGE("tiers=" << tiers << " backlog=" << backlog << ": urgent median " << figures.urgent_median_ms
                   << " ms, bulk handled during the stream " << figures.bulk_handled_during_stream << ", left "
                   << figures.bulk_left_after_stream);
  return figures;
}

}  // namespace

TEST_CASE("with priority tiers, urgent records overtake a backlog of 10,000 and the backlog still moves") {
  const auto idle = run(true, false, "g-idle");
  const auto tiered = run(true, true, "g-tiered");
  const auto flat = run(false, true, "g-flat");
  // The backlog outlasted the stream in both contended runs, so the urgent records competed with it.
  REQUIRE(tiered.bulk_left_after_stream > 0);
  REQUIRE(flat.bulk_left_after_stream > 0);
  CHECK(tiered.urgent_median_ms <= 2 * idle.urgent_median_ms + 10);  // goal: within 2x of idle (+10 ms noise)
  CHECK(tiered.bulk_handled_during_stream > 100);                      // slowed, not starved
  // Without tiers the urgent records queue behind the bulk ones: the test tells the two apart.
  CHECK(flat.urgent_median_ms > 2 * idle.urgent_median_ms + 10);
}

TEST_CASE("priority tiers that would do nothing are refused, naming the tier") {
  const auto refusal = [](worker_options o) -> std::string {
    try {
      o.validate();
    } catch (const exception& e) {
      return e.error().field() + ": " + e.error().message();
    }
    return "";
  };
  CHECK(refusal({.kafka = {}, .group_id = "g", .topics = {bulk_topic}, .priority_tiers = {{"app.paymnt.payment.refunded"}}})
            .starts_with("priority_tiers[0]: names 'app.paymnt.payment.refunded'"));
  CHECK(refusal({.kafka = {}, .group_id = "g", .topics = {"^app\\..*"}, .priority_tiers = {{urgent_topic}}}).empty());  // matched by the regex
  CHECK(refusal({.kafka = {}, .group_id = "g", .topics = {bulk_topic}, .priority_tiers = {{bulk_topic}, {}}}).starts_with("priority_tiers[1]: names no topic"));
  CHECK(refusal({.kafka = {}, .group_id = "g", .topics = {"^app\\..*"}, .priority_tiers = {{"^app\\.(payment"}}}).starts_with("priority_tiers[0]: '^app"));
  // GNU extensions librdkafka's regcomp takes are taken here too; a topics regex regcomp refuses is named.
  CHECK(refusal({.kafka = {}, .group_id = "g", .topics = {"^app\\..*"}, .priority_tiers = {{"^app\\.\\w+\\.payment"}}}).empty());
  CHECK(refusal({.kafka = {}, .group_id = "g", .topics = {"^app\\.(x"}, .priority_tiers = {{"^app"}}}).starts_with("topics: '^app"));
  CHECK(refusal({.kafka = {}, .group_id = "g", .topics = {"^app\\.(x"}}).empty());  // no tiers: librdkafka's to judge
  CHECK(refusal({.kafka = {}, .group_id = "g", .topics = {"^app\\..*"}, .priority_tiers = {{"^((a{9}){9}){9}"}}})
            .find("without counted repetition") != std::string::npos);
  CHECK(refusal({.kafka = {}, .group_id = "g", .topics = {bulk_topic}, .lower_tier_share_percent = 0}).starts_with("lower_tier_share_percent"));
  CHECK(refusal({.kafka = {}, .group_id = "g", .topics = {bulk_topic}, .lower_tier_share_percent = 95}).starts_with("lower_tier_share_percent"));
}

TEST_CASE("a topic's tier is the first naming it, by name or by regular expression, and the rest are last") {
  const auto tiers = detail::topic_tiers::make({{"app.payment.payment.refunded"}, {"^app\\.payment\\.", "^app\\.fraud\\."}});
  REQUIRE(tiers.ok());
  CHECK(tiers.value().count() == 3);
  CHECK(tiers.value().of("app.payment.payment.refunded") == 0);  // named by both: the first wins
  CHECK(tiers.value().of("app.payment.payment.charged") == 1);
  CHECK(tiers.value().of("app.fraud.case.opened") == 1);
  CHECK(tiers.value().of("app.bulk.bulk.imported") == 2);
  CHECK(tiers.value().of("xapp.payment.y") == 2);  // '^' anchors
}
