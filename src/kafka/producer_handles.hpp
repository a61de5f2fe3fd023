#pragma once
// A librdkafka producer that outlives a fatal error. An idempotent producer that loses track of its
// sequence numbers (OUT_OF_ORDER_SEQUENCE_NUMBER, a fenced or expired producer id) enters a fatal
// state and refuses every later record for good. This holder notices it on the owner's poll
// thread, makes a fresh producer from the same configuration and hands it out from then on; the
// broken one is purged (each of its records gets its failed delivery report) and kept, polled
// until drained, until the holder goes.

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "kafka/rdkafka_handles.hpp"

namespace eventbus::detail {

class producer_handles {
 public:
  /// Takes the configuration (callbacks and opaque set) and creates the first producer.
  explicit producer_handles(kafka_conf conf);
  producer_handles(const producer_handles&) = delete;
  producer_handles& operator=(const producer_handles&) = delete;

  /// The producer to use now. Any thread; no lock.
  [[nodiscard]] rd_kafka_t* current() const noexcept { return current_.load(std::memory_order_acquire); }

  /// On the owner's poll thread, between polls: replaces the current producer if it hit a fatal
  /// error, and serves the delivery reports of replaced ones.
  void maintain() noexcept;

  /// Producers replaced so far.
  [[nodiscard]] std::uint64_t replacements() const noexcept { return replacements_.load(std::memory_order_relaxed); }

  /// True when `rk` (one of ours) hit a fatal error: its failures are not worth retrying on it.
  [[nodiscard]] static bool is_fatal(rd_kafka_t* rk) noexcept;

 private:
  kafka_conf template_;               // copied for each new producer
  std::vector<kafka_handle> handles_;  // every producer made, the current one last (poll thread only)
  std::atomic<rd_kafka_t*> current_{nullptr};
  std::atomic<std::uint64_t> replacements_{0};
};

}  // namespace eventbus::detail
