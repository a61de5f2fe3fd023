#pragma once
// Small helpers the Kafka benchmarks share: reading their numeric flags and summarising rounds.

#include <algorithm>
#include <charconv>
#include <string_view>
#include <vector>

namespace eventbus::bench {

/// Parses `value` into `target` when it is a whole positive number; false otherwise.
inline bool parse_positive(std::string_view value, int& target) {
  const auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), target);
  return ec == std::errc{} && ptr == value.data() + value.size() && target > 0;
}

/// The middle value (the upper one of an even count): robust to one slow round.
inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace eventbus::bench
