#pragma once
// The aggregate the aggregate tests and their helper process share: a counter, raised by
// `counted` events and set back to zero by `counter_reset`.

#include <string_view>

#include "eventbus/store/aggregate.hpp"
#include "eventbus/typed_event.hpp"

namespace eventbus::testing {

struct counted {
  static constexpr std::string_view event_type = "counter.counted";
  static constexpr std::string_view aggregate_type = "counter";
  int by = 1;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(counted, by)

struct counter_reset {
  static constexpr std::string_view event_type = "counter.reset";
  static constexpr std::string_view aggregate_type = "counter";
  static constexpr int version = 2;
  std::string why;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(counter_reset, why)

struct counter {
  static constexpr std::string_view aggregate_type = "counter";
  using events = event_types<counted, counter_reset>;
  long total = 0;
  int counts = 0;
  int resets = 0;
  void apply(const counted& e) {
    total += e.by;
    ++counts;
  }
  void apply(const counter_reset&) {
    total = 0;
    ++resets;
  }
};

/// One increment: the command both concurrency tests run.
inline counted increment(const counter&) { return counted{.by = 1}; }

}  // namespace eventbus::testing
