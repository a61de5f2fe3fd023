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
  CHECK_FALSE(dlq_topic_for(std::string(248, 'x')).ok());
}
