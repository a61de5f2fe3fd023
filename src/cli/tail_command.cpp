// `eventbus tail`: follow event topics and print each event as it arrives.

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdint>
#include <set>
#include <string>

#include "cli/args.hpp"
#include "cli/cluster.hpp"
#include "cli/commands.hpp"
#include "cli/printable.hpp"
#include "cli/workflow_tree.hpp"
#include "kafka/kafka_client.hpp"
#include "eventbus/stop_signal.hpp"
#include "eventbus/time.hpp"

namespace eventbus::cli {
namespace {

constexpr std::string_view tail_usage =
    R"(usage: eventbus tail --topics TOPICS [--from-beginning] [--until-end] [--json] [--limit N] [--correlation ID]
                     [--bootstrap SERVERS]

Follows the topics and prints every event as it arrives, until Ctrl-C (or N events, or the end
with --until-end). Says on stderr when it has read everything there was ("reached the end"). Reads
in a consumer group of its own and commits nothing: running it never affects workers.

  --topics TOPICS      a topic name, or a regular expression starting with '^' (e.g. '^app\.order\..*')
  --from-beginning     start at the oldest retained record instead of new ones
  --until-end          stop once every partition is read to its end (as kcat -e): with --correlation,
                       the workflow's tree is printed then
  --json               one JSON object per record: topic, partition, offset, key, event (or error)
  --limit N            stop after N records (N matching events with --correlation)
  --correlation ID     only the events of one workflow (correlation_id ID, or the event ID itself);
                       at the end, the workflow as a tree: each event under the one that caused it
  --bootstrap SERVERS  Kafka brokers (default: $EVENTBUS_BOOTSTRAP_SERVERS, else localhost:9092)
  --timeout SECONDS    how long to wait for the cluster to answer at start (default 10)

A topic name (not a '^' pattern) must exist: tail refuses it otherwise, listing the topics with the
same prefix, and never creates it.
)";

// A named topic that is not in the cluster: refused, with the topics that share its first
// segment ("app."), since it is most likely a typo of one of them.
int unknown_topic(const std::string& topic, const std::vector<std::string>& existing) {
  const std::string prefix = topic.substr(0, topic.find('.') + 1);
  std::fprintf(stderr, "eventbus tail: no topic '%s' in the cluster (nothing was created); topics starting with '%s': %s\n",
               printable(topic).c_str(), printable(prefix).c_str(), name_list(names_like(existing, prefix)).c_str());
  return exit_failure;
}

// Partitions this consumer holds now (what "every partition read to its end" is measured against).
std::size_t assigned_partitions(rd_kafka_t* rk) {
  detail::kafka_partition_list assignment;
  const auto err = rd_kafka_assignment(rk, detail::out_ptr(assignment));  // owned from the next statement on
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR || assignment == nullptr) return SIZE_MAX;
  const auto count = static_cast<std::size_t>(assignment->cnt);
  return count == 0 ? SIZE_MAX : count;
}

}  // namespace

