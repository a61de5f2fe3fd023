#pragma once
// Reprocessing history: move a consumer group's committed offsets back to a point in time, so its
// workers handle every record from then on again (at-least-once makes that safe to do).
//
//   #include <eventbus/time.hpp>
//   eventbus::kafka_options kafka{.bootstrap_servers = "localhost:9092"};
//   auto from = eventbus::parse_timestamp("2025-12-04T10:00:00Z");
//   auto moved = eventbus::rewind_group(kafka, "billing", "^app\\.order\\..*", from.value());
//   if (!moved) std::cerr << moved.error().to_string() << "\n";
//
// Stop the group's workers first: Kafka refuses commits for a group with active members.

#include <cstdint>
#include <string>
#include <vector>

#include "eventbus/error.hpp"
#include "eventbus/kafka/options.hpp"
#include "eventbus/time.hpp"

namespace eventbus {

struct partition_position {
  std::string topic;
  std::int32_t partition = -1;
  std::int64_t offset = -1;  // the first record at or after the time; the end when there is none
};

struct rewind_options {
  /// Also for a group that has never committed: positions it before its first start. Off by
  /// default, so that a mistyped group is refused instead of created.
  bool new_group = false;
};

/// Commits, for `group`, the offset of the first record at or after `from` in every partition of
/// the topics matching `topics` (a name, or a regular expression starting with '^'). Returns the
/// new positions. A regex never matches dead-letter topics (ending in ".dlq") nor internal ones
/// ("__..."). errc::invalid_argument for a bad regex, no matching topic, or (unless
/// options.new_group) a group with no committed offset on any partition (one that never ran, or a
/// typo: committing would create it; the message lists the groups the cluster knows);
/// errc::timed_out or errc::delivery_failed when the cluster refuses.
[[nodiscard]] result<std::vector<partition_position>> rewind_group(const kafka_options& kafka, const std::string& group,
                                                                   const std::string& topics, time_point from,
                                                                   const rewind_options& options = {});

}  // namespace eventbus
