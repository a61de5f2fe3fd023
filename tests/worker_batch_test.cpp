// Batch handlers on a worker against the embedded broker: calls of up to max_events events, each
// key's in order; failures (a throw, fail(i), dead_letter(i)) called again alone and retried,
// later events of their key after them; commits at the end; middleware forcing single calls.

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "eventbus/kafka/embedded_broker.hpp"
#include "eventbus/kafka/event_batch.hpp"
#include "eventbus/kafka/kafka_sink.hpp"
#include "eventbus/kafka/worker.hpp"
#include "kafka_test_support.hpp"
#include "test_support.hpp"
#include "worker_test_support.hpp"

using namespace eventbus;
using namespace std::chrono_literals;
using eventbus::testing::committed_offset;
using eventbus::testing::wait_until;

namespace {

constexpr const char* orders = "app.order.order.created";

worker_options batch_worker(const embedded_broker& broker, std::string group) {
  return {.kafka = testing::mock_group_kafka(broker),
          .group_id = std::move(group),
          .topics = {orders},
          .retry = {.max_attempts = 3, .initial_backoff = 10ms, .multiplier = 2.0, .max_backoff = 50ms, .jitter = 0.0},
          .commit_interval = 50ms};
}

// `count` events over `keys` keys; payload seq is the event's place in its key's sequence.
void publish(const embedded_broker& broker, int count, int keys) {
  kafka_sink sink({.kafka = {.bootstrap_servers = broker.bootstrap_servers(), .properties = {{"log_level", "3"}}}});
  std::map<int, int> next_seq;
  std::vector<delivery_future> pending;
  for (int i = 0; i < count; ++i) {
    const int key = i % keys;
    pending.push_back(sink.accept(make_event({.event_type = "order.created", .aggregate_type = "order",
                                              .aggregate_id = "o-" + std::to_string(key),
                                              .payload = {{"seq", next_seq[key]++}}})));
  }
  for (auto& f : pending) REQUIRE(f.get().ok());
}

int seq_of(const event& ev) { return ev.payload().at("seq").get<int>(); }

std::int64_t committed_total(const embedded_broker& broker, const std::string& group, int partitions) {
  std::int64_t total = 0;
  for (int p = 0; p < partitions; ++p) total += std::max<std::int64_t>(0, committed_offset(broker.bootstrap_servers(), group, orders, p));
  return total;
}

// What a batch handler saw: every call's size, and per key the sequence numbers it got.
struct seen_calls {
  std::mutex mu;
  std::vector<std::size_t> sizes;
  std::map<std::string, std::vector<int>> per_key;
  std::size_t events = 0;

  void record(const event_batch& batch) {
    const std::lock_guard lock(mu);
    sizes.push_back(batch.size());
    for (const auto& ev : batch) per_key[ev.aggregate_id()].push_back(seq_of(ev));
    events += batch.size();
  }
  std::size_t total() {
    const std::lock_guard lock(mu);
    return events;
  }
};

}  // namespace

TEST_CASE("a batch handler gets up to max_events events a call, each key's in order, each event once, committed") {
  embedded_broker broker;
  broker.create_topic(orders, 4);
  constexpr int total = 3000, keys = 40;
  publish(broker, total, keys);
  worker w(batch_worker(broker, "g-batch"));
  seen_calls seen;
  auto sub = w.subscribe_batch("order.created", "rows", [&](event_batch& batch) { seen.record(batch); },
                               {.max_events = 50});
  w.start();
  REQUIRE(wait_until([&] { return w.stats().handled == total; }, 30s));
  CHECK(wait_until([&] { return committed_total(broker, "g-batch", 4) == total; }, 10s, 50ms));
  w.stop();

  const std::lock_guard lock(seen.mu);
  CHECK(seen.events == total);  // nothing failed: each event exactly once
  CHECK(*std::max_element(seen.sizes.begin(), seen.sizes.end()) <= 50);
  // Batching happened: far fewer calls than events (the broker hands over thousands at once).
  MESSAGE("calls: " << seen.sizes.size() << " for " << total << " events");
  CHECK(seen.sizes.size() * 5 < static_cast<std::size_t>(total));
  REQUIRE(seen.per_key.size() == keys);
  for (const auto& entry : seen.per_key) {
    const auto& seqs = entry.second;
    std::vector<int> expected(seqs.size());
    for (std::size_t i = 0; i < expected.size(); ++i) expected[i] = static_cast<int>(i);
    CHECK_MESSAGE(seqs == expected, "key " << entry.first << " out of order");
  }
  const auto info = w.handlers();
  REQUIRE(info.size() == 1);
  CHECK(info[0].max_events == 50);
  CHECK(info[0].calls == seen.sizes.size());
  CHECK(info[0].failures == 0);
}

