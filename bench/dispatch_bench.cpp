// Local publish cost: eventbus's dispatcher (caller_thread mode) against the plainest fan-out one
// could write by hand, an unordered_map of vectors of std::function, with the same handlers.
//
//   build/werror/bench/dispatch_bench [--benchmark_repetitions=5]

#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "eventbus/dispatcher.hpp"
#include "ratio_reporter.hpp"

namespace {

eventbus::event sample_event() {
  return eventbus::make_event({.event_type = "order.created",
                               .aggregate_type = "order",
                               .aggregate_id = "o-42",
                               .payload = {{"customer", "ada"}, {"total", 99.5}}});
}

// The same work in every handler: read a field, bump a counter the compiler cannot drop.
struct handler_body {
  std::uint64_t* sink;
  void operator()(const eventbus::event& ev) const {
    *sink += ev.aggregate_id().size();
    benchmark::DoNotOptimize(*sink);
  }
};

void raw_fanout(benchmark::State& state) {
  std::uint64_t sink = 0;
  std::unordered_map<std::string, std::vector<std::function<void(const eventbus::event&)>>> handlers;
  for (int i = 0; i < state.range(0); ++i) handlers["order.created"].emplace_back(handler_body{&sink});
  handlers["payment.settled"].emplace_back(handler_body{&sink});  // a second type, as in a real map
  const auto ev = sample_event();
  for (auto _ : state) {
    if (auto it = handlers.find(ev.event_type()); it != handlers.end())
      for (auto& fn : it->second) fn(ev);
  }
  state.SetItemsProcessed(state.iterations());
}

void eventbus_inline(benchmark::State& state) {
  std::uint64_t sink = 0;
  eventbus::dispatcher bus({.mode = eventbus::dispatch_mode::caller_thread});
  std::vector<eventbus::subscription> subs;
  for (int i = 0; i < state.range(0); ++i)
    subs.push_back(bus.subscribe("order.created", "h" + std::to_string(i), handler_body{&sink}));
  subs.push_back(bus.subscribe("payment.settled", "other", handler_body{&sink}));
  const auto ev = sample_event();
  for (auto _ : state) {
    auto outcome = bus.publish(ev);
    benchmark::DoNotOptimize(outcome);
  }
  state.SetItemsProcessed(state.iterations());
}

BENCHMARK(raw_fanout)->ArgName("handlers")->Arg(1)->Arg(4);
BENCHMARK(eventbus_inline)->ArgName("handlers")->Arg(1)->Arg(4);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  eventbus::bench::ratio_reporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  reporter.print_ratios({{"eventbus_inline/handlers:1", "raw_fanout/handlers:1"},
                         {"eventbus_inline/handlers:4", "raw_fanout/handlers:4"}});
  benchmark::Shutdown();
  return 0;
}
