// Workers against hostile records and handlers: records too large to dead-letter, topics too long
// for a dead-letter suffix, events posing as another type, null keys and tombstones, handlers that
// never return, stop() from inside a handler, and batches that must stop between records.

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <future>
#include <mutex>
#include <set>
#include <vector>

#include "eventbus/admin/dead_letters.hpp"
#include "eventbus/kafka/embedded_broker.hpp"
#include "eventbus/kafka/kafka_sink.hpp"
#include "eventbus/kafka/worker.hpp"
#include "kafka_test_support.hpp"
#include "test_support.hpp"
#include "worker_test_support.hpp"

using namespace eventbus;
using namespace std::chrono_literals;
using eventbus::testing::committed_offset;
using eventbus::testing::produce_raw;
using eventbus::testing::raw_record;
using eventbus::testing::read_topic;
using eventbus::testing::wait_until;

namespace {

constexpr const char* orders = "app.order.order.created";
constexpr const char* orders_dlq = "app.order.order.created.dlq";

worker_options hostile_worker(const embedded_broker& broker, std::string group) {
  return {.kafka = testing::mock_group_kafka(broker),
          .group_id = std::move(group),
          .topics = {orders},
          .retry = {.max_attempts = 1},
          .commit_interval = 100ms};
}

std::string order(const std::string& aggregate, int seq) {
  return encode_event(make_event(
      {.event_type = "order.created", .aggregate_type = "order", .aggregate_id = aggregate, .payload = {{"seq", seq}}}));
}

using eventbus::testing::gate;

}  // namespace

TEST_CASE("records too large for the dead-letter topic are dead-lettered without their value, and committed") {
  embedded_broker broker;
  broker.create_topic(orders, 1);
  const auto& bootstrap = broker.bootstrap_servers();
  const std::map<std::string, std::string> big_producer{{"message.max.bytes", "2000000"}};
  // Over max_record_bytes (1 MiB), and not JSON just under it: both used to fail the dead-letter
  // write with MSG_SIZE_TOO_LARGE forever, holding the partition.
  produce_raw(bootstrap, {.topic = orders, .key = "o-1", .value = std::string(1'200'000, 'x'),
                          .producer_properties = big_producer});
  produce_raw(bootstrap, {.topic = orders, .key = "o-1", .value = std::string(1'010'000, '{'),
                          .producer_properties = big_producer});
  produce_raw(bootstrap, orders, "o-1", order("o-1", 3));
  worker w(hostile_worker(broker, "g-big"));
  std::atomic<int> handled{0};
  auto sub = w.subscribe("order.created", "h", [&](const event&) { handled.fetch_add(1); });
  w.start();
  REQUIRE(wait_until([&] { return committed_offset(bootstrap, "g-big", orders, 0) == 3; }, 30s));
  w.stop();
  CHECK(handled.load() == 1);
  CHECK(w.stats().dead_letters == 2);
  const auto dead = read_topic(bootstrap, orders_dlq, 2);
  REQUIRE(dead.size() == 2);
  CHECK(dead[0].headers.at("x-eventbus-dlq-reason") == "validation");
  CHECK(dead[1].headers.at("x-eventbus-dlq-reason") == "deserialization");
  for (const auto& d : dead) CHECK(d.headers.at("x-eventbus-dlq-attempts") == "0");  // no handler was tried
  for (const auto& d : dead) {
    CHECK(d.null_value);
    CHECK(d.key == "o-1");
    CHECK(d.headers.at("x-eventbus-dlq-value-dropped").find("bytes not copied") != std::string::npos);
    CHECK(d.headers.at("x-eventbus-dlq-original-topic") == orders);
  }
  // Replay has nothing to put back for them: skipped, never sent as empty records.
  const auto replayed = replay_dead_letters({.bootstrap_servers = bootstrap}, orders_dlq);
  REQUIRE(replayed.ok());
  CHECK(replayed.value().replayed == 0);
  CHECK(replayed.value().skipped == 2);
}

