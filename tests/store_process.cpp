// A service with an event store and its outbox relay, as its own process, for tests that kill it.
//
//   store_process STORE BOOTSTRAP append COUNT OUTPUT_FILE   appends COUNT events (10 aggregates,
//       each append its own transaction) while the relay runs; after each append returns it writes
//       the event id to OUTPUT_FILE (one write(2): a SIGKILL loses no line of a stored event); then
//       keeps relaying until SIGTERM.
//   store_process STORE BOOTSTRAP drain                       relays until the outbox is empty, exits 0
//       (1 if it is not empty within 60 s).
//   store_process STORE - lease OWNER TTL_MS                   asks for the relay lease every 50 ms, as
//       a relay would, and prints "held" each time it starts holding it and "lost" when it stops;
//       until SIGTERM. No Kafka. Its first line is "clock SECONDS": its wall clock, seconds since
//       the epoch (so a test can check the clock it gave the process).
// STORE is sqlite:PATH or postgresql:DSN.

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <thread>

#include "eventbus/stop_signal.hpp"
#include "eventbus/store/outbox_relay.hpp"
#include "eventbus/store/postgres_store.hpp"
#include "eventbus/store/sqlite_store.hpp"

int main(int argc, char** argv) {
  eventbus::watch_stop_signals();
  if (argc < 4) {
    std::fprintf(stderr, "usage: store_process STORE BOOTSTRAP append COUNT OUTPUT_FILE | drain\n");
    return 2;
  }
  const std::string where = argv[1], mode = argv[3];
  auto store = where.starts_with("sqlite:") ? eventbus::open_sqlite_store({.path = where.substr(7)})
                                            : eventbus::open_postgres_store({.dsn = where.substr(11)});
  if (mode == "lease" && argc == 6) {
    const auto wall = std::chrono::system_clock::now().time_since_epoch();
    std::printf("clock %lld\n", static_cast<long long>(std::chrono::duration_cast<std::chrono::seconds>(wall).count()));
    std::fflush(stdout);
    bool held = false;
    while (!eventbus::stop_requested()) {
      auto now_held = store->hold_relay_lease(argv[4], std::chrono::milliseconds(std::stoi(argv[5])));
      if (now_held.ok() && now_held.value() != held) {
        held = now_held.value();
        std::printf("%s\n", held ? "held" : "lost");
        std::fflush(stdout);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));  // a relay's pace, not a wait on anything
    }
    return 0;
  }
  eventbus::outbox_relay relay(store, eventbus::producer_options{.kafka = {.bootstrap_servers = argv[2], .properties = {{"log_level", "0"}}}},
                               {.batch_size = 200, .interval = std::chrono::milliseconds(20)});
  relay.start();

  if (mode == "drain") {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
      auto left = store->backlog();
      if (left && left.value().events == 0) return 0;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return 1;
  }
  if (mode != "append" || argc != 6) return 2;
  const int count = std::stoi(argv[4]);
  const int out = open(argv[5], O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (out < 0) return 1;
  for (int i = 0; i < count && !eventbus::stop_requested(); ++i) {
    const auto ev = eventbus::make_event({.event_type = "order.placed", .aggregate_type = "order",
                                          .aggregate_id = "a-" + std::to_string(i % 10), .payload = {{"seq", i}}});
    const std::vector<eventbus::event> one{ev};
    if (!store->append("order", ev.aggregate_id(), eventbus::expected_version::any(), one).ok()) return 1;
    const std::string line = ev.event_id() + "\n";
    if (write(out, line.data(), line.size()) != static_cast<ssize_t>(line.size())) return 1;
    relay.notify();
  }
  eventbus::wait_for_stop_signal();
  relay.stop();
  close(out);
  return 0;
}
