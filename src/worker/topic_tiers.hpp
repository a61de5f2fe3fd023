#pragma once
// Which priority tier a topic belongs to (worker_options::priority_tiers): the first tier with a
// name equal to the topic or a '^' regular expression found in it. Expressions are POSIX extended,
// compiled and matched by the C library exactly as librdkafka does for a '^' subscription (regcomp
// with REG_EXTENDED | REG_NOSUB), so a tier accepts what a subscription accepts and means the same.
// Topics no tier names form the last, least urgent tier.

#include <regex.h>

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "eventbus/error.hpp"

namespace eventbus::detail {

class topic_tiers {
 public:
  /// errc::invalid_argument (field "<field>[i]") for an empty tier, an empty entry or a regular
  /// expression that does not compile.
  static result<topic_tiers> make(const std::vector<std::vector<std::string>>& tiers,
                                  const std::string& field = "priority_tiers");

  /// Tiers listed, plus one for the topics none names; 1 without tiers.
  [[nodiscard]] std::size_t count() const noexcept { return tiers_.size() + 1; }
  /// 0 (most urgent) .. count() - 1.
  [[nodiscard]] std::size_t of(const std::string& topic) const;

 private:
  struct compiled_regex {
    regex_t re{};
    bool compiled = false;  // regfree only what regcomp built
    compiled_regex() = default;
    compiled_regex(const compiled_regex&) = delete;
    compiled_regex& operator=(const compiled_regex&) = delete;
    ~compiled_regex() {
      if (compiled) regfree(&re);
    }
  };
  struct entry {
    std::string name;                         // exact, or empty when `pattern` is used
    std::shared_ptr<compiled_regex> pattern;  // shared: regex_t cannot be copied
  };
  std::vector<std::vector<entry>> tiers_;
};

}  // namespace eventbus::detail
