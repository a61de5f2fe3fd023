// Worker throughput (consume + decode + dispatch to a handler + commit) against a raw librdkafka
// consumer reading the same topic in the same run; then the same worker with 1 % of the events
// failing twice (small backoff), reported as healthy-event throughput ÷ the clean run.
//
// One embedded broker holds the topic (produced once); every run reads all of it in a consumer
// group of its own. Each run is timed from its first record to its last, so the ~3 s group join of
// the mock cluster is not counted. Rounds interleave the three runs so all see the same machine.
//
//   build/werror/bench/worker_bench [--events 1000000] [--rounds 3] [--partitions 128] [--max-concurrency 4]
//   build/werror/bench/worker_bench --worker-only 1       # the worker run alone, for perf record
//   build/werror/bench/worker_bench --envelope-only 1     # a handler that never reads the payload
//   build/werror/bench/worker_bench --commit-interval-ms 1000  # the cost of commits: against the default
//   build/werror/bench/worker_bench --batch 100          # a batch handler (up to 100 events a call)

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench_support.hpp"
#include "eventbus/kafka/embedded_broker.hpp"
#include "eventbus/log.hpp"
#include "eventbus/kafka/worker.hpp"

namespace {

using eventbus::bench::median;
using clock_type = std::chrono::steady_clock;
constexpr const char* topic = "app.order.order.created";

struct settings {
  int events = 1'000'000;
  int rounds = 3;
  int partitions = 128;  // the mock keeps ~5 MB per partition: 128 hold 1M records of ~350 B
  int max_concurrency = 4;  // handlers here are quick: about the core count
  int fail_every = 100;  // 1 %
  int worker_only = 0;   // 1: the clean worker run alone, for a profiler
  int window = 100'000;  // max_buffered_per_partition: large, so the window never pauses a partition
  int envelope_only = 0;  // 1: the handler reads only the envelope (its sequence number from the correlation id)
  int commit_interval_ms = 0;  // 0: the worker's default
  int batch = 0;  // > 1: a batch handler taking up to this many events a call (worker::subscribe_batch)
};

// "corr-<seq>", as produce_orders writes it.
std::int64_t seq_of_correlation(const std::string& id) {
  std::int64_t seq = 0;
  std::from_chars(id.data() + 5, id.data() + id.size(), seq);
  return seq;
}

struct run_result {
  double seconds = 0;
  std::uint64_t records = 0;
};

// The baseline: a hand-written consumer counting records. With `parse`, it also parses each value
// with nlohmann::json: the floor for anything that reads JSON.
run_result run_raw(const std::string& bootstrap, const settings& s, const std::string& group, bool parse) {
  const auto r = eventbus::bench::raw_consume(
      bootstrap, topic, group, static_cast<std::uint64_t>(s.events), [&](const rd_kafka_message_t& msg) {
        if (parse && nlohmann::json::parse(static_cast<const char*>(msg.payload),
                                           static_cast<const char*>(msg.payload) + msg.len, nullptr, false)
                         .is_discarded())
          std::fprintf(stderr, "not JSON at offset %lld\n", static_cast<long long>(msg.offset));
      });
  return {r.seconds, r.records};
}

// Resident memory of this process (the embedded broker's included: it holds the whole topic,
// produced before any run, so it does not grow during one).
long rss_kb() {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) return 0;
  char line[256];
  long kb = 0;
  while (std::fgets(line, sizeof line, f) != nullptr)
    if (std::sscanf(line, "VmRSS: %ld kB", &kb) == 1) break;
  std::fclose(f);
  return kb;
}

