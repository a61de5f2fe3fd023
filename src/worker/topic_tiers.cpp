#include "worker/topic_tiers.hpp"

#include "support/utf8.hpp"

namespace eventbus::detail {

result<topic_tiers> topic_tiers::make(const std::vector<std::vector<std::string>>& tiers) {
  topic_tiers made;
  for (std::size_t i = 0; i < tiers.size(); ++i) {
    const std::string field = "priority_tiers[" + std::to_string(i) + "]";
    if (tiers[i].empty()) return error(errc::invalid_argument, "names no topic (a tier needs a name or '^regex')", field);
    auto& entries = made.tiers_.emplace_back();
    for (const auto& text : tiers[i]) {
      if (text.empty()) return error(errc::invalid_argument, "has an empty topic name", field);
      if (!text.starts_with('^')) {
        entries.push_back({.name = text, .pattern = {}});
        continue;
      }
      try {
        // POSIX extended, as librdkafka reads a '^' subscription.
        entries.push_back({.name = {}, .pattern = std::regex(text, std::regex::extended | std::regex::nosubs)});
      } catch (const std::regex_error& e) {
        return error(errc::invalid_argument, "'" + sanitize_utf8(text) + "' is not a regular expression: " + e.what(), field);
      }
    }
  }
  return made;
}

std::size_t topic_tiers::of(const std::string& topic) const {
  for (std::size_t i = 0; i < tiers_.size(); ++i)
    for (const auto& e : tiers_[i])
      if (e.name.empty() ? std::regex_search(topic, e.pattern) : e.name == topic) return i;
  return tiers_.size();
}

}  // namespace eventbus::detail
