// The outbox relay on both backends, against the embedded Kafka broker: what is stored reaches
// Kafka in order and is marked published only once acknowledged; Kafka down (backlog on disk, then
// drained); a service SIGKILLed mid-stream while Kafka is down; two relays on one PostgreSQL.

#include <doctest/doctest.h>

#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <sqlite3.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <thread>

#include "eventbus/dispatcher.hpp"
#include "eventbus/kafka/embedded_broker.hpp"
#include "eventbus/store/outbox_relay.hpp"
#include "http_support.hpp"
#include "kafka_test_support.hpp"
#include "process_support.hpp"
#include "store_support.hpp"
#include "test_support.hpp"

using namespace eventbus;
using namespace std::chrono_literals;
using eventbus::testing::read_topic;
using eventbus::testing::wait_until;

namespace {

const char* const backends[] = {"sqlite", "postgresql"};
constexpr const char* placed = "app.order.order.placed";

producer_options producer_for(const embedded_broker& broker) {
  return {.kafka = {.bootstrap_servers = broker.bootstrap_servers(),
                    .properties = {{"reconnect.backoff.max.ms", "500"}, {"log_level", "0"}}},
          .close_timeout = 2s};
}

std::vector<event> append_orders(event_store& store, int count, int aggregates = 10, int first = 0) {
  std::vector<event> all;
  for (int i = first; i < first + count; ++i) {
    const auto ev = make_event({.event_type = "order.placed", .aggregate_type = "order",
                                .aggregate_id = "a-" + std::to_string(i % aggregates), .payload = {{"seq", i}}});
    const std::vector<event> one{ev};
    REQUIRE(store.append("order", ev.aggregate_id(), eventbus::expected_version::any(), one).ok());
    all.push_back(ev);
  }
  return all;
}

struct arrival_check {
  std::size_t records = 0, distinct = 0, duplicates = 0;
  bool in_order = true;  // per aggregate, first arrivals in increasing seq
};

// What reached the topic: every id once or more, and per aggregate, first arrivals in order.
arrival_check check_arrivals(const std::vector<testing::consumed_record>& records) {
  arrival_check out{.records = records.size()};
  std::set<std::string> seen;
  std::map<std::string, int> last_seq;
  for (const auto& r : records) {
    const auto ev = decode_event(r.value);
    REQUIRE(ev.ok());
    if (!seen.insert(ev.value().event_id()).second) {
      ++out.duplicates;
      continue;
    }
    const int seq = ev.value().payload().at("seq");
    auto [it, fresh] = last_seq.emplace(r.key, seq);
    if (!fresh) {
      if (seq < it->second) out.in_order = false;
      it->second = seq;
    }
  }
  out.distinct = seen.size();
  return out;
}

}  // namespace

