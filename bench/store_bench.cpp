// The event store against hand-written loops in the same run, the same rows, durability and
// batching: appends per second on SQLite (against a raw sqlite3 insert loop on the same schema) and
// on PostgreSQL (against a raw libpq loop with the same unnest insert), and the outbox relay's
// throughput to Kafka against the direct mirror (kafka_sink, same events, same broker).
//
//   store_bench [--events N] [--batch B] [--rounds R] [--durability full|normal] [--dsn DSN]
//               [--bootstrap SERVERS] [--only relay|postgresql] [--relay-store sqlite|postgresql]
// Without --dsn the PostgreSQL part is skipped; without --bootstrap Kafka is the embedded broker.
// --only relay runs the relay alone, without the mirror (for a profiler); --only postgresql the
// PostgreSQL appends and their raw loop alone. --relay-store postgresql relays from a PostgreSQL
// store (--dsn) instead of SQLite.

#include <libpq-fe.h>
#include <sqlite3.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "bench_support.hpp"
#include "postgres_support.hpp"
#include "eventbus/kafka/embedded_broker.hpp"
#include "eventbus/log.hpp"
#include "eventbus/store/outbox_relay.hpp"
#include "eventbus/store/postgres_store.hpp"
#include "eventbus/store/sqlite_store.hpp"

using namespace eventbus;
using clock_type = std::chrono::steady_clock;

