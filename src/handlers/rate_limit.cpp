// middlewares::rate_limit: token buckets, per handler or per handler and key (middlewares.hpp).

#include <algorithm>
#include <chrono>
#include <cmath>
#include <mutex>
#include <string>
#include <unordered_map>

#include "eventbus/error.hpp"
#include "eventbus/middlewares.hpp"

namespace eventbus::middlewares {
namespace {

using clock_type = std::chrono::steady_clock;

// A bucket refilled continuously: `tokens` as of `refilled`. Starts full.
struct bucket {
  double tokens;
  clock_type::time_point refilled;
};

class token_buckets {
 public:
  explicit token_buckets(const rate_limit_options& o) : options_(o) {}

  // A token now (zero), or how long until the next one.
  std::chrono::nanoseconds take(const std::string& bucket_key) {
    const auto now = clock_type::now();
    const std::lock_guard lock(mu_);
    auto it = buckets_.find(bucket_key);
    if (it == buckets_.end()) {
      if (buckets_.size() >= options_.max_keys) drop_idle(now);
      it = buckets_.emplace(bucket_key, bucket{options_.burst, now}).first;
    }
    bucket& b = it->second;
    refill(b, now);
    if (b.tokens >= 1.0) {
      b.tokens -= 1.0;
      return std::chrono::nanoseconds(0);
    }
    return std::chrono::nanoseconds(static_cast<std::int64_t>(std::ceil((1.0 - b.tokens) / options_.per_second * 1e9)));
  }

 private:
  void refill(bucket& b, clock_type::time_point now) const {
    const double elapsed = std::chrono::duration<double>(now - b.refilled).count();
    b.tokens = std::min(options_.burst, b.tokens + elapsed * options_.per_second);
    b.refilled = now;
  }

  // Full buckets behave like new ones: dropping them changes nothing. If every bucket is busy, all
  // go (each restarts full: at most one burst more per key, once).
  void drop_idle(clock_type::time_point now) {
    for (auto it = buckets_.begin(); it != buckets_.end();) {
      refill(it->second, now);
      it = it->second.tokens >= options_.burst ? buckets_.erase(it) : std::next(it);
    }
    if (buckets_.size() >= options_.max_keys) buckets_.clear();
  }

  const rate_limit_options options_;
  std::mutex mu_;
  std::unordered_map<std::string, bucket> buckets_;
};

[[noreturn]] void reject_option(std::string field, std::string message) {
  throw exception(error(errc::invalid_argument, "rate_limit: " + std::move(message), std::move(field)));
}

}  // namespace

middleware rate_limit(rate_limit_options options) {
  if (!(options.per_second > 0) || !std::isfinite(options.per_second))
    reject_option("per_second", "must be a positive number of calls per second, got " + std::to_string(options.per_second));
  if (!(options.burst >= 1) || !std::isfinite(options.burst))
    reject_option("burst", "must be at least 1, got " + std::to_string(options.burst));
  if (options.max_keys == 0) reject_option("max_keys", "must be at least 1");
  auto buckets = std::make_shared<token_buckets>(options);
  return {"rate_limit", [options = std::move(options), buckets](const attempt_context& ctx, const next_step& next) {
            std::string key(ctx.handler);
            if (options.per == limit_scope::key) {
              key += '\0';
              key += ctx.ev.aggregate_id();
            }
            const auto wait = buckets->take(key);
            if (wait.count() == 0) return next(ctx);
            const bool reject = options.when_over == over_limit::reject;
            if (options.metrics) options.metrics->count_rate_limited(ctx.handler, reject);
            if (reject)
              return attempt_outcome{.result = attempt_result::dead_letter,
                                     .error = "over the rate limit of " + std::to_string(options.per_second) +
                                              " calls per second for handler '" + std::string(ctx.handler) + "'",
                                     .reason = "rate-limited"};
            // Rounded up to whole milliseconds (the outcome's unit): waking early would only defer again.
            return attempt_outcome{.result = attempt_result::deferred,
                                   .retry_after = std::chrono::ceil<std::chrono::milliseconds>(wait)};
          }};
}

}  // namespace eventbus::middlewares
