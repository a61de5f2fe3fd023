#include "eventbus/kafka/embedded_broker.hpp"

#include <mutex>

#include "kafka/kafka_client.hpp"
#include "support/log.hpp"
#include "eventbus/error.hpp"

namespace eventbus {
namespace {

void check(rd_kafka_resp_err_t err, const std::string& what) {
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
    throw exception(error(errc::invalid_argument, what + ": " + detail::kafka_error_text(err)));
}

}  // namespace

struct embedded_broker::impl {
  // Declared in this order so the cluster is destroyed before the handle it was created with.
  detail::kafka_handle handle;
  detail::kafka_mock_cluster cluster;
  std::string bootstrap;
};

embedded_broker::embedded_broker(int brokers) : brokers_(brokers) {
  if (brokers < 1 || brokers > 16)
    throw exception(error(errc::invalid_argument, "must be between 1 and 16, got " + std::to_string(brokers), "brokers"));
  detail::kafka_conf conf(rd_kafka_conf_new());
  detail::set_property(conf.get(), "client.id", "eventbus-embedded-broker");
  // The handle only anchors the cluster; it never connects anywhere.
  detail::set_property(conf.get(), "log_level", "3");
  impl_ = std::make_unique<impl>();
  impl_->handle = detail::make_handle(RD_KAFKA_PRODUCER, std::move(conf));
  impl_->cluster.reset(rd_kafka_mock_cluster_new(impl_->handle.get(), brokers));
  if (!impl_->cluster) throw exception(error(errc::invalid_argument, "could not start the embedded broker"));
  impl_->bootstrap = rd_kafka_mock_cluster_bootstraps(impl_->cluster.get());
}

embedded_broker::~embedded_broker() = default;

std::shared_ptr<embedded_broker> embedded_broker::shared() {
  static std::mutex mu;
  static std::weak_ptr<embedded_broker> instance;
  const std::lock_guard lock(mu);
  if (auto existing = instance.lock()) return existing;
  auto created = std::make_shared<embedded_broker>(1);
  instance = created;
  detail::log(log_level::warn, "bootstrap_servers is \"embedded\": using an in-process Kafka broker at " +
                                   created->bootstrap_servers() +
                                   ". It keeps events in memory only; they are gone when this process exits.");
  return created;
}

const std::string& embedded_broker::bootstrap_servers() const noexcept { return impl_->bootstrap; }

void embedded_broker::create_topic(const std::string& topic, int partitions, int replication_factor) {
  validate_topic_name(topic).value();  // throws errc::invalid_topic
  if (partitions < 1) throw exception(error(errc::invalid_argument, "must be at least 1", "partitions"));
  if (replication_factor < 1 || replication_factor > brokers_)
    throw exception(error(errc::invalid_argument,
                          "must be between 1 and the broker count (" + std::to_string(brokers_) + ")",
                          "replication_factor"));
  check(rd_kafka_mock_topic_create(impl_->cluster.get(), topic.c_str(), partitions, replication_factor),
        "cannot create topic '" + topic + "'");
}

void embedded_broker::set_down(std::int32_t broker_id) {
  check(rd_kafka_mock_broker_set_down(impl_->cluster.get(), broker_id), "cannot take broker down");
}

void embedded_broker::set_up(std::int32_t broker_id) {
  check(rd_kafka_mock_broker_set_up(impl_->cluster.get(), broker_id), "cannot bring broker up");
}

void embedded_broker::set_round_trip_time(std::chrono::milliseconds rtt, std::int32_t broker_id) {
  check(rd_kafka_mock_broker_set_rtt(impl_->cluster.get(), broker_id, static_cast<int>(rtt.count())),
        "cannot set round-trip time");
}

void embedded_broker::push_request_errors(kafka_api api, const std::vector<int>& error_codes) {
  std::vector<rd_kafka_resp_err_t> errors;
  errors.reserve(error_codes.size());
  for (const int code : error_codes) errors.push_back(static_cast<rd_kafka_resp_err_t>(code));
  rd_kafka_mock_push_request_errors_array(impl_->cluster.get(), static_cast<std::int16_t>(api), errors.size(),
                                          errors.data());
}

void embedded_broker::set_topic_error(const std::string& topic, int error_code) {
  rd_kafka_mock_topic_set_error(impl_->cluster.get(), topic.c_str(), static_cast<rd_kafka_resp_err_t>(error_code));
}

rd_kafka_mock_cluster_s* embedded_broker::native_handle() const noexcept { return impl_->cluster.get(); }

}  // namespace eventbus
