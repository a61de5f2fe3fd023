// Publish -> ack throughput of the Kafka mirror against a raw librdkafka producer sending the same
// bytes (same topic, key, value and headers, same client settings), in the same run, each round on
// a fresh embedded broker (or on a broker in its own process, --bootstrap), rounds interleaved so
// all runs see the same machine. Two more runs build every event as they publish it: eventbus
// with make_event, and a raw loop that writes the same envelope by hand.
//
//   build/bench/bench/produce_bench [--events 1000000] [--rounds 3] [--partitions 8]
//   eventbus dev-broker --partitions 8 --topic app.order.order.created > broker.addr &
//   build/bench/bench/produce_bench --bootstrap "$(head -n 1 broker.addr)"
//   --distinct N cycles N prebuilt events (100,000 by default); --pad B adds a B-byte payload field.

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <optional>
#include <random>
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
  std::string only;  // one run alone (raw, eventbus, raw-built, eventbus-built), for profiling; no ratio then
  std::string bootstrap;  // a broker of its own (its topic made with `partitions`); empty: embedded
  int events = 1'000'000;
  int rounds = 3;
  int partitions = 8;
  int distinct = 100'000;  // distinct prebuilt events, cycled
  int pad = 0;             // bytes of an extra payload field (a user's bigger events)
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

// The caller's payload of event i: built the same way on every side that builds events.
nlohmann::json order_payload(std::size_t i, int pad) {
  nlohmann::json payload = {{"customer_id", "c-" + std::to_string(i % 977)}, {"total_cents", 1000 + i % 5000},
                            {"currency", "EUR"}, {"items", {{{"sku", "SKU-" + std::to_string(i % 300)}, {"qty", 1 + i % 4}}}}};
  if (pad > 0) payload["note"] = std::string(static_cast<std::size_t>(pad), 'n');
  return payload;
}

