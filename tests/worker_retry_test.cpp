// Workers against the embedded broker: retries, dead letters with their headers, at-least-once
// commits, isolation between handlers, bad records, and no head-of-line blocking across partitions.

#include <doctest/doctest.h>

#include <atomic>
#include <map>
#include <mutex>

#include "eventbus/admin/dead_letters.hpp"
#include "eventbus/kafka/embedded_broker.hpp"
#include "eventbus/kafka/kafka_sink.hpp"
#include "eventbus/admin/replay.hpp"
#include "eventbus/kafka/worker.hpp"
#include "kafka_test_support.hpp"
#include "test_support.hpp"
#include "worker_test_support.hpp"

using namespace eventbus;
using namespace std::chrono_literals;
using eventbus::testing::committed_offset;
using eventbus::testing::read_topic;
using eventbus::testing::wait_until;

namespace {

constexpr const char* orders = "app.order.order.created";
constexpr const char* orders_dlq = "app.order.order.created.dlq";

// Settings that make the mock's group protocol quick enough for tests (see docs/embedded-broker.md).
worker_options test_worker(const embedded_broker& broker, std::string group, retry_policy retry = {}) {
  return {.kafka = testing::mock_group_kafka(broker),
          .group_id = std::move(group),
          .topics = {orders},
          .retry = retry,
          .commit_interval = 100ms};
}

retry_policy fast_retry(int attempts) {
  return {.max_attempts = attempts, .initial_backoff = 10ms, .multiplier = 2.0, .max_backoff = 50ms, .jitter = 0.0};
}

std::vector<event> publish_orders(const embedded_broker& broker, int count, const std::string& aggregate = "o-1") {
  kafka_sink sink({.kafka = {.bootstrap_servers = broker.bootstrap_servers(), .properties = {{"log_level", "3"}}}});
  std::vector<event> events;
  for (int i = 0; i < count; ++i) {
    events.push_back(make_event({.event_type = "order.created", .aggregate_type = "order", .aggregate_id = aggregate,
                                 .payload = {{"seq", i}}, .correlation_id = "corr-" + std::to_string(i)}));
    REQUIRE(sink.accept(events.back()).get().ok());
  }
  return events;
}

std::int64_t dlq_count(const embedded_broker& broker) {
  return std::max<std::int64_t>(0, testing::topic_record_count(broker.bootstrap_servers(), orders_dlq));
}

}  // namespace

TEST_CASE("a handler that fails twice then succeeds is retried, not dead-lettered, and committed") {
  embedded_broker broker;
  broker.create_topic(orders, 1);
  publish_orders(broker, 1);
  worker w(test_worker(broker, "g-retry", fast_retry(5)));
  std::atomic<int> calls{0};
  auto sub = w.subscribe("order.created", "flaky", [&](const event&) {
    if (calls.fetch_add(1) < 2) throw std::runtime_error("downstream busy");
  });
  w.start();
  REQUIRE(wait_until([&] { return w.stats().handled == 1; }, 20s));
  CHECK(calls.load() == 3);
  CHECK(w.stats().retries == 2);
  CHECK(w.stats().dead_letters == 0);
  CHECK(wait_until([&] { return committed_offset(broker.bootstrap_servers(), "g-retry", orders, 0) == 1; }, 10s));
  w.stop();
  CHECK(dlq_count(broker) == 0);
}

