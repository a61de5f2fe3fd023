// Aggregates on the event store, on both backends: state folded from typed events, commands whose
// events get the aggregate's type and id and are appended at the version they were decided on,
// the unknown-event policy, failing commands, the conflict retry and its bound, and no lost update
// with two threads and two processes writing one aggregate.

#include <doctest/doctest.h>

#include <barrier>
#include <chrono>
#include <climits>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include "counter_aggregate.hpp"
#include "eventbus/store/aggregate.hpp"
#include "process_support.hpp"
#include "store_support.hpp"

// A typed event as `eventbus new event counter.renamed --aggregate counter --field name:string`
// writes it: global namespace, hand-written to_json / from_json.
struct counter_renamed {
  static constexpr std::string_view event_type = "counter.renamed";
  static constexpr std::string_view aggregate_type = "counter";
  static constexpr int version = 1;  // raise it when the payload changes incompatibly

  std::string name;
};

inline void to_json(nlohmann::json& j, const counter_renamed& value) {
  j = nlohmann::json::object();
  j["name"] = value.name;
}

inline void from_json(const nlohmann::json& j, counter_renamed& value) { j.at("name").get_to(value.name); }

using namespace eventbus;
using eventbus::testing::counted;
using eventbus::testing::counter;
using eventbus::testing::counter_reset;