// The worker with one handler that reads the event's sequence number (from the payload, or with
// --envelope-only 1 from the envelope's correlation id); events whose number is a
// multiple of `fail_every` throw on their first two attempts when `failing` is set.
// Returns the time from the first record until every healthy record was handled.
run_result run_worker(const std::string& bootstrap, const settings& s, const std::string& group, bool failing) {
  eventbus::worker w({.kafka = {.bootstrap_servers = bootstrap, .properties = {{"fetch.wait.max.ms", "10"}, {"log_level", "3"}}},
                      .group_id = group,
                      .topics = {topic},
                      .retry = {.max_attempts = 5,
                                .initial_backoff = std::chrono::milliseconds(1),
                                .multiplier = 2.0,
                                .max_backoff = std::chrono::milliseconds(20),
                                .jitter = 0.0},
                      .max_concurrency = static_cast<std::size_t>(s.max_concurrency),
                      .max_buffered_per_partition = static_cast<std::size_t>(s.window),
                      .commit_interval = s.commit_interval_ms > 0 ? std::chrono::milliseconds(s.commit_interval_ms)
                                                                  : eventbus::worker_options{}.commit_interval});
  const auto attempts = std::make_unique<std::atomic<std::uint8_t>[]>(static_cast<std::size_t>(s.events));
  std::atomic<bool> started{false};
  std::atomic<std::uint64_t> healthy{0};
  clock_type::time_point first{}, last_healthy{};
  const std::uint64_t healthy_total = static_cast<std::uint64_t>(s.events) -
                                      (failing ? static_cast<std::uint64_t>((s.events + s.fail_every - 1) / s.fail_every) : 0);
  // A batch handler may see a healthy event again (after a failed one of its key in the same
  // batch): count each once.
  const auto counted = std::make_unique<std::atomic<bool>[]>(static_cast<std::size_t>(s.events));
  // True when the event is done; false for a failing event's first two attempts.
  const auto handle = [&](const eventbus::event& ev) {
    if (!started.exchange(true, std::memory_order_relaxed)) first = clock_type::now();
    const auto seq = s.envelope_only == 0 ? ev.payload()["seq"].get<std::int64_t>()
                                         : seq_of_correlation(ev.correlation_id().value_or("corr-0"));
    if (failing && seq % s.fail_every == 0)
      return attempts[static_cast<std::size_t>(seq)].fetch_add(1, std::memory_order_relaxed) >= 2;
    if (s.batch > 1 && counted[static_cast<std::size_t>(seq)].exchange(true, std::memory_order_relaxed)) return true;
    if (healthy.fetch_add(1, std::memory_order_relaxed) + 1 == healthy_total) last_healthy = clock_type::now();
    return true;
  };
  eventbus::subscription sub;
  if (s.batch > 1) {
    sub = w.subscribe_batch(
        "order.created", "bench",
        [&](eventbus::event_batch& batch) {
          for (std::size_t i = 0; i < batch.size(); ++i)
            if (!handle(batch[i])) batch.fail(i, "transient");
        },
        {.max_events = static_cast<std::size_t>(s.batch)});
  } else {
    sub = w.subscribe("order.created", "bench", [&](const eventbus::event& ev) {
      if (!handle(ev)) throw std::runtime_error("transient");
    });
  }
  w.start();
  const auto give_up = clock_type::now() + std::chrono::minutes(5);
  long rss_at_tenth = 0;
  while (w.stats().handled < static_cast<std::uint64_t>(s.events) && clock_type::now() < give_up) {
    if (rss_at_tenth == 0 && w.stats().handled >= static_cast<std::uint64_t>(s.events) / 10) rss_at_tenth = rss_kb();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (!failing)
    std::printf("    worker process RSS: %ld MB after %d events, %ld MB after %d: ratio %.2f\n", rss_at_tenth / 1024,
                s.events / 10, rss_kb() / 1024, s.events,
                rss_at_tenth > 0 ? static_cast<double>(rss_kb()) / static_cast<double>(rss_at_tenth) : 0.0);
  const double took = std::chrono::duration<double>(clock_type::now() - first).count();
  std::printf("    worker %s: %llu commits in %.2f s (%.1f a second)\n", failing ? "failing" : "clean",
              static_cast<unsigned long long>(w.stats().commits), took,
              took > 0 ? static_cast<double>(w.stats().commits) / took : 0.0);
  w.stop();
  if (healthy.load() != healthy_total) {
    std::fprintf(stderr, "worker run %s: %llu of %llu healthy events handled\n", group.c_str(),
                 static_cast<unsigned long long>(healthy.load()), static_cast<unsigned long long>(healthy_total));
    return {std::chrono::duration<double>(clock_type::now() - first).count(), healthy.load()};
  }
  if (failing && s.batch <= 1 && w.stats().retries != 2 * (healthy_total == 0 ? 0 : static_cast<std::uint64_t>(s.events) - healthy_total))
    std::fprintf(stderr, "worker run %s: %llu retries\n", group.c_str(), static_cast<unsigned long long>(w.stats().retries));
  return {std::chrono::duration<double>(last_healthy - first).count(), healthy_total};
}

}  // namespace

