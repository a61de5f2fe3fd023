// `eventbus publish`: produce events to their topics, from flags, a file or stdin, and wait for
// every delivery. Bad input is reported with its line and skipped; nothing valid is dropped.

#include <atomic>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>
#include <string>

#include "cli/args.hpp"
#include "cli/cluster.hpp"
#include "cli/input_line.hpp"
#include "cli/commands.hpp"
#include "cli/printable.hpp"
#include "cli/progress.hpp"
#include "envelope/event_data.hpp"
#include "eventbus/kafka/kafka_sink.hpp"

namespace eventbus::cli {
namespace {

constexpr std::string_view publish_usage =
    R"(usage: eventbus publish --type TYPE --aggregate-id ID [--aggregate-type T] [--payload JSON] [--correlation-id C]
       eventbus publish --file FILE       a JSON event, an array of them, or one per line
       eventbus publish --stdin           one JSON event per line

An event is a full envelope, or just its fields: {"event_type": "order.created", "aggregate_id": "o-1",
"payload": {...}} (aggregate_type defaults to the event type's first segment; event_id, timestamp
and version are generated). Each goes to app.<aggregate_type>.<event_type>, key = aggregate_id.

  --bootstrap SERVERS  Kafka brokers (default: $EVENTBUS_BOOTSTRAP_SERVERS, else localhost:9092)
  --prefix PREFIX      topic prefix (default app)
  --timeout SECONDS    how long to wait for a broker to answer, and for each event to be
                       acknowledged (default 10); no broker answering is said at once, with where
                       it looked

Exit status: 0 every event delivered; 1 no broker answered, some input invalid or some delivery
failed (each named on stderr); 2 usage.
)";

struct publisher {
  explicit publisher(producer_options options) : sink(std::move(options)) {}

  kafka_sink sink;
  progress_line progress{"publish"};
  std::atomic<std::uint64_t> delivered{0}, failed{0};
  std::uint64_t sent = 0, invalid = 0;
  std::mutex print_mu;
  bool print_each = false;

  void send(const event& ev) {
    ++sent;
    sink.produce(ev, [this, id = ev.event_id()](result<delivery> d) {
      const std::lock_guard lock(print_mu);
      if (d) {
        ++delivered;
        if (print_each)
          std::printf("%s[%d]@%lld %s\n", d.value().topic.c_str(), d.value().partition,
                      static_cast<long long>(d.value().offset), id.c_str());
      } else {
        ++failed;
        std::fprintf(stderr, "eventbus publish: event %s not delivered: %s\n", id.c_str(), d.error().to_string().c_str());
      }
    });
    progress.update(counts(), delivered.load());
  }
  void reject(const std::string& where, const error& why) {
    ++invalid;
    std::fprintf(stderr, "eventbus publish: %s: %s (skipped)\n", where.c_str(), why.to_string().c_str());
  }
  std::string counts() const {
    return std::to_string(sent) + " sent, " + std::to_string(delivered.load()) + " delivered, " +
           std::to_string(failed.load()) + " failed, " + std::to_string(invalid) + " invalid";
  }
};

}  // namespace

