// `eventbus dlq list|replay|parked`: inspect dead letters and put them back on their original
// topics; list what a worker group parked for a durable retry stage.

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "cli/args.hpp"
#include "cli/cluster.hpp"
#include "cli/commands.hpp"
#include "cli/printable.hpp"
#include "eventbus/admin/dead_letters.hpp"
#include "eventbus/store/postgres_store.hpp"
#include "eventbus/store/sqlite_store.hpp"
#include "eventbus/time.hpp"
#include "store/parked_records.hpp"

namespace eventbus::cli {
namespace {

constexpr std::string_view dlq_usage = R"(usage: eventbus dlq list <dlq-topic> [--bootstrap SERVERS] [--limit N] [--json]
       eventbus dlq replay <dlq-topic> [--bootstrap SERVERS] [--handler NAME] [--limit N]
       eventbus dlq parked --group GROUP (--sqlite PATH | --postgresql DSN) [--topic TOPIC] [--limit N] [--json]

list     prints every dead letter: position, reason, handler, attempts, original position, error
replay   produces dead letters back to their original topic (key, value and original headers, with
         x-eventbus-replay-count); with --handler, only that handler's dead letters, and workers then
         run only that handler on them (a handler no dead letter names is an error listing those
         that do). The dead-letter topic itself is left unchanged.
parked   prints the records a worker group parked for a durable retry stage (retry.durable_stages),
         from the group's parking store: position, key, stage, when due, handlers left, attempts,
         last error. Stage 0: not tried since it was parked: due at once when it is its key's
         first ("first_of_key" in --json), else after the key's earlier records. Opens the store
         read-only: it must exist.

<dlq-topic> must end in the suffix and exist: list and replay create no topic.

  --group GROUP        (parked) the worker group
  --sqlite PATH | --postgresql DSN
                       (parked) the group's parking store, one of the two
  --topic TOPIC        (parked) only that source topic's records
  --limit N            at most N (default: all)

