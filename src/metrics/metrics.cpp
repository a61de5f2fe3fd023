#include "eventbus/metrics.hpp"

#include "metrics/worker_load.hpp"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_map>

namespace eventbus {
namespace {

using label_list = std::initializer_list<std::pair<const char*, std::string_view>>;

// The labels' values joined, in a per-thread buffer: a lookup of a known series allocates nothing.
const std::string& key_of(label_list labels) {
  thread_local std::string key;
  key.clear();
  for (const auto& [name, value] : labels) {
    key.append(value);
    key.push_back('\x1f');  // unit separator: cannot appear in a handler name, type or topic
  }
  return key;
}

// A cache of series by their label values: prometheus-cpp's Family::Add hashes a label map under its
// own lock on every call, too slow for a per-handler-call path. It is also where the number of
// series is bounded: values are cut to max_label_bytes, and past max_series a family's new label
// sets all share one series whose labels read "_other" (a scrape must never grow without bound).
template <class Metric>
class series_cache {
 public:
  template <class... Args>
  Metric& get(prometheus::Family<Metric>& family, label_list labels, const Args&... args) {
    // The series this thread asked this cache for lately: a thread's calls mostly hit the same
    // few (a dispatcher calling four handlers per event alternates four), and then neither the
    // key, the lock nor the hash (together a third of an observation) is paid: label values are
    // compared where they are. A cache is told apart by a number never reused, not its address.
    thread_local recent_series recent;
    if (Metric* hit = recent.find(id_, labels)) return *hit;
    Metric& found = lookup(family, labels, key_of(labels), args...);
    recent.remember(id_, labels, found);
    return found;
  }

 private:
  template <class... Args>
  Metric& lookup(prometheus::Family<Metric>& family, label_list labels, const std::string& key, const Args&... args) {
    {
      const std::shared_lock lock(mu_);
      if (const auto it = series_.find(key); it != series_.end()) return *it->second;
    }
    const std::unique_lock lock(mu_);
    if (const auto it = series_.find(key); it != series_.end()) return *it->second;
    prometheus::Labels named;
    if (series_.size() >= metrics::max_series) {
      if (overflow_ == nullptr) {
        for (const auto& [name, value] : labels) named.emplace(name, std::string(metrics::overflow_label));
        overflow_ = &family.Add(named, args...);
      }
      return *overflow_;
    }
    for (const auto& [name, value] : labels) named.emplace(name, std::string(value.substr(0, metrics::max_label_bytes)));
    Metric& added = family.Add(named, args...);
    series_.emplace(key, &added);
    return added;
  }

  static std::uint64_t next_id() noexcept {
    static std::atomic<std::uint64_t> ids{0};
    return ids.fetch_add(1, std::memory_order_relaxed) + 1;
  }

  struct recent_series {
    struct entry {
      std::uint64_t cache = 0;  // 0: empty
      std::array<std::string, 3> values;  // every family here has at most three labels
      std::size_t count = 0;
      Metric* series = nullptr;
    };
    std::array<entry, 8> entries;
    std::size_t next = 0;  // the one replaced next (round robin)

    [[nodiscard]] Metric* find(std::uint64_t id, label_list labels) const noexcept {
      for (const auto& e : entries) {
        if (e.cache != id || e.count != labels.size()) continue;
        std::size_t i = 0;
        bool same = true;
        for (const auto& label : labels) same = same && e.values[i++] == label.second;
        if (same) return e.series;
      }
      return nullptr;
    }
    void remember(std::uint64_t id, label_list labels, Metric& found) {
      if (labels.size() > entries[0].values.size()) return;  // not cached
      entry& e = entries[next];
      next = (next + 1) % entries.size();
      e.count = 0;
      for (const auto& label : labels) e.values[e.count++].assign(label.second);
      e.cache = id;
      e.series = &found;
    }
  };

  const std::uint64_t id_ = next_id();
  std::shared_mutex mu_;
  std::unordered_map<std::string, Metric*> series_;
  Metric* overflow_ = nullptr;
};

}  // namespace

struct metrics::impl {
  explicit impl(std::shared_ptr<prometheus::Registry> r) : registry(r ? std::move(r) : std::make_shared<prometheus::Registry>()) {}

