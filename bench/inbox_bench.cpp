// Handler throughput with and without the inbox, on SQLite and PostgreSQL, in the same run. The
// handler's effect is a small realistic write in the inbox's own database: a ledger line inserted
// and the account's balance upserted (a read model), two statements that must commit together.
//
//   with inbox      inbox::wrap as inbox.hpp and docs/event-store.md show it: the effect written
//                   with tx.sqlite() / tx.postgres(), its statements prepared once on that
//                   connection and reused
//   inbox, example  the same, but the handler prepares its statements on every call, as the
//                   example in inbox.hpp does (sqlite3_prepare_v2 / PQexecParams per event)
//   raw baseline    what a careful engineer writes by hand for the same guarantee, on a connection
//                   of its own: BEGIN; INSERT INTO processed ... ON CONFLICT DO NOTHING (skip when
//                   nothing was inserted); the effect; COMMIT. Bound parameters, statements
//                   prepared once; `processed` has the shape of eventbus_inbox (key and time index)
//   no dedup        the effect alone in its own transaction (BEGIN; the effect; COMMIT)
//
// Every variant gets the same prebuilt events (distinct ids, 1,000 accounts), a fresh database
// each round, and is checked afterwards: one ledger line per event, the balances summing to the
// amounts, and (inbox and raw) a redelivered event changing nothing. Rounds interleave the
// variants; medians.
//
//   inbox_bench [--events N] [--rounds R] [--durability full|normal] [--dsn DSN]
//               [--only inbox|example|raw|plain]      one variant alone (to profile it), no ratios
// SQLite files live in a fresh temporary directory, opened as the store opens them (WAL;
// `synchronous` FULL by default as sqlite_store_options says, NORMAL with --durability normal).
// Without --dsn, or when its server cannot be reached, the PostgreSQL rows are skipped (say so).

#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_support.hpp"
#include "postgres_support.hpp"
#include "eventbus/log.hpp"
#include "eventbus/store/inbox.hpp"
#include "eventbus/store/postgres_store.hpp"
#include "eventbus/store/sqlite_store.hpp"
#include "eventbus/time.hpp"

using namespace eventbus;
using clock_type = std::chrono::steady_clock;

namespace {

int events_total = 5'000, rounds = 3;
constexpr int accounts = 1'000;
constexpr int redelivered = 100;  // events handed again after the timed run, to check the skip
std::string durability = "full", dsn, only;  // only: one variant (for a profiler), no ratios
std::filesystem::path dir;

constexpr const char* handler_name = "ledger";

std::vector<event> make_events() {
  std::vector<event> out;
  out.reserve(static_cast<std::size_t>(events_total));
  for (int i = 0; i < events_total; ++i) {
    out.push_back(make_event({.event_type = "account.deposited", .aggregate_type = "account",
                              .aggregate_id = "acc-" + std::to_string(i % accounts),
                              .payload = {{"amount", 1 + i % 97}, {"reference", "dep-" + std::to_string(i)}}}));
    (void)out.back().payload();  // decoded once here, not by whichever variant runs first
  }
  return out;
}

std::int64_t amounts_total(const std::vector<event>& events) {
  std::int64_t sum = 0;
  for (const auto& ev : events) sum += ev.payload().at("amount").get<std::int64_t>();
  return sum;
}

double seconds_since(clock_type::time_point start) {
  return std::chrono::duration<double>(clock_type::now() - start).count();
}

// ---------------------------------------------------------------------------------------------
// SQLite

const char* const sqlite_tables =
    "CREATE TABLE ledger (id INTEGER PRIMARY KEY, account TEXT NOT NULL, amount INTEGER NOT NULL, "
    "reference TEXT NOT NULL);"
    "CREATE TABLE balances (account TEXT PRIMARY KEY, balance INTEGER NOT NULL, entries INTEGER NOT NULL);";
const char* const sqlite_ledger_sql = "INSERT INTO ledger (account, amount, reference) VALUES (?1, ?2, ?3)";
const char* const sqlite_balance_sql =
    "INSERT INTO balances (account, balance, entries) VALUES (?1, ?2, 1) ON CONFLICT (account) DO UPDATE SET "
    "balance = balance + excluded.balance, entries = entries + 1";

void sqlite_check(sqlite3* db, int rc, int want) {
  if (rc != want) throw std::runtime_error(std::string("sqlite: ") + sqlite3_errmsg(db));
}

void sqlite_exec(sqlite3* db, const char* sql) {
  sqlite_check(db, sqlite3_exec(db, sql, nullptr, nullptr, nullptr), SQLITE_OK);
}

sqlite3_stmt* sqlite_prepare(sqlite3* db, const char* sql) {
  sqlite3_stmt* stmt = nullptr;
  sqlite_check(db, sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr), SQLITE_OK);
  return stmt;
}