int run_publish(std::span<const std::string_view> args) {
  std::string bootstrap = default_bootstrap(), prefix{default_topic_prefix}, type, aggregate_id, aggregate_type,
                          payload = "{}", correlation_id, file;
  std::vector<std::string_view> rest(args.begin(), args.end());
  const bool from_stdin = take_switch(rest, "--stdin");
  arg_parser parser("publish", publish_usage);
  parser.add_string("--bootstrap", bootstrap);
  parser.add_string("--prefix", prefix);
  parser.add_string("--type", type);
  parser.add_string("--aggregate-id", aggregate_id);
  parser.add_string("--aggregate-type", aggregate_type);
  parser.add_string("--payload", payload);
  parser.add_string("--correlation-id", correlation_id);
  parser.add_string("--file", file);
  std::chrono::seconds timeout = default_kafka_timeout;
  parser.add_seconds("--timeout", timeout);
  if (const auto exit_code = parser.parse(rest)) return *exit_code;
  const int sources = (type.empty() ? 0 : 1) + (file.empty() ? 0 : 1) + (from_stdin ? 1 : 0);
  if (sources != 1) {
    std::fprintf(stderr, "eventbus publish: give exactly one of --type, --file, --stdin\n\n%s", publish_usage.data());
    return exit_usage;
  }

  // An unreachable cluster is said once, before the first event (reach_cluster); past that,
  // message.timeout.ms bounds how long each event waits for its acknowledgement (librdkafka's
  // default is 5 minutes).
  const kafka_options kafka{.bootstrap_servers = bootstrap,
                            .properties = {{"log_level", "3"},
                                           {"message.timeout.ms", std::to_string(std::chrono::milliseconds(timeout).count())}}};
  publisher pub({.kafka = kafka, .topic_prefix = prefix});  // connects lazily: nothing waits here
  if (!type.empty()) {
    const auto body = nlohmann::json::parse(payload, nullptr, false);
    if (body.is_discarded()) {
      std::fprintf(stderr, "eventbus publish: --payload is not JSON: %s\n", printable(payload.substr(0, 200)).c_str());
      return exit_usage;
    }
    if (detail::json_depth_exceeds(body, max_payload_depth)) {
      std::fprintf(stderr, "eventbus publish: --payload is nested deeper than %zu levels\n", max_payload_depth);
      return exit_usage;
    }
    nlohmann::json fields{{"event_type", type}, {"aggregate_id", aggregate_id}, {"payload", body}};
    if (!aggregate_type.empty()) fields["aggregate_type"] = aggregate_type;
    if (!correlation_id.empty()) fields["correlation_id"] = correlation_id;
    auto ev = event_from_input(fields);
    if (!ev) {
      std::fprintf(stderr, "eventbus publish: %s\n", ev.error().to_string().c_str());
      return exit_usage;
    }
    if (!reach_cluster("publish", kafka, timeout)) return exit_failure;
    pub.print_each = true;
    pub.send(ev.value());
  } else {
    std::ifstream in_file;
    if (!file.empty()) {
      in_file.open(file);
      if (!in_file) {
        std::fprintf(stderr, "eventbus publish: cannot read '%s'\n", file.c_str());
        return exit_failure;
      }
    }
    if (!reach_cluster("publish", kafka, timeout)) return exit_failure;
    std::istream& in = file.empty() ? std::cin : in_file;
    const std::string source = file.empty() ? "stdin" : file;
    std::size_t number = 0;
    const auto handle_line = [&](const std::string& line) {
      ++number;
      auto ev = event_from_line(line);
      if (!ev) return;  // blank
      if (ev->ok()) pub.send(ev->value()); else pub.reject(source + " line " + std::to_string(number), ev->error());
    };
    std::string first;
    std::getline(in, first);
    // A file may hold one JSON document (an event or an array over several lines) rather than
    // lines. Only when it does is it taken whole: a file of lines whose first line is bad is still
    // lines, and each good line is published.
    if (!file.empty() && nlohmann::json::parse(first, nullptr, false).is_discarded()) {
      std::string all = first;
      for (std::string line; std::getline(in, line);) all += "\n" + line;
      const auto doc = nlohmann::json::parse(all, nullptr, false);
      if (!doc.is_discarded() && (doc.is_array() || doc.is_object())) {
        if (doc.is_object()) {
          auto ev = event_from_input(doc);
          if (ev) pub.send(ev.value()); else pub.reject(source, ev.error());
        }
        for (std::size_t i = 0; doc.is_array() && i < doc.size(); ++i) {
          auto ev = event_from_input(doc[i]);
          if (ev) pub.send(ev.value()); else pub.reject(source + " [" + std::to_string(i) + "]", ev.error());
        }
      } else {
        std::istringstream lines(all);
        for (std::string line; std::getline(lines, line);) handle_line(line);
      }
    } else {
      if (in || !first.empty()) handle_line(first);
      for (std::string line; std::getline(in, line);) handle_line(line);
    }
  }
  // Every event still waiting expires within the timeout; the second more lets its report arrive.
  const auto flushed = pub.sink.flush(timeout + std::chrono::seconds(1));
  if (!flushed) std::fprintf(stderr, "eventbus publish: %s\n", flushed.error().to_string().c_str());
  if (!pub.print_each) pub.progress.finish(pub.counts(), pub.delivered.load());
  return flushed && pub.failed.load() == 0 && pub.invalid == 0 ? exit_ok : exit_failure;
}

}  // namespace eventbus::cli
