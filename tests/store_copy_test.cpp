// Moving a store between backends: every event in order with its version and outbox state, the
// projections' checkpoints moved with their events, resumable in steps, and a relay on the target
// that sends exactly what the source's relay had not.

#include <doctest/doctest.h>

#include <map>
#include <sstream>
#include <set>
#include <vector>

#include "eventbus/kafka/embedded_broker.hpp"
#include "eventbus/store/outbox_relay.hpp"
#include "eventbus/store/projection.hpp"
#include "eventbus/store/store_copy.hpp"
#include "kafka_test_support.hpp"
#include "store_support.hpp"
#include "test_support.hpp"

using namespace eventbus;
using namespace std::chrono_literals;

namespace {

struct row {
  std::string id, type, aggregate;
  std::int64_t version = 0;
  bool operator==(const row&) const = default;
};

std::vector<row> rows_of(event_store& store) {
  std::vector<row> out;
  REQUIRE(store.read_all({}, [&](const stored_event& e) {
    out.push_back({e.ev.event_id(), e.ev.event_type(), e.ev.aggregate_id(), e.version});
    return true;
  }).ok());
  return out;
}

// 300 events on 10 aggregates; the first 100 published, one of the rest parked; two checkpoints.
std::vector<event> fill_half_relayed(outbox_store& store) {
  std::vector<event> all;
  for (int i = 0; i < 300; ++i) {
    const auto ev = make_event({.event_type = i % 4 == 0 ? "order.paid" : "order.placed", .aggregate_type = "order",
                                .aggregate_id = "o-" + std::to_string(i % 10), .payload = {{"seq", i}}});
    REQUIRE(store.append("order", ev.aggregate_id(), expected_version::any(), ev).ok());
    all.push_back(ev);
  }
  std::vector<std::int64_t> published;
  for (std::int64_t p = 1; p <= 100; ++p) published.push_back(p);
  REQUIRE(store.mark_published(published).ok());
  const std::int64_t parked[] = {150};
  REQUIRE(store.park(parked, "too large for the cluster").ok());
  REQUIRE(store.save_checkpoint("orders_by_status", 120).ok());
  REQUIRE(store.save_checkpoint("not_started", 0).ok());
  return all;
}

}  // namespace

TEST_CASE("a store copied from SQLite to PostgreSQL and back keeps every event, its outbox state and the checkpoints") {
  auto source = testing::fresh_store("sqlite", "copy_source");
  const auto events = fill_half_relayed(*source);
  auto target = testing::fresh_store("postgresql", "copy_target");

  // In steps, as an interrupted copy goes on: 120 now, the rest when run again.
  const auto first = copy_store(*source, *target, {.batch_size = 50, .limit = 120});
  REQUIRE_MESSAGE(first.ok(), first.error().to_string());
  CHECK(first->events == 120);
  CHECK_FALSE(first->complete);
  CHECK(target->load_checkpoint("orders_by_status").value() == 0);  // moved only once every event is there
  std::uint64_t reported = 0;
  const auto rest = copy_store(*source, *target, {.batch_size = 64, .progress = [&](const store_copy_summary& s) { reported = s.events; }});
  REQUIRE_MESSAGE(rest.ok(), rest.error().to_string());
  CHECK(rest->events == 180);
  CHECK(reported == 180);
  CHECK(rest->complete);
  CHECK(rest->checkpoints == 2);

  CHECK(rows_of(*target) == rows_of(*source));
  CHECK(target->backlog()->events == source->backlog()->events);  // 199: what the source relay had not sent
  CHECK(target->backlog()->parked == 1);
  CHECK(target->version_of("order", "o-3").value() == 30);
  // The checkpoint names the same event in the target's positions.
  const auto moved = target->load_checkpoint("orders_by_status").value();
  std::string at_source, at_target;
  REQUIRE(source->read_all({.after_position = 119}, [&](const stored_event& e) { at_source = e.ev.event_id(); return false; }).ok());
  REQUIRE(target->read_all({.after_position = moved - 1}, [&](const stored_event& e) { at_target = e.ev.event_id(); return false; }).ok());
  CHECK(at_source == at_target);
  CHECK(target->load_checkpoint("not_started").value() == 0);

  // A projection on the target goes on from there: only the events after the 120th.
  std::set<std::string> handled;
  projection follow(target, {.name = "orders_by_status"}, [&](const stored_event& e) { handled.insert(e.ev.event_id()); });
  follow.start();
  REQUIRE(follow.wait_until_caught_up(20s).ok());
  follow.stop();
  CHECK(handled.size() == 180);
  CHECK(handled.count(events[119].event_id()) == 0);
  CHECK(handled.count(events[120].event_id()) == 1);

  // Into a store that holds events: refused, naming why; the same store: refused.
  const auto again = copy_store(*source, *testing::fresh_store("sqlite", "copy_busy", nullptr), {});
  CHECK(again.ok());  // an empty one is fine
  auto busy = testing::fresh_store("sqlite", "copy_busy2");
  (void)fill_half_relayed(*busy);
  const auto refused = copy_store(*source, *busy);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().message().find("already holds events") != std::string::npos);
  CHECK_FALSE(copy_store(*source, *source).ok());

  // And back, PostgreSQL to SQLite.
  auto back = testing::fresh_store("sqlite", "copy_back");
  const auto returned = copy_store(*target, *back);
  REQUIRE(returned.ok());
  CHECK(returned->complete);
  CHECK(rows_of(*back) == rows_of(*source));
  CHECK(back->backlog()->events == source->backlog()->events);
  // The projection above took its checkpoint to the end; the copy keeps it there.
  CHECK(back->load_checkpoint("orders_by_status").value() == back->last_position().value());
}

