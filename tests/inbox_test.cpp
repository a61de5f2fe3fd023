// The inbox on both backends: a transfer applied once however often it is delivered, its writes
// and its record committed together or not at all, records pruned after the retention; and
// workers SIGKILLed five times mid-stream (their offsets never committed, so Kafka delivers
// everything again) end with balances that equal the sum of the events exactly.

#include <doctest/doctest.h>

#include <atomic>
#include <fstream>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "eventbus/kafka/embedded_broker.hpp"
#include "eventbus/kafka/kafka_sink.hpp"
#include "eventbus/kafka/worker.hpp"
#include "ledger_support.hpp"
#include "process_support.hpp"
#include "store_support.hpp"
#include "test_support.hpp"

using namespace eventbus;
using namespace std::chrono_literals;
using eventbus::testing::wait_until;

namespace {

const char* const backends[] = {"sqlite", "postgresql"};

// Plain SQL on the test's database, outside eventbus (the test's own view of the ledger).
struct ledger_db {
  std::string backend, name;

  std::int64_t number(const std::string& sql) const {
    std::int64_t value = -1;
    if (backend == "sqlite") {
      sqlite3* db = nullptr;
      sqlite3_open((name + ".db").c_str(), &db);
      sqlite3_busy_timeout(db, 5000);
      sqlite3_stmt* q = nullptr;
      if (sqlite3_prepare_v2(db, sql.c_str(), -1, &q, nullptr) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
        value = sqlite3_column_int64(q, 0);
      sqlite3_finalize(q);
      sqlite3_close(db);
    } else {
      PGconn* conn = PQconnectdb(testing::postgres_dsn_of(name).c_str());
      PGresult* r = PQexec(conn, sql.c_str());
      if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) value = std::stoll(PQgetvalue(r, 0, 0));
      PQclear(r);
      PQfinish(conn);
    }
    return value;
  }
  void run(const std::string& sql) const {
    if (backend == "sqlite") {
      sqlite3* db = nullptr;
      sqlite3_open((name + ".db").c_str(), &db);
      sqlite3_busy_timeout(db, 5000);
      REQUIRE(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK);
      sqlite3_close(db);
    } else {
      PGconn* conn = PQconnectdb(testing::postgres_dsn_of(name).c_str());
      PGresult* r = PQexec(conn, sql.c_str());
      const bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
      PQclear(r);
      PQfinish(conn);
      REQUIRE(ok);
    }
  }
  std::int64_t balance(const std::string& account) const {
    return number("SELECT balance FROM accounts WHERE id = '" + account + "'");  // test ids only: a-0 .. a-9
  }
  void open_accounts(int count) const {
    run("CREATE TABLE accounts (id TEXT PRIMARY KEY, balance BIGINT NOT NULL)");
    for (int i = 0; i < count; ++i) run("INSERT INTO accounts VALUES ('a-" + std::to_string(i) + "', 0)");
  }
};

event transfer(int from, int to, int amount) {
  return make_event({.event_type = "transfer.made", .aggregate_type = "transfer", .aggregate_id = "a-" + std::to_string(from),
                     .payload = {{"from", "a-" + std::to_string(from)}, {"to", "a-" + std::to_string(to)}, {"amount", amount}}});
}

}  // namespace

