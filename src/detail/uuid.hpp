#pragma once

#include <string>
#include <string_view>

namespace eventbus::detail {

/// A random (version 4) UUID in canonical lower-case form, from a per-thread generator seeded by
/// std::random_device.
[[nodiscard]] std::string new_uuid();

/// 8-4-4-4-12 hexadecimal digits, either case.
[[nodiscard]] bool is_uuid(std::string_view text) noexcept;

}  // namespace eventbus::detail
