#include "store/export_lines.hpp"

#include <nlohmann/json.hpp>

#include <limits>
#include <stdexcept>

#include "envelope/event_data.hpp"

namespace eventbus::detail {

std::string export_line_of(const exported_checkpoint& c) {
  return nlohmann::json{{"checkpoint", c.name}, {"position", c.position}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string export_line_of(const copied_event& e) {
  const nlohmann::json line{{"position", e.stored.position},
                            {"version", e.stored.version},
                            {"stored_at_ms", e.stored_at_ms},
                            {"published", e.published},
                            {"parked_reason", e.parked_reason ? nlohmann::json(*e.parked_reason) : nlohmann::json(nullptr)},
                            {"envelope", std::string(event_access::encoded(event_access::data(e.stored.ev)))}};
  // Envelopes and reasons are UTF-8 (the store checked them); replace keeps a broken one printable.
  return line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

namespace {

// A whole number that fits an int64_t. Found by fuzzing: get<std::int64_t>() of a number written
// with an exponent (a double past the int64 range) was undefined behaviour.
std::int64_t whole_number(const nlohmann::json& line, const char* key) {
  const auto& v = line.at(key);
  if (!v.is_number_integer() ||
      (v.is_number_unsigned() && v.get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())))
    throw std::invalid_argument(std::string(key) + " must be a whole number that fits 64 bits");
  return v.get<std::int64_t>();
}

}  // namespace

result<export_line> parse_export_line(std::string_view text) {
  const auto line = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!line.is_object()) return error(errc::invalid_argument, "is not a JSON object");
  try {
    if (line.contains("checkpoint")) {
      exported_checkpoint c{.name = line.at("checkpoint").get<std::string>(), .position = whole_number(line, "position")};
      if (c.name.empty()) return error(errc::invalid_argument, "a checkpoint needs a name");
      if (c.position < 0) return error(errc::invalid_argument, "a checkpoint's position must be >= 0");
      return export_line(std::move(c));
    }
    const auto position = whole_number(line, "position");
    const auto version = whole_number(line, "version");
    if (position < 1 || version < 1) return error(errc::invalid_argument, "position and version must be >= 1");
    const auto published = whole_number(line, "published");
    if (published < 0 || published > 2) return error(errc::invalid_argument, "published must be 0, 1 or 2");
    const auto& reason = line.at("parked_reason");
    if ((published == 2) != reason.is_string())
      return error(errc::invalid_argument, "parked_reason is set exactly when published is 2 (parked)");
    auto row = stored_row(position, version, line.at("envelope").get_ref<const std::string&>());
    if (!row) return error(errc::invalid_argument, row.error().message());
    return export_line(copied_event{.stored = std::move(row).value(),
                                    .stored_at_ms = whole_number(line, "stored_at_ms"),
                                    .published = static_cast<int>(published),
                                    .parked_reason = reason.is_null() ? std::nullopt : std::optional<std::string>(reason.get<std::string>())});
  } catch (const nlohmann::json::exception& e) {
    return error(errc::invalid_argument, std::string("is not a line of an export: ") + e.what());
  } catch (const std::invalid_argument& e) {
    return error(errc::invalid_argument, e.what());
  }
}

}  // namespace eventbus::detail
