#pragma once
// Helpers the worker suites share: client settings that make the embedded broker's group protocol
// quick enough for tests, and a peak tracker for concurrency assertions.

#include <atomic>

#include "eventbus/kafka/embedded_broker.hpp"
#include "eventbus/kafka/options.hpp"

namespace eventbus::testing {

/// The embedded broker with the settings docs/embedded-broker.md lists for it: a second member joins after
/// session.timeout.ms (6 s, not 45), and an empty fetch waits 10 ms (not 500).
inline kafka_options mock_group_kafka(const embedded_broker& broker) {
  return {.bootstrap_servers = broker.bootstrap_servers(),
          .properties = {{"session.timeout.ms", "6000"},
                         {"heartbeat.interval.ms", "500"},
                         {"fetch.wait.max.ms", "10"},
                         {"log_level", "3"}}};
}

/// Raises `peak` to `now` if `now` is higher; safe from any number of threads.
inline void record_peak(std::atomic<int>& peak, int now) {
  for (int seen = peak.load(); now > seen && !peak.compare_exchange_weak(seen, now);) {
  }
}

}  // namespace eventbus::testing
