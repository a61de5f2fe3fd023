#pragma once
// An in-process Kafka-protocol broker: librdkafka's mock cluster on loopback, with its fault
// injection. For tests, the zero-setup default (bootstrap_servers = "embedded") and
// `eventbus dev-broker`. In memory only: nothing survives the process.
//
// Known differences from real Kafka (librdkafka 2.0.2): about 5 MB kept per partition (older data
// is deleted), an empty fetch waits the whole fetch.wait.max.ms, the first group join takes ~3 s,
// auto-created topics get 4 partitions. See docs/embedded-broker.md.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

struct rd_kafka_mock_cluster_s;

namespace eventbus {

/// Kafka protocol request types, for push_request_errors().
enum class kafka_api : std::int16_t {
  produce = 0,
  fetch = 1,
  list_offsets = 2,
  metadata = 3,
  offset_commit = 8,
  offset_fetch = 9,
  find_coordinator = 10,
  join_group = 11,
  heartbeat = 12,
  sync_group = 14,
  init_producer_id = 22,
};

class embedded_broker {
 public:
  static constexpr std::int32_t all_brokers = -1;

  /// Starts `brokers` brokers (ids 1..brokers) listening on 127.0.0.1. Throws eventbus::exception.
  explicit embedded_broker(int brokers = 1);
  ~embedded_broker();
  embedded_broker(const embedded_broker&) = delete;
  embedded_broker& operator=(const embedded_broker&) = delete;

  /// The process-wide instance behind bootstrap_servers = "embedded", started on first use and
  /// kept while anyone holds it, so a sink and a worker in one process share one cluster.
  [[nodiscard]] static std::shared_ptr<embedded_broker> shared();

  /// "127.0.0.1:port,..." for bootstrap.servers.
  [[nodiscard]] const std::string& bootstrap_servers() const noexcept;
  [[nodiscard]] int broker_count() const noexcept { return brokers_; }

  /// Creates a topic (before anyone auto-creates it with 4 partitions). Throws on error.
  void create_topic(const std::string& topic, int partitions, int replication_factor = 1);

  /// Disconnects a broker (or all) and refuses connections until set_up(). Throws on a bad id.
  void set_down(std::int32_t broker_id = all_brokers);
  void set_up(std::int32_t broker_id = all_brokers);
  void set_round_trip_time(std::chrono::milliseconds rtt, std::int32_t broker_id = all_brokers);

  /// The next errors.size() requests of that type fail with these Kafka error codes, in order
  /// (rd_kafka_resp_err_t values, e.g. RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION).
  void push_request_errors(kafka_api api, const std::vector<int>& error_codes);

  /// Every request for `topic` fails with this error code until set to 0 (no error).
  void set_topic_error(const std::string& topic, int error_code);

  /// The underlying rd_kafka_mock_cluster_t, for fault injection not wrapped here.
  [[nodiscard]] rd_kafka_mock_cluster_s* native_handle() const noexcept;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
  int brokers_;
};

}  // namespace eventbus
