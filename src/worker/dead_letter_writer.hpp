#pragma once
// The dead-letter piece of the worker: writes a record to its dead-letter topic and keeps trying
// until the cluster acknowledges it. The owner commits the record only once `acknowledged` ran, so
// a dead-letter topic that cannot be written holds the record (and its partition) uncommitted,
// and says so in the log: nothing is lost.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "eventbus/kafka/options.hpp"
#include "kafka/record_producer.hpp"
#include "worker/dead_letter.hpp"

namespace eventbus::detail {

/// A record as consumed, with what a dead letter copies from it.
struct consumed_record {
  std::string topic;
  std::int32_t partition = -1;
  std::int64_t offset = -1;
  std::string key;
  std::string value;
  record_headers headers;
};

class dead_letter_writer {
 public:
  /// Runs `fn` on the owner's thread after `delay` (zero: as soon as it can). Thread-safe.
  using scheduler = std::function<void(std::chrono::milliseconds delay, std::function<void()> fn)>;

  dead_letter_writer(const kafka_options& kafka, std::string group, std::string dlq_suffix, scheduler on_owner);

  /// Writes `record` to `<topic><dlq_suffix>` with the DESIGN.md headers. On the owner's thread:
  /// `acknowledged` once the write is acknowledged; after a failure, `cancelled()` is asked before
  /// each new try (true: the owner gave the record up, e.g. its partition was revoked).
  void write(std::shared_ptr<const consumed_record> record, const dead_letter_reason& why,
             std::function<bool()> cancelled, std::function<void()> acknowledged);

  [[nodiscard]] std::uint64_t written() const noexcept { return written_.load(std::memory_order_relaxed); }
  [[nodiscard]] std::uint64_t failures() const noexcept { return failures_.load(std::memory_order_relaxed); }

 private:
  struct pending;
  void attempt(std::shared_ptr<pending> p);

  std::string group_;
  std::string dlq_suffix_;
  scheduler on_owner_;
  record_producer producer_;
  std::atomic<std::uint64_t> written_{0}, failures_{0};
};

}  // namespace eventbus::detail