// The order events of make_events, or built one by one in the timed loop.
eventbus::event build_event(std::size_t i, int pad) {
  return eventbus::make_event({.event_type = "order.created",
                               .aggregate_type = "order",
                               .aggregate_id = "order-" + std::to_string(i % 10'000),
                               .payload = order_payload(i, pad),
                               .correlation_id = "corr-" + std::to_string(i)});
}

// The same envelope built by hand, as a careful engineer would without eventbus: a random
// version-4 id from a per-thread generator, the timestamp's digits written in place, the fields
// appended (these ids need no escaping, so none is done: the baseline's best case), the payload
// written by nlohmann's serializer straight into the value. No validation. Its timestamp digits
// are written here, like eventbus's format_timestamp writes them: the baseline calls no eventbus
// code.
class raw_envelope_builder {
 public:
  const std::string& build(std::size_t i, int pad) {
    id_ = new_id();
    aggregate_id_ = "order-" + std::to_string(i % 10'000);
    correlation_id_ = "corr-" + std::to_string(i);
    const nlohmann::json payload = order_payload(i, pad);
    out_.clear();
    out_.append("{\"event_id\":\"").append(id_);
    out_.append("\",\"event_type\":\"order.created\",\"aggregate_id\":\"").append(aggregate_id_);
    out_.append("\",\"aggregate_type\":\"order\",\"payload\":");
    nlohmann::detail::serializer<nlohmann::json> writer(nlohmann::detail::output_adapter<char>(out_), ' ');
    writer.dump(payload, false, false, 0);
    out_.append(",\"timestamp\":\"");
    append_now();
    out_.append("\",\"version\":1,\"correlation_id\":\"").append(correlation_id_).append("\"}");
    return out_;
  }
  const std::string& id() const { return id_; }
  const std::string& aggregate_id() const { return aggregate_id_; }
  const std::string& correlation_id() const { return correlation_id_; }

 private:
  std::string new_id() {
    const std::uint64_t hi = (random_() & ~0xf000ULL) | 0x4000ULL;                   // version 4
    const std::uint64_t lo = (random_() & ~(3ULL << 62)) | (2ULL << 62);             // RFC 4122 variant
    static constexpr char hex[] = "0123456789abcdef";
    std::string text(36, '-');
    std::size_t at = 0;
    for (int nibble = 0; nibble < 32; ++nibble) {
      if (at == 8 || at == 13 || at == 18 || at == 23) ++at;
      const std::uint64_t word = nibble < 16 ? hi : lo;
      text[at++] = hex[(word >> (60 - 4 * (nibble % 16))) & 0xf];
    }
    return text;
  }
  void append_now() {
    using namespace std::chrono;
    const auto now = time_point_cast<milliseconds>(system_clock::now());
    const auto day = floor<days>(now);
    const year_month_day ymd{day};
    const hh_mm_ss<milliseconds> hms{now - day};
    char text[] = "0000-00-00T00:00:00.000Z";
    const auto put = [&](std::size_t at, unsigned value, std::size_t width) {
      for (std::size_t k = width; k-- > 0; value /= 10) text[at + k] = static_cast<char>('0' + value % 10);
    };
    put(0, static_cast<unsigned>(static_cast<int>(ymd.year())), 4);
    put(5, static_cast<unsigned>(ymd.month()), 2);
    put(8, static_cast<unsigned>(ymd.day()), 2);
    put(11, static_cast<unsigned>(hms.hours().count()), 2);
    put(14, static_cast<unsigned>(hms.minutes().count()), 2);
    put(17, static_cast<unsigned>(hms.seconds().count()), 2);
    put(20, static_cast<unsigned>(hms.subseconds().count()), 3);
    out_.append(text, sizeof text - 1);
  }

  std::mt19937_64 random_{std::random_device{}()};
  std::string id_, aggregate_id_, correlation_id_, out_;
};

// Distinct events, cycled: building a million envelopes is the publisher's cost, not the mirror's
// (the runs that build each event measure it).
std::vector<eventbus::event> make_events(std::size_t distinct, int pad) {
  std::vector<eventbus::event> events;
  events.reserve(distinct);
  for (std::size_t i = 0; i < distinct; ++i) events.push_back(build_event(i, pad));
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
    auto outcome = build_each ? bus.publish(build_event(static_cast<std::size_t>(i), s.pad))
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

// The headers the mirror sends with each record (besides content-type).
struct raw_headers {
  std::string_view event_id, event_type, aggregate_type, correlation_id;
};

// One record as the raw loop sends it. `flags` 0: librdkafka takes the value's bytes without a
// copy (they must outlive the delivery); RD_KAFKA_MSG_F_COPY: it copies them.
void produce_raw(rd_kafka_t* rk, const char* topic, std::string_view key, std::string_view value, const raw_headers& h,
                 int flags) {
  rd_kafka_headers_t* headers = rd_kafka_headers_new(5);
  const auto add = [&](const char* name, std::string_view text) {
    rd_kafka_header_add(headers, name, -1, text.data(), static_cast<ssize_t>(text.size()));
  };
  add("event_id", h.event_id);
  add("event_type", h.event_type);
  add("aggregate_type", h.aggregate_type);
  add("content-type", "application/json");
  add("correlation_id", h.correlation_id);
  const auto four = eventbus::bench::record_fields(topic, key, value, eventbus::bench::headers_field(headers));
  std::array<rd_kafka_vu_t, 5> fields{four[0], four[1], four[2], four[3], eventbus::bench::msgflags_field(flags)};
  if (!eventbus::bench::produce_waiting_when_full(rk, fields, 1)) rd_kafka_headers_destroy(headers);
}

// Without `events`: each envelope built by hand as it is produced (raw_envelope_builder), and
// copied by librdkafka (the builder's buffer is reused).
run_result run_raw(const settings& s, const std::vector<eventbus::event>* events) {
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

  raw_envelope_builder builder;
  const auto start = clock_type::now();
  for (int i = 0; i < s.events; ++i) {
    if (events == nullptr) {
      const std::string& value = builder.build(static_cast<std::size_t>(i), s.pad);
      produce_raw(rk, topic.c_str(), builder.aggregate_id(), value,
                  {builder.id(), "order.created", "order", builder.correlation_id()}, RD_KAFKA_MSG_F_COPY);
    } else {
      const auto& ev = (*events)[static_cast<std::size_t>(i) % events->size()];
      produce_raw(rk, topic.c_str(), ev.aggregate_id(), eventbus::encode_event(ev),
                  {ev.event_id(), ev.event_type(), ev.aggregate_type(), *ev.correlation_id()}, 0);
    }
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
    return name == "--only" && (value == "raw" || value == "eventbus" || value == "raw-built" || value == "eventbus-built");
  };
  if (!eventbus::bench::parse_flags(argc, argv,
                                    {{"--events", &s.events},
                                     {"--rounds", &s.rounds},
                                     {"--partitions", &s.partitions},
                                     {"--distinct", &s.distinct},
                                     {"--pad", &s.pad}},
                                    strings)) {
    std::fprintf(stderr,
                 "usage: produce_bench [--events N] [--rounds R] [--partitions P] [--only raw|eventbus|raw-built|eventbus-built] "
                 "[--bootstrap HOST:PORT] [--distinct N] [--pad BYTES]\n");
    return 2;
  }
  eventbus::set_log_level(eventbus::log_level::error);
  const auto events = make_events(static_cast<std::size_t>(s.distinct), s.pad);
  double bytes = 0;
  for (const auto& ev : events) bytes += static_cast<double>(eventbus::encode_event(ev).size());
  const double mean_bytes = bytes / static_cast<double>(events.size());
  std::printf("produce_bench: %d events of %.0f B (value; %d distinct, cycled), %d partitions, idempotent, acks=all, %d rounds\n",
              s.events, mean_bytes, s.distinct, s.partitions, s.rounds);

  std::printf("broker: %s\n", s.bootstrap.empty() ? "embedded, a fresh one each round" : s.bootstrap.c_str());

  enum class side { raw, eventbus, raw_built, eventbus_built };
  std::vector<double> raw_rates, bus_rates, raw_built_rates, built_rates;
  const auto only_runs = [&](side which) {
    if (s.only.empty()) return true;
    if (s.only == "raw") return which == side::raw;
    if (s.only == "eventbus") return which == side::eventbus;
    if (s.only == "raw-built") return which == side::raw_built;
    return which == side::eventbus_built;  // "eventbus-built"
  };
  for (int r = 0; r < s.rounds; ++r) {
    for (const side which : {side::raw, side::eventbus, side::raw_built, side::eventbus_built}) {
      if (!only_runs(which)) continue;
      const auto result = which == side::raw         ? run_raw(s, &events)
                          : which == side::raw_built ? run_raw(s, nullptr)
                                                     : run_eventbus(s, events, which == side::eventbus_built);
      const double rate = static_cast<double>(result.delivered) / result.seconds;
      (which == side::raw         ? raw_rates
       : which == side::eventbus  ? bus_rates
       : which == side::raw_built ? raw_built_rates
                                  : built_rates)
          .push_back(rate);
      std::printf("  round %d %-30s %8.3f s  %10.0f events/s  %7.1f MB/s  delivered %llu%s\n", r + 1,
                  which == side::raw         ? "raw librdkafka"
                  : which == side::eventbus  ? "eventbus publish"
                  : which == side::raw_built ? "raw, each envelope built"
                                             : "eventbus make_event+publish",
                  result.seconds, rate, rate * mean_bytes / 1e6, static_cast<unsigned long long>(result.delivered),
                  result.delivered == static_cast<std::uint64_t>(s.events) ? "" : "  (INCOMPLETE)");
      std::fflush(stdout);
    }
  }
  if (!s.only.empty()) return 0;
  const double raw = median(raw_rates), bus = median(bus_rates), raw_built = median(raw_built_rates),
               built = median(built_rates);
  std::printf("\nmedian: raw librdkafka %.0f events/s (%.1f MB/s), eventbus %.0f events/s (%.1f MB/s), "
              "raw building each envelope %.0f events/s, eventbus building each event %.0f events/s\n",
              raw, raw * mean_bytes / 1e6, bus, bus * mean_bytes / 1e6, raw_built, built);
  // Each round's runs ran back to back: their ratio cancels slow phases.
  std::vector<double> paired, paired_built, paired_built_prebuilt;
  for (std::size_t i = 0; i < raw_rates.size(); ++i) {
    paired.push_back(bus_rates[i] / raw_rates[i]);
    paired_built.push_back(built_rates[i] / raw_built_rates[i]);
    paired_built_prebuilt.push_back(built_rates[i] / raw_rates[i]);
  }
  std::printf("ratio eventbus / raw librdkafka (throughput): %.2f of medians, %.2f median of paired rounds  (target >= 0.80)\n",
              bus / raw, median(paired));
  std::printf("ratio each event built, eventbus / raw:       %.2f of medians, %.2f median of paired rounds  (target >= 0.80)\n",
              built / raw_built, median(paired_built));
  std::printf("ratio eventbus building each event / raw publishing prebuilt bytes: %.2f of medians, %.2f paired\n",
              built / raw, median(paired_built_prebuilt));
  return 0;
}
