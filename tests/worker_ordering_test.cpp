// Processing orders against the embedded broker: per-key order under concurrency, a key in backoff
// holding back only that key, the concurrency limit, and the per-partition window.

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <random>

#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include "eventbus/kafka/embedded_broker.hpp"
#include "eventbus/kafka/kafka_sink.hpp"
#include "eventbus/metrics.hpp"
#include "eventbus/kafka/worker.hpp"
#include "http_support.hpp"
#include "kafka_test_support.hpp"
#include "test_support.hpp"
#include "worker_test_support.hpp"

using namespace eventbus;
using namespace std::chrono_literals;
using eventbus::testing::committed_offset;
using eventbus::testing::wait_until;

namespace {

constexpr const char* orders = "app.order.order.created";

// The value of one of a group's worker gauges in `m`'s registry, as /metrics would serve it.
double gauge(metrics& m, const std::string& name, const std::string& group) {
  const auto text = prometheus::TextSerializer().Serialize(m.registry().Collect());
  return eventbus::testing::sample_value(text, name, {{"group", group}}).value_or(-1);
}

worker_options test_worker(const embedded_broker& broker, std::string group, processing_order ordering) {
  return {.kafka = testing::mock_group_kafka(broker),
          .group_id = std::move(group),
          .topics = {orders},
          .ordering = ordering,
          .commit_interval = 100ms};
}

// Publishes one event per key in `keys`, in that order, with payload {"seq": n} where n counts the
// key's events so far. Returns each event's (partition, offset) in order.
std::vector<delivery> publish_keys(const embedded_broker& broker, const std::vector<std::string>& keys) {
  kafka_sink sink({.kafka = {.bootstrap_servers = broker.bootstrap_servers(), .properties = {{"log_level", "3"}}}});
  std::map<std::string, int> seq;
  std::vector<delivery_future> pending;
  pending.reserve(keys.size());
  for (const auto& key : keys)
    pending.push_back(sink.accept(make_event(
        {.event_type = "order.created", .aggregate_type = "order", .aggregate_id = key, .payload = {{"seq", seq[key]++}}})));
  std::vector<delivery> out;
  for (auto& f : pending) out.push_back(f.get().value());
  return out;
}

}  // namespace

TEST_CASE("key order holds for 100k events over 1000 keys with random handler delays") {
  embedded_broker broker;
  broker.create_topic(orders, 16);  // about 2 MB a partition: well inside the mock's 5 MB
  constexpr int total = 100'000, keys = 1000;
  std::vector<std::string> sequence;
  std::mt19937 pick(42);
  for (int i = 0; i < total; ++i) sequence.push_back("k-" + std::to_string(pick() % keys));
  const auto where = publish_keys(broker, sequence);

  std::mutex mu;
  std::map<std::string, int> last_seen;  // per key: the last seq handled
  int out_of_order = 0, handled = 0;
  std::atomic<int> running{0}, most_running{0};
  auto options = test_worker(broker, "g-key-order", processing_order::key);
  options.max_concurrency = 32;
  worker w(options);
  auto sub = w.subscribe("order.created", "check-order", [&](const event& ev) {
    testing::record_peak(most_running, running.fetch_add(1) + 1);
    thread_local std::mt19937 delay(std::hash<std::thread::id>{}(std::this_thread::get_id()));
    if (delay() % 8 == 0) std::this_thread::sleep_for(std::chrono::microseconds(delay() % 400));
    const int seq = ev.payload().at("seq").get<int>();
    {
      const std::lock_guard lock(mu);
      auto [it, first] = last_seen.try_emplace(ev.aggregate_id(), seq);
      if (!first) {
        if (seq <= it->second) ++out_of_order;
        it->second = seq;
      }
      ++handled;
    }
    running.fetch_sub(1);
  });
  w.start();
  const bool all = wait_until(
      [&] {
        const std::lock_guard lock(mu);
        return handled >= total;
      },
      180s);
  w.stop();
  CHECK(all);
  CHECK(out_of_order == 0);
  CHECK(handled == total);  // no record twice: one worker, no rebalance
  CHECK(last_seen.size() == keys);
  CHECK(most_running.load() > 1);  // keys really ran side by side
  // After the graceful stop every partition is committed to its end.
  std::map<std::int32_t, std::int64_t> ends;
  for (const auto& d : where) ends[d.partition] = std::max(ends[d.partition], d.offset + 1);
  for (const auto& [partition, end] : ends) CHECK(committed_offset(broker.bootstrap_servers(), "g-key-order", orders, partition) == end);
}

