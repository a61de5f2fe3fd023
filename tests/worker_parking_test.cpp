// Durable retry stages (retry_policy::durable_stages) against the embedded broker and a real store:
// a record whose in-memory attempts are spent is parked in the store with its key's later records
// behind it, its partition moving on; it runs again after each stage, and its key's records follow
// in order once it succeeds or is dead-lettered after the last stage. Stage delays are scaled down
// (hundreds of ms) so the suite stays fast.

#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "eventbus/kafka/embedded_broker.hpp"
#include "eventbus/kafka/kafka_sink.hpp"
#include "eventbus/kafka/worker.hpp"
#include "eventbus/store/postgres_store.hpp"
#include "eventbus/store/sqlite_store.hpp"
#include "eventbus/topic.hpp"
#include <sqlite3.h>
#include "kafka_test_support.hpp"
#include "process_support.hpp"
#include "store/parked_records.hpp"
#include "store_support.hpp"
#include "test_support.hpp"
#include "worker_test_support.hpp"

using namespace eventbus;
using namespace std::chrono_literals;
using eventbus::testing::committed_offset;
using eventbus::testing::wait_until;

namespace {

constexpr const char* orders = "app.order.order.created";
constexpr int partitions = 4;

worker_options parking_worker(const embedded_broker& broker, std::string group, std::shared_ptr<outbox_store> store,
                              std::vector<std::chrono::milliseconds> stages) {
  return {.kafka = testing::mock_group_kafka(broker),
          .group_id = std::move(group),
          .topics = {orders},
          .retry = {.max_attempts = 2, .initial_backoff = 10ms, .multiplier = 1.0, .max_backoff = 10ms, .jitter = 0.0,
                    .durable_stages = std::move(stages)},
          .commit_interval = 50ms,
          .parking_store = std::move(store)};
}

int seq_of(const event& ev) { return ev.payload().at("seq").get<int>(); }

// Produces `count` events over `keys` keys (payload seq: the event's place in its key's sequence),
// `per_ms` of them each millisecond, so that records keep arriving while handlers fail. Returns
// each event id's key and seq.
// `before`: what earlier calls produced (each key's sequence continues after it).
std::map<std::string, std::pair<std::string, int>> stream(const embedded_broker& broker, int count, int keys, int per_ms,
                                                          const std::map<std::string, std::pair<std::string, int>>& before = {}) {
  kafka_sink sink({.kafka = {.bootstrap_servers = broker.bootstrap_servers(), .properties = {{"log_level", "3"}}}});
  std::map<int, int> next_seq;
  for (const auto& [id, key_seq] : before) {
    const int key = std::stoi(key_seq.first.substr(2));
    next_seq[key] = std::max(next_seq[key], key_seq.second + 1);
  }
  std::map<std::string, std::pair<std::string, int>> produced;
  std::vector<delivery_future> pending;
  for (int i = 0; i < count; ++i) {
    const int key = i % keys;
    auto ev = make_event({.event_type = "order.created", .aggregate_type = "order",
                          .aggregate_id = "o-" + std::to_string(key), .payload = {{"seq", next_seq[key]}}});
    produced[ev.event_id()] = {ev.aggregate_id(), next_seq[key]++};
    pending.push_back(sink.accept(ev));
    if (i % per_ms == per_ms - 1) std::this_thread::sleep_for(1ms);  // pacing the stream, not waiting for anything
  }
  for (auto& f : pending) CHECK(f.get().ok());  // CHECK: also called on a thread of the test's
  return produced;
}

// What the handler completed: per key the sequence numbers, in the order it completed them.
struct completed {
  std::mutex mu;
  std::map<std::string, std::vector<int>> per_key;
  std::map<std::string, int> times_of_event;
  std::size_t total = 0;

  void add(const event& ev) {
    const std::lock_guard lock(mu);
    per_key[ev.aggregate_id()].push_back(seq_of(ev));
    ++times_of_event[ev.event_id()];
    ++total;
  }
  std::size_t count() {
    const std::lock_guard lock(mu);
    return total;
  }
};

std::int64_t committed_total(const embedded_broker& broker, const std::string& group) {
  std::int64_t total = 0;
  for (int p = 0; p < partitions; ++p)
    total += std::max<std::int64_t>(0, committed_offset(broker.bootstrap_servers(), group, orders, p));
  return total;
}

std::size_t rows_left(const std::shared_ptr<outbox_store>& store, const std::string& group) {
  auto rows = detail::parked_records::open(store).value()->list(group, "", 100000);
  REQUIRE(rows.ok());
  return rows.value().size();
}

}  // namespace

