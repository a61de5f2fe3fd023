// The event store's contract, on both backends (SQLite files and a real PostgreSQL server): atomic
// appends with optimistic concurrency, idempotent retries, streamed reads, the caller's own
// transaction, and clear errors that lose nothing already stored.

#include <doctest/doctest.h>

#include <libpq-fe.h>
#include <sqlite3.h>

#include <atomic>
#include <barrier>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <thread>
#include <utility>

#include "eventbus/dispatcher.hpp"
#include "eventbus/store/event_store.hpp"
#include "eventbus/store/store_copy.hpp"
#include "eventbus/store/store_replay.hpp"
#include "store/append_rules.hpp"
#include "store/outbox_rows.hpp"
#include "store_support.hpp"
#include "test_support.hpp"

using namespace eventbus;
using namespace std::chrono_literals;

namespace {

const char* const backends[] = {"sqlite", "postgresql"};

event order_event(const std::string& type, const std::string& id, int seq, std::optional<time_point> at = std::nullopt) {
  return make_event({.event_type = type, .aggregate_type = "order", .aggregate_id = id, .payload = {{"seq", seq}},
                     .timestamp = at});
}

std::vector<stored_event> load_all(event_store& store, const std::string& id, std::int64_t from = 1) {
  std::vector<stored_event> out;
  REQUIRE(store.load("order", id, from, [&](const stored_event& e) {
    out.push_back(e);
    return true;
  }).ok());
  return out;
}

std::int64_t count_all(event_store& store, read_filter filter = {}) {
  std::int64_t n = 0;
  REQUIRE(store.read_all(filter, [&](const stored_event&) {
    ++n;
    return true;
  }).ok());
  return n;
}

}  // namespace

TEST_CASE("append assigns versions and positions, and load reads an aggregate back from a version") {
  for (const std::string backend : backends) {
    CAPTURE(backend);
    auto store = testing::fresh_store(backend, "versions");
    const std::vector<event> first{order_event("order.created", "o-1", 0), order_event("order.paid", "o-1", 1)};
    const auto a = store->append("order", "o-1", eventbus::expected_version::none(), first);
    REQUIRE(a.ok());
    CHECK(a.value().version == 2);
    CHECK(a.value().last_position == a.value().first_position + 1);
    const std::vector<event> other{order_event("order.created", "o-2", 0)};
    REQUIRE(store->append("order", "o-2", eventbus::expected_version::none(), other).ok());
    const std::vector<event> second{order_event("order.shipped", "o-1", 2)};
    const auto b = store->append("order", "o-1", eventbus::expected_version::exactly(2), second);
    REQUIRE(b.ok());
    CHECK(b.value().version == 3);
    CHECK(b.value().first_position > a.value().last_position);

    const auto all = load_all(*store, "o-1");
    REQUIRE(all.size() == 3);
    for (std::size_t i = 0; i < all.size(); ++i) CHECK(all[i].version == static_cast<std::int64_t>(i + 1));
    CHECK(all[0].ev == first[0]);  // byte for byte the same envelope
    CHECK(all[2].ev.event_type() == "order.shipped");
    const auto from_two = load_all(*store, "o-1", 2);
    REQUIRE(from_two.size() == 2);
    CHECK(from_two[0].version == 2);
    CHECK(store->version_of("order", "o-1").value() == 3);
    CHECK(store->version_of("order", "nobody").value() == 0);
  }
}

TEST_CASE("two writers on one aggregate: exactly one wins, the other hears the current version") {
  for (const std::string backend : backends) {
    CAPTURE(backend);
    auto store = testing::fresh_store(backend, "race");
    auto other = testing::same_store(backend, "race");  // a second service instance
    const std::vector<event> seed{order_event("order.created", "o-1", 0)};
    REQUIRE(store->append("order", "o-1", eventbus::expected_version::none(), seed).ok());
    for (int round = 0; round < 20; ++round) {
      const auto expected = store->version_of("order", "o-1").value();
      std::barrier start(2);
      std::optional<result<append_result>> left, right;
      std::thread a([&] {
        const std::vector<event> e{order_event("order.paid", "o-1", round)};
        start.arrive_and_wait();
        left.emplace(store->append("order", "o-1", eventbus::expected_version::exactly(expected), e));
      });
      std::thread b([&] {
        const std::vector<event> e{order_event("order.paid", "o-1", round)};
        start.arrive_and_wait();
        right.emplace(other->append("order", "o-1", eventbus::expected_version::exactly(expected), e));
      });
      a.join();
      b.join();
      CAPTURE(round);
      REQUIRE(left->ok() != right->ok());  // exactly one
      const auto& lost = left->ok() ? *right : *left;
      CHECK_MESSAGE(lost.error().code() == errc::concurrency_conflict, lost.error().to_string());
      CHECK(lost.error().message().find("is at version " + std::to_string(expected + 1)) != std::string::npos);
    }
    CHECK(store->version_of("order", "o-1").value() == 21);
    CHECK(load_all(*store, "o-1").size() == 21);
  }
}

TEST_CASE("appending the same event ids again is an idempotent no-op, not a duplicate") {
  for (const std::string backend : backends) {
    CAPTURE(backend);
    auto store = testing::fresh_store(backend, "retry");
    const std::vector<event> batch{order_event("order.created", "o-1", 0), order_event("order.paid", "o-1", 1)};
    const auto first = store->append("order", "o-1", eventbus::expected_version::none(), batch);
    REQUIRE(first.ok());
    // A retry after a timeout, with the version the caller had then.
    const auto again = store->append("order", "o-1", eventbus::expected_version::none(), batch);
    REQUIRE(again.ok());
    CHECK(again.value().already_stored);
    CHECK(again.value().version == 2);
    CHECK(count_all(*store) == 2);
    // Half stored, half new: not something a retry produces; refused, nothing written.
    const std::vector<event> mixed{batch[1], order_event("order.shipped", "o-1", 2)};
    const auto refused = store->append("order", "o-1", eventbus::expected_version::exactly(2), mixed);
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.error().code() == errc::invalid_event);
    CHECK(count_all(*store) == 2);
  }
}

TEST_CASE("bad appends get clear errors and store nothing") {
  for (const std::string backend : backends) {
    CAPTURE(backend);
    auto store = testing::fresh_store(backend, "bad_input");
    const std::vector<event> seed{order_event("order.created", "o-1", 0)};
    REQUIRE(store->append("order", "o-1", eventbus::expected_version::none(), seed).ok());
    const auto field_of = [&](std::string_view type, std::string_view id, std::int64_t expected, std::vector<event> events) {
      const auto r = store->append(type, id, eventbus::expected_version::exactly(expected), events);
      REQUIRE_FALSE(r.ok());
      return r.error().field();
    };
    CHECK(field_of("order", "o-1", 1, {}) == "events");
    CHECK(field_of("order", "o-2", 1, {order_event("order.paid", "o-1", 1)}) == "events[0]");  // another aggregate
    // A negative version cannot even be expressed: the type refuses it, naming itself.
    try {
      (void)expected_version::exactly(-5);
      FAIL("expected_version::exactly(-5) was accepted");
    } catch (const exception& e) {
      CHECK(e.error().field() == "expected_version");
      CHECK(e.error().message().find("-5") != std::string::npos);
    }
    CHECK(expected_version::exactly(0) == expected_version::none());
    CHECK(expected_version::any().is_any());
    const auto twice = order_event("order.paid", "o-1", 1);
    CHECK(field_of("order", "o-1", 1, {twice, twice}) == "events[1]");
    // Larger than a Kafka record may be: refused at append, not stuck in the outbox later.
    auto big = make_event({.event_type = "order.paid", .aggregate_type = "order", .aggregate_id = "o-1",
                           .payload = {{"blob", std::string(max_stored_event_bytes, 'x')}}});
    CHECK(field_of("order", "o-1", 1, {big}) == "events[0]");
    // An envelope that fits, with a header (correlation_id) or key that takes the record over.
    const std::string half(520 * 1024, 'c');
    auto fat_header = make_event({.event_type = "order.paid", .aggregate_type = "order", .aggregate_id = "o-1",
                                  .payload = {{"note", std::string(300 * 1024, 'x')}}, .correlation_id = half});
    CHECK(encode_event(fat_header).size() < max_stored_event_bytes);
    CHECK(field_of("order", "o-1", 1, {fat_header}) == "events[0]");
    // A type and an aggregate type each legal alone, whose topic is longer than Kafka allows.
    const std::string long_type = "order." + std::string(190, 'x');
    const std::string long_aggregate(60, 'a');
    auto long_topic = make_event({.event_type = long_type, .aggregate_type = long_aggregate, .aggregate_id = "o-1"});
    const auto refused = store->append(long_aggregate, "o-1", eventbus::expected_version::none(), std::vector<event>{long_topic});
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.error().code() == errc::invalid_event);
    CHECK(refused.error().message().find("topic") != std::string::npos);
    CHECK(count_all(*store) == 1);
    CHECK(load_all(*store, "o-1").size() == 1);
  }
}

