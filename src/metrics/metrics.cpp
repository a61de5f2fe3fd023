#include "eventbus/metrics.hpp"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <functional>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_map>

namespace eventbus {
namespace {

// A cache of series by their joined label values: prometheus-cpp's Family::Add hashes a label map
// under its own lock on every call, too slow for a per-handler-call path.
template <class Metric>
class series_cache {
 public:
  template <class Make>
  Metric& get(const std::string& key, Make&& make) {
    {
      const std::shared_lock lock(mu_);
      if (const auto it = series_.find(key); it != series_.end()) return *it->second;
    }
    const std::unique_lock lock(mu_);
    auto& slot = series_[key];
    if (slot == nullptr) slot = &make();
    return *slot;
  }

 private:
  std::shared_mutex mu_;
  std::unordered_map<std::string, Metric*> series_;
};

// The labels joined, in a per-thread buffer: a lookup of a known series allocates nothing.
const std::string& key_of(std::initializer_list<std::string_view> parts) {
  thread_local std::string key;
  key.clear();
  for (const auto p : parts) {
    key.append(p);
    key.push_back('\x1f');  // unit separator: cannot appear in a handler name, type or topic
  }
  return key;
}

}  // namespace

struct metrics::impl {
  explicit impl(std::shared_ptr<prometheus::Registry> r) : registry(r ? std::move(r) : std::make_shared<prometheus::Registry>()) {}

  std::shared_ptr<prometheus::Registry> registry;
  prometheus::Family<prometheus::Histogram>& handler_duration =
      prometheus::BuildHistogram()
          .Name("eventbus_handler_duration_seconds")
          .Help("Handler call latency, every attempt included, by outcome")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& retries = prometheus::BuildCounter()
                                                         .Name("eventbus_handler_retries_total")
                                                         .Help("Handler calls that were retries of a failed call")
                                                         .Register(*registry);
  prometheus::Family<prometheus::Counter>& dead_letters = prometheus::BuildCounter()
                                                              .Name("eventbus_dead_letters_total")
                                                              .Help("Records written to a dead-letter topic")
                                                              .Register(*registry);
  prometheus::Family<prometheus::Counter>& published = prometheus::BuildCounter()
                                                           .Name("eventbus_events_published_total")
                                                           .Help("Events produced to Kafka, by delivery outcome")
                                                           .Register(*registry);
  prometheus::Family<prometheus::Counter>& consumed = prometheus::BuildCounter()
                                                          .Name("eventbus_events_consumed_total")
                                                          .Help("Records consumed by workers")
                                                          .Register(*registry);
  prometheus::Family<prometheus::Gauge>& lag = prometheus::BuildGauge()
                                                   .Name("eventbus_consumer_lag")
                                                   .Help("Records of a partition not yet committed by the group")
                                                   .Register(*registry);
  prometheus::Gauge& producer_queue = prometheus::BuildGauge()
                                          .Name("eventbus_producer_queue_messages")
                                          .Help("Messages waiting in librdkafka's producer queue")
                                          .Register(*registry)
                                          .Add({});

  prometheus::Family<prometheus::Gauge>& worker_in_flight =
      prometheus::BuildGauge()
          .Name("eventbus_worker_records_in_flight")
          .Help("Records a worker started and has not finished: running, in backoff or being dead-lettered")
          .Register(*registry);
  prometheus::Family<prometheus::Gauge>& worker_waiting =
      prometheus::BuildGauge()
          .Name("eventbus_worker_records_waiting_on_key")
          .Help("Fetched records held back by an unfinished earlier record of their key (partition, in partition order)")
          .Register(*registry);
  prometheus::Family<prometheus::Gauge>& worker_paused = prometheus::BuildGauge()
                                                             .Name("eventbus_worker_partitions_paused")
                                                             .Help("Partitions paused because their window is full")
                                                             .Register(*registry);

