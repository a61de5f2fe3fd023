// libFuzzer target: a Kafka record value as the worker and `eventbus tail` decode it. Bad bytes are
// an error, never a crash; what decodes encodes to bytes that decode to the same event. And the
// two decoding paths agree (differential): the simdjson path yields exactly the event, or exactly
// the error (code, field, message), that the nlohmann path does. The outbox relay's read of a
// stored record's trace context, without decoding it, finds what decoding finds.

#include <cstdint>
#include <string_view>

#include "envelope/event_data.hpp"
#include "eventbus/event.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const auto ev = eventbus::decode_event(bytes);
  const auto reference = eventbus::detail::decode_event_nlohmann(bytes);
  if (ev.ok() != reference.ok()) __builtin_trap();
  if (!ev) {
    if (ev.error().message().empty()) __builtin_trap();  // an error always says what is wrong
    if (ev.error().code() != reference.error().code() || ev.error().field() != reference.error().field() ||
        ev.error().message() != reference.error().message())
      __builtin_trap();
    return 0;
  }
  const auto& metadata = ev.value().metadata();
  const auto traced = metadata.find("traceparent");
  const auto traceparent = eventbus::detail::traceparent_of_checked_record(bytes);
  if (traceparent.has_value() != (traced != metadata.end()) || (traceparent && *traceparent != traced->second))
    __builtin_trap();
  const std::string& wire = eventbus::encode_event(ev.value());
  if (!(ev.value() == reference.value()) || wire != eventbus::encode_event(reference.value())) __builtin_trap();
  const auto again = eventbus::decode_event(wire);
  if (!again || !(again.value() == ev.value()) || eventbus::encode_event(again.value()) != wire) __builtin_trap();
  return 0;
}
