// Subscribing, matching, unsubscribing, isolation and sinks, with handlers run on the caller's thread.

#include <doctest/doctest.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "eventbus/dispatcher.hpp"
#include "eventbus/log.hpp"
#include "test_support.hpp"

using namespace eventbus;
using eventbus::testing::gate;
using eventbus::testing::make_test_event;
using eventbus::testing::wait_until;

namespace {

dispatcher inline_bus() { return dispatcher({.mode = dispatch_mode::caller_thread}); }

// Records which handler saw which event type, in call order.
struct recorder {
  std::vector<std::string> calls;
  handler_fn as(std::string name) {
    return [this, name](const event& ev) { calls.push_back(name + ":" + ev.event_type()); };
  }
};

// Captures eventbus log lines for the duration of a test.
struct captured_log {
  std::mutex mu;
  std::vector<std::string> lines;
  captured_log() {
    set_log_sink([this](log_level, std::string_view line) {
      const std::lock_guard lock(mu);
      lines.emplace_back(line);
    });
  }
  ~captured_log() { set_log_sink({}); }
};

error subscribe_error(dispatcher& bus, std::string pattern, std::string name, handler_fn fn) {
  try {
    auto sub = bus.subscribe(std::move(pattern), std::move(name), std::move(fn));
  } catch (const exception& e) {
    return e.error();
  }
  FAIL("subscribe did not throw");
  return error(errc::invalid_argument, "");
}

struct publish_all {
  dispatcher& bus;
  void operator()(std::initializer_list<const char*> types) const {
    for (const char* t : types) REQUIRE(bus.publish(make_test_event(t)).accepted());
  }
};

}  // namespace

TEST_CASE("exact, prefix and wildcard patterns match as documented") {
  dispatcher bus({.mode = dispatch_mode::caller_thread});
  recorder r;
  auto exact = bus.subscribe("order.created", "exact", r.as("exact"));
  auto prefix = bus.subscribe("order.*", "prefix", r.as("prefix"));
  auto deep = bus.subscribe("order.item.*", "deep", r.as("deep"));
  auto all = bus.subscribe("*", "all", r.as("all"));

  publish_all{bus}({"order.created", "order.item.added", "orders.created", "payment.settled"});
  CHECK(r.calls == std::vector<std::string>{
                       "exact:order.created", "prefix:order.created", "all:order.created",   //
                       "prefix:order.item.added", "deep:order.item.added", "all:order.item.added",  //
                       "all:orders.created",                                                 // not "order.*"
                       "all:payment.settled"});
}

TEST_CASE("handlers of one event start in subscription order, whatever their pattern kind") {
  auto bus = inline_bus();
  recorder r;
  auto a = bus.subscribe("*", "a", r.as("a"));
  auto b = bus.subscribe("order.created", "b", r.as("b"));
  auto c = bus.subscribe("order.*", "c", r.as("c"));
  auto d = bus.subscribe("order.created", "d", r.as("d"));
  publish_all{bus}({"order.created"});
  CHECK(r.calls == std::vector<std::string>{"a:order.created", "b:order.created", "c:order.created", "d:order.created"});
}

TEST_CASE("an exact type's handlers follow prefix and wildcard subscriptions made or removed after them") {
  auto bus = inline_bus();
  recorder r;
  auto exact = bus.subscribe("order.created", "exact", r.as("exact"));
  publish_all{bus}({"order.created"});
  auto prefix = bus.subscribe("order.*", "prefix", r.as("prefix"));
  auto other = bus.subscribe("payment.*", "other", r.as("other"));
  auto all = bus.subscribe("*", "all", r.as("all"));
  publish_all{bus}({"order.created"});
  prefix.unsubscribe();
  publish_all{bus}({"order.created"});
  CHECK(r.calls == std::vector<std::string>{"exact:order.created",                                            //
                                            "exact:order.created", "prefix:order.created", "all:order.created",  //
                                            "exact:order.created", "all:order.created"});
}

TEST_CASE("a subscription unsubscribes when destroyed, explicitly, or by clear") {
  auto bus = inline_bus();
  int count = 0;
  auto counter = [&](const event&) { ++count; };
  {
    auto scoped = bus.subscribe("order.created", "scoped", counter);
    CHECK(scoped.active());
    publish_all{bus}({"order.created"});
  }
  publish_all{bus}({"order.created"});
  CHECK(count == 1);

  auto explicit_sub = bus.subscribe("order.created", "explicit", counter);
  explicit_sub.unsubscribe();
  explicit_sub.unsubscribe();  // idempotent
  CHECK_FALSE(explicit_sub.active());
  publish_all{bus}({"order.created"});
  CHECK(count == 1);

  auto a = bus.subscribe("order.created", "a", counter);
  auto b = bus.subscribe("*", "b", counter);
  bus.clear();
  CHECK_FALSE(a.active());
  CHECK_FALSE(b.active());
  publish_all{bus}({"order.created"});
  CHECK(count == 1);
  auto again = bus.subscribe("order.created", "a", counter);  // the name is free again
  publish_all{bus}({"order.created"});
  CHECK(count == 2);
}

