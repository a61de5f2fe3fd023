#pragma once
// The end of `eventbus demo`: does it add up? For every worker handler, the events it should have
// seen = handled + dead-lettered; every published event was either handled by all its handlers or
// dead-lettered; the dead-letter topics hold exactly the expected records.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "eventbus/kafka/options.hpp"
#include "eventbus/metrics.hpp"

namespace eventbus::cli {

struct published_event {
  std::string event_id;
  std::string event_type;
};

struct demo_summary {
  std::uint64_t handled_events = 0;       // every handler it matches finished it
  std::uint64_t dead_lettered_events = 0;  // distinct events of this run found in the dead-letter topics
  std::uint64_t duplicate_dead_letters = 0;  // dead-letter records beyond one per (handler, event)
  bool adds_up = false;
  std::string dlq_topic;  // where the demo's dead letters are, for the hint
};

/// How many of `published` a handler subscribed with `pattern` ("*", "model.*", "image.generated") receives.
std::uint64_t events_matching(const std::vector<published_event>& published, const std::string& pattern);

/// Reads the dead-letter topics back, prints the per-handler table and returns the totals.
demo_summary summarize(const kafka_options& kafka, const std::vector<published_event>& published,
                       const std::map<std::string, std::set<std::string>>& handled_by_handler,
                       const std::vector<std::pair<std::string, std::string>>& handler_patterns,
                       std::uint64_t expected_dead_letters);

/// "p99 <= 5 ms" from the handler-latency histogram (all handlers), "p99 -" before any call.
std::string p99_text(metrics& m);

/// Polls `condition` every 10 ms until it holds or `timeout` passes.
bool poll_until(const std::function<bool()>& condition, std::chrono::milliseconds timeout);

}  // namespace eventbus::cli