TEST_CASE("a handler that always fails is dead-lettered once, with every header, then committed") {
  embedded_broker broker;
  broker.create_topic(orders, 1);
  const auto events = publish_orders(broker, 1);
  worker w(test_worker(broker, "g-dlq", fast_retry(3)));
  std::atomic<int> calls{0};
  auto sub = w.subscribe("order.*", "mailer", [&](const event&) {
    calls.fetch_add(1);
    throw std::runtime_error("smtp: 550 mailbox unavailable");
  });
  const auto before = now_ms();
  w.start();
  REQUIRE(wait_until([&] { return w.stats().dead_letters == 1; }, 20s));
  CHECK(wait_until([&] { return committed_offset(broker.bootstrap_servers(), "g-dlq", orders, 0) == 1; }, 10s));
  w.stop();
  CHECK(calls.load() == 3);

  const auto dead = read_topic(broker.bootstrap_servers(), orders_dlq, 1);
  REQUIRE(dead.size() == 1);
  CHECK(dlq_count(broker) == 1);
  const auto& h = dead[0].headers;
  CHECK(dead[0].key == "o-1");
  CHECK(dead[0].value == encode_event(events[0]));  // the original bytes
  CHECK(h.at("event_id") == events[0].event_id());  // original headers kept
  CHECK(h.at("correlation_id") == "corr-0");
  CHECK(h.at("x-eventbus-dlq-reason") == "handler-error");
  CHECK(h.at("x-eventbus-dlq-error") == "smtp: 550 mailbox unavailable");
  CHECK(h.at("x-eventbus-dlq-handler") == "mailer");
  CHECK(h.at("x-eventbus-dlq-attempts") == "3");
  CHECK(h.at("x-eventbus-dlq-original-topic") == orders);
  CHECK(h.at("x-eventbus-dlq-original-partition") == "0");
  CHECK(h.at("x-eventbus-dlq-original-offset") == "0");
  CHECK(h.at("x-eventbus-dlq-group") == "g-dlq");
  const auto failed_at = parse_timestamp(h.at("x-eventbus-dlq-failed-at"));
  REQUIRE(failed_at.ok());
  CHECK(failed_at.value() >= before);
}

TEST_CASE("a permanent failure goes to the dead letters at once, with attempts = 1") {
  embedded_broker broker;
  broker.create_topic(orders, 1);
  publish_orders(broker, 1);
  worker w(test_worker(broker, "g-permanent", fast_retry(5)));
  std::atomic<int> calls{0};
  auto sub = w.subscribe("order.created", "validator", [&](const event&) {
    calls.fetch_add(1);
    throw permanent_error("customer c-9 does not exist");
  });
  w.start();
  REQUIRE(wait_until([&] { return w.stats().dead_letters == 1; }, 20s));
  w.stop();
  CHECK(calls.load() == 1);
  CHECK(w.stats().retries == 0);
  const auto dead = read_topic(broker.bootstrap_servers(), orders_dlq, 1);
  REQUIRE(dead.size() == 1);
  CHECK(dead[0].headers.at("x-eventbus-dlq-attempts") == "1");
  CHECK(dead[0].headers.at("x-eventbus-dlq-error").find("customer c-9 does not exist") != std::string::npos);
}

TEST_CASE("retries are per handler: a sibling that succeeded runs exactly once per record") {
  embedded_broker broker;
  broker.create_topic(orders, 1);
  publish_orders(broker, 5);
  worker w(test_worker(broker, "g-siblings", fast_retry(3)));
  std::mutex mu;
  std::map<int, int> audit_calls;
  std::atomic<int> failing_calls{0};
  auto audit = w.subscribe("order.created", "audit", [&](const event& ev) {
    const std::lock_guard lock(mu);
    ++audit_calls[ev.payload()["seq"].get<int>()];
  });
  auto failing = w.subscribe("order.created", "billing", [&](const event&) {
    failing_calls.fetch_add(1);
    throw std::runtime_error("billing down");
  });
  w.start();
  REQUIRE(wait_until([&] { return w.stats().handled == 5; }, 30s));
  w.stop();
  CHECK(failing_calls.load() == 15);  // 3 attempts x 5 records
  CHECK(w.stats().dead_letters == 5);
  const std::lock_guard lock(mu);
  REQUIRE(audit_calls.size() == 5);
  for (const auto& [audited, n] : audit_calls) {
    const auto& seq = audited;  // CAPTURE takes a reference, and clang 14 cannot capture a binding
    CAPTURE(seq);
    CHECK(n == 1);
  }
}