TEST_CASE("a failed event of a batch is called again alone, its key's later events after it, the others once") {
  embedded_broker broker;
  broker.create_topic(orders, 1);
  constexpr int total = 400, keys = 4;
  publish(broker, total, keys);
  worker w(batch_worker(broker, "g-batch-fail"));
  std::mutex mu;
  std::vector<std::pair<std::string, int>> calls;  // every (key, seq) handed to the handler, in call order
  std::map<std::string, std::vector<int>> succeeded;  // per key, the seqs whose call succeeded
  std::vector<std::size_t> sizes;
  std::atomic<bool> failed_once{false};
  // The failing event: o-1's first event that comes in a call together with a later event of o-1
  // (how records are split into calls depends on timing; a slow build hands off small ones).
  int failing = -1;
  auto sub = w.subscribe_batch(
      "order.created", "rows",
      [&](event_batch& batch) {
        const std::lock_guard lock(mu);
        sizes.push_back(batch.size());
        std::size_t o1_events = 0;
        for (std::size_t i = 0; i < batch.size(); ++i) o1_events += batch[i].aggregate_id() == "o-1" ? 1 : 0;
        for (std::size_t i = 0; i < batch.size(); ++i) {
          const auto& ev = batch[i];
          calls.emplace_back(ev.aggregate_id(), seq_of(ev));
          if (ev.aggregate_id() == "o-1" && o1_events > 1 && !failed_once.exchange(true)) {
            failing = seq_of(ev);
            batch.fail(i, "row locked");
            continue;
          }
          succeeded[ev.aggregate_id()].push_back(seq_of(ev));
        }
      },
      {.max_events = 100});
  w.start();
  REQUIRE(wait_until([&] { return w.stats().handled == total; }, 30s));
  w.stop();

  const std::lock_guard lock(mu);
  REQUIRE(failed_once.load());
  REQUIRE(failing >= 0);
  const auto f = static_cast<std::size_t>(failing);
  const auto times = [&](const std::string& key, int seq) {
    return std::count(calls.begin(), calls.end(), std::pair{key, seq});
  };
  CHECK(times("o-1", failing) == 2);  // in the batch, then alone
  // Its key's later events of that batch came again after it; other keys' events came once.
  std::size_t again = 0;
  for (int seq = failing + 1; seq < total / keys; ++seq) again += times("o-1", seq) == 2 ? 1 : 0;
  CHECK(again > 0);
  for (const std::string key : {"o-0", "o-2", "o-3"})
    for (int seq = 0; seq < total / keys; ++seq) CHECK_MESSAGE(times(key, seq) == 1, key << " " << seq);
  // What succeeded, per key: every other key exactly in order; o-1 in order up to its failure,
  // and from the failed event's success on, the rest in order again (the repeats).
  std::vector<int> in_order(static_cast<std::size_t>(total / keys));
  for (std::size_t i = 0; i < in_order.size(); ++i) in_order[i] = static_cast<int>(i);
  for (const std::string key : {"o-0", "o-2", "o-3"}) CHECK(succeeded[key] == in_order);
  const auto& o1 = succeeded["o-1"];
  const auto first_success = std::find(o1.begin(), o1.end(), failing);
  REQUIRE(first_success != o1.end());
  CHECK(std::count(o1.begin(), o1.end(), failing) == 1);
  // Before it: 0..failing-1, then the later events of the failed batch, which come again.
  std::vector<int> before(o1.begin(), first_success);
  REQUIRE(before.size() > f);
  CHECK(std::vector<int>(before.begin(), before.begin() + failing) == std::vector<int>(in_order.begin(), in_order.begin() + failing));
  for (std::size_t i = f; i < before.size(); ++i) CHECK(before[i] == static_cast<int>(i) + 1);
  CHECK(std::vector<int>(first_success, o1.end()) == std::vector<int>(in_order.begin() + failing, in_order.end()));
  // The failed event was called alone: a call of size 1 holding it.
  CHECK(std::count(sizes.begin(), sizes.end(), std::size_t{1}) >= 1);
  CHECK(w.stats().dead_letters == 0);
}

