#pragma once
// The eventual outcome of handing one event to one sink: where it landed, or why it did not.
//
// delivery_future is a one-shot, single-allocation future (std::future's shared state, promise and
// call_once cost more than the Kafka mirror can afford per event). A sink completes it once through
// detail::delivery_state::settle(); the publisher reads it with get() or ready().

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "eventbus/error.hpp"

namespace eventbus {

/// Where a sink put an event. Kafka sinks fill topic/partition/offset; others may leave -1.
struct delivery {
  std::string sink;
  std::string topic;
  std::int32_t partition = -1;
  std::int64_t offset = -1;
};

namespace detail {

/// The shared state of one delivery_future. Sinks may embed it in their own per-event record
/// (derive from it) so that the whole record is one allocation.
class delivery_state {
 public:
  /// Stores the outcome and wakes waiters. Exactly once; later calls are ignored.
  void settle(result<delivery> outcome) noexcept;
  [[nodiscard]] bool settled() const noexcept { return state_.load(std::memory_order_acquire) == done; }
  /// Blocks until settled.
  void wait() const noexcept;
  /// The outcome; precondition: settled().
  [[nodiscard]] const result<delivery>& outcome() const noexcept { return *outcome_; }

 private:
  static constexpr std::uint32_t pending = 0, writing = 1, done = 2;
  std::atomic<std::uint32_t> state_{pending};
  std::optional<result<delivery>> outcome_;
};

}  // namespace detail

class delivery_future {
 public:
  delivery_future() noexcept = default;
  explicit delivery_future(std::shared_ptr<detail::delivery_state> state) noexcept : state_(std::move(state)) {}
  /// A future that is already settled.
  [[nodiscard]] static delivery_future ready(result<delivery> outcome);

  /// False for a default-constructed future.
  [[nodiscard]] bool valid() const noexcept { return state_ != nullptr; }
  /// True once the outcome is known. Never blocks.
  [[nodiscard]] bool is_ready() const noexcept { return state_ && state_->settled(); }
  /// Blocks until the outcome is known (at most `timeout`); true if it is.
  [[nodiscard]] bool wait_for(std::chrono::milliseconds timeout) const;
  /// Blocks until the outcome is known and returns it. May be called more than once.
  /// Precondition: valid().
  [[nodiscard]] result<delivery> get() const;

 private:
  std::shared_ptr<detail::delivery_state> state_;
};

}  // namespace eventbus
