// Processing orders with slow (I/O-bound) handlers: every handler call sleeps `--handler-ms`
// (5 ms: a database write, an API call). 4 partitions, 1000 keys. Reported as events/s of
//  - the raw librdkafka baseline: a hand-written poll loop calling the handler inline, record by
//    record (what most Kafka consumers are);
//  - a worker in `partition` order (max_concurrency 64, but only one call per partition at a time);
//  - a worker in `key` order (max_concurrency 64: different keys side by side, inside partitions);
//  - a worker `unordered` (max_concurrency 64);
// and ratios against each other and the ideal, max_concurrency ÷ handler time.
//
// One embedded broker holds the topic (produced once); every run reads it in a group of its own,
// timed from its first handled record to its last, so the mock's ~3 s group join is not counted.
// The raw baseline handles one record at a time (200 ev/s at 5 ms), so it runs on the first
// --slow-events only (spread over every key and partition): its rate is steady from the start.
//
//   build/werror/bench/ordering_bench [--events 50000] [--slow-events 5000] [--keys 1000]
//                                     [--partitions 4] [--max-concurrency 64] [--handler-ms 5] [--window 1000]

#include <librdkafka/rdkafka.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <string_view>
#include <thread>

#include "bench_support.hpp"
#include "eventbus/kafka/embedded_broker.hpp"
#include "eventbus/log.hpp"
#include "eventbus/kafka/worker.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
constexpr const char* topic = "app.order.order.created";

struct settings {
  int events = 50'000;
  int slow_events = 5'000;
  int keys = 1000;
  int partitions = 4;
  int max_concurrency = 64;
  int handler_ms = 5;
  int window = 1000;  // max_buffered_per_partition (the worker's default)
};

struct run_result {
  double seconds = 0;
  std::uint64_t records = 0;
  [[nodiscard]] double rate() const { return seconds > 0 ? static_cast<double>(records) / seconds : 0; }
};

void simulated_io(const settings& s) { std::this_thread::sleep_for(std::chrono::milliseconds(s.handler_ms)); }

// The baseline: one consumer, one record at a time, the handler called inline.
run_result run_raw(const std::string& bootstrap, const settings& s, int events) {
  const auto r = eventbus::bench::raw_consume(bootstrap, topic, "raw", static_cast<std::uint64_t>(events),
                                              [&](const rd_kafka_message_t&) { simulated_io(s); });
  return {r.seconds, r.records};
}

// A worker in `order`; counts records whose seq is below `events` (the first ones produced, spread
// over all keys and partitions) and stops once all of them were handled.
run_result run_worker(const std::string& bootstrap, const settings& s, eventbus::processing_order order, int events) {
  const std::string group = "worker-" + std::string(eventbus::to_string(order));
  eventbus::worker w({.kafka = {.bootstrap_servers = bootstrap, .properties = {{"fetch.wait.max.ms", "10"}, {"log_level", "3"}}},
                      .group_id = group,
                      .topics = {topic},
                      .ordering = order,
                      .max_concurrency = static_cast<std::size_t>(s.max_concurrency),
                      .max_buffered_per_partition = static_cast<std::size_t>(s.window)});
  std::atomic<std::uint64_t> counted{0};
  std::atomic<bool> started{false};
  clock_type::time_point first{}, last{};
  auto sub = w.subscribe("order.created", "simulated-io", [&](const eventbus::event& ev) {
    if (!started.exchange(true)) first = clock_type::now();
    simulated_io(s);
    if (ev.payload()["seq"].get<int>() < events && counted.fetch_add(1) + 1 == static_cast<std::uint64_t>(events))
      last = clock_type::now();
  });
  w.start();
  const auto give_up = clock_type::now() + std::chrono::minutes(10);
  while (counted.load() < static_cast<std::uint64_t>(events) && clock_type::now() < give_up)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  w.stop();
  if (counted.load() < static_cast<std::uint64_t>(events)) {
    std::fprintf(stderr, "%s: only %llu of %d events handled\n", group.c_str(),
                 static_cast<unsigned long long>(counted.load()), events);
    return {std::chrono::duration<double>(clock_type::now() - first).count(), counted.load()};
  }
  return {std::chrono::duration<double>(last - first).count(), counted.load()};
}

}  // namespace

int main(int argc, char** argv) {
  settings s;
  if (!eventbus::bench::parse_flags(argc, argv,
                                    {{"--events", &s.events},
                                     {"--slow-events", &s.slow_events},
                                     {"--keys", &s.keys},
                                     {"--partitions", &s.partitions},
                                     {"--max-concurrency", &s.max_concurrency},
                                     {"--handler-ms", &s.handler_ms},
                                     {"--window", &s.window}})) {
    std::fprintf(stderr, "usage: ordering_bench [--events N] [--slow-events N] [--keys K] [--partitions P] "
                         "[--max-concurrency C] [--handler-ms MS] [--window W]\n");
    return 2;
  }
  s.slow_events = std::min(s.slow_events, s.events);
  eventbus::set_log_level(eventbus::log_level::error);
  eventbus::embedded_broker broker;
  broker.create_topic(topic, s.partitions);
  eventbus::bench::produce_orders(broker.bootstrap_servers(), topic, s.events, s.keys, s.partitions);
  std::printf("ordering_bench: %d events, %d keys, %d partitions, handlers sleep %d ms, max_concurrency %d, window %d\n",
              s.events, s.keys, s.partitions, s.handler_ms, s.max_concurrency, s.window);
  std::fflush(stdout);

  const auto report = [](const char* name, int events, const run_result& r) {
    std::printf("  %-34s %6d events in %6.2f s  %8.0f ev/s\n", name, events, r.seconds, r.rate());
    std::fflush(stdout);
  };
  const auto raw = run_raw(broker.bootstrap_servers(), s, s.slow_events);
  report("raw librdkafka, handler inline", s.slow_events, raw);
  const auto by_partition = run_worker(broker.bootstrap_servers(), s, eventbus::processing_order::partition, s.events);
  report("worker, partition order", s.events, by_partition);
  const auto by_key = run_worker(broker.bootstrap_servers(), s, eventbus::processing_order::key, s.events);
  report("worker, key order", s.events, by_key);
  const auto unordered = run_worker(broker.bootstrap_servers(), s, eventbus::processing_order::unordered, s.events);
  report("worker, unordered", s.events, unordered);

  const double ideal = s.max_concurrency * 1000.0 / s.handler_ms;
  std::printf("\nideal (max_concurrency / handler time): %.0f ev/s\n", ideal);
  std::printf("ratio key / partition order:  %6.2f\n", by_key.rate() / by_partition.rate());
  std::printf("ratio key order / ideal:      %6.2f\n", by_key.rate() / ideal);
  std::printf("ratio unordered / ideal:      %6.2f\n", unordered.rate() / ideal);
  std::printf("ratio key order / raw:        %6.2f\n", by_key.rate() / raw.rate());
  std::printf("ratio partition order / raw:  %6.2f\n", by_partition.rate() / raw.rate());
  return 0;
}
