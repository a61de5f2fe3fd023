// The current cause of a thread, and W3C traceparent continuation (causation.hpp).

#include "eventbus/causation.hpp"

#include "envelope/uuid.hpp"

namespace eventbus {

thread_local constinit const event* detail::t_current_cause = nullptr;

namespace {

bool is_lower_hex(std::string_view text) noexcept {
  for (const char c : text)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

bool all_zero(std::string_view text) noexcept { return text.find_first_not_of('0') == std::string_view::npos; }

}  // namespace

const event* current_cause() noexcept { return detail::t_current_cause; }

std::optional<std::string> child_traceparent(std::string_view parent) {
  // version "-" trace-id(32) "-" parent-id(16) "-" flags(2); a later version may append fields
  // after another '-', version 00 may not; version ff is invalid.
  if (parent.size() < 55 || parent[2] != '-' || parent[35] != '-' || parent[52] != '-') return std::nullopt;
  const auto version = parent.substr(0, 2), trace = parent.substr(3, 32), span = parent.substr(36, 16),
             flags = parent.substr(53, 2);
  if (!is_lower_hex(version) || version == "ff" || !is_lower_hex(trace) || !is_lower_hex(span) || !is_lower_hex(flags))
    return std::nullopt;
  if (all_zero(trace) || all_zero(span)) return std::nullopt;
  if (version == "00" ? parent.size() != 55 : (parent.size() > 55 && parent[55] != '-')) return std::nullopt;
  std::string child = "00-";
  child.append(trace).append("-").append(detail::new_span_id()).append("-").append(flags);
  return child;
}

}  // namespace eventbus