TEST_CASE("moving a subscription moves the ownership, which may outlive the dispatcher") {
  subscription kept;
  int count = 0;
  {
    auto bus = inline_bus();
    auto sub = bus.subscribe("order.created", "h", [&](const event&) { ++count; });
    kept = std::move(sub);
    CHECK_FALSE(sub.active());  // NOLINT(bugprone-use-after-move): moved-from is documented empty
    CHECK(kept.active());
    publish_all{bus}({"order.created"});
  }
  CHECK(count == 1);
  CHECK_FALSE(kept.active());
  kept.unsubscribe();  // the dispatcher is gone: nothing happens
}

TEST_CASE("one function may subscribe to several types") {
  auto bus = inline_bus();
  std::vector<std::string> seen;
  handler_fn shared = [&](const event& ev) { seen.push_back(ev.event_type()); };
  auto s1 = bus.subscribe("order.created", "audit", shared);
  auto s2 = bus.subscribe("payment.settled", "audit", shared);
  publish_all{bus}({"order.created", "payment.settled", "order.cancelled"});
  CHECK(seen == std::vector<std::string>{"order.created", "payment.settled"});
}

TEST_CASE("bad subscriptions are refused with the reason") {
  auto bus = inline_bus();
  auto noop = [](const event&) {};
  for (const char* pattern : {"", "Order.created", "order", "order.", "order.**", "*.created", "order.*.x", "**"}) {
    CAPTURE(pattern);
    const auto err = subscribe_error(bus, pattern, "h", noop);
    CHECK(err.code() == errc::invalid_argument);
    CHECK(err.field() == "pattern");
  }
  CHECK(subscribe_error(bus, "order.created", "", noop).field() == "handler_name");
  CHECK(subscribe_error(bus, "order.created", "h", handler_fn{}).field() == "handler");
  auto first = bus.subscribe("order.created", "h", noop);
  const auto dup = subscribe_error(bus, "order.created", "h", noop);
  CHECK(dup.field() == "handler_name");
  CHECK(dup.message().find("already subscribed") != std::string::npos);
}

TEST_CASE("a throwing handler is isolated: the others run, the failure is logged and counted") {
  captured_log log;
  auto bus = inline_bus();
  std::vector<std::string> ran;
  auto first = bus.subscribe("order.created", "first", [&](const event&) { ran.push_back("first"); });
  auto middle = bus.subscribe("order.created", "middle", [&](const event&) -> void {
    ran.push_back("middle");
    throw std::runtime_error("inventory service down");
  });
  auto odd = bus.subscribe("order.created", "odd", [&](const event&) -> void {
    ran.push_back("odd");
    throw 42;  // not a std::exception
  });
  auto last = bus.subscribe("order.created", "last", [&](const event&) { ran.push_back("last"); });

  const auto ev = make_test_event("order.created");
  auto outcome = bus.publish(ev);  // the publisher never sees the exception
  CHECK(outcome.accepted());
  CHECK(ran == std::vector<std::string>{"first", "middle", "odd", "last"});
  CHECK(bus.stats().handler_failures == 2);
  CHECK(bus.stats().published == 1);

  REQUIRE(log.lines.size() == 2);
  CHECK(log.lines[0].find("'middle'") != std::string::npos);
  CHECK(log.lines[0].find(ev.event_id()) != std::string::npos);
  CHECK(log.lines[0].find("inventory service down") != std::string::npos);
  CHECK(log.lines[1].find("'odd'") != std::string::npos);
}

TEST_CASE("a handler may unsubscribe itself, subscribe others and publish, inline") {
  auto bus = inline_bus();
  subscription self;
  int self_calls = 0, follow_ups = 0;
  std::vector<subscription> added;
  self = bus.subscribe("order.created", "once", [&](const event&) {
    ++self_calls;
    self.unsubscribe();  // must not wait for its own call
    added.push_back(bus.subscribe("order.confirmed", "follow", [&](const event&) { ++follow_ups; }));
    REQUIRE(bus.publish(make_test_event("order.confirmed")).accepted());  // nested: runs now
  });
  publish_all{bus}({"order.created", "order.created"});
  CHECK(self_calls == 1);
  CHECK(follow_ups == 1);
}

TEST_CASE("a handler that unsubscribes a later handler of the same event skips that handler's call") {
  auto bus = inline_bus();
  recorder seen;
  subscription last;
  auto first = bus.subscribe("order.created", "first", [&](const event& ev) {
    seen.calls.push_back("first:" + ev.event_type());
    last.unsubscribe();  // not running: returns at once, and its call in this publish must not start
  });
  auto middle = bus.subscribe("order.created", "middle", seen.as("middle"));
  last = bus.subscribe("order.created", "last", seen.as("last"));
  publish_all{bus}({"order.created"});
  CHECK(seen.calls == std::vector<std::string>{"first:order.created", "middle:order.created"});
}

