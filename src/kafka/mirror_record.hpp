#pragma once
// The record an event becomes on Kafka (docs/kafka-records.md): key = aggregate_id, value = the
// envelope, and these headers, in this order. One list for the sink that writes the headers and
// for the store, which refuses at append what could never be published.

#include <cstddef>
#include <string_view>

#include "envelope/event_data.hpp"

namespace eventbus::detail {

/// Calls add(name, value) for each header of the event's record.
template <class Add>
void for_each_mirror_header(const event_data& d, Add&& add) {
  add("event_id", std::string_view(d.event_id));
  add("event_type", std::string_view(d.event_type));
  add("aggregate_type", std::string_view(d.aggregate_type));
  add("content-type", std::string_view("application/json"));
  if (d.correlation_id) add("correlation_id", std::string_view(*d.correlation_id));
  if (auto tp = d.metadata.find("traceparent"); tp != d.metadata.end()) add("traceparent", std::string_view(tp->second));
}

/// Key, value and headers (names and values) of the event's record, in bytes: what must fit the
/// cluster's message.max.bytes (with a little framing).
inline std::size_t mirror_record_bytes(const event_data& d) {
  std::size_t bytes = d.aggregate_id.size() + event_access::encoded(d).size();
  for_each_mirror_header(d, [&](std::string_view name, std::string_view value) { bytes += name.size() + value.size(); });
  return bytes;
}

}  // namespace eventbus::detail
