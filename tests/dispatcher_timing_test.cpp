// Timing of the thread pool: runs alone (RUN_SERIAL), so other suites do not steal its cores.

#include <doctest/doctest.h>

#include <atomic>
#include <thread>

#include "eventbus/dispatcher.hpp"
#include "test_support.hpp"

using namespace eventbus;
using namespace std::chrono_literals;
using eventbus::testing::make_test_event;
using eventbus::testing::wait_until;

TEST_CASE("handlers of one event run in parallel on the pool") {
  dispatcher bus({.mode = dispatch_mode::thread_pool, .pool_size = 3});
  std::atomic<int> done{0};
  auto slow = [&](const event&) {
    std::this_thread::sleep_for(100ms);  // the simulated work being measured, not synchronisation
    done.fetch_add(1);
  };
  auto a = bus.subscribe("order.created", "a", slow);
  auto b = bus.subscribe("order.created", "b", slow);
  auto c = bus.subscribe("order.created", "c", slow);

  const auto start = std::chrono::steady_clock::now();
  REQUIRE(bus.publish(make_test_event()).accepted());
  REQUIRE(wait_until([&] { return done.load() == 3; }));
  const auto elapsed = std::chrono::steady_clock::now() - start;
  CHECK(elapsed < 250ms);  // serially it would take 300 ms
}
