#pragma once
// librdkafka's consumed message, held without librdkafka's header: what the worker's record types
// keep (worker/records.hpp) so that the scheduler, the timers and the record runner compile without
// Kafka. rdkafka_handles.hpp makes one from a kafka_message (hold()) and supplies its deleter.

#include <memory>

struct rd_kafka_message_s;  // rd_kafka_message_t

namespace eventbus::detail {

// Calls what hold() put in (librdkafka's own deleter): only the handles header names librdkafka's
// destroy functions.
struct held_message_deleter {
  void (*free_fn)(rd_kafka_message_s*) noexcept = nullptr;
  void operator()(rd_kafka_message_s* msg) const noexcept { free_fn(msg); }
};
using held_message = std::unique_ptr<rd_kafka_message_s, held_message_deleter>;

}  // namespace eventbus::detail
