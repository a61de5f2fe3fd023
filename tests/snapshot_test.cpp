// Aggregate snapshots on both backends: a load starts from the newest snapshot and reads only the
// events after it; commands take them every N versions, take_snapshot on demand; a snapshot of
// another schema version, or one that does not decode, is ignored (rebuilt, counted, logged); a
// save that fails does not fail the command; read-only stores refuse them; commands after a
// snapshot stay correct under conflicts; copy_store carries them over.

#include <doctest/doctest.h>
#include <libpq-fe.h>
#include <prometheus/registry.h>
#include <sqlite3.h>

#include <atomic>
#include <barrier>
#include <climits>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "counter_aggregate.hpp"
#include "eventbus/log.hpp"
#include "eventbus/metrics.hpp"
#include "eventbus/store/aggregate.hpp"
#include "eventbus/store/store_copy.hpp"
#include "store_support.hpp"

using namespace eventbus;
using eventbus::testing::counted;
using eventbus::testing::counter_reset;

namespace {

const char* const backends[] = {"sqlite", "postgresql"};

// A counter that keeps snapshots. `applied` counts the applies since it was made or decoded: not
// in its JSON, so a state loaded from a snapshot shows how many events the load read.
struct tally {
  static constexpr std::string_view aggregate_type = "counter";
  static constexpr std::int64_t snapshot_version = 1;
  using events = event_types<counted, counter_reset>;
  long total = 0;
  int resets = 0;
  int applied = 0;
  void apply(const counted& e) {
    total += e.by;
    ++applied;
  }
  void apply(const counter_reset&) {
    total = 0;
    ++resets;
    ++applied;
  }
};
void to_json(nlohmann::json& j, const tally& t) { j = {{"total", t.total}, {"resets", t.resets}}; }
void from_json(const nlohmann::json& j, tally& t) {
  j.at("total").get_to(t.total);
  j.at("resets").get_to(t.resets);
}

// The same counter after its JSON changed shape: snapshot_version 2.
struct tally_v2 {
  static constexpr std::string_view aggregate_type = "counter";
  static constexpr std::int64_t snapshot_version = 2;
  using events = event_types<counted, counter_reset>;
  long total = 0;
  int applied = 0;
  void apply(const counted& e) {
    total += e.by;
    ++applied;
  }
  void apply(const counter_reset&) {
    total = 0;
    ++applied;
  }
};
void to_json(nlohmann::json& j, const tally_v2& t) { j = {{"count", t.total}}; }
void from_json(const nlohmann::json& j, tally_v2& t) { j.at("count").get_to(t.total); }

counted plus_one(const tally&) { return counted{.by = 1}; }

// eventbus_aggregate_snapshots_total{aggregate_type="counter", outcome} as the registry has it.
double snapshots_counted(metrics& m, std::string_view outcome) {
  for (const auto& family : m.registry().Collect()) {
    if (family.name != "eventbus_aggregate_snapshots_total") continue;
    for (const auto& metric : family.metric)
      for (const auto& label : metric.label)
        if (label.name == "outcome" && label.value == outcome) return metric.counter.value;
  }
  return 0;
}

struct captured_log {
  std::mutex mu;
  std::vector<std::string> lines;
  captured_log() {
    set_log_sink([this](log_level, std::string_view line) {
      const std::lock_guard lock(mu);
      lines.emplace_back(line);
    });
  }
  ~captured_log() { set_log_sink({}); }
  bool has(std::string_view text) {
    const std::lock_guard lock(mu);
    for (const auto& l : lines)
      if (l.find(text) != std::string::npos) return true;
    return false;
  }
};

// `n` increments on a kept aggregate, one command each; the last outcome.
command_outcome increments(event_store& store, aggregate<tally>& kept, int n, const aggregate_options& options = {}) {
  command_outcome last;
  for (int i = 0; i < n; ++i) {
    auto done = run_command(store, kept, plus_one, options);
    REQUIRE_MESSAGE(done.ok(), done.error().to_string());
    last = *done;
  }
  return last;
}

// Runs a statement on the store's database behind its back (a table dropped, a row changed).
void on_database(const std::string& backend, const std::string& name, const char* sql) {
  if (backend == "sqlite") {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open((name + ".db").c_str(), &db) == SQLITE_OK);
    char* why = nullptr;
    const int rc = sqlite3_exec(db, sql, nullptr, nullptr, &why);
    CHECK_MESSAGE(rc == SQLITE_OK, (why ? why : ""));
    sqlite3_free(why);
    sqlite3_close(db);
    return;
  }
  PGconn* conn = PQconnectdb(testing::postgres_dsn_of(name).c_str());
  REQUIRE(PQstatus(conn) == CONNECTION_OK);
  PGresult* r = PQexec(conn, sql);
  CHECK_MESSAGE(PQresultStatus(r) == PGRES_COMMAND_OK, PQresultErrorMessage(r));
  PQclear(r);
  PQfinish(conn);
}

}  // namespace

