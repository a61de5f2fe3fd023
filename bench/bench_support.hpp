#pragma once
// Small helpers the Kafka benchmarks share: reading their numeric flags, producing their events,
// summarising rounds.

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <initializer_list>
#include <string>
#include <utility>
#include <string_view>
#include <vector>

#include "eventbus/event.hpp"

namespace eventbus::bench {

/// Parses `value` into `target` when it is a whole positive number; false otherwise.
inline bool parse_positive(std::string_view value, int& target) {
  const auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), target);
  return ec == std::errc{} && ptr == value.data() + value.size() && target > 0;
}

/// The fields of one rd_kafka_produceva call: topic, key and value (not copied: they must live
/// until the call returns), and `last` (the record's headers, or message flags).
inline std::array<rd_kafka_vu_t, 4> record_fields(const char* topic, std::string_view key, std::string_view value,
                                                  rd_kafka_vu_t last) {
  std::array<rd_kafka_vu_t, 4> fields{};
  fields[0].vtype = RD_KAFKA_VTYPE_TOPIC;
  fields[0].u.cstr = topic;
  fields[1].vtype = RD_KAFKA_VTYPE_KEY;
  fields[1].u.mem = {const_cast<char*>(key.data()), key.size()};
  fields[2].vtype = RD_KAFKA_VTYPE_VALUE;
  fields[2].u.mem = {const_cast<char*>(value.data()), value.size()};
  fields[3] = last;
  return fields;
}

inline rd_kafka_vu_t headers_field(rd_kafka_headers_t* headers) {
  rd_kafka_vu_t field{};
  field.vtype = RD_KAFKA_VTYPE_HEADERS;
  field.u.headers = headers;
  return field;
}

inline rd_kafka_vu_t msgflags_field(int flags) {
  rd_kafka_vu_t field{};
  field.vtype = RD_KAFKA_VTYPE_MSGFLAGS;
  field.u.i = flags;
  return field;
}

/// The textbook produce: on a full queue, serve delivery reports for up to `poll_ms` and try
/// again. False when librdkafka refused the record for another reason (headers stay the caller's).
template <std::size_t N>
inline bool produce_waiting_when_full(rd_kafka_t* rk, std::array<rd_kafka_vu_t, N>& fields, int poll_ms) {
  for (;;) {
    rd_kafka_error_t* err = rd_kafka_produceva(rk, fields.data(), fields.size());
    if (err == nullptr) return true;
    const bool full = rd_kafka_error_code(err) == RD_KAFKA_RESP_ERR__QUEUE_FULL;
    rd_kafka_error_destroy(err);
    if (!full) return false;
    rd_kafka_poll(rk, poll_ms);
  }
}

/// What a raw librdkafka consumer run read, timed from its first record to its last.
struct raw_run {
  double seconds = 0;
  std::uint64_t records = 0;
};

/// A hand-written consumer in group `group`, subscribed to `topic`, from the earliest offset, with
/// `extra` properties on top (the mock broker does not wake an empty fetch: fetch.wait.max.ms 10).
inline rd_kafka_t* raw_group_consumer(const std::string& bootstrap, const char* topic, const std::string& group,
                                      std::initializer_list<std::pair<const char*, std::string>> extra = {}) {
  char why[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), why, sizeof why);
  rd_kafka_conf_set(conf, "group.id", group.c_str(), why, sizeof why);
  rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", why, sizeof why);
  rd_kafka_conf_set(conf, "fetch.wait.max.ms", "10", why, sizeof why);
  rd_kafka_conf_set(conf, "log_level", "3", why, sizeof why);
  for (const auto& [name, value] : extra) rd_kafka_conf_set(conf, name, value.c_str(), why, sizeof why);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof why);
  rd_kafka_poll_set_consumer(rk);
  rd_kafka_topic_partition_list_t* topics = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(topics, topic, RD_KAFKA_PARTITION_UA);
  rd_kafka_subscribe(rk, topics);
  rd_kafka_topic_partition_list_destroy(topics);
  return rk;
}