TEST_CASE("a dead-letter topic the cluster refuses for good gives the record up, counted, instead of holding it") {
  embedded_broker broker;
  broker.create_topic(orders, 1);
  broker.create_topic(orders_dlq, 1);
  const auto& bootstrap = broker.bootstrap_servers();
  produce_raw(bootstrap, orders, "o-1", "not json");
  produce_raw(bootstrap, orders, "o-1", order("o-1", 1));
  // The next produce requests are the dead-letter writer's: refused as not authorized, whole and
  // again without the value.
  broker.push_request_errors(kafka_api::produce, {RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
                                                  RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED});
  worker w(hostile_worker(broker, "g-refused"));
  std::atomic<int> handled{0};
  auto sub = w.subscribe("order.created", "h", [&](const event&) { handled.fetch_add(1); });
  w.start();
  REQUIRE(wait_until([&] { return committed_offset(bootstrap, "g-refused", orders, 0) == 2; }, 30s));
  w.stop();
  CHECK(handled.load() == 1);
  CHECK(w.stats().dead_letters_dropped == 1);
  CHECK(w.stats().dead_letters == 0);
}

TEST_CASE("a topic too long for '.dlq' still gets a dead-letter topic, and its record is committed") {
  embedded_broker broker;
  const std::string aggregate(248 - std::string("app..order.created").size(), 'a');
  const std::string topic = "app." + aggregate + ".order.created";
  REQUIRE(topic.size() == 248);
  broker.create_topic(topic, 1);
  const auto& bootstrap = broker.bootstrap_servers();
  produce_raw(bootstrap, topic, "k",
              encode_event(make_event({.event_type = "order.created", .aggregate_type = aggregate, .aggregate_id = "k"})));
  auto options = hostile_worker(broker, "g-long");
  options.topics = {topic};
  worker w(options);
  auto sub = w.subscribe("order.created", "h", [](const event&) -> void { throw permanent_error("refused"); });
  w.start();
  REQUIRE(wait_until([&] { return committed_offset(bootstrap, "g-long", topic, 0) == 1; }, 30s));
  w.stop();
  const auto dlq = dlq_topic_for(topic).value();
  CHECK(dlq.size() <= max_topic_length);
  const auto dead = read_topic(bootstrap, dlq, 1);
  REQUIRE(dead.size() == 1);
  CHECK(dead[0].headers.at("x-eventbus-dlq-original-topic") == topic);
  // And replay brings it back to where it came from.
  const auto replayed = replay_dead_letters({.bootstrap_servers = bootstrap}, dlq);
  REQUIRE(replayed.ok());
  CHECK(replayed.value().replayed == 1);
}

