#pragma once
// Topic names (docs/kafka-records.md): <prefix>.<aggregate_type>.<event_type>.
//
// Kafka allows [a-zA-Z0-9._-] and at most 249 characters. A name that breaks a rule is rejected with
// an error naming the part at fault, never rewritten: two event types must never share a topic.
// aggregate_type may not contain '.', so a topic name maps back to exactly one (type, event) pair.

#include <string>
#include <string_view>

#include "eventbus/error.hpp"
#include "eventbus/event.hpp"

namespace eventbus {

inline constexpr std::string_view default_topic_prefix = "app";
inline constexpr std::string_view default_dlq_suffix = ".dlq";
inline constexpr std::size_t max_topic_length = 249;
/// Topics that eventbus names leave room for the default dead-letter suffix.
inline constexpr std::size_t max_event_topic_length = max_topic_length - default_dlq_suffix.size();

/// Checks a complete topic name against Kafka's rules (errc::invalid_topic).
[[nodiscard]] result<void> validate_topic_name(std::string_view topic);

/// The topic an event is mirrored to. errc::invalid_topic when the prefix, the aggregate type
/// (no '.', only [a-zA-Z0-9_-]) or the event type breaks the rules, or the name is longer than
/// max_event_topic_length.
[[nodiscard]] result<std::string> topic_for(std::string_view aggregate_type, std::string_view event_type,
                                            std::string_view prefix = default_topic_prefix);
[[nodiscard]] result<std::string> topic_for(const event& ev, std::string_view prefix = default_topic_prefix);

/// A dead-letter suffix must be a valid topic-name part that no event topic can end with: it ends
/// with ".dlq" (event types may not), or its last segment (after its last '.') has a character no
/// event type has ('-', an upper-case letter): ".dlq", ".orders.dlq", "-dead", ".DLQ".
[[nodiscard]] result<void> validate_dlq_suffix(std::string_view suffix);

/// The dead-letter topic of a topic: "<topic><suffix>". When that is longer than Kafka allows
/// (only for topics eventbus did not name), the topic's start, '-', 8 hex digits of a hash of the
/// whole name, and the suffix: unique per topic, and always valid.
[[nodiscard]] result<std::string> dlq_topic_for(std::string_view topic, std::string_view suffix = default_dlq_suffix);

}  // namespace eventbus