TEST_CASE("the relay publishes what was stored, in order, as the mirror would, and marks it published") {
  for (const std::string backend : backends) {
    CAPTURE(backend);
    embedded_broker broker;
    broker.create_topic(placed, 3);
    auto m = std::make_shared<metrics>();
    auto store = testing::fresh_store(backend, "relay_basic", m);
    auto stored = append_orders(*store, 540);
    // Headers read from the store's columns and the envelope's metadata: with and without a
    // correlation id and a trace context, and a payload holding a "traceparent" key (not a header).
    for (int i = 540; i < 600; ++i) {
      event_fields fields{.event_type = "order.placed", .aggregate_type = "order", .aggregate_id = "a-" + std::to_string(i % 10),
                          .payload = {{"seq", i}}};
      if (i % 3 == 0) fields.correlation_id = "corr-" + std::to_string(i);
      if (i % 4 == 0) fields.metadata["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
      if (i % 5 == 0) fields.payload["traceparent"] = "in the payload";
      if (i % 7 == 0) fields.metadata["tenant"] = "acme";
      const std::vector<event> one{make_event(std::move(fields))};
      REQUIRE(store->append("order", one[0].aggregate_id(), eventbus::expected_version::any(), one).ok());
      stored.push_back(one[0]);
    }
    CHECK(store->backlog().value().events == 600);
    outbox_relay relay(store, producer_for(broker), {.batch_size = 128, .interval = 20ms, .metrics = m});
    relay.start();
    REQUIRE(wait_until([&] { return store->backlog().value().events == 0; }, 30s));
    relay.stop();
    CHECK(relay.stats().relayed == 600);
    CHECK(relay.stats().failed == 0);
    // Every relayed event's age (from its timestamp to Kafka's acknowledgement) is observed once.
    const auto scraped = prometheus::TextSerializer().Serialize(m->registry().Collect());
    CHECK(testing::sample_value(scraped, "eventbus_event_age_seconds_count", {{"stage", "relayed"}, {"event_type", "order.placed"}}) == 600.0);

    const auto records = read_topic(broker.bootstrap_servers(), placed, 600);
    REQUIRE(records.size() == 600);
    const auto arrived = check_arrivals(records);
    CHECK(arrived.distinct == 600);
    CHECK(arrived.duplicates == 0);
    CHECK(arrived.in_order);
    // The same record the direct mirror writes: key, value bytes and headers.
    std::map<std::string, const event*> by_id;
    for (const auto& ev : stored) by_id[ev.event_id()] = &ev;
    for (const auto& r : records) {
      const auto& ev = *by_id.at(r.headers.at("event_id"));
      CHECK(r.key == ev.aggregate_id());
      CHECK(r.value == encode_event(ev));
      std::map<std::string, std::string> expected{{"event_id", ev.event_id()}, {"event_type", "order.placed"},
                                                  {"aggregate_type", "order"}, {"content-type", "application/json"}};
      if (ev.correlation_id()) expected["correlation_id"] = *ev.correlation_id();
      if (auto tp = ev.metadata().find("traceparent"); tp != ev.metadata().end()) expected["traceparent"] = tp->second;
      CHECK(r.headers == expected);
    }
  }
}

TEST_CASE("Kafka down: the backlog grows in the store, and drains when Kafka is back") {
  for (const std::string backend : backends) {
    CAPTURE(backend);
    embedded_broker broker;
    broker.create_topic(placed, 2);
    auto store = testing::fresh_store(backend, "relay_outage");
    outbox_relay relay(store, producer_for(broker), {.batch_size = 100, .interval = 20ms});
    relay.start();
    append_orders(*store, 100);
    REQUIRE(wait_until([&] { return store->backlog().value().events == 0; }, 30s));
    broker.set_down();
    append_orders(*store, 300, 10, 100);
    // Produced and waiting (records never time out): nothing is marked, the backlog is all there.
    REQUIRE(wait_until([&] { return relay.stats().in_flight > 0; }, 30s));
    const auto during = store->backlog().value();
    CHECK(during.events == 300);
    CHECK(relay.stats().failed == 0);
    REQUIRE(during.oldest.has_value());
    broker.set_up();
    REQUIRE(wait_until([&] { return store->backlog().value().events == 0; }, 60s));
    relay.stop();
    const auto records = read_topic(broker.bootstrap_servers(), placed, 400, 30s);
    const auto arrived = check_arrivals(records);
    CHECK(arrived.distinct == 400);
    CHECK(arrived.in_order);
    MESSAGE(backend << ": " << arrived.duplicates << " records sent twice after the outage (at least once)");
  }
}

TEST_CASE("marks the store refuses: the events go again, and the backlog drains once marking works") {
  embedded_broker broker;
  broker.create_topic(placed, 1);  // one partition: the first records read are the first passes, whole
  const auto path = testing::fresh_sqlite_path("relay_marks_refused");
  auto store = open_sqlite_store({.path = path});
  append_orders(*store, 50);
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  sqlite3_busy_timeout(db, 10'000);  // the relay's marking transactions hold the write lock at times
  REQUIRE(sqlite3_exec(db,
                       "CREATE TRIGGER refuse_marks BEFORE DELETE ON eventbus_outbox "
                       "BEGIN SELECT RAISE(ABORT, 'marks refused by the test'); END",
                       nullptr, nullptr, nullptr) == SQLITE_OK);
  outbox_relay relay(store, producer_for(broker), {.batch_size = 20, .interval = 20ms});
  relay.start();
  // Acknowledged by Kafka but not marked: the pipeline starts again and sends them a second time.
  const auto twice = read_topic(broker.bootstrap_servers(), placed, 100, 30s);
  REQUIRE(twice.size() == 100);
  const auto sent = check_arrivals(twice);
  CHECK(sent.distinct == 50);
  CHECK(sent.duplicates == 50);
  CHECK(store->backlog().value().events == 50);
  CHECK(relay.stats().relayed == 0);
  REQUIRE(sqlite3_exec(db, "DROP TRIGGER refuse_marks", nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(db);
  REQUIRE(wait_until([&] { return store->backlog().value().events == 0; }, 60s));
  relay.stop();
  CHECK(relay.stats().relayed == 50);
}

TEST_CASE("a service SIGKILLed mid-stream while Kafka is down loses nothing: the restart sends it all") {
  embedded_broker broker;
  broker.create_topic(placed, 3);
  const auto path = testing::fresh_sqlite_path("relay_crash");
  (void)open_sqlite_store({.path = path});  // the tables exist before two processes race to make them
  const std::string ids_file = "relay_crash.ids";
  std::remove(ids_file.c_str());
  broker.set_down();
  {
    auto service = testing::spawn({EVENTBUS_STORE_PROCESS, "sqlite:" + path, broker.bootstrap_servers(), "append",
                                   "100000", ids_file},
                                  {}, false);
    // Killed while appending (each id in the file was stored: append returned first).
    REQUIRE(wait_until([&] {
      std::ifstream in(ids_file);
      return std::count(std::istreambuf_iterator<char>(in), {}, '\n') >= 300;
    }, 60s));
    CHECK(service.stop(SIGKILL) == -1);
  }
  std::vector<std::string> appended;
  {
    std::ifstream in(ids_file);
    for (std::string id; std::getline(in, id);) appended.push_back(id);
  }
  broker.set_up();
  auto restarted = testing::spawn({EVENTBUS_STORE_PROCESS, "sqlite:" + path, broker.bootstrap_servers(), "drain"}, {}, false);
  CHECK(restarted.stop(0) == 0);  // signal 0: just wait for it to drain and exit
  // Everything the store holds (the ids written, and maybe one stored just before the kill).
  std::size_t stored = 0;
  REQUIRE(open_sqlite_store({.path = path})->read_all({}, [&](const stored_event&) { return ++stored > 0; }).ok());
  const auto records = read_topic(broker.bootstrap_servers(), placed, stored, 30s);
  std::set<std::string> arrived;
  for (const auto& r : records) arrived.insert(r.headers.at("event_id"));
  std::size_t lost = 0;
  for (const auto& id : appended) lost += arrived.count(id) == 0 ? 1 : 0;
  CHECK(lost == 0);
  const auto check = check_arrivals(records);
  CHECK(check.in_order);
  MESSAGE("appended before the kill: " << appended.size() << ", in Kafka: " << check.distinct
                                       << " (one more may have been stored before its id was written), sent twice: "
                                       << check.duplicates);
  CHECK(check.distinct >= appended.size());
  CHECK(check.distinct <= appended.size() + 1);
}

TEST_CASE("two relays on one PostgreSQL: one relays, the other stands by and takes over when it stops") {
  embedded_broker broker;
  broker.create_topic(placed, 3);
  auto store_a = testing::fresh_store("postgresql", "two_relays");
  auto store_b = testing::same_store("postgresql", "two_relays");
  auto a = std::make_unique<outbox_relay>(store_a, producer_for(broker), relay_options{.interval = 20ms, .owner = "a"});
  outbox_relay b(store_b, producer_for(broker), {.interval = 20ms, .owner = "b"});
  a->start();
  REQUIRE(wait_until([&] { return a->stats().leading; }, 10s));
  b.start();
  append_orders(*store_a, 500);
  // The relay counts a batch once its mark has committed: the backlog can read 0 just before.
  REQUIRE(wait_until([&] {
    return store_a->backlog().value().events == 0 && a->stats().relayed + b.stats().relayed == 500;
  }, 30s));
  CHECK(a->stats().relayed == 500);
  CHECK(b.stats().relayed == 0);  // standing by
  CHECK_FALSE(b.stats().leading);

  a.reset();  // stops, giving the lease up
  append_orders(*store_b, 300, 10, 500);
  REQUIRE(wait_until([&] { return store_b->backlog().value().events == 0 && b.stats().relayed == 300; }, 30s));
  CHECK(b.stats().leading);
  CHECK(b.stats().relayed == 300);
  b.stop();
  const auto records = read_topic(broker.bootstrap_servers(), placed, 800, 30s);
  const auto arrived = check_arrivals(records);
  CHECK(arrived.distinct == 800);
  CHECK(arrived.duplicates == 0);  // steady state: each event relayed by one instance, once
  CHECK(arrived.in_order);
}

TEST_CASE("the backlog gauge is what the store holds, on the leader and on a standby, within an interval") {
  for (const std::string backend : backends) {
    CAPTURE(backend);
    embedded_broker broker;
    broker.create_topic(placed, 2);
    auto store = testing::fresh_store(backend, "relay_gauges");
    outbox_relay leader(store, producer_for(broker), {.interval = 20ms, .owner = "leader"});
    leader.start();
    REQUIRE(wait_until([&] { return leader.stats().leading; }));
    outbox_relay standby(testing::same_store(backend, "relay_gauges"), producer_for(broker), {.interval = 20ms, .owner = "standby"});
    standby.start();
    broker.set_down();
    append_orders(*store, 300);
    // Kafka down: nothing can be marked, and both instances say 300 are waiting.
    REQUIRE(wait_until([&] { return leader.stats().backlog == 300 && standby.stats().backlog == 300; }, 10s));
    CHECK_FALSE(standby.stats().leading);
    broker.set_up();
    REQUIRE(wait_until([&] { return leader.stats().backlog == 0 && standby.stats().backlog == 0; }, 60s));
    CHECK(store->backlog().value().events == 0);
    CHECK_FALSE(store->backlog().value().oldest.has_value());
    // Marking the same positions again counts nothing twice.
    REQUIRE(store->mark_published(std::vector<std::int64_t>{1, 2, 3}).ok());
    CHECK(store->backlog().value().events == 0);
  }
}

TEST_CASE("a record Kafka refuses for good is parked with its reason, and its aggregate's later events go on") {
  for (const std::string backend : backends) {
    CAPTURE(backend);
    embedded_broker broker;
    broker.create_topic(placed, 2);
    auto m = std::make_shared<metrics>();
    auto store = testing::fresh_store(backend, "relay_parks");
    const auto small = [&](int seq) {
      const std::vector<event> one{make_event({.event_type = "order.placed", .aggregate_type = "order", .aggregate_id = "a-1",
                                               .payload = {{"seq", seq}}})};
      REQUIRE(store->append("order", "a-1", eventbus::expected_version::any(), one).ok());
    };
    small(0);
    // Storable, but larger than this cluster takes (the relay's producer allows 20,000 bytes here).
    const std::vector<event> large{make_event({.event_type = "order.placed", .aggregate_type = "order", .aggregate_id = "a-1",
                                               .payload = {{"seq", 1}, {"blob", std::string(50'000, 'x')}}})};
    REQUIRE(store->append("order", "a-1", eventbus::expected_version::any(), large).ok());
    small(2);
    auto producer = producer_for(broker);
    producer.kafka.properties["message.max.bytes"] = "20000";
    outbox_relay relay(store, producer, {.interval = 20ms, .metrics = m});
    relay.start();
    REQUIRE(wait_until([&] { return store->backlog().value().events == 0; }, 30s));
    relay.stop();
    CHECK(relay.stats().parked == 1);
    CHECK(relay.stats().relayed == 2);
    const auto backlog = store->backlog().value();
    CHECK(backlog.parked == 1);
    const auto records = read_topic(broker.bootstrap_servers(), placed, 2);
    REQUIRE(records.size() == 2);
    const auto arrived = check_arrivals(records);
    CHECK(arrived.in_order);
    CHECK(decode_event(records[1].value).value().payload().at("seq") == 2);
    CHECK(testing::topic_record_count(broker.bootstrap_servers(), placed) == 2);  // sent once each, nothing resent
    const auto scraped = prometheus::TextSerializer().Serialize(m->registry().Collect());
    CHECK(scraped.find("eventbus_outbox_parked_events{store=\"" + backend + "\"} 1") != std::string::npos);
    // Parked, not lost: still stored, with the reason.
    std::size_t stored = 0;
    REQUIRE(store->read_all({}, [&](const stored_event&) { return ++stored > 0; }).ok());
    CHECK(stored == 3);
  }
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open("relay_parks.db", &db) == SQLITE_OK);
  sqlite3_stmt* reason = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "SELECT parked_reason FROM event_store WHERE parked_reason IS NOT NULL", -1, &reason, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(reason) == SQLITE_ROW);
  CHECK(std::string(reinterpret_cast<const char*>(sqlite3_column_text(reason, 0))).find("too large") != std::string::npos);
  sqlite3_finalize(reason);
  sqlite3_close(db);
}

TEST_CASE("the relay refuses a record timeout, and an aggregate's first deliveries stay in order through stalls and outages") {
  embedded_broker broker;
  broker.create_topic(placed, 3);
  auto store = testing::fresh_store("sqlite", "relay_stalls");
  // A record that times out lets later records of its aggregate overtake it: refused, named.
  auto with_timeout = producer_for(broker);
  with_timeout.kafka.properties["message.timeout.ms"] = "1000";
  CHECK_THROWS_WITH_AS(outbox_relay(store, with_timeout), doctest::Contains("message.timeout.ms"), exception);

  // The relay in a process of its own, stopped (SIGSTOP) for longer than a timeout would have
  // been, again and again, and Kafka down meanwhile, while events are appended.
  const std::string ids_file = "relay_stalls.ids";
  std::remove(ids_file.c_str());
  auto service = testing::spawn({EVENTBUS_STORE_PROCESS, "sqlite:relay_stalls.db", broker.bootstrap_servers(), "append",
                                 "3000", ids_file},
                                {}, false);
  const auto appended = [&] {
    std::ifstream in(ids_file);
    return std::count(std::istreambuf_iterator<char>(in), {}, '\n');
  };
  for (int stall = 0; stall < 5; ++stall) {
    const auto before = appended();
    REQUIRE(wait_until([&] { return appended() > before + 200 || appended() >= 3000; }, 30s));
    kill(service.pid, SIGSTOP);
    if (stall % 2 == 1) broker.set_down();
    std::this_thread::sleep_for(1300ms);  // the stall itself: what is tested is what happens after it
    kill(service.pid, SIGCONT);
    std::this_thread::sleep_for(300ms);
    broker.set_up();
  }
  REQUIRE(wait_until([&] { return appended() >= 3000 && store->backlog().value().events == 0; }, 60s));
  CHECK(service.stop() == 0);
  const auto total = testing::topic_record_count(broker.bootstrap_servers(), placed);  // duplicates included
  REQUIRE(total >= 3000);
  const auto records = read_topic(broker.bootstrap_servers(), placed, static_cast<std::size_t>(total), 30s);
  const auto arrived = check_arrivals(records);
  CHECK(arrived.distinct == 3000);
  CHECK(arrived.in_order);
  MESSAGE(arrived.duplicates << " records sent twice (at least once)");
}

TEST_CASE("the relay lease: a hung holder loses it after lease_ttl, and wall clocks play no part (both backends)") {
  // The children's wall clock runs an hour ahead (clock_ahead.cpp, preloaded; the sanitizer
  // runtimes must not insist on coming first). Each child's first line shows the clock it has.
  const char* asan = std::getenv("ASAN_OPTIONS");
  const std::map<std::string, std::string> env{
      {"LD_PRELOAD", EVENTBUS_CLOCK_AHEAD_LIBRARY},
      {"EVENTBUS_CLOCK_AHEAD_SECONDS", "3600"},
      {"ASAN_OPTIONS", std::string(asan ? asan : "") + ":verify_asan_link_order=0"}};
  const auto runs_an_hour_ahead = [](testing::child_process& child) {
    const std::string line = child.read_line();
    REQUIRE(line.starts_with("clock "));
    const auto here = std::chrono::duration_cast<std::chrono::seconds>(
        std::chrono::system_clock::now().time_since_epoch());
    const auto ahead = std::stoll(line.substr(6)) - here.count();
    CHECK(ahead > 3500);
    CHECK(ahead <= 3600);
  };
  constexpr auto ttl = 500ms;
  const std::string ttl_ms = std::to_string(ttl.count());
  for (const std::string backend : backends) {
    CAPTURE(backend);
    auto store = testing::fresh_store(backend, "lease_clocks");
    const std::string where =
        backend == "sqlite" ? "sqlite:lease_clocks.db" : "postgresql:" + testing::postgres_dsn_of("lease_clocks");

    // A leader whose wall clock runs an hour ahead takes the lease, then hangs (SIGSTOP: its
    // connection stays open). The standby takes over once the lease went unrenewed for ttl.
    auto leader = testing::spawn({EVENTBUS_STORE_PROCESS, where, "-", "lease", "ahead", ttl_ms}, env);
    runs_an_hour_ahead(leader);
    REQUIRE(leader.read_line() == "held");
    CHECK_FALSE(store->hold_relay_lease("standby", ttl).value());
    kill(leader.pid, SIGSTOP);
    const auto hung_at = std::chrono::steady_clock::now();
    REQUIRE(wait_until([&] { return store->hold_relay_lease("standby", ttl).value(); }, 10s));
    const auto waited = std::chrono::steady_clock::now() - hung_at;
    CHECK(waited >= ttl - 100ms);  // not before the lease went unrenewed for ttl (less a renewal interval)
    CHECK(waited < ttl + 3s);
    kill(leader.pid, SIGCONT);
    CHECK(leader.read_line() == "lost");  // woken, it finds the lease taken and stands by
    CHECK(leader.stop() == 0);

    // A standby whose wall clock runs an hour ahead never takes the lease from a live holder.
    auto standby = testing::spawn({EVENTBUS_STORE_PROCESS, where, "-", "lease", "ahead", ttl_ms}, env);
    runs_an_hour_ahead(standby);
    for (int i = 0; i < 40; ++i) {  // 4 lease ttls of renewals at a relay's pace
      REQUIRE(store->hold_relay_lease("standby", ttl).value());
      std::this_thread::sleep_for(50ms);
    }
    CHECK(standby.stop() == 0);
    CHECK(standby.read_line().empty());  // it never printed "held"
    store->release_relay_lease("standby");
  }
}

TEST_CASE("a dispatcher with a store stores first, then dispatches, and a refused event runs nothing") {
  embedded_broker broker;
  broker.create_topic(placed, 1);
  auto store = testing::fresh_store("sqlite", "dispatcher_store");
  dispatcher bus({.mode = dispatch_mode::caller_thread, .store = store});
  std::vector<std::int64_t> versions_seen;
  auto sub = bus.subscribe("order.placed", "projection", [&](const event& ev) {
    // The handler runs after the store: the event is already there.
    versions_seen.push_back(store->version_of("order", ev.aggregate_id()).value());
  });
  const auto ev = make_event({.event_type = "order.placed", .aggregate_type = "order", .aggregate_id = "o-1"});
  const auto published = bus.publish(ev);
  REQUIRE(published.accepted());
  const auto deliveries = published.wait();
  REQUIRE(deliveries.ok());
  REQUIRE(deliveries.value().size() == 1);
  CHECK(deliveries.value()[0].sink == "store");
  CHECK(deliveries.value()[0].offset >= 1);
  CHECK(versions_seen == std::vector<std::int64_t>{1});

  const auto too_big = make_event({.event_type = "order.placed", .aggregate_type = "order", .aggregate_id = "o-1",
                                   .payload = {{"blob", std::string(max_stored_event_bytes, 'x')}}});
  const auto refused = bus.publish(too_big);
  REQUIRE_FALSE(refused.accepted());
  CHECK(refused.rejection().code() == errc::invalid_event);
  CHECK(versions_seen.size() == 1);  // its handler never ran

  // And the relay takes it to Kafka.
  outbox_relay relay(store, producer_for(broker), {.interval = 20ms});
  relay.start();
  REQUIRE(wait_until([&] { return store->backlog().value().events == 0; }, 30s));
  const auto records = read_topic(broker.bootstrap_servers(), placed, 1);
  REQUIRE(records.size() == 1);
  CHECK(records[0].value == encode_event(ev));
}
