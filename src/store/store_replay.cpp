// Replaying stored history through handlers or to Kafka (store_replay.hpp).

#include "eventbus/store/store_replay.hpp"

#include <atomic>
#include <limits>

namespace eventbus {
namespace {

std::uint64_t limit_of(const store_replay_options& options) {
  return options.limit == 0 ? std::numeric_limits<std::uint64_t>::max() : options.limit;
}

}  // namespace

result<store_replay_summary> replay_to_handlers(event_store& store, dispatcher& handlers,
                                                const store_replay_options& options) {
  store_replay_summary summary;
  const auto limit = limit_of(options);
  auto read = store.read_all(options.filter, [&](const stored_event& e) {
    if (summary.events >= limit) return false;
    const auto run = handlers.run_handlers(e.ev);
    ++summary.events;
    summary.handler_calls += run.calls;
    summary.handler_failures += run.failures;
    if (options.progress) options.progress(summary);
    return true;
  });
  if (!read) return read.error();
  return summary;
}

result<store_replay_summary> replay_to_kafka(event_store& store, kafka_sink& sink, const store_replay_options& options) {
  // Acknowledgements arrive on librdkafka's threads; the summary is assembled from these counters.
  struct tallies {
    std::atomic<std::uint64_t> delivered{0};
    std::atomic<std::uint64_t> failed{0};
  };
  const auto counts = std::make_shared<tallies>();  // outlives a flush that times out
  store_replay_summary summary;
  const auto limit = limit_of(options);
  const auto snapshot = [&] {
    summary.delivered = counts->delivered.load(std::memory_order_relaxed);
    summary.failed = counts->failed.load(std::memory_order_relaxed);
  };
  auto read = store.read_all(options.filter, [&](const stored_event& e) {
    if (summary.events >= limit) return false;
    sink.produce(e.ev, [counts](result<delivery> d) {
      (d ? counts->delivered : counts->failed).fetch_add(1, std::memory_order_relaxed);
    });
    ++summary.events;
    if (options.progress) {
      snapshot();
      options.progress(summary);
    }
    return true;
  });
  auto flushed = sink.flush(options.flush_timeout);
  snapshot();
  if (!read) return read.error();
  if (!flushed) return flushed.error();
  return summary;
}

}  // namespace eventbus