TEST_CASE("snapshots: a load starts from the newest snapshot and reads only the events after it") {
  for (const std::string backend : backends) {
    CAPTURE(backend);
    auto m = std::make_shared<metrics>();
    auto store = testing::fresh_store(backend, "snapshot_load");
    auto kept = load_aggregate<tally>(*store, "c-1");
    REQUIRE(kept.ok());
    CHECK(kept->from_snapshot() == 0);  // none yet
    increments(*store, *kept, 10);
    REQUIRE(run_command(*store, *kept, [](const tally&) { return counter_reset{"audit"}; }).ok());
    increments(*store, *kept, 4);
    REQUIRE(kept->version() == 15);

    auto taken = take_snapshot(*store, *kept, {.metrics = m});
    REQUIRE_MESSAGE(taken.ok(), taken.error().to_string());
    CHECK(taken.value());
    CHECK(snapshots_counted(*m, "taken") == 1);
    auto saved = store->load_snapshot("counter", "c-1");
    REQUIRE(saved.ok());
    REQUIRE(saved.value().has_value());
    CHECK(saved.value()->version == 15);
    CHECK(saved.value()->schema_version == 1);
    CHECK(nlohmann::json::parse(saved.value()->state) == nlohmann::json{{"total", 4}, {"resets", 1}});
    CHECK(saved.value()->taken_at > time_point{});

    increments(*store, *kept, 3);
    auto loaded = load_aggregate<tally>(*store, "c-1", {.metrics = m});
    REQUIRE(loaded.ok());
    CHECK(loaded->from_snapshot() == 15);
    CHECK(loaded->version() == 18);
    CHECK(loaded->state().applied == 3);  // the three events after the snapshot, and no other
    CHECK(loaded->state().total == 7);
    CHECK(loaded->state().resets == 1);
    CHECK(loaded->snapshots_ignored() == 0);
    CHECK(snapshots_counted(*m, "loaded") == 1);

    // Without it: every event, the same state.
    auto full = load_aggregate<tally>(*store, "c-1", {.read_snapshots = false});
    REQUIRE(full.ok());
    CHECK(full->from_snapshot() == 0);
    CHECK(full->state().applied == 18);
    CHECK(full->state().total == loaded->state().total);
    CHECK(full->state().resets == loaded->state().resets);

    // A command on the aggregate loaded from the snapshot appends after its version.
    auto more = run_command(*store, *loaded, plus_one);
    REQUIRE(more.ok());
    CHECK(more->version == 19);
    CHECK(loaded->state().total == 8);

    // Another aggregate of the type has no snapshot: read from its first event.
    REQUIRE(run_command<tally>(*store, "c-2", plus_one).ok());
    auto other = load_aggregate<tally>(*store, "c-2");
    REQUIRE(other.ok());
    CHECK(other->from_snapshot() == 0);
    CHECK(other->state().applied == 1);
  }
}

