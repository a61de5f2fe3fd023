#pragma once
// The record an event becomes on Kafka (docs/kafka-records.md): key = aggregate_id, value = the
// envelope, and these headers, in this order. One list for the sink that writes the headers and
// for the store, which refuses at append what could never be published.

#include <cstddef>
#include <optional>
#include <string_view>

#include "envelope/event_data.hpp"

namespace eventbus::detail {

/// What an event's record is made of, as views: taken from an event, or from a store's columns
/// without decoding the envelope (the outbox relay's reads). Valid while what they view is.
struct record_fields {
  std::string_view event_id{}, event_type{}, aggregate_type{}, aggregate_id{};
  std::string_view value{};  // the envelope
  std::optional<std::string_view> correlation_id{}, traceparent{};
};

/// The fields of the event's record (writing its wire form, if it was not yet).
inline record_fields record_fields_of(const event_data& d) {
  record_fields r{.event_id = d.event_id,
                  .event_type = d.event_type,
                  .aggregate_type = d.aggregate_type,
                  .aggregate_id = d.aggregate_id,
                  .value = event_access::encoded(d)};
  if (d.correlation_id) r.correlation_id = *d.correlation_id;
  if (auto tp = d.metadata.find("traceparent"); tp != d.metadata.end()) r.traceparent = tp->second;
  return r;
}

/// Calls add(name, value) for each header of the record.
template <class Add>
void for_each_record_header(const record_fields& r, Add&& add) {
  add("event_id", r.event_id);
  add("event_type", r.event_type);
  add("aggregate_type", r.aggregate_type);
  add("content-type", std::string_view("application/json"));
  if (r.correlation_id) add("correlation_id", *r.correlation_id);
  if (r.traceparent) add("traceparent", *r.traceparent);
}

/// Key, value and headers (names and values) of the event's record, in bytes: what must fit the
/// cluster's message.max.bytes (with a little framing).
inline std::size_t mirror_record_bytes(const event_data& d) {
  const auto r = record_fields_of(d);
  std::size_t bytes = r.aggregate_id.size() + r.value.size();
  for_each_record_header(r, [&](std::string_view name, std::string_view value) { bytes += name.size() + value.size(); });
  return bytes;
}

}  // namespace eventbus::detail
