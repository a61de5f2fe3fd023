#include <atomic>
#include <cstdio>
#include <mutex>
#include <string>

#include "detail/log.hpp"
#include "eventbus/time.hpp"

namespace eventbus {
namespace {

std::atomic<log_level> g_threshold{log_level::info};

struct sink_state {
  std::mutex mu;
  log_sink sink;
};

sink_state& state() {
  static sink_state instance;
  return instance;
}

void write_stderr(log_level level, std::string_view message) {
  const std::string line = format_timestamp(now_ms()) + " " + std::string(to_string(level)) + " eventbus: " +
                           std::string(message) + "\n";
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace

void set_log_sink(log_sink sink) {
  auto& s = state();
  const std::lock_guard lock(s.mu);
  s.sink = std::move(sink);
}

void set_log_level(log_level threshold) noexcept { g_threshold.store(threshold, std::memory_order_relaxed); }

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