TEST_CASE("NUL bytes are refused in ids on every backend and in every read, and payloads holding U+0000 are stored exactly") {
  using namespace std::string_literals;
  // "x\0one" and "x" were one aggregate to PostgreSQL (a text parameter ends at NUL).
  const auto nul_id = "x\0one"s;
  try {
    (void)make_event({.event_type = "order.created", .aggregate_type = "order", .aggregate_id = nul_id});
    FAIL("an aggregate id with a NUL byte was accepted");
  } catch (const exception& e) {
    CHECK(e.error().field() == "aggregate_id");
    CHECK(e.error().message().find("NUL") != std::string::npos);
  }
  CHECK_THROWS_AS((void)make_event({.event_type = "order.created", .aggregate_type = "order", .aggregate_id = "o",
                                    .correlation_id = "c\0d"s}),
                  exception);
  for (const std::string backend : backends) {
    CAPTURE(backend);
    auto store = testing::fresh_store(backend, "nul_bytes");
    const std::vector<event> x{make_event({.event_type = "order.created", .aggregate_type = "order", .aggregate_id = "x",
                                           .payload = {{"text", "a\0b"s}}})};
    const auto stored = store->append("order", "x", eventbus::expected_version::none(), x);
    REQUIRE_MESSAGE(stored.ok(), stored.error().to_string());
    const auto loaded = load_all(*store, "x");
    REQUIRE(loaded.size() == 1);
    CHECK(loaded[0].ev.payload().at("text").get<std::string>() == "a\0b"s);
    // Reads naming an id with a NUL are refused, not answered with x's history.
    const auto refused = store->load("order", nul_id, 1, [](const stored_event&) { return true; });
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.error().code() == errc::invalid_argument);
    CHECK(refused.error().field() == "aggregate_id");
    CHECK_FALSE(store->version_of("order", nul_id).ok());
    CHECK_FALSE(store->read_all({.aggregate_type = "order", .aggregate_id = nul_id}, [](const stored_event&) { return true; }).ok());
    CHECK_FALSE(store->append("order", nul_id, eventbus::expected_version::any(), x).ok());
    CHECK(count_all(*store) == 1);
  }
  // PostgreSQL keeps such a payload out of the JSONB column (which cannot hold U+0000); the
  // envelope, what is loaded and published, has it.
  PGconn* conn = PQconnectdb(testing::postgres_dsn_of("nul_bytes").c_str());
  REQUIRE(PQstatus(conn) == CONNECTION_OK);
  PGresult* r = PQexec(conn, "SELECT payload IS NULL FROM event_store");
  REQUIRE(PQntuples(r) == 1);
  CHECK(std::string_view(PQgetvalue(r, 0, 0)) == "t");
  PQclear(r);
  PQfinish(conn);
}

TEST_CASE("sqlite: a store file deleted while open fails every later write and check(), instead of losing them") {
  const auto path = testing::fresh_sqlite_path("deleted_while_open");
  auto store = open_sqlite_store({.path = path});
  const std::vector<event> first{order_event("order.created", "o-1", 0)};
  REQUIRE(store->append("order", "o-1", eventbus::expected_version::none(), first).ok());
  REQUIRE(store->check().ok());
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);
  const std::vector<event> next{order_event("order.paid", "o-1", 1)};
  const auto refused = store->append("order", "o-1", eventbus::expected_version::exactly(1), next);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().code() == errc::store_failed);
  CHECK(refused.error().message().find("deleted") != std::string::npos);
  CHECK(refused.error().message().find(path) != std::string::npos);
  CHECK_FALSE(store->check().ok());
  CHECK_FALSE(store->mark_published(std::vector<std::int64_t>{1}).ok());
  CHECK_FALSE(store->hold_relay_lease("relay", 1s).ok());
  // Replaced by another file of the same name: still refused (it is not the file this store wrote).
  { auto other = open_sqlite_store({.path = path}); }
  CHECK_FALSE(store->append("order", "o-1", eventbus::expected_version::exactly(1), next).ok());
}

TEST_CASE("sqlite: writes refused while another process holds the write lock leave the store usable once it lets go") {
  // The store's BEGIN/COMMIT and the relay's lease and marks are prepared once and kept: one that
  // got SQLITE_BUSY must not stay active (an active BEGIN left the next autocommit write, a lease
  // renewal, uncommitted, and made every later COMMIT fail with "SQL statements in progress").
  const auto path = testing::fresh_sqlite_path("busy_then_free");
  auto store = open_sqlite_store({.path = path, .busy_timeout = 50ms});
  const std::vector<event> first{order_event("order.created", "o-1", 0), order_event("order.paid", "o-1", 1)};
  REQUIRE(store->append("order", "o-1", eventbus::expected_version::none(), first).ok());
  REQUIRE(store->hold_relay_lease("relay-a", 10s).ok());

  sqlite3* raw = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &raw) == SQLITE_OK);
  const std::unique_ptr<sqlite3, int (*)(sqlite3*)> other(raw, sqlite3_close);  // closed (its lock let go) on any failure
  const auto named_lock = [&](const error& e) {
    return e.message().find("locked") != std::string::npos && e.message().find(path) != std::string::npos;
  };
  REQUIRE(sqlite3_exec(other.get(), "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK);
  for (int attempt = 0; attempt < 2; ++attempt) {  // twice: the first failure must not poison the second
    CHECK_FALSE(store->hold_relay_lease("relay-a", 10s).ok());
    const auto marked = store->mark_published(std::vector<std::int64_t>{1});
    REQUIRE_FALSE(marked.ok());
    CHECK(named_lock(marked.error()));
    const std::vector<event> refused{order_event("order.refunded", "o-1", 9)};
    const auto appended = store->append("order", "o-1", eventbus::expected_version::exactly(2), refused);
    REQUIRE_FALSE(appended.ok());
    CHECK(named_lock(appended.error()));
    const auto saved = store->save_snapshot({.aggregate_type = "order", .aggregate_id = "o-1", .version = 2, .state = "{}"});
    REQUIRE_FALSE(saved.ok());
    CHECK(named_lock(saved.error()));
  }
  // The last refusal above was a transaction's BEGIN; the next write is the lease's, in autocommit.
  REQUIRE(sqlite3_exec(other.get(), "COMMIT", nullptr, nullptr, nullptr) == SQLITE_OK);
  const auto renewals = [&] {
    sqlite3_stmt* row = nullptr;
    std::int64_t n = -1;
    if (sqlite3_prepare_v2(other.get(), "SELECT renewals FROM eventbus_relay_lease WHERE id = 1", -1, &row, nullptr) ==
            SQLITE_OK &&
        sqlite3_step(row) == SQLITE_ROW)
      n = sqlite3_column_int64(row, 0);
    sqlite3_finalize(row);
    return n;
  };
  const std::int64_t before = renewals();
  const auto held = store->hold_relay_lease("relay-a", 10s);
  REQUIRE(held.ok());
  CHECK(held.value());
  CHECK(renewals() == before + 1);  // committed: another connection reads it

  // Another process writes meanwhile: this store's next transactions must see it, not a snapshot.
  REQUIRE(sqlite3_exec(other.get(), "UPDATE eventbus_relay_lease SET renewals = renewals + 100 WHERE id = 1", nullptr,
                       nullptr, nullptr) == SQLITE_OK);
  const std::vector<event> next{order_event("order.shipped", "o-1", 2)};
  const auto appended = store->append("order", "o-1", eventbus::expected_version::exactly(2), next);
  CHECK_MESSAGE(appended.ok(), (appended.ok() ? "" : appended.error().to_string()));
  REQUIRE(store->hold_relay_lease("relay-a", 10s).ok());
  CHECK(renewals() == before + 102);
  CHECK(store->mark_published(std::vector<std::int64_t>{1}).ok());
  const auto saved = store->save_snapshot({.aggregate_type = "order", .aggregate_id = "o-1", .version = 3, .state = "{}"});
  REQUIRE(saved.ok());
  CHECK(saved.value());
  const auto left = store->unpublished(10);
  REQUIRE(left.ok());
  REQUIRE(left->size() == 2);
  CHECK(left->at(0).position == 2);
  CHECK(left->at(1).position == 3);
  const auto backlog = store->backlog();
  REQUIRE(backlog.ok());
  CHECK(backlog->events == 2);
}

TEST_CASE("read-only opens create nothing, refuse files and databases that are not stores, and write nothing") {
  // SQLite: a mistyped path is named, and not created.
  const auto missing = testing::fresh_sqlite_path("no_such_store");
  try {
    (void)open_sqlite_store({.path = missing, .read_only = true});
    FAIL("opened a store that does not exist");
  } catch (const exception& e) {
    CHECK(e.error().code() == errc::store_failed);
    CHECK(e.error().message().find(missing) != std::string::npos);
    CHECK(e.error().message().find("does not exist") != std::string::npos);
  }
  CHECK_FALSE(std::filesystem::exists(missing));
  // Another application's SQLite file is refused and left as it was.
  const auto foreign = testing::fresh_sqlite_path("foreign_app");
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(foreign.c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, "CREATE TABLE customers (id INTEGER PRIMARY KEY)", nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
  }
  CHECK_THROWS_WITH_AS((void)open_sqlite_store({.path = foreign, .read_only = true}),
                       doctest::Contains("not an eventbus event store"), exception);
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(foreign.c_str(), &db) == SQLITE_OK);
    sqlite3_stmt* count = nullptr;
    REQUIRE(sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'", -1, &count, nullptr) == SQLITE_OK);
    REQUIRE(sqlite3_step(count) == SQLITE_ROW);
    CHECK(sqlite3_column_int(count, 0) == 1);  // customers only
    sqlite3_finalize(count);
    sqlite3_close(db);
  }
  // A store: read, never written.
  const auto path = testing::fresh_sqlite_path("read_only_store");
  {
    auto writable = open_sqlite_store({.path = path});
    const std::vector<event> one{order_event("order.created", "o-1", 0)};
    REQUIRE(writable->append("order", "o-1", eventbus::expected_version::none(), one).ok());
  }
  auto reader = open_sqlite_store({.path = path, .read_only = true});
  CHECK(load_all(*reader, "o-1").size() == 1);
  CHECK(reader->backlog().value().events == 1);
  const std::vector<event> two{order_event("order.paid", "o-1", 1)};
  const auto refused = reader->append("order", "o-1", eventbus::expected_version::exactly(1), two);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().code() == errc::store_failed);
  CHECK_FALSE(reader->mark_published(std::vector<std::int64_t>{1}).ok());
  CHECK(load_all(*reader, "o-1").size() == 1);

  // PostgreSQL: an empty database is refused and gets no tables; a store's is read, never written.
  (void)testing::fresh_postgres_database("read_only_empty");
  CHECK_THROWS_WITH_AS((void)open_postgres_store({.dsn = testing::postgres_dsn_of("read_only_empty"), .read_only = true}),
                       doctest::Contains("not an eventbus event store"), exception);
  PGconn* conn = PQconnectdb(testing::postgres_dsn_of("read_only_empty").c_str());
  REQUIRE(PQstatus(conn) == CONNECTION_OK);
  PGresult* tables = PQexec(conn, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'");
  CHECK(std::string_view(PQgetvalue(tables, 0, 0)) == "0");
  PQclear(tables);
  PQfinish(conn);
  auto pg_store = testing::fresh_store("postgresql", "read_only_pg");
  const std::vector<event> one{order_event("order.created", "o-1", 0)};
  REQUIRE(pg_store->append("order", "o-1", eventbus::expected_version::none(), one).ok());
  auto pg_reader = open_postgres_store({.dsn = testing::postgres_dsn_of("read_only_pg"), .read_only = true});
  CHECK(load_all(*pg_reader, "o-1").size() == 1);
  const auto pg_refused = pg_reader->append("order", "o-1", eventbus::expected_version::exactly(1), two);
  REQUIRE_FALSE(pg_refused.ok());
  CHECK(pg_refused.error().message().find("read-only") != std::string::npos);
  CHECK_FALSE(pg_reader->mark_published(std::vector<std::int64_t>{1}).ok());
  CHECK(pg_store->backlog().value().events == 1);
}

