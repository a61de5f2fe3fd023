// `eventbus topics`: the event topics of a cluster with their partitions and end offsets.

#include <algorithm>
#include <cstdio>
#include <string>

#include "cli/args.hpp"
#include "cli/cluster.hpp"
#include "cli/commands.hpp"
#include "eventbus/admin/topics.hpp"

namespace eventbus::cli {
namespace {

constexpr std::string_view topics_usage = R"(usage: eventbus topics [--prefix PREFIX] [--bootstrap SERVERS] [--json]

Lists the topics whose name starts with PREFIX (default "app."; "" for all), each with its number of
partitions, the end offset of every partition and their total.

  --prefix PREFIX      topic name prefix (default app.)
  --bootstrap SERVERS  Kafka brokers (default: $EVENTBUS_BOOTSTRAP_SERVERS, else localhost:9092)
  --timeout SECONDS    how long to wait for the cluster (default 10); no broker answering is said
                       with where it looked
  --json               one JSON object per topic
)";

}  // namespace

int run_topics(std::span<const std::string_view> args) {
  std::string bootstrap = default_bootstrap(), prefix = "app.";
  std::vector<std::string_view> rest(args.begin(), args.end());
  const bool json = take_switch(rest, "--json");
  // --prefix may be empty, which add_string refuses: read it here.
  if (const auto it = std::find(rest.begin(), rest.end(), "--prefix"); it != rest.end() && it + 1 != rest.end()) {
    prefix = std::string(*(it + 1));
    rest.erase(it, it + 2);
  }
  arg_parser parser("topics", topics_usage);
  parser.add_string("--bootstrap", bootstrap);
  std::chrono::seconds timeout = default_kafka_timeout;
  parser.add_seconds("--timeout", timeout);
  if (const auto exit_code = parser.parse(rest)) return *exit_code;

  const kafka_options kafka{.bootstrap_servers = bootstrap, .properties = {{"log_level", "3"}}};
  if (!reach_cluster("topics", kafka, timeout)) return exit_failure;
  const auto topics = list_topics(kafka, prefix, timeout);
  if (!topics) {
    std::fprintf(stderr, "eventbus topics: %s\n", topics.error().to_string().c_str());
    return exit_failure;
  }
  for (const auto& t : topics.value()) {
    if (json) {
      std::printf("%s\n", nlohmann::json{{"topic", t.name}, {"partitions", t.end_offsets.size()},
                                         {"end_offsets", t.end_offsets}, {"total", t.total()}}
                              .dump()
                              .c_str());
      continue;
    }
    std::string offsets;
    for (const auto o : t.end_offsets) offsets += (offsets.empty() ? "" : ",") + std::to_string(o);
    std::printf("%-48s partitions=%-3zu total=%-10lld end_offsets=[%s]\n", t.name.c_str(), t.end_offsets.size(),
                static_cast<long long>(t.total()), offsets.c_str());
  }
  if (!json) std::fprintf(stderr, "%zu topic(s) starting with '%s'\n", topics.value().size(), prefix.c_str());
  return exit_ok;
}

}  // namespace eventbus::cli
