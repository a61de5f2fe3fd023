// Publish -> ack throughput of the Kafka mirror against a raw librdkafka producer sending the same
// bytes (same topic, key, value and headers, same client settings), in the same run, each round on
// a fresh embedded broker (or on a broker in its own process, --bootstrap), rounds interleaved so
// all runs see the same machine. A third run builds every event (make_event) as it publishes it.
//
//   build/bench/bench/produce_bench [--events 1000000] [--rounds 3] [--partitions 8]
//   eventbus dev-broker --partitions 8 --topic app.order.order.created > broker.addr &
//   build/bench/bench/produce_bench --bootstrap "$(head -n 1 broker.addr)"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <optional>
#include <cstdio>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "bench_support.hpp"
#include "eventbus/dispatcher.hpp"
#include "eventbus/kafka/embedded_broker.hpp"
#include "eventbus/kafka/kafka_sink.hpp"
#include "eventbus/log.hpp"
#include "eventbus/topic.hpp"

namespace {

using eventbus::bench::median;
using clock_type = std::chrono::steady_clock;

struct settings {
  std::string only;  // "raw" or "eventbus" runs one side alone (for profiling); no ratio then
  std::string bootstrap;  // a broker of its own (its topic made with `partitions`); empty: embedded
  int events = 1'000'000;
  int rounds = 3;
  int partitions = 8;
};

struct run_result {
  double seconds = 0;
  std::uint64_t delivered = 0;
};

const std::vector<std::pair<std::string, std::string>> common_properties = {
    {"enable.idempotence", "true"}, {"acks", "all"}, {"log_level", "3"}};

// The broker of a round: a fresh embedded one, or the one given with --bootstrap.
struct round_broker {
  explicit round_broker(const settings& s) {
    if (!s.bootstrap.empty()) {
      bootstrap = s.bootstrap;
      return;
    }
    embedded.emplace();
    embedded->create_topic("app.order.order.created", s.partitions);
    bootstrap = embedded->bootstrap_servers();
  }
  std::optional<eventbus::embedded_broker> embedded;
  std::string bootstrap;
};

// The order events of make_events, built one by one in the timed loop.
eventbus::event build_event(std::size_t i) {
  return eventbus::make_event(
      {.event_type = "order.created",
       .aggregate_type = "order",
       .aggregate_id = "order-" + std::to_string(i % 10'000),
       .payload = {{"customer_id", "c-" + std::to_string(i % 977)}, {"total_cents", 1000 + i % 5000},
                   {"currency", "EUR"}, {"items", {{{"sku", "SKU-" + std::to_string(i % 300)}, {"qty", 1 + i % 4}}}}},
       .correlation_id = "corr-" + std::to_string(i)});
}

// Distinct events, cycled: building a million envelopes is the publisher's cost, not the mirror's
// (the third run measures it).
std::vector<eventbus::event> make_events(std::size_t distinct) {
  std::vector<eventbus::event> events;
  events.reserve(distinct);
  for (std::size_t i = 0; i < distinct; ++i) events.push_back(build_event(i));
  return events;
}

run_result run_eventbus(const settings& s, const std::vector<eventbus::event>& events, bool build_each) {
  const round_broker broker(s);
  eventbus::producer_options options{.kafka = {.bootstrap_servers = broker.bootstrap}};
  for (const auto& [k, v] : common_properties) options.kafka.properties[k] = v;
  auto sink = std::make_shared<eventbus::kafka_sink>(options);
  eventbus::dispatcher bus({.mode = eventbus::dispatch_mode::caller_thread});
  bus.add_sink(sink);

  const auto start = clock_type::now();
  for (int i = 0; i < s.events; ++i) {
    auto outcome = build_each ? bus.publish(build_event(static_cast<std::size_t>(i)))
                              : bus.publish(events[static_cast<std::size_t>(i) % events.size()]);
    if (!outcome.accepted()) std::fprintf(stderr, "rejected: %s\n", outcome.rejection().to_string().c_str());
  }
  if (!sink->flush(std::chrono::minutes(5))) std::fprintf(stderr, "eventbus: flush timed out\n");
  const double seconds = std::chrono::duration<double>(clock_type::now() - start).count();
  if (sink->stats().queue_full_waits > 0)
    std::printf("    (eventbus waited %llu times for room in librdkafka's queue)\n",
                static_cast<unsigned long long>(sink->stats().queue_full_waits));
  return {seconds, sink->stats().delivered};
}

run_result run_raw(const settings& s, const std::vector<eventbus::event>& events) {
  const round_broker broker(s);
  char why[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", broker.bootstrap.c_str(), why, sizeof why);
  for (const auto& [k, v] : common_properties) rd_kafka_conf_set(conf, k.c_str(), v.c_str(), why, sizeof why);
  std::atomic<std::uint64_t> delivered{0};
  rd_kafka_conf_set_opaque(conf, &delivered);
  rd_kafka_conf_set_dr_msg_cb(conf, [](rd_kafka_t*, const rd_kafka_message_t* msg, void* opaque) {
    if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) static_cast<std::atomic<std::uint64_t>*>(opaque)->fetch_add(1);
  });
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof why);
  const std::string topic = "app.order.order.created";

  const auto start = clock_type::now();
  for (int i = 0; i < s.events; ++i) {
    const auto& ev = events[static_cast<std::size_t>(i) % events.size()];
    const std::string& value = eventbus::encode_event(ev);
    rd_kafka_headers_t* headers = rd_kafka_headers_new(5);
    rd_kafka_header_add(headers, "event_id", -1, ev.event_id().data(), static_cast<ssize_t>(ev.event_id().size()));
    rd_kafka_header_add(headers, "event_type", -1, ev.event_type().data(), static_cast<ssize_t>(ev.event_type().size()));
    rd_kafka_header_add(headers, "aggregate_type", -1, ev.aggregate_type().data(),
                        static_cast<ssize_t>(ev.aggregate_type().size()));
    rd_kafka_header_add(headers, "content-type", -1, "application/json", 16);
    rd_kafka_header_add(headers, "correlation_id", -1, ev.correlation_id()->data(),
                        static_cast<ssize_t>(ev.correlation_id()->size()));
    auto fields = eventbus::bench::record_fields(topic.c_str(), ev.aggregate_id(), value, eventbus::bench::headers_field(headers));
    if (!eventbus::bench::produce_waiting_when_full(rk, fields, 1)) rd_kafka_headers_destroy(headers);
    // Delivery reports served every 1024 produces, as a careful hand-written producer does (one
    // poll per produce costs the raw loop about half its rate: it is not the raw limit).
    if ((i & 1023) == 0) rd_kafka_poll(rk, 0);
  }
  rd_kafka_flush(rk, 300'000);
  const double seconds = std::chrono::duration<double>(clock_type::now() - start).count();
  rd_kafka_destroy(rk);
  return {seconds, delivered.load()};
}

}  // namespace

int main(int argc, char** argv) {
  settings s;
  const auto strings = [&](std::string_view name, std::string_view value) {
    if (name == "--bootstrap") {
      s.bootstrap = std::string(value);
      return !value.empty();
    }
    s.only = std::string(value);
    return name == "--only" && (value == "raw" || value == "eventbus");
  };
  if (!eventbus::bench::parse_flags(argc, argv,
                                    {{"--events", &s.events}, {"--rounds", &s.rounds}, {"--partitions", &s.partitions}},
                                    strings)) {
    std::fprintf(stderr,
                 "usage: produce_bench [--events N] [--rounds R] [--partitions P] [--only raw|eventbus] "
                 "[--bootstrap HOST:PORT]\n");
    return 2;
  }
  eventbus::set_log_level(eventbus::log_level::error);
  const auto events = make_events(100'000);
  double bytes = 0;
  for (const auto& ev : events) bytes += static_cast<double>(eventbus::encode_event(ev).size());
  const double mean_bytes = bytes / static_cast<double>(events.size());
  std::printf("produce_bench: %d events of %.0f B (value), %d partitions, idempotent, acks=all, %d rounds\n", s.events,
              mean_bytes, s.partitions, s.rounds);

  std::printf("broker: %s\n", s.bootstrap.empty() ? "embedded, a fresh one each round" : s.bootstrap.c_str());

  enum class side { raw, eventbus, eventbus_built };
  std::vector<double> raw_rates, bus_rates, built_rates;
  for (int r = 0; r < s.rounds; ++r) {
    for (const side which : {side::raw, side::eventbus, side::eventbus_built}) {
      if (!s.only.empty() && (s.only == "raw") != (which == side::raw)) continue;
      if (!s.only.empty() && which == side::eventbus_built) continue;
      const auto result = which == side::raw ? run_raw(s, events) : run_eventbus(s, events, which == side::eventbus_built);
      const double rate = static_cast<double>(result.delivered) / result.seconds;
      (which == side::raw ? raw_rates : which == side::eventbus ? bus_rates : built_rates).push_back(rate);
      std::printf("  round %d %-26s %8.3f s  %10.0f events/s  %7.1f MB/s  delivered %llu%s\n", r + 1,
                  which == side::raw ? "raw librdkafka" : which == side::eventbus ? "eventbus publish" : "eventbus make_event+publish",
                  result.seconds, rate, rate * mean_bytes / 1e6, static_cast<unsigned long long>(result.delivered),
                  result.delivered == static_cast<std::uint64_t>(s.events) ? "" : "  (INCOMPLETE)");
      std::fflush(stdout);
    }
  }
  if (!s.only.empty()) return 0;
  const double raw = median(raw_rates), bus = median(bus_rates), built = median(built_rates);
  std::printf("\nmedian: raw librdkafka %.0f events/s (%.1f MB/s), eventbus %.0f events/s (%.1f MB/s), "
              "eventbus building each event %.0f events/s\n",
              raw, raw * mean_bytes / 1e6, bus, bus * mean_bytes / 1e6, built);
  std::vector<double> paired, paired_built;  // each round's runs ran back to back: their ratio cancels slow phases
  for (std::size_t i = 0; i < raw_rates.size(); ++i) {
    paired.push_back(bus_rates[i] / raw_rates[i]);
    paired_built.push_back(built_rates[i] / raw_rates[i]);
  }
  std::printf("ratio eventbus / raw librdkafka (throughput): %.2f of medians, %.2f median of paired rounds  (target >= 0.80)\n",
              bus / raw, median(paired));
  std::printf("ratio eventbus building each event / raw:     %.2f of medians, %.2f median of paired rounds\n",
              built / raw, median(paired_built));
  return 0;
}
