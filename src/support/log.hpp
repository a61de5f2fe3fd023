#pragma once

#include <string_view>

#include "eventbus/log.hpp"

namespace eventbus::detail {

[[nodiscard]] bool log_enabled(log_level level) noexcept;
/// Hands one line to the current sink. Never throws.
void log(log_level level, std::string_view message) noexcept;

}  // namespace eventbus::detail