TEST_CASE("durable stages: a dependency down past every in-memory attempt, 200 keys streaming: no pause, no loss, each key in order, once") {
  embedded_broker broker;
  broker.create_topic(orders, partitions);
  auto store = testing::fresh_store("sqlite", "parking_outage");
  worker w(parking_worker(broker, "g-park", store, {200ms, 300ms, 500ms}));
  std::atomic<bool> down{false};
  completed done;
  auto sub = w.subscribe("order.created", "ship", [&](const event& ev) {
    if (down.load()) throw std::runtime_error("dependency down");
    done.add(ev);
  });
  w.start();
  REQUIRE(wait_until([&] { return w.assigned_partitions() == partitions; }, 30s));

  constexpr int total = 4000, keys = 200;
  down = true;
  std::uint64_t most_paused = 0, most_parked = 0;
  std::jthread producer([&] { stream(broker, total, keys, 4); });  // joined also when a REQUIRE below fails
  // The outage lasts until most keys have records parked, and a while longer (longer than every
  // in-memory attempt, shorter than the stages together: nothing reaches the dead letters).
  REQUIRE(wait_until([&] {
    const auto s = w.stats();
    most_paused = std::max(most_paused, s.paused_partitions);
    most_parked = std::max(most_parked, s.parked_records);
    return s.parked_keys >= 150;
  }, 30s));
  const auto outage_end = std::chrono::steady_clock::now() + 300ms;
  REQUIRE(wait_until([&] {
    const auto s = w.stats();
    most_paused = std::max(most_paused, s.paused_partitions);
    most_parked = std::max(most_parked, s.parked_records);
    return std::chrono::steady_clock::now() >= outage_end;
  }, 10s));
  down = false;
  REQUIRE(wait_until([&] {
    const auto s = w.stats();
    most_paused = std::max(most_paused, s.paused_partitions);
    return done.count() >= total && s.parked_records == 0;
  }, 60s));
  CHECK(wait_until([&] { return committed_total(broker, "g-park") == total; }, 10s, 50ms));
  const auto stats = w.stats();
  w.stop();

  MESSAGE("most parked at once: " << most_parked << "; handler calls " << stats.handler_calls);
  CHECK(most_parked > 0);
  // Parked records leave the window (1,000 a partition, as many as each got): held in memory for
  // the outage instead, they would fill it and pause every partition.
  CHECK(most_paused == 0);
  CHECK(stats.dead_letters == 0);
  CHECK(rows_left(store, "g-park") == 0);
  const std::lock_guard lock(done.mu);
  CHECK(done.total == total);
  CHECK(std::all_of(done.times_of_event.begin(), done.times_of_event.end(), [](const auto& e) { return e.second == 1; }));
  REQUIRE(done.per_key.size() == keys);
  for (const auto& entry : done.per_key) {
    const auto& seqs = entry.second;
    std::vector<int> expected(seqs.size());
    for (std::size_t i = 0; i < expected.size(); ++i) expected[i] = static_cast<int>(i);
    CHECK_MESSAGE(seqs == expected, "key " << entry.first << " out of order");
  }
}

