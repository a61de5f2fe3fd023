#include <atomic>
#include <cstdio>
#include <mutex>
#include <string>

#include "envelope/event_data.hpp"
#include "support/log.hpp"
#include "eventbus/time.hpp"
#include "support/utf8.hpp"

namespace eventbus {
namespace {

std::atomic<log_level> g_threshold{log_level::info};
std::atomic<log_format> g_format{log_format::text};

struct sink_state {
  std::mutex mu;
  log_sink sink;
};

sink_state& state() {
  static sink_state instance;
  return instance;
}

void write_stderr(log_level level, std::string_view message) {
  std::string line;
  if (g_format.load(std::memory_order_relaxed) == log_format::json) {
    line = "{\"ts\":\"" + format_timestamp(now_ms()) + "\",\"level\":\"" + std::string(to_string(level)) +
           "\",\"logger\":\"eventbus\",\"msg\":";
    if (!detail::append_json_string(line, message)) (void)detail::append_json_string(line, "(message is not UTF-8)");
    line += "}\n";
  } else {
    line = format_timestamp(now_ms()) + " " + std::string(to_string(level)) + " eventbus: " + std::string(message) + "\n";
  }
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace

void set_log_sink(log_sink sink) {
  auto& s = state();
  const std::lock_guard lock(s.mu);
  s.sink = std::move(sink);
}

void set_log_level(log_level threshold) noexcept { g_threshold.store(threshold, std::memory_order_relaxed); }

void set_log_format(log_format format) noexcept { g_format.store(format, std::memory_order_relaxed); }

result<log_level> parse_log_level(std::string_view text) {
  for (const auto level : {log_level::debug, log_level::info, log_level::warn, log_level::error, log_level::off})
    if (text == to_string(level)) return level;
  if (text == "warning") return log_level::warn;
  return error(errc::invalid_argument,
               "must be debug, info, warn, error or off, got '" + detail::sanitize_utf8(text) + "'", "level");
}

log_level current_log_level() noexcept { return g_threshold.load(std::memory_order_relaxed); }

std::string_view to_string(log_level level) noexcept {
  switch (level) {
    case log_level::debug: return "debug";
    case log_level::info: return "info";
    case log_level::warn: return "warn";
    case log_level::error: return "error";
    case log_level::off: return "off";
  }
  return "unknown";
}

namespace detail {

bool log_enabled(log_level level) noexcept { return level != log_level::off && level >= current_log_level(); }

void log(log_level level, std::string_view message) noexcept {
  if (!log_enabled(level)) return;
  auto& s = state();
  try {
    const std::lock_guard lock(s.mu);
    if (s.sink)
      s.sink(level, message);
    else
      write_stderr(level, message);
  } catch (...) {
    // A failing log sink must never take a handler or the dispatcher down with it.
  }
}

}  // namespace detail
}  // namespace eventbus
