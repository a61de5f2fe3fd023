// libFuzzer target: the headers of a record in a dead-letter topic, as `eventbus dlq list|replay`
// read them (anyone can write to that topic). Whatever they hold, reading them never crashes, and
// the original topic they name is checked before a replay would produce to it.

#include <fuzzer/FuzzedDataProvider.h>

#include <array>
#include <cstdint>
#include <string>

#include "eventbus/topic.hpp"
#include "worker/dead_letter.hpp"

namespace {

constexpr std::array header_names{"x-eventbus-dlq-reason",          "x-eventbus-dlq-error",
                                  "x-eventbus-dlq-handler",         "x-eventbus-dlq-attempts",
                                  "x-eventbus-dlq-original-topic",  "x-eventbus-dlq-original-partition",
                                  "x-eventbus-dlq-original-offset", "x-eventbus-dlq-group",
                                  "x-eventbus-dlq-failed-at",       "x-eventbus-replay-count"};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  eventbus::dead_letter d;
  while (in.remaining_bytes() > 0) {
    std::string name = in.ConsumeBool() ? header_names[in.ConsumeIntegralInRange<std::size_t>(0, header_names.size() - 1)]
                                        : in.ConsumeRandomLengthString(40);
    d.headers[name] = in.ConsumeRandomLengthString(200);
  }
  eventbus::detail::read_dead_letter_headers(d);
  const int replays = eventbus::detail::header_number_or<int>(d.headers, "x-eventbus-replay-count", 0);
  (void)replays;
  if (eventbus::validate_topic_name(d.original_topic)) {
    const auto dlq = eventbus::dlq_topic_for(d.original_topic);
    if (!dlq || !eventbus::validate_topic_name(dlq.value())) __builtin_trap();  // a valid topic always has a valid DLQ topic
  }
  return 0;
}