TEST_CASE("an inbox applies a transfer once however often it comes, and rolls back a failed one whole") {
  for (const std::string backend : backends) {
    CAPTURE(backend);
    const std::string name = "inbox_once_" + backend;
    auto store = testing::fresh_store(backend, name);
    const ledger_db ledger{backend, name};
    ledger.open_accounts(2);
    auto m = std::make_shared<metrics>();
    inbox once(store, {.metrics = m});
    const auto apply = once.wrap("ledger", testing::apply_transfer);

    const auto first = transfer(0, 1, 70);
    apply(first);
    apply(first);  // redelivered
    apply(first);
    CHECK(ledger.balance("a-0") == -70);
    CHECK(ledger.balance("a-1") == 70);
    CHECK(once.duplicates() == 2);
    CHECK(ledger.number("SELECT COUNT(*) FROM eventbus_inbox") == 1);

    // A handler that writes, then fails: its write and its record go together.
    bool fail = true;
    const auto flaky = once.wrap("flaky_ledger", [&](const event& ev, store_transaction& tx) {
      testing::apply_transfer(ev, tx);
      if (fail) throw std::runtime_error("the mail server is down");
    });
    const auto second = transfer(1, 0, 30);
    CHECK_THROWS_WITH(flaky(second), "the mail server is down");
    CHECK(ledger.balance("a-1") == 70);  // rolled back
    fail = false;
    flaky(second);  // the worker's retry
    CHECK(ledger.balance("a-1") == 40);
    CHECK(ledger.number("SELECT COUNT(*) FROM eventbus_inbox") == 2);

    // Records past the retention are pruned.
    inbox brief(store, {.retention = 1ms});
    CHECK(wait_until([&] { return ledger.number("SELECT COUNT(*) FROM eventbus_inbox") == 0 || brief.prune().value() > 100; }, 5s));
    CHECK_THROWS_AS(inbox(store, {.retention = 0ms}), exception);
  }
}

TEST_CASE("workers SIGKILLed five times while moving money: balances equal the sum of the transfers exactly") {
  for (const std::string backend : backends) {
    CAPTURE(backend);
    const std::string name = "inbox_chaos_" + backend;
    auto store = testing::fresh_store(backend, name);
    const ledger_db ledger{backend, name};
    constexpr int accounts = 10, transfers = 1000;
    ledger.open_accounts(accounts);

    embedded_broker broker;
    const std::string topic = "app.transfer.transfer.made";
    broker.create_topic(topic, 4);
    std::map<std::string, std::int64_t> expected;
    {
      kafka_sink sink({.kafka = {.bootstrap_servers = broker.bootstrap_servers(), .properties = {{"log_level", "0"}}}});
      for (int i = 0; i < transfers; ++i) {
        const int from = i % accounts, to = (i * 7 + 3) % accounts, amount = 1 + i % 97;
        (void)sink.accept(transfer(from, to, amount));
        expected["a-" + std::to_string(from)] -= amount;
        expected["a-" + std::to_string(to)] += amount;
      }
      REQUIRE(sink.flush(30s).ok());
    }

    const std::string skips = name + "_skips.txt";
    std::remove(skips.c_str());
    const std::string where = backend == "sqlite" ? "sqlite:" + name + ".db" : "postgresql:" + testing::postgres_dsn_of(name);
    // A group of its own each time: a killed worker's offsets were never committed anyway, and the
    // next one need not wait for the dead member's session to expire.
    int run = 0;
    const auto start = [&] {
      return testing::spawn({EVENTBUS_INBOX_PROCESS, broker.bootstrap_servers(), "ledger-" + backend + "-" + std::to_string(++run),
                             topic, where, skips},
                            {}, false);
    };
    const auto applied = [&] { return ledger.number("SELECT COUNT(*) FROM eventbus_inbox"); };
    for (int kill = 1; kill <= 5; ++kill) {
      auto worker = start();
      // Killed each time it has applied another 100 (its offsets are never committed).
      CHECK(wait_until([&] { return applied() >= 100 * kill; }, 60s));
      CHECK(worker.stop(SIGKILL) == -1);
    }
    const auto skip_lines = [&] {
      std::ifstream lines(skips);
      std::size_t n = 0;
      for (std::string line; std::getline(lines, line);) ++n;
      return n;
    };
    const std::size_t skipped_before_last = skip_lines();
    auto last = start();
    CHECK(wait_until([&] { return applied() == transfers; }, 120s));
    // Its group is new, so it is handed everything again and skips what is applied: once it has
    // skipped one, it is past installing its SIGTERM handler (the killed ones may have applied all
    // 1000 already, and a SIGTERM before that would kill it instead of stopping it).
    CHECK(wait_until([&] { return skip_lines() > skipped_before_last; }, 60s));
    CHECK(last.stop(SIGTERM) == 0);

    for (const auto& entry : expected) {  // no structured binding: CHECK_MESSAGE's lambda takes it
      const auto& account = entry.first;
      CHECK_MESSAGE(ledger.balance(account) == entry.second, account);
    }
    CHECK(applied() == transfers);
    // Each restart was handed what the killed one had applied: the inbox skipped and reported them.
    std::ifstream reported(skips);
    std::size_t skipped = 0;
    for (std::string line; std::getline(reported, line);) ++skipped;
    CHECK(skipped >= 100);
    MESSAGE(backend << ": " << skipped << " redeliveries skipped");
    std::remove(skips.c_str());
  }
}