TEST_CASE("durable stages: a record failing every stage is dead-lettered after the last, and its key's later records follow in order") {
  embedded_broker broker;
  broker.create_topic(orders, partitions);
  auto store = testing::fresh_store("sqlite", "parking_exhausted");
  worker w(parking_worker(broker, "g-park-dead", store, {50ms, 80ms}));
  completed done;
  auto sub = w.subscribe("order.created", "ship", [&](const event& ev) {
    if (ev.aggregate_id() == "o-0" && seq_of(ev) == 0) throw std::runtime_error("never works");
    done.add(ev);
  });
  w.start();
  stream(broker, 50, 5, 50);  // o-0 .. o-4, ten events each
  REQUIRE(wait_until([&] { return done.count() == 49 && w.stats().dead_letters == 1; }, 30s));
  REQUIRE(wait_until([&] { return w.stats().parked_records == 0; }, 10s));
  w.stop();

  const auto dlq = dlq_topic_for(orders).value();
  const auto letters = testing::read_topic(broker.bootstrap_servers(), dlq, 1, 10s);
  REQUIRE(letters.size() == 1);
  CHECK(decode_event(letters[0].value).value().aggregate_id() == "o-0");
  CHECK(letters[0].headers.at("x-eventbus-dlq-reason") == "handler-error");
  CHECK(letters[0].headers.at("x-eventbus-dlq-error") == "never works");
  CHECK(letters[0].headers.at("x-eventbus-dlq-attempts") == "4");  // 2 in memory, one per stage
  const std::lock_guard lock(done.mu);
  CHECK(done.per_key["o-0"] == std::vector<int>{1, 2, 3, 4, 5, 6, 7, 8, 9});
  CHECK(rows_left(store, "g-park-dead") == 0);
}