TEST_CASE("bad records are dead-lettered with the right reason and the worker keeps consuming") {
  embedded_broker broker;
  broker.create_topic(orders, 1);
  const auto& bootstrap = broker.bootstrap_servers();
  const auto good = make_event({.event_type = "order.created", .aggregate_type = "order", .aggregate_id = "o-1"});
  auto without_type = nlohmann::json::parse(encode_event(good));
  without_type.erase("event_type");
  auto wrong_version = nlohmann::json::parse(encode_event(good));
  wrong_version["version"] = "one";
  const auto oversize = make_event({.event_type = "order.created", .aggregate_type = "order", .aggregate_id = "o-1",
                                    .payload = {{"blob", std::string(4000, 'x')}}});
  testing::produce_raw(bootstrap, orders, "o-1", "this is not json {");
  testing::produce_raw(bootstrap, orders, "o-1", without_type.dump());
  testing::produce_raw(bootstrap, orders, "o-1", wrong_version.dump());
  testing::produce_raw(bootstrap, orders, "o-1", encode_event(oversize));
  testing::produce_raw(bootstrap, orders, "o-1", encode_event(good));

  auto options = test_worker(broker, "g-bad", fast_retry(2));
  options.max_record_bytes = 2000;
  worker w(options);
  std::atomic<int> handled_good{0};
  auto sub = w.subscribe("order.created", "count", [&](const event& ev) {
    if (ev.event_id() == good.event_id()) handled_good.fetch_add(1);
  });
  w.start();
  REQUIRE(wait_until([&] { return w.stats().handled == 5; }, 20s));
  CHECK(wait_until([&] { return committed_offset(bootstrap, "g-bad", orders, 0) == 5; }, 10s));
  w.stop();
  CHECK(handled_good.load() == 1);

  const auto dead = read_topic(bootstrap, orders_dlq, 4);
  REQUIRE(dead.size() == 4);
  CHECK(dead[0].headers.at("x-eventbus-dlq-reason") == "deserialization");
  CHECK(dead[0].value == "this is not json {");
  CHECK(dead[1].headers.at("x-eventbus-dlq-reason") == "validation");
  CHECK(dead[1].headers.at("x-eventbus-dlq-error").find("event_type") != std::string::npos);
  CHECK(dead[2].headers.at("x-eventbus-dlq-reason") == "validation");
  CHECK(dead[2].headers.at("x-eventbus-dlq-error").find("version") != std::string::npos);
  CHECK(dead[3].headers.at("x-eventbus-dlq-reason") == "validation");
  CHECK(dead[3].headers.at("x-eventbus-dlq-error").find("max_record_bytes") != std::string::npos);
  for (const auto& d : dead) CHECK(d.headers.at("x-eventbus-dlq-handler").empty());
}

TEST_CASE("a record in backoff holds back only its own partition") {
  embedded_broker broker;
  broker.create_topic(orders, 2);
  kafka_sink sink({.kafka = {.bootstrap_servers = broker.bootstrap_servers(), .properties = {{"log_level", "3"}}}});
  auto publish = [&](const std::string& aggregate) {
    return sink.accept(make_event({.event_type = "order.created", .aggregate_type = "order", .aggregate_id = aggregate}))
        .get()
        .value()
        .partition;
  };
  const auto stuck_partition = publish("stuck");
  int others = 0;
  for (int i = 0; others < 5 && i < 200; ++i)
    if (publish("o-" + std::to_string(i)) != stuck_partition) ++others;
  REQUIRE(others == 5);

  // The stuck record waits 3 s before its second attempt; the other partition must not wait.
  worker w(test_worker(broker, "g-hol", {.max_attempts = 2, .initial_backoff = 3000ms, .max_backoff = 3000ms, .jitter = 0}));
  std::atomic<int> stuck_calls{0}, other_done{0};
  auto sub = w.subscribe("order.created", "h", [&](const event& ev) {
    if (ev.aggregate_id() == "stuck") {
      stuck_calls.fetch_add(1);
      throw std::runtime_error("still failing");
    }
    other_done.fetch_add(1);
  });
  w.start();
  REQUIRE(wait_until([&] { return stuck_calls.load() == 1; }, 20s));
  const auto first_failure = std::chrono::steady_clock::now();
  REQUIRE(wait_until([&] { return other_done.load() >= 5; }, 20s));
  CHECK(std::chrono::steady_clock::now() - first_failure < 2500ms);  // finished while the stuck one waited
  CHECK(stuck_calls.load() == 1);                                     // it is still in its backoff
  REQUIRE(wait_until([&] { return w.stats().dead_letters == 1; }, 20s));
  w.stop();
}