TEST_CASE("a batch inbox applies a batch in one transaction, hands over only what is new, and rolls back a failed one whole") {
  for (const std::string backend : backends) {
    CAPTURE(backend);
    const std::string name = "inbox_batch_" + backend;
    auto store = testing::fresh_store(backend, name);
    const ledger_db ledger{backend, name};
    ledger.open_accounts(2);
    inbox once(store);
    std::vector<std::size_t> fresh_sizes;
    std::string fail_id, poison_id;
    bool throw_once = false;
    const auto apply = once.wrap_batch("ledger", [&](event_batch& fresh, store_transaction& tx) {
      fresh_sizes.push_back(fresh.size());
      if (std::exchange(throw_once, false)) {
        testing::apply_transfer(fresh[0], tx);  // written, then rolled back with the records
        throw std::runtime_error("deadlock detected");
      }
      for (std::size_t i = 0; i < fresh.size(); ++i) {
        if (fresh[i].event_id() == fail_id) {
          fresh.fail(i, "account locked");  // writes nothing for it
          continue;
        }
        if (fresh[i].event_id() == poison_id) {
          fresh.dead_letter(i, "amount is negative");
          continue;
        }
        testing::apply_transfer(fresh[i], tx);
      }
    });
    const auto t1 = transfer(0, 1, 10), t2 = transfer(0, 1, 20), t3 = transfer(1, 0, 5);
    event_batch first({t1, t2, t3});
    apply(first);
    CHECK(ledger.balance("a-1") == 25);
    CHECK(ledger.number("SELECT COUNT(*) FROM eventbus_inbox") == 3);

    // Redelivered with a new one: only the new one reaches the handler.
    const auto t4 = transfer(0, 1, 100);
    event_batch again({t2, t4, t1});
    apply(again);
    CHECK(fresh_sizes.back() == 1);
    CHECK(once.duplicates() == 2);
    CHECK(ledger.balance("a-1") == 125);
    for (std::size_t i = 0; i < again.size(); ++i) CHECK(again.outcome_of(i) == event_batch::outcome::succeeded);

    // A failed event: the later events of its key may have been written with it, so the whole
    // batch rolls back and fails (the worker then calls each event alone).
    const auto t5 = transfer(0, 1, 1000), t6 = transfer(0, 1, 1), t7 = transfer(0, 1, -3);
    fail_id = t5.event_id();
    poison_id = t7.event_id();
    event_batch mixed({t5, t6, t7});
    CHECK_THROWS_WITH(apply(mixed), doctest::Contains("failed in a batch (account locked)"));
    CHECK(ledger.balance("a-1") == 125);
    CHECK(ledger.number("SELECT COUNT(*) FROM eventbus_inbox") == 4);
    // A dead-lettered event is not recorded (a replay of its dead letter runs it), and its mark
    // reaches the worker's batch.
    event_batch alone({t5});  // called alone, its failure is its own error
    CHECK_THROWS_WITH(apply(alone), "account locked");
    fail_id.clear();
    event_batch retried({t5, t6, t7});
    apply(retried);
    CHECK(retried.outcome_of(0) == event_batch::outcome::succeeded);
    CHECK(retried.outcome_of(1) == event_batch::outcome::succeeded);
    CHECK(retried.outcome_of(2) == event_batch::outcome::dead_letter);
    CHECK(retried.reason_of(2) == "amount is negative");
    CHECK(ledger.balance("a-1") == 1126);
    CHECK(ledger.number("SELECT COUNT(*) FROM eventbus_inbox") == 6);

    // A batch that throws: nothing of it stays, and the exception reaches the worker.
    const auto t8 = transfer(1, 0, 7);
    throw_once = true;
    event_batch failing({t8});
    CHECK_THROWS_WITH(apply(failing), "deadlock detected");
    CHECK(ledger.balance("a-0") == -1126);
    CHECK(ledger.number("SELECT COUNT(*) FROM eventbus_inbox") == 6);
    apply(failing);
    CHECK(ledger.balance("a-0") == -1119);
    CHECK_THROWS_AS((void)once.wrap_batch("", [](event_batch&, store_transaction&) {}), exception);
    CHECK_THROWS_AS((void)once.wrap_batch("ledger", nullptr), exception);
  }
}

