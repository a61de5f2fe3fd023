// libFuzzer target: the metadata string of a committed offset, as a worker reads it when it is
// assigned a partition (any client of the group, or an admin tool, can write it). Whatever it
// holds, reading it never crashes, and what it accepts names only offsets above the commit offset
// (skipping a record at or below it would lose one) and survives being written back.

#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "worker/finished_offsets.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  const auto base = in.ConsumeBool() ? in.ConsumeIntegralInRange<std::int64_t>(0, 1'000'000)
                                     : in.ConsumeIntegral<std::int64_t>();
  std::string text = in.ConsumeBool() ? "eb1:" + std::to_string(base) + ":" : "";
  text += in.ConsumeRemainingBytesAsString();
  const auto read = eventbus::detail::decode_finished_offsets(base, text);
  if (!read.offsets) {
    if (read.error.empty()) std::abort();  // a refusal always says why
    return 0;
  }
  const auto& finished = *read.offsets;
  if (finished.contains(base)) std::abort();
  for (const auto& r : finished.ranges())
    if (r.begin <= base || r.end <= r.begin) std::abort();
  const auto again = eventbus::detail::decode_finished_offsets(base, finished.encode(base));
  if (!again.offsets || again.offsets->ranges() != finished.ranges()) std::abort();
  return 0;
}
