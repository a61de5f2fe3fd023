// The thread-pool mode: parallel handlers, backpressure, draining on shutdown, waiting unsubscribe.

#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "eventbus/dispatcher.hpp"
#include "eventbus/log.hpp"
#include "test_support.hpp"

using namespace eventbus;
using namespace std::chrono_literals;
using eventbus::testing::make_test_event;
using eventbus::testing::wait_until;

namespace {

using eventbus::testing::gate;

std::optional<error> options_error(dispatcher_options options) {
  try {
    options.validate();
  } catch (const exception& e) {
    return e.error();
  }
  return std::nullopt;
}

}  // namespace

TEST_CASE("a full queue makes publish wait, then fail with queue_full and loses nothing accepted") {
  dispatcher bus({.mode = dispatch_mode::thread_pool, .pool_size = 1, .queue_capacity = 2, .enqueue_timeout = 50ms});
  gate g;
  std::atomic<int> handled{0};
  auto sub = bus.subscribe("order.created", "blocked", [&](const event&) {
    g.wait();
    handled.fetch_add(1);
  });

  REQUIRE(bus.publish(make_test_event()).accepted());  // taken by the only thread
  REQUIRE(wait_until([&] { return g.waiting() == 1; }));
  REQUIRE(bus.publish(make_test_event()).accepted());  // queued
  REQUIRE(bus.publish(make_test_event()).accepted());  // queued: now full

  const auto start = std::chrono::steady_clock::now();
  auto refused = bus.publish(make_test_event());
  const auto waited = std::chrono::steady_clock::now() - start;
  REQUIRE_FALSE(refused.accepted());
  CHECK(refused.rejection().code() == errc::queue_full);
  CHECK(refused.rejection().retriable());
  CHECK(refused.rejection().message().find("capacity 2") != std::string::npos);
  CHECK(waited >= 45ms);  // it did wait for room before giving up
  CHECK(bus.stats().rejected == 1);
  CHECK(bus.stats().published == 3);

  g.open();
  REQUIRE(wait_until([&] { return handled.load() == 3; }));
  REQUIRE(bus.publish(make_test_event()).accepted());  // room again
  bus.shutdown();
  CHECK(handled.load() == 4);
}

TEST_CASE("a publisher blocked on a full queue proceeds as soon as room appears") {
  dispatcher bus({.mode = dispatch_mode::thread_pool, .pool_size = 1, .queue_capacity = 1, .enqueue_timeout = 10s});
  gate g;
  auto sub = bus.subscribe("order.created", "blocked", [&](const event&) { g.wait(); });
  REQUIRE(bus.publish(make_test_event()).accepted());
  REQUIRE(wait_until([&] { return g.waiting() == 1; }));
  REQUIRE(bus.publish(make_test_event()).accepted());  // fills the queue

  std::atomic<bool> third_accepted{false};
  std::thread publisher([&] { third_accepted = bus.publish(make_test_event()).accepted(); });
  g.open();
  publisher.join();
  CHECK(third_accepted.load());
}

TEST_CASE("shutdown drains every scheduled call, including follow-ups handlers publish") {
  dispatcher bus({.mode = dispatch_mode::thread_pool, .pool_size = 2, .queue_capacity = 8});
  std::atomic<int> created{0}, confirmed{0};
  auto on_created = bus.subscribe("order.created", "confirm", [&](const event& ev) {
    created.fetch_add(1);
    // From a pool thread: never blocks on the full queue, so this cannot deadlock.
    REQUIRE(bus.publish(make_test_event("order.confirmed", ev.aggregate_id())).accepted());
  });
  auto on_confirmed = bus.subscribe("order.confirmed", "count", [&](const event&) { confirmed.fetch_add(1); });

  for (int i = 0; i < 200; ++i) REQUIRE(bus.publish(make_test_event("order.created", std::to_string(i))).accepted());
  bus.shutdown();
  CHECK(created.load() == 200);
  CHECK(confirmed.load() == 200);
  CHECK(bus.publish(make_test_event()).rejection().code() == errc::shut_down);
}

TEST_CASE("unsubscribe waits for a running call of that handler to finish") {
  dispatcher bus({.mode = dispatch_mode::thread_pool, .pool_size = 2});
  gate g;
  std::atomic<bool> finished{false};
  auto sub = bus.subscribe("order.created", "slow", [&](const event&) {
    g.wait();
    finished = true;
  });
  REQUIRE(bus.publish(make_test_event()).accepted());
  REQUIRE(wait_until([&] { return g.waiting() == 1; }));

  std::atomic<bool> unsubscribed{false};
  std::thread remover([&] {
    sub.unsubscribe();
    unsubscribed = true;
    CHECK(finished.load());  // returned only after the call ended
  });
  g.open();
  remover.join();
  CHECK(unsubscribed.load());
}

namespace {

// A call `depth` levels deep (each level publishes the next) blocks; unsubscribe must return only
// after every level ended. Level 0 events are probes that only count.
void unsubscribe_waits_for_nested_calls(int depth) {
  CAPTURE(depth);
  dispatcher bus({.mode = dispatch_mode::caller_thread});
  gate g;
  std::atomic<int> ended{0}, probes{0};
  auto sub = bus.subscribe("order.created", "nested", [&](const event& ev) {
    const int level = ev.payload()["level"].get<int>();
    if (level == 0) {
      probes.fetch_add(1);
      return;
    }
    if (level < depth)
      (void)bus.publish(make_test_event("order.created", "o-1", {{"level", level + 1}}));
    else
      g.wait();
    ended.fetch_add(1);
  });
  std::thread caller([&] { (void)bus.publish(make_test_event("order.created", "o-1", {{"level", 1}})); });
  REQUIRE(wait_until([&] { return g.waiting() == 1; }));

  std::atomic<bool> returned{false};
  std::thread remover([&] {
    sub.unsubscribe();
    CHECK(ended.load() == depth);  // returned only after every level ended
    returned = true;
  });
  // Once a probe no longer reaches the handler, the remover is inside unsubscribe: it must still be there.
  REQUIRE(wait_until([&] {
    const int before = probes.load();
    (void)bus.publish(make_test_event("order.created", "o-1", {{"level", 0}}));
    return probes.load() == before;
  }));
  CHECK_FALSE(returned.load());
  g.open();
  remover.join();
  caller.join();
  CHECK(returned.load());
}

}  // namespace

