#include <array>
#include <cstdint>
#include <random>

#include "detail/uuid.hpp"

namespace eventbus::detail {
namespace {

std::mt19937_64& generator() {
  // Seeded from the OS entropy source once per thread; 128 bits of seed material so two threads
  // (or processes) starting together do not share a sequence.
  thread_local std::mt19937_64 gen = [] {
    std::random_device rd;
    std::seed_seq seq{rd(), rd(), rd(), rd()};
    return std::mt19937_64(seq);
  }();
  return gen;
}

}  // namespace

std::string new_uuid() {
  std::array<std::uint8_t, 16> bytes{};
  auto& gen = generator();
  for (std::size_t i = 0; i < bytes.size(); i += 8) {
    std::uint64_t word = gen();
    for (std::size_t j = 0; j < 8; ++j) bytes[i + j] = static_cast<std::uint8_t>(word >> (8 * j));
  }
  bytes[6] = static_cast<std::uint8_t>((bytes[6] & 0x0F) | 0x40);  // version 4
  bytes[8] = static_cast<std::uint8_t>((bytes[8] & 0x3F) | 0x80);  // RFC 4122 variant

  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(36);
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out.push_back('-');
    out.push_back(hex[bytes[i] >> 4]);
    out.push_back(hex[bytes[i] & 0x0F]);
  }
  return out;
}

std::string new_span_id() {
  static constexpr char hex[] = "0123456789abcdef";
  std::uint64_t word = 0;
  while (word == 0) word = generator()();
  std::string out(16, '0');
  for (std::size_t i = 0; i < 16; ++i) out[i] = hex[(word >> (60 - 4 * i)) & 0x0F];
  return out;
}

bool is_uuid(std::string_view text) noexcept {
  if (text.size() != 36) return false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
    } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
      return false;
    }
  }
  return true;
}

}  // namespace eventbus::detail
