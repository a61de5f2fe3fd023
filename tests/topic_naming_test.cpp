// Topic names: app.<aggregate_type>.<event_type>, Kafka's rules, rejection rather than rewriting.

#include <doctest/doctest.h>

#include "eventbus/topic.hpp"
#include "test_support.hpp"

using namespace eventbus;

TEST_CASE("an event's topic is <prefix>.<aggregate_type>.<event_type>") {
  const auto ev = make_event({.event_type = "model.version.added", .aggregate_type = "model_catalog", .aggregate_id = "m"});
  CHECK(topic_for(ev).value() == "app.model_catalog.model.version.added");
  CHECK(topic_for(ev, "staging-app").value() == "staging-app.model_catalog.model.version.added");
  CHECK(topic_for("order", "order.created").value() == "app.order.order.created");
  CHECK(dlq_topic_for("app.order.order.created").value() == "app.order.order.created.dlq");
  CHECK(dlq_topic_for("app.order.order.created", "-dead").value() == "app.order.order.created-dead");
}

TEST_CASE("names Kafka would refuse, or that could collide, are rejected with the part at fault") {
  struct bad_case {
    std::string aggregate_type, event_type, prefix, field;
  };
  const bad_case cases[] = {
      {"order.line", "item.added", "app", "aggregate_type"},  // '.' would make topics ambiguous
      {"order line", "order.created", "app", "aggregate_type"},
      {"ordér", "order.created", "app", "aggregate_type"},
      {"", "order.created", "app", "aggregate_type"},
      {"order", "Order.Created", "app", "event_type"},
      {"order", "created", "app", "event_type"},
      {"order", "order.created", "", "prefix"},
      {"order", "order.created", "app/", "prefix"},
      {"order", "order.created", "app.", "prefix"},
      {std::string(240, 'a'), "order.created", "app", "topic"},  // over 249 characters
  };
  for (const auto& c : cases) {
    CAPTURE(c.aggregate_type);
    CAPTURE(c.event_type);
    CAPTURE(c.prefix);
    const auto topic = topic_for(c.aggregate_type, c.event_type, c.prefix);
    REQUIRE_FALSE(topic.ok());
    CHECK(topic.error().code() == errc::invalid_topic);
    CHECK(topic.error().field() == c.field);
  }
}

TEST_CASE("validate_topic_name follows Kafka's rules") {
  CHECK(validate_topic_name("app.order.order.created").ok());
  CHECK(validate_topic_name("A-b_c.9").ok());
  CHECK(validate_topic_name(std::string(249, 'x')).ok());
  CHECK_FALSE(validate_topic_name(std::string(250, 'x')).ok());
  CHECK_FALSE(validate_topic_name("").ok());
  CHECK_FALSE(validate_topic_name(".").ok());
  CHECK_FALSE(validate_topic_name("..").ok());
  CHECK_FALSE(validate_topic_name("a b").ok());
  CHECK_FALSE(validate_topic_name("a/b").ok());
  CHECK(validate_topic_name("a/b").error().message().find("'/'") != std::string::npos);
  CHECK_FALSE(dlq_topic_for("app.order.order.created", "").ok());
}

TEST_CASE("every topic has a dead-letter topic that fits, and event topics leave room for '.dlq'") {
  // A topic eventbus did not name may use all 249 characters: its dead-letter topic keeps the start,
  // adds a hash of the whole name, and still ends in the suffix.
  // (built with append: GCC 12 warns falsely on operator+ with a long temporary)
  const std::string long_a = std::string(240, 'x').append(".order.a"), long_b = std::string(240, 'x').append(".order.b");
  const std::string longest(249, 'y');
  for (const std::string* topic : {&long_a, &long_b, &longest}) {
    const auto dlq = dlq_topic_for(*topic);
    REQUIRE(dlq.ok());
    CHECK(dlq.value().size() <= max_topic_length);
    CHECK(dlq.value().ends_with(".dlq"));
    CHECK(validate_topic_name(dlq.value()).ok());
  }
  CHECK(dlq_topic_for(long_a).value() != dlq_topic_for(long_b).value());
  CHECK(dlq_topic_for(long_a).value() == dlq_topic_for(long_a).value());
  const std::string fits(245, 'z');
  CHECK(dlq_topic_for(fits).value() == std::string(fits).append(".dlq"));  // fits: unchanged

  // Topics eventbus names stop 4 characters short of Kafka's limit.
  const std::string aggregate(max_event_topic_length - std::string("app..order.created").size(), 'a');
  CHECK(topic_for(aggregate, "order.created").ok());
  const auto too_long = topic_for(aggregate + "a", "order.created");
  REQUIRE_FALSE(too_long.ok());
  CHECK(too_long.error().field() == "topic");
  CHECK(too_long.error().message().find(".dlq") != std::string::npos);
}

TEST_CASE("event types that would collide with dead-letter topics are refused") {
  const auto topic = topic_for("payment", "payment.dlq");
  REQUIRE_FALSE(topic.ok());
  CHECK(topic.error().field() == "event_type");
  CHECK(topic.error().message().find("reserved for dead-letter topics") != std::string::npos);
  CHECK_FALSE(topic_for("order", "order.created.dlq").ok());
  CHECK(topic_for("order", "order.dlq_sent").ok());  // only a last segment "dlq" is reserved
  try {
    (void)make_event({.event_type = "order.created.dlq", .aggregate_type = "order", .aggregate_id = "o-1"});
    FAIL("make_event accepted an event type ending in .dlq");
  } catch (const exception& e) {
    CHECK(e.error().field() == "event_type");
  }
  // A dead-letter suffix an event topic could end with would make workers skip those events.
  CHECK(validate_dlq_suffix(".dlq").ok());
  CHECK(validate_dlq_suffix(".orders.dlq").ok());
  CHECK(validate_dlq_suffix("-dead").ok());
  CHECK(validate_dlq_suffix(".DLQ").ok());
  CHECK_FALSE(validate_dlq_suffix(".dead").ok());
  CHECK_FALSE(validate_dlq_suffix("_dlq").ok());
  CHECK_FALSE(validate_dlq_suffix("").ok());
  CHECK_FALSE(validate_dlq_suffix(".dead letters").ok());
}
