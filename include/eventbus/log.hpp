#pragma once
// Where eventbus's own log lines go. By default: stderr, level info and above, one line each.
// Both setters are thread-safe; the sink is called under a lock, so lines never interleave.

#include <functional>
#include <string_view>

namespace eventbus {

enum class log_level { debug = 0, info, warn, error, off };

/// Receives every line at or above the threshold. Must not throw (a throw is swallowed).
using log_sink = std::function<void(log_level level, std::string_view message)>;

/// Replaces the sink; an empty function restores the stderr sink.
void set_log_sink(log_sink sink);
/// Lines below `threshold` are not formatted at all.
void set_log_level(log_level threshold) noexcept;
[[nodiscard]] log_level current_log_level() noexcept;
[[nodiscard]] std::string_view to_string(log_level level) noexcept;

}  // namespace eventbus
