#pragma once
// The subcommands of the `eventbus` command. Each takes its own arguments (after the subcommand
// name) and returns the process exit code: 0 success, 1 runtime failure, 2 bad usage.

#include <span>
#include <string_view>

namespace eventbus::cli {

inline constexpr int exit_ok = 0;
inline constexpr int exit_failure = 1;
inline constexpr int exit_usage = 2;

int run_demo(std::span<const std::string_view> args);
int run_dev_broker(std::span<const std::string_view> args);
int run_dlq(std::span<const std::string_view> args);
int run_replay(std::span<const std::string_view> args);
int run_config(std::span<const std::string_view> args);
int run_topics(std::span<const std::string_view> args);
int run_publish(std::span<const std::string_view> args);
int run_tail(std::span<const std::string_view> args);
int run_store(std::span<const std::string_view> args);
int run_new(std::span<const std::string_view> args);
int run_handlers(std::span<const std::string_view> args);

}  // namespace eventbus::cli
