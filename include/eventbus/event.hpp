#pragma once
// The event envelope (docs/envelope.md): an immutable value, always valid once built.
//
//   auto ev = eventbus::make_event({.event_type = "order.created", .aggregate_type = "order",
//                                   .aggregate_id = "o-42", .payload = {{"total", 99.5}}});
//   std::string wire = eventbus::encode_event(ev);          // the Kafka record value
//   eventbus::result<eventbus::event> back = eventbus::decode_event(wire);

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "eventbus/error.hpp"
#include "eventbus/time.hpp"

namespace eventbus {

using metadata_map = std::map<std::string, std::string, std::less<>>;

/// Deepest nesting of arrays and objects a payload may have (the payload object itself is level
/// 1). Deeper values are refused when an event is made or decoded: writing them out would recurse
/// that deep.
inline constexpr std::size_t max_payload_depth = 64;
/// Longest event type, in characters.
inline constexpr std::size_t max_event_type_length = 200;

namespace detail {
struct event_data;
struct event_access;
}  // namespace detail

/// What make_event() needs. Required: event_type, aggregate_type, aggregate_id. Every other field
/// has a working default: a new random UUID, the current time, schema version 1, an empty payload.
struct event_fields {
  std::string event_type;      // dotted lower case, past tense: "order.created"
  std::string aggregate_type;  // "order", "model_catalog"
  std::string aggregate_id;    // non-empty; also the Kafka key
  nlohmann::json payload = nlohmann::json::object();
  std::string event_id{};                  // empty: a new random UUID (v4)
  std::optional<time_point> timestamp{};   // empty: now
  int version = 1;                         // schema version of this event type, >= 1
  std::optional<std::string> correlation_id{};
  std::optional<std::string> causation_id{};
  metadata_map metadata{};
};

/// An event envelope. Immutable and cheap to copy (copies share one read-only state), so it can be
/// handed to any number of handlers and threads. There is no way to build an invalid one.
class event {
 public:
  [[nodiscard]] const std::string& event_id() const noexcept;
  [[nodiscard]] const std::string& event_type() const noexcept;
  [[nodiscard]] const std::string& aggregate_id() const noexcept;
  [[nodiscard]] const std::string& aggregate_type() const noexcept;
  /// A decoded event builds it on first use (once, whichever thread asks first): that can throw
  /// std::bad_alloc, which a handler's caller counts as a failed call.
  [[nodiscard]] const nlohmann::json& payload() const;
  [[nodiscard]] time_point timestamp() const noexcept;
  [[nodiscard]] int version() const noexcept;
  [[nodiscard]] const std::optional<std::string>& correlation_id() const noexcept;
  [[nodiscard]] const std::optional<std::string>& causation_id() const noexcept;
  [[nodiscard]] const metadata_map& metadata() const noexcept;
  /// Top-level fields this version does not know, kept as they came (a JSON object, maybe empty).
  [[nodiscard]] const nlohmann::json& extensions() const noexcept;

  /// Same envelope: every field equal, including payload and extensions.
  friend bool operator==(const event& a, const event& b) noexcept;

 private:
  explicit event(std::shared_ptr<const detail::event_data> data) noexcept : data_(std::move(data)) {}
  friend struct detail::event_access;
  std::shared_ptr<const detail::event_data> data_;
};

/// Builds an event, filling the defaults. Throws eventbus::exception (errc::invalid_event, field()
/// naming the field) when a field breaks the contract: empty, non-dotted or over-long event_type
/// (or one ending in ".dlq"), empty aggregate id/type, event_id not a UUID, version < 1, a payload
/// that is not an object or nests deeper than max_payload_depth, text that is not UTF-8.
[[nodiscard]] event make_event(event_fields fields);

/// The wire form: compact JSON, fields in envelope order, then unknown fields. Computed once when
/// the event is built and shared by every copy, so calling it costs nothing. Normalisations: the
/// timestamp always has milliseconds, empty metadata and null optional fields are left out.
[[nodiscard]] const std::string& encode_event(const event& ev);
/// The envelope as a JSON value.
[[nodiscard]] nlohmann::json to_json(const event& ev);

/// Decodes a wire record. Never throws for bad input: errc::decode_failed when the bytes are not
/// JSON, errc::invalid_event (with field()) when a field is missing, mistyped or breaks the contract.
/// A JSON null for an optional field is read as "absent".
[[nodiscard]] result<event> decode_event(std::string_view bytes);
/// The same rules for an already parsed JSON value.
[[nodiscard]] result<event> event_from_json(const nlohmann::json& value);

namespace detail {
/// The schema version a typed struct declares (`static constexpr int version`), else 1. Here and
/// not in typed_event.hpp (whose schema_version_of<T> returns it) because payload_as needs it.
template <class T>
constexpr int declared_schema_version() {
  if constexpr (requires { T::version; })
    return static_cast<int>(T::version);
  else
    return 1;
}
}  // namespace detail

/// The payload of `ev` brought from ev.version() to schema version `wanted` by the upcasters
/// registered for its event type (upcaster.hpp), one version at a time. The same version: the
/// payload as it is. errc::payload_mismatch, field "version", naming the type, the stored and the
/// wanted version, when there is no path (an older reader than the event, or a missing step); field
/// "payload" when a step throws or returns something other than a JSON object.
[[nodiscard]] result<nlohmann::json> payload_at_version(const event& ev, int wanted);

/// Reads the payload as a T (with nlohmann from_json). errc::payload_mismatch naming the payload
/// path when it does not fit. A typed event (T::event_type) of another schema version than T's is
/// first upcast to T's (payload_at_version): the error names the versions when there is no path.
template <class T>
[[nodiscard]] result<T> payload_as(const event& ev) {
  try {
    if constexpr (requires { T::event_type; }) {
      // Only an event of another version pays for the registry: the common case reads in place.
      if (constexpr int wanted = detail::declared_schema_version<T>(); ev.version() != wanted) {
        auto upcast = payload_at_version(ev, wanted);
        if (!upcast) return upcast.error();
        return upcast.value().template get<T>();
      }
    }
    return ev.payload().template get<T>();
  } catch (const nlohmann::json::exception& e) {
    std::string what = "payload of '" + ev.event_type() + "'";
    if constexpr (requires { T::event_type; })
      if (ev.version() != detail::declared_schema_version<T>())
        what += " (upcast from version " + std::to_string(ev.version()) + " to " +
                std::to_string(detail::declared_schema_version<T>()) + ")";
    return eventbus::error(errc::payload_mismatch, what + " does not decode: " + std::string(e.what()), "payload");
  }
}

}  // namespace eventbus