TEST_CASE("worker options are validated, naming the option") {
  auto error_of = [](worker_options o) -> std::string {
    try {
      o.validate();
    } catch (const exception& e) {
      return e.error().field();
    }
    return "";
  };
  const worker_options ok{.group_id = "g", .topics = {orders}};
  CHECK(error_of(ok).empty());
  auto no_group = ok;
  no_group.group_id = "";
  CHECK(error_of(no_group) == "group_id");
  auto no_topics = ok;
  no_topics.topics.clear();
  CHECK(error_of(no_topics) == "topics");
  auto bad_topic = ok;
  bad_topic.topics = {"app order"};
  CHECK(error_of(bad_topic) == "topics");
  auto bad_retry = ok;
  bad_retry.retry.max_attempts = 0;
  CHECK(error_of(bad_retry) == "retry.max_attempts");
  auto bad_multiplier = ok;
  bad_multiplier.retry.multiplier = 0.5;
  CHECK(error_of(bad_multiplier) == "retry.multiplier");
  auto bad_suffix = ok;
  bad_suffix.dlq_suffix = ".dead letters";
  CHECK(error_of(bad_suffix) == "dlq_suffix");
  auto empty_piece = ok;
  empty_piece.middleware = {[](const attempt_context& ctx, const next_step& next) { return next(ctx); }, nullptr};
  CHECK(error_of(empty_piece) == "middleware[1]");
  auto no_threads = ok;
  no_threads.max_concurrency = 0;
  CHECK(error_of(no_threads) == "max_concurrency");
  auto bad_order = ok;
  bad_order.ordering = static_cast<processing_order>(7);
  CHECK(error_of(bad_order) == "ordering");
}

TEST_CASE("retry backoff grows by the multiplier, is capped, and jitters within its bound") {
  const retry_policy p{.max_attempts = 10, .initial_backoff = 100ms, .multiplier = 2.0, .max_backoff = 1000ms, .jitter = 0.2};
  CHECK(p.backoff_before(2, 0.5) == 100ms);  // 0.5 = no jitter
  CHECK(p.backoff_before(3, 0.5) == 200ms);
  CHECK(p.backoff_before(4, 0.5) == 400ms);
  CHECK(p.backoff_before(6, 0.5) == 1000ms);  // capped
  CHECK(p.backoff_before(2, 0.0) == 80ms);    // -20 %
  CHECK(p.backoff_before(2, 0.999999) == 120ms);
  CHECK(p.backoff_before(1, 0.5) == 0ms);
}

TEST_CASE("while the dead-letter topic is unavailable nothing is committed past the record, and nothing is lost") {
  embedded_broker broker;
  broker.create_topic(orders, 1);
  broker.create_topic(orders_dlq, 1);
  publish_orders(broker, 3);
  broker.set_topic_error(orders_dlq, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);

  auto options = test_worker(broker, "g-dlq-down", fast_retry(1));
  options.kafka.properties["message.timeout.ms"] = "500";  // each dead-letter write gives up quickly
  worker w(options);
  std::atomic<int> calls{0};
  auto sub = w.subscribe("order.created", "h", [&](const event& ev) {
    calls.fetch_add(1);
    if (ev.payload()["seq"] == 0) throw permanent_error("poison");
  });
  w.start();
  REQUIRE(wait_until([&] { return w.stats().dlq_write_failures >= 2; }, 30s));
  // The poison record (offset 0) holds its partition: the records behind it wait, nothing is committed.
  CHECK(w.stats().handled == 0);
  CHECK(calls.load() == 1);
  CHECK(committed_offset(broker.bootstrap_servers(), "g-dlq-down", orders, 0) == -1);

  broker.set_topic_error(orders_dlq, RD_KAFKA_RESP_ERR_NO_ERROR);
  REQUIRE(wait_until([&] { return w.stats().handled == 3; }, 30s));
  CHECK(w.stats().dead_letters == 1);
  CHECK(wait_until([&] { return committed_offset(broker.bootstrap_servers(), "g-dlq-down", orders, 0) == 3; }, 10s));
  w.stop();
  CHECK(calls.load() == 3);
  const auto dead = read_topic(broker.bootstrap_servers(), orders_dlq, 1);
  REQUIRE(dead.size() == 1);
  CHECK(dead[0].headers.at("x-eventbus-dlq-error") == "permanent: poison");
}

