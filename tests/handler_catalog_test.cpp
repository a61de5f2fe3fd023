// Handlers that register themselves: registered_handler statics, subscribe_all on a dispatcher and
// a worker, the `only` filter, and the errors for a typo.

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "eventbus/dispatcher.hpp"
#include "eventbus/handler_catalog.hpp"
#include "eventbus/kafka/worker.hpp"

using namespace eventbus;

namespace {

struct order_paid {
  static constexpr std::string_view event_type = "order.paid";
  static constexpr std::string_view aggregate_type = "order";
  double amount = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(order_paid, amount)

std::vector<std::string> g_calls;

const registered_handler send_receipt{"send-receipt", "order.paid", [](const event&) { g_calls.push_back("send-receipt"); }};
const auto book_payment = registered_handler::of<order_paid>(
    "book-payment", [](const order_paid& p) { g_calls.push_back("book-payment " + std::to_string(static_cast<int>(p.amount))); },
    {.when = when<order_paid>([](const order_paid& p) { return p.amount > 0; })});
const registered_handler welcome{"welcome", "user.registered", [](const event&) { g_calls.push_back("welcome"); }};

event paid(double amount) {
  return make_event("o-1", order_paid{amount});
}

}  // namespace

TEST_CASE("subscribe_all subscribes every registered handler, with its condition, in registration order") {
  g_calls.clear();
  dispatcher bus({.mode = dispatch_mode::caller_thread});
  const auto subscriptions = subscribe_all(bus);
  CHECK(subscriptions.size() == 3);
  REQUIRE(bus.publish(paid(12)).accepted());
  REQUIRE(bus.publish(paid(0)).accepted());  // book-payment's condition rejects it
  CHECK(g_calls == std::vector<std::string>{"send-receipt", "book-payment 12", "send-receipt"});
  const auto rows = bus.handlers();
  REQUIRE(rows.size() == 3);
  CHECK(rows[1].name == "book-payment");
  CHECK(rows[1].has_condition);

  const auto listed = registered_handlers();
  REQUIRE(listed.size() == 3);
  CHECK(listed[0].where.find("handler_catalog_test.cpp:") != std::string::npos);
}

TEST_CASE("subscribe_all takes only the handlers within a pattern, on a worker too") {
  dispatcher bus({.mode = dispatch_mode::caller_thread});
  const auto orders = subscribe_all(bus, "order.*");
  CHECK(orders.size() == 2);
  const auto exact = subscribe_all(bus, "user.registered");
  CHECK(exact.size() == 1);

  worker w({.kafka = {.bootstrap_servers = "127.0.0.1:1", .properties = {{"log_level", "0"}}}, .group_id = "catalog-test"});
  const auto on_worker = subscribe_all(w, "order.paid");
  REQUIRE(on_worker.size() == 2);
  const auto rows = w.handlers();
  REQUIRE(rows.size() == 2);
  CHECK(rows[0].name == "send-receipt");
}

TEST_CASE("a pattern that takes nothing, or is malformed, is an error naming what is registered") {
  dispatcher bus({.mode = dispatch_mode::caller_thread});
  try {
    (void)subscribe_all(bus, "ordr.*");
    FAIL("a typo subscribed nothing and said nothing");
  } catch (const exception& e) {
    CHECK(e.error().field() == "only");
    CHECK(std::string(e.what()).find("send-receipt (order.paid)") != std::string::npos);
  }
  CHECK_THROWS_AS((void)subscribe_all(bus, "Order Paid"), exception);
  CHECK(bus.handlers().empty());
}