TEST_CASE("read_all streams the whole store a page at a time, from a position or a time, by type") {
  for (const std::string backend : backends) {
    CAPTURE(backend);
    auto store = testing::fresh_store(backend, "read_all");
    const time_point start = time_point(std::chrono::milliseconds(1'700'000'000'000));
    for (int batch = 0; batch < 25; ++batch) {
      std::vector<event> events;
      for (int i = 0; i < 100; ++i) {
        const int seq = batch * 100 + i;
        events.push_back(order_event(seq % 10 == 0 ? "order.cancelled" : "order.created", "o-" + std::to_string(seq), seq,
                                     start + std::chrono::seconds(seq)));
      }
      for (const auto& ev : events) {
        const std::vector<event> one{ev};
        REQUIRE(store->append("order", ev.aggregate_id(), eventbus::expected_version::none(), one).ok());
      }
    }
    std::int64_t last = 0, seen = 0;
    bool ordered = true;
    REQUIRE(store->read_all({.page_size = 100}, [&](const stored_event& e) {
      ordered = ordered && e.position > last;
      last = e.position;
      ++seen;
      return true;
    }).ok());
    CHECK(seen == 2500);
    CHECK(ordered);
    CHECK(count_all(*store, {.after_position = last - 10}) == 10);
    CHECK(count_all(*store, {.from_time = start + std::chrono::seconds(2000)}) == 500);
    CHECK(count_all(*store, {.event_type = "order.cancelled", .page_size = 7}) == 250);
    CHECK(count_all(*store, {.aggregate_type = "order", .aggregate_id = "o-42"}) == 1);
    int stopped_after = 0;
    REQUIRE(store->read_all({}, [&](const stored_event&) { return ++stopped_after < 3; }).ok());
    CHECK(stopped_after == 3);
    const auto no_type = store->read_all({.aggregate_id = "o-1"}, [](const stored_event&) { return true; });
    CHECK_FALSE(no_type.ok());
  }
}

TEST_CASE("marking published takes exactly the positions given, in runs or scattered, repeated or not") {
  for (const std::string backend : backends) {
    CAPTURE(backend);
    auto store = testing::fresh_store(backend, "mark_published");
    for (int i = 0; i < 12; ++i) {
      const std::vector<event> one{order_event("order.created", "o-" + std::to_string(i), i)};
      REQUIRE(store->append("order", one[0].aggregate_id(), eventbus::expected_version::none(), one).ok());
    }
    const std::vector<std::int64_t> marked{9, 3, 2, 4, 7, 9, 11, 12};
    REQUIRE(store->mark_published(marked).ok());
    const auto unpublished = store->unpublished(100);
    REQUIRE(unpublished.ok());
    std::vector<std::int64_t> left;
    for (const auto& e : unpublished.value()) left.push_back(e.position);
    CHECK(left == std::vector<std::int64_t>{1, 5, 6, 8, 10});
    CHECK(store->backlog().value().events == 5);
  }
}

namespace {

// One number from SQL on the store's database.
std::int64_t pg_count(const std::string& database, const char* sql) {
  PGconn* conn = PQconnectdb(testing::postgres_dsn_of(database).c_str());
  REQUIRE(PQstatus(conn) == CONNECTION_OK);
  PGresult* r = PQexec(conn, sql);
  REQUIRE(PQresultStatus(r) == PGRES_TUPLES_OK);
  const std::int64_t n = std::stoll(PQgetvalue(r, 0, 0));
  PQclear(r);
  PQfinish(conn);
  return n;
}

// Runs statements on `database` (their failure fails the test).
void pg_exec(const std::string& database, const char* sql) {
  PGconn* conn = PQconnectdb(testing::postgres_dsn_of(database).c_str());
  REQUIRE(PQstatus(conn) == CONNECTION_OK);
  PGresult* r = PQexec(conn, sql);
  const bool done = PQresultStatus(r) == PGRES_COMMAND_OK;
  const std::string why = PQresultErrorMessage(r);
  PQclear(r);
  PQfinish(conn);
  REQUIRE_MESSAGE(done, why);
}

// Takes a PostgreSQL store back to the tenth schema: the outbox's state in each event's row,
// `published_at` set when settled (published or parked), found through a partial index.
void back_to_tenth_schema(const std::string& database) {
  pg_exec(database,
          "ALTER TABLE event_store ADD COLUMN published_at TIMESTAMPTZ; "
          "UPDATE event_store SET published_at = now() WHERE position NOT IN (SELECT position FROM eventbus_outbox); "
          "CREATE INDEX event_store_unpublished ON event_store (position) WHERE published_at IS NULL; "
          "DROP TRIGGER eventbus_outbox_queue ON event_store; "
          "DROP TRIGGER eventbus_outbox_forget ON event_store; "
          "DROP TRIGGER eventbus_append_lock ON event_store; "
          "DROP FUNCTION eventbus_outbox_queue(), eventbus_outbox_forget(), eventbus_append_lock(); "
          "DROP TABLE eventbus_outbox; "
          "DELETE FROM eventbus_schema WHERE version = 11");
}

}  // namespace