  std::shared_ptr<prometheus::Registry> registry;
  prometheus::Family<prometheus::Histogram>& handler_duration =
      prometheus::BuildHistogram()
          .Name("eventbus_handler_duration_seconds")
          .Help("Handler call latency, every attempt included, by outcome")
          .Register(*registry);
  prometheus::Family<prometheus::Histogram>& event_age =
      prometheus::BuildHistogram()
          .Name("eventbus_event_age_seconds")
          .Help("How long after it happened (its timestamp) an event reached a stage: handled by a worker, relayed to Kafka")
          .Register(*registry);
  prometheus::Family<prometheus::Gauge>& worker_in_group =
      prometheus::BuildGauge()
          .Name("eventbus_worker_in_group")
          .Help("Workers of this process in their consumer group (handling): 0 means none is")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& retries = prometheus::BuildCounter()
                                                         .Name("eventbus_handler_retries_total")
                                                         .Help("Handler calls that were retries of a failed call")
                                                         .Register(*registry);
  prometheus::Family<prometheus::Counter>& dead_letters = prometheus::BuildCounter()
                                                              .Name("eventbus_dead_letters_total")
                                                              .Help("Records written to a dead-letter topic")
                                                              .Register(*registry);
  prometheus::Family<prometheus::Counter>& dead_letters_dropped =
      prometheus::BuildCounter()
          .Name("eventbus_dead_letters_dropped_total")
          .Help("Records given up because the cluster refused their dead letter for good")
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

  prometheus::Family<prometheus::Counter>& appends = prometheus::BuildCounter()
                                                         .Name("eventbus_store_appends_total")
                                                         .Help("Event store appends, by outcome")
                                                         .Register(*registry);
  prometheus::Family<prometheus::Gauge>& outbox_backlog =
      prometheus::BuildGauge()
          .Name("eventbus_outbox_backlog_events")
          .Help("Events stored and not yet acknowledged by Kafka")
          .Register(*registry);
  prometheus::Family<prometheus::Gauge>& outbox_oldest =
      prometheus::BuildGauge()
          .Name("eventbus_outbox_oldest_seconds")
          .Help("How long the oldest event not yet acknowledged by Kafka has waited")
          .Register(*registry);
  prometheus::Family<prometheus::Gauge>& outbox_parked =
      prometheus::BuildGauge()
          .Name("eventbus_outbox_parked_events")
          .Help("Events Kafka refused for good (the record itself), parked in the store with the reason")
          .Register(*registry);
  prometheus::Family<prometheus::Gauge>& worker_parked_records =
      prometheus::BuildGauge()
          .Name("eventbus_worker_parked_records")
          .Help("Records a worker group parked for a durable retry stage, or behind one of their key, per topic (this worker's partitions)")
          .Register(*registry);
  prometheus::Family<prometheus::Gauge>& worker_parked_keys =
      prometheus::BuildGauge()
          .Name("eventbus_worker_parked_keys")
          .Help("Keys with parked records, per topic (this worker's partitions)")
          .Register(*registry);
  prometheus::Family<prometheus::Gauge>& worker_parked_overdue =
      prometheus::BuildGauge()
          .Name("eventbus_worker_parked_oldest_due_seconds")
          .Help("How long ago the earliest parked record became due (0 while none is due): growing means parked records are not being run")
          .Register(*registry);
  prometheus::Family<prometheus::Gauge>& relay_leading =
      prometheus::BuildGauge()
          .Name("eventbus_outbox_relay_leading")
          .Help("1 while this instance's outbox relay holds the store's relay lease (relays), 0 while it stands by")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& inbox_duplicates =
      prometheus::BuildCounter()
          .Name("eventbus_inbox_duplicates_total")
          .Help("Events an inbox skipped because its handler had applied them already (redeliveries)")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& filtered =
      prometheus::BuildCounter()
          .Name("eventbus_events_filtered_total")
          .Help("Events a handler's condition (handler_options::when) rejected: not handled by it")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& unauthorized =
      prometheus::BuildCounter()
          .Name("eventbus_events_unauthorized_total")
          .Help("Events the authorize middleware refused to a handler (a worker dead-letters them)")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& rate_limited =
      prometheus::BuildCounter()
          .Name("eventbus_events_rate_limited_total")
          .Help("Handler calls the rate_limit middleware held back (outcome=deferred) or refused (outcome=rejected)")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& snapshots =
      prometheus::BuildCounter()
          .Name("eventbus_aggregate_snapshots_total")
          .Help("Aggregate snapshots taken, failed to save, loaded, or ignored (another schema version, undecodable, unreadable)")
          .Register(*registry);
  prometheus::Family<prometheus::Gauge>& projection_lag =
      prometheus::BuildGauge()
          .Name("eventbus_projection_lag_events")
          .Help("Events stored after a projection's position: 0 when it is live")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& projection_errors = prometheus::BuildCounter()
                                                                   .Name("eventbus_projection_errors_total")
                                                                   .Help("Projection handler calls that threw (each attempt)")
                                                                   .Register(*registry);
  prometheus::Family<prometheus::Counter>& relayed = prometheus::BuildCounter()
                                                         .Name("eventbus_outbox_relayed_total")
                                                         .Help("Events the outbox relay sent to Kafka, by outcome")
                                                         .Register(*registry);
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

