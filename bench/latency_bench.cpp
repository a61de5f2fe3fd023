// End-to-end latency, publish -> handler: eventbus (dispatcher + kafka_sink -> worker) against a
// raw librdkafka producer -> raw consumer loop, same broker, same rate, same fetch.wait.max.ms, in
// the same run, the first second of each run left out as warm-up. The send time travels in the record (the payload's sent_ns for eventbus, a header
// for raw) and is compared with the steady clock when the handler (or the raw loop) sees it: both
// ends are in this process, so no clock skew. Rounds alternate raw / eventbus.
//
//   build/werror/bench/latency_bench [--rate 10000] [--events 60000] [--rounds 3] [--fetch-wait-ms 1] [--warm-up-ms 2000]
//   build/werror/bench/latency_bench --bootstrap HOST:PORT     # a broker in its own process

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "bench_support.hpp"
#include "eventbus/dispatcher.hpp"
#include "eventbus/kafka/embedded_broker.hpp"
#include "eventbus/kafka/kafka_sink.hpp"
#include "eventbus/log.hpp"
#include "eventbus/kafka/worker.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
constexpr const char* topic = "app.order.order.created";

struct settings {
  int rate = 10'000;
  int events = 60'000;
  int rounds = 3;
  int fetch_wait_ms = 1;
  int partitions = 8;
  int warm_up_ms = 2000;  // left out of the percentiles, both sides
  std::string bootstrap;  // empty: one embedded broker for the whole run
};

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now().time_since_epoch()).count();
}

// Latencies in microseconds, appended by one consumer thread or several handler threads.
struct samples {
  std::mutex mu;
  std::vector<double> us;
  void add(std::int64_t sent) {
    const double v = static_cast<double>(now_ns() - sent) / 1e3;
    const std::lock_guard lock(mu);
    us.push_back(v);
  }
  std::size_t size() {
    const std::lock_guard lock(mu);
    return us.size();
  }
};

struct percentiles {
  double p50 = 0, p99 = 0, p999 = 0;
};

// The first --warm-up-ms of each run is left out of the percentiles: in the first seconds after a
// group's assignment the mock broker sometimes holds records about a second, on either side
// (measured: raw p99 1.0 s once, eventbus p99 1.07 s once, each in one of several rounds).
percentiles summarize(std::vector<double> v, const settings& s) {
  const auto warm_up =
      std::min<std::size_t>(static_cast<std::size_t>(s.rate) * static_cast<std::size_t>(s.warm_up_ms) / 1000, v.size() / 2);
  v.erase(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(warm_up));
  std::sort(v.begin(), v.end());
  const auto at = [&](double q) { return v.empty() ? 0.0 : v[std::min(v.size() - 1, static_cast<std::size_t>(q * static_cast<double>(v.size())))]; };
  return {at(0.50), at(0.99), at(0.999)};
}

