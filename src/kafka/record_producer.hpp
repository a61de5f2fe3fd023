#pragma once
// A producer of raw records (topic, key, value, headers) with a completion callback per record:
// what the worker needs to write dead letters and replays. Idempotent, acks=all, values copied.

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <librdkafka/rdkafka.h>

#include "eventbus/kafka/options.hpp"
#include "kafka/record_headers.hpp"

namespace eventbus::detail {

class record_producer {
 public:
  /// Called exactly once per record, on the producer's poll thread (or at once on a local refusal).
  using completion = std::function<void(rd_kafka_resp_err_t err)>;

  explicit record_producer(const kafka_options& options);
  ~record_producer();  // flushes for up to 10 s; what is left is purged and completed with an error
  record_producer(const record_producer&) = delete;
  record_producer& operator=(const record_producer&) = delete;

  /// A key or value left empty (std::nullopt) is written as Kafka's null, not as zero bytes: a null
  /// key is partitioned at random, a null value is a tombstone.
  void produce(const std::string& topic, std::optional<std::string_view> key, std::optional<std::string_view> value,
               const record_headers& headers, completion done);
  /// The largest record (key, value and headers) this producer accepts: its message.max.bytes.
  [[nodiscard]] std::size_t max_record_bytes() const noexcept;
  /// True when every record produced so far has completed.
  bool flush(std::chrono::milliseconds timeout);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace eventbus::detail
