// Upcasters: three schema versions of one event type, stored in a SQLite file as versions 1, 2
// and 3, reach code written for version 3 as version 3 wherever typed events are read (payload_as,
// a replay through a dispatcher, an aggregate, a worker); a version with no path is an error
// naming the versions, a `validation` dead letter in a worker; bad registrations are refused; the
// registry may be written while other threads read through it.

#include <doctest/doctest.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "eventbus/dispatcher.hpp"
#include "eventbus/kafka/embedded_broker.hpp"
#include "eventbus/kafka/kafka_sink.hpp"
#include "eventbus/kafka/worker.hpp"
#include "eventbus/store/aggregate.hpp"
#include "eventbus/store/sqlite_store.hpp"
#include "eventbus/store/store_replay.hpp"
#include "eventbus/testing.hpp"
#include "eventbus/upcaster.hpp"
#include "kafka_test_support.hpp"
#include "test_support.hpp"
#include "worker_test_support.hpp"

using namespace eventbus;
using namespace std::chrono_literals;

// The event types in a named namespace: their JSON functions are not all used here, and in an
// anonymous one clang would say so.
namespace upcaster_test_types {

// Version 1 was {"name"}; version 2 renamed it to "full_name"; version 3 added "tier" ("basic"
// for every member who joined before tiers existed).
struct member_joined {
  static constexpr std::string_view event_type = "member.joined";
  static constexpr std::string_view aggregate_type = "member";
  static constexpr int version = 3;
  std::string full_name;
  std::string tier;
  friend bool operator==(const member_joined&, const member_joined&) = default;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(member_joined, full_name, tier)

// Registered as a service registers them: static objects in the event type's .cpp.
const upcaster joined_v1{"member.joined", 1, [](nlohmann::json p) {
                           p["full_name"] = p.at("name");
                           p.erase("name");
                           return p;
                         }};
const upcaster joined_v2{"member.joined", 2, [](nlohmann::json p) {
                           p["tier"] = "basic";
                           return p;
                         }};

// A type whose step from 2 to 3 was never written.
struct member_left {
  static constexpr std::string_view event_type = "member.left";
  static constexpr std::string_view aggregate_type = "member";
  static constexpr int version = 3;
  std::string reason;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(member_left, reason)
const upcaster left_v1{"member.left", 1, [](nlohmann::json p) { return p; }};

// Types whose only step fails: one throws on a payload it cannot read, one returns no object.
struct member_moved {
  static constexpr std::string_view event_type = "member.moved";
  static constexpr std::string_view aggregate_type = "member";
  static constexpr int version = 2;
  std::string city;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(member_moved, city)
const upcaster moved_v1{"member.moved", 1, [](nlohmann::json p) {
                          return nlohmann::json{{"city", p.at("town")}};
                        }};
const upcaster paused_v1{"member.paused", 1, [](nlohmann::json) { return nlohmann::json::array(); }};
const upcaster suspended_v1{"member.suspended", 1, [](nlohmann::json) -> nlohmann::json { throw 42; }};

}  // namespace upcaster_test_types

using namespace upcaster_test_types;

namespace {

event joined(int version, nlohmann::json payload, std::string id = "m-1") {
  return make_event({.event_type = "member.joined", .aggregate_type = "member", .aggregate_id = std::move(id),
                     .payload = std::move(payload), .version = version});
}

// The history as three writers of three releases stored it.
std::vector<event> history() {
  return {joined(1, {{"name", "Ada"}}), joined(2, {{"full_name", "Grace"}}),
          joined(3, {{"full_name", "Edsger"}, {"tier", "gold"}})};
}

const std::vector<member_joined> as_v3{{"Ada", "basic"}, {"Grace", "basic"}, {"Edsger", "gold"}};

std::shared_ptr<outbox_store> stored_history(const std::string& name) {
  const std::string path = name + ".db";
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);
  auto store = open_sqlite_store({.path = path});
  const auto events = history();
  REQUIRE(store->append("member", "m-1", expected_version::none(), std::span<const event>(events)).ok());
  return store;
}

std::vector<event> loaded(event_store& store) {
  std::vector<event> out;
  REQUIRE(store.load("member", "m-1", 1, [&](const stored_event& e) {
                 out.push_back(e.ev);
                 return true;
               }).ok());
  return out;
}

// A roster folded from member_joined events: what an aggregate written for version 3 sees.
struct roster {
  static constexpr std::string_view aggregate_type = "member";
  using events = event_types<member_joined>;
  std::vector<member_joined> members;
  void apply(const member_joined& e) { members.push_back(e); }
};

error refusal(const std::function<void()>& registration) {
  try {
    registration();
  } catch (const eventbus::exception& e) {
    return e.error();
  }
  FAIL("the registration was accepted");
  return error(errc::invalid_argument, "unreachable");
}

bool mentions(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("payload_as reads versions 1, 2 and 3 stored in SQLite as the version 3 struct") {
  auto store = stored_history("upcaster_payload_as");
  const auto events = loaded(*store);
  REQUIRE(events.size() == 3);
  std::vector<member_joined> read;
  for (std::size_t i = 0; i < events.size(); ++i) {
    CHECK(events[i].version() == static_cast<int>(i) + 1);  // the store keeps what was written
    auto value = payload_as<member_joined>(events[i]);
    if (!value) FAIL(value.error().to_string());
    read.push_back(*value);
  }
  CHECK(read == as_v3);
  // The payload itself is untouched: an upcast is a reading, not a rewrite.
  CHECK(events[0].payload() == nlohmann::json{{"name", "Ada"}});

  // One step at a time: version 1 read as version 2 has been through the first step only.
  auto at_2 = payload_at_version(events[0], 2);
  REQUIRE(at_2.ok());
  CHECK(*at_2 == nlohmann::json{{"full_name", "Ada"}});
  CHECK(payload_at_version(events[2], 3).value() == events[2].payload());
}

TEST_CASE("a replay through a dispatcher hands a typed handler for version 3 three version 3 values") {
  auto store = stored_history("upcaster_replay");
  dispatcher bus({.mode = dispatch_mode::caller_thread});
  std::vector<member_joined> seen;
  std::vector<int> envelope_versions;
  auto sub = bus.subscribe<member_joined>("roster", [&](const member_joined& m, const event& ev) {
    seen.push_back(m);
    envelope_versions.push_back(ev.version());
  });
  auto done = replay_to_handlers(*store, bus, {.filter = {.aggregate_type = "member"}});
  REQUIRE(done.ok());
  CHECK(done->events == 3);
  CHECK(done->handler_failures == 0);
  CHECK(seen == as_v3);
  CHECK(envelope_versions == std::vector<int>{1, 2, 3});  // the handler can still tell what was stored
}

TEST_CASE("an aggregate loads a history of old versions through the upcasters") {
  auto store = stored_history("upcaster_aggregate");
  auto r = load_aggregate<roster>(*store, "m-1");
  if (!r) FAIL(r.error().to_string());
  CHECK(r->version() == 3);
  CHECK(r->state().members == as_v3);
}

TEST_CASE("a version with no path is payload_mismatch naming the versions and the missing step") {
  const auto left = [](int version) {
    return make_event({.event_type = "member.left", .aggregate_type = "member", .aggregate_id = "m-1",
                       .payload = {{"reason", "moved away"}}, .version = version});
  };
  for (const int stored : {1, 2}) {
    CAPTURE(stored);
    auto value = payload_as<member_left>(left(stored));
    REQUIRE_FALSE(value.ok());
    CHECK(value.error().code() == errc::payload_mismatch);
    CHECK(value.error().field() == "version");
    const std::string why = value.error().message();
    CAPTURE(why);
    CHECK(mentions(why, "'member.left'"));
    CHECK(mentions(why, "stored at version " + std::to_string(stored)));
    CHECK(mentions(why, "read as version 3"));
    CHECK(mentions(why, "no upcaster from version 2 to 3"));
    CHECK(mentions(why, "from versions: 1)"));
  }
  CHECK(payload_as<member_left>(left(3)).value().reason == "moved away");

  // Newer than the struct: upcasters only go up.
  auto newer = payload_as<member_joined>(joined(4, {{"full_name", "Ada"}, {"tier", "gold"}, {"since", 2030}}));
  REQUIRE_FALSE(newer.ok());
  CHECK(newer.error().code() == errc::payload_mismatch);
  CHECK(newer.error().field() == "version");
  CHECK(mentions(newer.error().message(), "stored at version 4"));
  CHECK(mentions(newer.error().message(), "read as version 3"));

  // A type with no upcaster at all.
  auto none = payload_at_version(make_event({.event_type = "member.banned", .aggregate_type = "member",
                                             .aggregate_id = "m-1", .version = 1}),
                                 2);
  REQUIRE_FALSE(none.ok());
  CHECK(none.error().field() == "version");
  CHECK(mentions(none.error().message(),
                 "no upcaster from version 1 to 2 is registered (steps registered from versions: none)"));

  // A dispatcher counts such a call as a failed one.
  dispatcher bus({.mode = dispatch_mode::caller_thread});
  auto sub = bus.subscribe<member_left>("goodbye", [](const member_left&) {});
  CHECK(bus.run_handlers(left(1)).failures == 1);
}

TEST_CASE("a step that throws or returns no object fails the read naming the step") {
  auto moved = payload_as<member_moved>(make_event({.event_type = "member.moved", .aggregate_type = "member",
                                                    .aggregate_id = "m-1", .payload = {{"street", "Main"}}}));
  REQUIRE_FALSE(moved.ok());
  CHECK(moved.error().code() == errc::payload_mismatch);
  CHECK(moved.error().field() == "payload");
  CHECK(mentions(moved.error().message(), "upcaster of 'member.moved' from version 1 to 2 failed"));
  CHECK(mentions(moved.error().message(), "town"));  // nlohmann's "key 'town' not found"

  auto paused = payload_at_version(
      make_event({.event_type = "member.paused", .aggregate_type = "member", .aggregate_id = "m-1"}), 2);
  REQUIRE_FALSE(paused.ok());
  CHECK(paused.error().field() == "payload");
  CHECK(mentions(paused.error().message(), "returned a JSON array, not an object"));

  // Not even a std::exception: still a result, never an escape.
  const auto banned_event = make_event({.event_type = "member.suspended", .aggregate_type = "member", .aggregate_id = "m-1"});
  auto banned = payload_at_version(banned_event, 2);
  REQUIRE_FALSE(banned.ok());
  CHECK(banned.error().field() == "payload");
  CHECK(mentions(banned.error().message(), "not derived from std::exception"));
  CHECK(mentions(banned.error().message(), banned_event.event_id()));

  // A step's output that does not fit the struct names the upcast.
  auto misfit = payload_as<member_moved>(make_event({.event_type = "member.moved", .aggregate_type = "member",
                                                     .aggregate_id = "m-1", .payload = {{"town", 7}}}));
  REQUIRE_FALSE(misfit.ok());
  CHECK(misfit.error().field() == "payload");
  CHECK(mentions(misfit.error().message(), "(upcast from version 1 to 2) does not decode"));
}

TEST_CASE("bad registrations are refused naming the problem, and the first step of a pair stays") {
  const upcaster_fn keep = [](nlohmann::json p) { return p; };
  const auto empty_type = refusal([&] { register_upcaster("", 1, keep); });
  CHECK(empty_type.code() == errc::invalid_argument);
  CHECK(empty_type.field() == "event_type");
  CHECK(mentions(empty_type.message(), "needs the event type"));

  const auto bad_type = refusal([&] { register_upcaster("Member.Joined", 1, keep); });
  CHECK(bad_type.field() == "event_type");
  CHECK(mentions(bad_type.message(), "'Member.Joined' is not dotted lower case"));

  const auto zero = refusal([&] { register_upcaster("member.joined", 0, keep); });
  CHECK(zero.code() == errc::invalid_argument);
  CHECK(zero.field() == "from_version");
  CHECK(mentions(zero.message(), ">= 1, got 0"));

  const auto no_fn = refusal([] { register_upcaster("member.joined", 5, upcaster_fn{}); });
  CHECK(no_fn.field() == "fn");
  CHECK(mentions(no_fn.message(), "from version 5 is an empty function"));

  const auto twice = refusal([] {
    register_upcaster("member.joined", 1, [](nlohmann::json) { return nlohmann::json{{"full_name", "someone else"}}; });
  });
  CHECK(twice.code() == errc::invalid_argument);
  CHECK(twice.field() == "from_version");
  CHECK(mentions(twice.message(), "'member.joined' from version 1 to 2 is already registered"));
  CHECK(payload_as<member_joined>(joined(1, {{"name", "Ada"}})).value() == member_joined{"Ada", "basic"});
}

TEST_CASE("reads of old versions on four threads while another thread registers steps all come out upcast") {
  const auto v1 = joined(1, {{"name", "Ada"}});
  std::atomic<bool> go{false};
  std::atomic<int> right{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 4; ++t)
    readers.emplace_back([&] {
      while (!go.load()) std::this_thread::yield();
      for (int i = 0; i < 2'000; ++i)
        if (auto m = payload_as<member_joined>(v1); m && *m == member_joined{"Ada", "basic"}) right.fetch_add(1);
    });
  go.store(true);
  // Steps of another type, registered while the readers look theirs up: the registry's writes.
  for (int from = 1; from <= 200; ++from) register_upcaster("member.noted", from, [](nlohmann::json p) { return p; });
  for (auto& reader : readers) reader.join();
  CHECK(right.load() == 8'000);
  const auto noted = make_event({.event_type = "member.noted", .aggregate_type = "member", .aggregate_id = "m-1",
                                 .payload = {{"note", "hi"}}, .version = 1});
  CHECK(payload_at_version(noted, 201).value() == nlohmann::json{{"note", "hi"}});
}

TEST_CASE("run_handler reports a version with no path as a validation dead letter after one attempt") {
  const auto handler = make_typed_handler<member_joined>([](const member_joined&) {});
  const auto report = eventbus::testing::run_handler(handler, joined(4, {{"full_name", "Ada"}}),
                                                     {.retry = {.max_attempts = 5}});
  CHECK(report.result == attempt_result::dead_letter);
  CHECK(report.dead_letter_reason == "validation");
  CHECK(report.attempts == 1);
  REQUIRE(report.errors.size() == 1);
  CHECK(mentions(report.errors[0], "stored at version 4"));
  // An old version with a path is handled like a current one.
  CHECK(eventbus::testing::run_handler(handler, joined(1, {{"name", "Ada"}})).succeeded());
}

TEST_CASE("a worker hands old versions upcast and dead-letters one with no path, reason validation, no retry") {
  constexpr const char* topic = "app.member.member.joined";
  embedded_broker broker;
  broker.create_topic(topic, 1);
  {
    kafka_sink sink({.kafka = {.bootstrap_servers = broker.bootstrap_servers(), .properties = {{"log_level", "3"}}}});
    for (const auto& ev : {joined(1, {{"name", "Ada"}}), joined(4, {{"full_name", "Ada"}, {"since", 2030}}),
                           joined(3, {{"full_name", "Edsger"}, {"tier", "gold"}})})
      REQUIRE(sink.accept(ev).get().ok());
  }
  worker w({.kafka = eventbus::testing::mock_group_kafka(broker),
            .group_id = "g-upcast",
            .topics = {topic},
            .retry = {.max_attempts = 3, .initial_backoff = 10ms, .max_backoff = 50ms, .jitter = 0.0},
            .commit_interval = 100ms});
  std::mutex mu;
  std::vector<member_joined> handled;
  auto sub = w.subscribe<member_joined>("roster", [&](const member_joined& m) {
    const std::lock_guard lock(mu);
    handled.push_back(m);
  });
  w.start();
  REQUIRE(eventbus::testing::wait_until([&] { return w.stats().dead_letters == 1; }, 30s));
  REQUIRE(eventbus::testing::wait_until(
      [&] { return eventbus::testing::committed_offset(broker.bootstrap_servers(), "g-upcast", topic, 0) == 3; }, 30s));
  w.stop();
  CHECK(w.stats().retries == 0);
  {
    const std::lock_guard lock(mu);
    CHECK(handled == std::vector<member_joined>{{"Ada", "basic"}, {"Edsger", "gold"}});
  }
  const auto dead = eventbus::testing::read_topic(broker.bootstrap_servers(), std::string(topic) + ".dlq", 1);
  REQUIRE(dead.size() == 1);
  CHECK(dead[0].headers.at("x-eventbus-dlq-reason") == "validation");
  CHECK(dead[0].headers.at("x-eventbus-dlq-handler") == "roster");
  CHECK(dead[0].headers.at("x-eventbus-dlq-attempts") == "1");
  const std::string why = dead[0].headers.at("x-eventbus-dlq-error");
  CAPTURE(why);
  CHECK(mentions(why, "stored at version 4"));
  CHECK(mentions(why, "read as version 3"));
}