// Paces `count` sends at `rate` per second; `send(i)` does one.
template <class Send>
void paced(const settings& s, Send&& send) {
  const auto start = clock_type::now();
  for (int i = 0; i < s.events; ++i) {
    std::this_thread::sleep_until(start + std::chrono::nanoseconds(static_cast<std::int64_t>(i) * 1'000'000'000 / s.rate));
    send(i);
  }
}

// Waits until `got` reaches `want` (or a minute passes).
template <class Got>
bool wait_for(Got&& got, std::size_t want) {
  const auto give_up = clock_type::now() + std::chrono::minutes(1);
  while (got() < want && clock_type::now() < give_up) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  return got() >= want;
}

std::string fetch_wait(const settings& s) { return std::to_string(s.fetch_wait_ms); }

percentiles run_eventbus(const std::string& bootstrap, const settings& s, const std::string& group) {
  samples seen;
  eventbus::worker w({.kafka = {.bootstrap_servers = bootstrap,
                                // latest: the raw run's records on the same topic are not this run's
                                .properties = {{"fetch.wait.max.ms", fetch_wait(s)},
                                               {"auto.offset.reset", "latest"},
                                               {"log_level", "3"}}},
                      .group_id = group,
                      .topics = {topic},
                      .max_concurrency = 4});
  auto sub = w.subscribe("order.created", "latency", [&](const eventbus::event& ev) {
    seen.add(ev.payload()["sent_ns"].get<std::int64_t>());
  });
  w.start();
  const auto joined = clock_type::now() + std::chrono::seconds(30);
  while (w.assigned_partitions() == 0 && clock_type::now() < joined) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // "latest" positions settle, as for raw (not a sync)

  auto sink = std::make_shared<eventbus::kafka_sink>(
      eventbus::producer_options{.kafka = {.bootstrap_servers = bootstrap, .properties = {{"log_level", "3"}}}});
  eventbus::dispatcher bus;
  bus.add_sink(sink);
  paced(s, [&](int i) {
    (void)bus.publish(eventbus::make_event({.event_type = "order.created", .aggregate_type = "order",
                                            .aggregate_id = "order-" + std::to_string(i % 1000),
                                            .payload = {{"seq", i}, {"sent_ns", now_ns()}}}));
  });
  if (!wait_for([&] { return seen.size(); }, static_cast<std::size_t>(s.events)))
    std::fprintf(stderr, "eventbus: only %zu of %d events arrived\n", seen.size(), s.events);
  w.stop();
  return summarize(seen.us, s);
}

percentiles run_raw(const std::string& bootstrap, const settings& s, const std::string& group) {
  samples seen;
  std::atomic<bool> assigned{false}, stop{false};
  std::thread consumer([&] {
    rd_kafka_t* rk = eventbus::bench::raw_group_consumer(
        bootstrap, topic, group, {{"auto.offset.reset", "latest"}, {"fetch.wait.max.ms", fetch_wait(s)}});
    while (!stop.load()) {
      rd_kafka_message_t* msg = rd_kafka_consumer_poll(rk, 10);
      if (!assigned.load()) {
        rd_kafka_topic_partition_list_t* mine = nullptr;
        if (rd_kafka_assignment(rk, &mine) == RD_KAFKA_RESP_ERR_NO_ERROR) {
          if (mine->cnt > 0) assigned = true;
          rd_kafka_topic_partition_list_destroy(mine);
        }
      }
      if (msg == nullptr) continue;
      rd_kafka_headers_t* headers = nullptr;
      const void* value = nullptr;
      size_t size = 0;
      if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR && rd_kafka_message_headers(msg, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR &&
          rd_kafka_header_get_last(headers, "sent_ns", &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR &&
          size == sizeof(std::int64_t)) {
        std::int64_t sent = 0;
        std::memcpy(&sent, value, sizeof sent);
        seen.add(sent);
      }
      rd_kafka_message_destroy(msg);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
  });
  const auto joined = clock_type::now() + std::chrono::seconds(30);
  while (!assigned.load() && clock_type::now() < joined) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // "latest" positions settle (measured, not a sync)

  char why[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), why, sizeof why);
  rd_kafka_conf_set(conf, "enable.idempotence", "true", why, sizeof why);  // as kafka_sink
  rd_kafka_conf_set(conf, "acks", "all", why, sizeof why);
  rd_kafka_conf_set(conf, "log_level", "3", why, sizeof why);
  rd_kafka_t* producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof why);
  paced(s, [&](int i) {
    const auto ev = eventbus::make_event({.event_type = "order.created", .aggregate_type = "order",
                                          .aggregate_id = "order-" + std::to_string(i % 1000),
                                          .payload = {{"seq", i}, {"sent_ns", 0}}});
    const std::string& value = eventbus::encode_event(ev);
    const std::int64_t sent = now_ns();
    rd_kafka_headers_t* headers = rd_kafka_headers_new(1);
    rd_kafka_header_add(headers, "sent_ns", -1, &sent, sizeof sent);
    auto fields = eventbus::bench::record_fields(topic, ev.aggregate_id(), value, eventbus::bench::headers_field(headers));
    if (rd_kafka_error_t* err = rd_kafka_produceva(producer, fields.data(), fields.size())) {
      rd_kafka_error_destroy(err);
      rd_kafka_headers_destroy(headers);
    }
    if ((i & 1023) == 0) rd_kafka_poll(producer, 0);
  });
  rd_kafka_flush(producer, 30'000);
  rd_kafka_destroy(producer);
  if (!wait_for([&] { return seen.size(); }, static_cast<std::size_t>(s.events)))
    std::fprintf(stderr, "raw: only %zu of %d records arrived\n", seen.size(), s.events);
  stop = true;
  consumer.join();
  return summarize(seen.us, s);
}

}  // namespace

int main(int argc, char** argv) {
  settings s;
  if (!eventbus::bench::parse_flags(argc, argv,
                                    {{"--rate", &s.rate},
                                     {"--events", &s.events},
                                     {"--rounds", &s.rounds},
                                     {"--fetch-wait-ms", &s.fetch_wait_ms},
                                     {"--partitions", &s.partitions},
                                     {"--warm-up-ms", &s.warm_up_ms}},
                                    [&](std::string_view name, std::string_view value) {
                                      s.bootstrap = std::string(value);
                                      return name == "--bootstrap" && !value.empty();
                                    })) {
    std::fprintf(stderr,
                 "usage: latency_bench [--rate N] [--events N] [--rounds R] [--fetch-wait-ms MS] [--partitions P] "
                 "[--warm-up-ms MS] [--bootstrap HOST:PORT]\n");
    return 2;
  }
  eventbus::set_log_level(eventbus::log_level::error);
  std::optional<eventbus::embedded_broker> embedded;
  std::string bootstrap = s.bootstrap;
  if (bootstrap.empty()) {
    embedded.emplace();
    embedded->create_topic(topic, s.partitions);
    bootstrap = embedded->bootstrap_servers();
  }
  std::printf("latency_bench: %d events at %d/s, fetch.wait.max.ms=%d, %s broker, %d rounds (microseconds)\n", s.events,
              s.rate, s.fetch_wait_ms, s.bootstrap.empty() ? "embedded" : "separate-process", s.rounds);
  std::vector<double> raw50, raw99, raw999, bus50, bus99, bus999;
  for (int r = 0; r < s.rounds; ++r) {
    const auto raw = run_raw(bootstrap, s, "lat-raw-" + std::to_string(r));
    const auto bus = run_eventbus(bootstrap, s, "lat-eb-" + std::to_string(r));
    raw50.push_back(raw.p50), raw99.push_back(raw.p99), raw999.push_back(raw.p999);
    bus50.push_back(bus.p50), bus99.push_back(bus.p99), bus999.push_back(bus.p999);
    std::printf("  round %d  raw p50 %8.0f  p99 %8.0f  p99.9 %8.0f   eventbus p50 %8.0f  p99 %8.0f  p99.9 %8.0f\n", r + 1,
                raw.p50, raw.p99, raw.p999, bus.p50, bus.p99, bus.p999);
    std::fflush(stdout);
  }
  using eventbus::bench::median;
  std::printf("\nmedian: raw p50 %.0f p99 %.0f p99.9 %.0f us; eventbus p50 %.0f p99 %.0f p99.9 %.0f us\n", median(raw50),
              median(raw99), median(raw999), median(bus50), median(bus99), median(bus999));
  std::printf("ratio eventbus / raw (latency; 1.00 = as fast): p50 %.2f  p99 %.2f  p99.9 %.2f\n",
              median(bus50) / median(raw50), median(bus99) / median(raw99), median(bus999) / median(raw999));
  return 0;
}
