// `eventbus dlq list|replay`: inspect dead letters and put them back on their original topics.

#include <cstdio>
#include <algorithm>
#include <limits>
#include <string>

#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "eventbus/dead_letters.hpp"

namespace eventbus::cli {
namespace {

constexpr std::string_view dlq_usage = R"(usage: eventbus dlq list <dlq-topic> [--bootstrap SERVERS] [--limit N] [--json]
       eventbus dlq replay <dlq-topic> [--bootstrap SERVERS] [--handler NAME] [--limit N]

list     prints every dead letter: position, reason, handler, attempts, original position, error
replay   produces dead letters back to their original topic (key, value and original headers, with
         x-eventbus-replay-count); with --handler, only that handler's dead letters, and workers then
         run only that handler on them. The dead-letter topic itself is left unchanged.

  --bootstrap SERVERS  Kafka brokers (default: $EVENTBUS_BOOTSTRAP_SERVERS, else localhost:9092)
)";

int fail(const error& err) {
  std::fprintf(stderr, "eventbus dlq: %s\n", err.to_string().c_str());
  return exit_failure;
}

}  // namespace

int run_dlq(std::span<const std::string_view> args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::fwrite(dlq_usage.data(), 1, dlq_usage.size(), args.empty() ? stderr : stdout);
    return args.empty() ? exit_usage : exit_ok;
  }
  const std::string_view action = args[0];
  if (action != "list" && action != "replay") {
    std::fprintf(stderr, "eventbus dlq: unknown action '%s'\n\n%s", std::string(action).c_str(), dlq_usage.data());
    return exit_usage;
  }
  if (args.size() < 2 || args[1].starts_with("-")) {
    std::fprintf(stderr, "eventbus dlq %s: name the dead-letter topic\n\n%s", std::string(action).c_str(), dlq_usage.data());
    return exit_usage;
  }
  const std::string topic(args[1]);
  std::string bootstrap = default_bootstrap(), handler;
  int limit = 0;
  bool json = false;
  arg_parser parser("dlq", dlq_usage);
  parser.add_string("--bootstrap", bootstrap);
  parser.add_int("--limit", limit);
  if (action == "replay") parser.add_string("--handler", handler);
  std::vector<std::string_view> rest(args.begin() + 2, args.end());
  if (action == "list") json = take_switch(rest, "--json");
  if (const auto exit_code = parser.parse(rest)) return *exit_code;
  const kafka_options kafka{.bootstrap_servers = bootstrap, .properties = {{"log_level", "3"}}};
  const std::size_t max = limit > 0 ? static_cast<std::size_t>(limit) : std::numeric_limits<std::size_t>::max();

  if (action == "list") {
    const auto letters = list_dead_letters(kafka, topic, max);
    if (!letters) return fail(letters.error());
    for (const auto& d : letters.value()) {
      if (json) {
        std::printf("%s\n", nlohmann::json{{"partition", d.partition}, {"offset", d.offset}, {"key", d.key},
                                           {"reason", d.reason}, {"handler", d.handler}, {"attempts", d.attempts},
                                           {"error", d.error}, {"original_topic", d.original_topic},
                                           {"original_partition", d.original_partition},
                                           {"original_offset", d.original_offset}, {"group", d.group},
                                           {"failed_at", d.failed_at}}
                                .dump()
                                .c_str());
      } else {
        std::printf("[%d]@%lld  %-15s handler=%-14s attempts=%d  from %s[%d]@%lld  at %s\n    %s\n", d.partition,
                    static_cast<long long>(d.offset), d.reason.c_str(), d.handler.empty() ? "-" : d.handler.c_str(),
                    d.attempts, d.original_topic.c_str(), d.original_partition,
                    static_cast<long long>(d.original_offset), d.failed_at.c_str(), d.error.c_str());
      }
    }
    if (!json) std::fprintf(stderr, "%zu dead letter(s) in %s\n", letters.value().size(), topic.c_str());
    return exit_ok;
  }

  replay_options options{.limit = max};
  if (!handler.empty()) options.handler = handler;
  const auto summary = replay_dead_letters(kafka, topic, options);
  if (!summary) return fail(summary.error());
  std::printf("replayed %zu, skipped %zu\n", summary.value().replayed, summary.value().skipped);
  return exit_ok;
}

}  // namespace eventbus::cli