  series_cache<prometheus::Histogram> durations;
  series_cache<prometheus::Counter> retry_series, dead_letter_series, published_series, consumed_series;
  series_cache<prometheus::Gauge> lag_series, in_flight_series, waiting_series, paused_series;
};

metrics::metrics(std::shared_ptr<prometheus::Registry> registry) : impl_(std::make_unique<impl>(std::move(registry))) {}
metrics::~metrics() = default;

prometheus::Registry& metrics::registry() noexcept { return *impl_->registry; }
std::shared_ptr<prometheus::Registry> metrics::shared_registry() const noexcept { return impl_->registry; }

void metrics::observe_handler(std::string_view handler, std::string_view event_type, bool success,
                              std::chrono::nanoseconds took) {
  const std::string_view outcome = success ? "success" : "error";
  auto& h = impl_->durations.get(key_of({handler, event_type, outcome}), [&]() -> prometheus::Histogram& {
    return impl_->handler_duration.Add(
        {{"handler", std::string(handler)}, {"event_type", std::string(event_type)}, {"outcome", std::string(outcome)}},
        prometheus::Histogram::BucketBoundaries(std::begin(handler_duration_buckets), std::end(handler_duration_buckets)));
  });
  h.Observe(std::chrono::duration<double>(took).count());
}

handler_observer metrics::handler_observer_for(std::shared_ptr<metrics> m) {
  return [m = std::move(m)](std::string_view handler, const event& ev, bool success, std::chrono::nanoseconds took) {
    m->observe_handler(handler, ev.event_type(), success, took);
  };
}

void metrics::count_retry(std::string_view handler, std::string_view event_type) {
  impl_->retry_series
      .get(key_of({handler, event_type}),
           [&]() -> prometheus::Counter& {
             return impl_->retries.Add({{"handler", std::string(handler)}, {"event_type", std::string(event_type)}});
           })
      .Increment();
}

void metrics::count_dead_letter(std::string_view topic, std::string_view handler, std::string_view reason) {
  impl_->dead_letter_series
      .get(key_of({topic, handler, reason}),
           [&]() -> prometheus::Counter& {
             return impl_->dead_letters.Add(
                 {{"topic", std::string(topic)}, {"handler", std::string(handler)}, {"reason", std::string(reason)}});
           })
      .Increment();
}

void metrics::count_published(std::string_view topic, bool delivered) {
  const std::string_view outcome = delivered ? "delivered" : "failed";
  impl_->published_series
      .get(key_of({topic, outcome}),
           [&]() -> prometheus::Counter& {
             return impl_->published.Add({{"topic", std::string(topic)}, {"outcome", std::string(outcome)}});
           })
      .Increment();
}

void metrics::count_consumed(std::string_view topic, std::uint64_t records) {
  impl_->consumed_series
      .get(key_of({topic}), [&]() -> prometheus::Counter& { return impl_->consumed.Add({{"topic", std::string(topic)}}); })
      .Increment(static_cast<double>(records));
}

void metrics::set_consumer_lag(std::string_view topic, std::int32_t partition, std::int64_t lag) {
  const auto p = std::to_string(partition);
  impl_->lag_series
      .get(key_of({topic, p}),
           [&]() -> prometheus::Gauge& { return impl_->lag.Add({{"topic", std::string(topic)}, {"partition", p}}); })
      .Set(static_cast<double>(lag));
}

void metrics::add_worker_load(std::string_view group, const worker_load& change) {
  const auto& key = key_of({group});
  const auto add = [&](series_cache<prometheus::Gauge>& cache, prometheus::Family<prometheus::Gauge>& family,
                       std::int64_t delta) {
    cache.get(key, [&]() -> prometheus::Gauge& { return family.Add({{"group", std::string(group)}}); })
        .Increment(static_cast<double>(delta));
  };
  add(impl_->in_flight_series, impl_->worker_in_flight, change.in_flight);
  add(impl_->waiting_series, impl_->worker_waiting, change.waiting_on_key);
  add(impl_->paused_series, impl_->worker_paused, change.paused_partitions);
}

void metrics::set_producer_queue(std::int64_t messages) { impl_->producer_queue.Set(static_cast<double>(messages)); }

}  // namespace eventbus
