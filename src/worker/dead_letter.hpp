#pragma once
// What a dead-letter record carries (docs/worker.md, "Dead-letter records"): the original key, value and
// headers, plus x-eventbus-dlq-* headers saying why, where from, and when.

#include <charconv>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "eventbus/admin/dead_letters.hpp"
#include "kafka/record_headers.hpp"

namespace eventbus::detail {

inline constexpr std::size_t max_dlq_error_bytes = 1024;
/// On a dead letter written without the original value (too large for the dead-letter topic):
/// "<size> bytes not copied: <why>". The original record stays at its topic, partition and offset.
inline constexpr std::string_view dead_letter_value_dropped_header = "x-eventbus-dlq-value-dropped";

struct dead_letter_reason {
  std::string_view reason;  // handler-error | deserialization | validation | timeout
  std::string error;        // the message; cut to max_dlq_error_bytes
  std::string handler;      // empty for records that never reached a handler
  int attempts = 0;
};

struct record_origin {
  std::string topic;
  std::int32_t partition = -1;
  std::int64_t offset = -1;
  std::string group;
};

/// The original headers followed by the x-eventbus-dlq-* headers.
[[nodiscard]] record_headers dead_letter_headers(const record_headers& original, const dead_letter_reason& why,
                                                 const record_origin& origin, std::string_view failed_at);

/// A header's value as an integer; `fallback` when it is absent or not exactly a number in range.
template <class Int>
[[nodiscard]] Int header_number_or(const std::map<std::string, std::string>& headers, const std::string& name, Int fallback) {
  const auto it = headers.find(name);
  if (it == headers.end()) return fallback;
  Int value = fallback;
  const auto [ptr, ec] = std::from_chars(it->second.data(), it->second.data() + it->second.size(), value);
  return ec == std::errc{} && ptr == it->second.data() + it->second.size() ? value : fallback;
}

/// Reads a dead letter's x-eventbus-dlq-* headers (already in d.headers) into its fields: reason,
/// error, handler, original topic, partition and offset, group, time, attempts. Missing or
/// malformed values read as empty, -1 or 0; never throws on what the headers hold.
void read_dead_letter_headers(dead_letter& d);


}  // namespace eventbus::detail
