#pragma once
// Event timestamps: UTC, millisecond precision, written as RFC 3339 ("2025-12-04T10:30:00.045Z").

#include <chrono>
#include <string>
#include <string_view>

#include "eventbus/error.hpp"

namespace eventbus {

using time_point = std::chrono::sys_time<std::chrono::milliseconds>;

/// Now, truncated to milliseconds.
[[nodiscard]] time_point now_ms() noexcept;

/// "YYYY-MM-DDTHH:MM:SS.mmmZ", always UTC and always with milliseconds.
[[nodiscard]] std::string format_timestamp(time_point t);

/// Parses an RFC 3339 date-time: seconds required, fraction optional (truncated to milliseconds),
/// "Z" or a numeric offset ("+02:00", converted to UTC). Anything else is an error saying why.
[[nodiscard]] result<time_point> parse_timestamp(std::string_view text);

}  // namespace eventbus
