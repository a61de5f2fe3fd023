#pragma once
// A worker's load gauges, reported as changes (internal: only workers report them).
// eventbus_worker_records_in_flight{group}, eventbus_worker_records_waiting_on_key{group},
// eventbus_worker_partitions_paused{group}.

#include <cstdint>
#include <string_view>

#include "eventbus/metrics.hpp"

namespace eventbus::detail {

struct worker_load {
  std::int64_t in_flight = 0;
  std::int64_t waiting_on_key = 0;
  std::int64_t paused_partitions = 0;
};

// The library's way to the metrics members users do not call.
struct metrics_access {
  /// Adds `change` to the group's gauges: each worker reports what changed since its last report,
  /// so the workers of one group in one process add up (and a stopped one reports itself back to 0).
  static void add_worker_load(metrics& m, std::string_view group, const worker_load& change) {
    m.add_worker_load(group, change);
  }
};

}  // namespace eventbus::detail
