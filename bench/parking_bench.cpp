// Durable retry stages: how fast a worker parks records while their dependency is down, against
// a hand-written consumer that parks them the same way, in the same run.
//
//   worker   worker::subscribe with a handler that always throws, retry {max_attempts 1,
//            durable_stages {1 h}} and a SQLite parking_store: each key's first record fails
//            once and is parked (a row), every later record of the key is parked behind it
//   raw      what a careful engineer writes by hand: an rd_kafka_consumer_poll loop that takes
//            what is there (up to 1,000 records), writes one row per record into the same table
//            shape (key, value, headers, position, stage, due time) in one transaction, then
//            stores the records' offsets (enable.auto.offset.store off: at least once, as the
//            worker). It never calls a handler and keeps no per-key index: the floor.
//
// Both write to a fresh SQLite file with WAL and the same synchronous setting; each run is timed
// from its first record to its last parked, so the group join is not counted. Rounds interleave
// the runs; medians of per-round ratios.
//
//   build/werror/bench/parking_bench [--events 50000] [--keys 1000] [--rounds 3] [--partitions 8]
//                                    [--durability normal|full]
//
// With --production 1 it runs one outage at production scale instead: stages of 1 and 10 minutes,
// the default in-memory retries, 1,000 events a second over --keys keys for 90 s, the dependency
// down from 5 s to 50 s. It prints the most records and keys parked at once, the most partitions
// paused, dead letters, how long after the first stage was due every record was handled, whether
// each key's records completed in order, and how many completed twice.
//
//   build/werror/bench/parking_bench --production 1 --keys 500

#include <librdkafka/rdkafka.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bench_support.hpp"
#include "eventbus/kafka/embedded_broker.hpp"
#include "eventbus/kafka/worker.hpp"
#include "eventbus/log.hpp"
#include "eventbus/store/sqlite_store.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
constexpr const char* topic = "app.order.order.created";

struct settings {
  int events = 50'000;
  int keys = 1'000;
  int rounds = 3;
  int partitions = 8;
  std::string durability = "normal";
  int production = 0;
};

