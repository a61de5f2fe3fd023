// Batch handlers against single-event handlers, and against a hand-written batching consumer, in
// the same run: each writes one row per event into SQLite (event id, aggregate id, sequence).
//
//   worker, single    worker::subscribe: a transaction per event (BEGIN; INSERT; COMMIT), the
//                     statement prepared once, one connection behind a mutex
//   worker, batch     worker::subscribe_batch with max_events --batch: a transaction per call
//   raw, batch        what a careful engineer writes by hand: an rd_kafka_consumer_poll loop that
//                     gathers up to --batch records (or what is there), parses each with
//                     nlohmann::json, writes them in one transaction, then stores their offsets
//                     (enable.auto.offset.store off: at least once, as the worker)
//
// One embedded broker holds the topic (produced once); every run reads all of it in a consumer
// group of its own, into a fresh database file, and is checked afterwards (one row per event).
// Each run is timed from its first row to its last, so the group join is not counted. Rounds
// interleave the runs; medians of per-round ratios.
//
//   build/werror/bench/batch_bench [--events 50000] [--rounds 3] [--partitions 16] [--batch 100]
//                                  [--durability normal|full]

#include <librdkafka/rdkafka.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench_support.hpp"
#include "eventbus/kafka/embedded_broker.hpp"
#include "eventbus/kafka/worker.hpp"
#include "eventbus/log.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
constexpr const char* topic = "app.order.order.created";

struct settings {
  int events = 50'000;
  int rounds = 3;
  int partitions = 16;
  int batch = 100;
  std::string durability = "normal";
};

// One SQLite file with the rows table; statements prepared once.
class rows_db {
 public:
  rows_db(const std::filesystem::path& file, const std::string& durability) {
    std::filesystem::remove(file);
    if (sqlite3_open(file.c_str(), &db_) != SQLITE_OK) throw std::runtime_error("cannot open " + file.string());
    exec("PRAGMA journal_mode=WAL");
    exec(durability == "full" ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
    exec("CREATE TABLE rows(event_id TEXT PRIMARY KEY, aggregate_id TEXT NOT NULL, seq INTEGER NOT NULL)");
    begin_ = prepare("BEGIN");
    commit_ = prepare("COMMIT");
    insert_ = prepare("INSERT INTO rows(event_id, aggregate_id, seq) VALUES (?1, ?2, ?3)");
  }
  ~rows_db() {
    for (sqlite3_stmt* s : {begin_, commit_, insert_}) sqlite3_finalize(s);
    sqlite3_close(db_);
  }
  rows_db(const rows_db&) = delete;
  rows_db& operator=(const rows_db&) = delete;

  void begin() { step(begin_); }
  void commit() { step(commit_); }
  void insert(std::string_view event_id, std::string_view aggregate_id, std::int64_t seq) {
    sqlite3_bind_text(insert_, 1, event_id.data(), static_cast<int>(event_id.size()), SQLITE_STATIC);
    sqlite3_bind_text(insert_, 2, aggregate_id.data(), static_cast<int>(aggregate_id.size()), SQLITE_STATIC);
    sqlite3_bind_int64(insert_, 3, seq);
    step(insert_);
  }
  std::int64_t count() {
    sqlite3_stmt* s = prepare("SELECT COUNT(*) FROM rows");
    sqlite3_step(s);
    const auto n = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return n;
  }

 private:
  void exec(const char* sql) {
    if (sqlite3_exec(db_, sql, nullptr, nullptr, nullptr) != SQLITE_OK) throw std::runtime_error(sqlite3_errmsg(db_));
  }
  sqlite3_stmt* prepare(const char* sql) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db_, sql, -1, &s, nullptr) != SQLITE_OK) throw std::runtime_error(sqlite3_errmsg(db_));
    return s;
  }
  void step(sqlite3_stmt* s) {
    const int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) throw std::runtime_error(sqlite3_errmsg(db_));
  }

  sqlite3* db_ = nullptr;
  sqlite3_stmt* begin_ = nullptr;
  sqlite3_stmt* commit_ = nullptr;
  sqlite3_stmt* insert_ = nullptr;
};

// Rows written, and when the first and the last were.
struct progress {
  std::atomic<std::int64_t> rows{0};
  clock_type::time_point first{}, last{};
  std::atomic<bool> started{false};

  void add(std::int64_t n, std::int64_t total) {
    if (!started.exchange(true)) first = clock_type::now();
    if (rows.fetch_add(n) + n == total) last = clock_type::now();
  }
  [[nodiscard]] double seconds() const { return std::chrono::duration<double>(last - first).count(); }
};