TEST_CASE("a worker's batch handler through the inbox applies every transfer once, redelivered ones skipped") {
  for (const std::string backend : backends) {
    CAPTURE(backend);
    const std::string name = "inbox_batch_worker_" + backend;
    auto store = testing::fresh_store(backend, name);
    const ledger_db ledger{backend, name};
    constexpr int accounts = 10, transfers = 500, redelivered = 100;
    ledger.open_accounts(accounts);
    embedded_broker broker;
    const std::string topic = "app.transfer.transfer.made";
    broker.create_topic(topic, 2);
    std::map<std::string, std::int64_t> expected;
    {
      kafka_sink sink({.kafka = {.bootstrap_servers = broker.bootstrap_servers(), .properties = {{"log_level", "0"}}}});
      std::vector<event> sent;
      for (int i = 0; i < transfers; ++i) {
        const int from = i % accounts, to = (i * 7 + 3) % accounts, amount = 1 + i % 97;
        sent.push_back(transfer(from, to, amount));
        (void)sink.accept(sent.back());
        expected["a-" + std::to_string(from)] -= amount;
        expected["a-" + std::to_string(to)] += amount;
      }
      for (int i = 0; i < redelivered; ++i) (void)sink.accept(sent[static_cast<std::size_t>(i * 3)]);  // a relay that resent
      REQUIRE(sink.flush(30s).ok());
    }
    inbox once(store);
    std::atomic<int> calls{0};
    worker w({.kafka = {.bootstrap_servers = broker.bootstrap_servers(),
                        .properties = {{"fetch.wait.max.ms", "10"}, {"log_level", "3"}}},
              .group_id = "ledger-batch-" + backend,
              .topics = {topic}});
    auto sub = w.subscribe_batch("transfer.made", "ledger",
                                 once.wrap_batch("ledger", [&](event_batch& fresh, store_transaction& tx) {
                                   calls.fetch_add(1);
                                   for (const auto& ev : fresh) testing::apply_transfer(ev, tx);
                                 }),
                                 {.max_events = 100});
    w.start();
    REQUIRE(wait_until([&] { return w.stats().handled == transfers + redelivered; }, 60s));
    w.stop();
    for (const auto& entry : expected) {  // no structured binding: CHECK_MESSAGE's lambda takes it
      const auto& account = entry.first;
      CHECK_MESSAGE(ledger.balance(account) == entry.second, account);
    }
    CHECK(ledger.number("SELECT COUNT(*) FROM eventbus_inbox") == transfers);
    CHECK(once.duplicates() == redelivered);
    MESSAGE(backend << ": " << calls.load() << " transactions for " << transfers + redelivered << " deliveries");
    CHECK(calls.load() < transfers / 5);
  }
}