namespace {

const char* const backends[] = {"sqlite", "postgresql"};

// A counter that knows only `counted` (an older service that never heard of resets).
struct counter_v1 {
  static constexpr std::string_view aggregate_type = "counter";
  using events = event_types<counted>;
  long total = 0;
  void apply(const counted& e) { total += e.by; }
};

// A counter with a name, from an event written as `eventbus new event` writes them.
struct named_counter {
  static constexpr std::string_view aggregate_type = "counter";
  using events = event_types<counted, counter_renamed>;
  long total = 0;
  std::string name;
  void apply(const counted& e) { total += e.by; }
  void apply(const counter_renamed& e) { name = e.name; }
};

// A counter whose apply refuses 13.
struct fragile_counter {
  static constexpr std::string_view aggregate_type = "counter";
  using events = event_types<counted>;
  long total = 0;
  void apply(const counted& e) {
    if (e.by == 13) throw eventbus::exception(error(errc::invalid_argument, "unlucky"));
    total += e.by;
  }
};

// An apply that fails once when armed (a lookup it needs briefly missing), then works.
bool flaky_apply_armed = false;
struct flaky_counter {
  static constexpr std::string_view aggregate_type = "counter";
  using events = event_types<counted>;
  long total = 0;
  void apply(const counted& e) {
    if (e.by == 13 && std::exchange(flaky_apply_armed, false)) throw eventbus::exception(error(errc::store_failed, "lookup down"));
    total += e.by;
  }
};

// The concurrency tests make thousands of commits, and what they check (no lost update) does not
// depend on each commit being flushed to disk: SQLite with durability normal, PostgreSQL sessions
// with synchronous_commit off (the server's fsync stays on).
const std::string no_commit_flush = " options='-c synchronous_commit=off'";

std::shared_ptr<outbox_store> fast_store(const std::string& backend, const std::string& name) {
  if (backend == "sqlite")
    return open_sqlite_store({.path = testing::fresh_sqlite_path(name), .durability = sqlite_durability::normal});
  return open_postgres_store({.dsn = testing::fresh_postgres_database(name) + no_commit_flush});
}

std::string store_location(const std::string& backend, const std::string& name) {
  return backend == "sqlite" ? "sqlite:" + name + ".db" : "postgresql:" + testing::postgres_dsn_of(name) + no_commit_flush;
}

std::vector<stored_event> history(event_store& store, const std::string& id) {
  std::vector<stored_event> out;
  REQUIRE(store.load("counter", id, 1, [&](const stored_event& e) {
    out.push_back(e);
    return true;
  }).ok());
  return out;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

TEST_CASE("aggregate: load folds typed events, and a command's events get the aggregate's type and id, are applied and appended at the loaded version") {
  for (const std::string backend : backends) {
    CAPTURE(backend);
    auto store = testing::fresh_store(backend, "aggregate_basics");

    auto fresh = load_aggregate<counter>(*store, "c-1");
    REQUIRE(fresh.ok());
    CHECK(fresh->id() == "c-1");
    CHECK(fresh->version() == 0);
    CHECK(fresh->state().total == 0);

    // Several events from the collector, with envelope options.
    auto two = run_command<counter>(*store, "c-1", [](const counter& c, raised<counter>& raise) {
      CHECK(c.total == 0);
      raise(counted{.by = 5});
      raise(counted{.by = 2}, {.correlation_id = "req-7"});
    });
    REQUIRE_MESSAGE(two.ok(), two.error().to_string());
    CHECK(two->version == 2);
    CHECK(two->attempts == 1);
    CHECK_FALSE(two->already_stored);
    REQUIRE(two->events.size() == 2);
    CHECK(two->first_position > 0);
    CHECK(two->last_position == two->first_position + 1);
    for (const auto& ev : two->events) {
      CHECK(ev.aggregate_type() == "counter");
      CHECK(ev.aggregate_id() == "c-1");
      CHECK(ev.event_type() == "counter.counted");
    }
    CHECK(two->events[1].correlation_id() == "req-7");

    // What was appended is what the command raised, at versions 1 and 2.
    const auto stored = history(*store, "c-1");
    REQUIRE(stored.size() == 2);
    CHECK(stored[0].version == 1);
    CHECK(stored[0].ev.event_id() == two->events[0].event_id());
    CHECK(stored[1].ev.payload() == nlohmann::json{{"by", 2}});

    // Kept loaded: one event returned directly, then result<E>, each applied to the aggregate kept.
    auto c = load_aggregate<counter>(*store, "c-1");
    REQUIRE(c.ok());
    CHECK(c->version() == 2);
    CHECK(c->state().total == 7);
    CHECK(c->skipped() == 0);
    auto one = run_command(*store, *c, [](const counter& s) { return counted{.by = static_cast<int>(s.total)}; });
    REQUIRE(one.ok());
    CHECK(one->version == 3);
    CHECK(c->version() == 3);
    CHECK(c->state().total == 14);
    auto reset = run_command(*store, *c, [](const counter&) -> result<counter_reset> { return counter_reset{"audit"}; });
    REQUIRE(reset.ok());
    CHECK(reset->events.at(0).version() == 2);  // counter_reset's schema version
    CHECK(c->state().total == 0);
    CHECK(c->state().resets == 1);
    CHECK(c->version() == 4);

    // A command that raises nothing appends nothing.
    auto nothing = run_command(*store, *c, [](const counter&, raised<counter>&) {});
    REQUIRE(nothing.ok());
    CHECK(nothing->events.empty());
    CHECK(nothing->version == 4);
    CHECK(nothing->first_position == 0);
    CHECK(store->version_of("counter", "c-1").value() == 4);

    // A fresh load sees the same state the kept one has.
    auto again = load_aggregate<counter>(*store, "c-1");
    REQUIRE(again.ok());
    CHECK(again->version() == 4);
    CHECK(again->state().total == 0);
    CHECK(again->state().counts == 3);
    CHECK(again->state().resets == 1);

    // Event ids the command gives itself make it idempotent: run again, it stores and applies nothing.
    const std::string once_id = "7d444840-9dc0-11d1-b245-5ffdce74fad2";
    auto idempotent = [&](const counter&, raised<counter>& raise) { raise(counted{.by = 9}, {.event_id = once_id}); };
    auto first_time = run_command(*store, *c, idempotent);
    REQUIRE(first_time.ok());
    CHECK_FALSE(first_time->already_stored);
    CHECK(c->state().total == 9);
    auto second_time = run_command(*store, *c, idempotent);
    REQUIRE(second_time.ok());
    CHECK(second_time->already_stored);
    CHECK(second_time->version == 5);
    CHECK(c->version() == 5);
    CHECK(c->state().total == 9);
    auto from_scratch = run_command<counter>(*store, "c-1", idempotent);
    REQUIRE(from_scratch.ok());
    CHECK(from_scratch->already_stored);
    CHECK(store->version_of("counter", "c-1").value() == 5);

    // Another aggregate of the same type is its own stream: new, so appended with none().
    auto other = run_command<counter>(*store, "c-2", testing::increment);
    REQUIRE(other.ok());
    CHECK(other->version == 1);
    CHECK(store->version_of("counter", "c-1").value() == 5);
  }
}

TEST_CASE("aggregate: an event type the state does not know is skipped and counted, or fails naming it, as the policy says") {
  for (const std::string backend : backends) {
    CAPTURE(backend);
    auto store = testing::fresh_store(backend, "aggregate_unknown");
    auto written = run_command<counter>(*store, "c-1", [](const counter&, raised<counter>& raise) {
      raise(counted{.by = 3});
      raise(counter_reset{"new in v2"});
      raise(counted{.by = 4});
    });
    REQUIRE(written.ok());

    auto skipped = load_aggregate<counter_v1>(*store, "c-1");  // skip is the default
    REQUIRE_MESSAGE(skipped.ok(), skipped.error().to_string());
    CHECK(skipped->skipped() == 1);
    CHECK(skipped->version() == 3);  // the version of the last event read, applied or not
    CHECK(skipped->state().total == 7);
    // A command on it appends after all three, and skips nothing it reads on a conflict either.
    auto more = run_command(*store, *skipped, [](const counter_v1&) { return counted{.by = 1}; });
    REQUIRE(more.ok());
    CHECK(more->version == 4);
    CHECK(skipped->state().total == 8);

    auto failed = load_aggregate<counter_v1>(*store, "c-1", {.unknown_events = unknown_event_policy::fail});
    REQUIRE_FALSE(failed.ok());
    CHECK(failed.error().code() == errc::invalid_event);
    CHECK(failed.error().field() == "event_type");
    const std::string why = failed.error().message();
    CAPTURE(why);
    CHECK(why.find("'counter.reset'") != std::string::npos);
    CHECK(why.find("c-1 version 2") != std::string::npos);
    CHECK(why.find(written->events[1].event_id()) != std::string::npos);
    CHECK(why.find("counter.counted") != std::string::npos);  // what it does know

    // The same policy on a command's load: nothing appended.
    auto refused = run_command<counter_v1>(*store, "c-1", [](const counter_v1&) { return counted{}; },
                                           {.unknown_events = unknown_event_policy::fail});
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.error().code() == errc::invalid_event);
    CHECK(store->version_of("counter", "c-1").value() == 4);
  }
}

TEST_CASE("aggregate: typed events as `eventbus new event` writes them work as they are") {
  for (const std::string backend : backends) {
    CAPTURE(backend);
    auto store = testing::fresh_store(backend, "aggregate_scaffolded");
    auto named = run_command<named_counter>(*store, "c-1", [](const named_counter&, raised<named_counter>& raise) {
      raise(counted{.by = 4});
      raise(counter_renamed{.name = "visitors"});
    });
    REQUIRE(named.ok());
    CHECK(named->events.at(1).payload() == nlohmann::json{{"name", "visitors"}});
    auto loaded = load_aggregate<named_counter>(*store, "c-1");
    REQUIRE(loaded.ok());
    CHECK(loaded->state().name == "visitors");
    CHECK(loaded->state().total == 4);
  }
}

TEST_CASE("aggregate: a payload that does not decode into its typed event fails naming the event") {
  for (const std::string backend : backends) {
    CAPTURE(backend);
    auto store = testing::fresh_store(backend, "aggregate_bad_payload");
    const auto good = make_event("c-1", counted{.by = 1});
    const auto bad = make_event({.event_type = "counter.counted", .aggregate_type = "counter", .aggregate_id = "c-1",
                                 .payload = {{"by", "three"}}});
    REQUIRE(store->append("counter", "c-1", expected_version::none(), {good, bad}).ok());
    auto loaded = load_aggregate<counter>(*store, "c-1");
    REQUIRE_FALSE(loaded.ok());
    CHECK(loaded.error().code() == errc::payload_mismatch);
    CHECK(loaded.error().field() == "payload");
    const std::string why = loaded.error().message();
    CAPTURE(why);
    CHECK(why.find("counter c-1 version 2") != std::string::npos);
    CHECK(why.find(bad.event_id()) != std::string::npos);
    CHECK(why.find("'counter.counted'") != std::string::npos);
    auto command = run_command<counter>(*store, "c-1", testing::increment);
    REQUIRE_FALSE(command.ok());
    CHECK(command.error().code() == errc::payload_mismatch);
    CHECK(store->version_of("counter", "c-1").value() == 2);
  }
}

TEST_CASE("aggregate: a command that fails appends nothing and returns its error") {
  for (const std::string backend : backends) {
    CAPTURE(backend);
    auto store = testing::fresh_store(backend, "aggregate_failing");
    REQUIRE(run_command<counter>(*store, "c-1", testing::increment).ok());

    auto returned = run_command<counter>(*store, "c-1", [](const counter& c, raised<counter>& raise) -> result<void> {
      raise(counted{.by = 1});  // raised, then refused: nothing of it is appended
      if (c.total >= 1) return error(errc::invalid_argument, "counter is full");
      return {};
    });
    REQUIRE_FALSE(returned.ok());
    CHECK(returned.error().code() == errc::invalid_argument);
    CHECK(returned.error().message() == "counter is full");

    auto thrown = run_command<counter>(*store, "c-1", [](const counter&) -> counted {
      throw exception(error(errc::invalid_argument, "no more", "by"));
    });
    REQUIRE_FALSE(thrown.ok());
    CHECK(thrown.error().field() == "by");

    auto refused = run_command<counter>(*store, "c-1", [](const counter&) -> result<counted> {
      return error(errc::invalid_argument, "not today");
    });
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.error().message() == "not today");

    // An invalid envelope throws where it is raised, and fails the command the same way.
    auto invalid = run_command<counter>(*store, "c-1", [](const counter&, raised<counter>& raise) {
      raise(counted{}, {.event_id = "not-a-uuid"});
    });
    REQUIRE_FALSE(invalid.ok());
    CHECK(invalid.error().code() == errc::invalid_event);

    // Anything else is a bug: it propagates, and nothing is appended either.
    CHECK_THROWS_AS((void)run_command<counter>(*store, "c-1", [](const counter&) -> counted { throw std::logic_error("bug"); }),
                    std::logic_error);

    CHECK(store->version_of("counter", "c-1").value() == 1);
    CHECK_THROWS_AS((void)load_aggregate<counter>(*store, "c-1", {.max_conflict_retries = -1}), eventbus::exception);
  }
}