namespace {

// One partition: a record of key "stuck" that fails (retried once after 1.5 s, then dead-lettered),
// then 20 records of other keys, then two more records of "stuck". What had been handled when the
// stuck record's second attempt began says what its backoff held back.
struct backoff_outcome {
  int others_before_retry = -1;
  int later_stuck_before_retry = -1;
  std::vector<int> stuck_order;  // seqs of "stuck" handled successfully, in order
  std::uint64_t waiting_on_key_seen = 0;
  std::int64_t committed_while_stuck = -2;
};

backoff_outcome run_backoff_scenario(processing_order ordering, const std::string& group) {
  embedded_broker broker;
  broker.create_topic(orders, 1);
  std::vector<std::string> keys{"stuck"};
  for (int i = 0; i < 20; ++i) keys.push_back("o-" + std::to_string(i));
  keys.insert(keys.end(), {"stuck", "stuck"});
  publish_keys(broker, keys);

  auto options = test_worker(broker, group, ordering);
  options.retry = {.max_attempts = 2, .initial_backoff = 1500ms, .max_backoff = 1500ms, .jitter = 0};
  worker w(options);
  std::mutex mu;
  backoff_outcome out;
  int others = 0, later_stuck = 0, stuck_calls = 0;
  auto sub = w.subscribe("order.created", "h", [&](const event& ev) {
    const std::lock_guard lock(mu);
    const int seq = ev.payload().at("seq").get<int>();
    if (ev.aggregate_id() != "stuck") {
      ++others;
      return;
    }
    if (seq > 0) {
      ++later_stuck;
      out.stuck_order.push_back(seq);
      return;
    }
    if (++stuck_calls == 2) {
      out.others_before_retry = others;
      out.later_stuck_before_retry = later_stuck;
    }
    throw std::runtime_error("still failing");
  });
  w.start();
  REQUIRE(wait_until(
      [&] {
        const std::lock_guard lock(mu);
        return stuck_calls == 1 && (ordering == processing_order::partition || others == 20);
      },
      20s));
  if (ordering == processing_order::key) {
    wait_until([&] { return w.stats().waiting_on_key == 2; }, 1000ms);
    out.waiting_on_key_seen = w.stats().waiting_on_key;
    out.committed_while_stuck = committed_offset(broker.bootstrap_servers(), group, orders, 0);
  }
  REQUIRE(wait_until([&] { return w.stats().handled == keys.size(); }, 20s));
  w.stop();
  CHECK(w.stats().dead_letters == 1);
  return out;
}

}  // namespace

TEST_CASE("in key order a record in backoff holds back only the later records of its own key") {
  const auto out = run_backoff_scenario(processing_order::key, "g-backoff-key");
  CHECK(out.others_before_retry == 20);       // the other keys of the partition kept going
  CHECK(out.later_stuck_before_retry == 0);   // its own key waited
  CHECK(out.stuck_order == std::vector<int>{1, 2});
  CHECK(out.waiting_on_key_seen == 2);
  // Nothing committed past the unfinished record at offset 0 (a commit of offset 0 itself, naming
  // the finished records in its metadata, is allowed).
  CHECK(out.committed_while_stuck <= 0);
}

TEST_CASE("in partition order a record in backoff holds back its whole partition") {
  const auto out = run_backoff_scenario(processing_order::partition, "g-backoff-partition");
  CHECK(out.others_before_retry == 0);
  CHECK(out.later_stuck_before_retry == 0);
  CHECK(out.stuck_order == std::vector<int>{1, 2});
}

