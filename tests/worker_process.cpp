// A worker as its own process, for tests that kill it: appends the event_id of every record its
// handler finishes to a file (one write(2) per record, so a SIGKILL loses nothing written), and
// stops cleanly on SIGTERM. Each handler call takes a random time up to twice HANDLER_DELAY_US, so
// records of different keys finish out of offset order (the worker runs keys side by side).
// With STUCK_KEY, the handler fails every call for events of that aggregate id, and the first
// retry waits 60 s: such a record sits in backoff while everything after it finishes.
// Environment: EVENTBUS_FAIL_EVERY=N makes events whose payload "seq" is a multiple of N fail their
// first two calls (retried after 100 ms); EVENTBUS_COMMIT_INTERVAL_MS sets commit_interval (else
// 100 ms), "default" leaves the worker's default; EVENTBUS_SESSION_TIMEOUT_MS the group session (else
// 6 s: how long the group waits for a killed worker before its partitions move).
// Durable stages: EVENTBUS_PARKING_STORE=PATH (a SQLite file) with EVENTBUS_DURABLE_STAGES_MS=a,b,...
// parks records whose two in-memory attempts (10 ms apart) failed; EVENTBUS_DOWN_FILE=PATH fails
// every call while that file exists (a dependency that is down).
//
//   worker_process BOOTSTRAP GROUP TOPIC OUTPUT_FILE HANDLER_DELAY_US [STUCK_KEY]

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>

#include "eventbus/stop_signal.hpp"
#include "eventbus/kafka/worker.hpp"
#include "eventbus/store/sqlite_store.hpp"

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
  const char* fail_every_env = std::getenv("EVENTBUS_FAIL_EVERY");
  const int fail_every = fail_every_env != nullptr ? std::atoi(fail_every_env) : 0;
  const char* commit_env = std::getenv("EVENTBUS_COMMIT_INTERVAL_MS");
  const std::string commit_interval = commit_env != nullptr ? commit_env : "100";
  const char* session_env = std::getenv("EVENTBUS_SESSION_TIMEOUT_MS");
  const std::string session_timeout = session_env != nullptr ? session_env : "6000";
  std::mutex calls_mu;
  std::map<std::string, int> failing_calls;  // per event id, for EVENTBUS_FAIL_EVERY

  eventbus::worker_options options{
      .kafka = {.bootstrap_servers = argv[1],
                .properties = {{"session.timeout.ms", session_timeout},
                               {"heartbeat.interval.ms", "500"},
                               {"fetch.wait.max.ms", "10"},
                               {"log_level", "3"}}},
      .group_id = argv[2],
      .topics = {argv[3]},
      .retry = {.initial_backoff = std::chrono::milliseconds(stuck_key.empty() ? 100 : 60'000),
                .max_backoff = std::chrono::milliseconds(60'000)}};
  if (commit_interval != "default") options.commit_interval = std::chrono::milliseconds(std::stoi(commit_interval));
  if (const char* parking = std::getenv("EVENTBUS_PARKING_STORE")) {
    options.parking_store = eventbus::open_sqlite_store({.path = parking});
    options.retry.max_attempts = 2;
    options.retry.initial_backoff = options.retry.max_backoff = std::chrono::milliseconds(10);
    std::string stages = std::getenv("EVENTBUS_DURABLE_STAGES_MS") ? std::getenv("EVENTBUS_DURABLE_STAGES_MS") : "";
    for (std::size_t at = 0; at < stages.size();) {
      const auto comma = std::min(stages.find(',', at), stages.size());
      options.retry.durable_stages.emplace_back(std::stoi(stages.substr(at, comma - at)));
      at = comma + 1;
    }
  }
  const char* down_file = std::getenv("EVENTBUS_DOWN_FILE");
  eventbus::worker w(options);
  auto sub = w.subscribe("*", "record", [&](const eventbus::event& ev) {
    if (!stuck_key.empty() && ev.aggregate_id() == stuck_key) throw std::runtime_error("stuck");
    if (down_file != nullptr && access(down_file, F_OK) == 0) throw std::runtime_error("dependency down");
    if (fail_every > 0 && ev.payload().value("seq", -1) % fail_every == 0) {
      const std::lock_guard lock(calls_mu);
      if (++failing_calls[ev.event_id()] <= 2) throw std::runtime_error("fails twice");
    }
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
