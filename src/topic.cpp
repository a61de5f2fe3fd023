#include "eventbus/topic.hpp"

#include "detail/event_data.hpp"

namespace eventbus {
namespace {

bool is_topic_char(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == '-';
}

eventbus::error invalid(std::string field, std::string message) {
  return {errc::invalid_topic, std::move(message), std::move(field)};
}

std::string quoted(std::string_view s) { return "'" + std::string(s) + "'"; }

}  // namespace

result<void> validate_topic_name(std::string_view topic) {
  if (topic.empty()) return invalid("topic", "must not be empty");
  if (topic == "." || topic == "..") return invalid("topic", quoted(topic) + " is reserved by Kafka");
  if (topic.size() > max_topic_length)
    return invalid("topic", "is " + std::to_string(topic.size()) + " characters long, Kafka allows at most " +
                                std::to_string(max_topic_length));
  for (const char c : topic)
    if (!is_topic_char(c))
      return invalid("topic", quoted(topic) + " contains " + quoted(std::string_view(&c, 1)) +
                                  "; Kafka allows only [a-zA-Z0-9._-]");
  return {};
}

result<std::string> topic_for(std::string_view aggregate_type, std::string_view event_type, std::string_view prefix) {
  if (prefix.empty()) return invalid("prefix", "must not be empty");
  for (const char c : prefix)
    if (!is_topic_char(c)) return invalid("prefix", quoted(prefix) + " contains characters Kafka does not allow");
  if (prefix.back() == '.') return invalid("prefix", quoted(prefix) + " must not end with '.'");
  if (aggregate_type.empty()) return invalid("aggregate_type", "must not be empty");
  for (const char c : aggregate_type)
    if (c == '.' || !is_topic_char(c))
      return invalid("aggregate_type", quoted(aggregate_type) +
                                           " may contain only [a-zA-Z0-9_-] (a '.' would let two types share a topic)");
  if (!detail::is_valid_event_type(event_type))
    return invalid("event_type", quoted(event_type) + " is not dotted lower case like 'order.created'");

  std::string topic;
  topic.reserve(prefix.size() + aggregate_type.size() + event_type.size() + 2);
  topic.append(prefix).append(".").append(aggregate_type).append(".").append(event_type);
  if (auto valid = validate_topic_name(topic); !valid) return valid.error();
  return topic;
}

result<std::string> topic_for(const event& ev, std::string_view prefix) {
  return topic_for(ev.aggregate_type(), ev.event_type(), prefix);
}

result<std::string> dlq_topic_for(std::string_view topic, std::string_view suffix) {
  if (suffix.empty()) return invalid("dlq_suffix", "must not be empty (the dead letters would go to the topic itself)");
  std::string dlq(topic);
  dlq.append(suffix);
  if (auto valid = validate_topic_name(dlq); !valid) return valid.error();
  return dlq;
}

}  // namespace eventbus
