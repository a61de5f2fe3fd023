// The shipped logging and authorization pieces (middlewares.hpp); rate limiting is in rate_limit.cpp.

#include "eventbus/middlewares.hpp"

#include <chrono>
#include <cstdio>
#include <string>

#include "eventbus/error.hpp"
#include "support/log.hpp"

namespace eventbus::middlewares {
namespace {

// A logfmt value: bare when it is a plain word, else quoted with " and \ escaped and control
// characters dropped (a value must not break the line).
void append_value(std::string& line, std::string_view value) {
  const bool plain = !value.empty() && value.find_first_of(" \"\\=\t\r\n") == std::string_view::npos;
  if (plain) {
    line += value;
    return;
  }
  line += '"';
  for (const char c : value) {
    if (c == '"' || c == '\\') line += '\\';
    if (static_cast<unsigned char>(c) < 0x20) continue;
    line += c;
  }
  line += '"';
}

void append_field(std::string& line, std::string_view key, std::string_view value) {
  line += ' ';
  line += key;
  line += '=';
  append_value(line, value);
}

// One line for one call; `outcome` is the result's name, or "threw" for an exception on its way
// to the recover piece (which is outside the user's pieces).
void log_call(log_level at, const attempt_context& ctx, std::string_view outcome, std::string_view reason,
              std::string_view error, std::chrono::steady_clock::time_point start) noexcept {
  if (!detail::log_enabled(at)) return;
  try {
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    char duration[32];
    std::snprintf(duration, sizeof duration, "%.3f", ms);
    std::string line = "handler call:";
    append_field(line, "handler", ctx.handler);
    append_field(line, "event_type", ctx.ev.event_type());
    append_field(line, "event_id", ctx.ev.event_id());
    append_field(line, "aggregate_id", ctx.ev.aggregate_id());
    append_field(line, "attempt", std::to_string(ctx.attempt));
    append_field(line, "outcome", outcome);
    append_field(line, "duration_ms", duration);
    if (!reason.empty()) append_field(line, "reason", reason);
    if (outcome != "succeeded") append_field(line, "error", error);
    detail::log(at, line);
  } catch (...) {  // out of memory while formatting: the call's outcome stands
  }
}

}  // namespace

middleware logging(log_level level) {
  return {"logging", [level](const attempt_context& ctx, const next_step& next) {
            const auto start = std::chrono::steady_clock::now();
            const log_level failed_at = std::max(level, log_level::warn);
            attempt_outcome outcome;
            try {
              outcome = next(ctx);
            } catch (const std::exception& e) {
              log_call(failed_at, ctx, "threw", "", e.what(), start);
              throw;
            } catch (...) {
              log_call(failed_at, ctx, "threw", "", "unknown exception", start);
              throw;
            }
            if (outcome.result == attempt_result::deferred) return outcome;
            log_call(outcome.result == attempt_result::succeeded ? level : failed_at, ctx, to_string(outcome.result),
                     outcome.reason, outcome.error, start);
            return outcome;
          }};
}

middleware authorize(authorization allow, std::shared_ptr<metrics> m) {
  if (!allow) throw exception(error(errc::invalid_argument, "authorize needs a function", "allow"));
  return {"authorize", [allow = std::move(allow), m = std::move(m)](const attempt_context& ctx, const next_step& next) {
            bool allowed = false;
            try {
              allowed = allow(ctx);
            } catch (...) {  // a check that cannot decide refuses
            }
            if (allowed) return next(ctx);
            if (m) m->count_unauthorized(ctx.handler);
            return attempt_outcome{.result = attempt_result::dead_letter,
                                   .error = "handler '" + std::string(ctx.handler) + "' is not authorized for event " +
                                            ctx.ev.event_id() + " (" + ctx.ev.event_type() + ")",
                                   .reason = "unauthorized"};
          }};
}

middleware authorize(metadata_map required_claims, std::shared_ptr<metrics> m) {
  if (required_claims.empty())
    throw exception(error(errc::invalid_argument, "authorize needs at least one required claim", "required_claims"));
  return authorize(
      [claims = std::move(required_claims)](const attempt_context& ctx) {
        const auto& metadata = ctx.ev.metadata();
        for (const auto& [key, value] : claims) {
          const auto it = metadata.find(key);
          if (it == metadata.end() || it->second != value) return false;
        }
        return true;
      },
      std::move(m));
}

}  // namespace eventbus::middlewares