// One key longer than a call: a failure in the first call holds back the key's events of the
// next call of the same hand-off, so the next event to succeed is the failed one.
TEST_CASE("a failure in one call holds back its key's events in the next call of the same hand-off") {
  embedded_broker broker;
  broker.create_topic(orders, 1);
  constexpr int total = 600;
  publish(broker, total, 1);  // one key
  worker w(batch_worker(broker, "g-batch-chunks"));
  std::mutex mu;
  // The first event from 400 on that comes in a call of several: far enough in that hand-offs
  // have grown past one call (quick handlers get large ones).
  int failing_seq = -1;
  std::vector<int> succeeded;  // in call order; -1 marks the end of the call that failed failing_seq
  std::atomic<bool> failed_once{false};
  auto sub = w.subscribe_batch(
      "order.created", "rows",
      [&](event_batch& batch) {
        const std::lock_guard lock(mu);
        bool failed_here = false;
        for (std::size_t i = 0; i < batch.size(); ++i) {
          const int seq = seq_of(batch[i]);
          if (seq >= 400 && batch.size() > 1 && !failed_once.exchange(true)) {
            failing_seq = seq;
            batch.fail(i, "row locked");
            failed_here = true;
            continue;
          }
          succeeded.push_back(seq);
        }
        if (failed_here) succeeded.push_back(-1);
      },
      {.max_events = 10});
  w.start();
  REQUIRE(wait_until([&] { return w.stats().handled == total; }, 30s));
  w.stop();
  const std::lock_guard lock(mu);
  REQUIRE(failed_once.load());
  const auto marker = std::find(succeeded.begin(), succeeded.end(), -1);
  REQUIRE(marker != succeeded.end());
  REQUIRE(marker + 1 != succeeded.end());
  CHECK(*(marker + 1) == failing_seq);  // nothing of the key went ahead of the failed event
  // From there on, the rest of the key in order.
  std::vector<int> rest(marker + 1, succeeded.end()), in_order(static_cast<std::size_t>(total - failing_seq));
  for (std::size_t i = 0; i < in_order.size(); ++i) in_order[i] = static_cast<int>(i) + failing_seq;
  CHECK(rest == in_order);
}