TEST_CASE("aggregate: an apply that throws fails the load, and leaves a kept aggregate empty and consistent") {
  for (const std::string backend : backends) {
    CAPTURE(backend);
    auto store = testing::fresh_store(backend, "aggregate_apply_throws");
    auto kept = load_aggregate<fragile_counter>(*store, "c-1");
    REQUIRE(kept.ok());
    REQUIRE(run_command(*store, *kept, [](const fragile_counter&) { return counted{.by = 2}; }).ok());
    CHECK(kept->state().total == 2);

    // Appended, then apply throws: the exception propagates, the aggregate is reset, not half-changed.
    CHECK_THROWS_AS((void)run_command(*store, *kept, [](const fragile_counter&) { return counted{.by = 13}; }),
                    eventbus::exception);
    CHECK(store->version_of("counter", "c-1").value() == 2);
    CHECK(kept->version() == 0);
    CHECK(kept->state().total == 0);

    // Loading meets the same event: the error, naming what apply said.
    auto loaded = load_aggregate<fragile_counter>(*store, "c-1");
    REQUIRE_FALSE(loaded.ok());
    CHECK(loaded.error().message() == "unlucky");
    // A state that applies it reads all of it.
    auto sturdy = load_aggregate<counter>(*store, "c-1");
    REQUIRE(sturdy.ok());
    CHECK(sturdy->state().total == 15);
  }
}

