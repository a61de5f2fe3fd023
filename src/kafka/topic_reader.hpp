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

/// Calls `on_record` for each record, in offset order within each partition, until it returns
/// false or every partition is read to its end. Holds one record at a time. errc::timed_out when
/// metadata or data stops arriving for `idle_timeout`.
[[nodiscard]] result<void> read_to_end(const kafka_options& kafka, const std::string& topic,
                                       const std::function<bool(const rd_kafka_message_t&)>& on_record,
                                       std::chrono::milliseconds idle_timeout = std::chrono::seconds(30));

}  // namespace eventbus::detail
