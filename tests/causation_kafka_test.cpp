// A workflow over Kafka: order.placed is handled by one worker group, which publishes
// payment.requested; another group handles that and publishes shipment.scheduled. Every follow-up
// carries its cause's id and the first event's correlation id and trace, with nobody setting them.

#include <doctest/doctest.h>

#include "eventbus/causation.hpp"
#include "eventbus/kafka/embedded_broker.hpp"
#include "eventbus/kafka/kafka_sink.hpp"
#include "eventbus/kafka/worker.hpp"
#include "test_support.hpp"
#include "worker_test_support.hpp"

using namespace eventbus;
using namespace std::chrono_literals;

TEST_CASE("a chain of three events across two workers keeps one correlation id, each caused by its parent") {
  embedded_broker broker;
  for (const char* topic : {"app.order.order.placed", "app.payment.payment.requested", "app.shipment.shipment.scheduled"})
    broker.create_topic(topic, 2);
  auto kafka = std::make_shared<kafka_sink>(producer_options{.kafka = testing::mock_group_kafka(broker)});
  // A follow-up event, made inside a handler with no causation fields, waited for until Kafka has it.
  const auto publish_follow_up = [&](const char* type, const char* aggregate_type, const std::string& id) {
    const auto delivered = kafka->accept(make_event({.event_type = type, .aggregate_type = aggregate_type, .aggregate_id = id}));
    if (!delivered.get()) throw std::runtime_error("follow-up not delivered");  // retried by the worker
  };

  std::mutex mu;
  std::optional<event> placed_seen, requested_seen, scheduled_seen;
  worker orders({.kafka = testing::mock_group_kafka(broker), .group_id = "orders",
                 .topics = {"app.order.order.placed", "app.shipment.shipment.scheduled"}});
  auto place = orders.subscribe("order.placed", "request_payment", [&](const event& ev) {
    {
      const std::lock_guard lock(mu);
      placed_seen = ev;
    }
    publish_follow_up("payment.requested", "payment", "p-" + ev.aggregate_id());
  });
  auto done = orders.subscribe("shipment.scheduled", "record", [&](const event& ev) {
    const std::lock_guard lock(mu);
    scheduled_seen = ev;
  });
  worker payments({.kafka = testing::mock_group_kafka(broker), .group_id = "payments",
                   .topics = {"app.payment.payment.requested"}});
  auto pay = payments.subscribe("payment.requested", "schedule_shipment", [&](const event& ev) {
    {
      const std::lock_guard lock(mu);
      requested_seen = ev;
    }
    publish_follow_up("shipment.scheduled", "shipment", "s-" + ev.aggregate_id());
  });
  orders.start();
  payments.start();

  const auto first = make_event({.event_type = "order.placed", .aggregate_type = "order", .aggregate_id = "o-7",
                                 .metadata = {{"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}});
  REQUIRE(kafka->accept(first).get().ok());
  REQUIRE(testing::wait_until([&] {
    const std::lock_guard lock(mu);
    return scheduled_seen.has_value();
  }, 60s));
  orders.stop();
  payments.stop();

  const std::lock_guard lock(mu);
  REQUIRE(placed_seen.has_value());
  REQUIRE(requested_seen.has_value());
  CHECK(placed_seen->event_id() == first.event_id());
  CHECK(requested_seen->causation_id() == first.event_id());
  CHECK(scheduled_seen->causation_id() == requested_seen->event_id());
  CHECK(requested_seen->correlation_id() == first.event_id());
  CHECK(scheduled_seen->correlation_id() == first.event_id());
  // One trace: the same trace id all along, a new span at each step.
  const auto trace_of = [](const event& ev) { return ev.metadata().at("traceparent").substr(3, 32); };
  const auto span_of = [](const event& ev) { return ev.metadata().at("traceparent").substr(36, 16); };
  REQUIRE(requested_seen->metadata().contains("traceparent"));
  REQUIRE(scheduled_seen->metadata().contains("traceparent"));
  CHECK(trace_of(*requested_seen) == trace_of(first));
  CHECK(trace_of(*scheduled_seen) == trace_of(first));
  CHECK(span_of(*requested_seen) != span_of(first));
  CHECK(span_of(*scheduled_seen) != span_of(*requested_seen));
}