TEST_CASE("snapshots: a command whose events reach a multiple of snapshot_every saves one, and a failed save does not fail it") {
  for (const std::string backend : backends) {
    CAPTURE(backend);
    const std::string name = "snapshot_every";
    auto m = std::make_shared<metrics>();
    auto store = testing::fresh_store(backend, name);
    const aggregate_options every_5{.snapshot_every = 5, .metrics = m};
    auto kept = load_aggregate<tally>(*store, "c-1", every_5);
    REQUIRE(kept.ok());
    std::vector<std::int64_t> taken_at;
    for (int i = 0; i < 12; ++i) {
      auto done = run_command(*store, *kept, plus_one, every_5);
      REQUIRE(done.ok());
      if (done->snapshot_taken) taken_at.push_back(done->version);
    }
    CHECK(taken_at == std::vector<std::int64_t>{5, 10});
    CHECK(store->load_snapshot("counter", "c-1").value()->version == 10);

    // Four events at once, 12 to 16: past 15, so one at 16.
    auto four = run_command(*store, *kept, [](const tally&, raised<tally>& raise) {
      for (int i = 0; i < 4; ++i) raise(counted{.by = 1});
    }, every_5);
    REQUIRE(four.ok());
    CHECK(four->snapshot_taken);
    CHECK(store->load_snapshot("counter", "c-1").value()->version == 16);
    CHECK(snapshots_counted(*m, "taken") == 3);
    auto loaded = load_aggregate<tally>(*store, "c-1");
    REQUIRE(loaded.ok());
    CHECK(loaded->from_snapshot() == 16);
    CHECK(loaded->state().applied == 0);
    CHECK(loaded->state().total == 16);

    // Without the policy a command takes none; a state without snapshot_version cannot ask for one.
    auto plain = run_command(*store, *kept, plus_one);
    REQUIRE(plain.ok());
    CHECK_FALSE(plain->snapshot_taken);
    CHECK_THROWS_WITH_AS((void)run_command<testing::counter>(*store, "c-1", testing::increment, {.snapshot_every = 5}),
                         doctest::Contains("declares no snapshot_version"), exception);
    CHECK_THROWS_AS((void)load_aggregate<tally>(*store, "c-1", {.snapshot_every = -1}), exception);

    // The table gone behind the store's back: the command still succeeds, the failure is counted
    // and logged, and the load that cannot read the snapshot rebuilds from the events.
    on_database(backend, name, "DROP TABLE eventbus_snapshots");
    captured_log log;
    auto crossing = run_command(*store, *kept, [](const tally&, raised<tally>& raise) {
      for (int i = 0; i < 3; ++i) raise(counted{.by = 1});
    }, every_5);
    REQUIRE_MESSAGE(crossing.ok(), crossing.error().to_string());
    CHECK(crossing->version == 20);
    CHECK_FALSE(crossing->snapshot_taken);
    CHECK(snapshots_counted(*m, "save_failed") == 1);
    CHECK(log.has("counter c-1: the snapshot was not saved"));
    auto rebuilt = load_aggregate<tally>(*store, "c-1", {.metrics = m});
    REQUIRE(rebuilt.ok());
    CHECK(rebuilt->snapshots_ignored() == 1);
    CHECK(rebuilt->state().applied == 20);
    CHECK(rebuilt->state().total == 20);
    CHECK(snapshots_counted(*m, "ignored_unreadable") == 1);
  }
}

TEST_CASE("snapshots: one of another schema version, or one that does not decode, is ignored, counted and logged") {
  for (const std::string backend : backends) {
    CAPTURE(backend);
    auto m = std::make_shared<metrics>();
    auto store = testing::fresh_store(backend, "snapshot_ignored");
    auto kept = load_aggregate<tally>(*store, "c-1");
    REQUIRE(kept.ok());
    increments(*store, *kept, 10);
    REQUIRE(take_snapshot(*store, *kept).value());

    captured_log log;
    auto newer = load_aggregate<tally_v2>(*store, "c-1", {.metrics = m});
    REQUIRE(newer.ok());
    CHECK(newer->snapshots_ignored() == 1);
    CHECK(newer->from_snapshot() == 0);
    CHECK(newer->state().applied == 10);
    CHECK(newer->state().total == 10);
    CHECK(snapshots_counted(*m, "ignored_schema_version") == 1);
    CHECK(log.has("counter c-1: snapshot ignored, rebuilt from the events: its snapshot_version is 1, this state's 2"));

    // The new shape takes over: its snapshot replaces the other one, even at the same version.
    CHECK(take_snapshot(*store, *newer).value());
    CHECK(store->load_snapshot("counter", "c-1").value()->schema_version == 2);
    CHECK(load_aggregate<tally_v2>(*store, "c-1")->from_snapshot() == 10);
    CHECK(load_aggregate<tally>(*store, "c-1")->snapshots_ignored() == 1);

    // Not JSON, and JSON of the wrong shape: both ignored, the state rebuilt from the events.
    for (const std::string_view state : {std::string_view("{not json"), std::string_view(R"({"total":"many","resets":0})")}) {
      CAPTURE(state);
      REQUIRE(store->save_snapshot({.aggregate_type = "counter", .aggregate_id = "c-1", .version = 10,
                                    .schema_version = 1, .state = std::string(state)}).value());
      auto loaded = load_aggregate<tally>(*store, "c-1", {.metrics = m});
      REQUIRE(loaded.ok());
      CHECK(loaded->snapshots_ignored() == 1);
      CHECK(loaded->from_snapshot() == 0);
      CHECK(loaded->state().total == 10);
      CHECK(loaded->state().applied == 10);
    }
    CHECK(snapshots_counted(*m, "ignored_undecodable") == 2);
    CHECK(log.has("snapshot ignored, rebuilt from the events: its state does not decode: "));
  }
}