TEST_CASE("aggregate: after an apply threw, a kept aggregate's next command decides on the history read again, not on the emptied state") {
  for (const std::string backend : backends) {
    CAPTURE(backend);
    auto store = testing::fresh_store(backend, "aggregate_apply_once");
    auto kept = load_aggregate<flaky_counter>(*store, "c-1");
    REQUIRE(kept.ok());
    REQUIRE(run_command(*store, *kept, [](const flaky_counter&) { return counted{.by = 2}; }).ok());
    flaky_apply_armed = true;
    CHECK_THROWS_AS((void)run_command(*store, *kept, [](const flaky_counter&) { return counted{.by = 13}; }),
                    eventbus::exception);
    CHECK(kept->version() == 0);

    // A command that refuses an aggregate with no events: it sees the two stored, not the reset.
    std::vector<long> seen;
    auto next = run_command(*store, *kept, [&](const flaky_counter& c) -> result<counted> {
      seen.push_back(c.total);
      if (c.total == 0) return error(errc::invalid_argument, "no such counter");
      return counted{.by = 1};
    });
    REQUIRE_MESSAGE(next.ok(), next.error().to_string());
    CHECK(seen == std::vector<long>{15});
    CHECK(next->attempts == 1);  // read first: no conflict to find it out
    CHECK(next->version == 3);
    CHECK(kept->state().total == 16);
    CHECK(kept->version() == 3);
  }
}