  --bootstrap SERVERS  Kafka brokers (default: $EVENTBUS_BOOTSTRAP_SERVERS, else localhost:9092)
  --timeout SECONDS    how long to wait for the cluster to answer (default 10)
  --suffix SUFFIX      the workers' dead-letter suffix (default .dlq); on replay, a record whose
                       x-eventbus-dlq-original-topic is not the topic <dlq-topic> belongs to is refused
)";

// Keys, errors and handler names come from records: whatever their bytes, the output is valid
// UTF-8 (invalid sequences become U+FFFD) and, as text, free of control characters.
void print_dead_letter(const dead_letter& d, bool as_json) {
  if (as_json) {
    const nlohmann::json line{{"partition", d.partition}, {"offset", d.offset},
                              {"key", d.null_key ? nlohmann::json(nullptr) : nlohmann::json(d.key)},
                              {"reason", d.reason}, {"handler", d.handler}, {"attempts", d.attempts},
                              {"error", d.error}, {"original_topic", d.original_topic},
                              {"original_partition", d.original_partition},
                              {"original_offset", d.original_offset}, {"group", d.group},
                              {"failed_at", d.failed_at}};
    std::printf("%s\n", line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return;
  }
  std::printf("[%d]@%lld  %-15s handler=%-14s attempts=%d  from %s[%d]@%lld  at %s\n    %s\n", d.partition,
              static_cast<long long>(d.offset), printable(d.reason).c_str(),
              d.handler.empty() ? "-" : printable(d.handler).c_str(), d.attempts, printable(d.original_topic).c_str(),
              d.original_partition, static_cast<long long>(d.original_offset), printable(d.failed_at).c_str(),
              printable(d.error).c_str());
}

int fail(const error& err) {
  std::fprintf(stderr, "eventbus dlq: %s\n", err.to_string().c_str());
  return exit_failure;
}

// `first_of_key`: no earlier record of its key is parked (in this partition): a stage-0 record
// then runs as soon as a worker has the partition, else after the key's earlier records.
void print_parked(const detail::parked_record& r, bool first_of_key, bool as_json) {
  const std::string due = r.stage != 0 ? format_timestamp(time_point(std::chrono::milliseconds(r.due_ms)))
                          : first_of_key ? std::string("at once (its key's first)")
                                         : std::string("after the key's earlier records");
  if (as_json) {
    const nlohmann::json line{{"group", r.group}, {"topic", r.topic}, {"partition", r.partition}, {"offset", r.offset},
                              {"key", r.null_key ? nlohmann::json(nullptr) : nlohmann::json(r.key)},
                              {"stage", r.stage}, {"due_ms", r.stage == 0 ? nlohmann::json(nullptr) : nlohmann::json(r.due_ms)},
                              {"first_of_key", first_of_key}, {"pending", r.pending}, {"attempts", r.attempts},
                              {"error", r.reason}, {"parked_ms", r.parked_ms}};
    std::printf("%s\n", line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return;
  }
  std::string handlers;
  for (const auto& h : r.pending) handlers += (handlers.empty() ? "" : ",") + h;
  std::printf("%s[%d]@%lld  key=%s  stage %d  due %s  handlers=%s  attempts=%d\n    %s\n", printable(r.topic).c_str(),
              r.partition, static_cast<long long>(r.offset), r.null_key ? "(null)" : printable(r.key).c_str(), r.stage,
              due.c_str(), handlers.empty() ? "all" : printable(handlers).c_str(), r.attempts, printable(r.reason).c_str());
}

// eventbus dlq parked: the store is opened read-only, so a mistyped path or database is refused
// and never created, and nothing is migrated.
int run_parked(std::span<const std::string_view> args) {
  std::string group, sqlite_path, dsn, topic;
  int limit = 0;
  arg_parser parser("dlq", dlq_usage);
  parser.add_string("--group", group);
  parser.add_string("--sqlite", sqlite_path);
  parser.add_string("--postgresql", dsn);
  parser.add_string("--topic", topic);
  parser.add_int("--limit", limit);
  std::vector<std::string_view> rest(args.begin() + 1, args.end());
  const bool json = take_switch(rest, "--json");
  if (const auto exit_code = parser.parse(rest)) return *exit_code;
  if (group.empty()) {
    std::fprintf(stderr, "eventbus dlq parked: name the worker group (--group)\n\n%s", dlq_usage.data());
    return exit_usage;
  }
  if (sqlite_path.empty() == dsn.empty()) {
    std::fprintf(stderr, "eventbus dlq parked: name the group's parking store: --sqlite PATH or --postgresql DSN (one)\n\n%s",
                 dlq_usage.data());
    return exit_usage;
  }
  if (limit < 0) {
    std::fprintf(stderr, "eventbus dlq parked: --limit must be a positive number\n");
    return exit_usage;
  }
  std::shared_ptr<detail::parked_records> rows;
  try {
    auto store = sqlite_path.empty() ? open_postgres_store({.dsn = dsn, .read_only = true})
                                     : open_sqlite_store({.path = sqlite_path, .read_only = true});
    auto opened = detail::parked_records::open(std::move(store), false);
    if (!opened) return fail(opened.error());
    rows = std::move(opened).value();
  } catch (const exception& e) {
    return fail(e.error());
  }
  const std::size_t max = limit > 0 ? static_cast<std::size_t>(limit) : std::numeric_limits<std::size_t>::max();
  const auto listed = rows->list(group, topic, max);
  if (!listed) return fail(listed.error());
  // Listed by group, topic, partition and offset: a key's first row comes before its others.
  std::set<std::tuple<std::string, std::string, std::int32_t, bool, std::string>> keys_seen;
  for (const auto& r : listed.value()) {
    const bool first_of_key = keys_seen.emplace(r.group, r.topic, r.partition, r.null_key, r.key).second;
    print_parked(r, first_of_key, json);
  }
  if (listed.value().empty()) {
    // A mistyped group lists nothing: say which groups have parked records.
    const auto any = rows->list("", topic, 1000);
    std::set<std::string> groups;
    if (any)
      for (const auto& r : any.value()) groups.insert(r.group);
    std::string named;
    for (const auto& g : groups) named += (named.empty() ? "" : ", ") + printable(g);
    std::fprintf(stderr, "no parked records for group '%s'%s%s%s\n", printable(group).c_str(), topic.empty() ? "" : " on ",
                 topic.empty() ? "" : printable(topic).c_str(),
                 groups.empty() ? " (no group has any here)" : ("; groups with parked records: " + named).c_str());
    return exit_ok;
  }
  if (!json) std::fprintf(stderr, "%zu parked record(s) of group %s\n", listed.value().size(), printable(group).c_str());
  return exit_ok;
}

// Refuses a topic that is not a dead-letter topic (usage, 2) or is not in the cluster (1), naming
// the dead-letter topics that are; nullopt to go on. Checked against the cluster's topic list, so
// a mistyped name is never created by the read that follows.
std::optional<int> check_dlq_topic(const std::string& topic, const std::string& suffix,
                                   const std::vector<std::string>& existing) {
  const auto dead_letter_topics = names_like(existing, "", suffix);
  if (!topic.ends_with(suffix) || topic == suffix) {
    const bool has_dlq = std::binary_search(existing.begin(), existing.end(), topic + suffix);
    std::fprintf(stderr, "eventbus dlq: '%s' is not a dead-letter topic: their names end in '%s' (--suffix if the "
                 "workers use another)%s\n", printable(topic).c_str(), printable(suffix).c_str(),
                 has_dlq ? ("; did you mean " + printable(topic + suffix) + "?").c_str() : "");
    return exit_usage;
  }
  if (!std::binary_search(existing.begin(), existing.end(), topic)) {
    std::fprintf(stderr, "eventbus dlq: no topic '%s' in the cluster (nothing was created); dead-letter topics: %s\n",
                 printable(topic).c_str(), name_list(dead_letter_topics).c_str());
    return exit_failure;
  }
  return std::nullopt;
}

// `--handler NAME` that no dead letter of the topic names: replay found nothing to do, which is a
// mistake to say rather than "replayed 0".
int unknown_handler(const std::string& handler, const std::string& topic, const replay_summary& summary) {
  std::vector<std::string> names;
  for (const auto& [name, count] : summary.handlers)
    names.push_back((name.empty() ? "(none)" : name) + " (" + std::to_string(count) + ")");
  std::fprintf(stderr, "eventbus dlq replay: no dead letter in %s was written by handler '%s'; handlers there: %s\n",
               printable(topic).c_str(), printable(handler).c_str(), name_list(names).c_str());
  return exit_failure;
}

}  // namespace

int run_dlq(std::span<const std::string_view> args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::fwrite(dlq_usage.data(), 1, dlq_usage.size(), args.empty() ? stderr : stdout);
    return args.empty() ? exit_usage : exit_ok;
  }
  const std::string_view action = args[0];
  if (action == "parked") return run_parked(args);
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
  std::string suffix(default_dlq_suffix);
  parser.add_string("--suffix", suffix);
  std::chrono::seconds timeout = default_kafka_timeout;
  parser.add_seconds("--timeout", timeout);
  if (action == "replay") parser.add_string("--handler", handler);
  std::vector<std::string_view> rest(args.begin() + 2, args.end());
  if (action == "list") json = take_switch(rest, "--json");
  if (const auto exit_code = parser.parse(rest)) return *exit_code;
  if (auto valid = validate_topic_name(topic); !valid) return fail(valid.error());
  if (auto valid = validate_dlq_suffix(suffix); !valid) return fail(valid.error());
  const kafka_options kafka{.bootstrap_servers = bootstrap, .properties = {{"log_level", "3"}}};
  const auto existing = reach_cluster(std::string("dlq ") + std::string(action), kafka, timeout);
  if (!existing) return exit_failure;
  if (const auto refused = check_dlq_topic(topic, suffix, *existing)) return *refused;
  const std::size_t max = limit > 0 ? static_cast<std::size_t>(limit) : std::numeric_limits<std::size_t>::max();

  if (action == "list") {
    std::size_t listed = 0;
    const auto read = for_each_dead_letter(kafka, topic, [&](const dead_letter& d) {
      if (listed >= max) return false;
      ++listed;
      print_dead_letter(d, json);
      return true;
    });
    if (!read) return fail(read.error());
    if (!json) std::fprintf(stderr, "%zu dead letter(s) in %s\n", listed, topic.c_str());
    return exit_ok;
  }

  replay_options options{.limit = max, .dlq_suffix = suffix};
  if (!handler.empty()) options.handler = handler;
  const auto summary = replay_dead_letters(kafka, topic, options);
  if (!summary) return fail(summary.error());
  if (!handler.empty() && summary.value().handlers.count(handler) == 0)
    return unknown_handler(handler, topic, summary.value());
  std::printf("replayed %zu, skipped %zu\n", summary.value().replayed, summary.value().skipped);
  if (summary.value().refused > 0) {
    std::fprintf(stderr,
                 "eventbus dlq replay: refused %zu record(s) whose x-eventbus-dlq-original-topic does not name the "
                 "topic %s holds the dead letters of (dead-letter suffix '%s'; see --suffix)\n",
                 summary.value().refused, topic.c_str(), suffix.c_str());
    return exit_failure;
  }
  return exit_ok;
}

}  // namespace eventbus::cli