TEST_CASE("snapshots: the store keeps the newest, never one ahead of the events, and a read-only store saves none") {
  for (const std::string backend : backends) {
    CAPTURE(backend);
    const std::string name = "snapshot_rules";
    auto store = testing::fresh_store(backend, name);
    auto kept = load_aggregate<tally>(*store, "c-1");
    REQUIRE(kept.ok());

    auto nothing = take_snapshot(*store, *kept);  // version 0
    REQUIRE_FALSE(nothing.ok());
    CHECK(nothing.error().code() == errc::invalid_argument);
    CHECK(nothing.error().message().find("has no events") != std::string::npos);

    increments(*store, *kept, 5);
    snapshot s{.aggregate_type = "counter", .aggregate_id = "c-1", .version = 6, .schema_version = 1, .state = "{}"};
    auto ahead = store->save_snapshot(s);
    REQUIRE_FALSE(ahead.ok());
    CHECK(ahead.error().code() == errc::invalid_argument);
    CHECK(ahead.error().field() == "version");
    CHECK(ahead.error().message().find("counter c-1: a snapshot at version 6 is ahead of the events stored (up to version 5)") !=
          std::string::npos);
    CHECK_FALSE(store->load_snapshot("counter", "c-1").value().has_value());
    s.version = 0;
    CHECK(store->save_snapshot(s).error().field() == "version");
    s.version = 4;
    s.state.clear();
    CHECK(store->save_snapshot(s).error().field() == "state");
    s.aggregate_id.clear();
    s.state = "{}";
    CHECK(store->save_snapshot(s).error().field() == "aggregate_id");

    // An older state of the same schema does not replace a newer one.
    REQUIRE(take_snapshot(*store, *kept).value());
    CHECK_FALSE(store->save_snapshot({.aggregate_type = "counter", .aggregate_id = "c-1", .version = 3,
                                      .schema_version = 1, .state = R"({"total":3,"resets":0})"}).value());
    CHECK(store->load_snapshot("counter", "c-1").value()->version == 5);

    // Read-only: loads use the snapshot, saves are refused.
    auto reader = backend == "sqlite" ? open_sqlite_store({.path = name + ".db", .read_only = true})
                                      : open_postgres_store({.dsn = testing::postgres_dsn_of(name), .read_only = true});
    auto loaded = load_aggregate<tally>(*reader, "c-1");
    REQUIRE(loaded.ok());
    CHECK(loaded->from_snapshot() == 5);
    auto refused = take_snapshot(*reader, *loaded);
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.error().code() == errc::store_failed);
    CHECK(refused.error().message().find("read-only: snapshots are not saved") != std::string::npos);
  }
}

