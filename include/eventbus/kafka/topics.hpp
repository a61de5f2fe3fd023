#pragma once
// What the cluster holds: topics under a prefix, their partitions and end offsets. Used by
// `eventbus topics`.

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
/// errc::timed_out when the cluster does not answer within 15 s.
[[nodiscard]] result<std::vector<topic_info>> list_topics(const kafka_options& kafka, std::string_view prefix);

}  // namespace eventbus