TEST_CASE("the relay's reads of the outbox (PostgreSQL's made a batch ahead) return what a read made when asked would") {
  for (const std::string backend : {"sqlite", "postgresql"}) {
    CAPTURE(backend);
    auto store = testing::fresh_store(backend, "read_ahead");
    std::map<std::string, std::int64_t> millis_of;  // aggregate id -> its event's timestamp
    const auto append_one = [&](int n) {
      const std::vector<event> one{order_event("order.created", "o-" + std::to_string(n), n)};
      millis_of[one[0].aggregate_id()] = one[0].timestamp().time_since_epoch().count();
      REQUIRE(store->append("order", one[0].aggregate_id(), eventbus::expected_version::none(), one).ok());
    };
    for (int n = 1; n <= 6; ++n) append_one(n);
    detail::outbox_rows rows;
    const auto read = [&](std::size_t limit, std::int64_t after) {
      REQUIRE(detail::read_unpublished_rows(*store, limit, after, rows).ok());
      std::vector<std::int64_t> positions;
      for (const auto& row : rows.rows()) positions.push_back(row.position);
      return positions;
    };
    CHECK(read(2, 0) == std::vector<std::int64_t>{1, 2});
    CHECK(read(2, 0) == std::vector<std::int64_t>{1, 2});     // asked again from the start: not what was read ahead
    CHECK(read(3, 2) == std::vector<std::int64_t>{3, 4, 5});  // another limit
    REQUIRE(store->mark_published(std::vector<std::int64_t>{6}).ok());
    CHECK(read(2, 2) == std::vector<std::int64_t>{3, 4});
    CHECK(read(2, 4) == std::vector<std::int64_t>{5});  // 6 was marked before this was asked
    append_one(7);
    append_one(8);
    CHECK(read(2, 5) == std::vector<std::int64_t>{7, 8});
    append_one(9);  // after the read ahead of 8's successors was sent: it found nothing, so read again
    CHECK(read(2, 8) == std::vector<std::int64_t>{9});
    // A read ahead dropped (the relay does before it waits) is not used: 3 marked since.
    CHECK(read(2, 0) == std::vector<std::int64_t>{1, 2});
    detail::forget_read_ahead(*store);
    REQUIRE(store->mark_published(std::vector<std::int64_t>{3}).ok());
    CHECK(read(2, 2) == std::vector<std::int64_t>{4, 5});
    // The rows' fields, from the read ahead as from any other.
    CHECK(read(2, 0) == std::vector<std::int64_t>{1, 2});
    CHECK(read(2, 2) == std::vector<std::int64_t>{4, 5});
    REQUIRE(rows.size() == 2);
    CHECK(rows.rows()[1].record.aggregate_id == "o-5");
    CHECK(rows.rows()[1].record.event_type == "order.created");
    for (const auto& row : rows.rows()) CHECK(row.occurred_at_ms == millis_of[std::string(row.record.aggregate_id)]);
  }
  // PostgreSQL keeps microseconds (a row written by hand may have them): the record's time is
  // rounded down to the millisecond, before 1970 too.
  auto store = open_postgres_store({.dsn = testing::postgres_dsn_of("read_ahead")});
  pg_exec("read_ahead", "UPDATE event_store SET occurred_at = CASE position WHEN 1 THEN '1969-12-31 23:59:59.9995+00'::timestamptz "
                        "ELSE '2026-12-07 10:00:00.123456+00'::timestamptz END WHERE position IN (1, 2)");
  detail::outbox_rows rows;
  REQUIRE(detail::read_unpublished_rows(*store, 2, 0, rows).ok());
  REQUIRE(rows.size() == 2);
  CHECK(rows.rows()[0].occurred_at_ms == -1);
  CHECK(rows.rows()[1].occurred_at_ms == 1'796'637'600'123);
}

TEST_CASE("postgresql: the backlog's oldest event is the lowest queued one, whatever order marks come in") {
  auto store = testing::fresh_store("postgresql", "backlog_oldest");
  const auto append_one = [&](const std::string& id) {
    const std::vector<event> one{order_event("order.created", id, 1)};
    REQUIRE(store->append("order", id, eventbus::expected_version::none(), one).ok());
  };
  for (const auto* id : {"o-1", "o-2", "o-3", "o-4"}) append_one(id);
  const auto oldest_is = [&](std::optional<std::int64_t> position) {
    const auto backlog = store->backlog();
    REQUIRE(backlog.ok());
    if (!position) return !backlog->oldest.has_value();
    const std::string sql =
        "SELECT (EXTRACT(EPOCH FROM stored_at) * 1000)::bigint FROM event_store WHERE position = " + std::to_string(*position);
    return backlog->oldest.has_value() && backlog->oldest->time_since_epoch().count() == pg_count("backlog_oldest", sql.c_str());
  };
  // Stored apart, so that each position's time differs from the next one's.
  pg_exec("backlog_oldest", "UPDATE event_store SET stored_at = now() - (10 - position) * interval '1 second'");
  CHECK(oldest_is(1));
  REQUIRE(store->mark_published(std::vector<std::int64_t>{2, 3}).ok());
  CHECK(oldest_is(1));
  REQUIRE(store->mark_published(std::vector<std::int64_t>{1}).ok());
  CHECK(oldest_is(4));
  append_one("o-5");
  REQUIRE(store->park(std::vector<std::int64_t>{4}, "too large").ok());
  CHECK(oldest_is(5));
  REQUIRE(store->mark_published(std::vector<std::int64_t>{5}).ok());
  CHECK(oldest_is(std::nullopt));
  CHECK(store->backlog().value().events == 0);
  append_one("o-6");
  CHECK(oldest_is(6));
}

TEST_CASE("postgresql: the backlog is exact while appends, marks, parks and backlog reads race") {
  auto store = testing::fresh_store("postgresql", "backlog_race");
  const auto another_store = [] { return open_postgres_store({.dsn = testing::postgres_dsn_of("backlog_race")}); };
  constexpr int appenders = 3, per_appender = 150;
  std::atomic<int> appending{appenders};
  std::atomic<std::int64_t> appended{0};
  std::vector<std::thread> threads;
  // Each appender on a store of its own, as separate services are: their appends contend for
  // the append lock, not for one connection.
  for (int t = 0; t < appenders; ++t)
    threads.emplace_back([&, t, own = another_store()] {
      for (int i = 0; i < per_appender; ++i) {
        const std::vector<event> one{order_event("order.created", "o-" + std::to_string(t), i)};
        if (own->append("order", one[0].aggregate_id(), eventbus::expected_version::any(), one).ok()) ++appended;
      }
      --appending;
    });
  // A relay's work on its own store: marks most of what it reads, parks every seventh.
  std::atomic<std::int64_t> settled{0};
  threads.emplace_back([&, relay_side = another_store()] {
    for (std::int64_t after = 0; appending > 0 || settled < appended;) {
      const auto batch = relay_side->unpublished(25, after);
      if (!batch.ok()) FAIL_CHECK(batch.error().to_string());  // not REQUIRE: off the test's thread
      if (!batch.ok()) return;
      std::vector<std::int64_t> marks, parks;
      for (const auto& e : batch.value()) (e.position % 7 == 0 ? parks : marks).push_back(e.position);
      if (!batch->empty()) after = batch->back().position;
      CHECK(relay_side->mark_published(marks).ok());
      CHECK(relay_side->park(parks, "too large").ok());
      settled += static_cast<std::int64_t>(batch->size());
      if (batch->empty()) std::this_thread::yield();
    }
  });
  // Two gauges on stores of their own: their reads move the count along, racing each other; each
  // read is a count the store could have held at some moment, between nothing and everything.
  std::atomic<std::int64_t> reads{0};
  for (int g = 0; g < 2; ++g)
    threads.emplace_back([&, gauge_side = another_store()] {
      while (appending > 0) {
        const auto read = gauge_side->backlog();
        if (!read.ok()) FAIL_CHECK(read.error().to_string());
        if (!read.ok()) return;
        CHECK(read->events >= 0);
        CHECK(read->events <= appenders * per_appender);
        ++reads;
      }
    });
  for (auto& t : threads) t.join();
  CHECK(reads > 0);
  CHECK(appended == appenders * per_appender);
  CHECK(settled == appended);
  const auto after = store->backlog();
  REQUIRE(after.ok());
  CHECK(after->events == pg_count("backlog_race", "SELECT count(*) FROM eventbus_outbox"));
  CHECK(after->events == 0);
  CHECK(after->parked == pg_count("backlog_race", "SELECT count(*) FROM event_store WHERE parked_reason IS NOT NULL"));
  CHECK(after->parked == appenders * per_appender / 7);
  // What the gauges left counted is every row, exactly.
  CHECK(pg_count("backlog_race", "SELECT counted - (SELECT count(*) FROM event_store WHERE position <= counted_through) "
                                 "FROM eventbus_outbox_state") == 0);
  // More appends after the last read: counted too, by every store object, read-only ones included.
  const std::vector<event> late{order_event("order.created", "o-late", 0), order_event("order.paid", "o-late", 1)};
  REQUIRE(store->append("order", "o-late", eventbus::expected_version::none(), late).ok());
  CHECK(another_store()->backlog().value().events == 2);
  auto reader = open_postgres_store({.dsn = testing::postgres_dsn_of("backlog_race"), .read_only = true});
  CHECK(reader->backlog().value().events == 2);
  CHECK(reader->backlog().value().parked == after->parked);
}