TEST_CASE("a batch that throws is called again event by event, and dead_letter(i) dead-letters that event alone") {
  embedded_broker broker;
  broker.create_topic(orders, 2);
  broker.create_topic(std::string(orders) + ".dlq", 1);
  constexpr int total = 300, keys = 10;
  publish(broker, total, keys);
  worker w(batch_worker(broker, "g-batch-throw"));
  std::mutex mu;
  std::map<std::string, std::set<int>> done;  // per key, seqs handled successfully
  std::atomic<int> throws{0};
  auto sub = w.subscribe_batch(
      "order.created", "rows",
      [&](event_batch& batch) {
        // The first three multi-event calls fail whole (a lost connection, say).
        if (batch.size() > 1 && throws.fetch_add(1) < 3) throw std::runtime_error("connection reset");
        const std::lock_guard lock(mu);
        for (std::size_t i = 0; i < batch.size(); ++i) {
          const auto& ev = batch[i];
          if (ev.aggregate_id() == "o-7" && seq_of(ev) == 3) {  // a poison event
            batch.dead_letter(i, "amount is negative");
            continue;
          }
          done[ev.aggregate_id()].insert(seq_of(ev));
        }
      },
      {.max_events = 64});
  w.start();
  REQUIRE(wait_until([&] { return w.stats().handled == total; }, 30s));
  CHECK(wait_until([&] { return committed_total(broker, "g-batch-throw", 2) == total; }, 10s, 50ms));
  w.stop();

  CHECK(throws.load() >= 3);
  CHECK(w.stats().dead_letters == 1);
  const auto dead = testing::read_topic(broker.bootstrap_servers(), std::string(orders) + ".dlq", 1);
  REQUIRE(dead.size() == 1);
  CHECK(dead[0].key == "o-7");
  CHECK(dead[0].headers.at("x-eventbus-dlq-handler") == "rows");
  CHECK(dead[0].headers.at("x-eventbus-dlq-error").find("amount is negative") != std::string::npos);
  CHECK(dead[0].headers.at("x-eventbus-dlq-attempts") == "1");
  const std::lock_guard lock(mu);
  std::size_t handled = 0;
  for (const auto& entry : done) handled += entry.second.size();
  CHECK(handled == total - 1);  // every event but the poison one
}

TEST_CASE("a bad record amid a key's events is dead-lettered, a throwing condition holds its key, and each event is handled once in order") {
  embedded_broker broker;
  broker.create_topic(orders, 1);
  broker.create_topic(std::string(orders) + ".dlq", 1);
  const auto event_bytes = [](int seq) {
    return encode_event(make_event(
        {.event_type = "order.created", .aggregate_type = "order", .aggregate_id = "k", .payload = {{"seq", seq}}}));
  };
  for (int seq = 0; seq < 40; ++seq) {
    if (seq == 15) testing::produce_raw(broker.bootstrap_servers(), orders, "k", "{not json");
    testing::produce_raw(broker.bootstrap_servers(), orders, "k", event_bytes(seq));
  }
  worker w(batch_worker(broker, "g-batch-bad"));
  std::mutex mu;
  std::vector<int> handled;
  std::atomic<bool> condition_threw{false};
  auto sub = w.subscribe_batch(
      "order.created", "rows",
      [&](event_batch& batch) {
        const std::lock_guard lock(mu);
        for (const auto& ev : batch) handled.push_back(seq_of(ev));
      },
      {.max_events = 100, .when = [&](const event& ev) {
         if (seq_of(ev) == 30 && !condition_threw.exchange(true)) throw std::runtime_error("lookup failed");
         return true;
       }});
  w.start();
  REQUIRE(wait_until([&] { return w.stats().handled == 41; }, 30s));
  CHECK(wait_until([&] { return committed_offset(broker.bootstrap_servers(), "g-batch-bad", orders, 0) == 41; }, 10s, 50ms));
  w.stop();
  CHECK(condition_threw.load());
  CHECK(w.stats().dead_letters == 1);
  const auto dead = testing::read_topic(broker.bootstrap_servers(), std::string(orders) + ".dlq", 1);
  REQUIRE(dead.size() == 1);
  CHECK(dead[0].headers.at("x-eventbus-dlq-reason") == "deserialization");
  const std::lock_guard lock(mu);
  std::vector<int> in_order(40);
  for (std::size_t i = 0; i < in_order.size(); ++i) in_order[i] = static_cast<int>(i);
  std::string seen;
  for (const int seq : handled) seen += std::to_string(seq) + " ";
  CHECK_MESSAGE(handled == in_order, seen);
}

