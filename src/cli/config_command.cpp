// `eventbus config check FILE`: validates a config file with the environment applied and prints
// the effective configuration, secrets redacted.

#include <cstdio>
#include <string>

#include "cli/commands.hpp"
#include "eventbus/config.hpp"

namespace eventbus::cli {
namespace {

constexpr std::string_view config_usage = R"(usage: eventbus config check FILE

Reads FILE (JSON, see config/eventbus.json), applies the EVENTBUS_* environment variables, checks
every key and prints the effective configuration as JSON with secrets shown as "***".
Exit status: 0 valid, 1 invalid (the error names the key), 2 usage.
)";

}  // namespace

int run_config(std::span<const std::string_view> args) {
  if (!args.empty() && (args[0] == "--help" || args[0] == "-h")) {
    std::fwrite(config_usage.data(), 1, config_usage.size(), stdout);
    return exit_ok;
  }
  if (args.size() != 2 || args[0] != "check") {
    std::fprintf(stderr, "eventbus config: %s\n\n%s", args.empty() ? "name an action" : "expected: check FILE",
                 config_usage.data());
    return exit_usage;
  }
  const auto loaded = load_config(std::string(args[1]), process_environment());
  if (!loaded) {
    std::fprintf(stderr, "eventbus config check: %s\n", loaded.error().to_string().c_str());
    return exit_failure;
  }
  std::printf("%s\n", loaded.value().redacted_json().dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  return exit_ok;
}

}  // namespace eventbus::cli