TEST_CASE("dlq list shows why and dlq replay for one handler brings records back to only that handler") {
  embedded_broker broker;
  broker.create_topic(orders, 1);
  const auto events = publish_orders(broker, 2);
  worker w(test_worker(broker, "g-replay", fast_retry(1)));
  std::atomic<bool> mailer_broken{true};
  std::atomic<int> audit_calls{0}, mailer_successes{0};
  auto audit = w.subscribe("order.created", "audit", [&](const event&) { audit_calls.fetch_add(1); });
  auto mailer = w.subscribe("order.created", "mailer", [&](const event&) {
    if (mailer_broken) throw std::runtime_error("template missing");
    mailer_successes.fetch_add(1);
  });
  w.start();
  REQUIRE(wait_until([&] { return w.stats().dead_letters == 2; }, 20s));

  const kafka_options kafka{.bootstrap_servers = broker.bootstrap_servers(), .properties = {{"log_level", "3"}}};
  const auto listed = list_dead_letters(kafka, orders_dlq);
  REQUIRE(listed.ok());
  REQUIRE(listed.value().size() == 2);
  for (const auto& d : listed.value()) {
    CHECK(d.reason == "handler-error");
    CHECK(d.handler == "mailer");
    CHECK(d.error == "template missing");
    CHECK(d.attempts == 1);
    CHECK(d.original_topic == orders);
    CHECK(d.group == "g-replay");
  }
  CHECK(listed.value()[0].original_offset == 0);
  CHECK(listed.value()[1].original_offset == 1);

  mailer_broken = false;  // the fix is deployed
  const auto none = replay_dead_letters(kafka, orders_dlq, {.handler = "someone-else"});
  REQUIRE(none.ok());
  CHECK(none.value().replayed == 0);
  CHECK(none.value().skipped == 2);
  const auto replayed = replay_dead_letters(kafka, orders_dlq, {.handler = "mailer"});
  REQUIRE(replayed.ok());
  CHECK(replayed.value().replayed == 2);

  REQUIRE(wait_until([&] { return mailer_successes.load() == 2; }, 20s));
  REQUIRE(wait_until([&] { return w.stats().handled == 4; }, 10s));
  w.stop();
  CHECK(audit_calls.load() == 2);  // the replays ran only the mailer
  const auto all = read_topic(broker.bootstrap_servers(), orders, 4);
  REQUIRE(all.size() == 4);
  CHECK(all[2].headers.at("x-eventbus-replay-count") == "1");
  CHECK(all[2].headers.at("x-eventbus-replay-handler") == "mailer");
  CHECK(all[2].headers.count("x-eventbus-dlq-reason") == 0);
  CHECK(all[2].value == encode_event(events[0]));
}