TEST_CASE("a batch call the condition left one event in makes that event the cause of what the handler makes") {
  embedded_broker broker;
  broker.create_topic(orders, 1);
  publish(broker, 10, 1);  // one key: one hand-off of ten, of which the condition keeps one
  worker w(batch_worker(broker, "g-batch-cause"));
  std::mutex mu;
  std::vector<std::size_t> sizes;
  std::optional<std::string> made_cause, batch_event_id;
  auto sub = w.subscribe_batch(
      "order.created", "follow-up",
      [&](event_batch& batch) {
        const event made = make_event({.event_type = "order.noted", .aggregate_type = "order",
                                       .aggregate_id = batch[0].aggregate_id(), .payload = {{"seen", 1}}});
        const std::lock_guard lock(mu);
        sizes.push_back(batch.size());
        made_cause = made.causation_id();
        batch_event_id = batch[0].event_id();
      },
      {.max_events = 100, .when = [](const event& ev) { return seq_of(ev) == 5; }});
  w.start();
  REQUIRE(wait_until([&] { return committed_offset(broker.bootstrap_servers(), "g-batch-cause", orders, 0) == 10; }, 30s, 50ms));
  w.stop();
  const std::lock_guard lock(mu);
  REQUIRE(sizes == std::vector<std::size_t>{1});
  REQUIRE(made_cause.has_value());
  CHECK(*made_cause == *batch_event_id);
}

TEST_CASE("a second worker joining while batch calls run (a rebalance) loses nothing") {
  embedded_broker broker;
  broker.create_topic(orders, 4);
  constexpr int total = 4000;
  publish(broker, total, 200);
  std::mutex mu;
  std::set<std::string> handled;
  const auto rows = [&](event_batch& batch) {
    std::this_thread::sleep_for(20ms);  // simulated work: one transaction a call
    const std::lock_guard lock(mu);
    for (const auto& ev : batch) handled.insert(ev.event_id());
  };
  auto options = batch_worker(broker, "g-batch-rebalance");
  options.max_concurrency = 4;  // calls still in flight when the second joins
  options.max_buffered_per_partition = 100;  // partitions paused when the rebalance comes
  worker first(options);
  auto s1 = first.subscribe_batch("order.created", "rows", rows, {.max_events = 20});
  first.start();
  REQUIRE(wait_until([&] {
    const std::lock_guard lock(mu);
    return handled.size() >= 200;
  }, 30s));
  worker second(options);
  auto s2 = second.subscribe_batch("order.created", "rows", rows, {.max_events = 20});
  second.start();
  REQUIRE(wait_until([&] { return second.assigned_partitions() > 0; }, 30s));  // the rebalance happened
  {
    const std::lock_guard lock(mu);
    CHECK(handled.size() < total);  // ... mid-stream
  }
  const bool all = wait_until(
      [&] {
        const std::lock_guard lock(mu);
        return handled.size() == total;
      },
      60s);
  first.stop();
  second.stop();
  CHECK(all);
  CHECK(first.stats().handled + second.stats().handled >= total);
  CHECK(committed_total(broker, "g-batch-rebalance", 4) <= total);  // never past the end
}

TEST_CASE("on a worker with middleware a batch handler is called one event at a time, through it") {
  embedded_broker broker;
  broker.create_topic(orders, 1);
  constexpr int total = 50;
  publish(broker, total, 5);
  std::atomic<int> through_middleware{0};
  auto options = batch_worker(broker, "g-batch-mw");
  options.middleware = {[&](const attempt_context& ctx, const next_step& next) {
    through_middleware.fetch_add(1);
    return next(ctx);
  }};
  worker w(std::move(options));
  seen_calls seen;
  auto sub = w.subscribe_batch("order.created", "rows", [&](event_batch& batch) { seen.record(batch); });
  w.start();
  REQUIRE(wait_until([&] { return w.stats().handled == total; }, 30s));
  w.stop();
  const std::lock_guard lock(seen.mu);
  CHECK(seen.sizes.size() == total);
  CHECK(std::all_of(seen.sizes.begin(), seen.sizes.end(), [](std::size_t n) { return n == 1; }));
  CHECK(through_middleware.load() == total);
}

