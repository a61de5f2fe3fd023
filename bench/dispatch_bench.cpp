// Local publish cost: eventbus's dispatcher (caller_thread mode) against the plainest fan-out one
// could write by hand, an unordered_map of vectors of std::function, with the same handlers. And
// the worker's per-record decode: decode_event of a ~350 B envelope against nlohmann::json::parse
// of the same bytes (what a hand-written consumer reading JSON pays) and against decode_event's own
// nlohmann path.
//
//   build/werror/bench/dispatch_bench [--benchmark_repetitions=5]

#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "envelope/event_data.hpp"
#include "eventbus/dispatcher.hpp"
#include "eventbus/metrics.hpp"
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

// The worker_bench envelope: ~350 B with a correlation id and a small nested payload.
std::string sample_record() {
  return eventbus::encode_event(eventbus::make_event(
      {.event_type = "order.created",
       .aggregate_type = "order",
       .aggregate_id = "order-4711",
       .payload = {{"seq", 123456}, {"customer_id", "c-977"}, {"total_cents", 4999}, {"currency", "EUR"},
                   {"items", {{{"sku", "SKU-299"}, {"qty", 3}}}}},
       .correlation_id = "corr-123456"}));
}

// Runs `read` on the sample record once per iteration.
template <class Read>
void each_record(benchmark::State& state, Read read) {
  const auto bytes = sample_record();
  for (auto _ : state) read(bytes);
  state.SetItemsProcessed(state.iterations());
}

void raw_json_parse(benchmark::State& state) {
  each_record(state, [](const std::string& bytes) {
    auto value = nlohmann::json::parse(bytes, nullptr, false);
    benchmark::DoNotOptimize(value);
  });
}

void decode_event(benchmark::State& state) {
  each_record(state, [](const std::string& bytes) {
    auto ev = eventbus::decode_event(bytes);
    benchmark::DoNotOptimize(ev);
  });
}

// The same, and a handler reads the payload (built from the record on first read).
void decode_event_read_payload(benchmark::State& state) {
  each_record(state, [](const std::string& bytes) {
    auto ev = eventbus::decode_event(bytes);
    benchmark::DoNotOptimize(ev.value().payload().size());
  });
}

void decode_event_nlohmann_path(benchmark::State& state) {
  each_record(state, [](const std::string& bytes) {
    auto ev = eventbus::detail::decode_event_nlohmann(bytes);
    benchmark::DoNotOptimize(ev);
  });
}

// Building an event: the payload a service would build (~350 B envelope with the ids), alone, and
// passed to make_event (new UUID, timestamp, validation, the wire form written once).
nlohmann::json order_payload(std::int64_t i) {
  return {{"seq", i}, {"customer_id", "c-977"}, {"total_cents", 4999}, {"currency", "EUR"},
          {"items", {{{"sku", "SKU-299"}, {"qty", 3}}}}};
}

void build_payload_only(benchmark::State& state) {
  std::int64_t i = 0;
  for (auto _ : state) {
    auto payload = order_payload(++i);
    benchmark::DoNotOptimize(payload);
  }
  state.SetItemsProcessed(state.iterations());
}

void make_event_with_payload(benchmark::State& state) {
  std::int64_t i = 0;
  for (auto _ : state) {
    auto ev = eventbus::make_event({.event_type = "order.created",
                                    .aggregate_type = "order",
                                    .aggregate_id = "order-4711",
                                    .payload = order_payload(++i),
                                    .correlation_id = "corr-123456"});
    benchmark::DoNotOptimize(ev);
  }
  state.SetItemsProcessed(state.iterations());
}

BENCHMARK(build_payload_only);
BENCHMARK(make_event_with_payload);
BENCHMARK(raw_json_parse);
BENCHMARK(decode_event);
BENCHMARK(decode_event_read_payload);
BENCHMARK(decode_event_nlohmann_path);
// The same, with the handler-latency histogram on (what services with metrics run).
void eventbus_inline_histogram(benchmark::State& state) {
  std::uint64_t sink = 0;
  auto metrics = std::make_shared<eventbus::metrics>();
  eventbus::dispatcher bus({.mode = eventbus::dispatch_mode::caller_thread,
                            .observe_handler = eventbus::metrics::handler_observer_for(metrics)});
  std::vector<eventbus::subscription> subs;
  for (int i = 0; i < state.range(0); ++i)
    subs.push_back(bus.subscribe("order.created", "h" + std::to_string(i), handler_body{&sink}));
  const auto ev = sample_event();
  for (auto _ : state) {
    auto outcome = bus.publish(ev);
    benchmark::DoNotOptimize(outcome);
  }
  state.SetItemsProcessed(state.iterations());
}

BENCHMARK(raw_fanout)->ArgName("handlers")->Arg(1)->Arg(4);
BENCHMARK(eventbus_inline_histogram)->ArgName("handlers")->Arg(1)->Arg(4);
BENCHMARK(eventbus_inline)->ArgName("handlers")->Arg(1)->Arg(4);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  eventbus::bench::ratio_reporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  reporter.print_ratios({{"eventbus_inline/handlers:1", "raw_fanout/handlers:1"},
                         {"eventbus_inline/handlers:4", "raw_fanout/handlers:4"},
                         {"decode_event", "raw_json_parse"},
                         {"decode_event_nlohmann_path", "raw_json_parse"}});
  benchmark::Shutdown();
  return 0;
}
