// `eventbus dev-broker`: the embedded broker as a process on loopback, so that separate processes
// (a service and its workers) can share one during development. Prints the bootstrap address as the
// first line of stdout, then runs until SIGINT or SIGTERM.

#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "eventbus/kafka/embedded_broker.hpp"

namespace eventbus::cli {
namespace {

constexpr std::string_view dev_broker_usage = R"(usage: eventbus dev-broker [--brokers N] [--partitions P] [--topic NAME]...

Runs an in-memory Kafka-protocol broker (librdkafka's mock cluster) on 127.0.0.1 until SIGINT or
SIGTERM. The first line of output is the bootstrap address, for example:
  eventbus dev-broker --topic app.order.order.created > broker.addr &
  BOOTSTRAP=$(head -n 1 broker.addr)

  --brokers N      brokers in the cluster (default 1)
  --partitions P   partitions of the topics named with --topic (default 4)
  --topic NAME     create this topic up front (repeatable); topics created on first use get 4
                   partitions, the mock's fixed default
Nothing is kept on disk: everything is gone when the process exits.
)";

}  // namespace

int run_dev_broker(std::span<const std::string_view> args) {
  int brokers = 1, partitions = 4;
  std::vector<std::string> topics;
  arg_parser parser("dev-broker", dev_broker_usage);
  parser.add_int("--brokers", brokers);
  parser.add_int("--partitions", partitions);
  parser.add_list("--topic", topics);
  if (const auto exit_code = parser.parse(args)) return *exit_code;

  // Block the stop signals before librdkafka starts its threads, so only sigwait() receives them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  embedded_broker broker(brokers);
  for (const auto& topic : topics) broker.create_topic(topic, partitions, 1);

  std::printf("%s\n", broker.bootstrap_servers().c_str());
  std::fflush(stdout);
  std::fprintf(stderr, "eventbus dev-broker: %d broker(s) at %s; in memory only. Ctrl-C to stop.\n", brokers,
               broker.bootstrap_servers().c_str());

  int received = 0;
  sigwait(&stop_signals, &received);
  std::fprintf(stderr, "eventbus dev-broker: stopping (signal %d)\n", received);
  return exit_ok;
}

}  // namespace eventbus::cli
