#pragma once
// What every eventbus Kafka client (producer sink, worker consumer, CLI tools) does the same way:
// resolve "embedded", set client.id, route librdkafka's logs and errors into eventbus's log,
// apply eventbus's defaults and then the user's properties.

#include <map>
#include <memory>
#include <string>

#include "detail/rdkafka_handles.hpp"
#include "eventbus/kafka/embedded_broker.hpp"
#include "eventbus/kafka/options.hpp"

namespace eventbus::detail {

struct client_config {
  kafka_conf conf;
  std::string bootstrap_servers;             // resolved: never "embedded"
  std::shared_ptr<embedded_broker> broker;   // set when "embedded": keep it alive with the client
};

/// Builds a configuration: defaults first, then options.properties (which win). Throws
/// eventbus::exception naming a property librdkafka refuses.
[[nodiscard]] client_config make_client_config(const kafka_options& options,
                                               const std::map<std::string, std::string>& defaults);

/// librdkafka's text for an error code.
[[nodiscard]] std::string kafka_error_text(rd_kafka_resp_err_t err);

}  // namespace eventbus::detail
