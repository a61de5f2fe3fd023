#pragma once
// What eventbus's own parts use of a kafka_sink beyond its public API.

#include <functional>

#include "eventbus/delivery.hpp"
#include "eventbus/error.hpp"
#include "eventbus/kafka/kafka_sink.hpp"
#include "kafka/mirror_record.hpp"

namespace eventbus::detail {

struct sink_access {
  /// Produces the record of a stored event from its fields, as kafka_sink::produce does for an
  /// event: the outbox relay sends what it read without decoding it. The views may go once this
  /// returns (librdkafka copied them).
  static void produce(kafka_sink& sink, const record_fields& record, std::function<void(result<delivery>)> on_delivery);
};

}  // namespace eventbus::detail
