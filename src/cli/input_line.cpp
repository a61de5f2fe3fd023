// Input lines of `eventbus publish` (input_line.hpp).

#include "cli/input_line.hpp"

#include <string>

#include "envelope/event_data.hpp"

namespace eventbus::cli {

// A full envelope (it has an event_id) is decoded as is; otherwise the fields make a new event.
result<event> event_from_input(const nlohmann::json& j) {
  if (!j.is_object()) return error(errc::invalid_event, std::string("must be a JSON object, got ") + j.type_name());
  // Checked before anything copies it: copying a JSON value recurses as deep as it nests.
  if (detail::json_depth_exceeds(j, max_payload_depth + 1))
    return error(errc::invalid_event, "is nested deeper than " + std::to_string(max_payload_depth) + " levels", "payload");
  if (j.contains("event_id")) return event_from_json(j);
  try {
    event_fields f;
    const auto text = [&](const char* key, std::string& out) {
      if (const auto it = j.find(key); it != j.end()) {
        if (!it->is_string()) throw exception(error(errc::invalid_event, "must be a string", key));
        out = it->get<std::string>();
      }
    };
    text("event_type", f.event_type);
    text("aggregate_id", f.aggregate_id);
    text("aggregate_type", f.aggregate_type);
    if (f.aggregate_type.empty()) f.aggregate_type = f.event_type.substr(0, f.event_type.find('.'));
    if (const auto it = j.find("payload"); it != j.end()) f.payload = *it;
    for (const char* key : {"correlation_id", "causation_id"}) {
      std::string value;
      text(key, value);
      if (!value.empty()) (std::string_view(key) == "correlation_id" ? f.correlation_id : f.causation_id) = value;
    }
    if (const auto it = j.find("metadata"); it != j.end()) {
      if (!it->is_object()) return error(errc::invalid_event, "must be an object of strings", "metadata");
      for (const auto& [k, v] : it->items()) {
        if (!v.is_string()) return error(errc::invalid_event, "must be a string", "metadata." + k);
        f.metadata[k] = v.get<std::string>();
      }
    }
    return make_event(std::move(f));
  } catch (const exception& e) {
    return e.error();
  }
}

std::optional<result<event>> event_from_line(std::string_view line) {
  if (line.find_first_not_of(" \t\r") == std::string_view::npos) return std::nullopt;
  // Refused before parsing: a document nested this deep cannot be a valid event, and parsing and
  // freeing it would cost as much as it nests.
  if (detail::text_depth_exceeds(line, max_payload_depth + 2))
    return result<event>(error(errc::invalid_event, "is nested deeper than " + std::to_string(max_payload_depth) + " levels", "payload"));
  const auto j = nlohmann::json::parse(line, nullptr, false);
  if (j.is_discarded()) return result<event>(error(errc::decode_failed, "not JSON"));
  return event_from_input(j);
}

}  // namespace eventbus::cli
