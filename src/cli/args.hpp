#pragma once
// A small flag parser shared by the subcommands: `--name value` pairs and `--help`, with errors that
// name the flag. Keeps every command's argument handling identical.

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cli/commands.hpp"

namespace eventbus::cli {

/// Removes a flag without a value (e.g. --json) from `args`; true when it was there.
inline bool take_switch(std::vector<std::string_view>& args, std::string_view name) {
  const auto it = std::find(args.begin(), args.end(), name);
  if (it == args.end()) return false;
  args.erase(it);
  return true;
}

/// Where the commands that talk to Kafka connect unless --bootstrap says otherwise.
inline std::string default_bootstrap() {
  const char* env = std::getenv("EVENTBUS_BOOTSTRAP_SERVERS");
  return env && *env ? env : "localhost:9092";
}

/// Where `servers` came from, for messages: "from --bootstrap", "from $EVENTBUS_BOOTSTRAP_SERVERS"
/// or "the default".
inline std::string bootstrap_origin(const std::string& servers) {
  const char* env = std::getenv("EVENTBUS_BOOTSTRAP_SERVERS");
  if (env && *env && servers == env) return "from $EVENTBUS_BOOTSTRAP_SERVERS";
  return servers == default_bootstrap() ? "the default" : "from --bootstrap";
}

/// How long the commands that talk to Kafka wait for it unless --timeout says otherwise.
inline constexpr std::chrono::seconds default_kafka_timeout{10};

class arg_parser {
 public:
  arg_parser(std::string_view command, std::string_view usage) : command_(command), usage_(usage) {}

  /// A positive whole number.
  void add_int(std::string name, int& target) {
    flags_.push_back({std::move(name), [&target](std::string_view v) {
                        const auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), target);
                        return ec == std::errc{} && ptr == v.data() + v.size() && target > 0;
                      }, "a positive whole number"});
  }
  /// A positive whole number of seconds.
  void add_seconds(std::string name, std::chrono::seconds& target) {
    flags_.push_back({std::move(name), [&target](std::string_view v) {
                        long long seconds = 0;
                        const auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), seconds);
                        // At most a day: librdkafka takes timeouts as int milliseconds.
                        if (ec != std::errc{} || ptr != v.data() + v.size() || seconds <= 0 || seconds > 86'400) return false;
                        target = std::chrono::seconds(seconds);
                        return true;
                      }, "a whole number of seconds from 1 to 86400"});
  }
  void add_string(std::string name, std::string& target) {
    flags_.push_back({std::move(name), [&target](std::string_view v) {
                        target = std::string(v);
                        return !v.empty();
                      }, "a non-empty value"});
  }
  /// Repeatable: each occurrence appends.
  void add_list(std::string name, std::vector<std::string>& target) {
    flags_.push_back({std::move(name), [&target](std::string_view v) {
                        target.emplace_back(v);
                        return !v.empty();
                      }, "a non-empty value"});
  }

  /// nullopt to go on; otherwise the exit code to return (help printed, or a usage error).
  std::optional<int> parse(std::span<const std::string_view> args) const {
    for (std::size_t i = 0; i < args.size(); i += 2) {  // a flag and its value
      if (args[i] == "--help" || args[i] == "-h") {
        std::fwrite(usage_.data(), 1, usage_.size(), stdout);
        return exit_ok;
      }
      const flag* match = nullptr;
      for (const auto& f : flags_)
        if (f.name == args[i]) match = &f;
      if (match == nullptr) return usage_error("unknown option '" + std::string(args[i]) + "'");
      if (i + 1 >= args.size() || !match->apply(args[i + 1]))
        return usage_error(match->name + " needs " + match->wants);
    }
    return std::nullopt;
  }

 private:
  struct flag {
    std::string name;
    std::function<bool(std::string_view)> apply;
    std::string wants;
  };

  int usage_error(const std::string& message) const {
    std::fprintf(stderr, "eventbus %s: %s\n\n%.*s", command_.c_str(), message.c_str(), static_cast<int>(usage_.size()),
                 usage_.data());
    return exit_usage;
  }

  std::string command_;
  std::string_view usage_;
  std::vector<flag> flags_;
};

}  // namespace eventbus::cli
