#pragma once
// The Kafka mirror: a sink that produces every published event to <prefix>.<aggregate_type>.<event_type>,
// key = aggregate_id, value = the envelope JSON (encoded once, when the event was built), headers
// event_id, event_type, aggregate_type, content-type and, when present, correlation_id and traceparent
// (from metadata["traceparent"]).
//
//   #include <eventbus/dispatcher.hpp>
//   eventbus::dispatcher bus;
//   auto kafka = std::make_shared<eventbus::kafka_sink>(eventbus::producer_options{
//       .kafka = {.bootstrap_servers = "localhost:9092"}});
//   bus.add_sink(kafka);
//   auto ev = eventbus::make_event({.event_type = "order.created", .aggregate_type = "order", .aggregate_id = "o-42"});
//   auto delivered = bus.publish(ev).wait();  // topic, partition, offset, or the reason it failed
//
// Safe by default: enable.idempotence=true, acks=all (so retries never duplicate or reorder).
// Thread-safe: accept() and flush() may be called from any number of threads.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "eventbus/kafka/options.hpp"
#include "eventbus/sink.hpp"

namespace eventbus {
namespace detail {
struct sink_access;
}

struct kafka_sink_stats {
  std::uint64_t delivered = 0;     // acknowledged by the cluster
  std::uint64_t failed = 0;        // reported as failed deliveries (after librdkafka's own retries)
  std::uint64_t queue_full_waits = 0;  // times a publish had to wait for room in the local queue
  std::uint64_t producer_replacements = 0;  // producers replaced after a fatal error (idempotence lost)
};

class kafka_sink final : public event_sink {
 public:
  /// Connects lazily (librdkafka connects in the background). Throws eventbus::exception for
  /// invalid options or a property librdkafka refuses (field() names the property).
  explicit kafka_sink(producer_options options = {});
  /// Flushes for up to close_timeout; whatever is still undelivered then is purged and every one
  /// of those publishes reports errc::delivery_failed. Logs how many, if any.
  ~kafka_sink() override;
  kafka_sink(const kafka_sink&) = delete;
  kafka_sink& operator=(const kafka_sink&) = delete;

  [[nodiscard]] std::string_view name() const noexcept override { return "kafka"; }

  /// errc::invalid_topic when the event's topic name breaks Kafka's rules.
  [[nodiscard]] result<void> check(const event& ev) const override;

  /// Produces `ev`. The future resolves once the cluster acknowledged it (topic, partition, offset)
  /// or it definitively failed: errc::invalid_topic, errc::queue_full (no room in the local queue
  /// within enqueue_timeout), errc::timed_out (message.timeout.ms passed), errc::delivery_failed.
  [[nodiscard]] delivery_future accept(const event& ev) override;

  /// The same without a future: `on_delivery` runs exactly once, on whichever thread serves
  /// delivery reports (a publishing thread, or the sink's poll thread when nobody publishes), or on
  /// this thread when the event is refused at once. Must be quick and must not throw.
  void produce(const event& ev, std::function<void(result<delivery>)> on_delivery);

  /// Waits until every event produced so far is acknowledged or failed. errc::timed_out says how
  /// many are still outstanding.
  [[nodiscard]] result<void> flush(std::chrono::milliseconds timeout);

  /// Events handed to librdkafka and not yet acknowledged or failed.
  [[nodiscard]] std::size_t outstanding() const noexcept;
  [[nodiscard]] kafka_sink_stats stats() const noexcept;
  /// True when a broker of the cluster answers a metadata request within `timeout`: what a
  /// readiness probe asks. Blocks up to `timeout`.
  [[nodiscard]] bool connected(std::chrono::milliseconds timeout = std::chrono::milliseconds(1000)) const;
  /// The brokers actually used (the embedded broker's address when configured as "embedded").
  [[nodiscard]] const std::string& bootstrap_servers() const noexcept;

 private:
  friend struct detail::sink_access;  // the outbox relay's produce from stored columns
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace eventbus