namespace {

int events_total = 20'000, batch = 10, rounds = 3;
std::string durability = "normal", dsn, bootstrap, only;  // only: "relay" runs the relay alone (for a profiler)
std::string relay_store = "sqlite";                      // the store the relay reads: sqlite, or postgresql (--dsn)

// The same events for every contender: `batch` consecutive ones per aggregate, 1000 aggregates.
std::vector<std::vector<event>> make_batches() {
  std::vector<std::vector<event>> out;
  for (int i = 0; i < events_total; i += batch) {
    std::vector<event> b;
    const std::string id = "o-" + std::to_string((i / batch) % 1000);
    for (int k = 0; k < batch && i + k < events_total; ++k)
      b.push_back(make_event({.event_type = "order.placed", .aggregate_type = "order", .aggregate_id = id,
                              .payload = {{"seq", i + k}, {"customer", "c-42"}, {"total", 99.5}}}));
    out.push_back(std::move(b));
  }
  return out;
}

double seconds_since(clock_type::time_point start) {
  return std::chrono::duration<double>(clock_type::now() - start).count();
}

std::string fresh_file(const std::string& name) {
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(name + suffix);
  return name;
}

double store_appends(const std::shared_ptr<event_store>& store, const std::vector<std::vector<event>>& batches) {
  std::map<std::string, std::int64_t> versions;
  const auto start = clock_type::now();
  for (const auto& b : batches) {
    auto& v = versions[b.front().aggregate_id()];
    const auto r = store->append("order", b.front().aggregate_id(), eventbus::expected_version::exactly(v), b);
    if (!r) throw exception(r.error());
    v = r.value().version;
  }
  return events_total / seconds_since(start);
}

// The raw SQLite loop: the store's own table and indexes (made by opening a store on the file),
// the same pragmas, one prepared INSERT per event, one transaction per batch.
double raw_sqlite(const std::vector<std::vector<event>>& batches) {
  const auto path = fresh_file("bench_raw.db");
  (void)open_sqlite_store({.path = path});  // the schema, nothing else
  sqlite3* db = nullptr;
  sqlite3_open(path.c_str(), &db);
  sqlite3_exec(db, "PRAGMA journal_mode = WAL", nullptr, nullptr, nullptr);
  sqlite3_exec(db, durability == "full" ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL", nullptr, nullptr, nullptr);
  sqlite3_stmt* insert = nullptr;
  sqlite3_prepare_v2(db,
                     "INSERT INTO event_store (event_id, event_type, aggregate_type, aggregate_id, aggregate_version, "
                     "occurred_at_ms, correlation_id, causation_id, envelope, stored_at_ms) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)",
                     -1, &insert, nullptr);
  std::map<std::string, std::int64_t> versions;
  const auto start = clock_type::now();
  for (const auto& b : batches) {
    sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
    auto& v = versions[b.front().aggregate_id()];
    for (const auto& ev : b) {
      const auto& wire = encode_event(ev);
      sqlite3_reset(insert);
      sqlite3_bind_text(insert, 1, ev.event_id().data(), static_cast<int>(ev.event_id().size()), SQLITE_STATIC);
      sqlite3_bind_text(insert, 2, ev.event_type().data(), static_cast<int>(ev.event_type().size()), SQLITE_STATIC);
      sqlite3_bind_text(insert, 3, "order", 5, SQLITE_STATIC);
      sqlite3_bind_text(insert, 4, ev.aggregate_id().data(), static_cast<int>(ev.aggregate_id().size()), SQLITE_STATIC);
      sqlite3_bind_int64(insert, 5, ++v);
      sqlite3_bind_int64(insert, 6, ev.timestamp().time_since_epoch().count());
      sqlite3_bind_null(insert, 7);
      sqlite3_bind_null(insert, 8);
      sqlite3_bind_text(insert, 9, wire.data(), static_cast<int>(wire.size()), SQLITE_STATIC);
      sqlite3_bind_int64(insert, 10, now_ms().time_since_epoch().count());
      if (sqlite3_step(insert) != SQLITE_DONE) throw std::runtime_error(sqlite3_errmsg(db));
    }
    sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
  }
  const double rate = events_total / seconds_since(start);
  sqlite3_finalize(insert);
  sqlite3_close(db);
  return rate;
}

std::string array_of(const std::vector<std::string>& items) {
  std::string out = "{";
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i) out += ',';
    out += '"';
    for (const char c : items[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  return out + "}";
}

// The raw libpq loop: per batch BEGIN, one prepared INSERT ... unnest of the same columns, COMMIT,
// sent as one pipeline (one round trip, as the store does).
double raw_libpq(const std::vector<std::vector<event>>& batches) {
  PGconn* conn = PQconnectdb(dsn.c_str());
  PQsetNoticeProcessor(conn, [](void*, const char*) {}, nullptr);
  bench::drop_store_tables(conn);
  PQfinish(conn);
  (void)open_postgres_store({.dsn = dsn});  // the schema
  conn = PQconnectdb(dsn.c_str());
  PQclear(PQprepare(conn, "raw_insert",
                    "INSERT INTO event_store (event_id, event_type, aggregate_type, aggregate_id, aggregate_version, "
                    "occurred_at, payload, envelope) SELECT x.id, x.type, $3, $4, $5::bigint + x.n, "
                    "to_timestamp(x.ms::bigint / 1000.0), (x.env::jsonb) -> 'payload', x.env "
                    "FROM unnest($1::text[], $2::text[], $6::text[], $7::text[]) WITH ORDINALITY AS x(id, type, ms, env, n)",
                    7, nullptr));
  std::map<std::string, std::int64_t> versions;
  const auto start = clock_type::now();
  for (const auto& b : batches) {
    std::vector<std::string> ids, types, ms, envelopes;
    for (const auto& ev : b) {
      ids.push_back(ev.event_id());
      types.push_back(ev.event_type());
      ms.push_back(std::to_string(ev.timestamp().time_since_epoch().count()));
      envelopes.push_back(encode_event(ev));
    }
    auto& v = versions[b.front().aggregate_id()];
    const std::string base = std::to_string(v), a = array_of(ids), t = array_of(types), m = array_of(ms),
                      e = array_of(envelopes);
    v += static_cast<std::int64_t>(b.size());
    const char* params[] = {a.c_str(), t.c_str(), "order", b.front().aggregate_id().c_str(), base.c_str(), m.c_str(), e.c_str()};
    PQenterPipelineMode(conn);
    PQsendQueryParams(conn, "BEGIN", 0, nullptr, nullptr, nullptr, nullptr, 0);
    PQsendQueryPrepared(conn, "raw_insert", 7, params, nullptr, nullptr, 0);
    PQsendQueryParams(conn, "COMMIT", 0, nullptr, nullptr, nullptr, nullptr, 0);
    PQpipelineSync(conn);
    for (int i = 0; i < 3; ++i) {
      PGresult* r = PQgetResult(conn);
      if (PQresultStatus(r) != PGRES_COMMAND_OK) throw std::runtime_error(PQresultErrorMessage(r));
      PQclear(r);
      PQclear(PQgetResult(conn));  // the end of this statement's results
    }
    PQclear(PQgetResult(conn));  // the sync
    PQexitPipelineMode(conn);
  }
  const double rate = events_total / seconds_since(start);
  PQfinish(conn);
  return rate;
}

std::shared_ptr<kafka_sink> make_sink() {
  return std::make_shared<kafka_sink>(producer_options{.kafka = {.bootstrap_servers = bootstrap, .properties = {{"log_level", "3"}}}});
}

// A producer that has sent one record: its producer id and the topic's metadata are in place. A
// cold librdkafka 2.0 producer whose first records wait behind those can stall up to a second
// (measured: the relay's first batch took 1.0 s); both contenders are measured warm.
std::shared_ptr<kafka_sink> warm_sink() {
  auto sink = make_sink();
  (void)sink->accept(make_event({.event_type = "order.placed", .aggregate_type = "order", .aggregate_id = "warm-up"})).get();
  return sink;
}

// Stored events to Kafka through the relay, timed from its first marked batch (its own producer is
// warm from then on, as the mirror's is) until every one is marked published.
double relay_rate(const std::vector<std::vector<event>>& batches) {
  auto store = relay_store == "postgresql"
                   ? bench::fresh_postgres(dsn)
                   : open_sqlite_store({.path = fresh_file("bench_relay.db"), .durability = sqlite_durability::normal});
  for (const auto& b : batches)
    if (!store->append("order", b.front().aggregate_id(), eventbus::expected_version::any(), b)) throw std::runtime_error("append");
  outbox_relay relay(store, producer_options{.kafka = {.bootstrap_servers = bootstrap, .properties = {{"log_level", "3"}}}},
                     {.batch_size = 2000, .interval = std::chrono::milliseconds(5)});
  relay.start();
  // The relay's own count of events marked published: asking the store for its backlog (a
  // COUNT over the outbox index) every few milliseconds would compete with the relay's reads.
  while (relay.stats().relayed == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const auto start = clock_type::now();
  const auto warm = relay.stats().relayed;
  while (relay.stats().relayed < static_cast<std::uint64_t>(events_total))
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  const double rate = static_cast<double>(static_cast<std::uint64_t>(events_total) - warm) / seconds_since(start);
  if (store->backlog().value().events != 0) throw std::runtime_error("relay: events left unpublished");
  return rate;
}

// The same events straight through a kafka_sink (the direct mirror), until all are acknowledged.
double mirror_rate(const std::vector<std::vector<event>>& batches) {
  auto sink = warm_sink();
  const auto start = clock_type::now();
  for (const auto& b : batches)
    for (const auto& ev : b) sink->produce(ev, [](const result<delivery>&) {});
  (void)sink->flush(std::chrono::seconds(120));
  return events_total / seconds_since(start);
}

void report(const char* what, std::vector<double> ours, std::vector<double> raw, const char* raw_name) {
  const double o = bench::median(std::move(ours)), r = bench::median(std::move(raw));
  std::printf("%-34s %10.0f events/s   %-22s %10.0f events/s   ratio %.2f\n", what, o, raw_name, r, o / r);
}

}  // namespace

int main(int argc, char** argv) {
  const bool ok = bench::parse_flags(argc, argv, {{"--events", &events_total}, {"--batch", &batch}, {"--rounds", &rounds}},
                                     [](std::string_view name, std::string_view value) {
                                       if (name == "--durability" && (value == "full" || value == "normal")) durability = value;
                                       else if (name == "--dsn") dsn = value;
                                       else if (name == "--bootstrap") bootstrap = value;
                                       else if (name == "--only" && (value == "relay" || value == "postgresql")) only = value;
                                       else if (name == "--relay-store" && (value == "sqlite" || value == "postgresql")) relay_store = value;
                                       else return false;
                                       return true;
                                     });
  if (!ok) {
    std::fprintf(stderr, "usage: store_bench [--events N] [--batch B] [--rounds R] [--durability full|normal] [--dsn DSN] [--bootstrap SERVERS] [--only relay|postgresql] [--relay-store sqlite|postgresql]\n");
    return 2;
  }
  set_log_level(log_level::error);
  std::shared_ptr<embedded_broker> broker;
  if (bootstrap.empty()) {
    broker = std::make_shared<embedded_broker>();
    broker->create_topic("app.order.order.placed", 4);
    bootstrap = broker->bootstrap_servers();
  }
  if (relay_store == "postgresql" && dsn.empty()) {
    std::fprintf(stderr, "store_bench: --relay-store postgresql needs --dsn\n");
    return 2;
  }
  const auto batches = make_batches();
  std::printf("store_bench: %d events of ~%zu bytes, %d per append, %d rounds, sqlite synchronous=%s\n", events_total,
              encode_event(batches[0][0]).size(), batch, rounds, durability.c_str());
  const auto sync = durability == "full" ? sqlite_durability::full : sqlite_durability::normal;

  std::vector<double> ours, raw;
  for (int r = 0; r < rounds && only.empty(); ++r) {  // interleaved, so both see the same machine
    raw.push_back(raw_sqlite(batches));
    ours.push_back(store_appends(open_sqlite_store({.path = fresh_file("bench_store.db"), .durability = sync}), batches));
  }
  if (only.empty()) report("sqlite store append", ours, raw, "raw sqlite3 loop");

  if (!dsn.empty() && (only.empty() || only == "postgresql")) {
    ours.clear();
    raw.clear();
    for (int r = 0; r < rounds; ++r) {
      raw.push_back(raw_libpq(batches));
      ours.push_back(store_appends(bench::fresh_postgres(dsn), batches));
    }
    report("postgresql store append", ours, raw, "raw libpq loop");
  }

  if (only == "postgresql") return 0;
  ours.clear();
  raw.clear();
  for (int r = 0; r < rounds; ++r) {
    ours.push_back(relay_rate(batches));
    if (only.empty()) raw.push_back(mirror_rate(batches));
  }
  if (only.empty())
    report("outbox relay to Kafka", ours, raw, "direct mirror");
  else
    std::printf("outbox relay to Kafka %10.0f events/s (median; the store filled before its clock starts)\n",
                bench::median(ours));
  return 0;
}