double run_worker(const std::string& bootstrap, const settings& s, const std::string& group,
                  const std::filesystem::path& file) {
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(file.string() + suffix);
  auto store = eventbus::open_sqlite_store(
      {.path = file.string(),
       .durability = s.durability == "full" ? eventbus::sqlite_durability::full : eventbus::sqlite_durability::normal});
  eventbus::worker w({.kafka = {.bootstrap_servers = bootstrap, .properties = {{"fetch.wait.max.ms", "10"}, {"log_level", "3"}}},
                      .group_id = group,
                      .topics = {topic},
                      .retry = {.max_attempts = 1, .durable_stages = {std::chrono::hours(1)}},
                      .parking_store = store});
  auto sub = w.subscribe("order.created", "ship", [](const eventbus::event&) { throw std::runtime_error("down"); });
  w.start();
  const auto total = static_cast<std::uint64_t>(s.events);
  clock_type::time_point first{};
  const auto give_up = clock_type::now() + std::chrono::minutes(10);
  while (clock_type::now() < give_up) {
    const auto stats = w.stats();
    if (first == clock_type::time_point{} && stats.records > 0) first = clock_type::now();
    if (stats.handled >= total) break;  // a parked record is finished in its partition
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  const double seconds = std::chrono::duration<double>(clock_type::now() - first).count();
  const auto stats = w.stats();
  w.stop();
  if (stats.handled < total) throw std::runtime_error("worker parked only " + std::to_string(stats.handled));
  return static_cast<double>(total) / seconds;
}

class parked_table {
 public:
  parked_table(const std::filesystem::path& file, const std::string& durability) {
    for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(file.string() + suffix);
    if (sqlite3_open(file.c_str(), &db_) != SQLITE_OK) throw std::runtime_error("cannot open " + file.string());
    exec("PRAGMA journal_mode=WAL");
    exec(durability == "full" ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
    exec("CREATE TABLE parked (group_id TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL, "
         "source_offset INTEGER NOT NULL, record_key BLOB, value BLOB, headers BLOB NOT NULL, stage INTEGER NOT NULL, "
         "due_at_ms INTEGER NOT NULL, pending TEXT NOT NULL, attempts INTEGER NOT NULL, reason TEXT NOT NULL, "
         "parked_at_ms INTEGER NOT NULL, PRIMARY KEY (group_id, topic, partition, source_offset))");
    if (sqlite3_prepare_v2(db_,
                           "INSERT INTO parked VALUES (?1, ?2, ?3, ?4, ?5, ?6, x'00000000', 0, 0, '[]', 0, '', ?7) "
                           "ON CONFLICT DO NOTHING",
                           -1, &insert_, nullptr) != SQLITE_OK)
      throw std::runtime_error(sqlite3_errmsg(db_));
  }
  ~parked_table() {
    sqlite3_finalize(insert_);
    sqlite3_close(db_);
  }
  parked_table(const parked_table&) = delete;
  parked_table& operator=(const parked_table&) = delete;

  void write(const std::string& group, const std::vector<rd_kafka_message_t*>& batch) {
    exec("BEGIN");
    const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    for (const auto* m : batch) {
      sqlite3_bind_text(insert_, 1, group.data(), static_cast<int>(group.size()), SQLITE_STATIC);
      sqlite3_bind_text(insert_, 2, rd_kafka_topic_name(m->rkt), -1, SQLITE_STATIC);
      sqlite3_bind_int(insert_, 3, m->partition);
      sqlite3_bind_int64(insert_, 4, m->offset);
      sqlite3_bind_blob(insert_, 5, m->key, static_cast<int>(m->key_len), SQLITE_STATIC);
      sqlite3_bind_blob(insert_, 6, m->payload, static_cast<int>(m->len), SQLITE_STATIC);
      sqlite3_bind_int64(insert_, 7, now);
      if (sqlite3_step(insert_) != SQLITE_DONE) throw std::runtime_error(sqlite3_errmsg(db_));
      sqlite3_reset(insert_);
    }
    exec("COMMIT");
  }

 private:
  void exec(const char* sql) {
    if (sqlite3_exec(db_, sql, nullptr, nullptr, nullptr) != SQLITE_OK) throw std::runtime_error(sqlite3_errmsg(db_));
  }
  sqlite3* db_ = nullptr;
  sqlite3_stmt* insert_ = nullptr;
};

double run_raw(const std::string& bootstrap, const settings& s, const std::string& group, const std::filesystem::path& file) {
  parked_table table(file, s.durability);
  rd_kafka_t* rk = eventbus::bench::raw_group_consumer(bootstrap, topic, group, {{"enable.auto.offset.store", "false"}});
  const auto total = static_cast<std::uint64_t>(s.events);
  std::uint64_t parked = 0;
  clock_type::time_point first{};
  const auto give_up = clock_type::now() + std::chrono::minutes(10);
  std::vector<rd_kafka_message_t*> batch;
  while (parked < total && clock_type::now() < give_up) {
    rd_kafka_message_t* msg = rd_kafka_consumer_poll(rk, batch.empty() ? 100 : 0);
    if (msg != nullptr && msg->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      rd_kafka_message_destroy(msg);
      continue;
    }
    if (msg != nullptr) {
      if (first == clock_type::time_point{}) first = clock_type::now();
      batch.push_back(msg);
      if (batch.size() < 1000) continue;
    }
    if (batch.empty()) continue;
    table.write(group, batch);
    for (auto* m : batch) {
      rd_kafka_offset_store(m->rkt, m->partition, m->offset);  // stores offset + 1
      rd_kafka_message_destroy(m);
    }
    parked += batch.size();
    batch.clear();
  }
  const double seconds = std::chrono::duration<double>(clock_type::now() - first).count();
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  if (parked < total) throw std::runtime_error("raw consumer parked only " + std::to_string(parked));
  return static_cast<double>(total) / seconds;
}

// One outage at production scale (see the top of the file).
int run_production(const std::string& bootstrap, const settings& s, const std::filesystem::path& file) {
  using namespace std::chrono_literals;
  auto store = eventbus::open_sqlite_store({.path = file.string()});
  eventbus::worker w({.kafka = {.bootstrap_servers = bootstrap, .properties = {{"fetch.wait.max.ms", "10"}, {"log_level", "3"}}},
                      .group_id = "production",
                      .topics = {topic},
                      .retry = {.durable_stages = {1min, 10min}},
                      .parking_store = store});
  std::atomic<bool> down{false};
  std::mutex mu;
  std::map<std::string, std::vector<int>> completed;  // per key, the seqs in completion order
  std::map<int, int> times;                           // per seq, how often it completed
  std::uint64_t done = 0;
  auto sub = w.subscribe("order.created", "ship", [&](const eventbus::event& ev) {
    if (down.load()) throw std::runtime_error("dependency down");
    const int seq = ev.payload().at("seq").get<int>();
    const std::lock_guard lock(mu);
    completed[ev.aggregate_id()].push_back(seq);
    ++times[seq];
    ++done;
  });
  w.start();
  while (w.assigned_partitions() == 0) std::this_thread::sleep_for(10ms);

  const int total = 90'000;
  const auto start = clock_type::now();
  std::thread producer([&] {
    char why[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), why, sizeof why);
    rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof why);
    for (int i = 0; i < total; ++i) {
      const auto ev = eventbus::make_event({.event_type = "order.created", .aggregate_type = "order",
                                            .aggregate_id = "order-" + std::to_string(i % s.keys), .payload = {{"seq", i}}});
      auto fields = eventbus::bench::record_fields(topic, ev.aggregate_id(), eventbus::encode_event(ev),
                                                   eventbus::bench::msgflags_field(RD_KAFKA_MSG_F_COPY));
      (void)eventbus::bench::produce_waiting_when_full(rk, fields, 10);
      rd_kafka_poll(rk, 0);
      std::this_thread::sleep_until(start + std::chrono::microseconds(1000LL * (i + 1)));  // 1,000 a second
    }
    rd_kafka_flush(rk, 60'000);
    rd_kafka_destroy(rk);
  });
  std::uint64_t most_parked = 0, most_keys = 0, most_paused = 0;
  bool outage_over = false;
  clock_type::time_point first_due{};
  for (;;) {
    const auto now = clock_type::now();
    if (!outage_over && now - start >= 5s && now - start < 50s) down = true;
    if (!outage_over && now - start >= 50s) {
      down = false;
      outage_over = true;
    }
    const auto st = w.stats();
    most_parked = std::max(most_parked, st.parked_records);
    most_keys = std::max(most_keys, st.parked_keys);
    most_paused = std::max(most_paused, st.paused_partitions);
    if (first_due == clock_type::time_point{} && st.parked_records > 0) first_due = now + 1min;
    {
      const std::lock_guard lock(mu);
      if (done >= static_cast<std::uint64_t>(total) && st.parked_records == 0) break;
    }
    if (now - start > 20min) break;
    std::this_thread::sleep_for(20ms);
  }
  const auto finished = clock_type::now();
  producer.join();
  const auto st = w.stats();
  w.stop();
  const std::lock_guard lock(mu);
  std::size_t out_of_order = 0, twice = 0;
  for (const auto& [key, seqs] : completed)
    for (std::size_t i = 1; i < seqs.size(); ++i) out_of_order += seqs[i] < seqs[i - 1] ? 1 : 0;
  for (const auto& [seq, n] : times) twice += n > 1 ? 1 : 0;
  std::printf("production: %d events over %d keys, 1,000/s for 90 s; dependency down 5 s .. 50 s; stages 1 min, 10 min\n",
              total, s.keys);
  std::printf("  completed %llu distinct %zu; dead letters %llu; most parked at once %llu records, %llu keys; most paused partitions %llu\n",
              static_cast<unsigned long long>(done), times.size(), static_cast<unsigned long long>(st.dead_letters),
              static_cast<unsigned long long>(most_parked), static_cast<unsigned long long>(most_keys),
              static_cast<unsigned long long>(most_paused));
  std::printf("  all handled %.1f s after the first parked record was due; completions out of their key's order: %zu; completed twice: %zu\n",
              std::chrono::duration<double>(finished - first_due).count(), out_of_order, twice);
  return done >= static_cast<std::uint64_t>(total) && out_of_order == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  settings s;
  if (!eventbus::bench::parse_flags(argc, argv,
                                    {{"--events", &s.events}, {"--keys", &s.keys}, {"--rounds", &s.rounds}, {"--partitions", &s.partitions},
                                     {"--production", &s.production}},
                                    [&](std::string_view name, std::string_view value) {
                                      if (name != "--durability" || (value != "normal" && value != "full")) return false;
                                      s.durability = value;
                                      return true;
                                    })) {
    std::fprintf(stderr, "usage: parking_bench [--events N] [--keys K] [--rounds R] [--partitions P] [--durability normal|full]\n");
    return 2;
  }
  eventbus::set_log_level(eventbus::log_level::error);
  char dir_template[] = "/tmp/parking_bench.XXXXXX";
  if (mkdtemp(dir_template) == nullptr) return 1;
  const std::filesystem::path dir(dir_template);
  eventbus::embedded_broker broker;
  broker.create_topic(topic, s.partitions);
  if (s.production > 0) {
    const int code = run_production(broker.bootstrap_servers(), s, dir / "production.db");
    std::filesystem::remove_all(dir);
    return code;
  }
  eventbus::bench::produce_orders(broker.bootstrap_servers(), topic, s.events, s.keys, s.partitions);
  std::printf("parking_bench: %d events over %d keys on %d partitions, SQLite synchronous=%s, %d rounds\n", s.events, s.keys,
              s.partitions, s.durability.c_str(), s.rounds);
  std::vector<double> ratios;
  for (int r = 0; r < s.rounds; ++r) {
    const auto tag = std::to_string(r);
    const double parked = run_worker(broker.bootstrap_servers(), s, "worker-" + tag, dir / "worker.db");
    const double raw = run_raw(broker.bootstrap_servers(), s, "raw-" + tag, dir / "raw.db");
    ratios.push_back(parked / raw);
    std::printf("  round %d  worker parking %8.0f rec/s  raw parking consumer %8.0f rec/s\n", r + 1, parked, raw);
    std::fflush(stdout);
  }
  std::printf("worker parking / raw parking consumer: %.2f (median of rounds)\n", eventbus::bench::median(ratios));
  std::filesystem::remove_all(dir);
  return 0;
}
