#include "eventbus/topic.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdio>

#include "envelope/event_data.hpp"

namespace eventbus {
namespace {

bool is_topic_char(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == '-';
}

eventbus::error invalid_topic(std::string field, std::string message) {
  return {errc::invalid_topic, std::move(message), std::move(field)};
}

std::string quoted(std::string_view s) { return "'" + std::string(s) + "'"; }

constexpr std::size_t dlq_hash_length = 8;

}  // namespace

result<void> validate_topic_name(std::string_view topic) {
  if (topic.empty()) return invalid_topic("topic", "must not be empty");
  if (topic == "." || topic == "..") return invalid_topic("topic", quoted(topic) + " is reserved by Kafka");
  if (topic.size() > max_topic_length)
    return invalid_topic("topic", "is " + std::to_string(topic.size()) + " characters long, Kafka allows at most " +
                                std::to_string(max_topic_length));
  for (const char c : topic)
    if (!is_topic_char(c))
      return invalid_topic("topic", quoted(topic) + " contains " + quoted(std::string_view(&c, 1)) +
                                  "; Kafka allows only [a-zA-Z0-9._-]");
  return {};
}

result<std::string> topic_for(std::string_view aggregate_type, std::string_view event_type, std::string_view prefix) {
  if (prefix.empty()) return invalid_topic("prefix", "must not be empty");
  for (const char c : prefix)
    if (!is_topic_char(c)) return invalid_topic("prefix", quoted(prefix) + " contains characters Kafka does not allow");
  if (prefix.back() == '.') return invalid_topic("prefix", quoted(prefix) + " must not end with '.'");
  if (aggregate_type.empty()) return invalid_topic("aggregate_type", "must not be empty");
  for (const char c : aggregate_type)
    if (c == '.' || !is_topic_char(c))
      return invalid_topic("aggregate_type", quoted(aggregate_type) +
                                           " may contain only [a-zA-Z0-9_-] (a '.' would let two types share a topic)");
  if (auto problem = detail::event_type_problem(event_type)) return invalid_topic("event_type", *problem);

  std::string topic;
  topic.reserve(prefix.size() + aggregate_type.size() + event_type.size() + 2);
  topic.append(prefix).append(".").append(aggregate_type).append(".").append(event_type);
  if (auto valid = validate_topic_name(topic); !valid) return valid.error();
  // An event topic keeps room for its dead-letter topic: a worker must always be able to write one.
  if (topic.size() > max_event_topic_length)
    return invalid_topic("topic", "'" + topic.substr(0, 40) + "...' is " + std::to_string(topic.size()) +
                                " characters long; event topics may have at most " +
                                std::to_string(max_event_topic_length) + " so that '" + std::string(default_dlq_suffix) +
                                "' still fits in Kafka's " + std::to_string(max_topic_length));
  return topic;
}

result<std::string> topic_for(const event& ev, std::string_view prefix) {
  return topic_for(ev.aggregate_type(), ev.event_type(), prefix);
}

result<void> validate_dlq_suffix(std::string_view suffix) {
  if (suffix.empty()) return invalid_topic("dlq_suffix", "must not be empty (the dead letters would go to the topic itself)");
  for (const char c : suffix)
    if (!is_topic_char(c))
      return invalid_topic("dlq_suffix", quoted(suffix) + " contains " + quoted(std::string_view(&c, 1)) +
                                       "; Kafka allows only [a-zA-Z0-9._-]");
  if (suffix.size() > max_topic_length - dlq_hash_length - 1)
    return invalid_topic("dlq_suffix", "is " + std::to_string(suffix.size()) + " characters long; at most " +
                                     std::to_string(max_topic_length - dlq_hash_length - 1));
  // Workers skip records of topics ending in the suffix (a regex can match dead-letter topics): an
  // event topic that ended in it would be committed unhandled. An event topic's last segment is an
  // event type's ([a-z0-9_], never "dlq"): the suffix's last segment must be one it cannot be.
  const auto last_segment = suffix.substr(suffix.rfind('.') == std::string_view::npos ? 0 : suffix.rfind('.') + 1);
  const bool event_type_like = std::all_of(last_segment.begin(), last_segment.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
  if (event_type_like && !last_segment.empty() && !suffix.ends_with(default_dlq_suffix))
    return invalid_topic("dlq_suffix", quoted(suffix) + " could be the end of an event topic (an event type ending in '" +
                                     std::string(last_segment) + "' would be skipped as a dead letter); end it with '" +
                                     std::string(default_dlq_suffix) + "', or put '-' or an upper-case letter in its last segment");
  return {};
}

result<std::string> dlq_topic_for(std::string_view topic, std::string_view suffix) {
  if (auto valid = validate_dlq_suffix(suffix); !valid) return valid.error();
  if (auto valid = validate_topic_name(topic); !valid) return valid.error();
  std::string dlq;
  if (topic.size() + suffix.size() <= max_topic_length) {
    dlq.reserve(topic.size() + suffix.size());
    dlq.append(topic).append(suffix);
    return dlq;
  }
  // Too long for Kafka (a topic eventbus did not name): keep its start and make it unique with a
  // hash of the whole name. The original topic travels in the dead letter's headers.
  std::uint32_t hash = 2166136261u;  // FNV-1a
  for (const char c : topic) hash = (hash ^ static_cast<unsigned char>(c)) * 16777619u;
  char digits[dlq_hash_length + 1];
  std::snprintf(digits, sizeof digits, "%08x", hash);
  dlq.append(topic.substr(0, max_topic_length - suffix.size() - dlq_hash_length - 1)).append("-").append(digits);
  dlq.append(suffix);
  return dlq;
}

}  // namespace eventbus