int main(int argc, char** argv) {
  settings s;
  if (!eventbus::bench::parse_flags(argc, argv,
                                    {{"--events", &s.events},
                                     {"--rounds", &s.rounds},
                                     {"--partitions", &s.partitions},
                                     {"--max-concurrency", &s.max_concurrency},
                                     {"--worker-only", &s.worker_only},
                                     {"--window", &s.window},
                                     {"--envelope-only", &s.envelope_only},
                                     {"--commit-interval-ms", &s.commit_interval_ms},
                                     {"--batch", &s.batch}}) ||
      s.batch > 256) {
    std::fprintf(stderr,
                 "usage: worker_bench [--events N] [--rounds R] [--partitions P] [--max-concurrency C] [--worker-only 1] [--window N] [--envelope-only 1] [--commit-interval-ms MS] [--batch 2..256]\n");
    return 2;
  }
  eventbus::set_log_level(eventbus::log_level::error);
  eventbus::embedded_broker broker;
  broker.create_topic(topic, s.partitions);
  const auto produce_start = clock_type::now();
  eventbus::bench::produce_orders(broker.bootstrap_servers(), topic, s.events, 10'000, s.partitions);
  std::printf("worker_bench: %d events on %d partitions (produced in %.1f s), worker max_concurrency %d, %d rounds\n",
              s.events, s.partitions, std::chrono::duration<double>(clock_type::now() - produce_start).count(),
              s.max_concurrency, s.rounds);

  if (s.worker_only != 0) {
    const auto clean = run_worker(broker.bootstrap_servers(), s, "clean-only", false);
    std::printf("worker alone: %.0f ev/s\n", static_cast<double>(clean.records) / clean.seconds);
    return 0;
  }
  std::vector<double> raw_rates, parse_rates, clean_rates, failing_rates, paired_clean, paired_parse, paired_failing;
  for (int r = 0; r < s.rounds; ++r) {
    const auto tag = std::to_string(r);
    const auto raw = run_raw(broker.bootstrap_servers(), s, "raw-" + tag, false);
    const auto parsing = run_raw(broker.bootstrap_servers(), s, "raw-parse-" + tag, true);
    const auto clean = run_worker(broker.bootstrap_servers(), s, "clean-" + tag, false);
    const auto failing = run_worker(broker.bootstrap_servers(), s, "failing-" + tag, true);
    const auto rate = [](const run_result& x) { return static_cast<double>(x.records) / x.seconds; };
    raw_rates.push_back(rate(raw));
    parse_rates.push_back(rate(parsing));
    paired_parse.push_back(rate(clean) / rate(parsing));
    clean_rates.push_back(rate(clean));
    failing_rates.push_back(rate(failing));
    paired_clean.push_back(rate(clean) / rate(raw));
    paired_failing.push_back(rate(failing) / rate(clean));
    std::printf("  round %d  raw consumer %9.0f ev/s  raw + JSON parse %9.0f ev/s  worker %9.0f ev/s  "
                "worker, 1%% failing twice %9.0f healthy ev/s\n",
                r + 1, rate(raw), rate(parsing), rate(clean), rate(failing));
    std::fflush(stdout);
  }
  std::printf("\nmedian: raw consumer %.0f ev/s, raw + JSON parse %.0f ev/s, worker %.0f ev/s, worker with 1%% failing "
              "twice %.0f healthy ev/s\n",
              median(raw_rates), median(parse_rates), median(clean_rates), median(failing_rates));
  std::printf("ratio worker / raw consumer:        %.2f of medians, %.2f median of paired rounds  (target >= 0.50)\n",
              median(clean_rates) / median(raw_rates), median(paired_clean));
  std::printf("ratio worker / raw + JSON parse:     %.2f of medians, %.2f median of paired rounds\n",
              median(clean_rates) / median(parse_rates), median(paired_parse));
  std::printf("ratio 1%% failing / clean (healthy): %.2f of medians, %.2f median of paired rounds  (target >= 0.97)\n",
              median(failing_rates) / median(clean_rates), median(paired_failing));
  return 0;
}
