#pragma once
// The shared, read-only state behind eventbus::event, and the checks every envelope passes.

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "eventbus/event.hpp"

namespace eventbus::detail {

struct event_data {
  std::string event_id;
  std::string event_type;
  std::string aggregate_id;
  std::string aggregate_type;
  // A decoded event's payload is left in the record it came in (payload_source: a copy of the
  // whole record, which the decoder checked, payload included; or `encoded`, when the record was
  // adopted as the wire form) until someone reads it; payload() then builds the value, once,
  // whichever thread asks first. Handlers that read only the envelope never pay for it. A made
  // event's payload is built from the start (payload_ready).
  mutable nlohmann::json payload;
  mutable std::string payload_source;
  mutable std::atomic<bool> payload_ready{true};
  time_point timestamp;
  int version = 1;
  std::optional<std::string> correlation_id;
  std::optional<std::string> causation_id;
  metadata_map metadata;
  // Null until a field arrives (operator[] makes it an object): an empty object is an allocation
  // per event. event::extensions() shows null as an empty object.
  nlohmann::json extensions;
  // The wire form: written when a made event is sealed (encoding is part of its validation), and
  // on first use for a decoded one (whose fields came from a JSON parser, so it cannot fail), so a
  // worker that only reads events never re-encodes them.
  // (Not a once_flag: glibc's call_once makes a futex system call per flag, a tenth of make_event.)
  mutable std::atomic<bool> encoded_ready{false};
  mutable std::string encoded;
  std::size_t type_hash = 0;  // event_type_hash(event_type), for the dispatcher's lookup
};

[[nodiscard]] inline std::size_t event_type_hash(std::string_view type) noexcept {
  return std::hash<std::string_view>{}(type);
}

struct event_access {
  /// Validates the fields, encodes the wire form once and wraps the state in an event. (The state
  /// comes from make_shared: one allocation with its reference count.)
  /// Returns the first broken rule as an error naming the field.
  static result<event> seal(std::shared_ptr<event_data> data);
  /// Same checks, wire form left for encoded() to write on first use.
  static result<event> seal_decoded(std::shared_ptr<event_data> data);
  /// The wire form, written on first use.
  static const std::string& encoded(const event_data& data);
  /// The payload, built from payload_source on first use.
  static const nlohmann::json& payload(const event_data& data);
  /// Makes `wire` the event's wire form, as is: for an event just decoded from bytes that were
  /// written as a wire form (an event store's envelope column), so that publishing it again sends
  /// those bytes and neither builds the payload nor writes the envelope anew. Only before the
  /// event is shared with another thread.
  static void adopt_wire_form(const event& ev, std::string_view wire);
  static const event_data& data(const event& ev) noexcept { return *ev.data_; }
};

/// Dotted lower case: segments of [a-z0-9_], at least two, separated by single dots; at most
/// max_event_type_length; not ending in ".dlq" (reserved for dead-letter topics).
[[nodiscard]] bool is_valid_event_type(std::string_view type) noexcept;
/// Why `type` is not a valid event type (quoting it, shortened), or nothing when it is.
[[nodiscard]] std::optional<std::string> event_type_problem(std::string_view type);

/// True when `value` nests arrays or objects more than `max_depth` levels (a scalar is depth 0, `{}`
/// depth 1). Never recurses.
[[nodiscard]] bool json_depth_exceeds(const nlohmann::json& value, std::size_t max_depth);
/// The same on JSON text, before parsing: counts brackets outside strings (a cheap scan that lets
/// callers refuse a document whose tree could not be written back out without deep recursion).
[[nodiscard]] bool text_depth_exceeds(std::string_view text, std::size_t max_depth) noexcept;
/// Segments of [a-z0-9_] separated by single dots, at least `min_segments` of them.
[[nodiscard]] bool is_dotted_lower_case(std::string_view text, std::size_t min_segments) noexcept;

/// decode_event on its nlohmann path only: what the simdjson path must match (tests and the
/// differential fuzz target compare the two).
[[nodiscard]] result<event> decode_event_nlohmann(std::string_view bytes);

/// The payload of a record the decoder accepted with a lazy payload: the same value the decoder
/// would have built.
[[nodiscard]] nlohmann::json payload_of_checked_record(std::string_view record);
/// The metadata's "traceparent" of a record that decoded before (a stored envelope), without
/// decoding it: what the outbox relay needs of it besides the stored columns. Nothing when the
/// record carries none.
[[nodiscard]] std::optional<std::string> traceparent_of_checked_record(std::string_view record);

/// Appends `text` as a JSON string literal. False (nothing sensible appended) if it is not UTF-8.
[[nodiscard]] bool append_json_string(std::string& out, std::string_view text);

}  // namespace eventbus::detail
