// Decoding wire records into envelopes. Bad input never throws and never guesses: the first broken
// rule comes back as an error naming the field.

#include <limits>

#include "detail/event_data.hpp"

namespace eventbus {
namespace {

using json = nlohmann::json;

eventbus::error invalid(std::string field, std::string message) {
  return {errc::invalid_event, std::move(message), std::move(field)};
}

// Reads a required string member, moving it out of `obj`; "missing" and "wrong type" are
// different messages.
std::optional<eventbus::error> read_string(json& obj, const char* name, std::string& out) {
  const auto it = obj.find(name);
  if (it == obj.end()) return invalid(name, "missing required field");
  if (!it->is_string()) return invalid(name, std::string("must be a string, got ") + it->type_name());
  out = std::move(it->get_ref<std::string&>());
  return std::nullopt;
}

std::optional<eventbus::error> read_optional_string(json& obj, const char* name, std::optional<std::string>& out) {
  const auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) return std::nullopt;
  if (!it->is_string()) return invalid(name, std::string("must be a string, got ") + it->type_name());
  out = std::move(it->get_ref<std::string&>());
  return std::nullopt;
}

std::optional<eventbus::error> read_version(const json& obj, int& out) {
  const auto it = obj.find("version");
  if (it == obj.end()) return invalid("version", "missing required field");
  if (!it->is_number_integer())
    return invalid("version", std::string("must be an integer, got ") + (it->is_number() ? "a fraction" : it->type_name()));
  if (it->is_number_unsigned() ? it->get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<int>::max())
                               : (it->get<std::int64_t>() > std::numeric_limits<int>::max() ||
                                  it->get<std::int64_t>() < std::numeric_limits<int>::min()))
    return invalid("version", "is out of range: " + it->dump());
  out = it->get<int>();
  return std::nullopt;
}

std::optional<eventbus::error> read_metadata(const json& obj, metadata_map& out) {
  const auto it = obj.find("metadata");
  if (it == obj.end() || it->is_null()) return std::nullopt;
  if (!it->is_object()) return invalid("metadata", std::string("must be an object of strings, got ") + it->type_name());
  for (const auto& [key, value] : it->items()) {
    if (!value.is_string())
      return invalid("metadata." + key, std::string("must be a string, got ") + value.type_name());
    out.emplace(key, value.get<std::string>());
  }
  return std::nullopt;
}

bool is_envelope_field(const std::string& key) {
  static const char* const known[] = {"event_id",  "event_type", "aggregate_id",   "aggregate_type", "payload",
                                      "timestamp", "version",    "correlation_id", "causation_id",   "metadata"};
  for (const char* k : known)
    if (key == k) return true;
  return false;
}

// Builds the event from a parsed envelope, moving the fields out of `value` (left unspecified).
result<event> from_parsed(json& value) {
  if (!value.is_object())
    return eventbus::error(errc::invalid_event, std::string("envelope must be a JSON object, got ") + value.type_name());

  auto data = std::make_unique<detail::event_data>();
  if (auto e = read_string(value, "event_id", data->event_id)) return *e;
  if (auto e = read_string(value, "event_type", data->event_type)) return *e;
  if (auto e = read_string(value, "aggregate_id", data->aggregate_id)) return *e;
  if (auto e = read_string(value, "aggregate_type", data->aggregate_type)) return *e;

  const auto payload = value.find("payload");
  if (payload == value.end()) return invalid("payload", "missing required field");
  data->payload = std::move(*payload);  // the object check is shared with make_event, in seal()

  std::string timestamp;
  if (auto e = read_string(value, "timestamp", timestamp)) return *e;
  auto parsed = parse_timestamp(timestamp);
  if (!parsed) return invalid("timestamp", "'" + timestamp + "' is " + parsed.error().message());
  data->timestamp = parsed.value();

  if (auto e = read_version(value, data->version)) return *e;
  if (auto e = read_optional_string(value, "correlation_id", data->correlation_id)) return *e;
  if (auto e = read_optional_string(value, "causation_id", data->causation_id)) return *e;
  if (auto e = read_metadata(value, data->metadata)) return *e;

  for (auto it = value.begin(); it != value.end(); ++it)
    if (!is_envelope_field(it.key())) data->extensions[it.key()] = std::move(*it);

  return detail::event_access::seal_decoded(std::move(data));
}

eventbus::error too_deep() {
  return invalid("payload", "the envelope is nested deeper than " + std::to_string(max_payload_depth + 1) +
                                " levels (a payload may nest " + std::to_string(max_payload_depth) + ")");
}

eventbus::error not_json(std::string_view bytes) {
  // Parse again with exceptions only on this cold path, for the parser's precise message.
  try {
    const json unreachable = json::parse(bytes);  // throws: the caller saw it fail
    (void)unreachable;
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number like 1e9999
    return eventbus::error(errc::decode_failed, std::string("not JSON: ") + e.what());
  }
  return eventbus::error(errc::decode_failed, "not JSON");
}

}  // namespace

result<event> event_from_json(const json& value) {
  if (detail::json_depth_exceeds(value, max_payload_depth + 1)) return too_deep();  // copying it would recurse
  json copy = value;
  return from_parsed(copy);
}

result<event> decode_event(std::string_view bytes) {
  // Too deep to be an event: never build its tree (writing it out again would recurse that deep).
  // Broken JSON stays a decode failure whatever its depth.
  if (detail::text_depth_exceeds(bytes, max_payload_depth + 1))
    return json::accept(bytes) ? too_deep() : not_json(bytes);
  json value = json::parse(bytes, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) return not_json(bytes);
  return from_parsed(value);
}

}  // namespace eventbus
