// Decoding wire records into envelopes. Bad input never throws and never guesses: the first broken
// rule comes back as an error naming the field.
//
// Two paths, one outcome. The fast one (simdjson: validates the whole document at a few hundred MB/s,
// then builds only what the event holds) takes every well-formed envelope. Whatever it does not
// take exactly as written (not JSON, a field missing or of another type, a duplicate envelope
// field, an escaped surrogate) goes to the nlohmann path, which names the problem: so errors are
// word for word those of the nlohmann path, and the differential fuzz target (tests/fuzz) holds
// the two to the same events.

#include <simdjson.h>

#include <limits>

#include "envelope/event_data.hpp"

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

  auto data = std::make_shared<detail::event_data>();
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

// --- the simdjson path

namespace dom = simdjson::dom;

// The nlohmann value of a validated element, as nlohmann's own parser would build it: a
// non-negative integer is unsigned, a negative one signed, anything else a double. Depth is bounded
// by the caller's pre-scan.
json to_nlohmann(dom::element e) {
  switch (e.type()) {
    case dom::element_type::OBJECT: {
      json out = json::object();
      for (const auto field : dom::object(e)) out[std::string(field.key)] = to_nlohmann(field.value);
      return out;
    }
    case dom::element_type::ARRAY: {
      json out = json::array();
      for (const auto item : dom::array(e)) out.push_back(to_nlohmann(item));
      return out;
    }
    case dom::element_type::STRING: return json(std::string(std::string_view(e)));
    case dom::element_type::INT64: {
      const auto v = std::int64_t(e);
      return v >= 0 ? json(static_cast<std::uint64_t>(v)) : json(v);
    }
    case dom::element_type::UINT64: return json(std::uint64_t(e));
    case dom::element_type::DOUBLE: return json(double(e));
    case dom::element_type::BOOL: return json(bool(e));
    case dom::element_type::NULL_VALUE: return json(nullptr);
  }
  return json(nullptr);
}

enum field_bit : unsigned {
  f_event_id = 1, f_event_type = 2, f_aggregate_id = 4, f_aggregate_type = 8, f_payload = 16, f_timestamp = 32,
  f_version = 64, f_correlation_id = 128, f_causation_id = 256, f_metadata = 512,
};
constexpr unsigned required_fields =
    f_event_id | f_event_type | f_aggregate_id | f_aggregate_type | f_payload | f_timestamp | f_version;

// By length first: one comparison per key instead of up to ten (memcmp showed in the profile).
unsigned field_of(std::string_view key) noexcept {
  const auto is = [&](std::string_view name, unsigned bit) { return key == name ? bit : 0U; };
  switch (key.size()) {
    case 7: return key[0] == 'p' ? is("payload", f_payload) : is("version", f_version);
    case 8: return key[0] == 'e' ? is("event_id", f_event_id) : is("metadata", f_metadata);
    case 9: return is("timestamp", f_timestamp);
    case 10: return is("event_type", f_event_type);
    case 12: return key[0] == 'a' ? is("aggregate_id", f_aggregate_id) : is("causation_id", f_causation_id);
    case 14: return key[0] == 'a' ? is("aggregate_type", f_aggregate_type) : is("correlation_id", f_correlation_id);
    default: return 0;
  }
}

bool read_string(dom::element e, std::string& out) {
  std::string_view text;
  if (e.get_string().get(text)) return false;
  out.assign(text);
  return true;
}

bool read_optional_string(dom::element e, std::optional<std::string>& out) {
  if (e.is_null()) return true;
  std::string_view text;
  if (e.get_string().get(text)) return false;
  out.emplace(text);
  return true;
}

// True when it read the field as the nlohmann path would; false hands the record to that path.
// `record` is the whole record, kept for a lazy payload.
bool read_field(unsigned bit, dom::element value, detail::event_data& d, std::string_view record) {
  switch (bit) {
    case f_event_id: return read_string(value, d.event_id);
    case f_event_type: return read_string(value, d.event_type);
    case f_aggregate_id: return read_string(value, d.aggregate_id);
    case f_aggregate_type: return read_string(value, d.aggregate_type);
    case f_payload: {
      // An object (anything else fails validation, with the nlohmann path's message) is left in
      // the record, which the parser just checked: only a handler that reads it pays for building
      // it (a map node and a string per member), by parsing the record again.
      if (value.type() != dom::element_type::OBJECT) {
        d.payload = to_nlohmann(value);
        return true;
      }
      d.payload_source.assign(record);
      d.payload_ready.store(false, std::memory_order_relaxed);
      return true;
    }
    case f_timestamp: {
      std::string_view text;
      if (value.get_string().get(text)) return false;
      auto parsed = parse_timestamp(text);
      if (!parsed) return false;
      d.timestamp = parsed.value();
      return true;
    }
    case f_version: {
      std::int64_t v = 0;
      if (!value.is_int64() || value.get_int64().get(v) || v > std::numeric_limits<int>::max() ||
          v < std::numeric_limits<int>::min())
        return false;
      d.version = static_cast<int>(v);
      return true;
    }
    case f_correlation_id: return read_optional_string(value, d.correlation_id);
    case f_causation_id: return read_optional_string(value, d.causation_id);
    case f_metadata: {
      if (value.is_null()) return true;
      dom::object entries;
      if (value.get_object().get(entries)) return false;
      for (const auto entry : entries) {
        std::string_view text;
        if (entry.value.get_string().get(text)) return false;
        d.metadata.insert_or_assign(std::string(entry.key), std::string(text));  // a duplicate key: the last wins, as in nlohmann
      }
      return true;
    }
    default: return false;
  }
}

