#pragma once
// Where eventbus's own log lines go. By default: stderr, level info and above, one line each, as
// text or as JSON lines for log shippers. The setters are thread-safe; the sink is called under a
// lock, so lines never interleave.

#include <functional>
#include <string_view>

#include "eventbus/error.hpp"

namespace eventbus {

enum class log_level { debug = 0, info, warn, error, off };

/// How the default stderr sink writes a line:
///   text  2026-11-23T10:00:00.045Z warn eventbus: worker: offset commit failed, will retry: ...
///   json  {"ts":"2026-11-23T10:00:00.045Z","level":"warn","logger":"eventbus","msg":"worker: ..."}
enum class log_format { text, json };

/// Receives every line at or above the threshold. Must not throw (a throw is swallowed).
using log_sink = std::function<void(log_level level, std::string_view message)>;

/// Replaces the sink; an empty function restores the stderr sink.
void set_log_sink(log_sink sink);
/// Lines below `threshold` are not formatted at all.
void set_log_level(log_level threshold) noexcept;
[[nodiscard]] log_level current_log_level() noexcept;
void set_log_format(log_format format) noexcept;
[[nodiscard]] std::string_view to_string(log_level level) noexcept;
/// "debug", "info", "warn" (or "warning"), "error", "off"; errc::invalid_argument (field "level",
/// naming the text) for anything else.
[[nodiscard]] result<log_level> parse_log_level(std::string_view text);

}  // namespace eventbus