void sqlite_step_done(sqlite3* db, sqlite3_stmt* stmt) {
  const int rc = sqlite3_step(stmt);
  sqlite3_reset(stmt);
  sqlite_check(db, rc, SQLITE_DONE);
}

// The handler's effect: a ledger line and the balance's upsert, on connection `db`. With `reuse`,
// its two statements are prepared once; without, on every call (as inbox.hpp's example does).
class sqlite_effect {
 public:
  sqlite_effect(sqlite3* db, bool reuse) : db_(db), reuse_(reuse) {
    if (reuse_) {
      ledger_ = sqlite_prepare(db_, sqlite_ledger_sql);
      balance_ = sqlite_prepare(db_, sqlite_balance_sql);
    }
  }
  ~sqlite_effect() {
    sqlite3_finalize(ledger_);
    sqlite3_finalize(balance_);
  }
  sqlite_effect(const sqlite_effect&) = delete;
  sqlite_effect& operator=(const sqlite_effect&) = delete;
  [[nodiscard]] sqlite3* db() const noexcept { return db_; }

  void apply(const event& ev) {
    const std::string& account = ev.aggregate_id();
    const auto amount = ev.payload().at("amount").get<std::int64_t>();
    const auto& reference = ev.payload().at("reference").get_ref<const std::string&>();
    sqlite3_stmt* ledger = reuse_ ? ledger_ : sqlite_prepare(db_, sqlite_ledger_sql);
    sqlite3_bind_text(ledger, 1, account.data(), static_cast<int>(account.size()), SQLITE_STATIC);
    sqlite3_bind_int64(ledger, 2, amount);
    sqlite3_bind_text(ledger, 3, reference.data(), static_cast<int>(reference.size()), SQLITE_STATIC);
    const int ledger_rc = sqlite3_step(ledger);
    if (reuse_) sqlite3_reset(ledger);
    else sqlite3_finalize(ledger);
    sqlite_check(db_, ledger_rc, SQLITE_DONE);
    sqlite3_stmt* balance = reuse_ ? balance_ : sqlite_prepare(db_, sqlite_balance_sql);
    sqlite3_bind_text(balance, 1, account.data(), static_cast<int>(account.size()), SQLITE_STATIC);
    sqlite3_bind_int64(balance, 2, amount);
    const int balance_rc = sqlite3_step(balance);
    if (reuse_) sqlite3_reset(balance);
    else sqlite3_finalize(balance);
    sqlite_check(db_, balance_rc, SQLITE_DONE);
  }

 private:
  sqlite3* db_;
  bool reuse_;
  sqlite3_stmt* ledger_ = nullptr;
  sqlite3_stmt* balance_ = nullptr;
};

std::string fresh_sqlite(const std::string& name) {
  const auto path = (dir / name).string();
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);
  return path;
}

// A connection configured as the store configures its writer.
sqlite3* sqlite_open(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK)
    throw std::runtime_error("sqlite: cannot open " + path);
  sqlite3_busy_timeout(db, 5000);
  sqlite_exec(db, "PRAGMA journal_mode = WAL");
  sqlite_exec(db, durability == "full" ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL");
  return db;
}

std::int64_t sqlite_number(sqlite3* db, const char* sql) {
  sqlite3_stmt* q = sqlite_prepare(db, sql);
  sqlite_check(db, sqlite3_step(q), SQLITE_ROW);
  const auto value = sqlite3_column_int64(q, 0);
  sqlite3_finalize(q);
  return value;
}

// One ledger line per event, the balances summing to the amounts, and `processed` rows (from the
// inbox's or the raw table) when asked.
void sqlite_verify(const std::string& path, const std::vector<event>& events, const char* processed_sql) {
  sqlite3* db = sqlite_open(path);
  const auto lines = sqlite_number(db, "SELECT COUNT(*) FROM ledger");
  const auto sum = sqlite_number(db, "SELECT COALESCE(SUM(balance), 0) FROM balances");
  const auto processed = processed_sql ? sqlite_number(db, processed_sql) : lines;
  sqlite3_close(db);
  const auto want = static_cast<std::int64_t>(events.size());
  if (lines != want || sum != amounts_total(events) || processed != want)
    throw std::runtime_error("sqlite: wrong ledger after the run (" + std::to_string(lines) + " lines, " +
                             std::to_string(processed) + " processed)");
}