TEST_CASE("a relay on the copied store sends what the source's relay had not, and nothing it had") {
  auto source = testing::fresh_store("sqlite", "copy_relay_source");
  const auto events = fill_half_relayed(*source);
  auto target = testing::fresh_store("postgresql", "copy_relay_target");
  REQUIRE(copy_store(*source, *target).ok());

  embedded_broker broker;
  outbox_relay relay(target, producer_options{.kafka = {.bootstrap_servers = broker.bootstrap_servers(), .properties = {{"log_level", "0"}}}},
                     {.interval = 20ms});
  relay.start();
  CHECK(testing::wait_until([&] { return target->backlog()->events == 0; }, 30s));
  relay.stop();
  std::set<std::string> expected;
  std::map<std::string, std::size_t> per_topic;
  for (std::size_t i = 100; i < events.size(); ++i)
    if (i != 149) {  // position 150 was parked
      expected.insert(events[i].event_id());
      ++per_topic["app.order." + events[i].event_type()];
    }
  std::set<std::string> sent;
  for (const auto& [topic, count] : per_topic) {
    CHECK(testing::topic_record_count(broker.bootstrap_servers(), topic) == static_cast<std::int64_t>(count));
    for (const auto& r : testing::read_topic(broker.bootstrap_servers(), topic, count, 10s)) sent.insert(r.headers.at("event_id"));
  }
  CHECK(sent == expected);
}

TEST_CASE("an export read back by import is the same store (events, outbox state, checkpoints), resumable, bad lines named") {
  auto source = testing::fresh_store("sqlite", "export_source");
  (void)fill_half_relayed(*source);
  std::stringstream backup;
  const auto written = export_store(*source, backup);
  REQUIRE(written.ok());
  CHECK(written.value() == 300);
  const std::string text = backup.str();

  auto target = testing::fresh_store("postgresql", "import_target");
  std::istringstream part(text);
  const auto first = import_store(part, *target, {.batch_size = 40, .limit = 100});
  REQUIRE_MESSAGE(first.ok(), first.error().to_string());
  CHECK(first->events == 100);
  CHECK_FALSE(first->complete);
  std::istringstream whole(text);  // the same file again: lines already imported are skipped
  const auto rest = import_store(whole, *target);
  REQUIRE_MESSAGE(rest.ok(), rest.error().to_string());
  CHECK(rest->events == 200);
  CHECK(rest->complete);
  CHECK(rest->checkpoints == 2);
  CHECK(rows_of(*target) == rows_of(*source));
  CHECK(target->backlog()->events == source->backlog()->events);
  CHECK(target->backlog()->parked == 1);
  const auto moved = target->load_checkpoint("orders_by_status").value();
  std::string at_source, at_target;
  REQUIRE(source->read_all({.after_position = 119}, [&](const stored_event& e) { at_source = e.ev.event_id(); return false; }).ok());
  REQUIRE(target->read_all({.after_position = moved - 1}, [&](const stored_event& e) { at_target = e.ev.event_id(); return false; }).ok());
  CHECK(at_source == at_target);

  // Not an export: the line is named, nothing of it stored.
  auto other = testing::fresh_store("sqlite", "import_bad");
  std::istringstream broken(text.substr(0, text.find('\n', text.find("envelope")) + 1) + "{\"position\": 9999, \"version\": 1}\n");
  const auto refused = import_store(broken, *other);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().field().starts_with("line "));
  std::istringstream not_json("hello\n");
  CHECK(import_store(not_json, *testing::fresh_store("sqlite", "import_bad2")).error().field() == "line 1");
}
