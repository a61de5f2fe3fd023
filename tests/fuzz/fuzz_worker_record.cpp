// libFuzzer target: the worker's record path without Kafka. A record (topic, key, value, headers)
// goes through record_runner's first pass (size, envelope, topic check, handler lookup, a replay
// header, handler attempts through the middleware chain) and, when it cannot be handled, becomes
// dead-letter headers, as the worker writes them.

#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "eventbus/admin/dead_letters.hpp"
#include "worker/dead_letter.hpp"
#include "worker/record_runner.hpp"

namespace {

const eventbus::worker_options& options() {
  static const eventbus::worker_options opts = [] {
    eventbus::worker_options o{.group_id = "fuzz", .topics = {"^app\\..*"}, .retry = {.max_attempts = 2}};
    o.max_record_bytes = 64 * 1024;
    o.validate();
    return o;
  }();
  return opts;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static auto& run = []() -> eventbus::detail::record_runner& {
    static eventbus::detail::record_runner r(options());
    // Handlers that read the payload the way users do, and fail in both ways a handler can.
    (void)r.registry().add("*", "reader", [](const eventbus::event& ev) {
      if (ev.payload().contains("fail")) throw std::runtime_error("asked to fail: " + ev.payload().dump());
      if (ev.payload().contains("refuse")) throw eventbus::permanent_error("refused");
    });
    (void)r.registry().add("order.*", "orders", [](const eventbus::event& ev) { (void)ev.metadata().size(); });
    return r;
  }();
  FuzzedDataProvider in(data, size);
  auto job = std::make_shared<eventbus::detail::record_job>();
  job->topic = in.ConsumeBool() ? "app.order.order.created" : in.ConsumeRandomLengthString(300);
  job->partition = in.ConsumeIntegral<std::int32_t>();
  job->offset = in.ConsumeIntegral<std::int64_t>();
  job->key = in.ConsumeRandomLengthString(100);
  const int header_count = in.ConsumeIntegralInRange(0, 4);
  for (int i = 0; i < header_count; ++i) {
    std::string name = in.ConsumeBool() ? std::string(eventbus::replay_handler_header) : in.ConsumeRandomLengthString(40);
    job->owned_headers.emplace_back(std::move(name), in.ConsumeRandomLengthString(100));
  }
  job->owned_value = in.ConsumeRemainingBytesAsString();

  if (!run.first_pass(*job)) {
    for (auto& h : job->handlers) h.next_try = eventbus::detail::worker_clock::now();
    run.run_due_handlers(*job);
    const eventbus::detail::dead_letter_reason why =
        job->bad ? *job->bad : eventbus::detail::dead_letter_reason{"handler-error", "failed", "reader", 2};
    const auto headers = eventbus::detail::dead_letter_headers(job->headers(), why, {job->topic, job->partition, job->offset, "fuzz"},
                                                               "2026-01-01T00:00:00.000Z");
    for (const auto& [name, value] : headers)
      if (name == "x-eventbus-dlq-error" && value.size() > eventbus::detail::max_dlq_error_bytes) __builtin_trap();
  }
  return 0;
}
