#include "eventbus/event.hpp"

#include <array>
#include <charconv>
#include <mutex>

#include "envelope/event_data.hpp"
#include "support/utf8.hpp"
#include "eventbus/causation.hpp"
#include "envelope/uuid.hpp"

namespace eventbus {
namespace detail {
namespace {

void append_field_name(std::string& out, std::string_view name) {
  out.push_back(',');
  out.push_back('"');
  out.append(name);
  out.append("\":");
}

eventbus::error invalid(std::string field, std::string message) {
  return {errc::invalid_event, std::move(message), std::move(field)};
}

// Appends a string field; the error names the field when the text is not UTF-8.
std::optional<eventbus::error> append_string_field(std::string& out, std::string_view name, std::string_view value) {
  append_field_name(out, name);
  if (!append_json_string(out, value)) return invalid(std::string(name), "is not valid UTF-8");
  return std::nullopt;
}

std::optional<eventbus::error> validate(const event_data& d) {
  if (!is_uuid(d.event_id)) return invalid("event_id", "'" + d.event_id + "' is not a UUID (8-4-4-4-12 hex digits)");
  if (auto problem = event_type_problem(d.event_type)) return invalid("event_type", *problem);
  if (d.aggregate_id.empty()) return invalid("aggregate_id", "must not be empty");
  if (d.aggregate_type.empty()) return invalid("aggregate_type", "must not be empty");
  // A NUL byte ends a string in C APIs (libpq's text parameters among them): "x\0one" would load
  // x's history from PostgreSQL. One rule for every backend and the wire: ids never hold one.
  const auto has_nul = [](std::string_view s) { return s.find('\0') != std::string_view::npos; };
  if (has_nul(d.aggregate_id)) return invalid("aggregate_id", "must not contain a NUL byte");
  if (has_nul(d.aggregate_type)) return invalid("aggregate_type", "must not contain a NUL byte");
  if (d.correlation_id && has_nul(*d.correlation_id)) return invalid("correlation_id", "must not contain a NUL byte");
  if (d.causation_id && has_nul(*d.causation_id)) return invalid("causation_id", "must not contain a NUL byte");
  // A lazy payload (payload_ready false) was checked by the decoder, on its text.
  if (d.payload_ready.load(std::memory_order_relaxed)) {
    if (!d.payload.is_object())
      return invalid("payload", std::string("must be a JSON object, got ") + d.payload.type_name());
    if (json_depth_exceeds(d.payload, max_payload_depth))
      return invalid("payload", "is nested deeper than " + std::to_string(max_payload_depth) + " levels");
  }
  if (d.version < 1) return invalid("version", "must be >= 1, got " + std::to_string(d.version));
  return std::nullopt;
}

std::optional<eventbus::error> encode(const event_data& d, std::string& out) {
  out.reserve(512 + d.event_type.size() + d.aggregate_id.size());
  out = "{\"event_id\":";
  (void)append_json_string(out, d.event_id);  // validated as ASCII hex above
  if (auto e = append_string_field(out, "event_type", d.event_type)) return e;
  if (auto e = append_string_field(out, "aggregate_id", d.aggregate_id)) return e;
  if (auto e = append_string_field(out, "aggregate_type", d.aggregate_type)) return e;
  append_field_name(out, "payload");
  try {
    // Written straight into the envelope, not into a temporary string first.
    nlohmann::detail::serializer<nlohmann::json> writer(nlohmann::detail::output_adapter<char>(out), ' ');
    writer.dump(event_access::payload(d), false, false, 0);
  } catch (const nlohmann::json::exception& ex) {
    return invalid("payload", std::string("cannot be written as JSON: ") + ex.what());
  }
  (void)append_string_field(out, "timestamp", format_timestamp(d.timestamp));
  append_field_name(out, "version");
  char digits[16];
  out.append(digits, std::to_chars(digits, digits + sizeof digits, d.version).ptr);
  if (d.correlation_id)
    if (auto e = append_string_field(out, "correlation_id", *d.correlation_id)) return e;
  if (d.causation_id)
    if (auto e = append_string_field(out, "causation_id", *d.causation_id)) return e;
  if (!d.metadata.empty()) {
    append_field_name(out, "metadata");
    char sep = '{';
    for (const auto& [key, value] : d.metadata) {
      out.push_back(sep);
      sep = ',';
      bool utf8 = append_json_string(out, key);
      out.push_back(':');
      utf8 = utf8 && append_json_string(out, value);
      if (!utf8) return invalid("metadata." + key, "is not valid UTF-8");
    }
    out.push_back('}');
  }
  for (const auto& [key, value] : d.extensions.items()) {
    out.push_back(',');
    (void)append_json_string(out, key);  // came from parsed JSON, so UTF-8
    out.push_back(':');
    out += value.dump();
  }
  out.push_back('}');
  return std::nullopt;
}

}  // namespace

std::optional<std::string> event_type_problem(std::string_view type) {
  if (type.empty()) return "must not be empty";
  const auto shown = [&] { return "'" + std::string(type.substr(0, 200)) + (type.size() > 200 ? "...'" : "'"); };
  if (type.size() > max_event_type_length)
    return shown() + " is " + std::to_string(type.size()) + " characters long, at most " +
           std::to_string(max_event_type_length);
  if (!is_dotted_lower_case(type, 2))
    return shown() + " is not dotted lower case like 'order.created' (segments of a-z, 0-9, _)";
  if (type.ends_with(".dlq")) return shown() + " ends in '.dlq', which is reserved for dead-letter topics";
  return std::nullopt;
}

bool is_valid_event_type(std::string_view type) noexcept {
  return type.size() <= max_event_type_length && is_dotted_lower_case(type, 2) && !type.ends_with(".dlq");
}

namespace {
// Recursion never deeper than max_depth + 1 frames: it stops there. (It replaced a loop over a
// heap-allocated stack: an allocation per event made.)
bool depth_exceeds_from(const nlohmann::json& node, std::size_t depth, std::size_t max_depth) {
  if (!node.is_structured()) return false;
  if (depth > max_depth) return true;
  for (const auto& child : node)
    if (child.is_structured() && depth_exceeds_from(child, depth + 1, max_depth)) return true;
  return false;
}
}  // namespace

bool json_depth_exceeds(const nlohmann::json& value, std::size_t max_depth) {
  return depth_exceeds_from(value, 1, max_depth);
}

bool text_depth_exceeds(std::string_view text, std::size_t max_depth) noexcept {
  std::size_t depth = 0;
  bool in_string = false, escaped = false;
  for (const char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > max_depth) return true;
    } else if ((c == '}' || c == ']') && depth > 0) {
      --depth;
    }
  }
  return false;
}