TEST_CASE("an event posing as another type, or nested too deep, is dead-lettered (validation), never handled") {
  embedded_broker broker;
  broker.create_topic(orders, 1);
  const auto& bootstrap = broker.bootstrap_servers();
  // Its type need not match the topic it was written to: it would run order.shipped handlers, and
  // put a label of the record's choosing into the metrics.
  produce_raw(bootstrap, orders, "o-1",
              encode_event(make_event({.event_type = "order.shipped", .aggregate_type = "order", .aggregate_id = "o-1"})));
  std::string deep = order("o-1", 1);
  deep.insert(deep.find("\"payload\":{") + 11, "\"d\":" + std::string(300'000, '[') + "1" + std::string(300'000, ']') + ",");
  produce_raw(bootstrap, {.topic = orders, .key = "o-1", .value = deep,
                          .producer_properties = {{"message.max.bytes", "2000000"}}});
  produce_raw(bootstrap, orders, "o-1", order("o-1", 2));
  auto options = hostile_worker(broker, "g-pose");
  options.metrics = std::make_shared<metrics>();
  worker w(options);
  std::atomic<int> created{0}, shipped{0};
  auto a = w.subscribe("order.created", "created", [&](const event&) { created.fetch_add(1); });
  auto b = w.subscribe("order.shipped", "shipped", [&](const event&) { shipped.fetch_add(1); });
  w.start();
  REQUIRE(wait_until([&] { return committed_offset(bootstrap, "g-pose", orders, 0) == 3; }, 30s));
  w.stop();
  CHECK(created.load() == 1);
  CHECK(shipped.load() == 0);
  const auto dead = read_topic(bootstrap, orders_dlq, 2);
  REQUIRE(dead.size() == 2);
  CHECK(dead[0].headers.at("x-eventbus-dlq-reason") == "validation");
  CHECK(dead[0].headers.at("x-eventbus-dlq-error").find("does not belong on topic") != std::string::npos);
  CHECK(dead[1].headers.at("x-eventbus-dlq-reason") == "validation");
  CHECK(dead[1].headers.at("x-eventbus-dlq-error").find("nested deeper") != std::string::npos);
}

TEST_CASE("dead letters and their replays keep a null key and a tombstone null") {
  embedded_broker broker;
  broker.create_topic(orders, 1);
  const auto& bootstrap = broker.bootstrap_servers();
  produce_raw(bootstrap, {.topic = orders, .key = std::nullopt, .value = "not json"});
  produce_raw(bootstrap, {.topic = orders, .key = "o-1", .value = std::nullopt});  // a tombstone
  produce_raw(bootstrap, {.topic = orders, .key = "", .value = ""});               // empty, not null
  worker w(hostile_worker(broker, "g-null"));
  w.start();
  REQUIRE(wait_until([&] { return committed_offset(bootstrap, "g-null", orders, 0) == 3; }, 30s));
  w.stop();
  // Keys run side by side: the dead letters come in any order. Each is told by what it carries.
  const auto shapes = [](const std::vector<testing::consumed_record>& records) {
    std::multiset<std::string> out;
    for (const auto& r : records)
      out.insert(std::string(r.null_key ? "null" : "'" + r.key + "'") + "/" + (r.null_value ? "null" : "'" + r.value + "'"));
    return out;
  };
  const std::multiset<std::string> sent{"null/'not json'", "'o-1'/null", "''/''"};
  const auto dead = read_topic(bootstrap, orders_dlq, 3);
  REQUIRE(dead.size() == 3);
  CHECK(shapes(dead) == sent);

  const auto replayed = replay_dead_letters({.bootstrap_servers = bootstrap}, orders_dlq);
  REQUIRE(replayed.ok());
  CHECK(replayed.value().replayed == 3);
  const auto back = read_topic(bootstrap, orders, 6);
  REQUIRE(back.size() == 6);
  CHECK(shapes({back.begin() + 3, back.end()}) == sent);
}

TEST_CASE("dlq replay sends a record only back to the topic its dead-letter topic belongs to") {
  embedded_broker broker;
  const auto& bootstrap = broker.bootstrap_servers();
  broker.create_topic(orders_dlq, 1);
  // A header naming another topic (copied by hand, or forged) must not make replay a way to write
  // anywhere.
  produce_raw(bootstrap, {.topic = orders_dlq, .key = "o-1", .value = order("o-1", 1),
                          .headers = {{"x-eventbus-dlq-reason", "handler-error"},
                                      {"x-eventbus-dlq-original-topic", "app.payment.payment.captured"}}});
  produce_raw(bootstrap, {.topic = orders_dlq, .key = "o-1", .value = order("o-1", 2),
                          .headers = {{"x-eventbus-dlq-reason", "handler-error"},
                                      {"x-eventbus-dlq-original-topic", orders}}});
  const auto replayed = replay_dead_letters({.bootstrap_servers = bootstrap}, orders_dlq);
  REQUIRE(replayed.ok());
  CHECK(replayed.value().replayed == 1);
  CHECK(replayed.value().refused == 1);
  CHECK(testing::topic_record_count(bootstrap, orders) == 1);
  CHECK(testing::topic_record_count(bootstrap, "app.payment.payment.captured") <= 0);
  // Listing streams and stops at the limit.
  const auto first = list_dead_letters({.bootstrap_servers = bootstrap}, orders_dlq, 1);
  REQUIRE(first.ok());
  CHECK(first.value().size() == 1);
}

TEST_CASE("a handler that never returns: its record is dead-lettered as a timeout, its key moves on") {
  embedded_broker broker;
  broker.create_topic(orders, 1);
  const auto& bootstrap = broker.bootstrap_servers();
  for (int i = 0; i < 3; ++i) produce_raw(bootstrap, orders, "k", order("k", i));
  auto options = hostile_worker(broker, "g-hung");
  options.handler_timeout = 300ms;
  options.max_concurrency = 1;
  auto hang = std::make_shared<gate>();  // shared: the hung thread may outlive this scope's locals
  std::atomic<int> finished{0};
  {
    worker w(options);
    auto sub = w.subscribe("order.created", "h", [hang, &finished](const event& ev) {
      if (ev.payload().at("seq") == 0) hang->wait();
      finished.fetch_add(1);
    });
    w.start();
    REQUIRE(wait_until([&] { return w.stats().dead_letters == 1; }, 30s));
    // Its only slot is held by the hung call: not ready, and the key waits for a slot.
    CHECK(wait_until([&] { return !w.in_group(); }, 5s));
    CHECK(w.stats().hung_calls == 1);
    hang->open();  // the call returns at last; its outcome is ignored, the slot is free again
    REQUIRE(wait_until([&] { return committed_offset(bootstrap, "g-hung", orders, 0) == 3; }, 30s));
    CHECK(w.in_group());
    w.stop();
    CHECK(w.stats().handled == 3);
  }
  CHECK(finished.load() == 3);  // 1 and 2 handled, 0 returned late
  const auto dead = read_topic(bootstrap, orders_dlq, 1);
  REQUIRE(dead.size() == 1);
  CHECK(dead[0].headers.at("x-eventbus-dlq-reason") == "timeout");
  CHECK(dead[0].headers.at("x-eventbus-dlq-handler").empty());
  CHECK(dead[0].value.find("\"seq\":0") != std::string::npos);  // the original bytes are kept
}

TEST_CASE("stop() returns within shutdown_timeout while a handler hangs, and the late thread is harmless") {
  embedded_broker broker;
  broker.create_topic(orders, 1);
  const auto& bootstrap = broker.bootstrap_servers();
  produce_raw(bootstrap, orders, "k", order("k", 0));
  auto options = hostile_worker(broker, "g-stuck");
  options.handler_timeout = 0ms;  // no limit: only stop() bounds it
  options.shutdown_timeout = 500ms;
  auto hang = std::make_shared<gate>();
  auto entered = std::make_shared<std::atomic<bool>>(false);
  {
    auto w = std::make_unique<worker>(options);
    auto sub = w->subscribe("order.created", "h", [hang, entered](const event&) {
      entered->store(true);
      hang->wait();
    });
    w->start();
    REQUIRE(wait_until([&] { return entered->load(); }, 30s));
    auto stopped = std::async(std::launch::async, [&] { w->stop(); });
    REQUIRE(stopped.wait_for(10s) == std::future_status::ready);  // it used to wait for the handler forever
    // The worker is gone while its handler still runs: its destructor used to wait for the call too
    // (destroying the consumer waits for the message the call holds) until the gate's own limit.
    auto destroyed = std::async(std::launch::async, [&] { w.reset(); });
    CHECK(destroyed.wait_for(10s) == std::future_status::ready);
    hang->open();  // the detached thread returns into memory that is still its own
    destroyed.wait();
  }  // (the subscription waits for that call to return before it goes)
  CHECK(wait_until([&] { return committed_offset(bootstrap, "g-stuck", orders, 0) < 1; }, 1s));
}

TEST_CASE("a handler that returns after stop() gave up on it, before the worker goes, does not hold up the destructor") {
  embedded_broker broker;
  broker.create_topic(orders, 1);
  const auto& bootstrap = broker.bootstrap_servers();
  for (int i = 0; i < 5; ++i) produce_raw(bootstrap, orders, "k", order("k", i));  // one key: one batch
  auto options = hostile_worker(broker, "g-late");
  options.handler_timeout = 0ms;
  options.shutdown_timeout = 300ms;
  auto hang = std::make_shared<gate>();
  auto entered = std::make_shared<std::atomic<bool>>(false);
  auto returned = std::make_shared<std::atomic<bool>>(false);
  auto w = std::make_unique<worker>(options);
  auto sub = w->subscribe("order.created", "h", [hang, entered, returned](const event&) {
    if (entered->exchange(true)) return;
    hang->wait();
    returned->store(true);
  });
  w->start();
  REQUIRE(wait_until([&] { return entered->load(); }, 30s));
  w->stop();  // gives up on the call after 300 ms; its batch holds the records after it, unrun
  CHECK_THROWS_WITH_AS(w->start(), doctest::Contains("cannot start again"), exception);
  hang->open();  // the call returns while the worker still exists: its thread posts the batch back
  REQUIRE(wait_until([&] { return returned->load(); }, 10s));
  // Destroying the consumer waits for every message it handed out: one left in a batch no one
  // frees (posted to a loop that no longer runs) used to hold the destructor forever.
  auto destroyed = std::async(std::launch::async, [&] { w.reset(); });
  CHECK(destroyed.wait_for(10s) == std::future_status::ready);
  if (destroyed.wait_for(0s) != std::future_status::ready) std::_Exit(1);  // it would never return
}

TEST_CASE("stop() called from inside a handler asks and returns, and the worker then stops") {
  embedded_broker broker;
  broker.create_topic(orders, 1);
  const auto& bootstrap = broker.bootstrap_servers();
  for (int i = 0; i < 5; ++i) produce_raw(bootstrap, orders, "k", order("k", i));
  worker w(hostile_worker(broker, "g-self-stop"));
  std::atomic<int> calls{0};
  std::atomic<bool> returned{false};
  auto sub = w.subscribe("order.created", "h", [&](const event&) {
    if (calls.fetch_add(1) == 0) {
      w.stop();  // used to deadlock: the worker waited for this very call
      returned = true;
    }
  });
  w.start();
  REQUIRE(wait_until([&] { return returned.load(); }, 30s));
  CHECK(wait_until([&] { return !w.in_group(); }, 5s));
  auto stopped = std::async(std::launch::async, [&] { w.stop(); });
  REQUIRE(stopped.wait_for(10s) == std::future_status::ready);
  CHECK(calls.load() <= 5);
}

TEST_CASE("a batch stops between records on stop(), and records finished in it are committed as they finish") {
  embedded_broker broker;
  broker.create_topic(orders, 1);
  const auto& bootstrap = broker.bootstrap_servers();
  for (int i = 0; i < 20; ++i) produce_raw(bootstrap, orders, "k", order("k", i));
  auto options = hostile_worker(broker, "g-slow");
  options.shutdown_timeout = 1s;
  worker w(options);
  std::atomic<int> finished{0};
  auto sub = w.subscribe("order.created", "h", [&](const event&) {
    std::this_thread::sleep_for(400ms);  // the work itself: one slow call after another in one key
    finished.fetch_add(1);
  });
  w.start();
  // One key: the records share a lane, and the first batch takes many of them at once. Those done
  // must not wait for the batch's end to be committed.
  REQUIRE(wait_until([&] { return committed_offset(bootstrap, "g-slow", orders, 0) >= 2; }, 30s));
  CHECK(finished.load() < 20);
  auto stopped = std::async(std::launch::async, [&] { w.stop(); });
  REQUIRE(stopped.wait_for(5s) == std::future_status::ready);  // 20 x 400 ms used to run to the end
  const int done = finished.load();
  CHECK(done < 20);
  CHECK(static_cast<int>(w.stats().handled) == done);  // every finished call counted as handled
  CHECK(committed_offset(bootstrap, "g-slow", orders, 0) == done);  // and committed, nothing more
}

TEST_CASE("a fatal error in the dead-letter producer: the next try goes through a new producer") {
  embedded_broker broker;
  broker.create_topic(orders, 1);
  broker.create_topic(orders_dlq, 1);
  const auto& bootstrap = broker.bootstrap_servers();
  for (int i = 0; i < 5; ++i) produce_raw(bootstrap, orders, "o-1", order("o-1", i));
  worker w(hostile_worker(broker, "g-fatal"));
  auto later = std::make_shared<gate>();
  auto sub = w.subscribe("order.created", "h", [later](const event& ev) -> void {
    if (ev.payload().at("seq") != 0) later->wait();
    throw permanent_error("refused");
  });
  w.start();
  REQUIRE(wait_until([&] { return w.stats().dead_letters == 1; }, 30s));
  // The dead-letter producer has sequence numbers in play, and nothing else produces now: its next
  // request gets one out-of-order answer, which breaks an idempotent producer for good.
  broker.push_request_errors(kafka_api::produce, {RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER});
  later->open();
  // It used to fail every later write, holding the partition for good.
  CHECK(wait_until([&] { return committed_offset(bootstrap, "g-fatal", orders, 0) == 5; }, 30s));
  w.stop();
  CHECK(w.stats().dead_letters == 5);
  CHECK(w.stats().dlq_write_failures >= 1);
}

TEST_CASE("a batch call that never returns: its events are called alone, and the one that hangs is dead-lettered as a timeout") {
  embedded_broker broker;
  broker.create_topic(orders, 1);
  const auto& bootstrap = broker.bootstrap_servers();
  for (int i = 0; i < 20; ++i) produce_raw(bootstrap, orders, "k", order("k", i));
  auto options = hostile_worker(broker, "g-hung-batch");
  options.handler_timeout = 2s;  // far above a normal call under TSan: only the hanging ones time out
  auto hang = std::make_shared<gate>();  // shared: the hung threads may outlive this scope's locals
  auto seen = std::make_shared<std::mutex>();
  auto handled = std::make_shared<std::set<int>>();
  auto sizes = std::make_shared<std::vector<std::size_t>>();  // of each call holding seq 5
  {
    worker w(options);
    auto sub = w.subscribe_batch(
        "order.created", "rows",
        [hang, seen, handled, sizes](event_batch& batch) {
          for (const auto& ev : batch)
            if (ev.payload().at("seq") == 5) {
              {
                const std::lock_guard lock(*seen);
                sizes->push_back(batch.size());  // the size of each call that holds it
              }
              hang->wait();  // any call holding it hangs, wherever it is in the call
            }
          const std::lock_guard lock(*seen);
          for (const auto& ev : batch) handled->insert(ev.payload().at("seq").get<int>());
        },
        {.max_events = 50});
    w.start();
    REQUIRE(wait_until([&] { return w.stats().dead_letters == 1; }, 30s));
    REQUIRE(wait_until([&] { return committed_offset(bootstrap, "g-hung-batch", orders, 0) == 20; }, 30s));
    {
      const std::lock_guard lock(*seen);
      CHECK(handled->size() == 19);  // every other event, called alone after the batch call hung
      CHECK(handled->count(5) == 0);
      // It hung in a call of its own, to be blamed alone (after a call of several that hung
      // with it, unless the hand-off held it alone from the start).
      REQUIRE(!sizes->empty());
      CHECK(sizes->back() == 1);
      CHECK(std::count(sizes->begin(), sizes->end(), std::size_t{1}) == 1);
    }
    CHECK(w.stats().hung_calls >= 1);
    hang->open();
    w.stop();
    CHECK(w.stats().handled == 20);
  }
  const auto dead = read_topic(bootstrap, orders_dlq, 1);
  REQUIRE(dead.size() == 1);
  CHECK(dead[0].headers.at("x-eventbus-dlq-reason") == "timeout");
  CHECK(dead[0].value.find("\"seq\":5") != std::string::npos);
}