double sqlite_with_inbox(const std::vector<event>& events, bool reuse) {
  const auto path = fresh_sqlite("inbox.db");
  auto store = open_sqlite_store(
      {.path = path, .durability = durability == "full" ? sqlite_durability::full : sqlite_durability::normal});
  {  // the service's own tables, made as its migrations would (another connection, before the handler runs)
    sqlite3* db = sqlite_open(path);
    sqlite_exec(db, sqlite_tables);
    sqlite3_close(db);
  }
  inbox once(store);
  std::unique_ptr<sqlite_effect> effect;  // the handler's statements, on the transaction's connection
  const auto handle = once.wrap(handler_name, [&](const event& ev, store_transaction& tx) {
    if (!effect || effect->db() != tx.sqlite()) effect = std::make_unique<sqlite_effect>(tx.sqlite(), reuse);
    effect->apply(ev);
  });
  const auto start = clock_type::now();
  for (const auto& ev : events) handle(ev);
  const double rate = static_cast<double>(events.size()) / seconds_since(start);
  for (int i = 0; i < redelivered; ++i) handle(events[static_cast<std::size_t>(i)]);
  if (once.duplicates() != static_cast<std::uint64_t>(redelivered)) throw std::runtime_error("sqlite inbox: redeliveries not skipped");
  effect.reset();
  sqlite_verify(path, events, "SELECT COUNT(*) FROM eventbus_inbox");
  return rate;
}

double sqlite_raw(const std::vector<event>& events) {
  const auto path = fresh_sqlite("raw.db");
  sqlite3* db = sqlite_open(path);
  sqlite_exec(db, sqlite_tables);
  sqlite_exec(db,
              "CREATE TABLE processed (handler TEXT NOT NULL, event_id TEXT NOT NULL, handled_at_ms INTEGER NOT NULL, "
              "PRIMARY KEY (handler, event_id));"
              "CREATE INDEX processed_by_time ON processed (handled_at_ms);");
  std::uint64_t skipped = 0;
  double rate = 0;
  {
    sqlite_effect effect(db, true);
    sqlite3_stmt* record = sqlite_prepare(
        db, "INSERT INTO processed (handler, event_id, handled_at_ms) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING");
    const auto handle = [&](const event& ev) {
      sqlite_exec(db, "BEGIN IMMEDIATE");
      try {
        sqlite3_bind_text(record, 1, handler_name, -1, SQLITE_STATIC);
        sqlite3_bind_text(record, 2, ev.event_id().data(), static_cast<int>(ev.event_id().size()), SQLITE_STATIC);
        sqlite3_bind_int64(record, 3, now_ms().time_since_epoch().count());
        sqlite_step_done(db, record);
        if (sqlite3_changes(db) == 0) {
          ++skipped;
          sqlite_exec(db, "ROLLBACK");
          return;
        }
        effect.apply(ev);
        sqlite_exec(db, "COMMIT");
      } catch (...) {
        (void)sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
        throw;
      }
    };
    const auto start = clock_type::now();
    for (const auto& ev : events) handle(ev);
    rate = static_cast<double>(events.size()) / seconds_since(start);
    for (int i = 0; i < redelivered; ++i) handle(events[static_cast<std::size_t>(i)]);
    sqlite3_finalize(record);
  }
  sqlite3_close(db);
  if (skipped != static_cast<std::uint64_t>(redelivered)) throw std::runtime_error("sqlite raw: redeliveries not skipped");
  sqlite_verify(path, events, "SELECT COUNT(*) FROM processed");
  return rate;
}

