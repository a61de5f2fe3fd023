// `eventbus`: one binary, one subcommand per operation. Errors go to stderr.

#include <cstdio>
#include <exception>
#include <string_view>
#include <vector>

#include "cli/commands.hpp"

namespace {

constexpr std::string_view usage = R"(usage: eventbus <command> [options]

commands:
  demo        publish a realistic event workflow through the dispatcher and show what happens
  dev-broker  run an in-memory Kafka-protocol broker on loopback and print its address
  dlq         list dead letters, replay them onto their original topics, or list parked records
  replay      move a consumer group's offsets back to a point in time to reprocess history
  config      check a config file and print the effective configuration (secrets redacted)
  topics      list the event topics with their partitions and end offsets
  publish     produce events from flags, a file or stdin, and wait for their delivery
  tail        follow topics and print each event as it arrives (pretty or JSON lines)
  store       list an event store, show its outbox backlog, replay stored events to Kafka
  handlers    show the handlers of a running service or worker (its metrics server's /handlers)
  new         write a typed event struct, or a handler with its test, into your project
  version     print the version
  help        show this text

Run `eventbus <command> --help` for the options of a command.
)";

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string_view> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "help" || args[0] == "--help" || args[0] == "-h") {
    std::fputs(usage.data(), args.empty() ? stderr : stdout);
    return args.empty() ? eventbus::cli::exit_usage : eventbus::cli::exit_ok;
  }
  const std::string_view command = args[0];
  const std::span<const std::string_view> rest(args.data() + 1, args.size() - 1);
  try {
    if (command == "demo") return eventbus::cli::run_demo(rest);
    if (command == "dev-broker") return eventbus::cli::run_dev_broker(rest);
    if (command == "dlq") return eventbus::cli::run_dlq(rest);
    if (command == "replay") return eventbus::cli::run_replay(rest);
    if (command == "config") return eventbus::cli::run_config(rest);
    if (command == "topics") return eventbus::cli::run_topics(rest);
    if (command == "publish") return eventbus::cli::run_publish(rest);
    if (command == "tail") return eventbus::cli::run_tail(rest);
    if (command == "store") return eventbus::cli::run_store(rest);
    if (command == "new") return eventbus::cli::run_new(rest);
    if (command == "handlers") return eventbus::cli::run_handlers(rest);
    if (command == "version" || command == "--version") {
      std::puts("eventbus " EVENTBUS_VERSION);
      return eventbus::cli::exit_ok;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "eventbus %s: %s\n", command.data(), e.what());
    return eventbus::cli::exit_failure;
  }
  std::fprintf(stderr, "eventbus: unknown command '%s'\n\n%s", command.data(), usage.data());
  return eventbus::cli::exit_usage;
}
