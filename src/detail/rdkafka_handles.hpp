#pragma once
// Every librdkafka handle eventbus holds, behind a unique_ptr with a one-line deleter. All C interop
// types live here, so ownership is visible at a glance and nothing is freed twice or leaked.

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <memory>
#include <string>

namespace eventbus::detail {

struct kafka_handle_deleter {
  void operator()(rd_kafka_t* rk) const noexcept { rd_kafka_destroy(rk); }
};
struct kafka_conf_deleter {
  void operator()(rd_kafka_conf_t* conf) const noexcept { rd_kafka_conf_destroy(conf); }
};
struct kafka_headers_deleter {
  void operator()(rd_kafka_headers_t* headers) const noexcept { rd_kafka_headers_destroy(headers); }
};
struct kafka_message_deleter {
  void operator()(rd_kafka_message_t* msg) const noexcept { rd_kafka_message_destroy(msg); }
};
struct kafka_mock_cluster_deleter {
  void operator()(rd_kafka_mock_cluster_t* cluster) const noexcept { rd_kafka_mock_cluster_destroy(cluster); }
};

using kafka_handle = std::unique_ptr<rd_kafka_t, kafka_handle_deleter>;
using kafka_conf = std::unique_ptr<rd_kafka_conf_t, kafka_conf_deleter>;
using kafka_headers = std::unique_ptr<rd_kafka_headers_t, kafka_headers_deleter>;
using kafka_message = std::unique_ptr<rd_kafka_message_t, kafka_message_deleter>;
using kafka_mock_cluster = std::unique_ptr<rd_kafka_mock_cluster_t, kafka_mock_cluster_deleter>;

/// Sets one property; throws eventbus::exception (errc::invalid_argument, field = the property) with
/// librdkafka's own explanation when it refuses it.
void set_property(rd_kafka_conf_t* conf, const std::string& name, const std::string& value);

/// Creates a client handle from `conf`, which it takes over on success (and destroys on failure).
/// Throws eventbus::exception with librdkafka's reason.
[[nodiscard]] kafka_handle make_handle(rd_kafka_type_t type, kafka_conf conf);

}  // namespace eventbus::detail
