#pragma once
// Typed events: a plain struct with nlohmann to_json/from_json and two names becomes an envelope.
//
//   struct order_created {
//     static constexpr std::string_view event_type = "order.created";
//     static constexpr std::string_view aggregate_type = "order";
//     static constexpr int version = 1;  // optional, schema version (default 1)
//     std::string customer; double total = 0;
//   };
//   NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(order_created, customer, total)
//   int main() {
//     eventbus::event ev = eventbus::make_event("o-42", order_created{"ada", 99.5});
//     eventbus::result<order_created> back = eventbus::payload_as<order_created>(ev);
//     return back && back->total == 99.5 ? 0 : 1;
//   }

#include <concepts>
#include <string_view>

#include "eventbus/event.hpp"

namespace eventbus {

template <class T>
concept typed_event = requires(const T& value, const nlohmann::json& j) {
  { T::event_type } -> std::convertible_to<std::string_view>;
  { T::aggregate_type } -> std::convertible_to<std::string_view>;
  nlohmann::json(value);
  j.template get<T>();
};

/// The optional envelope fields of a typed event (designated initializers welcome).
struct event_options {
  std::string event_id{};
  std::optional<time_point> timestamp{};
  std::optional<std::string> correlation_id{};
  std::optional<std::string> causation_id{};
  metadata_map metadata{};
};

/// The schema version of T: T::version when it declares one, else 1.
template <typed_event T>
constexpr int schema_version_of() {
  return detail::declared_schema_version<T>();
}

/// Wraps a typed value in an envelope. Throws eventbus::exception like make_event(event_fields).
template <typed_event T>
[[nodiscard]] event make_event(std::string aggregate_id, const T& value, event_options options = {}) {
  return make_event(event_fields{
      .event_type = std::string(T::event_type),
      .aggregate_type = std::string(T::aggregate_type),
      .aggregate_id = std::move(aggregate_id),
      .payload = nlohmann::json(value),
      .event_id = std::move(options.event_id),
      .timestamp = options.timestamp,
      .version = schema_version_of<T>(),
      .correlation_id = std::move(options.correlation_id),
      .causation_id = std::move(options.causation_id),
      .metadata = std::move(options.metadata),
  });
}

}  // namespace eventbus
