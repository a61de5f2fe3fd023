#include "eventbus/store/outbox_relay.hpp"

#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <utility>

#include "kafka/sink_access.hpp"
#include "store/outbox_rows.hpp"
#include "support/log.hpp"

namespace eventbus {
namespace {

using clock = std::chrono::steady_clock;

// host:pid:n, n counting the relays this process made: two relays in one process are two lease
// holders (with host:pid alone both believed they held the lease, and both sent every event).
std::string default_owner() {
  static std::atomic<unsigned> relays_made{0};
  char host[256] = "host";
  (void)gethostname(host, sizeof host - 1);
  return std::string(host) + ":" + std::to_string(getpid()) + ":" + std::to_string(++relays_made);
}

// Marks acknowledged events published on a thread of its own, so that the relay thread reads and
// sends the next batches meanwhile: on SQLite, reading and marking each cost ~2 µs an event, and
// done one after the other on one thread they set the relay's pace (measured with store_bench).
class mark_queue {
 public:
  // Marks the positions; the error's text if it could not.
  using mark_fn = std::function<std::optional<std::string>(const std::vector<std::int64_t>&)>;

  explicit mark_queue(mark_fn mark) : mark_(std::move(mark)), thread_([this] { run(); }) {}
  ~mark_queue() {
    {
      const std::lock_guard lock(mu_);
      stopping_ = true;
    }
    changed_.notify_all();
    thread_.join();  // after marking what was pushed
  }
  mark_queue(const mark_queue&) = delete;
  mark_queue& operator=(const mark_queue&) = delete;

  /// Queues a batch's positions; waits while max_pending batches wait already.
  void push(std::vector<std::int64_t> positions) {
    std::unique_lock lock(mu_);
    changed_.wait(lock, [&] { return pending_.size() < max_pending; });
    pending_.push_back(std::move(positions));
    changed_.notify_all();
  }
  /// Returns once every batch pushed so far was marked (or failed).
  void drain() {
    std::unique_lock lock(mu_);
    changed_.wait(lock, [&] { return pending_.empty() && !marking_; });
  }
  /// The last failure since the previous call, if any.
  std::optional<std::string> take_failure() {
    const std::lock_guard lock(mu_);
    return std::exchange(failure_, std::nullopt);
  }

 private:
  static constexpr std::size_t max_pending = 8;

  void run() {
    pthread_setname_np(pthread_self(), "eventbus-mark");
    std::unique_lock lock(mu_);
    for (;;) {
      changed_.wait(lock, [&] { return stopping_ || !pending_.empty(); });
      if (pending_.empty()) return;  // stopping, and everything is marked
      const auto positions = std::move(pending_.front());
      pending_.pop_front();
      marking_ = true;
      lock.unlock();
      auto failed = mark_(positions);
      lock.lock();
      marking_ = false;
      if (failed) failure_ = std::move(failed);
      changed_.notify_all();
    }
  }