/// The baseline the Kafka benchmarks compare with: a hand-written `rd_kafka_consumer_poll` loop in
/// consumer group `group` (auto-commit on, from the earliest offset) that calls `on_record` on each
/// record of `topic` until `records` were read (or 10 minutes passed).
template <class OnRecord>
raw_run raw_consume(const std::string& bootstrap, const char* topic, const std::string& group, std::uint64_t records,
                    OnRecord&& on_record) {
  using clock_type = std::chrono::steady_clock;
  rd_kafka_t* rk = raw_group_consumer(bootstrap, topic, group);

  std::uint64_t count = 0;
  clock_type::time_point first{};
  const auto give_up = clock_type::now() + std::chrono::minutes(10);
  while (count < records && clock_type::now() < give_up) {
    rd_kafka_message_t* msg = rd_kafka_consumer_poll(rk, 100);
    if (msg == nullptr) continue;
    if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (count++ == 0) first = clock_type::now();
      on_record(*msg);
    }
    rd_kafka_message_destroy(msg);
  }
  const double seconds = std::chrono::duration<double>(clock_type::now() - first).count();
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return {seconds, count};
}

/// Reads `--name value` pairs from the command line: a whole positive number for one of `numbers`,
/// or anything `other` accepts (it may be empty). False on anything else, a flag without its value
/// included.
inline bool parse_flags(int argc, char** argv, std::initializer_list<std::pair<std::string_view, int*>> numbers,
                        const std::function<bool(std::string_view, std::string_view)>& other = {}) {
  for (int i = 1; i < argc; i += 2) {
    if (i + 1 >= argc) return false;
    const std::string_view name = argv[i], value = argv[i + 1];
    const auto it = std::find_if(numbers.begin(), numbers.end(), [&](const auto& n) { return n.first == name; });
    const bool ok = it != numbers.end() ? parse_positive(value, *it->second) : other && other(name, value);
    if (!ok) return false;
  }
  return true;
}

/// The middle value (the upper one of an even count): robust to one slow round.
inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

/// Produces `events` order.created envelopes of about 350 bytes to `topic` (of `partitions`
/// partitions on the embedded broker) with raw librdkafka, keyed by aggregate id over `keys`
/// aggregates, with payload.seq = 0, 1, 2, ... Exits naming the limit when the broker would drop
/// some: the mock keeps about 5 MB a partition (docs/embedded-broker.md), and a run waiting for
/// records it dropped hung until its timeout, then printed a rate as if it had measured one.
inline void produce_orders(const std::string& bootstrap, const char* topic, int events, int keys, int partitions) {
  constexpr int most_a_partition = 13'000;  // of ~350 B: ~14,000 fit, less keys hashing unevenly
  const int holding = std::min(partitions, keys);  // fewer keys than partitions fill only some
  if (holding <= 0 || events / holding > most_a_partition) {
    std::fprintf(stderr,
                 "%d events of %d keys on %d partitions is more than the embedded broker keeps (about %d records "
                 "of 350 B a partition, docs/embedded-broker.md): lower --events, or spread them over more "
                 "partitions and keys (at least %d of each)\n",
                 events, keys, partitions, most_a_partition, (events + most_a_partition - 1) / most_a_partition);
    std::exit(2);
  }
  char why[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), why, sizeof why);
  rd_kafka_conf_set(conf, "linger.ms", "20", why, sizeof why);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof why);
  for (int i = 0; i < events; ++i) {
    const auto ev = eventbus::make_event(
        {.event_type = "order.created",
         .aggregate_type = "order",
         .aggregate_id = "order-" + std::to_string(i % keys),
         .payload = {{"seq", i}, {"customer_id", "c-" + std::to_string(i % 977)}, {"total_cents", 1000 + i % 5000},
                     {"currency", "EUR"}, {"items", {{{"sku", "SKU-" + std::to_string(i % 300)}, {"qty", 1 + i % 4}}}}},
         .correlation_id = "corr-" + std::to_string(i)});
    auto fields =
        record_fields(topic, ev.aggregate_id(), eventbus::encode_event(ev), msgflags_field(RD_KAFKA_MSG_F_COPY));
    (void)produce_waiting_when_full(rk, fields, 10);
    rd_kafka_poll(rk, 0);
  }
  rd_kafka_flush(rk, 300'000);
  rd_kafka_destroy(rk);
}

}  // namespace eventbus::bench
