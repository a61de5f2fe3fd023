// What aggregate.hpp's templates report about snapshots, in one compiled place: the log and the
// metrics are the library's.

#include "eventbus/store/aggregate.hpp"

#include <string>

#include "support/log.hpp"
#include "eventbus/metrics.hpp"

namespace eventbus::detail {

void report_snapshot(metrics* m, std::string_view aggregate_type, std::string_view aggregate_id,
                     std::string_view outcome, std::string_view why) noexcept {
  try {
    if (m != nullptr) m->count_snapshot(aggregate_type, outcome);
    if (outcome.starts_with("ignored")) {
      if (log_enabled(log_level::warn))
        log(log_level::warn, "aggregate " + std::string(aggregate_type) + " " + std::string(aggregate_id) +
                                 ": snapshot ignored, rebuilt from the events: " + std::string(why));
    } else if (outcome == "save_failed") {
      if (log_enabled(log_level::warn))
        log(log_level::warn, "aggregate " + std::string(aggregate_type) + " " + std::string(aggregate_id) +
                                 ": the snapshot was not saved (the command's events are): " + std::string(why));
    }
  } catch (...) {  // out of memory building the line: the outcome stays as it was
  }
}

}  // namespace eventbus::detail
