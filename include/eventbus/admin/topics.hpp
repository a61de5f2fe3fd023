#pragma once
// What the cluster holds: topics under a prefix, their partitions and end offsets. Used by
// `eventbus topics`.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "eventbus/error.hpp"
#include "eventbus/kafka/options.hpp"

namespace eventbus {

struct topic_info {
  std::string name;
  std::vector<std::int64_t> end_offsets;  // per partition, by partition id: the next offset to be written
  [[nodiscard]] std::int64_t total() const noexcept;
};

/// Topics whose name starts with `prefix` (all when empty), sorted by name, with their end offsets.
/// errc::timed_out when the cluster does not answer within `timeout`.
[[nodiscard]] result<std::vector<topic_info>> list_topics(const kafka_options& kafka, std::string_view prefix,
                                                          std::chrono::milliseconds timeout = std::chrono::seconds(15));

/// The name of every topic of the cluster, sorted. Asks for all topics rather than for one by name,
/// so it never auto-creates a topic: what tools check a name against before they read it.
/// errc::timed_out when no broker answers within `timeout`.
[[nodiscard]] result<std::vector<std::string>> topic_names(const kafka_options& kafka,
                                                           std::chrono::milliseconds timeout = std::chrono::seconds(15));

}  // namespace eventbus