TEST_CASE("unordered, a record in backoff holds back nothing") {
  const auto out = run_backoff_scenario(processing_order::unordered, "g-backoff-unordered");
  CHECK(out.others_before_retry == 20);
  CHECK(out.later_stuck_before_retry == 2);
}

TEST_CASE("max_concurrency bounds handler calls in flight, and keys of one partition run side by side") {
  embedded_broker broker;
  broker.create_topic(orders, 1);
  std::vector<std::string> keys;
  for (int i = 0; i < 50; ++i) keys.push_back("o-" + std::to_string(i));
  publish_keys(broker, keys);

  auto m = std::make_shared<metrics>();
  auto options = test_worker(broker, "g-limit", processing_order::key);
  options.max_concurrency = 4;
  options.metrics = m;
  worker w(options);
  std::atomic<bool> gate_open{false};
  std::atomic<int> running{0}, most_running{0}, done{0};
  auto sub = w.subscribe("order.created", "slow", [&](const event&) {
    testing::record_peak(most_running, running.fetch_add(1) + 1);
    wait_until([&] { return gate_open.load(); }, 30s);
    running.fetch_sub(1);
    done.fetch_add(1);
  });
  w.start();
  REQUIRE(wait_until([&] { return running.load() == 4; }, 20s));
  REQUIRE(wait_until([&] { return w.stats().in_flight >= 4; }, 2s));
  CHECK(running.load() == 4);  // the other ready keys wait for a slot
  CHECK(gauge(*m, "eventbus_worker_records_in_flight", "g-limit") == static_cast<double>(w.stats().in_flight));
  CHECK(gauge(*m, "eventbus_worker_records_waiting_on_key", "g-limit") == 0);  // 50 keys, one record each
  gate_open = true;
  REQUIRE(wait_until([&] { return done.load() == 50; }, 20s));
  CHECK(most_running.load() == 4);
  REQUIRE(wait_until([&] { return w.stats().in_flight == 0; }, 2s));
  w.stop();
  CHECK(gauge(*m, "eventbus_worker_records_in_flight", "g-limit") == 0);
}

TEST_CASE("a full window pauses the partition, bounds what is fetched, and resumes when it drains") {
  embedded_broker broker;
  broker.create_topic(orders, 1);
  std::vector<std::string> keys{"stuck"};
  for (int i = 0; i < 200; ++i) keys.push_back("o-" + std::to_string(i));
  publish_keys(broker, keys);

  auto m = std::make_shared<metrics>();
  auto options = test_worker(broker, "g-window", processing_order::key);
  options.max_buffered_per_partition = 20;
  options.metrics = m;
  options.retry = {.max_attempts = 2, .initial_backoff = 2000ms, .max_backoff = 2000ms, .jitter = 0};
  worker w(options);
  std::atomic<int> stuck_calls{0}, others{0};
  auto sub = w.subscribe("order.created", "h", [&](const event& ev) {
    if (ev.aggregate_id() == "stuck") {
      stuck_calls.fetch_add(1);
      throw std::runtime_error("down");
    }
    others.fetch_add(1);
  });
  w.start();
  REQUIRE(wait_until([&] { return w.stats().paused_partitions == 1; }, 20s));
  // The pause is seen by the consumer thread, the first call made by a pool thread: either may
  // come first. Once it came, no second one before the 2 s backoff.
  REQUIRE(wait_until([&] { return stuck_calls.load() >= 1; }, 20s));
  CHECK(stuck_calls.load() == 1);
  CHECK(gauge(*m, "eventbus_worker_partitions_paused", "g-window") == 1);
  // While the stuck record holds the window's head, at most a window's worth is taken in.
  CHECK(others.load() < 20);
  CHECK(w.stats().records <= 20 + 1);
  REQUIRE(wait_until([&] { return others.load() == 200; }, 30s));
  CHECK(w.stats().dead_letters == 1);
  REQUIRE(wait_until([&] { return w.stats().paused_partitions == 0; }, 2s));
  w.stop();
  CHECK(committed_offset(broker.bootstrap_servers(), "g-window", orders, 0) == 201);
}
