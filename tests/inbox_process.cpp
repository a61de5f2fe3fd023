// A worker applying transfers through an inbox, as its own process, for tests that kill it. Its
// offsets are committed only when it stops cleanly (commit interval of an hour), so a SIGKILL makes
// Kafka deliver again everything it had handled: the inbox must skip each of them. Every skip is
// written to SKIPS_FILE (one write(2) a line: a SIGKILL loses none).
//
//   inbox_process BOOTSTRAP GROUP TOPIC sqlite:PATH|postgresql:DSN SKIPS_FILE

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "eventbus/log.hpp"
#include "eventbus/stop_signal.hpp"
#include "eventbus/store/inbox.hpp"
#include "eventbus/store/postgres_store.hpp"
#include "eventbus/store/sqlite_store.hpp"
#include "eventbus/kafka/worker.hpp"
#include "ledger_support.hpp"

int main(int argc, char** argv) {
  eventbus::watch_stop_signals();
  if (argc != 6) {
    std::fprintf(stderr, "usage: inbox_process BOOTSTRAP GROUP TOPIC sqlite:PATH|postgresql:DSN SKIPS_FILE\n");
    return 2;
  }
  const std::string where = argv[4];
  // durability normal: what survives a SIGKILL of the process (the test's crash), at a fraction of FULL's fsyncs.
  auto store = where.starts_with("sqlite:") ? eventbus::open_sqlite_store({.path = where.substr(7), .durability = eventbus::sqlite_durability::normal})
                                            : eventbus::open_postgres_store({.dsn = where.substr(11)});
  const int skips = open(argv[5], O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (skips < 0) return 1;
  eventbus::set_log_level(eventbus::log_level::debug);
  eventbus::set_log_sink([skips](eventbus::log_level, std::string_view line) {
    if (line.find("already applied") == std::string_view::npos) return;
    const std::string text = std::string(line) + "\n";
    (void)!write(skips, text.data(), text.size());
  });

  eventbus::inbox once(store);
  eventbus::worker w({.kafka = {.bootstrap_servers = argv[1],
                                .properties = {{"session.timeout.ms", "6000"},
                                               {"heartbeat.interval.ms", "500"},
                                               {"fetch.wait.max.ms", "10"},
                                               {"log_level", "3"}}},
                      .group_id = argv[2],
                      .topics = {argv[3]},
                      .retry = {.initial_backoff = std::chrono::milliseconds(10)},
                      .commit_interval = std::chrono::hours(1)});
  auto sub = w.subscribe("*", "ledger", once.wrap("ledger", eventbus::testing::apply_transfer));
  w.start();
  eventbus::wait_for_stop_signal();
  w.stop();
  close(skips);
  return 0;
}
