// `eventbus config check FILE [--role ROLE]`: validates a config file with the environment applied
// and prints the effective configuration, secrets redacted.

#include <cstdio>
#include <string>

#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "cli/printable.hpp"
#include "eventbus/config.hpp"

namespace eventbus::cli {
namespace {

constexpr std::string_view config_usage = R"(usage: eventbus config check FILE [--role worker|service|relay]

Reads FILE (JSON, see config/eventbus.json), applies the EVENTBUS_* environment variables, checks
every key and prints the effective configuration as JSON with secrets shown as "***". Which role
was checked is said on stderr.

  --role worker   also what a worker process needs: worker.group (or EVENTBUS_GROUP_ID) and topics
  --role service  what a publishing service needs: kafka, topics, dispatcher, store (no worker group)
  --role relay    what an outbox relay needs: a store to relay from (store.backend sqlite or postgresql)
  (no role)       the keys only: a file valid this way may still be refused by a worker

Exit status: 0 valid, 1 invalid (the error names the key), 2 usage.
)";

// What one kind of process takes from the config beyond the keys being valid. Each check calls what
// that process calls (make_worker_options for a worker), so `config check --role` refuses exactly
// what the process would refuse at start. The error names the key.
struct role_check {
  std::string_view name;
  result<void> (*check)(const app_config&);
};

constexpr role_check roles[] = {
    {"worker",
     [](const app_config& c) -> result<void> {
       if (auto options = c.make_worker_options(); !options) return options.error();
       return {};
     }},
    {"service",
     [](const app_config& c) -> result<void> {
       (void)c.make_producer_options();
       return {};
     }},
    {"relay",
     [](const app_config& c) -> result<void> {
       if (c.store.backend == store_backend::none)
         return error(errc::invalid_argument,
                      "must be sqlite or postgresql for a relay (or set EVENTBUS_STORE_BACKEND): with none there is "
                      "no outbox to relay",
                      "store.backend");
       return {};
     }},
};

const role_check* find_role(std::string_view name) {
  for (const auto& r : roles)
    if (r.name == name) return &r;
  return nullptr;
}

int usage_error(const std::string& what) {
  std::fprintf(stderr, "eventbus config: %s\n\n%s", what.c_str(), config_usage.data());
  return exit_usage;
}

}  // namespace

int run_config(std::span<const std::string_view> args) {
  if (!args.empty() && (args[0] == "--help" || args[0] == "-h")) {
    std::fwrite(config_usage.data(), 1, config_usage.size(), stdout);
    return exit_ok;
  }
  if (args.empty()) return usage_error("name an action");
  if (args[0] != "check" || args.size() < 2 || args[1].starts_with("-")) return usage_error("expected: check FILE");
  const std::string file(args[1]);
  std::string role;
  arg_parser parser("config check", config_usage);
  parser.add_string("--role", role);
  if (const auto exit_code = parser.parse(args.subspan(2))) return *exit_code;
  const role_check* checked = role.empty() ? nullptr : find_role(role);
  if (!role.empty() && checked == nullptr)
    return usage_error("--role '" + role + "' is not a role: worker, service or relay");

  const auto loaded = load_config(file, process_environment());
  if (!loaded) {
    std::fprintf(stderr, "eventbus config check: %s\n", loaded.error().to_string().c_str());
    return exit_failure;
  }
  if (checked != nullptr) {
    if (const auto fit = checked->check(loaded.value()); !fit) {
      std::fprintf(stderr, "eventbus config check: %s (role %s)\n", fit.error().to_string().c_str(), role.c_str());
      return exit_failure;
    }
  }
  std::printf("%s\n", loaded.value().redacted_json().dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  if (checked != nullptr)
    std::fprintf(stderr, "%s: valid for role %s\n", printable(file).c_str(), role.c_str());
  else
    std::fprintf(stderr, "%s: keys valid; no role checked (--role worker|service|relay checks what that process needs)\n",
                 printable(file).c_str());
  return exit_ok;
}

}  // namespace eventbus::cli