TEST_CASE("rewind_group sets a group's offsets to a point in time and its workers start there") {
  embedded_broker broker;
  broker.create_topic(orders, 1);
  publish_orders(broker, 3);
  const auto boundary = now_ms() + 2ms;
  REQUIRE(wait_until([&] { return now_ms() > boundary; }, 1s));
  publish_orders(broker, 2, "o-late");
  const kafka_options kafka{.bootstrap_servers = broker.bootstrap_servers(), .properties = {{"log_level", "3"}}};

  // Not run yet: refused as a typo would be, unless asked for.
  const auto typo = rewind_group(kafka, "g-rewind", "^app\\.order\\..*", boundary);
  REQUIRE_FALSE(typo.ok());
  CHECK(typo.error().field() == "group");
  const auto moved = rewind_group(kafka, "g-rewind", "^app\\.order\\..*", boundary, {.new_group = true});
  REQUIRE_MESSAGE(moved.ok(), moved.error().to_string());
  REQUIRE(moved.value().size() == 1);
  CHECK(moved.value()[0].topic == orders);
  CHECK(moved.value()[0].partition == 0);
  CHECK(moved.value()[0].offset == 3);
  CHECK(committed_offset(broker.bootstrap_servers(), "g-rewind", orders, 0) == 3);

  worker w(test_worker(broker, "g-rewind"));
  std::mutex mu;
  std::vector<std::string> seen;
  auto sub = w.subscribe("*", "h", [&](const event& ev) {
    const std::lock_guard lock(mu);
    seen.push_back(ev.aggregate_id());
  });
  w.start();
  REQUIRE(wait_until([&] { return w.stats().handled == 2; }, 20s));
  CHECK(wait_until([&] { return committed_offset(broker.bootstrap_servers(), "g-rewind", orders, 0) == 5; }, 10s));
  {
    const auto busy = rewind_group(kafka, "g-rewind", orders, time_point{});
    REQUIRE_FALSE(busy.ok());
    CHECK(busy.error().code() == errc::delivery_failed);
    CHECK(busy.error().message().find("stop its workers") != std::string::npos);
  }
  w.stop();
  CHECK(w.stats().handled == 2);
  CHECK(seen == std::vector<std::string>{"o-late", "o-late"});

  CHECK(rewind_group(kafka, "g-from-start", orders, time_point{}, {.new_group = true}).value()[0].offset == 0);
  CHECK(committed_offset(broker.bootstrap_servers(), "g-from-start", orders, 0) == 0);
  CHECK(rewind_group(kafka, "g-from-future", orders, now_ms() + 1h, {.new_group = true}).value()[0].offset == 5);
  CHECK(rewind_group(kafka, "g-x", "^nothing\\.matches", boundary, {.new_group = true}).error().field() == "topics");
  CHECK(rewind_group(kafka, "g-x", "^(unclosed", boundary, {.new_group = true}).error().field() == "topics");
  CHECK(rewind_group(kafka, "", orders, boundary).error().field() == "group");
}

TEST_CASE("a worker runs its options' middleware around every attempt, inside retry and recover") {
  embedded_broker broker;
  broker.create_topic(orders, 1);
  publish_orders(broker, 3);
  std::mutex mu;
  std::vector<std::string> seen;  // "<seq>#<attempt>:<result>" as the outer middleware saw it
  auto options = test_worker(broker, "g-middleware", fast_retry(5));
  options.middleware = {
      [&](const attempt_context& ctx, const next_step& next) {
        auto outcome = next(ctx);  // a throw from inside passes through here on its way to recover
        const std::lock_guard lock(mu);
        seen.push_back(ctx.ev.payload()["seq"].dump() + "#" + std::to_string(ctx.attempt) + ":" +
                       std::string(to_string(outcome.result)));
        return outcome;
      },
      // A piece that short-circuits (as a deduplication piece would): the second record is skipped.
      [&](const attempt_context& ctx, const next_step& next) -> attempt_outcome {
        if (ctx.offset == 1) return {};
        return next(ctx);
      }};
  worker w(std::move(options));
  std::atomic<int> calls{0};
  auto sub = w.subscribe("order.created", "flaky", [&](const event& ev) {
    ++calls;
    if (ev.payload()["seq"] == 0 && calls.load() < 3) throw std::runtime_error("busy");
  });
  w.start();
  REQUIRE(wait_until([&] { return w.stats().handled == 3; }, 20s));
  w.stop();
  CHECK(calls.load() == 4);  // record 0 three times, record 1 skipped by the middleware, record 2 once
  CHECK(w.stats().retries == 2);
  CHECK(w.stats().handler_calls == 5);  // the skipped call is still an attempt the worker timed
  const std::lock_guard lock(mu);
  // The user's pieces run inside recover: a throw reaches them as an exception, not an outcome,
  // so the failed attempts never show up here, and the retries do.
  CHECK(seen == std::vector<std::string>{"0#3:succeeded", "1#1:succeeded", "2#1:succeeded"});
}
