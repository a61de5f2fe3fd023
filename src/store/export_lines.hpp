#pragma once
// One line of a store export (export_store / import_store): the format, written and read in one
// place, so that what import reads is exactly what export writes (a fuzz target checks the trip).

#include <string>
#include <string_view>
#include <variant>

#include "eventbus/error.hpp"
#include "store/append_rules.hpp"

namespace eventbus::detail {

struct exported_checkpoint {
  std::string name;
  std::int64_t position = 0;
};

using export_line = std::variant<exported_checkpoint, copied_event>;

/// {"checkpoint": NAME, "position": P}
[[nodiscard]] std::string export_line_of(const exported_checkpoint& c);
/// {"position", "version", "stored_at_ms", "published", "parked_reason", "envelope"}
[[nodiscard]] std::string export_line_of(const copied_event& e);

/// A line back; errc::invalid_argument saying what is wrong (not JSON, a field missing or of the
/// wrong type, a position or version below 1, an outbox state other than 0, 1 or 2, an envelope
/// that does not decode).
[[nodiscard]] result<export_line> parse_export_line(std::string_view text);

}  // namespace eventbus::detail
