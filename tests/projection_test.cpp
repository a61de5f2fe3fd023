// Projections on both backends: catch up from the checkpoint, follow new appends (at once in the
// same process, by polling from another store object), resume after a stop, start over after a
// reset, stop at an event the handler keeps failing on, and never skip an event that PostgreSQL
// committed after a later position was read.

#include <doctest/doctest.h>

#include <libpq-fe.h>
#include <sqlite3.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "eventbus/store/projection.hpp"
#include "process_support.hpp"
#include "store_support.hpp"
#include "test_support.hpp"

using namespace eventbus;
using namespace std::chrono_literals;
using eventbus::testing::wait_until;

namespace {

const char* const backends[] = {"sqlite", "postgresql"};

event order_event(const std::string& type, const std::string& id, int seq) {
  return make_event({.event_type = type, .aggregate_type = "order", .aggregate_id = id, .payload = {{"seq", seq}}});
}

void append_orders(event_store& store, int count, const std::string& type = "order.placed", int first = 0) {
  for (int i = first; i < first + count; ++i) {
    const auto ev = order_event(type, "o-" + std::to_string(i % 5), i);
    REQUIRE(store.append("order", ev.aggregate_id(), expected_version::any(), ev).ok());
  }
}

// What a handler saw, from any thread.
struct seen_events {
  mutable std::mutex mu;
  std::vector<std::int64_t> positions;
  void add(const stored_event& e) {
    const std::lock_guard lock(mu);
    positions.push_back(e.position);
  }
  std::vector<std::int64_t> all() const {
    const std::lock_guard lock(mu);
    return positions;
  }
};

}  // namespace

TEST_CASE("a projection catches up, follows new appends, and resumes from its checkpoint after a stop") {
  for (const std::string backend : backends) {
    CAPTURE(backend);
    auto store = testing::fresh_store(backend, "projection_follow");
    append_orders(*store, 1200);  // more than two pages
    seen_events seen;
    {
      projection p(store, {.name = "totals", .filter = {.page_size = 500}}, [&](const stored_event& e) { seen.add(e); });
      p.start();
      REQUIRE(p.wait_until_caught_up(20s).ok());
      CHECK(seen.all().size() == 1200);
      append_orders(*store, 30, "order.paid", 1200);  // the same store object: wakes it at once
      REQUIRE(p.wait_until_caught_up(20s).ok());
      CHECK(p.status().state == projection_state::live);
      CHECK(p.status().handled == 1230);
      p.stop();
      CHECK(p.status().state == projection_state::stopped);
    }
    CHECK(store->load_checkpoint("totals").value() == store->last_position().value());
    // In store order, each once.
    const auto first_run = seen.all();
    CHECK(std::is_sorted(first_run.begin(), first_run.end()));
    CHECK(std::set<std::int64_t>(first_run.begin(), first_run.end()).size() == first_run.size());

    append_orders(*store, 10, "order.shipped", 2000);  // while it is stopped
    seen_events after_restart;
    projection again(store, {.name = "totals"}, [&](const stored_event& e) { after_restart.add(e); });
    again.start();
    REQUIRE(again.wait_until_caught_up(20s).ok());
    CHECK(after_restart.all().size() == 10);  // only what it had not handled
    again.stop();

    // A reset starts it over: every event again.
    REQUIRE(projection::reset(*store, "totals").ok());
    seen_events rebuilt;
    projection rebuild(store, {.name = "totals"}, [&](const stored_event& e) { rebuilt.add(e); });
    rebuild.start();
    REQUIRE(rebuild.wait_until_caught_up(20s).ok());
    CHECK(rebuilt.all().size() == 1240);
    rebuild.stop();
    const auto listed = store->checkpoints();
    REQUIRE(listed.ok());
    REQUIRE(listed->size() == 1);
    CHECK(listed->front().name == "totals");
    CHECK(listed->front().position == store->last_position().value());
  }
}

TEST_CASE("a projection follows appends made through another store object, and its filter") {
  for (const std::string backend : backends) {
    CAPTURE(backend);
    auto store = testing::fresh_store(backend, "projection_poll");
    auto elsewhere = testing::same_store(backend, "projection_poll");  // another process, in effect
    seen_events paid;
    projection p(store, {.name = "paid_only", .filter = {.event_type = "order.paid"}, .poll_interval = 20ms},
                 [&](const stored_event& e) {
                   CHECK(e.ev.event_type() == "order.paid");
                   paid.add(e);
                 });
    p.start();
    append_orders(*elsewhere, 20, "order.placed");
    append_orders(*elsewhere, 7, "order.paid", 100);
    CHECK(wait_until([&] { return paid.all().size() == 7; }, 20s));
    REQUIRE(p.wait_until_caught_up(20s).ok());
    CHECK(p.status().position == store->last_position().value());  // the filtered-out ones count as passed
    CHECK(p.status().lag == 0);
  }
}

TEST_CASE("a handler that keeps failing stops the projection at that event, never skipping it") {
  for (const std::string backend : backends) {
    CAPTURE(backend);
    auto store = testing::fresh_store(backend, "projection_fail");
    append_orders(*store, 10);
    std::atomic<int> calls_on_bad{0};
    seen_events seen;
    const std::int64_t bad = 6;
    projection p(store, {.name = "fragile", .retry = {.max_attempts = 3, .initial_backoff = 1ms, .max_backoff = 5ms}},
                 [&](const stored_event& e) {
                   if (e.position == bad) {
                     ++calls_on_bad;
                     throw std::runtime_error("the read model refused it");
                   }
                   seen.add(e);
                 });
    p.start();
    const auto waited = p.wait_until_caught_up(20s);
    REQUIRE_FALSE(waited.ok());
    CHECK(waited.error().message().find("position 6") != std::string::npos);
    CHECK(waited.error().message().find("the read model refused it") != std::string::npos);
    CHECK(calls_on_bad.load() == 3);
    CHECK(p.status().state == projection_state::failed);
    CHECK(p.status().position == bad - 1);
    CHECK(seen.all().size() == 5);
    p.stop();
    CHECK(store->load_checkpoint("fragile").value() == bad - 1);  // the next start begins with it
  }
}