TEST_CASE("aggregate: a conflict between load and append reruns the command on the newer state, up to the bound, then returns the conflict") {
  for (const std::string backend : backends) {
    CAPTURE(backend);
    auto store = testing::fresh_store(backend, "aggregate_conflict");
    auto other = testing::same_store(backend, "aggregate_conflict");  // another service instance
    REQUIRE(run_command<counter>(*store, "c-1", testing::increment).ok());

    // The first run lets another writer in between its load and its append: the append conflicts,
    // the command runs again on the state with that writer's event, and its own goes after.
    std::vector<long> seen;
    auto won = run_command<counter>(*store, "c-1", [&](const counter& c) {
      seen.push_back(c.total);
      if (seen.size() == 1) REQUIRE(other->append("counter", "c-1", expected_version::any(), make_event("c-1", counted{.by = 10})).ok());
      return counted{.by = 100};
    });
    REQUIRE_MESSAGE(won.ok(), won.error().to_string());
    CHECK(won->attempts == 2);
    CHECK(won->version == 3);
    CHECK(seen == std::vector<long>{1, 11});
    CHECK(load_aggregate<counter>(*store, "c-1")->state().total == 111);

    // Another writer in between every time: the bound (2 retries: 3 runs), then the conflict.
    int runs = 0;
    auto lost = run_command<counter>(*store, "c-1", [&](const counter&) {
      ++runs;
      REQUIRE(other->append("counter", "c-1", expected_version::any(), make_event("c-1", counted{.by = 10})).ok());
      return counted{.by = 1000};
    }, {.max_conflict_retries = 2});
    REQUIRE_FALSE(lost.ok());
    CHECK(lost.error().code() == errc::concurrency_conflict);
    CHECK(lost.error().message().find("after 3 attempts") != std::string::npos);
    CHECK(runs == 3);
    auto after = load_aggregate<counter>(*store, "c-1");
    CHECK(after->version() == 6);  // the other writer's three, none of the command's
    CHECK(after->state().total == 141);

    // No retries: one run.
    runs = 0;
    auto once = run_command<counter>(*store, "c-1", [&](const counter&) {
      ++runs;
      REQUIRE(other->append("counter", "c-1", expected_version::any(), make_event("c-1", counted{.by = 10})).ok());
      return counted{};
    }, {.max_conflict_retries = 0});
    REQUIRE_FALSE(once.ok());
    CHECK(once.error().code() == errc::concurrency_conflict);
    CHECK(runs == 1);

    // A kept aggregate that fell behind: its command conflicts, it reads only what it missed, and
    // runs again on that.
    auto kept = load_aggregate<counter>(*store, "c-1");
    REQUIRE(kept.ok());
    REQUIRE(other->append("counter", "c-1", expected_version::any(), {make_event("c-1", counted{.by = 5}), make_event("c-1", counter_reset{"x"})}).ok());
    auto caught_up = run_command(*store, *kept, [](const counter& c) { return counted{.by = c.resets == 1 ? 7 : -1}; });
    REQUIRE(caught_up.ok());
    CHECK(caught_up->attempts == 2);
    CHECK(kept->version() == 10);
    CHECK(kept->state().total == 7);
    CHECK(load_aggregate<counter>(*store, "c-1")->state().total == 7);
  }
}

