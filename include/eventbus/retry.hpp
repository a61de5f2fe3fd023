#pragma once
// Retrying failed handler calls: the policy, and how a handler says "retrying will not help".
//
//   eventbus::retry_policy policy{.max_attempts = 5, .initial_backoff = std::chrono::milliseconds(100)};
//   throw eventbus::permanent_error("customer does not exist");  // straight to the dead letters

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace eventbus {

/// Thrown by a handler for a failure that no retry can fix (bad data, a missing entity): the record
/// is dead-lettered at once, with attempts = 1. Any other exception is retried per the policy.
class permanent_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The longest duration any option takes (a year): longer ones would overflow the clocks they are
/// added to, and are refused by validate().
inline constexpr std::chrono::milliseconds max_duration{365LL * 24 * 3600 * 1000};

/// How often and how far apart a failing handler is called again. The defaults work; every field
/// may be set with a designated initializer. Attempt n (n >= 2) waits
/// min(initial_backoff * multiplier^(n-2), max_backoff), then +/- jitter (a fraction of it).
struct retry_policy {
  int max_attempts = 5;  // calls in all, the first included; 1 = never retry
  std::chrono::milliseconds initial_backoff{100};
  double multiplier = 2.0;
  std::chrono::milliseconds max_backoff{30'000};
  double jitter = 0.2;  // 0 = exact delays; 0.2 = each delay varies by up to 20 % either way
  /// A worker's durable stages after the in-memory attempts (e.g. 1 min, 10 min, 1 h): a record
  /// whose handler spent max_attempts is parked in the worker's parking_store and tried once more
  /// after each delay, its partition moving on meanwhile, and every later record of its key is
  /// parked behind it (key order holds). Dead-lettered after the last. Empty: no parking (the
  /// default). At most 16 stages, each 1 ms .. max_duration. Only a worker parks: elsewhere
  /// (projections, testing::run_handler) the stages are ignored. docs/worker.md "Durable retries".
  std::vector<std::chrono::milliseconds> durable_stages{};

  static constexpr std::size_t max_durable_stages = 16;

  /// Throws eventbus::exception (errc::invalid_argument) naming the field.
  void validate() const;

  /// The wait before attempt `next_attempt` (2 = the first retry). `unit_random` in [0, 1) picks the
  /// jitter, so callers decide where randomness comes from (and tests can fix it).
  [[nodiscard]] std::chrono::milliseconds backoff_before(int next_attempt, double unit_random) const noexcept;
};

}  // namespace eventbus
