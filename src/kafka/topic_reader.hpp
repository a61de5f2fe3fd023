#pragma once
// Reads a topic from the beginning to its end as of the call (the high watermarks), without a
// consumer group: for tools that inspect topics (dead letters, tail from the start).

#include <chrono>
#include <functional>
#include <string>

#include <librdkafka/rdkafka.h>

#include "eventbus/error.hpp"
#include "eventbus/kafka/options.hpp"

namespace eventbus::detail {

/// Calls `on_record` for each record (up to `limit`), partition by partition in offset order.
/// errc::timed_out when metadata or data does not arrive within `timeout`.
[[nodiscard]] result<void> read_to_end(const kafka_options& kafka, const std::string& topic, std::size_t limit,
                                       const std::function<void(const rd_kafka_message_t&)>& on_record,
                                       std::chrono::milliseconds timeout = std::chrono::seconds(30));

}  // namespace eventbus::detail