TEST_CASE("postgresql: a store made before appends stopped counting the backlog keeps its count through the migration") {
  {
    auto store = testing::fresh_store("postgresql", "backlog_migration");
    for (int i = 0; i < 10; ++i) {
      const std::vector<event> one{order_event("order.created", "o-" + std::to_string(i), i)};
      REQUIRE(store->append("order", one[0].aggregate_id(), eventbus::expected_version::none(), one).ok());
    }
    REQUIRE(store->mark_published(std::vector<std::int64_t>{2, 4, 6}).ok());
    REQUIRE(store->park(std::vector<std::int64_t>{8}, "too large").ok());
  }
  back_to_tenth_schema("backlog_migration");
  // The row as the ninth schema kept it: the number of unpublished events (here one that drifted:
  // the migration counts the rows afresh), and a stand-in for the ninth schema's function.
  pg_exec("backlog_migration",
          "ALTER TABLE eventbus_outbox_state ADD COLUMN unpublished BIGINT NOT NULL DEFAULT 0; "
          "UPDATE eventbus_outbox_state SET unpublished = 99; "
          "CREATE OR REPLACE FUNCTION eventbus_append(ids TEXT[], types TEXT[], agg_type TEXT, agg_id TEXT, "
          "expected BIGINT, millis BIGINT[], correlations TEXT[], causations TEXT[], envelopes TEXT[], "
          "OUT current_version BIGINT, OUT already_stored BIGINT, OUT first_position BIGINT, "
          "OUT last_position BIGINT, OUT inserted BIGINT) LANGUAGE plpgsql AS $fn$ BEGIN "
          "RAISE EXCEPTION 'the ninth schema''s function, writing eventbus_outbox_state'; END $fn$; "
          "ALTER TABLE eventbus_outbox_state DROP COLUMN counted, DROP COLUMN counted_through, DROP COLUMN settled; "
          "DELETE FROM eventbus_schema WHERE version = 10");
  auto store = open_postgres_store({.dsn = testing::postgres_dsn_of("backlog_migration")});
  CHECK(pg_count("backlog_migration", "SELECT max(version) FROM eventbus_schema") == 11);
  // The function was replaced: appends no longer write the row.
  CHECK(pg_count("backlog_migration",
                 "SELECT count(*) FROM pg_proc WHERE proname = 'eventbus_append' AND prosrc LIKE '%eventbus_outbox_state%'") == 0);
  CHECK(store->backlog().value().events == 6);
  CHECK(store->backlog().value().parked == 1);
  const std::vector<event> one{order_event("order.created", "o-10", 10)};
  REQUIRE(store->append("order", "o-10", eventbus::expected_version::none(), one).ok());
  CHECK(store->backlog().value().events == 7);
  REQUIRE(store->mark_published(std::vector<std::int64_t>{1, 11}).ok());
  CHECK(store->backlog().value().events == 5);
  CHECK(store->backlog().value().events ==
        pg_count("backlog_migration", "SELECT count(*) FROM eventbus_outbox"));
}

namespace {

// The unpublished positions, oldest first.
std::vector<std::int64_t> queued_positions(outbox_store& store) {
  const auto rows = store.unpublished(100);
  REQUIRE(rows.ok());
  std::vector<std::int64_t> left;
  for (const auto& e : rows.value()) left.push_back(e.position);
  return left;
}

// What an outbox migration must leave of a store of ten events, 1-10, with 2, 3 and 7 published
// and 5 and 9 parked: 1, 4, 6, 8 and 10 queued, two parked, kept by a copy (into a store of the
// same backend); then the store goes on: a new event is queued, and marks take events out once.
void check_outbox_after_migration(outbox_store& store, const std::string& backend) {
  CHECK(queued_positions(store) == std::vector<std::int64_t>{1, 4, 6, 8, 10});
  CHECK(store.backlog().value().events == 5);
  CHECK(store.backlog().value().parked == 2);

  // A copy reads each event's state from the new tables: the same backlog and parked events.
  auto copy = testing::fresh_store(backend, "outbox_migration_copy");
  REQUIRE(copy_store(store, *copy).ok());
  CHECK(copy->backlog().value().events == 5);
  CHECK(copy->backlog().value().parked == 2);
  const auto copied_rows = copy->unpublished(100);
  REQUIRE(copied_rows.ok());
  std::vector<std::int64_t> copied_left;
  for (const auto& e : copied_rows.value()) copied_left.push_back(e.ev.aggregate_id().back() - '0');
  CHECK(copied_left == std::vector<std::int64_t>{0, 3, 5, 7, 9});  // o-0, o-3...: the events at 1, 4, 6, 8, 10

  const std::vector<event> one{order_event("order.created", "o-10", 10)};
  REQUIRE(store.append("order", "o-10", eventbus::expected_version::none(), one).ok());
  CHECK(queued_positions(store) == std::vector<std::int64_t>{1, 4, 6, 8, 10, 11});
  REQUIRE(store.mark_published(std::vector<std::int64_t>{1, 5, 9, 11}).ok());  // 5 and 9 are parked: untouched
  CHECK(queued_positions(store) == std::vector<std::int64_t>{4, 6, 8, 10});
  CHECK(store.backlog().value().events == 4);
  CHECK(store.backlog().value().parked == 2);
}

}  // namespace

namespace {

// Five events as the first schema's release wrote them (o-1 versions 1-3, o-2 versions 1-2); the
// first and fourth published.
std::vector<std::pair<event, std::int64_t>> first_schema_history() {
  return {{order_event("order.created", "o-1", 0), 1}, {order_event("order.paid", "o-1", 1), 2},
          {order_event("order.created", "o-2", 0), 1}, {order_event("order.shipped", "o-1", 2), 3},
          {order_event("order.paid", "o-2", 1), 2}};
}
bool published_in_first_schema(std::size_t i) { return i == 0 || i == 3; }

// What a store migrated from the first schema in one go must hold and do: every migration applied
// once, every event loaded as written, the unpublished ones (only they) queued, appends going on
// from each aggregate's version with their checks.
void check_migrated_from_first_schema(outbox_store& store, const std::vector<std::pair<event, std::int64_t>>& history,
                                      const std::function<std::int64_t(const char*)>& count) {
  auto* checked = dynamic_cast<detail::checked_store*>(&store);
  REQUIRE(checked != nullptr);
  const std::int64_t current = checked->schema_version_expected();
  CHECK(current > 1);
  CHECK(count("SELECT max(version) FROM eventbus_schema") == current);
  CHECK(count("SELECT count(*) FROM eventbus_schema") == current);  // each migration once
  const auto o1 = load_all(store, "o-1");
  REQUIRE(o1.size() == 3);
  CHECK(o1[0].ev == history[0].first);  // byte for byte
  CHECK(o1[1].ev == history[1].first);
  CHECK(o1[2].ev == history[3].first);
  CHECK(o1[2].version == 3);
  CHECK(queued_positions(store) == std::vector<std::int64_t>{2, 3, 5});
  CHECK(store.backlog().value().events == 3);
  CHECK(store.backlog().value().parked == 0);
  const std::vector<event> refund{order_event("order.refunded", "o-1", 3)};
  const auto stale = store.append("order", "o-1", eventbus::expected_version::exactly(2), refund);
  REQUIRE_FALSE(stale.ok());
  CHECK(stale.error().code() == errc::concurrency_conflict);
  const auto next = store.append("order", "o-1", eventbus::expected_version::exactly(3), refund);
  REQUIRE(next.ok());
  CHECK(next.value().version == 4);
  const auto again = store.append("order", "o-2", eventbus::expected_version::any(), std::vector<event>{history[2].first});
  REQUIRE(again.ok());
  CHECK(again.value().already_stored);
  CHECK(queued_positions(store) == std::vector<std::int64_t>{2, 3, 5, 6});
  REQUIRE(store.mark_published(std::vector<std::int64_t>{2, 3, 5, 6}).ok());
  CHECK(queued_positions(store).empty());
  CHECK(store.backlog().value().events == 0);
}

}  // namespace