  mark_fn mark_;
  std::mutex mu_;
  std::condition_variable changed_;
  std::deque<std::vector<std::int64_t>> pending_;
  bool marking_ = false, stopping_ = false;
  std::optional<std::string> failure_;
  std::thread thread_;  // last: starts once the rest is built
};

}  // namespace

void relay_options::validate() const {
  const auto reject = [](const char* field, const char* why) {
    throw exception(error(errc::invalid_argument, why, field));
  };
  if (batch_size == 0 || batch_size > 100'000) reject("batch_size", "must be between 1 and 100000");
  if (interval.count() <= 0) reject("interval", "must be positive");
  if (lease_ttl < 3 * interval) reject("lease_ttl", "must be at least three intervals");
}

// The relay's producer never times a record out. A record that expires while a later record of its
// partition is still queued lets that later one reach Kafka first (librdkafka expires the oldest
// first): after a stall longer than message.timeout.ms, an aggregate's version n+1 arrived before
// version n (seen with the relay SIGSTOPped). Without a timeout, the idempotent producer retries
// in order until the cluster takes each record, and what fails fails for good (refused records)
// or together (a fatal error, a purge at stop): an aggregate's first deliveries stay in order.
producer_options relay_producer(producer_options producer) {
  auto& props = producer.kafka.properties;
  for (const char* name : {"message.timeout.ms", "delivery.timeout.ms"})
    if (auto it = props.find(name); it != props.end() && it->second != "0")
      throw exception(error(errc::invalid_argument,
                            "must be 0 (never) for the outbox relay: a record that times out lets later records of "
                            "its aggregate reach Kafka before it; the events wait in the store instead",
                            std::string("kafka.properties.") + name));
  props["message.timeout.ms"] = "0";
  return producer;
}

struct outbox_relay::impl {
  impl(std::shared_ptr<outbox> s, producer_options producer, relay_options o)
      : store(std::move(s)), options(std::move(o)) {
    if (!store) throw exception(error(errc::invalid_argument, "needs a store", "store"));
    options.validate();
    sink = std::make_shared<kafka_sink>(relay_producer(std::move(producer)));
    if (options.owner.empty()) options.owner = default_owner();
  }

  void run() noexcept {
    if (options.metrics) {  // every outcome from 0: a failure rate reads 0 before the first failure
      options.metrics->count_relayed(store->backend(), true, 0);
      options.metrics->count_relayed(store->backend(), false, 0);
      options.metrics->count_parked(store->backend(), 0);
    }
    marks.emplace([this](const std::vector<std::int64_t>& positions) -> std::optional<std::string> {
      if (auto marked = store->mark_published(positions); !marked) return marked.error().to_string();
      relayed.fetch_add(positions.size());
      if (options.metrics) options.metrics->count_relayed(store->backend(), true, positions.size());
      return std::nullopt;
    });
    int failures_in_a_row = 0;
    while (!stopping.load()) {
      bool more = false;
      try {
        more = cycle(failures_in_a_row);
      } catch (const std::exception& e) {
        warn(std::string("relay cycle failed: ") + e.what());
        ++failures_in_a_row;
      }
      if (more && (failures_in_a_row == 0 || !window.empty())) continue;  // a window to settle goes on at once
      // Idle, standing by, or backing off after a failure (Kafka down: up to 5 s between tries).
      detail::forget_read_ahead(*store);
      const auto pause = failures_in_a_row == 0 ? options.interval
                                                : std::min<std::chrono::milliseconds>(std::chrono::seconds(5),
                                                                                      options.interval * (1 << std::min(failures_in_a_row, 6)));
      std::unique_lock lock(mu);
      wake.wait_for(lock, pause, [&] { return stopping.load() || woken; });
      woken = false;
    }
    // Stopping: what was produced is settled (acknowledged ones marked), so a restart or the next
    // instance sends as little twice as possible. Closing the producer bounds the wait (Kafka may
    // be down, and records never time out): it flushes for close_timeout, then fails the rest.
    sink.reset();
    detail::forget_read_ahead(*store);
    int ignored = 0;
    while (!window.empty()) settle_oldest(ignored);
    marks.reset();  // marks what it was given, then ends
    store->release_relay_lease(options.owner);
    leading.store(false);
    if (options.metrics) options.metrics->set_relay_leading(store->backend(), false);
  }

  // Delivery outcomes of one produced batch, filled in by the sink's delivery reports.
  enum class outcome : char { failed, delivered, refused };  // refused: the record itself, for good
  struct tally {
    std::mutex mu;
    std::condition_variable all_in;
    std::vector<outcome> outcomes;
    std::map<std::size_t, std::string> refusals;  // why, by index, for the refused ones (rare: no room kept for all)
    std::size_t pending = 0;
  };
  struct batch_in_flight {
    detail::outbox_rows events;
    std::shared_ptr<tally> outcomes;
  };

  // One step: keep up to max_in_flight batches produced, then settle the oldest once all of its
  // acknowledgements are in. A pipeline, not produce-then-wait: a drained producer waits a whole
  // broker round trip for every batch (measured, 45 ms a batch: a fifth of the mirror's rate).
  // True when there may be more to do right away.
  bool cycle(int& failures_in_a_row) {
    // Every instance, leading or standing by, says what the store holds (one row to read).
    if (clock::now() - last_backlog_update >= options.interval) update_backlog();
    auto held = store->hold_relay_lease(options.owner, options.lease_ttl);
    if (!held) {
      warn("relay lease: " + held.error().to_string());
      ++failures_in_a_row;
      if (window.empty()) return false;
    } else {
      leading.store(held.value());
      if (!held.value() && window.empty()) return false;
    }
    collect_mark_failures(failures_in_a_row);
    restart_if_drained();
    // Fill: only while leading and nothing failed since the last restart of the pipeline.
    while (sink && leading.load() && !failed_since_restart && window.size() < max_in_flight) {
      detail::outbox_rows batch = take_spare_rows();
      if (auto read = detail::read_unpublished_rows(*store, options.batch_size, cursor, batch); !read) {
        warn("reading the outbox: " + read.error().to_string());
        ++failures_in_a_row;
        break;
      }
      if (batch.empty()) break;
      cursor = batch.rows().back().position;
      window.push_back(send(std::move(batch)));
    }
    if (window.empty()) {
      update_backlog();
      return false;
    }
    settle_oldest(failures_in_a_row);
    return true;
  }

  // Produces a batch; its outcomes come in through the sink's delivery reports.
  batch_in_flight send(detail::outbox_rows events) {
    batch_in_flight b{.events = std::move(events), .outcomes = std::make_shared<tally>()};
    b.outcomes->outcomes.assign(b.events.size(), outcome::failed);
    b.outcomes->pending = b.events.size();
    in_flight.fetch_add(b.events.size());
    for (std::size_t i = 0; i < b.events.size(); ++i)
      detail::sink_access::produce(*sink, b.events.rows()[i].record, [this, t = b.outcomes, i](result<delivery> d) {
        in_flight.fetch_sub(1);
        const std::lock_guard lock(t->mu);
        if (d.ok()) {
          t->outcomes[i] = outcome::delivered;
        } else if (d.error().code() == errc::rejected_by_broker) {
          t->outcomes[i] = outcome::refused;
          t->refusals[i] = d.error().message();
        }
        if (--t->pending == 0) t->all_in.notify_all();
      });
    // A zero-time flush sends now: librdkafka (2.0) otherwise leaves records queued before its
    // producer id arrived until the broker thread's next wake-up, up to a second later (measured).
    (void)sink->flush(std::chrono::milliseconds(0));
    return b;
  }

  // Waits for the oldest batch's acknowledgements (renewing the lease meanwhile: with Kafka down
  // that is until it is back, or the relay stops), then marks what may be marked. An event is marked unless an
  // earlier one of its aggregate failed since the pipeline's last restart: those go again, after
  // it, so an aggregate's events never overtake each other.
  void settle_oldest(int& failures_in_a_row) {
    batch_in_flight b = std::move(window.front());
    window.pop_front();
    {
      // Looks up every interval: to renew the lease every third of its ttl, to say what the
      // backlog is, and to close the producer once stop() was asked (with Kafka down, nothing
      // else ends this wait).
      auto renewed = clock::now();
      std::unique_lock lock(b.outcomes->mu);
      while (!b.outcomes->all_in.wait_for(lock, options.interval, [&] { return b.outcomes->pending == 0; })) {
        lock.unlock();
        detail::forget_read_ahead(*store);  // this wait may last (Kafka down): no read left open meanwhile
        if (stopping.load()) sink.reset();  // flushes for close_timeout, then fails what is left
        if (clock::now() - last_backlog_update >= options.interval) update_backlog();  // Kafka down: it grows
        if (clock::now() - renewed >= options.lease_ttl / 3) {
          (void)store->hold_relay_lease(options.owner, options.lease_ttl);
          renewed = clock::now();
        }
        lock.lock();
      }
    }
    std::vector<std::int64_t> done;
    done.reserve(b.events.size());
    std::uint64_t failed_now = 0, resent_now = 0;
    const auto now = now_ms().time_since_epoch();
    for (std::size_t i = 0; i < b.events.size(); ++i) {
      const auto& row = b.events.rows()[i];
      const auto got = b.outcomes->outcomes[i];
      const bool was_blocked = is_blocked(row.record);
      if (got == outcome::refused && !was_blocked && park(row, b.outcomes->refusals[i])) continue;
      if (got != outcome::delivered) {
        ++failed_now;
        if (!was_blocked) blocked.emplace(row.record.aggregate_type, row.record.aggregate_id);
      } else if (was_blocked) {
        ++resent_now;
      } else {
        done.push_back(row.position);
        if (options.metrics)
          options.metrics->observe_event_age(
              "relayed", row.record.event_type,
              std::chrono::duration<double>(now - std::chrono::milliseconds(row.occurred_at_ms)).count());
      }
    }
    spare_rows = std::move(b.events);  // its buffers serve the next read
    marks->push(std::move(done));
    collect_mark_failures(failures_in_a_row);
    failed.fetch_add(failed_now);
    resent.fetch_add(resent_now);
    batches.fetch_add(1);
    if (failed_now > 0) {
      if (options.metrics) options.metrics->count_relayed(store->backend(), false, failed_now);
      failed_since_restart = true;
      ++failures_in_a_row;
    }
    if (failed_now == 0 && !failed_since_restart) failures_in_a_row = 0;
    restart_if_drained();
    if (window.empty() || clock::now() - last_backlog_update > std::chrono::seconds(1)) update_backlog();
  }

  // Kafka refused the record itself (too large for the cluster, invalid): no retry fixes that, and
  // retrying would hold its aggregate back for good. Parked in the store with the reason (visible
  // in stats, metrics and the log); its aggregate's later events go on. False when the store
  // could not park it: then it is sent again, like any failure.
  bool park(const detail::outbox_rows::row& e, const std::string& reason) {
    const std::vector<std::int64_t> position{e.position};
    const std::string id(e.record.event_id);
    if (auto parked_now = store->park(position, reason); !parked_now) {
      warn("parking event " + id + " (it will be sent again): " + parked_now.error().to_string());
      return false;
    }
    parked.fetch_add(1);
    if (options.metrics) options.metrics->count_parked(store->backend(), 1);
    detail::log(log_level::error, "outbox relay: event " + id + " at position " + std::to_string(e.position) +
                                      " parked, Kafka refused it for good: " + reason);
    return true;
  }

  // Whether an earlier event of this record's aggregate failed since the last restart. No key is
  // built while none did (the usual case).
  bool is_blocked(const detail::record_fields& r) const {
    return !blocked.empty() && blocked.count(std::make_pair(std::string(r.aggregate_type), std::string(r.aggregate_id))) > 0;
  }

  // A settled batch's rows, cleared, for the next read to fill: their buffers are kept.
  // Not one that grew past 64 MiB (a batch of large events): that much is given back.
  detail::outbox_rows take_spare_rows() {
    detail::outbox_rows rows = std::move(spare_rows);
    if (rows.bytes_capacity() > 64 * 1024 * 1024) return {};
    rows.clear();
    return rows;
  }

  // A batch the marker could not mark: its events are sent again after a restart.
  void collect_mark_failures(int& failures_in_a_row) {
    if (auto failure = marks->take_failure()) {
      warn("marking events published (they will be sent again): " + *failure);
      failed_since_restart = true;
      ++failures_in_a_row;
    }
  }

  // Once nothing is in flight after a failure: start again from the first unpublished event, after
  // the marks already made (so that what was acknowledged is not read again).
  void restart_if_drained() {
    if (!window.empty() || !failed_since_restart) return;
    marks->drain();
    (void)marks->take_failure();  // what those marks left unmarked is read again now anyway
    failed_since_restart = false;
    blocked.clear();
    cursor = 0;
  }

  void update_backlog() {
    last_backlog_update = clock::now();
    auto b = store->backlog();
    if (!b) {
      warn("reading the outbox backlog (the gauge keeps its last value): " + b.error().to_string());
      return;
    }
    backlog.store(b.value().events);
    if (options.metrics) {
      const double age = b.value().oldest ? std::chrono::duration<double>(now_ms() - *b.value().oldest).count() : 0.0;
      options.metrics->set_outbox_backlog(store->backend(), b.value().events, std::max(0.0, age));
      options.metrics->set_outbox_parked(store->backend(), b.value().parked);
      options.metrics->set_relay_leading(store->backend(), leading.load());
    }
  }

  // One line a second at most: a relay that cannot reach its store or Kafka retries every few seconds.
  void warn(const std::string& what) {
    const auto now = clock::now();
    if (now - last_warning < std::chrono::seconds(1)) return;
    last_warning = now;
    detail::log(log_level::warn, "outbox relay: " + what);
  }

  std::shared_ptr<outbox> store;
  std::shared_ptr<kafka_sink> sink;
  relay_options options;
  std::thread thread;
  std::atomic<bool> stopping{false};
  std::mutex mu;
  std::condition_variable wake;
  bool woken = false;
  clock::time_point last_warning{}, last_backlog_update{};
  std::atomic<bool> leading{false};
  std::atomic<std::uint64_t> relayed{0}, failed{0}, resent{0}, batches{0}, in_flight{0}, parked{0};
  std::atomic<std::int64_t> backlog{0};

  // The pipeline (relay thread only).
  static constexpr std::size_t max_in_flight = 4;  // batches produced and not yet settled
  std::deque<batch_in_flight> window;
  std::optional<mark_queue> marks;  // while run() runs
  std::int64_t cursor = 0;  // the last position produced
  std::set<std::pair<std::string, std::string>> blocked;  // aggregates with a failure since the last restart
  detail::outbox_rows spare_rows;
  bool failed_since_restart = false;
};

outbox_relay::outbox_relay(std::shared_ptr<outbox> store, producer_options producer, relay_options options)
    : impl_(std::make_unique<impl>(std::move(store), std::move(producer), std::move(options))) {}

outbox_relay::~outbox_relay() { stop(); }

void outbox_relay::start() {
  if (impl_->thread.joinable()) throw exception(error(errc::invalid_argument, "outbox relay already started"));
  impl_->thread = std::thread([this] {
    pthread_setname_np(pthread_self(), "eventbus-relay");
    impl_->run();
  });
}

void outbox_relay::stop() noexcept {
  {
    const std::lock_guard lock(impl_->mu);
    impl_->stopping.store(true);
  }
  impl_->wake.notify_all();
  if (impl_->thread.joinable() && impl_->thread.get_id() != std::this_thread::get_id()) impl_->thread.join();
}

void outbox_relay::notify() noexcept {
  {
    const std::lock_guard lock(impl_->mu);
    impl_->woken = true;
  }
  impl_->wake.notify_all();
}

relay_stats outbox_relay::stats() const noexcept {
  return {.relayed = impl_->relayed.load(),
          .failed = impl_->failed.load(),
          .resent = impl_->resent.load(),
          .batches = impl_->batches.load(),
          .in_flight = impl_->in_flight.load(),
          .parked = impl_->parked.load(),
          .leading = impl_->leading.load(),
          .backlog = impl_->backlog.load()};
}

}  // namespace eventbus
