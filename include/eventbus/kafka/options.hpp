#pragma once
// Connection and producer settings for the Kafka side of eventbus.

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "eventbus/topic.hpp"

namespace eventbus {

class metrics;

/// bootstrap_servers value that starts (or joins) the process's in-memory embedded broker.
inline constexpr std::string_view embedded_bootstrap = "embedded";

/// How to reach the cluster. `properties` are passed to librdkafka unchanged and applied last, so
/// any client property works without code changes (security.protocol, sasl.*, ssl.*,
/// compression.type, linger.ms, batch.size, ...), including overriding eventbus's defaults.
struct kafka_options {
  std::string bootstrap_servers{embedded_bootstrap};  // "host:9092,host2:9092" or "embedded"
  std::string client_id = "eventbus";
  std::map<std::string, std::string> properties{};

  /// Throws eventbus::exception (errc::invalid_argument) naming the option.
  void validate() const;
};

struct producer_options {
  kafka_options kafka{};
  std::string topic_prefix{default_topic_prefix};
  /// How long a publish waits when librdkafka's local queue (queue.buffering.max.messages) is full
  /// before it fails with errc::queue_full.
  std::chrono::milliseconds enqueue_timeout{5000};
  /// How long destruction waits for queued events to be delivered before giving up on them (each
  /// one then reports a failed delivery, and their number is logged).
  std::chrono::milliseconds close_timeout{10000};
  /// Where eventbus_events_published_total and eventbus_producer_queue_messages go; none if null.
  std::shared_ptr<eventbus::metrics> metrics{};

  void validate() const;
};

}  // namespace eventbus
