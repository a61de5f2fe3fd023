// A worker as its own process, for tests that kill it: appends the event_id of every record its
// handler finishes to a file (one write(2) per record, so a SIGKILL loses nothing written), and
// stops cleanly on SIGTERM. Each handler call takes a random time up to twice HANDLER_DELAY_US, so
// records of different keys finish out of offset order (the worker runs keys side by side).
//
//   worker_process BOOTSTRAP GROUP TOPIC OUTPUT_FILE HANDLER_DELAY_US

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <random>
#include <string>
#include <thread>

#include "eventbus/stop_signal.hpp"
#include "eventbus/worker.hpp"

int main(int argc, char** argv) {
  eventbus::watch_stop_signals();  // from here on, SIGINT/SIGTERM ask for a clean stop
  if (argc != 6) {
    std::fprintf(stderr, "usage: worker_process BOOTSTRAP GROUP TOPIC OUTPUT_FILE HANDLER_DELAY_US\n");
    return 2;
  }
  const int out = open(argv[4], O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (out < 0) return 1;
  const auto delay = std::chrono::microseconds(std::stoi(argv[5]));

  eventbus::worker w({.kafka = {.bootstrap_servers = argv[1],
                                .properties = {{"session.timeout.ms", "6000"},
                                               {"heartbeat.interval.ms", "500"},
                                               {"fetch.wait.max.ms", "10"},
                                               {"log_level", "3"}}},
                      .group_id = argv[2],
                      .topics = {argv[3]},
                      .commit_interval = std::chrono::milliseconds(100)});
  auto sub = w.subscribe("*", "record", [&](const eventbus::event& ev) {
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