// One publish holds one call slot for all its handlers and points it at each in turn: removing a
// handler whose call has ended must not wait for the handlers after it, and removing one that has
// not started yet must keep it from starting.
TEST_CASE("unsubscribing from another thread during a publish: an ended call is not waited for, a later one never starts") {
  auto bus = inline_bus();
  gate first_may_end, removals_done;
  std::atomic<int> first_calls{0}, third_calls{0};
  std::atomic<bool> in_second{false};
  auto first = bus.subscribe("order.created", "first", [&](const event&) {
    first_calls.fetch_add(1);
    first_may_end.wait();
  });
  auto second = bus.subscribe("order.created", "second", [&](const event&) {
    in_second = true;
    removals_done.wait(std::chrono::seconds(20));  // opened only once `first` was unsubscribed
  });
  auto third = bus.subscribe("order.created", "third", [&](const event&) { third_calls.fetch_add(1); });

  std::thread publisher([&] { REQUIRE(bus.publish(make_test_event()).accepted()); });
  REQUIRE(wait_until([&] { return first_may_end.waiting() == 1; }));
  third.unsubscribe();  // not started: returns while `first` still runs
  CHECK(first_may_end.waiting() == 1);
  first_may_end.open();
  REQUIRE(wait_until([&] { return in_second.load(); }));
  const auto start = std::chrono::steady_clock::now();
  first.unsubscribe();  // its call ended; `second` runs now and waits for this to return
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(10));
  removals_done.open();
  publisher.join();
  CHECK(first_calls.load() == 1);
  CHECK(third_calls.load() == 0);
}

TEST_CASE("call and publish counts stay exact with several threads publishing") {
  auto bus = inline_bus();
  std::atomic<int> calls{0};
  auto sub = bus.subscribe("order.*", "counted", [&](const event&) { calls.fetch_add(1); });
  constexpr int threads = 3, each = 2000;
  std::vector<std::thread> publishers;
  for (int t = 0; t < threads; ++t)
    publishers.emplace_back([&] {
      for (int i = 0; i < each; ++i) REQUIRE(bus.publish(make_test_event("order.created")).accepted());
    });
  for (auto& p : publishers) p.join();
  CHECK(calls.load() == threads * each);
  CHECK(bus.stats().published == std::uint64_t{threads * each});
  const auto rows = bus.handlers();
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].calls == std::uint64_t{threads * each});
}

TEST_CASE("after shutdown, publish is rejected with shut_down") {
  auto bus = inline_bus();
  int count = 0;
  auto sub = bus.subscribe("*", "h", [&](const event&) { ++count; });
  bus.shutdown();
  bus.shutdown();  // idempotent
  auto outcome = bus.publish(make_test_event());
  REQUIRE_FALSE(outcome.accepted());
  CHECK(outcome.rejection().code() == errc::shut_down);
  CHECK(outcome.wait().error().code() == errc::shut_down);
  CHECK(count == 0);
  CHECK(bus.stats().rejected == 1);
}

namespace {

// A sink that records what it is given and acknowledges with an increasing offset.
class recording_sink : public event_sink {
 public:
  std::string_view name() const noexcept override { return "recording"; }
  delivery_future accept(const event& ev) override {
    if (ev.aggregate_id() == "explode") throw std::runtime_error("sink exploded");
    received.push_back(ev.event_id());
    if (ev.aggregate_id() == "refuse") return delivery_future::ready(error(errc::delivery_failed, "refused"));
    return delivery_future::ready(delivery{.sink = "recording", .topic = "t", .partition = 0, .offset = next_offset++});
  }
  std::vector<std::string> received;
  std::int64_t next_offset = 0;
};

}  // namespace

TEST_CASE("sinks get every accepted event after local dispatch, and report the delivery") {
  auto bus = inline_bus();
  auto sink = std::make_shared<recording_sink>();
  bus.add_sink(sink);
  std::vector<std::string> order;
  auto sub = bus.subscribe("*", "h", [&](const event&) {
    order.push_back("handler saw " + std::to_string(sink->received.size()) + " in sink");
  });

  const auto ev = make_test_event();
  auto outcome = bus.publish(ev);
  REQUIRE(outcome.accepted());
  auto deliveries = outcome.wait();
  REQUIRE(deliveries.ok());
  REQUIRE(deliveries.value().size() == 1);
  CHECK(deliveries.value()[0].offset == 0);
  CHECK(sink->received == std::vector<std::string>{ev.event_id()});
  CHECK(order == std::vector<std::string>{"handler saw 0 in sink"});  // local dispatch came first
  CHECK(outcome.wait().ok());  // waiting twice gives the same outcome

  auto refused = bus.publish(make_test_event("order.created", "refuse"));
  CHECK(refused.accepted());
  CHECK(refused.wait().error().code() == errc::delivery_failed);

  auto exploded = bus.publish(make_test_event("order.created", "explode"));
  const auto exploded_outcome = exploded.wait();
  REQUIRE_FALSE(exploded_outcome.ok());
  CHECK(exploded_outcome.error().message().find("sink exploded") != std::string::npos);

  CHECK_THROWS_AS(bus.add_sink(nullptr), eventbus::exception);
}
