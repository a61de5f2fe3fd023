#include "worker/topic_tiers.hpp"

#include <regex>

#include "support/utf8.hpp"

namespace eventbus::detail {
namespace {

constexpr std::size_t max_pattern_length = 255;

const std::regex& counted_repetition() {
  static const std::regex bound(R"(\{ *[0-9])");
  return bound;
}

}  // namespace

result<topic_tiers> topic_tiers::make(const std::vector<std::vector<std::string>>& tiers, const std::string& field) {
  topic_tiers made;
  for (std::size_t i = 0; i < tiers.size(); ++i) {
    const std::string where = field + "[" + std::to_string(i) + "]";
    if (tiers[i].empty()) return error(errc::invalid_argument, "names no topic (a tier needs a name or '^regex')", where);
    auto& entries = made.tiers_.emplace_back();
    for (const auto& text : tiers[i]) {
      if (text.empty()) return error(errc::invalid_argument, "has an empty topic name", where);
      if (!text.starts_with('^')) {
        entries.push_back({.name = text, .pattern = nullptr});
        continue;
      }
      // One line of config must not build a matcher of millions of states (nested counted
      // repetitions multiply): no {n} bounds, and a length a topic pattern never needs.
      if (text.size() > max_pattern_length || std::regex_search(text, counted_repetition()))
        return error(errc::invalid_argument,
                     "'" + sanitize_utf8(text.substr(0, 80)) + "' is refused: tier matching takes expressions of at most " +
                         std::to_string(max_pattern_length) + " characters without counted repetition ({n})",
                     where);
      auto compiled = std::make_shared<compiled_regex>();
      if (const int err = regcomp(&compiled->re, text.c_str(), REG_EXTENDED | REG_NOSUB); err != 0) {
        char why[256];
        regerror(err, &compiled->re, why, sizeof why);
        return error(errc::invalid_argument, "'" + sanitize_utf8(text) + "' is not a regular expression: " + why, where);
      }
      compiled->compiled = true;
      entries.push_back({.name = {}, .pattern = std::move(compiled)});
    }
  }
  return made;
}

std::size_t topic_tiers::of(const std::string& topic) const {
  for (std::size_t i = 0; i < tiers_.size(); ++i)
    for (const auto& e : tiers_[i])
      if (e.pattern ? regexec(&e.pattern->re, topic.c_str(), 0, nullptr, 0) == 0 : e.name == topic) return i;
  return tiers_.size();
}

}  // namespace eventbus::detail