double sqlite_no_dedup(const std::vector<event>& events) {
  const auto path = fresh_sqlite("plain.db");
  sqlite3* db = sqlite_open(path);
  sqlite_exec(db, sqlite_tables);
  double rate = 0;
  {
    sqlite_effect effect(db, true);
    const auto start = clock_type::now();
    for (const auto& ev : events) {
      sqlite_exec(db, "BEGIN IMMEDIATE");
      try {
        effect.apply(ev);
      } catch (...) {
        (void)sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
        throw;
      }
      sqlite_exec(db, "COMMIT");
    }
    rate = static_cast<double>(events.size()) / seconds_since(start);
  }
  sqlite3_close(db);
  sqlite_verify(path, events, nullptr);
  return rate;
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

struct pg_result_deleter {
  void operator()(PGresult* r) const noexcept { PQclear(r); }
};
using pg_result = std::unique_ptr<PGresult, pg_result_deleter>;

pg_result pg_check(PGconn* conn, PGresult* r, ExecStatusType want) {
  pg_result owned(r);
  if (!owned || PQresultStatus(owned.get()) != want) throw std::runtime_error(std::string("postgresql: ") + PQerrorMessage(conn));
  return owned;
}

void pg_exec(PGconn* conn, const char* sql) { (void)pg_check(conn, PQexec(conn, sql), PGRES_COMMAND_OK); }

PGconn* pg_connect() {
  PGconn* conn = PQconnectdb(dsn.c_str());
  if (PQstatus(conn) != CONNECTION_OK) {
    const std::string why = PQerrorMessage(conn);
    PQfinish(conn);
    throw std::runtime_error("postgresql: cannot connect: " + why);
  }
  PQsetNoticeProcessor(conn, [](void*, const char*) {}, nullptr);
  return conn;
}

const char* const pg_tables =
    "CREATE TABLE ledger (id BIGSERIAL PRIMARY KEY, account TEXT NOT NULL, amount BIGINT NOT NULL, reference TEXT NOT NULL);"
    "CREATE TABLE balances (account TEXT PRIMARY KEY, balance BIGINT NOT NULL, entries BIGINT NOT NULL);";
const char* const pg_ledger_sql = "INSERT INTO ledger (account, amount, reference) VALUES ($1, $2::bigint, $3)";
const char* const pg_balance_sql =
    "INSERT INTO balances (account, balance, entries) VALUES ($1, $2::bigint, 1) ON CONFLICT (account) DO UPDATE SET "
    "balance = balances.balance + excluded.balance, entries = balances.entries + 1";

// Everything the runs leave, the store's tables included: each variant starts on an empty database.
void pg_reset() {
  PGconn* conn = pg_connect();
  pg_exec(conn, "DROP TABLE IF EXISTS ledger, balances, processed");
  bench::drop_store_tables(conn);
  pg_exec(conn, pg_tables);
  PQfinish(conn);
}

// The effect on connection `conn`: with `reuse`, two statements prepared once on it
// (PQexecPrepared); without, PQexecParams per statement (parsed and planned every call).
class pg_effect {
 public:
  pg_effect(PGconn* conn, bool reuse) : conn_(conn), reuse_(reuse) {
    if (reuse_) {
      (void)pg_check(conn_, PQprepare(conn_, "bench_ledger", pg_ledger_sql, 3, nullptr), PGRES_COMMAND_OK);
      (void)pg_check(conn_, PQprepare(conn_, "bench_balance", pg_balance_sql, 2, nullptr), PGRES_COMMAND_OK);
    }
  }
  [[nodiscard]] PGconn* conn() const noexcept { return conn_; }

  void apply(const event& ev) {
    const std::string amount = std::to_string(ev.payload().at("amount").get<std::int64_t>());
    const char* ledger[] = {ev.aggregate_id().c_str(), amount.c_str(),
                            ev.payload().at("reference").get_ref<const std::string&>().c_str()};
    run(reuse_ ? PQexecPrepared(conn_, "bench_ledger", 3, ledger, nullptr, nullptr, 0)
               : PQexecParams(conn_, pg_ledger_sql, 3, nullptr, ledger, nullptr, nullptr, 0));
    const char* balance[] = {ev.aggregate_id().c_str(), amount.c_str()};
    run(reuse_ ? PQexecPrepared(conn_, "bench_balance", 2, balance, nullptr, nullptr, 0)
               : PQexecParams(conn_, pg_balance_sql, 2, nullptr, balance, nullptr, nullptr, 0));
  }

 private:
  void run(PGresult* r) { (void)pg_check(conn_, r, PGRES_COMMAND_OK); }
  PGconn* conn_;
  bool reuse_;
};

void pg_verify(const std::vector<event>& events, const char* processed_sql) {
  PGconn* conn = pg_connect();
  const auto number = [&](const char* sql) {
    auto r = pg_check(conn, PQexec(conn, sql), PGRES_TUPLES_OK);
    return std::stoll(PQgetvalue(r.get(), 0, 0));
  };
  const auto lines = number("SELECT COUNT(*) FROM ledger");
  const auto sum = number("SELECT COALESCE(SUM(balance), 0) FROM balances");
  const auto processed = processed_sql ? number(processed_sql) : lines;
  PQfinish(conn);
  const auto want = static_cast<std::int64_t>(events.size());
  if (lines != want || sum != amounts_total(events) || processed != want)
    throw std::runtime_error("postgresql: wrong ledger after the run (" + std::to_string(lines) + " lines, " +
                             std::to_string(processed) + " processed)");
}

double pg_with_inbox(const std::vector<event>& events, bool reuse) {
  pg_reset();
  auto store = open_postgres_store({.dsn = dsn});
  inbox once(store);
  std::unique_ptr<pg_effect> effect;
  const auto handle = once.wrap(handler_name, [&](const event& ev, store_transaction& tx) {
    auto* conn = reinterpret_cast<PGconn*>(tx.postgres());
    if (!effect || effect->conn() != conn) effect = std::make_unique<pg_effect>(conn, reuse);
    effect->apply(ev);
  });
  const auto start = clock_type::now();
  for (const auto& ev : events) handle(ev);
  const double rate = static_cast<double>(events.size()) / seconds_since(start);
  for (int i = 0; i < redelivered; ++i) handle(events[static_cast<std::size_t>(i)]);
  if (once.duplicates() != static_cast<std::uint64_t>(redelivered)) throw std::runtime_error("postgresql inbox: redeliveries not skipped");
  pg_verify(events, "SELECT COUNT(*) FROM eventbus_inbox");
  return rate;
}

double pg_raw(const std::vector<event>& events) {
  pg_reset();
  PGconn* conn = pg_connect();
  pg_exec(conn,
          "CREATE TABLE processed (handler TEXT NOT NULL, event_id TEXT NOT NULL, handled_at TIMESTAMPTZ NOT NULL DEFAULT "
          "now(), PRIMARY KEY (handler, event_id));"
          "CREATE INDEX processed_by_time ON processed (handled_at);");
  pg_effect effect(conn, true);
  (void)pg_check(conn,
                 PQprepare(conn, "bench_record",
                           "INSERT INTO processed (handler, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING", 2, nullptr),
                 PGRES_COMMAND_OK);
  std::uint64_t skipped = 0;
  const auto handle = [&](const event& ev) {
    pg_exec(conn, "BEGIN");
    try {
      const char* values[] = {handler_name, ev.event_id().c_str()};
      auto r = pg_check(conn, PQexecPrepared(conn, "bench_record", 2, values, nullptr, nullptr, 0), PGRES_COMMAND_OK);
      if (std::string_view(PQcmdTuples(r.get())) != "1") {
        ++skipped;
        pg_exec(conn, "ROLLBACK");
        return;
      }
      effect.apply(ev);
      pg_exec(conn, "COMMIT");
    } catch (...) {
      PQclear(PQexec(conn, "ROLLBACK"));
      throw;
    }
  };
  const auto start = clock_type::now();
  for (const auto& ev : events) handle(ev);
  const double rate = static_cast<double>(events.size()) / seconds_since(start);
  for (int i = 0; i < redelivered; ++i) handle(events[static_cast<std::size_t>(i)]);
  PQfinish(conn);
  if (skipped != static_cast<std::uint64_t>(redelivered)) throw std::runtime_error("postgresql raw: redeliveries not skipped");
  pg_verify(events, "SELECT COUNT(*) FROM processed");
  return rate;
}

double pg_no_dedup(const std::vector<event>& events) {
  pg_reset();
  PGconn* conn = pg_connect();
  double rate = 0;
  {
    pg_effect effect(conn, true);
    const auto start = clock_type::now();
    for (const auto& ev : events) {
      pg_exec(conn, "BEGIN");
      try {
        effect.apply(ev);
      } catch (...) {
        PQclear(PQexec(conn, "ROLLBACK"));
        throw;
      }
      pg_exec(conn, "COMMIT");
    }
    rate = static_cast<double>(events.size()) / seconds_since(start);
  }
  PQfinish(conn);
  pg_verify(events, nullptr);
  return rate;
}

// ---------------------------------------------------------------------------------------------

struct contenders {
  std::function<double(const std::vector<event>&, bool)> inbox;
  std::function<double(const std::vector<event>&)> raw, plain;
};

void run(const char* backend, const contenders& c, const std::vector<event>& events) {
  // One short untimed pass of each first: the first transactions on a fresh server or file are
  // slower (caches, the server's first WAL segment), and would count against whichever ran first.
  const std::vector<event> warm(events.begin(), events.begin() + redelivered);
  if (only.empty()) {
    (void)c.inbox(warm, true);
    (void)c.raw(warm);
    (void)c.plain(warm);
  }
  std::vector<double> inbox_rates, example_rates, raw_rates, plain_rates;
  for (int r = 0; r < rounds; ++r) {  // interleaved, so all see the same machine
    if (only.empty() || only == "inbox") inbox_rates.push_back(c.inbox(events, true));
    if (only.empty() || only == "raw") raw_rates.push_back(c.raw(events));
    if (only.empty() || only == "plain") plain_rates.push_back(c.plain(events));
    if (only.empty() || only == "example") example_rates.push_back(c.inbox(events, false));
  }
  const auto line = [&](const char* what, const std::vector<double>& rates) {
    if (rates.empty()) return 0.0;
    const auto [low, high] = std::minmax_element(rates.begin(), rates.end());
    const double median = bench::median(rates);
    std::printf("%-10s %-15s %9.0f events/s  (rounds %.0f-%.0f)\n", backend, what, median, *low, *high);
    return median;
  };
  const double in = line("with inbox", inbox_rates), ex = line("inbox, example", example_rates),
               raw = line("raw baseline", raw_rates), plain = line("no dedup", plain_rates);
  if (!only.empty()) return;
  std::printf("%-10s ratios (events/s): inbox / raw baseline %.2f   inbox / no dedup %.2f   raw baseline / no dedup %.2f"
              "   inbox, example / inbox %.2f\n",
              backend, in / raw, in / plain, raw / plain, ex / in);
}

bool postgres_reachable(std::string& why) {
  if (dsn.empty()) {
    why = "no --dsn given (tests/pg_cluster.sh start DIR starts a throwaway server and prints one)";
    return false;
  }
  PGconn* conn = PQconnectdb(dsn.c_str());
  const bool ok = PQstatus(conn) == CONNECTION_OK;
  if (!ok) why = std::string("cannot connect with --dsn: ") + PQerrorMessage(conn);
  while (!why.empty() && why.back() == '\n') why.pop_back();
  PQfinish(conn);
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  const bool ok = bench::parse_flags(argc, argv, {{"--events", &events_total}, {"--rounds", &rounds}},
                                     [](std::string_view name, std::string_view value) {
                                       if (name == "--durability" && (value == "full" || value == "normal")) durability = value;
                                       else if (name == "--dsn") dsn = value;
                                       else if (name == "--only" && (value == "inbox" || value == "example" ||
                                                                     value == "raw" || value == "plain")) only = value;
                                       else return false;
                                       return true;
                                     });
  if (!ok || events_total < redelivered) {
    std::fprintf(stderr, "usage: inbox_bench [--events N (>= %d)] [--rounds R] [--durability full|normal] [--dsn DSN]\n",
                 redelivered);
    return 2;
  }
  set_log_level(log_level::error);
  std::string tmp = (std::filesystem::temp_directory_path() / "inbox_bench.XXXXXX").string();
  if (mkdtemp(tmp.data()) == nullptr) {
    std::perror("inbox_bench: mkdtemp");
    return 1;
  }
  dir = tmp;
  const auto events = make_events();
  std::printf("inbox_bench: %d events (~%zu-byte envelopes, %d accounts), effect = a ledger line + a balance upsert; "
              "%d rounds, medians; sqlite synchronous=%s in %s\n",
              events_total, encode_event(events[0]).size(), accounts, rounds, durability.c_str(), dir.c_str());
  int status = 0;
  try {
    run("sqlite", {sqlite_with_inbox, sqlite_raw, sqlite_no_dedup}, events);
    if (std::string why; postgres_reachable(why)) run("postgresql", {pg_with_inbox, pg_raw, pg_no_dedup}, events);
    else std::printf("postgresql: skipped: %s\n", why.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "inbox_bench: %s\n", e.what());
    status = 1;
  }
  std::filesystem::remove_all(dir);
  return status;
}