int run_tail(std::span<const std::string_view> args) {
  std::string bootstrap = default_bootstrap(), topics, correlation;
  int limit = 0;
  std::vector<std::string_view> rest(args.begin(), args.end());
  const bool json = take_switch(rest, "--json");
  const bool from_beginning = take_switch(rest, "--from-beginning");
  const bool until_end = take_switch(rest, "--until-end");
  arg_parser parser("tail", tail_usage);
  parser.add_string("--bootstrap", bootstrap);
  parser.add_string("--topics", topics);
  parser.add_int("--limit", limit);
  parser.add_string("--correlation", correlation);
  std::chrono::seconds timeout = default_kafka_timeout;
  parser.add_seconds("--timeout", timeout);
  if (const auto exit_code = parser.parse(rest)) return *exit_code;
  if (topics.empty()) {
    std::fprintf(stderr, "eventbus tail: --topics is required\n\n%s", tail_usage.data());
    return exit_usage;
  }
  if (!topics.starts_with('^'))
    if (auto valid = validate_topic_name(topics); !valid) {
      std::fprintf(stderr, "eventbus tail: --topics: %s\n", valid.error().to_string().c_str());
      return exit_usage;
    }

  const kafka_options kafka{.bootstrap_servers = bootstrap, .properties = {{"log_level", "3"}}};
  const auto existing = reach_cluster("tail", kafka, timeout);
  if (!existing) return exit_failure;
  if (!topics.starts_with('^') && !std::binary_search(existing->begin(), existing->end(), topics))
    return unknown_topic(topics, *existing);

  watch_stop_signals();
  auto config = detail::make_client_config(
      kafka, detail::client_role::consumer,
      {{"group.id", "eventbus-tail-" + std::to_string(getpid()) + "-" + std::to_string(now_ms().time_since_epoch().count())},
       {"allow.auto.create.topics", "false"},  // a reader never creates what it follows
       {"enable.auto.commit", "false"},
       {"enable.auto.offset.store", "false"},
       {"auto.offset.reset", from_beginning ? "earliest" : "latest"},
       {"fetch.wait.max.ms", "100"},
       {"enable.partition.eof", "true"}});  // to know when everything there was has been read
  const auto broker = config.broker;
  const detail::kafka_handle rk = detail::make_handle(RD_KAFKA_CONSUMER, std::move(config.conf));
  rd_kafka_poll_set_consumer(rk.get());
  const auto subscription = detail::make_partition_list(1);
  rd_kafka_topic_partition_list_add(subscription.get(), topics.c_str(), RD_KAFKA_PARTITION_UA);
  if (const auto err = rd_kafka_subscribe(rk.get(), subscription.get())) {
    std::fprintf(stderr, "eventbus tail: cannot subscribe to '%s': %s\n", topics.c_str(), detail::kafka_error_text(err).c_str());
    return exit_failure;
  }
  if (isatty(STDERR_FILENO)) std::fprintf(stderr, "following %s (Ctrl-C to stop)\n", topics.c_str());

  int seen = 0;
  std::vector<event> workflow;  // with --correlation: its events, for the tree at the end
  std::set<std::pair<std::string, std::int32_t>> at_end;  // partitions read to their end, still there
  bool said_end = false;
  while (!stop_requested() && (limit == 0 || seen < limit)) {
    const detail::kafka_message msg(rd_kafka_consumer_poll(rk.get(), 200));
    if (!msg) continue;
    if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      at_end.emplace(rd_kafka_topic_name(msg->rkt), msg->partition);
      if (at_end.size() >= assigned_partitions(rk.get())) {
        if (!said_end) std::fprintf(stderr, "reached the end: %d event(s) so far%s\n", seen, until_end ? "" : "; following new ones");
        said_end = true;
        if (until_end) break;
      }
      continue;
    }
    if (msg->err) {
      std::fprintf(stderr, "eventbus tail: %s\n", detail::kafka_error_text(msg->err).c_str());
      continue;
    }
    at_end.erase({rd_kafka_topic_name(msg->rkt), msg->partition});
    const std::string topic = rd_kafka_topic_name(msg->rkt);
    const std::string_view value(static_cast<const char*>(msg->payload), msg->len);
    const std::string key = msg->key ? std::string(static_cast<const char*>(msg->key), msg->key_len) : "";
    const auto ev = decode_event(value);
    if (!correlation.empty()) {
      if (!ev || (ev.value().correlation_id() != correlation && ev.value().event_id() != correlation)) continue;
      workflow.push_back(ev.value());
    }
    ++seen;
    if (json) {
      nlohmann::json line{{"topic", topic}, {"partition", msg->partition}, {"offset", msg->offset},
                          {"key", msg->key ? nlohmann::json(key) : nlohmann::json(nullptr)}};
      if (ev)
        line["event"] = nlohmann::json::parse(encode_event(ev.value()));
      else
        line["error"] = ev.error().to_string();
      std::printf("%s\n", line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    } else if (ev) {
      const auto& e = ev.value();
      std::printf("%s  %s[%d]@%lld  %-28s %-16s %s\n", format_timestamp(e.timestamp()).c_str(), topic.c_str(),
                  msg->partition, static_cast<long long>(msg->offset), e.event_type().c_str(), printable(e.aggregate_id()).c_str(),
                  e.payload().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    } else {
      std::fprintf(stderr, "%s[%d]@%lld: not an event: %s\n", topic.c_str(), msg->partition,
                   static_cast<long long>(msg->offset), printable(ev.error().to_string()).c_str());
    }
    std::fflush(stdout);
  }
  rd_kafka_consumer_close(rk.get());
  if (!correlation.empty() && !json) {
    const std::size_t count = workflow.size();
    std::printf("\nworkflow %s: %zu event(s)\n%s", printable(correlation).c_str(), count,
                render_workflow(std::move(workflow)).c_str());
  }
  return exit_ok;
}

}  // namespace eventbus::cli
