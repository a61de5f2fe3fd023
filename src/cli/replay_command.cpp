// `eventbus replay`: rewind a consumer group to a point in time so its workers reprocess history.

#include <cstdio>
#include <string>

#include "cli/args.hpp"
#include "cli/cluster.hpp"
#include "cli/commands.hpp"
#include "eventbus/admin/replay.hpp"

namespace eventbus::cli {
namespace {

constexpr std::string_view replay_usage =
    R"(usage: eventbus replay --group GROUP --topics TOPICS --from TIME [--bootstrap SERVERS]

Commits, for GROUP, the offset of the first record at or after TIME in every partition of the
matching topics; the group's workers, started afterwards, handle everything from there again.
Stop the group's workers first: Kafka refuses offsets for a group with active members.

  --group GROUP        the consumer group to move
  --topics TOPICS      a topic name, or a regular expression starting with '^' (e.g. '^app\.order\..*')
  --from TIME          RFC 3339 UTC time, e.g. 2026-11-23T10:00:00Z
  --bootstrap SERVERS  Kafka brokers (default: $EVENTBUS_BOOTSTRAP_SERVERS, else localhost:9092)
  --timeout SECONDS    how long to wait for the cluster to answer at start (default 10)
  --new-group          GROUP has not run yet: position it before its first start

GROUP must have committed offsets (a group that has run), unless --new-group: a mistyped one is
refused, with the groups the cluster knows, rather than created. A '^' pattern never matches dead-letter topics
(*.dlq: `eventbus dlq replay` puts those back) nor internal ones (__*).
)";

}  // namespace

int run_replay(std::span<const std::string_view> args) {
  std::string bootstrap = default_bootstrap(), group, topics, from_text;
  arg_parser parser("replay", replay_usage);
  parser.add_string("--bootstrap", bootstrap);
  parser.add_string("--group", group);
  parser.add_string("--topics", topics);
  parser.add_string("--from", from_text);
  std::chrono::seconds timeout = default_kafka_timeout;
  parser.add_seconds("--timeout", timeout);
  std::vector<std::string_view> rest(args.begin(), args.end());
  const bool new_group = take_switch(rest, "--new-group");
  if (const auto exit_code = parser.parse(rest)) return *exit_code;
  for (const auto& [flag, value] : {std::pair{"--group", &group}, {"--topics", &topics}, {"--from", &from_text}}) {
    if (value->empty()) {
      std::fprintf(stderr, "eventbus replay: %s is required\n\n%s", flag, replay_usage.data());
      return exit_usage;
    }
  }
  const auto from = parse_timestamp(from_text);
  if (!from) {
    std::fprintf(stderr, "eventbus replay: --from '%s' is not an RFC 3339 time: %s\n", from_text.c_str(),
                 from.error().to_string().c_str());
    return exit_usage;
  }
  const kafka_options kafka{.bootstrap_servers = bootstrap, .properties = {{"log_level", "3"}}};
  if (!reach_cluster("replay", kafka, timeout)) return exit_failure;
  const auto positions = rewind_group(kafka, group, topics, from.value(), {.new_group = new_group});
  if (!positions) {
    std::fprintf(stderr, "eventbus replay: %s\n", positions.error().to_string().c_str());
    return positions.error().code() == errc::invalid_argument ? exit_usage : exit_failure;
  }
  for (const auto& p : positions.value())
    std::printf("%s[%d] -> %lld\n", p.topic.c_str(), p.partition, static_cast<long long>(p.offset));
  std::fprintf(stderr, "group %s moved to %s on %zu partition(s)\n", group.c_str(), from_text.c_str(),
               positions.value().size());
  return exit_ok;
}

}  // namespace eventbus::cli
