// A worker as its own process, for tests that kill it: appends the event_id of every record its
// handler finishes to a file (one write(2) per record, so a SIGKILL loses nothing written), and
// stops cleanly on SIGTERM. Each handler call takes a random time up to twice HANDLER_DELAY_US, so
// records of different keys finish out of offset order (the worker runs keys side by side).
// With STUCK_KEY, the handler fails every call for events of that aggregate id, and the first
// retry waits 60 s: such a record sits in backoff while everything after it finishes.
//
//   worker_process BOOTSTRAP GROUP TOPIC OUTPUT_FILE HANDLER_DELAY_US [STUCK_KEY]

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <random>
#include <string>
#include <thread>

#include "eventbus/stop_signal.hpp"
#include "eventbus/kafka/worker.hpp"

int main(int argc, char** argv) {
  eventbus::watch_stop_signals();  // from here on, SIGINT/SIGTERM ask for a clean stop
  if (argc != 6 && argc != 7) {
    std::fprintf(stderr, "usage: worker_process BOOTSTRAP GROUP TOPIC OUTPUT_FILE HANDLER_DELAY_US [STUCK_KEY]\n");
    return 2;
  }
  const int out = open(argv[4], O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (out < 0) return 1;
  const auto delay = std::chrono::microseconds(std::stoi(argv[5]));
  const std::string stuck_key = argc == 7 ? argv[6] : "";

  eventbus::worker w({.kafka = {.bootstrap_servers = argv[1],
                                .properties = {{"session.timeout.ms", "6000"},
                                               {"heartbeat.interval.ms", "500"},
                                               {"fetch.wait.max.ms", "10"},
                                               {"log_level", "3"}}},
                      .group_id = argv[2],
                      .topics = {argv[3]},
                      .retry = {.initial_backoff = std::chrono::milliseconds(stuck_key.empty() ? 100 : 60'000),
                                .max_backoff = std::chrono::milliseconds(60'000)},
                      .commit_interval = std::chrono::milliseconds(100)});
  auto sub = w.subscribe("*", "record", [&](const eventbus::event& ev) {
    if (!stuck_key.empty() && ev.aggregate_id() == stuck_key) throw std::runtime_error("stuck");
    thread_local std::mt19937 rng(std::random_device{}());
    std::this_thread::sleep_for(delay * (rng() % 201) / 100);  // simulated work
    const std::string line = ev.event_id() + "\n";
    if (write(out, line.data(), line.size()) != static_cast<ssize_t>(line.size())) throw std::runtime_error("write");
  });
  w.start();
  eventbus::wait_for_stop_signal();
  w.stop();
  close(out);
  return 0;
}
