// Many publishers while subscriptions come and go: run under TSan by the test command.

#include <doctest/doctest.h>

#include <atomic>
#include <thread>

#include "eventbus/dispatcher.hpp"
#include "test_support.hpp"

using namespace eventbus;
using eventbus::testing::make_test_event;

namespace {

void stress(dispatch_mode mode) {
  dispatcher bus({.mode = mode, .pool_size = 3, .queue_capacity = 256, .enqueue_timeout = std::chrono::seconds(30)});
  constexpr int publishers = 3;
  constexpr int per_publisher = 3000;

  std::atomic<int> stable_calls{0};
  auto stable = bus.subscribe("order.*", "stable", [&](const event&) { stable_calls.fetch_add(1); });

  // A handler subscribed and unsubscribed over and over. After unsubscribe() returns, a call of it
  // must never start (each registration checks that its own "retired" flag is still clear) and
  // none may still be running (each counts its calls in progress).
  std::atomic<int> violations{0};
  std::atomic<bool> stop{false};
  std::thread churner([&] {
    int round = 0;
    while (!stop.load()) {
      auto retired = std::make_shared<std::atomic<bool>>(false);
      auto running = std::make_shared<std::atomic<int>>(0);
      auto sub = bus.subscribe(round % 2 ? "order.created" : "*", "churn", [retired, running, &violations](const event&) {
        running->fetch_add(1);
        if (retired->load()) violations.fetch_add(1);
        for (int spin = 0; spin < 50; ++spin) std::atomic_signal_fence(std::memory_order_seq_cst);  // a call that takes a moment
        running->fetch_sub(1);
      });
      std::this_thread::yield();
      sub.unsubscribe();
      if (running->load() != 0) violations.fetch_add(1);
      retired->store(true);
      ++round;
    }
  });

  std::vector<std::thread> threads;
  std::atomic<int> accepted{0};
  for (int p = 0; p < publishers; ++p)
    threads.emplace_back([&, p] {
      for (int i = 0; i < per_publisher; ++i) {
        auto type = i % 3 == 0 ? "order.created" : i % 3 == 1 ? "order.paid" : "order.shipped";
        if (bus.publish(make_test_event(type, std::to_string(p))).accepted()) accepted.fetch_add(1);
      }
    });
  for (auto& t : threads) t.join();
  stop = true;
  churner.join();
  bus.shutdown();

  CHECK(accepted.load() == publishers * per_publisher);
  CHECK(stable_calls.load() == publishers * per_publisher);
  CHECK(violations.load() == 0);
  CHECK(bus.stats().published == static_cast<std::uint64_t>(publishers * per_publisher));
}

}  // namespace

TEST_CASE("concurrent publish with subscription churn, thread pool") { stress(dispatch_mode::thread_pool); }

TEST_CASE("concurrent publish with subscription churn, caller thread") { stress(dispatch_mode::caller_thread); }