TEST_CASE("unsubscribe waits for every nested call of the handler, deeper than a thread keeps in slots too") {
  // A running call is marked in a slot of its thread (8 of them), deeper ones in a count: the
  // remover must wait for both kinds.
  for (const int depth : {1, 3, 12}) unsubscribe_waits_for_nested_calls(depth);
}

TEST_CASE("in a forked child, unsubscribe does not wait for calls the parent's other threads were making") {
  dispatcher bus({.mode = dispatch_mode::caller_thread});
  gate g;
  auto sub = bus.subscribe("order.created", "held", [&](const event&) { g.wait(); });
  std::thread caller([&] { (void)bus.publish(make_test_event()); });
  REQUIRE(wait_until([&] { return g.waiting() == 1; }));
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {  // one thread here: the call above does not exist in this process
    alarm(10);        // a hang ends the child with SIGALRM
    sub.unsubscribe();
    _exit(0);
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  g.open();
  caller.join();
}

TEST_CASE("a failing handler on the pool is isolated and counted") {
  set_log_level(log_level::off);
  dispatcher bus({.pool_size = 2});
  std::atomic<int> ok{0};
  auto bad = bus.subscribe("order.created", "bad", [](const event&) { throw std::runtime_error("boom"); });
  auto good = bus.subscribe("order.created", "good", [&](const event&) { ok.fetch_add(1); });
  for (int i = 0; i < 50; ++i) REQUIRE(bus.publish(make_test_event()).accepted());
  bus.shutdown();
  set_log_level(log_level::info);
  CHECK(ok.load() == 50);
  CHECK(bus.stats().handler_failures == 50);
}

TEST_CASE("unusable options are refused, naming the option") {
  CHECK(options_error({.pool_size = 0})->field() == "pool_size");
  CHECK(options_error({.pool_size = 5000})->field() == "pool_size");
  CHECK(options_error({.queue_capacity = 0})->field() == "queue_capacity");
  CHECK(options_error({.enqueue_timeout = -1ms})->field() == "enqueue_timeout");
  CHECK(options_error({.priority_levels = 0})->field() == "priority_levels");
  CHECK(options_error({.priority_levels = 17})->message().find("got 17") != std::string::npos);
  CHECK_FALSE(options_error({.mode = dispatch_mode::caller_thread, .pool_size = 0}).has_value());
  CHECK_THROWS_AS(dispatcher({.pool_size = 0}), eventbus::exception);
}

TEST_CASE("a free thread starts the oldest call of the highest priority waiting, and each level keeps publish order") {
  dispatcher bus({.pool_size = 1, .priority_levels = 3});
  gate g;
  std::mutex mu;
  std::vector<std::string> order;
  auto blocker = bus.subscribe("gate.closed", "blocker", [&](const event&) { g.wait(); });
  auto recorder = bus.subscribe("order.*", "recorder", [&](const event& ev) {
    const std::lock_guard lock(mu);
    order.push_back(ev.aggregate_id());
  });
  REQUIRE(bus.publish(make_test_event("gate.closed")).accepted());
  REQUIRE(wait_until([&] { return g.waiting() == 1; }));  // the only thread is busy: the rest queues
  for (const auto& [id, priority] : std::vector<std::pair<std::string, std::size_t>>{
           {"low-1", 0}, {"high-1", 2}, {"mid-1", 1}, {"low-2", 0}, {"high-2", 2}, {"mid-2", 1}, {"low-3", 0}})
    REQUIRE(bus.publish(make_test_event("order.created", id), {.priority = priority}).accepted());
  g.open();
  bus.shutdown();
  CHECK(order == std::vector<std::string>{"high-1", "high-2", "mid-1", "mid-2", "low-1", "low-2", "low-3"});
}

TEST_CASE("a priority the dispatcher does not have is rejected, naming it, and nothing of the event runs") {
  dispatcher bus({.pool_size = 1, .priority_levels = 2});
  std::atomic<int> handled{0};
  auto sub = bus.subscribe("order.created", "counter", [&](const event&) { handled.fetch_add(1); });
  const auto refused = bus.publish(make_test_event(), {.priority = 2});
  REQUIRE_FALSE(refused.accepted());
  CHECK(refused.rejection().code() == errc::invalid_argument);
  CHECK(refused.rejection().field() == "priority");
  CHECK(refused.rejection().message().find("0..1") != std::string::npos);
  CHECK(bus.stats().rejected == 1);
  REQUIRE(bus.publish(make_test_event(), {.priority = 1}).accepted());
  bus.shutdown();
  CHECK(handled.load() == 1);
  CHECK(bus.stats().published == 1);
  // The range holds in caller_thread mode too (the default of one level takes only 0).
  dispatcher inline_bus({.mode = dispatch_mode::caller_thread});
  CHECK_FALSE(inline_bus.publish(make_test_event(), {.priority = 1}).accepted());
}
