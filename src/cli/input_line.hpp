#pragma once
// What `eventbus publish` makes of its input: a JSON object per line (or a whole file), either a
// full envelope or just the fields of a new event. Bad input is a clear error, never a crash; the
// functions are fuzzed (tests/fuzz/fuzz_publish_line.cpp).

#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>

#include "eventbus/event.hpp"

namespace eventbus::cli {

/// A full envelope (it has an event_id) is decoded as is; otherwise the fields make a new event:
/// event_type, aggregate_id, aggregate_type (default: the type's first segment), payload,
/// correlation_id, causation_id, metadata.
[[nodiscard]] result<event> event_from_input(const nlohmann::json& j);

/// One input line: nothing for a blank line, else the event or why the line is not one.
[[nodiscard]] std::optional<result<event>> event_from_line(std::string_view line);

}  // namespace eventbus::cli