TEST_CASE("postgresql: a store of the first schema migrates to the current one in one go, keeping its events and outbox") {
  // The first schema as the first release made it (a frozen copy: history, not the code's text).
  const std::string dsn = testing::fresh_postgres_database("first_schema");
  pg_exec("first_schema", R"sql(
    CREATE TABLE eventbus_schema (version INTEGER NOT NULL);
    INSERT INTO eventbus_schema (version) VALUES (1);
    CREATE TABLE event_store (
      position BIGSERIAL PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, event_type TEXT NOT NULL,
      aggregate_type TEXT NOT NULL, aggregate_id TEXT NOT NULL, aggregate_version BIGINT NOT NULL,
      occurred_at TIMESTAMPTZ NOT NULL, correlation_id TEXT, causation_id TEXT, payload JSONB NOT NULL,
      envelope TEXT NOT NULL, stored_at TIMESTAMPTZ NOT NULL DEFAULT now(), published_at TIMESTAMPTZ,
      UNIQUE (aggregate_type, aggregate_id, aggregate_version));
    CREATE INDEX event_store_by_type ON event_store (event_type, position);
    CREATE INDEX event_store_by_time ON event_store (occurred_at);
    CREATE INDEX event_store_unpublished ON event_store (position) WHERE published_at IS NULL;)sql");
  const auto history = first_schema_history();
  {
    PGconn* conn = PQconnectdb(dsn.c_str());
    REQUIRE(PQstatus(conn) == CONNECTION_OK);
    for (std::size_t i = 0; i < history.size(); ++i) {
      const auto& [ev, version] = history[i];
      const std::string envelope = encode_event(ev), at_version = std::to_string(version);
      const std::string millis = std::to_string(ev.timestamp().time_since_epoch().count());
      const char* published = published_in_first_schema(i) ? "yes" : nullptr;
      // The envelope twice: a parameter has one type, and as jsonb its text would be reformatted.
      const char* values[] = {ev.event_id().c_str(), ev.event_type().c_str(), ev.aggregate_id().c_str(),
                              at_version.c_str(), millis.c_str(), envelope.c_str(), envelope.c_str(), published};
      PGresult* r = PQexecParams(conn,
                                 "INSERT INTO event_store (event_id, event_type, aggregate_type, aggregate_id, "
                                 "aggregate_version, occurred_at, payload, envelope, published_at) VALUES ($1, $2, "
                                 "'order', $3, $4::bigint, to_timestamp($5::bigint / 1000.0), ($6::jsonb) -> 'payload', "
                                 "$7::text, CASE WHEN $8::text IS NULL THEN NULL ELSE now() END)",
                                 8, nullptr, values, nullptr, nullptr, 0);
      const bool inserted = PQresultStatus(r) == PGRES_COMMAND_OK;
      const std::string why = PQresultErrorMessage(r);
      PQclear(r);
      REQUIRE_MESSAGE(inserted, why);
    }
    PQfinish(conn);
  }
  auto store = open_postgres_store({.dsn = dsn});
  check_migrated_from_first_schema(*store, history, [](const char* sql) { return pg_count("first_schema", sql); });
}

TEST_CASE("postgresql: a store made before the outbox had a table of its own keeps every event's outbox state through the migration") {
  {
    auto store = testing::fresh_store("postgresql", "outbox_migration");
    for (int i = 0; i < 10; ++i) {
      const std::vector<event> one{order_event("order.created", "o-" + std::to_string(i), i)};
      REQUIRE(store->append("order", one[0].aggregate_id(), eventbus::expected_version::none(), one).ok());
    }
    REQUIRE(store->mark_published(std::vector<std::int64_t>{2, 3, 7}).ok());
    REQUIRE(store->park(std::vector<std::int64_t>{5, 9}, "too large").ok());
  }
  back_to_tenth_schema("outbox_migration");

  auto store = open_postgres_store({.dsn = testing::postgres_dsn_of("outbox_migration")});
  CHECK(pg_count("outbox_migration", "SELECT max(version) FROM eventbus_schema") == 11);
  CHECK(pg_count("outbox_migration",
                 "SELECT count(*) FROM information_schema.columns WHERE table_name = 'event_store' AND "
                 "column_name = 'published_at'") == 0);
  CHECK(pg_count("outbox_migration", "SELECT count(*) FROM event_store WHERE parked_reason = 'too large'") == 2);
  check_outbox_after_migration(*store, "postgresql");
  CHECK(pg_count("outbox_migration_copy", "SELECT count(*) FROM eventbus_outbox") == 5);
  REQUIRE(store->park(std::vector<std::int64_t>{2, 4}, "refused").ok());  // 2 is published: untouched
  CHECK(queued_positions(*store) == std::vector<std::int64_t>{6, 8, 10});
  CHECK(store->backlog().value().events == 3);
  CHECK(store->backlog().value().parked == 3);
  CHECK(pg_count("outbox_migration", "SELECT count(*) FROM event_store WHERE parked_reason = 'refused'") == 1);

  // Whatever inserts a row (an older eventbus, a hand-written load) has it queued all the same.
  const auto older = encode_event(order_event("order.created", "o-11", 11));
  const auto older_id = decode_event(older).value().event_id();
  PGconn* conn = PQconnectdb(testing::postgres_dsn_of("outbox_migration").c_str());
  REQUIRE(PQstatus(conn) == CONNECTION_OK);
  const char* values[] = {older_id.c_str(), older.c_str()};
  PGresult* r = PQexecParams(conn,
                             "INSERT INTO event_store (event_id, event_type, aggregate_type, aggregate_id, aggregate_version, "
                             "occurred_at, payload, envelope) VALUES ($1, 'order.created', 'order', 'o-11', 1, now(), "
                             "($2::jsonb) -> 'payload', $2)",
                             2, nullptr, values, nullptr, nullptr, 0);
  CHECK_MESSAGE(PQresultStatus(r) == PGRES_COMMAND_OK, PQresultErrorMessage(r));
  PQclear(r);
  PQfinish(conn);
  CHECK(queued_positions(*store) == std::vector<std::int64_t>{6, 8, 10, 12});

  // Events deleted by hand leave the queue (the relay does not stop at them), and the backlog's
  // numbers follow, whether the backlog had counted them yet or not: 1-12 counted (the read moves
  // counted_through to 12), 13 and 14 not.
  CHECK(store->backlog().value().events == 4);
  const std::vector<event> two{order_event("order.created", "o-12", 12), order_event("order.paid", "o-12", 13)};
  REQUIRE(store->append("order", "o-12", eventbus::expected_version::none(), two).ok());
  REQUIRE(store->mark_published(std::vector<std::int64_t>{13}).ok());
  // 3 published, 5 parked, 6 unpublished (all counted); 13 published, 14 unpublished (not counted).
  pg_exec("outbox_migration", "DELETE FROM event_store WHERE position IN (3, 5, 6, 13, 14)");
  CHECK(queued_positions(*store) == std::vector<std::int64_t>{8, 10, 12});
  CHECK(pg_count("outbox_migration", "SELECT count(*) FROM eventbus_outbox") == 3);
  auto reader = open_postgres_store({.dsn = testing::postgres_dsn_of("outbox_migration"), .read_only = true});
  for (auto* s : {store.get(), reader.get()}) {
    CHECK(s->backlog().value().events == 3);
    CHECK(s->backlog().value().parked == 2);  // 4 and 9
  }
  CHECK(pg_count("outbox_migration", "SELECT count(*) FROM event_store WHERE parked_reason IS NOT NULL") == 2);
}

namespace {

// One number from SQL on a SQLite file.
std::int64_t sqlite_count(const std::string& path, const char* sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE_MESSAGE(sqlite3_prepare_v2(db, sql, -1, &st, nullptr) == SQLITE_OK, sqlite3_errmsg(db));
  REQUIRE(sqlite3_step(st) == SQLITE_ROW);
  const std::int64_t n = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return n;
}

}  // namespace