TEST_CASE("projection options are checked, naming the option") {
  auto store = testing::fresh_store("sqlite", "projection_options");
  const auto field_of = [&](projection_options o) {
    try {
      projection p(store, std::move(o), [](const stored_event&) {});
    } catch (const exception& e) {
      return e.error().field();
    }
    return std::string();
  };
  CHECK(field_of({}) == "name");
  CHECK(field_of({.name = "x", .filter = {.after_position = 5}}) == "filter");
  CHECK(field_of({.name = "x", .poll_interval = 0ms}) == "poll_interval");
  CHECK(field_of({.name = "x", .retry = {.max_attempts = 0}}) == "retry.max_attempts");
  CHECK(field_of({.name = "x"}).empty());
}

TEST_CASE("postgresql: a projection following concurrent appenders sees every event exactly once, in order") {
  auto store = testing::fresh_store("postgresql", "projection_race");
  seen_events seen;
  projection p(store, {.name = "race", .filter = {.page_size = 50}, .poll_interval = 5ms}, [&](const stored_event& e) { seen.add(e); });
  p.start();
  std::vector<std::thread> appenders;
  std::vector<std::shared_ptr<outbox_store>> stores;
  for (int t = 0; t < 4; ++t) stores.push_back(testing::same_store("postgresql", "projection_race"));
  for (int t = 0; t < 4; ++t)
    appenders.emplace_back([&, t] {
      for (int i = 0; i < 250; ++i) {
        const auto ev = order_event("order.placed", "t" + std::to_string(t) + "-" + std::to_string(i % 10), i);
        REQUIRE(stores[static_cast<std::size_t>(t)]->append("order", ev.aggregate_id(), expected_version::any(), ev).ok());
      }
    });
  for (auto& a : appenders) a.join();
  REQUIRE(p.wait_until_caught_up(30s).ok());
  const auto positions = seen.all();
  CHECK(positions.size() == 1000);
  CHECK(std::is_sorted(positions.begin(), positions.end()));
  CHECK(std::set<std::int64_t>(positions.begin(), positions.end()).size() == 1000);
}

TEST_CASE("a transactional projection SIGKILLed twice hands the handler each event exactly once") {
  for (const std::string backend : backends) {
    CAPTURE(backend);
    const std::string name = "projection_exactly_once_" + backend;
    auto store = testing::fresh_store(backend, name);
    // The read model, in the store's database: one row per event handled. Plain SQL, outside eventbus.
    const auto sql = [&](const std::string& text) -> std::int64_t {  // a number, 0 for a command, -1 on failure
      std::int64_t n = -1;
      if (backend == "sqlite") {
        sqlite3* db = nullptr;
        sqlite3_open((name + ".db").c_str(), &db);
        sqlite3_busy_timeout(db, 5000);
        sqlite3_stmt* q = nullptr;
        if (sqlite3_prepare_v2(db, text.c_str(), -1, &q, nullptr) == SQLITE_OK) {
          const int rc = sqlite3_step(q);
          n = rc == SQLITE_ROW ? sqlite3_column_int64(q, 0) : rc == SQLITE_DONE ? 0 : -1;
        }
        sqlite3_finalize(q);
        sqlite3_close(db);
      } else {
        PGconn* conn = PQconnectdb(testing::postgres_dsn_of(name).c_str());
        PGresult* r = PQexec(conn, text.c_str());
        if (PQresultStatus(r) == PGRES_TUPLES_OK) n = std::stoll(PQgetvalue(r, 0, 0));
        if (PQresultStatus(r) == PGRES_COMMAND_OK) n = 0;
        PQclear(r);
        PQfinish(conn);
      }
      return n;
    };
    REQUIRE(sql("CREATE TABLE seen (position BIGINT NOT NULL)") == 0);
    append_orders(*store, 1500);
    const std::string where = backend == "sqlite" ? "sqlite:" + name + ".db" : "postgresql:" + testing::postgres_dsn_of(name);
    for (const std::int64_t kill_at : {300, 900}) {
      auto p = testing::spawn({EVENTBUS_PROJECTION_PROCESS, where}, {}, false);
      CHECK(wait_until([&] { return sql("SELECT COUNT(*) FROM seen") >= kill_at; }, 30s));
      CHECK(p.stop(SIGKILL) == -1);
    }
    auto last = testing::spawn({EVENTBUS_PROJECTION_PROCESS, where});
    CHECK(wait_until([&] { return sql("SELECT COUNT(*) FROM seen") >= 1500; }, 30s));
    // The killed ones may have copied everything already: a SIGTERM before the last one ran its
    // main (and installed its handler) would kill it instead of stopping it.
    CHECK(last.read_line() == "running");
    CHECK(last.stop(SIGTERM) == 0);
    CHECK(sql("SELECT COUNT(*) FROM seen") == 1500);
    CHECK(sql("SELECT COUNT(DISTINCT position) FROM seen") == 1500);
    CHECK(store->load_checkpoint("seen").value() == store->last_position().value());
  }
}
