#include "eventbus/middleware.hpp"

#include <random>

namespace eventbus {

std::string_view to_string(attempt_result result) noexcept {
  switch (result) {
    case attempt_result::succeeded: return "succeeded";
    case attempt_result::retry: return "retry";
    case attempt_result::dead_letter: return "dead_letter";
    case attempt_result::deferred: return "deferred";
  }
  return "unknown";
}

const std::vector<middleware>& next_step::no_pieces() noexcept {
  static const std::vector<middleware> none;
  return none;
}

attempt_outcome next_step::operator()(const attempt_context& ctx) const {
  const std::size_t outer = outer_->size();
  if (index_ < outer) return (*outer_)[index_](ctx, next_step(*outer_, *inner_, *handler_, index_ + 1));
  if (index_ - outer < inner_->size())
    return (*inner_)[index_ - outer](ctx, next_step(*outer_, *inner_, *handler_, index_ + 1));
  (*handler_)(ctx.ev);
  return {};
}

namespace middlewares {

middleware recover() {
  return {"recover", [](const attempt_context& ctx, const next_step& next) -> attempt_outcome {
    try {
      return next(ctx);
    } catch (const permanent_error& e) {
      return {.result = attempt_result::dead_letter, .error = std::string("permanent: ") + e.what()};
    } catch (const exception& e) {
      // A typed event of a schema version its handler cannot be given (no upcaster path): every
      // try would fail the same way until new code is deployed, so it is not retried.
      if (e.error().code() == errc::payload_mismatch && e.error().field() == "version")
        return {.result = attempt_result::dead_letter, .error = e.what(), .reason = "validation"};
      return {.result = attempt_result::retry, .error = e.what()};
    } catch (const std::exception& e) {
      return {.result = attempt_result::retry, .error = e.what()};
    } catch (...) {
      return {.result = attempt_result::retry, .error = "unknown exception (not derived from std::exception)"};
    }
  }};
}

middleware retry(retry_policy policy) {
  policy.validate();
  return {"retry", [policy](const attempt_context& ctx, const next_step& next) {
    auto outcome = next(ctx);
    if (outcome.result != attempt_result::retry) return outcome;
    if (ctx.attempt >= policy.max_attempts) {
      outcome.result = attempt_result::dead_letter;
      outcome.retries_exhausted = true;
      return outcome;
    }
    thread_local std::mt19937_64 gen{std::random_device{}()};
    outcome.retry_after = policy.backoff_before(ctx.attempt + 1, std::uniform_real_distribution<double>(0.0, 1.0)(gen));
    return outcome;
  }};
}

middleware timing(attempt_observer observe) {
  return {"timing", [observe = std::move(observe)](const attempt_context& ctx, const next_step& next) {
    const auto start = std::chrono::steady_clock::now();
    auto outcome = next(ctx);
    if (outcome.result == attempt_result::deferred) return outcome;  // not an attempt
    try {
      observe(ctx, outcome, std::chrono::steady_clock::now() - start);
    } catch (...) {  // an observer must not turn a handled record into a failed one
    }
    return outcome;
  }};
}

}  // namespace middlewares
}  // namespace eventbus