// Events trickling in one every 10 ms: with max_wait a call waits for more (up to the wait), without
// it each call takes what is there.
TEST_CASE("max_wait lets a call gather what arrives within it, and no event waits much longer") {
  const auto calls_for = [&](std::chrono::milliseconds max_wait, const std::string& group) {
    embedded_broker broker;  // one each: the group reads from the earliest record
    broker.create_topic(orders, 1);
    worker w(batch_worker(broker, group));
    std::mutex mu;
    std::vector<std::size_t> sizes;
    std::int64_t longest_wait_ms = 0;
    auto sub = w.subscribe_batch(
        "order.created", "rows",
        [&](event_batch& batch) {
          const std::lock_guard lock(mu);
          sizes.push_back(batch.size());
          const auto waited = now_ms() - batch[0].timestamp();
          longest_wait_ms = std::max<std::int64_t>(longest_wait_ms, waited.count());
        },
        {.max_events = 100, .max_wait = max_wait});
    w.start();
    REQUIRE(wait_until([&] { return w.in_group(); }, 30s));
    const auto before = w.stats().handled;
    const auto stream_start = std::chrono::steady_clock::now();
    {
      kafka_sink sink({.kafka = {.bootstrap_servers = broker.bootstrap_servers(), .properties = {{"log_level", "3"}, {"linger.ms", "0"}}}});
      for (int i = 0; i < 60; ++i) {
        REQUIRE(sink.accept(make_event({.event_type = "order.created", .aggregate_type = "order",
                                        .aggregate_id = "o-" + std::to_string(i % 3), .payload = {{"seq", i}}}))
                    .get()
                    .ok());
        std::this_thread::sleep_for(10ms);  // pacing the stream, not synchronising
      }
    }
    const auto stream = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - stream_start);
    REQUIRE(wait_until([&] { return w.stats().handled >= before + 60; }, 30s));
    w.stop();
    const std::lock_guard lock(mu);
    MESSAGE("max_wait " << max_wait.count() << " ms: " << sizes.size() << " calls over a stream of " << stream.count()
                        << " ms, longest wait " << longest_wait_ms << " ms");
    return std::tuple{sizes.size(), longest_wait_ms, stream};
  };
  const auto [lingering_calls, lingering_wait, lingering_stream] = calls_for(300ms, "g-linger");
  const auto [eager_calls, eager_wait, eager_stream] = calls_for(0ms, "g-eager");
  static_cast<void>(eager_stream);
  // One call per 300 ms window of the stream, give or take the edges.
  CHECK(lingering_calls <= static_cast<std::size_t>(lingering_stream / 300ms) + 3);
  CHECK(eager_calls > lingering_calls);
  CHECK(lingering_wait < 300 + 2000);     // the wait, plus delivery on a loaded machine
  CHECK(eager_wait < lingering_wait + 2000);
}

TEST_CASE("batch handler options are checked, naming the option") {
  embedded_broker broker;
  worker w(batch_worker(broker, "g-batch-bad"));
  const auto refused = [&](batch_options options, batch_handler_fn fn = [](event_batch&) {}) {
    try {
      (void)w.subscribe_batch("order.created", "rows", std::move(fn), std::move(options));
    } catch (const exception& e) {
      return e.error().field() + ": " + e.error().message();
    }
    return std::string("accepted");
  };
  CHECK(refused({.max_events = 0}).find("max_events") == 0);
  CHECK(refused({.max_events = 257}).find("257") != std::string::npos);
  CHECK(refused({}, nullptr).find("handler") == 0);
  CHECK(refused({.max_wait = -1ms}).find("max_wait") == 0);
  CHECK(refused({.max_wait = 61s}).find("60000") != std::string::npos);
  CHECK(refused({.max_events = 256, .max_wait = 60s}) == "accepted");
}
