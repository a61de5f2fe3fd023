#pragma once
// Text from records (keys, ids, error messages) made safe for a terminal: valid UTF-8, and no
// control characters, so no escape sequence reaches the terminal and no NUL cuts a line short.

#include <string>
#include <string_view>

#include "support/utf8.hpp"

namespace eventbus::cli {

/// `text` as valid UTF-8 with control characters (and DEL) written as \xNN.
[[nodiscard]] inline std::string printable(std::string_view text) {
  static constexpr char hex[] = "0123456789abcdef";
  const std::string valid = detail::sanitize_utf8(text);
  std::string out;
  out.reserve(valid.size());
  for (const char ch : valid) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f) {
      out += "\\x";
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 0x0f]);
    } else {
      out.push_back(ch);
    }
  }
  return out;
}

}  // namespace eventbus::cli
