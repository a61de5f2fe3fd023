// Causation chains that follow themselves: events made while a handler runs carry the handled
// event's id as causation_id, its correlation (or its id), and its trace with a new span; fields
// the caller set are kept.

#include <doctest/doctest.h>

#include "eventbus/causation.hpp"
#include "eventbus/dispatcher.hpp"
#include "test_support.hpp"

using namespace eventbus;

namespace {

constexpr const char* parent_trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

event made(const std::string& type, metadata_map metadata = {}) {
  return make_event({.event_type = type, .aggregate_type = "order", .aggregate_id = "o-1", .metadata = std::move(metadata)});
}

// A chain placed -> paid -> shipped through `bus`; returns the three events as the handlers saw them.
std::vector<event> run_chain(dispatcher& bus, const event& first) {
  std::mutex mu;
  std::vector<event> seen;
  const auto keep = [&](const event& ev) {
    const std::lock_guard lock(mu);
    seen.push_back(ev);
  };
  auto a = bus.subscribe("order.placed", "pay", [&](const event& ev) {
    keep(ev);
    (void)bus.publish(made("order.paid"));  // on a pool thread: the wait below fails if it is not handled
  });
  auto b = bus.subscribe("order.paid", "ship", [&](const event& ev) {
    keep(ev);
    (void)bus.publish(made("order.shipped"));
  });
  auto c = bus.subscribe("order.shipped", "notify", keep);
  REQUIRE(bus.publish(first).accepted());
  REQUIRE(testing::wait_until([&] {
    const std::lock_guard lock(mu);
    return seen.size() == 3;
  }));
  const std::lock_guard lock(mu);
  return seen;
}

void check_chain(const std::vector<event>& chain) {
  REQUIRE(chain.size() == 3);
  const auto& [placed, paid, shipped] = std::tie(chain[0], chain[1], chain[2]);
  CHECK_FALSE(placed.causation_id().has_value());
  CHECK(paid.causation_id() == placed.event_id());
  CHECK(shipped.causation_id() == paid.event_id());
  // One correlation id for the whole workflow: the first event's own id, as it had none.
  CHECK(paid.correlation_id() == placed.event_id());
  CHECK(shipped.correlation_id() == placed.event_id());
}

}  // namespace

TEST_CASE("events published from dispatcher handlers follow their cause, inline and on the pool") {
  for (const auto mode : {dispatch_mode::caller_thread, dispatch_mode::thread_pool}) {
    CAPTURE(static_cast<int>(mode));
    dispatcher bus({.mode = mode});
    check_chain(run_chain(bus, made("order.placed")));
  }
}

TEST_CASE("a workflow keeps the first event's correlation id, and fields the caller set are kept") {
  dispatcher bus({.mode = dispatch_mode::caller_thread});
  auto first = make_event({.event_type = "order.placed", .aggregate_type = "order", .aggregate_id = "o-1",
                           .correlation_id = "checkout-77"});
  std::optional<event> follow_up, explicit_one;
  auto sub = bus.subscribe("order.placed", "pay", [&](const event&) {
    follow_up = made("order.paid");
    explicit_one = make_event({.event_type = "order.audited", .aggregate_type = "order", .aggregate_id = "o-1",
                               .correlation_id = "audit-1", .causation_id = "manual"});
  });
  REQUIRE(bus.publish(first).accepted());
  REQUIRE(follow_up.has_value());
  CHECK(follow_up->correlation_id() == "checkout-77");
  CHECK(follow_up->causation_id() == first.event_id());
  CHECK(explicit_one->correlation_id() == "audit-1");
  CHECK(explicit_one->causation_id() == "manual");
  // Outside any handler nothing is filled in.
  CHECK_FALSE(made("order.paid").causation_id().has_value());
  CHECK(current_cause() == nullptr);
}

TEST_CASE("the trace continues with a new span id, and an invalid traceparent is not continued") {
  const auto first = made("order.placed", {{"traceparent", parent_trace}});
  {
    const cause_scope scope(first);
    CHECK(current_cause() == &first);
    const auto child = made("order.paid");
    const auto& tp = child.metadata().at("traceparent");
    REQUIRE(tp.size() == 55);
    CHECK(tp.substr(0, 36) == std::string(parent_trace).substr(0, 36));  // version and trace id
    CHECK(tp.substr(36, 16) != std::string(parent_trace).substr(36, 16));  // a new span
    CHECK(tp.substr(52) == "-01");                                        // flags kept
    const auto own = made("order.paid", {{"traceparent", "00-11111111111111111111111111111111-2222222222222222-00"}});
    CHECK(own.metadata().at("traceparent") == "00-11111111111111111111111111111111-2222222222222222-00");
    {
      const auto second = made("order.shipped");
      const cause_scope inner(second);
      CHECK(current_cause() == &second);
    }
    CHECK(current_cause() == &first);  // scopes nest and restore
  }
  CHECK(current_cause() == nullptr);

  for (const std::string bad : {"", "garbage", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
                                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                                "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}) {
    CAPTURE(bad);
    CHECK_FALSE(child_traceparent(bad).has_value());
    const auto cause = made("order.placed", {{"traceparent", bad}});
    const cause_scope scope(cause);
    CHECK_FALSE(made("order.paid").metadata().contains("traceparent"));
  }
  // A later version with more fields is continued as version 00.
  const auto later = child_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more");
  REQUIRE(later.has_value());
  CHECK(later->starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
}
