// libFuzzer target: one line of a store export, as `eventbus store import` reads it from a file.
// A bad line is an error naming the problem, never a crash; a line that parses writes back to a
// line that parses to the same thing.

#include <cstdint>
#include <string_view>
#include <variant>

#include "store/export_lines.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace eventbus::detail;
  const auto parsed = parse_export_line(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!parsed) {
    if (parsed.error().message().empty()) __builtin_trap();
    return 0;
  }
  const std::string again = std::visit([](const auto& line) { return export_line_of(line); }, parsed.value());
  const auto reparsed = parse_export_line(again);
  if (!reparsed || reparsed.value().index() != parsed.value().index()) __builtin_trap();
  if (const auto* e = std::get_if<copied_event>(&parsed.value())) {
    const auto& f = std::get<copied_event>(reparsed.value());
    if (!(e->stored.ev == f.stored.ev) || e->stored.position != f.stored.position || e->stored.version != f.stored.version ||
        e->published != f.published || e->parked_reason != f.parked_reason || e->stored_at_ms != f.stored_at_ms)
      __builtin_trap();
  } else {
    const auto& c = std::get<exported_checkpoint>(parsed.value());
    const auto& d = std::get<exported_checkpoint>(reparsed.value());
    if (c.name != d.name || c.position != d.position) __builtin_trap();
  }
  return 0;
}