TEST_CASE("sqlite: a store of the first schema migrates to the current one in one go, keeping its events and outbox") {
  const std::string path = testing::fresh_sqlite_path("first_schema");
  const auto history = first_schema_history();
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    // The first schema as the first release made it (a frozen copy: history, not the code's text).
    char* failed = nullptr;
    const int made = sqlite3_exec(db, R"sql(
      CREATE TABLE eventbus_schema (version INTEGER NOT NULL);
      INSERT INTO eventbus_schema (version) VALUES (1);
      CREATE TABLE event_store (
        position INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE, event_type TEXT NOT NULL,
        aggregate_type TEXT NOT NULL, aggregate_id TEXT NOT NULL, aggregate_version INTEGER NOT NULL,
        occurred_at_ms INTEGER NOT NULL, correlation_id TEXT, causation_id TEXT, envelope TEXT NOT NULL,
        stored_at_ms INTEGER NOT NULL, published INTEGER NOT NULL DEFAULT 0,
        UNIQUE (aggregate_type, aggregate_id, aggregate_version));
      CREATE INDEX event_store_by_type ON event_store (event_type, position);
      CREATE INDEX event_store_by_time ON event_store (occurred_at_ms);
      CREATE INDEX event_store_unpublished ON event_store (position) WHERE published = 0;
      CREATE TABLE eventbus_relay_lease (id INTEGER PRIMARY KEY CHECK (id = 1), owner TEXT NOT NULL,
                                         expires_at_ms INTEGER NOT NULL);)sql",
                                  nullptr, nullptr, &failed);
    const std::string why = failed ? failed : "";
    sqlite3_free(failed);
    REQUIRE_MESSAGE(made == SQLITE_OK, why);
    sqlite3_stmt* insert = nullptr;
    REQUIRE(sqlite3_prepare_v2(db,
                               "INSERT INTO event_store (event_id, event_type, aggregate_type, aggregate_id, "
                               "aggregate_version, occurred_at_ms, envelope, stored_at_ms, published) "
                               "VALUES (?1, ?2, 'order', ?3, ?4, ?5, ?6, ?5, ?7)",
                               -1, &insert, nullptr) == SQLITE_OK);
    for (std::size_t i = 0; i < history.size(); ++i) {
      const auto& [ev, version] = history[i];
      const std::string envelope = encode_event(ev);
      sqlite3_bind_text(insert, 1, ev.event_id().c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_text(insert, 2, ev.event_type().c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_text(insert, 3, ev.aggregate_id().c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_int64(insert, 4, version);
      sqlite3_bind_int64(insert, 5, ev.timestamp().time_since_epoch().count());
      sqlite3_bind_text(insert, 6, envelope.c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_int(insert, 7, published_in_first_schema(i) ? 1 : 0);
      CHECK_MESSAGE(sqlite3_step(insert) == SQLITE_DONE, sqlite3_errmsg(db));
      sqlite3_reset(insert);
    }
    sqlite3_finalize(insert);
    sqlite3_close(db);
  }
  auto store = open_sqlite_store({.path = path});
  check_migrated_from_first_schema(*store, history, [&](const char* sql) { return sqlite_count(path, sql); });
}

TEST_CASE("sqlite: a store made before the outbox had a table of its own keeps every event's outbox state through the migration") {
  const auto path = testing::fresh_sqlite_path("outbox_migration");
  {
    auto store = open_sqlite_store({.path = path});
    for (int i = 0; i < 10; ++i) {
      const std::vector<event> one{order_event("order.created", "o-" + std::to_string(i), i)};
      REQUIRE(store->append("order", one[0].aggregate_id(), eventbus::expected_version::none(), one).ok());
    }
    REQUIRE(store->mark_published(std::vector<std::int64_t>{2, 3, 7}).ok());
    REQUIRE(store->park(std::vector<std::int64_t>{5}, "too large").ok());
  }
  // Back to the sixth schema: the outbox state in each event's row (0 unpublished, 1 published,
  // 2 parked), found through a partial index. Position 9 parked with no reason kept.
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  char* why = nullptr;
  const int rc = sqlite3_exec(db,
                              "ALTER TABLE event_store ADD COLUMN published INTEGER NOT NULL DEFAULT 0; "
                              "UPDATE event_store SET published = CASE WHEN position IN (SELECT position FROM eventbus_outbox) "
                              "THEN 0 WHEN parked_reason IS NOT NULL THEN 2 ELSE 1 END; "
                              "UPDATE event_store SET published = 2 WHERE position = 9; "
                              "UPDATE eventbus_outbox_state SET unpublished = unpublished - 1, parked = parked + 1; "
                              "CREATE INDEX event_store_unpublished ON event_store (position) WHERE published = 0; "
                              "DROP TRIGGER eventbus_outbox_queue; "
                              "DROP TABLE eventbus_outbox; "
                              "DELETE FROM eventbus_schema WHERE version = 7",
                              nullptr, nullptr, &why);
  REQUIRE_MESSAGE(rc == SQLITE_OK, (why ? why : ""));
  sqlite3_close(db);

  auto store = open_sqlite_store({.path = path});
  CHECK(sqlite_count(path, "SELECT max(version) FROM eventbus_schema") == 7);
  CHECK(sqlite_count(path, "SELECT count(*) FROM pragma_table_info('event_store') WHERE name = 'published'") == 0);
  CHECK(sqlite_count(path, "SELECT count(*) FROM event_store WHERE parked_reason IS NOT NULL") == 2);
  check_outbox_after_migration(*store, "sqlite");

  // An older eventbus still appending to the file knows nothing of eventbus_outbox: its events
  // are queued all the same.
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  const auto older = encode_event(order_event("order.created", "o-11", 11));
  sqlite3_stmt* insert = nullptr;
  REQUIRE(sqlite3_prepare_v2(db,
                             "INSERT INTO event_store (event_id, event_type, aggregate_type, aggregate_id, aggregate_version, "
                             "occurred_at_ms, envelope, stored_at_ms) VALUES (?1, 'order.created', 'order', 'o-11', 1, 0, ?2, 0)",
                             -1, &insert, nullptr) == SQLITE_OK);
  const auto older_id = decode_event(older).value().event_id();
  sqlite3_bind_text(insert, 1, older_id.c_str(), -1, SQLITE_STATIC);
  sqlite3_bind_text(insert, 2, older.c_str(), -1, SQLITE_STATIC);
  CHECK(sqlite3_step(insert) == SQLITE_DONE);
  sqlite3_finalize(insert);
  sqlite3_close(db);
  CHECK(queued_positions(*store) == std::vector<std::int64_t>{4, 6, 8, 10, 12});
}

TEST_CASE("a stored event reads back with its stored bytes as its wire form: published as is") {
  const auto path = testing::fresh_sqlite_path("as_stored");
  auto store = open_sqlite_store({.path = path});
  const std::vector<event> one{order_event("order.created", "o-1", 7)};
  REQUIRE(store->append("order", "o-1", eventbus::expected_version::none(), one).ok());
  // The same envelope written another valid way (spaces, another key order), as an older writer might have.
  std::string other = encode_event(one[0]);
  other.insert(1, " ");
  other.replace(other.find("{\"seq\":7}"), 9, "{ \"seq\" : 7 }");
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  sqlite3_stmt* update = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "UPDATE event_store SET envelope = ?1", -1, &update, nullptr) == SQLITE_OK);
  sqlite3_bind_text(update, 1, other.data(), static_cast<int>(other.size()), SQLITE_STATIC);
  REQUIRE(sqlite3_step(update) == SQLITE_DONE);
  sqlite3_finalize(update);
  sqlite3_close(db);

  const auto loaded = load_all(*store, "o-1");
  REQUIRE(loaded.size() == 1);
  CHECK(encode_event(loaded[0].ev) == other);
  CHECK(loaded[0].ev.payload() == nlohmann::json{{"seq", 7}});
  CHECK(loaded[0].ev.event_id() == one[0].event_id());
  const auto pending = store->unpublished(10);
  REQUIRE(pending.ok());
  REQUIRE(pending.value().size() == 1);
  CHECK(encode_event(pending.value()[0].ev) == other);
}

TEST_CASE("sqlite: the service's own rows and its events commit together, or not at all") {
  const auto path = testing::fresh_sqlite_path("unit_of_work");
  auto store = open_sqlite_store({.path = path});
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  REQUIRE(sqlite3_exec(db, "CREATE TABLE orders (id TEXT PRIMARY KEY, total INTEGER)", nullptr, nullptr, nullptr) == SQLITE_OK);
  const std::vector<event> created{order_event("order.created", "o-1", 0)};
  CHECK(append_in_transaction(db, "order", "o-1", eventbus::expected_version::none(), created).error().field() == "db");  // no BEGIN: refused

  REQUIRE(sqlite3_exec(db, "BEGIN; INSERT INTO orders VALUES ('o-1', 5)", nullptr, nullptr, nullptr) == SQLITE_OK);
  REQUIRE(append_in_transaction(db, "order", "o-1", eventbus::expected_version::none(), created).ok());
  REQUIRE(sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr) == SQLITE_OK);
  CHECK(count_all(*store) == 0);
  CHECK(store->backlog().value().events == 0);  // the outbox's count rolled back with the rows

  REQUIRE(sqlite3_exec(db, "BEGIN; INSERT INTO orders VALUES ('o-1', 5)", nullptr, nullptr, nullptr) == SQLITE_OK);
  REQUIRE(append_in_transaction(db, "order", "o-1", eventbus::expected_version::none(), created).ok());
  REQUIRE(sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr) == SQLITE_OK);
  CHECK(count_all(*store) == 1);
  CHECK(store->backlog().value().events == 1);
  sqlite3_close(db);
}

