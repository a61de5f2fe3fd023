// libFuzzer target: a Kafka record value as the worker and `eventbus tail` decode it. Bad bytes are
// an error, never a crash; what decodes encodes to bytes that decode to the same event.

#include <cstdint>
#include <string_view>

#include "eventbus/event.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const auto ev = eventbus::decode_event(bytes);
  if (!ev) {
    if (ev.error().message().empty()) __builtin_trap();  // an error always says what is wrong
    return 0;
  }
  const std::string& wire = eventbus::encode_event(ev.value());
  const auto again = eventbus::decode_event(wire);
  if (!again || !(again.value() == ev.value()) || eventbus::encode_event(again.value()) != wire) __builtin_trap();
  return 0;
}