bool is_dotted_lower_case(std::string_view text, std::size_t min_segments) noexcept {
  std::size_t segments = 0, segment_length = 0;
  for (const char c : text) {
    if (c == '.') {
      if (segment_length == 0) return false;
      ++segments;
      segment_length = 0;
    } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_') {
      ++segment_length;
    } else {
      return false;
    }
  }
  return segment_length > 0 && segments + 1 >= min_segments;
}

bool append_json_string(std::string& out, std::string_view text) {
  static constexpr char hex[] = "0123456789abcdef";
  out.push_back('"');
  // Runs of plain ASCII (the usual case: ids, types) are appended whole; only the rest is looked
  // at byte by byte (a push_back per byte was the largest single cost of make_event).
  std::size_t run = 0;
  for (std::size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
      ++i;
      continue;
    }
    out.append(text.data() + run, i - run);
    if (c >= 0x80) {
      const std::size_t len = utf8_sequence_length(text, i);
      if (len == 0) return false;
      out.append(text.substr(i, len));
      i += len;
      run = i;
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        out += "\\u00";
        out.push_back(hex[c >> 4]);
        out.push_back(hex[c & 0x0F]);
    }
    run = ++i;
  }
  out.append(text.data() + run, text.size() - run);
  out.push_back('"');
  return true;
}

result<event> event_access::seal(std::shared_ptr<event_data> data) {
  if (auto e = validate(*data)) return *e;
  // Nobody else holds it yet: no synchronisation needed to write the wire form.
  if (auto failed = encode(*data, data->encoded)) return *failed;
  data->encoded_ready.store(true, std::memory_order_release);
  data->type_hash = event_type_hash(data->event_type);
  return event(std::shared_ptr<const event_data>(std::move(data)));
}

result<event> event_access::seal_decoded(std::shared_ptr<event_data> data) {
  if (auto e = validate(*data)) return *e;
  data->type_hash = event_type_hash(data->event_type);
  return event(std::shared_ptr<const event_data>(std::move(data)));
}

// What a decoded event builds on first use (its wire form, its payload), copies may ask for from
// several threads at once. A few shared locks (by address) rather than one per event: the first
// use is once per event, events are many.
static std::mutex& first_use_lock(const event_data& data, int which) {
  static std::array<std::mutex, 32> locks;
  return locks[((reinterpret_cast<std::uintptr_t>(&data) >> 6) * 2 + static_cast<std::uintptr_t>(which)) % locks.size()];
}

