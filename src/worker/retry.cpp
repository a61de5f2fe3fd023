#include "eventbus/retry.hpp"

#include <algorithm>
#include <cmath>

#include "eventbus/error.hpp"

namespace eventbus {
namespace {

[[noreturn]] void reject(std::string field, std::string message) {
  throw exception(error(errc::invalid_argument, std::move(message), "retry." + std::move(field)));
}

}  // namespace

void retry_policy::validate() const {
  if (max_attempts < 1) reject("max_attempts", "must be at least 1, got " + std::to_string(max_attempts));
  if (initial_backoff.count() < 0) reject("initial_backoff", "must not be negative");
  if (!(multiplier >= 1.0) || !std::isfinite(multiplier)) reject("multiplier", "must be a finite number >= 1");
  if (max_backoff < initial_backoff) reject("max_backoff", "must not be below initial_backoff");
  if (max_backoff > max_duration) reject("max_backoff", "must be at most a year (" + std::to_string(max_duration.count()) + " ms)");
  if (!(jitter >= 0.0 && jitter <= 1.0)) reject("jitter", "must be between 0 and 1");
  if (durable_stages.size() > max_durable_stages)
    reject("durable_stages", "at most " + std::to_string(max_durable_stages) + " stages, got " + std::to_string(durable_stages.size()));
  for (std::size_t i = 0; i < durable_stages.size(); ++i)
    if (durable_stages[i].count() < 1 || durable_stages[i] > max_duration)
      reject("durable_stages", "stage " + std::to_string(i + 1) + " is " + std::to_string(durable_stages[i].count()) +
                                   " ms: each must be 1 ms .. a year");
}

std::chrono::milliseconds retry_policy::backoff_before(int next_attempt, double unit_random) const noexcept {
  if (next_attempt < 2) return std::chrono::milliseconds(0);
  const double base = static_cast<double>(initial_backoff.count()) * std::pow(multiplier, next_attempt - 2);
  const double capped = std::min(base, static_cast<double>(max_backoff.count()));
  const double spread = capped * jitter * (2.0 * std::clamp(unit_random, 0.0, 1.0) - 1.0);
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::max(0.0, std::round(capped + spread))));
}

}  // namespace eventbus
