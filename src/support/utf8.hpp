#pragma once
// UTF-8 checks every outside text goes through: JSON encoding, log lines, headers, CLI output.

#include <cstddef>
#include <string>
#include <string_view>

namespace eventbus::detail {

/// The length of the valid UTF-8 sequence starting at s[i] (1 to 4), or 0 when it is not one
/// (overlong forms, surrogates and code points past U+10FFFF included). Inline: the JSON encoder's
/// hot path.
inline std::size_t utf8_sequence_length(std::string_view s, std::size_t i) noexcept {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = byte(i);
  std::size_t len = 0;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) len = 2;
  else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  if (byte(i + 1) < lo || byte(i + 1) > hi) return 0;
  for (std::size_t k = 2; k < len; ++k)
    if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) return 0;
  return len;
}

/// `text` with every byte that is not part of a valid UTF-8 sequence replaced by U+FFFD.
[[nodiscard]] std::string sanitize_utf8(std::string_view text);

/// At most `max_bytes` of `text`, cut before a sequence's first byte, never inside one.
[[nodiscard]] std::string truncate_utf8(std::string_view text, std::size_t max_bytes);

}  // namespace eventbus::detail
