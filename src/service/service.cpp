#include "eventbus/service.hpp"

#include <optional>
#include <string>
#include <thread>

namespace eventbus {

// Members in construction order; destroyed in reverse: the relay (or the mirror) outlives the
// dispatcher that feeds it, and the store outlives both.
struct service::impl {
  std::shared_ptr<outbox_store> store;
  std::shared_ptr<kafka_sink> mirror;          // store.backend none
  std::unique_ptr<outbox_relay> relay;         // a store backend
  std::unique_ptr<dispatcher> bus;
  std::optional<result<void>> stopped;

  result<void> stop() {
    if (stopped) return *stopped;
    bus->shutdown();  // every scheduled handler call runs; nothing new is accepted
    result<void> outcome;
    if (relay) {
      drain_outbox();
      relay->stop();  // what is still unacknowledged stays in the store for the next relay
    }
    if (mirror) {
      if (auto flushed = mirror->flush(close_timeout); !flushed)
        outcome = error(errc::timed_out, "the Kafka mirror did not deliver everything before stopping: " +
                                             flushed.error().message());
    }
    stopped = outcome;
    return outcome;
  }

  // A leading relay gets up to close_timeout to publish what this service stored, as the mirror
  // gets it to flush: a clean stop leaves nothing behind when Kafka is up. A standby leaves it to
  // the leader (after one look, in case this relay had not taken the lease yet).
  void drain_outbox() {
    const auto start = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() - start < close_timeout) {
      const auto backlog = store->backlog();
      if (!backlog || backlog->events == 0) return;
      if (!relay->stats().leading && std::chrono::steady_clock::now() - start > 2 * relay_interval) return;
      relay->notify();
      std::this_thread::sleep_for(std::chrono::milliseconds(10));  // a poll of the database, bounded above
    }
  }

  std::chrono::milliseconds close_timeout{};
  std::chrono::milliseconds relay_interval{};
};

result<service> service::start(const app_config& config, std::shared_ptr<eventbus::metrics> metrics) {
  try {
    auto parts = std::make_unique<impl>();
    auto opened = config.open_store(metrics);
    if (!opened) return opened.error();
    parts->store = std::move(opened).value();

    auto producer = config.make_producer_options();
    producer.metrics = metrics;
    auto dispatch = config.make_dispatcher_options();
    if (metrics) {
      dispatch.observe_handler = metrics::handler_observer_for(metrics);
      dispatch.observe_filtered = metrics::filtered_observer_for(metrics);
    }
    dispatch.store = parts->store;

    parts->close_timeout = producer.close_timeout;
    if (parts->store) {
      auto relay = config.make_relay_options();
      relay.metrics = metrics;
      parts->relay_interval = relay.interval;
      parts->relay = std::make_unique<outbox_relay>(parts->store, producer, relay);
    } else {
      parts->mirror = std::make_shared<kafka_sink>(producer);
    }
    parts->bus = std::make_unique<dispatcher>(dispatch);
    if (parts->mirror) parts->bus->add_sink(parts->mirror);
    if (parts->relay) parts->relay->start();
    return service(std::move(parts));
  } catch (const exception& e) {
    return e.error();
  }
}

service::service(std::unique_ptr<impl> i) noexcept : impl_(std::move(i)) {}
service::service(service&&) noexcept = default;
service& service::operator=(service&& other) noexcept {
  if (this != &other) {
    if (impl_) (void)impl_->stop();
    impl_ = std::move(other.impl_);
  }
  return *this;
}
service::~service() {
  if (impl_) (void)impl_->stop();
}

dispatcher& service::bus() noexcept { return *impl_->bus; }

const std::shared_ptr<outbox_store>& service::store() const noexcept { return impl_->store; }

service_stats service::stats() const noexcept {
  service_stats s{.published = impl_->bus->stats()};
  if (impl_->relay) {
    const auto r = impl_->relay->stats();
    s.to_kafka = r.relayed;
    s.failed = r.failed;
    s.outbox_backlog = r.backlog;
    s.relaying = r.leading;
  } else {
    const auto m = impl_->mirror->stats();
    s.to_kafka = m.delivered;
    s.failed = m.failed;
  }
  return s;
}

void service::add_readiness_checks(metrics_server& server) {
  if (impl_->store) {
    server.add_readiness_check("store", [store = impl_->store] { return store->check().ok(); });
  } else {
    server.add_readiness_check("kafka", [mirror = impl_->mirror] { return mirror->connected(std::chrono::milliseconds(500)); });
  }
}

result<void> service::stop() { return impl_->stop(); }

}  // namespace eventbus
