#pragma once
// What every eventbus Kafka client (producer sink, worker consumer, CLI tools) does the same way:
// resolve "embedded", set client.id, route librdkafka's logs and errors into eventbus's log,
// apply eventbus's defaults and then the user's properties.

#include <map>
#include <memory>
#include <string>

#include "kafka/rdkafka_handles.hpp"
#include "eventbus/kafka/embedded_broker.hpp"
#include "eventbus/kafka/options.hpp"

namespace eventbus::detail {

struct client_config {
  kafka_conf conf;
  std::string bootstrap_servers;             // resolved: never "embedded"
  std::shared_ptr<embedded_broker> broker;   // set when "embedded": keep it alive with the client
};

/// Which kind of librdkafka client a configuration is for.
enum class client_role { producer, consumer };

/// Builds a configuration: defaults first, then options.properties (which win). A property that
/// librdkafka applies only to the other role is left out: one kafka_options serves a worker's
/// consumer and its dead-letter producer, and librdkafka would warn about every such property on
/// each client it creates. Throws eventbus::exception naming a property librdkafka refuses.
[[nodiscard]] client_config make_client_config(const kafka_options& options, client_role role,
                                               const std::map<std::string, std::string>& defaults);

/// True when librdkafka applies the property only to the other role ("session.timeout.ms" for a
/// producer, "linger.ms" for a consumer), from librdkafka's own property table.
[[nodiscard]] bool only_for_other_role(const std::string& property, client_role role);

/// librdkafka's text for an error code.
[[nodiscard]] std::string kafka_error_text(rd_kafka_resp_err_t err);

}  // namespace eventbus::detail