  series_cache<prometheus::Histogram> durations, ages;
  series_cache<prometheus::Gauge> in_group_series;
  series_cache<prometheus::Counter> retry_series, dead_letter_series, dropped_series, published_series, consumed_series;
  series_cache<prometheus::Counter> append_series, relayed_series;
  series_cache<prometheus::Gauge> backlog_series, oldest_series, parked_series, leading_series, projection_lag_series;
  series_cache<prometheus::Gauge> worker_parked_series, worker_parked_keys_series, worker_parked_overdue_series;
  series_cache<prometheus::Counter> projection_error_series, inbox_duplicate_series, snapshot_series;
  series_cache<prometheus::Counter> filtered_series, unauthorized_series, rate_limited_series;
  series_cache<prometheus::Gauge> lag_series, in_flight_series, waiting_series, paused_series;
};

metrics::metrics(std::shared_ptr<prometheus::Registry> registry) : impl_(std::make_unique<impl>(std::move(registry))) {}
metrics::~metrics() = default;

prometheus::Registry& metrics::registry() noexcept { return *impl_->registry; }
std::shared_ptr<prometheus::Registry> metrics::shared_registry() const noexcept { return impl_->registry; }

void metrics::observe_handler(std::string_view handler, std::string_view event_type, bool success,
                              std::chrono::nanoseconds took) {
  static const prometheus::Histogram::BucketBoundaries buckets(std::begin(handler_duration_buckets),
                                                               std::end(handler_duration_buckets));
  impl_->durations
      .get(impl_->handler_duration,
           {{"handler", handler}, {"event_type", event_type}, {"outcome", success ? "success" : "error"}}, buckets)
      .Observe(std::chrono::duration<double>(took).count());
}

void metrics::observe_event_age(std::string_view stage, std::string_view event_type, double seconds) {
  // Up to three hours: a backlog drained after an outage still lands in a bucket.
  static const prometheus::Histogram::BucketBoundaries buckets{0.01, 0.05, 0.1, 0.25, 0.5, 1,    2.5,  5,
                                                               10,   30,   60,  300,  900, 1800, 3600, 10800};
  impl_->ages.get(impl_->event_age, {{"stage", stage}, {"event_type", event_type}}, buckets).Observe(std::max(0.0, seconds));
}

void metrics::add_worker_in_group(std::string_view group, int change) {
  impl_->in_group_series.get(impl_->worker_in_group, {{"group", group}}).Increment(static_cast<double>(change));
}

handler_observer metrics::handler_observer_for(std::shared_ptr<metrics> m) {
  return [m = std::move(m)](std::string_view handler, const event& ev, bool success, std::chrono::nanoseconds took) {
    m->observe_handler(handler, ev.event_type(), success, took);
  };
}

void metrics::count_retry(std::string_view handler, std::string_view event_type) {
  impl_->retry_series.get(impl_->retries, {{"handler", handler}, {"event_type", event_type}}).Increment();
}

void metrics::count_dead_letter(std::string_view topic, std::string_view handler, std::string_view reason) {
  impl_->dead_letter_series.get(impl_->dead_letters, {{"topic", topic}, {"handler", handler}, {"reason", reason}})
      .Increment();
}

void metrics::declare_handler_failures(std::string_view topic, std::string_view handler, std::string_view event_type) {
  (void)impl_->retry_series.get(impl_->retries, {{"handler", handler}, {"event_type", event_type}});
  for (const std::string_view reason : {"handler-error", "timeout"}) {
    (void)impl_->dead_letter_series.get(impl_->dead_letters, {{"topic", topic}, {"handler", handler}, {"reason", reason}});
    (void)impl_->dropped_series.get(impl_->dead_letters_dropped, {{"topic", topic}, {"handler", handler}, {"reason", reason}});
  }
}

void metrics::declare_record_failures(std::string_view topic) {
  for (const std::string_view reason : {"validation", "deserialization"}) {
    (void)impl_->dead_letter_series.get(impl_->dead_letters, {{"topic", topic}, {"handler", ""}, {"reason", reason}});
    (void)impl_->dropped_series.get(impl_->dead_letters_dropped, {{"topic", topic}, {"handler", ""}, {"reason", reason}});
  }
}

void metrics::count_dead_letter_dropped(std::string_view topic, std::string_view handler, std::string_view reason) {
  impl_->dropped_series.get(impl_->dead_letters_dropped, {{"topic", topic}, {"handler", handler}, {"reason", reason}})
      .Increment();
}

void metrics::count_published(std::string_view topic, bool delivered) {
  impl_->published_series.get(impl_->published, {{"topic", topic}, {"outcome", delivered ? "delivered" : "failed"}})
      .Increment();
}

void metrics::count_consumed(std::string_view topic, std::uint64_t records) {
  impl_->consumed_series.get(impl_->consumed, {{"topic", topic}}).Increment(static_cast<double>(records));
}

void metrics::set_consumer_lag(std::string_view topic, std::int32_t partition, std::int64_t lag) {
  const auto p = std::to_string(partition);
  impl_->lag_series.get(impl_->lag, {{"topic", topic}, {"partition", p}}).Set(static_cast<double>(lag));
}

void metrics::count_append(std::string_view store, std::string_view outcome) {
  impl_->append_series.get(impl_->appends, {{"store", store}, {"outcome", outcome}}).Increment();
}

void metrics::set_outbox_backlog(std::string_view store, std::int64_t events, double oldest_seconds) {
  impl_->backlog_series.get(impl_->outbox_backlog, {{"store", store}}).Set(static_cast<double>(events));
  impl_->oldest_series.get(impl_->outbox_oldest, {{"store", store}}).Set(oldest_seconds);
}

void metrics::count_parked(std::string_view store, std::uint64_t events) {
  impl_->relayed_series.get(impl_->relayed, {{"store", store}, {"outcome", "parked"}}).Increment(static_cast<double>(events));
}

void metrics::count_inbox_duplicates(std::string_view handler, std::uint64_t events) {
  impl_->inbox_duplicate_series.get(impl_->inbox_duplicates, {{"handler", handler}}).Increment(static_cast<double>(events));
}

filtered_observer metrics::filtered_observer_for(std::shared_ptr<metrics> m) {
  return [m = std::move(m)](std::string_view handler, const event&) {
    try {
      m->count_filtered(handler);
    } catch (...) {  // an observer must not throw
    }
  };
}

void metrics::count_filtered(std::string_view handler) {
  impl_->filtered_series.get(impl_->filtered, {{"handler", handler}}).Increment();
}

void metrics::count_unauthorized(std::string_view handler) {
  impl_->unauthorized_series.get(impl_->unauthorized, {{"handler", handler}}).Increment();
}

void metrics::count_rate_limited(std::string_view handler, bool rejected) {
  impl_->rate_limited_series.get(impl_->rate_limited, {{"handler", handler}, {"outcome", rejected ? "rejected" : "deferred"}})
      .Increment();
}

void metrics::count_snapshot(std::string_view aggregate_type, std::string_view outcome) {
  impl_->snapshot_series.get(impl_->snapshots, {{"aggregate_type", aggregate_type}, {"outcome", outcome}}).Increment();
}

void metrics::set_projection_lag(std::string_view projection, std::int64_t events) {
  impl_->projection_lag_series.get(impl_->projection_lag, {{"projection", projection}}).Set(static_cast<double>(events));
}

void metrics::count_projection_errors(std::string_view projection, std::uint64_t errors) {
  impl_->projection_error_series.get(impl_->projection_errors, {{"projection", projection}}).Increment(static_cast<double>(errors));
}

void metrics::set_relay_leading(std::string_view store, bool leading) {
  impl_->leading_series.get(impl_->relay_leading, {{"store", store}}).Set(leading ? 1.0 : 0.0);
}

void metrics::set_worker_parked(std::string_view group, std::string_view topic, std::int64_t records, std::int64_t keys,
                                double oldest_due_seconds) {
  impl_->worker_parked_series.get(impl_->worker_parked_records, {{"group", group}, {"topic", topic}})
      .Set(static_cast<double>(records));
  impl_->worker_parked_keys_series.get(impl_->worker_parked_keys, {{"group", group}, {"topic", topic}})
      .Set(static_cast<double>(keys));
  impl_->worker_parked_overdue_series.get(impl_->worker_parked_overdue, {{"group", group}, {"topic", topic}})
      .Set(oldest_due_seconds);
}

void metrics::set_outbox_parked(std::string_view store, std::int64_t events) {
  impl_->parked_series.get(impl_->outbox_parked, {{"store", store}}).Set(static_cast<double>(events));
}

void metrics::count_relayed(std::string_view store, bool published, std::uint64_t events) {
  impl_->relayed_series.get(impl_->relayed, {{"store", store}, {"outcome", published ? "published" : "failed"}})
      .Increment(static_cast<double>(events));
}

void metrics::add_worker_load(std::string_view group, const detail::worker_load& change) {
  impl_->in_flight_series.get(impl_->worker_in_flight, {{"group", group}}).Increment(static_cast<double>(change.in_flight));
  impl_->waiting_series.get(impl_->worker_waiting, {{"group", group}}).Increment(static_cast<double>(change.waiting_on_key));
  impl_->paused_series.get(impl_->worker_paused, {{"group", group}})
      .Increment(static_cast<double>(change.paused_partitions));
}

void metrics::set_producer_queue(std::int64_t messages) { impl_->producer_queue.Set(static_cast<double>(messages)); }

}  // namespace eventbus
