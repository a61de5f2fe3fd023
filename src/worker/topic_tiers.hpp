#pragma once
// Which priority tier a topic belongs to (worker_options::priority_tiers): the first tier with a
// name equal to the topic or a '^' regular expression found in it, as librdkafka matches a
// subscription; topics no tier names form the last, least urgent tier.

#include <cstddef>
#include <regex>
#include <string>
#include <vector>

#include "eventbus/error.hpp"

namespace eventbus::detail {

class topic_tiers {
 public:
  /// errc::invalid_argument (field "priority_tiers[i]") for an empty tier, an empty entry or a
  /// regular expression that does not compile.
  static result<topic_tiers> make(const std::vector<std::vector<std::string>>& tiers);

  /// Tiers listed, plus one for the topics none names; 1 without tiers.
  [[nodiscard]] std::size_t count() const noexcept { return tiers_.size() + 1; }
  /// 0 (most urgent) .. count() - 1.
  [[nodiscard]] std::size_t of(const std::string& topic) const;

 private:
  struct entry {
    std::string name;  // exact, or empty when `pattern` is used
    std::regex pattern;
  };
  std::vector<std::vector<entry>> tiers_;
};

}  // namespace eventbus::detail