TEST_CASE("postgresql: the service's own rows and its events commit together, or not at all") {
  auto store = testing::fresh_store("postgresql", "unit_of_work");
  PGconn* conn = PQconnectdb(testing::postgres_dsn_of("unit_of_work").c_str());
  REQUIRE(PQstatus(conn) == CONNECTION_OK);
  PQclear(PQexec(conn, "CREATE TABLE orders (id TEXT PRIMARY KEY, total INTEGER)"));
  const std::vector<event> created{order_event("order.created", "o-1", 0)};
  CHECK(append_in_transaction(conn, "order", "o-1", eventbus::expected_version::none(), created).error().field() == "conn");

  PQclear(PQexec(conn, "BEGIN; INSERT INTO orders VALUES ('o-1', 5)"));
  REQUIRE(append_in_transaction(conn, "order", "o-1", eventbus::expected_version::none(), created).ok());
  PQclear(PQexec(conn, "ROLLBACK"));
  CHECK(count_all(*store) == 0);

  PQclear(PQexec(conn, "BEGIN; INSERT INTO orders VALUES ('o-1', 5)"));
  REQUIRE(append_in_transaction(conn, "order", "o-1", eventbus::expected_version::none(), created).ok());
  PQclear(PQexec(conn, "COMMIT"));
  CHECK(count_all(*store) == 1);
  CHECK(store->backlog().value().events == 1);  // counted in the caller's transaction (and not by the rollback)
  PGresult* rows = PQexec(conn, "SELECT payload->>'seq' FROM event_store");  // payloads are JSONB
  REQUIRE(PQntuples(rows) == 1);
  CHECK(std::string(PQgetvalue(rows, 0, 0)) == "0");
  PQclear(rows);
  PQfinish(conn);
}

TEST_CASE("a database that goes read-only or away: clear errors, and nothing stored before is lost") {
  auto store = testing::fresh_store("postgresql", "read_only");
  const std::vector<event> kept{order_event("order.created", "o-1", 0)};
  REQUIRE(store->append("order", "o-1", eventbus::expected_version::none(), kept).ok());
  PGconn* admin = PQconnectdb(testing::postgres_dsn_of("read_only").c_str());
  REQUIRE(PQstatus(admin) == CONNECTION_OK);
  // Read-only for every session, this store's included (its connection is cut and comes back).
  PQclear(PQexec(admin, "ALTER DATABASE eb_read_only SET default_transaction_read_only = on"));
  PQclear(PQexec(admin, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = 'eb_read_only' AND pid <> pg_backend_pid()"));
  const std::vector<event> next{order_event("order.paid", "o-1", 1)};
  auto refused = store->append("order", "o-1", eventbus::expected_version::exactly(1), next);
  if (refused.ok()) FAIL("append succeeded on a read-only database");
  CHECK(refused.error().code() == errc::store_failed);
  refused = store->append("order", "o-1", eventbus::expected_version::exactly(1), next);  // reconnected, still read-only
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().message().find("read-only") != std::string::npos);
  PQclear(PQexec(admin, "ALTER DATABASE eb_read_only SET default_transaction_read_only = off"));
  PQfinish(admin);
  // Gone: the database takes no connection. The readiness check (check()) says so and names the
  // store; once the database is back it passes again.
  PGconn* server = PQconnectdb(testing::postgres_dsn().c_str());
  REQUIRE(PQstatus(server) == CONNECTION_OK);
  PQclear(PQexec(server, "ALTER DATABASE eb_read_only WITH ALLOW_CONNECTIONS false"));
  PQclear(PQexec(server, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'eb_read_only'"));
  const auto gone = store->check();
  REQUIRE_FALSE(gone.ok());
  CHECK(gone.error().code() == errc::store_failed);
  CHECK_FALSE(store->append("order", "o-1", eventbus::expected_version::exactly(1), next).ok());
  PQclear(PQexec(server, "ALTER DATABASE eb_read_only WITH ALLOW_CONNECTIONS true"));
  PQfinish(server);
  CHECK(store->check().ok());
  // Back: the append goes through on a new connection, and the first event is still there.
  bool stored = false;
  for (int i = 0; i < 3 && !stored; ++i) stored = store->append("order", "o-1", eventbus::expected_version::exactly(1), next).ok();
  CHECK(stored);
  CHECK(load_all(*store, "o-1").size() == 2);

  // A SQLite file that cannot be opened is named.
  try {
    (void)open_sqlite_store({.path = "/nonexistent-dir/x.db"});
    FAIL("opened a store in a directory that does not exist");
  } catch (const exception& e) {
    CHECK(e.error().code() == errc::store_failed);
    CHECK(e.error().message().find("/nonexistent-dir/x.db") != std::string::npos);
  }
  // A DSN is never echoed in errors (it may hold a password).
  try {
    (void)open_postgres_store({.dsn = "host=127.0.0.1 port=1 user=u password=hunter2 connect_timeout=1"});
    FAIL("connected to nothing");
  } catch (const exception& e) {
    CHECK(e.error().code() == errc::store_failed);
    CHECK(e.error().message().find("hunter2") == std::string::npos);
  }
}

TEST_CASE("migrations are versioned and run once, whatever number of instances open the store") {
  for (const std::string backend : backends) {
    CAPTURE(backend);
    auto first = testing::fresh_store(backend, "migrations");
    std::vector<std::shared_ptr<outbox_store>> more;
    std::vector<std::thread> openers;
    std::mutex mu;
    for (int i = 0; i < 4; ++i)
      openers.emplace_back([&] {
        auto s = testing::same_store(backend, "migrations");
        const std::lock_guard lock(mu);
        more.push_back(std::move(s));
      });
    for (auto& t : openers) t.join();
    CHECK(more.size() == 4);
    const std::vector<event> one{order_event("order.created", "o-1", 0)};
    REQUIRE(more[0]->append("order", "o-1", eventbus::expected_version::none(), one).ok());
    CHECK(count_all(*first) == 1);
  }
}

TEST_CASE("replay_to_handlers runs stored events through a dispatcher's handlers in store order, storing nothing again") {
  for (const std::string backend : backends) {
    CAPTURE(backend);
    auto store = testing::fresh_store(backend, "replay_handlers");
    for (int i = 0; i < 30; ++i) {
      const std::vector<event> one{order_event(i % 3 == 0 ? "order.paid" : "order.created", "o-" + std::to_string(i % 4), i)};
      REQUIRE(store->append("order", "o-" + std::to_string(i % 4), eventbus::expected_version::any(), one).ok());
    }
    const std::vector<event> other{make_event({.event_type = "user.created", .aggregate_type = "user", .aggregate_id = "u-1"})};
    REQUIRE(store->append("user", "u-1", eventbus::expected_version::none(), other).ok());

    // A thread-pool dispatcher with the store: replay must still run inline and store nothing.
    dispatcher handlers({.store = store});
    std::vector<int> seen;  // run_handlers is inline: no lock needed
    auto record = handlers.subscribe("order.*", "record", [&](const event& ev) { seen.push_back(ev.payload()["seq"].get<int>()); });
    auto picky = handlers.subscribe("order.paid", "picky", [](const event& ev) {
      if (ev.payload()["seq"].get<int>() == 9) throw std::runtime_error("cannot take seq 9");
    });
    std::uint64_t progress_calls = 0;
    const auto replayed = replay_to_handlers(*store, handlers, {.filter = {.aggregate_type = "order"},
                                                                .progress = [&](const store_replay_summary&) { ++progress_calls; }});
    REQUIRE(replayed.ok());
    CHECK(replayed.value().events == 30);
    CHECK(replayed.value().handler_calls == 30 + 10);  // every order event, plus the 10 paid ones
    CHECK(replayed.value().handler_failures == 1);
    CHECK(progress_calls == 30);
    REQUIRE(seen.size() == 30);
    for (int i = 0; i < 30; ++i) CHECK(seen[static_cast<std::size_t>(i)] == i);  // store order
    CHECK(count_all(*store) == 31);                                               // nothing stored again
    CHECK(handlers.stats().published == 0);

    seen.clear();
    const auto paid_only = replay_to_handlers(*store, handlers, {.filter = {.event_type = "order.paid"}, .limit = 2});
    REQUIRE(paid_only.ok());
    CHECK(paid_only.value().events == 2);
    CHECK(seen == std::vector<int>{0, 3});
  }
}