double run_worker(const std::string& bootstrap, const settings& s, const std::string& group, bool batched,
                  const std::filesystem::path& file) {
  rows_db db(file, s.durability);
  std::mutex mu;
  progress done;
  eventbus::worker w({.kafka = {.bootstrap_servers = bootstrap, .properties = {{"fetch.wait.max.ms", "10"}, {"log_level", "3"}}},
                      .group_id = group,
                      .topics = {topic},
                      .max_concurrency = 4});
  eventbus::subscription sub;
  if (batched) {
    sub = w.subscribe_batch(
        "order.created", "rows",
        [&](eventbus::event_batch& batch) {
          const std::lock_guard lock(mu);
          db.begin();
          for (const auto& ev : batch) db.insert(ev.event_id(), ev.aggregate_id(), ev.payload()["seq"].get<std::int64_t>());
          db.commit();
          done.add(static_cast<std::int64_t>(batch.size()), s.events);
        },
        {.max_events = static_cast<std::size_t>(s.batch)});
  } else {
    sub = w.subscribe("order.created", "rows", [&](const eventbus::event& ev) {
      const std::lock_guard lock(mu);
      db.begin();
      db.insert(ev.event_id(), ev.aggregate_id(), ev.payload()["seq"].get<std::int64_t>());
      db.commit();
      done.add(1, s.events);
    });
  }
  w.start();
  const auto give_up = clock_type::now() + std::chrono::minutes(10);
  while (w.stats().handled < static_cast<std::uint64_t>(s.events) && clock_type::now() < give_up)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  w.stop();
  if (db.count() != s.events) std::fprintf(stderr, "%s: %lld rows for %d events\n", group.c_str(), static_cast<long long>(db.count()), s.events);
  return static_cast<double>(s.events) / done.seconds();
}

double run_raw(const std::string& bootstrap, const settings& s, const std::string& group, const std::filesystem::path& file) {
  rows_db db(file, s.durability);
  // Offsets stored only once their rows are committed: at least once, as the worker.
  rd_kafka_t* rk = eventbus::bench::raw_group_consumer(bootstrap, topic, group, {{"enable.auto.offset.store", "false"}});

  progress done;
  std::vector<rd_kafka_message_t*> pending;
  const auto flush = [&] {
    if (pending.empty()) return;
    db.begin();
    for (rd_kafka_message_t* m : pending) {
      const auto ev = nlohmann::json::parse(static_cast<const char*>(m->payload), static_cast<const char*>(m->payload) + m->len);
      db.insert(ev.at("event_id").get_ref<const std::string&>(), ev.at("aggregate_id").get_ref<const std::string&>(),
                ev.at("payload").at("seq").get<std::int64_t>());
    }
    db.commit();
    for (rd_kafka_message_t* m : pending) {
      rd_kafka_offset_store(m->rkt, m->partition, m->offset);  // stores offset + 1
      rd_kafka_message_destroy(m);
    }
    done.add(static_cast<std::int64_t>(pending.size()), s.events);
    pending.clear();
  };
  const auto give_up = clock_type::now() + std::chrono::minutes(10);
  while (done.rows.load() + static_cast<std::int64_t>(pending.size()) < s.events && clock_type::now() < give_up) {
    rd_kafka_message_t* msg = rd_kafka_consumer_poll(rk, pending.empty() ? 100 : 0);
    if (msg == nullptr) {
      flush();  // nothing more there now: write what was gathered
      continue;
    }
    if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      rd_kafka_message_destroy(msg);
      continue;
    }
    pending.push_back(msg);
    if (pending.size() == static_cast<std::size_t>(s.batch)) flush();
  }
  flush();
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  if (db.count() != s.events) std::fprintf(stderr, "%s: %lld rows for %d events\n", group.c_str(), static_cast<long long>(db.count()), s.events);
  return static_cast<double>(s.events) / done.seconds();
}

}  // namespace

int main(int argc, char** argv) {
  settings s;
  if (!eventbus::bench::parse_flags(
          argc, argv, {{"--events", &s.events}, {"--rounds", &s.rounds}, {"--partitions", &s.partitions}, {"--batch", &s.batch}},
          [&](std::string_view name, std::string_view value) {
            if (name != "--durability" || (value != "normal" && value != "full")) return false;
            s.durability = value;
            return true;
          }) ||
      s.batch > 256) {
    std::fprintf(stderr,
                 "usage: batch_bench [--events N] [--rounds R] [--partitions P] [--batch 1..256] [--durability normal|full]\n");
    return 2;
  }
  eventbus::set_log_level(eventbus::log_level::error);
  char dir_template[] = "/tmp/batch_bench.XXXXXX";
  if (mkdtemp(dir_template) == nullptr) return 1;
  const std::filesystem::path dir(dir_template);
  eventbus::embedded_broker broker;
  broker.create_topic(topic, s.partitions);
  eventbus::bench::produce_orders(broker.bootstrap_servers(), topic, s.events, 1'000, s.partitions);
  std::printf("batch_bench: %d events over 1,000 keys on %d partitions, SQLite synchronous=%s, batch %d, %d rounds\n",
              s.events, s.partitions, s.durability.c_str(), s.batch, s.rounds);

  std::vector<double> batch_over_single, batch_over_raw;
  for (int r = 0; r < s.rounds; ++r) {
    const auto tag = std::to_string(r);
    const double single = run_worker(broker.bootstrap_servers(), s, "single-" + tag, false, dir / "single.db");
    const double batched = run_worker(broker.bootstrap_servers(), s, "batch-" + tag, true, dir / "batch.db");
    const double raw = run_raw(broker.bootstrap_servers(), s, "raw-" + tag, dir / "raw.db");
    batch_over_single.push_back(batched / single);
    batch_over_raw.push_back(batched / raw);
    std::printf("  round %d  worker, single %8.0f ev/s  worker, batch %8.0f ev/s  raw, batch %8.0f ev/s\n", r + 1, single,
                batched, raw);
    std::fflush(stdout);
  }
  std::printf("batch handler / single handler: %.2f (median of rounds)\n", eventbus::bench::median(batch_over_single));
  std::printf("batch handler / raw batching consumer: %.2f (median of rounds)\n", eventbus::bench::median(batch_over_raw));
  std::filesystem::remove_all(dir);
  return 0;
}
