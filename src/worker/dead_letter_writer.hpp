#pragma once
// The dead-letter piece of the worker: writes a record to its dead-letter topic and keeps trying
// while the failure is one a retry can fix (broker down, leader moving, topic not there yet). The
// owner commits the record only once `done` ran, so a dead-letter topic that cannot be written
// for now holds the record (and its partition) uncommitted, and says so in the log.
//
// Failures no retry can fix do not hold a partition forever: a record too large for the
// dead-letter topic is written without its value (its position, reason and size say where to find
// it); one the cluster refuses even then (authorization) is given up, logged at error level with its
// position, and counted (dead_letter_outcome::dropped).

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "eventbus/kafka/options.hpp"
#include "kafka/record_producer.hpp"
#include "worker/dead_letter.hpp"
#include "worker/records.hpp"

namespace eventbus::detail {

/// What became of a dead letter.
enum class dead_letter_outcome {
  written,        // key, value and headers, as consumed
  value_dropped,  // too large for the dead-letter topic: written without the original value and
                  // headers, with x-eventbus-dlq-value-dropped saying why
  dropped,        // the cluster refused even that for good (e.g. not authorized): logged, counted
};

class dead_letter_writer {
 public:
  /// Runs `fn` on the owner's thread after `delay` (zero: as soon as it can). Thread-safe.
  using scheduler = std::function<void(std::chrono::milliseconds delay, std::function<void()> fn)>;

  dead_letter_writer(const kafka_options& kafka, std::string group, std::string dlq_suffix, scheduler on_owner);

  /// Writes `record` to dlq_topic_for(topic, dlq_suffix) with the dead-letter headers. On the
  /// owner's thread: `done` once the write is acknowledged or given up; after a retriable failure,
  /// `cancelled()` is asked before each new try (true: the owner gave the record up, e.g. its
  /// partition was revoked).
  void write(std::shared_ptr<const consumed_record> record, const dead_letter_reason& why,
             std::function<bool()> cancelled, std::function<void(dead_letter_outcome)> done);

  [[nodiscard]] std::uint64_t written() const noexcept { return written_.load(std::memory_order_relaxed); }
  [[nodiscard]] std::uint64_t failures() const noexcept { return failures_.load(std::memory_order_relaxed); }
  [[nodiscard]] std::uint64_t dropped() const noexcept { return dropped_.load(std::memory_order_relaxed); }

 private:
  struct pending;
  void attempt(std::shared_ptr<pending> p);
  void drop_value(pending& p, const std::string& why) const;

  std::string group_;
  std::string dlq_suffix_;
  scheduler on_owner_;
  record_producer producer_;
  std::atomic<std::uint64_t> written_{0}, failures_{0}, dropped_{0};
};

}  // namespace eventbus::detail