// Two threads on one store each run `per_thread` increments on counter c-1, either loading it for
// every command (a stateless request handler) or keeping it loaded (a long-lived owner: each
// command appends without reading, and reads what the other thread appended when it conflicts).
void two_threads_increment(const std::string& backend, const std::string& name, int per_thread, bool load_each_time) {
  const auto start = std::chrono::steady_clock::now();
  auto store = fast_store(backend, name);
  std::barrier ready(2);
  std::atomic<long> conflicts{0};
  std::mutex failures_mutex;
  std::vector<std::string> failures;
  const aggregate_options retry_until_done{.max_conflict_retries = INT_MAX - 1};
  auto work = [&] {
    auto fail = [&](const eventbus::error& why) {
      const std::lock_guard lock(failures_mutex);
      failures.push_back(why.to_string());
    };
    auto kept = load_aggregate<counter>(*store, "c-1");
    if (!kept) return fail(kept.error());
    ready.arrive_and_wait();
    for (int i = 0; i < per_thread; ++i) {
      auto done = load_each_time ? run_command<counter>(*store, "c-1", testing::increment, retry_until_done)
                                 : run_command(*store, *kept, testing::increment, retry_until_done);
      if (!done) return fail(done.error());
      conflicts += done->attempts - 1;
      std::this_thread::yield();  // let the other thread in: more interleaving, more conflicts
    }
  };
  std::thread a(work), b(work);
  a.join();
  b.join();
  CHECK(failures == std::vector<std::string>{});
  auto final_state = load_aggregate<counter>(*store, "c-1");
  REQUIRE(final_state.ok());
  CHECK(final_state->state().total == 2 * per_thread);
  CHECK(final_state->version() == 2 * per_thread);
  MESSAGE(backend << ": 2 threads x " << per_thread << " increments" << std::string(load_each_time ? " (loading each time)" : "")
                  << ", " << conflicts.load() << " conflicts retried, " << seconds_since(start) << " s");
}

TEST_CASE("aggregate: two threads running 1,000 increments each on one aggregate end at exactly 2,000") {
  for (const std::string backend : backends) {
    CAPTURE(backend);
    two_threads_increment(backend, "aggregate_threads", 1000, false);
  }
}

// Loading for every command reads the whole history each time (counter takes no snapshots): 200 each keeps
// it quick, under TSan too, with as many conflicts per command.
TEST_CASE("aggregate: two threads loading the aggregate for each of 200 increments end at exactly 400") {
  for (const std::string backend : backends) {
    CAPTURE(backend);
    two_threads_increment(backend, "aggregate_threads_loading", 200, true);
  }
}

TEST_CASE("aggregate: two processes running 1,000 increments each on one aggregate end at exactly 2,000") {
  for (const std::string backend : backends) {
    CAPTURE(backend);
    const auto start = std::chrono::steady_clock::now();
    auto store = fast_store(backend, "aggregate_processes");  // created and migrated before they start
    const std::string where = store_location(backend, "aggregate_processes");
    auto first = testing::spawn({EVENTBUS_AGGREGATE_PROCESS, where, "c-1", "1000"});
    auto second = testing::spawn({EVENTBUS_AGGREGATE_PROCESS, where, "c-1", "1000"});
    REQUIRE(first.read_line() == "ready");  // both loaded: let them go together
    REQUIRE(second.read_line() == "ready");
    kill(first.pid, SIGUSR1);
    kill(second.pid, SIGUSR1);
    const std::string said_first = first.read_line(), said_second = second.read_line();
    CHECK(first.stop(0) == 0);  // signal 0: none; it exits once done (its output ended): collect it
    CHECK(second.stop(0) == 0);
    CHECK(said_first.starts_with("conflicts "));
    CHECK(said_second.starts_with("conflicts "));
    auto final_state = load_aggregate<counter>(*store, "c-1");
    REQUIRE(final_state.ok());
    CHECK(final_state->state().total == 2000);
    CHECK(final_state->version() == 2000);
    MESSAGE(backend << ": 2 processes x 1000 increments (" << said_first << ", " << said_second << "), "
                    << seconds_since(start) << " s");
  }
}