TEST_CASE("snapshots: commands on an aggregate loaded from a snapshot stay correct under conflicts") {
  for (const std::string backend : backends) {
    CAPTURE(backend);
    auto store = testing::fresh_store(backend, "snapshot_conflicts");
    auto other = testing::same_store(backend, "snapshot_conflicts");
    auto first = load_aggregate<tally>(*store, "c-1");
    REQUIRE(first.ok());
    increments(*store, *first, 10);
    REQUIRE(take_snapshot(*store, *first).value());

    // Loaded from the snapshot, then another writer appends: the command conflicts, reads what it
    // missed after the snapshot's version, and runs again on that.
    auto kept = load_aggregate<tally>(*store, "c-1");
    REQUIRE(kept.ok());
    REQUIRE(kept->from_snapshot() == 10);
    REQUIRE(other->append("counter", "c-1", expected_version::any(),
                          {make_event("c-1", counted{.by = 5}), make_event("c-1", counter_reset{"x"})}).ok());
    std::vector<long> seen;
    auto done = run_command(*store, *kept, [&](const tally& t) {
      seen.push_back(t.total);
      return counted{.by = 7};
    }, {.snapshot_every = 13});
    REQUIRE(done.ok());
    CHECK(done->attempts == 2);
    CHECK(seen == std::vector<long>{10, 0});
    CHECK(done->version == 13);
    CHECK(done->snapshot_taken);
    CHECK(kept->state().total == 7);
    auto reloaded = load_aggregate<tally>(*store, "c-1");
    CHECK(reloaded->from_snapshot() == 13);
    CHECK(reloaded->state().total == 7);
    CHECK(reloaded->state().resets == 1);

    // Two threads loading for each of 200 increments with a snapshot every 10: exactly 400, and
    // every snapshot kept holds the fold of the events up to its version (total == version here).
    std::barrier ready(2);
    std::mutex failures_mutex;
    std::vector<std::string> failures;
    std::atomic<int> snapshots{0};
    const aggregate_options options{.max_conflict_retries = INT_MAX - 1, .snapshot_every = 10};
    auto work = [&] {
      ready.arrive_and_wait();
      for (int i = 0; i < 200; ++i) {
        auto next = run_command<tally>(*store, "c-2", plus_one, options);
        if (!next) {
          const std::lock_guard lock(failures_mutex);
          failures.push_back(next.error().to_string());
          return;
        }
        snapshots += next->snapshot_taken ? 1 : 0;
        auto s = store->load_snapshot("counter", "c-2");
        if (s && s.value() && nlohmann::json::parse(s.value()->state).at("total").get<std::int64_t>() != s.value()->version) {
          const std::lock_guard lock(failures_mutex);
          failures.push_back("snapshot at " + std::to_string(s.value()->version) + " holds " + s.value()->state);
        }
      }
    };
    std::thread a(work), b(work);
    a.join();
    b.join();
    CHECK(failures == std::vector<std::string>{});
    // One command reaches each multiple of 10; its save is not kept only when the other thread's
    // newer one got there first.
    CHECK(snapshots.load() >= 1);
    CHECK(snapshots.load() <= 40);
    auto final_state = load_aggregate<tally>(*store, "c-2");
    REQUIRE(final_state.ok());
    CHECK(final_state->version() == 400);
    CHECK(final_state->state().total == 400);
    CHECK(final_state->from_snapshot() == 400);
    CHECK(final_state->state().applied == 0);
  }
}

TEST_CASE("snapshots: copy_store carries them over at the same versions") {
  auto from = testing::fresh_store("sqlite", "snapshot_copy_from");
  for (const std::string id : {"c-1", "c-2", "c-3"}) {
    auto kept = load_aggregate<tally>(*from, id);
    REQUIRE(kept.ok());
    increments(*from, *kept, 4);
    if (id != "c-2") REQUIRE(take_snapshot(*from, *kept).value());
    increments(*from, *kept, 1);
  }
  auto to = testing::fresh_store("postgresql", "snapshot_copy_to");
  auto copied = copy_store(*from, *to, {.batch_size = 1});  // a page of snapshots per snapshot
  REQUIRE_MESSAGE(copied.ok(), copied.error().to_string());
  CHECK(copied->complete);
  CHECK(copied->snapshots == 2);
  for (const std::string id : {"c-1", "c-3"}) {
    CAPTURE(id);
    const auto there = to->load_snapshot("counter", id).value();
    const auto here = from->load_snapshot("counter", id).value();
    REQUIRE(there.has_value());
    CHECK(there->version == 4);
    CHECK(there->state == here->state);
    CHECK(there->taken_at == here->taken_at);
    auto loaded = load_aggregate<tally>(*to, id);
    REQUIRE(loaded.ok());
    CHECK(loaded->from_snapshot() == 4);
    CHECK(loaded->state().applied == 1);
    CHECK(loaded->state().total == 5);
  }
  CHECK_FALSE(to->load_snapshot("counter", "c-2").value().has_value());
}
