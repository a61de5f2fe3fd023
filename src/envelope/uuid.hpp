#pragma once

#include <string>
#include <string_view>

namespace eventbus::detail {

/// A random (version 4) UUID in canonical lower-case form, from a per-thread generator seeded by
/// std::random_device.
[[nodiscard]] std::string new_uuid();

/// 16 lower-case hex digits, never all zero: a W3C trace-context span id.
[[nodiscard]] std::string new_span_id();

/// 8-4-4-4-12 hexadecimal digits, either case.
[[nodiscard]] bool is_uuid(std::string_view text) noexcept;

}  // namespace eventbus::detail