TEST_CASE("durable stages: parked records outlive their worker, and the group's next worker runs them, in order") {
  embedded_broker broker;
  broker.create_topic(orders, partitions);
  auto store = testing::fresh_store("sqlite", "parking_restart");
  completed done;
  {
    worker first(parking_worker(broker, "g-park-next", store, {60'000ms}));  // a stage far longer than the test
    auto sub = first.subscribe("order.created", "ship", [&](const event&) { throw std::runtime_error("down"); });
    first.start();
    stream(broker, 200, 20, 200);
    REQUIRE(wait_until([&] { return first.stats().parked_records == 200 && committed_total(broker, "g-park-next") == 200; },
                       30s, 20ms));
    first.stop();
  }
  REQUIRE(rows_left(store, "g-park-next") == 200);
  // The next worker has stages of its own (short): the rows keep the due time the first set, so
  // nothing runs before that (a minute). Moving the due times is the operator's call: here the
  // rows are made due now, as `eventbus dlq parked` would show them.
  {
    auto rows = detail::parked_records::open(store).value();
    auto parked = rows->list("g-park-next", "", 1000);
    REQUIRE(parked.ok());
    for (auto r : parked.value()) {
      if (r.stage == 0) continue;
      r.due_ms = 0;
      REQUIRE(rows->reschedule(r).ok());
    }
  }
  worker next(parking_worker(broker, "g-park-next", store, {50ms}));
  auto sub = next.subscribe("order.created", "ship", [&](const event& ev) { done.add(ev); });
  next.start();
  REQUIRE(wait_until([&] { return done.count() == 200; }, 30s));
  REQUIRE(wait_until([&] { return next.stats().parked_records == 0; }, 10s));
  next.stop();
  CHECK(rows_left(store, "g-park-next") == 0);
  const std::lock_guard lock(done.mu);
  REQUIRE(done.per_key.size() == 20);
  for (const auto& entry : done.per_key)
    CHECK_MESSAGE(entry.second == std::vector<int>({0, 1, 2, 3, 4, 5, 6, 7, 8, 9}), entry.first);
}

TEST_CASE("durable stages: a second worker joining while records are parked and stages run (a rebalance) keeps each key's order") {
  embedded_broker broker;
  broker.create_topic(orders, partitions);
  auto store = testing::fresh_store("sqlite", "parking_rebalance");
  std::atomic<bool> down{true};
  completed done;
  const auto handler = [&](const event& ev) {
    std::this_thread::sleep_for(2ms);  // stage runs still in flight when the rebalance comes
    if (down.load()) throw std::runtime_error("dependency down");
    done.add(ev);
  };
  const auto options = parking_worker(broker, "g-park-rebalance", store, {100ms, 100ms, 200ms, 400ms, 800ms, 1600ms, 3200ms});
  worker first(options);
  auto s1 = first.subscribe("order.created", "ship", handler);
  first.start();
  REQUIRE(wait_until([&] { return first.assigned_partitions() == partitions; }, 30s));
  constexpr int total = 2000, keys = 100;
  auto produced = stream(broker, total / 2, keys, 2);
  REQUIRE(wait_until([&] { return first.stats().parked_keys >= 50; }, 30s));
  worker second(options);
  auto s2 = second.subscribe("order.created", "ship", handler);
  second.start();
  stream(broker, total / 2, keys, 2, produced);  // more for the keys while the group rebalances
  REQUIRE(wait_until([&] { return second.assigned_partitions() > 0; }, 30s));  // the rebalance happened
  down = false;
  REQUIRE(wait_until([&] { return done.count() >= total && first.stats().parked_records + second.stats().parked_records == 0; },
                     60s));
  CHECK(wait_until([&] { return committed_total(broker, "g-park-rebalance") == total; }, 10s, 50ms));
  first.stop();
  second.stop();
  CHECK(rows_left(store, "g-park-rebalance") == 0);
  const std::lock_guard lock(done.mu);
  std::size_t twice = 0;
  for (const auto& entry : done.times_of_event) twice += entry.second > 1 ? 1 : 0;
  MESSAGE(twice << " records completed twice (a stage run in flight when its partition moved)");
  REQUIRE(done.per_key.size() == keys);
  for (const auto& entry : done.per_key) {  // the first completion of each record, in the key's order
    std::vector<int> firsts;
    std::set<int> seen;
    for (const int seq : entry.second)
      if (seen.insert(seq).second) firsts.push_back(seq);
    std::vector<int> expected(firsts.size());
    for (std::size_t i = 0; i < expected.size(); ++i) expected[i] = static_cast<int>(i);
    CHECK_MESSAGE(firsts == expected, "key " << entry.first << " out of order");
    CHECK(firsts.size() == static_cast<std::size_t>(total / keys));
  }
}

TEST_CASE("durable stages: refused without a store, a store without stages, other orders, and bad delays, each named") {
  embedded_broker broker;
  auto store = testing::fresh_store("sqlite", "parking_options");
  auto fails_on = [&](worker_options o, const std::string& field) {
    try {
      o.validate();
      FAIL("accepted, expected a complaint about " << field);
    } catch (const exception& e) {
      CHECK_MESSAGE(e.error().field() == field, e.what());
    }
  };
  auto good = parking_worker(broker, "g", store, {100ms});
  CHECK_NOTHROW(good.validate());
  auto no_store = good;
  no_store.parking_store = nullptr;
  fails_on(no_store, "parking_store");
  auto no_stages = good;
  no_stages.retry.durable_stages.clear();
  fails_on(no_stages, "parking_store");
  auto by_partition = good;
  by_partition.ordering = processing_order::partition;
  fails_on(by_partition, "retry.durable_stages");
  auto zero = good;
  zero.retry.durable_stages = {100ms, 0ms};
  fails_on(zero, "retry.durable_stages");
  auto many = good;
  many.retry.durable_stages.assign(17, 1ms);
  fails_on(many, "retry.durable_stages");
}

TEST_CASE("durable stages: a store that cannot take rows is refused when the worker is made, naming parking_store") {
  embedded_broker broker;
  auto writable = testing::fresh_store("sqlite", "parking_read_only");  // the file exists, with the schema
  auto options = parking_worker(broker, "g", open_sqlite_store({.path = "parking_read_only.db", .read_only = true}), {100ms});
  try {
    worker w(options);
    FAIL("a read-only parking store was accepted");
  } catch (const exception& e) {
    CHECK(e.error().field() == "parking_store");
    CHECK_MESSAGE(std::string(e.what()).find("read-only") != std::string::npos, std::string(e.what()));
  }
}

TEST_CASE("durable stages: while the store is locked the worker goes on with other keys, then parks what waited, in order") {
  embedded_broker broker;
  broker.create_topic(orders, 1);
  const std::string path = testing::fresh_sqlite_path("parking_locked");
  auto store = open_sqlite_store({.path = path, .busy_timeout = 20ms});
  worker w(parking_worker(broker, "g-park-locked", store, {200ms, 400ms, 800ms, 1600ms, 3200ms}));
  std::atomic<bool> failing{true};
  completed done;
  auto sub = w.subscribe("order.created", "ship", [&](const event& ev) {
    if (ev.aggregate_id() == "o-0" && failing.load()) throw std::runtime_error("o-0's dependency is down");
    done.add(ev);
  });
  w.start();
  auto produced = stream(broker, 1, 1, 1);  // o-0 seq 0: fails, parked
  REQUIRE(wait_until([&] { return w.stats().parked_records == 1; }, 30s, 5ms));

  sqlite3* raw_locker = nullptr;  // another process's writer, as far as the worker can tell
  const int opened = sqlite3_open(path.c_str(), &raw_locker);
  const std::unique_ptr<sqlite3, int (*)(sqlite3*)> locker_handle(raw_locker, &sqlite3_close);
  sqlite3* locker = locker_handle.get();
  REQUIRE(opened == SQLITE_OK);
  sqlite3_busy_timeout(locker, 10'000);  // the worker may be writing at this moment
  REQUIRE(sqlite3_exec(locker, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr) == SQLITE_OK);
  stream(broker, 40, 2, 40, produced);  // o-0 seq 1..20 and o-1 seq 0..19
  // o-1 is handled meanwhile; o-0's records wait for the store (not run, not committed).
  const bool others_ran = wait_until([&] {
    const std::lock_guard lock(done.mu);
    return done.per_key["o-1"].size() == 20;
  }, 30s, 5ms);
  const auto committed_while_locked = committed_total(broker, "g-park-locked");
  std::this_thread::sleep_for(300ms);  // the lock lasts past a due stage and several write tries
  sqlite3_exec(locker, "ROLLBACK", nullptr, nullptr, nullptr);
  CHECK(others_ran);
  CHECK(committed_while_locked < 41);  // the locked-out records of o-0 held the commit point
  failing = false;
  REQUIRE(wait_until([&] { return done.count() == 41 && w.stats().parked_records == 0; }, 30s));
  CHECK(wait_until([&] { return committed_total(broker, "g-park-locked") == 41; }, 10s, 20ms));
  w.stop();
  const std::lock_guard lock(done.mu);
  std::vector<int> all(20);
  for (int i = 0; i < 20; ++i) all[static_cast<std::size_t>(i)] = i;
  CHECK(done.per_key["o-1"] == all);
  all.push_back(20);
  CHECK(done.per_key["o-0"] == all);
}

TEST_CASE("parked records round-trip on both backends: binary keys, values and headers, nulls, one row per position") {
  for (const std::string backend : {"sqlite", "postgresql"}) {
    CAPTURE(backend);
    auto rows = detail::parked_records::open(testing::fresh_store(backend, "parked_rows")).value();
    detail::parked_record a{.group = "g", .topic = "app.t.x", .partition = 2, .offset = 7,
                            .key = std::string("k\0\xff", 3), .value = std::string("v\0\x01", 3),
                            .headers = {{"h1", std::string("\0b", 2)}, {"h1", ""}},
                            .stage = 1, .due_ms = 1234, .pending = {"ship", "bill"}, .attempts = 3, .reason = "down",
                            .parked_ms = 99};
    detail::parked_record b{.group = "g", .topic = "app.t.x", .partition = 2, .offset = 9, .null_key = true,
                            .null_value = true};
    REQUIRE(rows->add(std::vector{a, b}).ok());
    auto again = a;
    again.reason = "written twice";
    REQUIRE(rows->add(std::vector{again}).ok());  // the same position: left as it was
    const auto read = rows->one("g", "app.t.x", 2, 7).value();
    REQUIRE(read.has_value());
    CHECK(read->key == a.key);
    CHECK(read->value == a.value);
    CHECK(read->headers == a.headers);
    CHECK(read->pending == a.pending);
    CHECK(read->reason == "down");
    CHECK(read->due_ms == 1234);
    const auto tombstone = rows->one("g", "app.t.x", 2, 9).value();
    REQUIRE(tombstone.has_value());
    CHECK(tombstone->null_key);
    CHECK(tombstone->null_value);
    CHECK(rows->of_partition("g", "app.t.x", 2, false).value().size() == 2);
    CHECK(rows->of_partition("g", "app.t.x", 1, false).value().empty());
    CHECK(rows->of_partition("other", "app.t.x", 2, false).value().empty());
    a.stage = 2;
    a.due_ms = 5678;
    a.pending = {"bill"};
    REQUIRE(rows->reschedule(a).ok());
    CHECK(rows->one("g", "app.t.x", 2, 7).value()->stage == 2);
    CHECK(rows->one("g", "app.t.x", 2, 7).value()->pending == std::vector<std::string>{"bill"});
    REQUIRE(rows->remove("g", "app.t.x", 2, 7).ok());
    CHECK_FALSE(rows->one("g", "app.t.x", 2, 7).value().has_value());
    CHECK(rows->list("g", "", 10).value().size() == 1);
    CHECK(rows->list("g", "app.other", 10).value().empty());
  }
}

TEST_CASE("durable stages: every worker SIGKILLed twice while records are parked: nothing lost, each key in order, each record once") {
  embedded_broker broker;
  broker.create_topic(orders, partitions);
  const std::string db = testing::fresh_sqlite_path("parking_kills");
  auto store = open_sqlite_store({.path = db});  // made before the workers: the schema exists when they open it
  const std::string out = "parking_kills.out", down = "parking_kills.down";
  std::filesystem::remove(out);
  std::ofstream(down).put('\n');  // the dependency is down until this file goes
  const std::map<std::string, std::string> env{{"EVENTBUS_PARKING_STORE", db},
                                               {"EVENTBUS_DURABLE_STAGES_MS", "300,600,1200,2400,2400,2400,2400,2400"},
                                               {"EVENTBUS_DOWN_FILE", down},
                                               {"EVENTBUS_SESSION_TIMEOUT_MS", "3000"}};
  const auto spawn_pair = [&] {
    std::vector<pid_t> pids;
    for (int i = 0; i < 2; ++i)
      pids.push_back(testing::fork_exec({EVENTBUS_WORKER_PROCESS, broker.bootstrap_servers(), "g-park-kill", orders, out, "0"}, env));
    return pids;
  };
  const auto kill_all = [](const std::vector<pid_t>& pids) {
    for (const pid_t pid : pids) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  };
  const auto parked_rows = [&] { return rows_left(store, "g-park-kill"); };
  constexpr int total = 2000, keys = 200;

  // Three generations of two workers; the first two are SIGKILLed once records are parked and
  // more keep arriving for them.
  std::map<std::string, std::pair<std::string, int>> produced;
  const auto produce = [&](int count) {
    auto more = stream(broker, count, keys, 1, produced);
    produced.insert(more.begin(), more.end());
  };
  auto workers = spawn_pair();
  produce(800);
  REQUIRE(wait_until([&] { return parked_rows() >= 100; }, 60s, 50ms));
  kill_all(workers);
  const auto before_second = parked_rows();
  workers = spawn_pair();
  produce(600);
  REQUIRE(wait_until([&] { return parked_rows() >= before_second + 100; }, 60s, 50ms));  // the second pair parks too
  kill_all(workers);
  workers = spawn_pair();
  produce(600);
  // Every record is parked (the dependency is still down) and the source commits passed them all.
  REQUIRE(wait_until([&] { return committed_total(broker, "g-park-kill") == total && parked_rows() == static_cast<std::size_t>(total); },
                     60s, 50ms));
  std::filesystem::remove(down);  // the dependency is back
  const auto handled = [&] {
    std::vector<std::string> lines;
    std::ifstream in(out);
    for (std::string line; std::getline(in, line);)
      if (line.size() == 36) lines.push_back(line);
    return lines;
  };
  REQUIRE(wait_until([&] { return handled().size() >= static_cast<std::size_t>(total) && parked_rows() == 0; }, 90s, 50ms));
  for (const pid_t pid : workers) {
    kill(pid, SIGTERM);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status));
  }

  const auto lines = handled();
  CHECK(lines.size() == static_cast<std::size_t>(total));  // no record handled twice: none succeeded before the outage ended
  std::map<std::string, std::vector<int>> per_key;
  std::set<std::string> distinct;
  for (const auto& id : lines) {
    REQUIRE(produced.contains(id));
    if (distinct.insert(id).second) per_key[produced.at(id).first].push_back(produced.at(id).second);
  }
  CHECK(distinct.size() == static_cast<std::size_t>(total));
  REQUIRE(per_key.size() == keys);
  for (const auto& entry : per_key) {
    const auto& seqs = entry.second;
    std::vector<int> expected(seqs.size());
    for (std::size_t i = 0; i < expected.size(); ++i) expected[i] = static_cast<int>(i);
    CHECK_MESSAGE(seqs == expected, "key " << entry.first << " out of order");
  }
}