// Bigger records (rare for events) take the nlohmann path: each thread's parser keeps buffers
// the size of the largest record it parsed, and a worker has max_concurrency threads.
constexpr std::size_t fast_path_max_bytes = 64 * 1024;

// One parser a thread, reused: it keeps its buffers (sized by the largest record it saw, hence
// the cap above). Its depth limit makes a too-deep document fail (DEPTH_ERROR) and go to the
// nlohmann path, which tells "too deep" from "not JSON": so no pre-scan on the fast path.
dom::parser& thread_parser() {
  thread_local dom::parser parser = [] {
    dom::parser p;
    if (p.allocate(4096, max_payload_depth) != simdjson::SUCCESS) {
    }  // then parse() allocates, with the default depth, and the fast path's check keeps it out
    return p;
  }();
  return parser;
}

// Nothing when the record is not for this path (see the top of the file).
std::optional<result<event>> decode_fast(std::string_view bytes) {
  // An escaped surrogate: nlohmann refuses a lone one, simdjson 3.0 does not; leave them all to
  // nlohmann (they are rare in events).
  for (auto at = bytes.find("\\u"); at != std::string_view::npos; at = bytes.find("\\u", at + 1))
    if (at + 2 < bytes.size() && (bytes[at + 2] == 'd' || bytes[at + 2] == 'D')) return std::nullopt;
  // Empty (a tombstone's view may have no data pointer at all, which simdjson must not get) or
  // too big: the nlohmann path.
  if (bytes.empty() || bytes.size() > fast_path_max_bytes) return std::nullopt;
  dom::parser& parser = thread_parser();
  if (parser.max_depth() > max_payload_depth) return std::nullopt;
  dom::element root;
  if (parser.parse(bytes.data(), bytes.size(), /*realloc_if_needed=*/true).get(root)) return std::nullopt;
  dom::object fields;
  if (root.get_object().get(fields)) return std::nullopt;
  auto data = std::make_shared<detail::event_data>();
  unsigned seen = 0;
  for (const auto field : fields) {
    const unsigned bit = field_of(field.key);
    if (bit == 0) {
      data->extensions[std::string(field.key)] = to_nlohmann(field.value);
      continue;
    }
    if ((seen & bit) != 0) return std::nullopt;  // a duplicate: nlohmann keeps the last one
    seen |= bit;
    if (!read_field(bit, field.value, *data, bytes)) return std::nullopt;
  }
  if ((seen & required_fields) != required_fields) return std::nullopt;
  return detail::event_access::seal_decoded(std::move(data));
}

result<event> decode_with_nlohmann(std::string_view bytes) {
  json value = json::parse(bytes, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) return not_json(bytes);
  return from_parsed(value);
}

}  // namespace

result<event> event_from_json(const json& value) {
  if (detail::json_depth_exceeds(value, max_payload_depth + 1)) return too_deep();  // copying it would recurse
  json copy = value;
  return from_parsed(copy);
}

result<event> decode_event(std::string_view bytes) {
  if (auto fast = decode_fast(bytes)) return std::move(*fast);
  return detail::decode_event_nlohmann(bytes);
}

namespace detail {

json payload_of_checked_record(std::string_view record) {
  // The fast path accepted this record, so it parses again, with one "payload" member holding an
  // object; nlohmann's parser is the fallback should the parser be unable to allocate.
  dom::element payload;
  if (!thread_parser().parse(record.data(), record.size(), /*realloc_if_needed=*/true)["payload"].get(payload))
    return to_nlohmann(payload);
  return json::parse(record).at("payload");
}

std::optional<std::string> traceparent_of_checked_record(std::string_view record) {
  // Most records: no parse at all. A key may be written with escapes ("tr\u0061ceparent").
  if (record.find("traceparent") == std::string_view::npos && record.find("\\u") == std::string_view::npos)
    return std::nullopt;
  dom::element root;
  dom::object fields;
  if (record.size() <= fast_path_max_bytes &&
      !thread_parser().parse(record.data(), record.size(), /*realloc_if_needed=*/true).get(root) &&
      !root.get_object().get(fields)) {
    std::optional<std::string> found;
    for (const auto field : fields) {  // duplicates: the last wins, as decoding keeps it
      if (field.key != "metadata") continue;
      dom::object entries;
      if (field.value.get_object().get(entries)) {
        found.reset();  // null: no metadata
        continue;
      }
      found.reset();
      for (const auto entry : entries) {
        std::string_view text;
        if (entry.key == "traceparent" && !entry.value.get_string().get(text)) found = std::string(text);
      }
    }
    return found;
  }
  auto decoded = decode_event(record);  // too big or too deep for the parser above
  if (!decoded) return std::nullopt;
  const auto& metadata = decoded.value().metadata();
  if (auto it = metadata.find("traceparent"); it != metadata.end()) return it->second;
  return std::nullopt;
}

result<event> decode_event_nlohmann(std::string_view bytes) {
  // Too deep to be an event: never build its tree (writing it out again would recurse that deep).
  // Broken JSON stays a decode failure whatever its depth.
  if (text_depth_exceeds(bytes, max_payload_depth + 1)) return json::accept(bytes) ? too_deep() : not_json(bytes);
  return decode_with_nlohmann(bytes);
}

}  // namespace detail
}  // namespace eventbus
