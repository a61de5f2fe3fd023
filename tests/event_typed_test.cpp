// Typed events: a struct becomes an envelope and comes back out of one.

#include <doctest/doctest.h>

#include "eventbus/dispatcher.hpp"
#include "eventbus/typed_event.hpp"

using namespace eventbus;

namespace shop {

struct order_created {
  static constexpr std::string_view event_type = "order.created";
  static constexpr std::string_view aggregate_type = "order";
  static constexpr int version = 2;
  std::string customer;
  double total = 0;
  friend bool operator==(const order_created&, const order_created&) = default;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(order_created, customer, total)

struct order_shipped {  // no version: schema version 1
  static constexpr std::string_view event_type = "order.shipped";
  static constexpr std::string_view aggregate_type = "order";
  std::string carrier;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(order_shipped, carrier)

}  // namespace shop

namespace {

// An order.created at order_created's schema version 2 with any payload: a payload of another
// version would be a question for the upcasters (upcaster_test), answered before its fields are read.
event created_v2(std::string id, nlohmann::json payload) {
  return make_event({.event_type = "order.created", .aggregate_type = "order", .aggregate_id = std::move(id),
                     .payload = std::move(payload), .version = 2});
}

}  // namespace

static_assert(typed_event<shop::order_created>);
static_assert(!typed_event<std::string>);

TEST_CASE("a typed value becomes an envelope with its names and schema version") {
  const auto ev = make_event("o-42", shop::order_created{"ada", 99.5}, {.correlation_id = "checkout-1"});
  CHECK(ev.event_type() == "order.created");
  CHECK(ev.aggregate_type() == "order");
  CHECK(ev.aggregate_id() == "o-42");
  CHECK(ev.version() == 2);
  CHECK(ev.correlation_id() == "checkout-1");
  CHECK(ev.payload() == nlohmann::json{{"customer", "ada"}, {"total", 99.5}});
  CHECK(make_event("o-1", shop::order_shipped{"dhl"}).version() == 1);
}

TEST_CASE("payload_as gives the struct back, or an error naming the payload") {
  const auto ev = make_event("o-42", shop::order_created{"ada", 99.5});
  CHECK(payload_as<shop::order_created>(ev).value() == shop::order_created{"ada", 99.5});

  const auto wrong = created_v2("o-1", {{"customer", 17}});
  const auto decoded = payload_as<shop::order_created>(wrong);
  REQUIRE_FALSE(decoded.ok());
  CHECK(decoded.error().code() == errc::payload_mismatch);
  CHECK(decoded.error().field() == "payload");
  CHECK(decoded.error().message().find("order.created") != std::string::npos);
  CHECK_THROWS_AS((void)payload_as<shop::order_created>(wrong).value(), eventbus::exception);
}

TEST_CASE("result reads like std::expected: has_value, *r and r->, checked on an error") {
  auto good = payload_as<shop::order_created>(make_event("o-42", shop::order_created{"ada", 99.5}));
  CHECK(good.has_value());
  CHECK(good->customer == "ada");
  CHECK((*good).total == 99.5);
  const auto& same = good;
  CHECK(same->total == 99.5);
  const auto moved = *std::move(good);
  CHECK(moved.customer == "ada");
  const auto bad = payload_as<shop::order_created>(created_v2("o-1", {{"customer", 17}}));
  CHECK_FALSE(bad.has_value());
  CHECK_THROWS_AS((void)bad->customer, eventbus::exception);
  CHECK_THROWS_AS((void)*bad, eventbus::exception);
  CHECK(result<void>().has_value());
  CHECK_FALSE(result<void>(error(errc::invalid_argument, "no")).has_value());
}

TEST_CASE("a typed handler receives the struct, and a payload that does not fit is a counted failure") {
  dispatcher bus({.mode = dispatch_mode::caller_thread});
  std::vector<shop::order_created> seen;
  std::vector<std::string> seen_ids;
  auto sub = bus.subscribe<shop::order_created>("collect", [&](const shop::order_created& o, const event& ev) {
    seen.push_back(o);
    seen_ids.push_back(ev.event_id());
  });
  const auto good = make_event("o-1", shop::order_created{"bob", 5});
  REQUIRE(bus.publish(good).accepted());
  REQUIRE(bus.publish(created_v2("o-2", {{"total", "lots"}})).accepted());

  REQUIRE(seen.size() == 1);
  CHECK(seen[0] == shop::order_created{"bob", 5});
  CHECK(seen_ids[0] == good.event_id());
  CHECK(bus.stats().handler_failures == 1);
}
