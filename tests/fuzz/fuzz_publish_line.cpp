// libFuzzer target: one line of `eventbus publish --stdin` input. Bad lines are an error naming the
// problem, never a crash; an event made from a line encodes to bytes that decode to it again.

#include <cstdint>
#include <string_view>

#include "cli/input_line.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto ev = eventbus::cli::event_from_line(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!ev || !ev->ok()) return 0;
  const auto again = eventbus::decode_event(eventbus::encode_event(ev->value()));
  if (!again || !(again.value() == ev->value())) __builtin_trap();
  return 0;
}