const nlohmann::json& event_access::payload(const event_data& data) {
  if (data.payload_ready.load(std::memory_order_acquire)) return data.payload;
  const std::lock_guard lock(first_use_lock(data, 1));
  if (!data.payload_ready.load(std::memory_order_relaxed)) {
    data.payload = payload_of_checked_record(data.payload_source.empty() ? data.encoded : data.payload_source);
    std::string().swap(data.payload_source);
    data.payload_ready.store(true, std::memory_order_release);
  }
  return data.payload;
}

void event_access::adopt_wire_form(const event& ev, std::string_view wire) {
  auto& data = const_cast<event_data&>(*ev.data_);  // not shared yet (the caller's promise)
  if (!data.payload_ready.load(std::memory_order_relaxed) && data.payload_source == wire)
    data.encoded.swap(data.payload_source);  // one copy of the record, not two
  else
    data.encoded.assign(wire);
  data.encoded_ready.store(true, std::memory_order_release);
}

const std::string& event_access::encoded(const event_data& data) {
  if (data.encoded_ready.load(std::memory_order_acquire)) return data.encoded;
  // Encoding reads the payload, which takes the other lock of the pair: never the same one.
  const std::lock_guard lock(first_use_lock(data, 0));
  if (!data.encoded_ready.load(std::memory_order_relaxed)) {
    (void)encode(data, data.encoded);
    data.encoded_ready.store(true, std::memory_order_release);
  }
  return data.encoded;
}

}  // namespace detail

using detail::event_access;

const std::string& event::event_id() const noexcept { return data_->event_id; }
const std::string& event::event_type() const noexcept { return data_->event_type; }
const std::string& event::aggregate_id() const noexcept { return data_->aggregate_id; }
const std::string& event::aggregate_type() const noexcept { return data_->aggregate_type; }
const nlohmann::json& event::payload() const { return event_access::payload(*data_); }
time_point event::timestamp() const noexcept { return data_->timestamp; }
int event::version() const noexcept { return data_->version; }
const std::optional<std::string>& event::correlation_id() const noexcept { return data_->correlation_id; }
const std::optional<std::string>& event::causation_id() const noexcept { return data_->causation_id; }
const metadata_map& event::metadata() const noexcept { return data_->metadata; }
const nlohmann::json& event::extensions() const noexcept {
  static const nlohmann::json none = nlohmann::json::object();
  return data_->extensions.is_null() ? none : data_->extensions;
}

bool operator==(const event& a, const event& b) noexcept {
  if (a.data_ == b.data_) return true;
  // The wire form covers every field, in a canonical order.
  return event_access::encoded(*a.data_) == event_access::encoded(*b.data_);
}

namespace {

// An event made while `cause` is handled continues its chain, wherever the caller left it open.
void continue_chain(detail::event_data& made, const detail::event_data& cause) {
  if (!made.causation_id) made.causation_id = cause.event_id;
  if (!made.correlation_id) made.correlation_id = cause.correlation_id.value_or(cause.event_id);
  if (made.metadata.contains("traceparent")) return;
  if (const auto parent = cause.metadata.find("traceparent"); parent != cause.metadata.end())
    if (auto child = child_traceparent(parent->second)) made.metadata.emplace("traceparent", std::move(*child));
}

}  // namespace

event make_event(event_fields fields) {
  auto data = std::make_shared<detail::event_data>();
  data->event_id = fields.event_id.empty() ? detail::new_uuid() : std::move(fields.event_id);
  data->event_type = std::move(fields.event_type);
  data->aggregate_id = std::move(fields.aggregate_id);
  data->aggregate_type = std::move(fields.aggregate_type);
  data->payload = std::move(fields.payload);
  data->timestamp = fields.timestamp.value_or(now_ms());
  data->version = fields.version;
  data->correlation_id = std::move(fields.correlation_id);
  data->causation_id = std::move(fields.causation_id);
  data->metadata = std::move(fields.metadata);
  if (const event* cause = current_cause()) continue_chain(*data, event_access::data(*cause));
  return event_access::seal(std::move(data)).value();
}

const std::string& encode_event(const event& ev) { return event_access::encoded(event_access::data(ev)); }

nlohmann::json to_json(const event& ev) { return nlohmann::json::parse(encode_event(ev)); }

}  // namespace eventbus
