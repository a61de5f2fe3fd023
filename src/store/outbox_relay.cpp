#include "eventbus/store/outbox_relay.hpp"

#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include "detail/log.hpp"

namespace eventbus {
namespace {

using clock = std::chrono::steady_clock;

std::string default_owner() {
  char host[256] = "host";
  (void)gethostname(host, sizeof host - 1);
  return std::string(host) + ":" + std::to_string(getpid());
}

}  // namespace

void relay_options::validate() const {
  const auto reject = [](const char* field, const char* why) {
    throw exception(error(errc::invalid_argument, why, field));
  };
  if (batch_size == 0 || batch_size > 100'000) reject("batch_size", "must be between 1 and 100000");
  if (interval.count() <= 0) reject("interval", "must be positive");
  if (lease_ttl < 3 * interval) reject("lease_ttl", "must be at least three intervals");
}

struct outbox_relay::impl {
  impl(std::shared_ptr<event_store> s, std::shared_ptr<kafka_sink> k, relay_options o)
      : store(std::move(s)), sink(std::move(k)), options(std::move(o)) {
    if (!store) throw exception(error(errc::invalid_argument, "needs a store", "store"));
    if (!sink) throw exception(error(errc::invalid_argument, "needs a Kafka sink", "sink"));
    options.validate();
    if (options.owner.empty()) options.owner = default_owner();
  }

  void run() noexcept {
    int failures_in_a_row = 0;
    while (!stopping.load()) {
      bool more = false;
      try {
        more = cycle(failures_in_a_row);
      } catch (const std::exception& e) {
        warn(std::string("relay cycle failed: ") + e.what());
        ++failures_in_a_row;
      }
      if (more && failures_in_a_row == 0) continue;
      // Idle, standing by, or backing off after a failure (Kafka down: up to 5 s between tries).
      const auto pause = failures_in_a_row == 0 ? options.interval
                                                : std::min<std::chrono::milliseconds>(std::chrono::seconds(5),
                                                                                      options.interval * (1 << std::min(failures_in_a_row, 6)));
      std::unique_lock lock(mu);
      wake.wait_for(lock, pause, [&] { return stopping.load() || woken; });
      woken = false;
    }
    store->release_relay_lease(options.owner);
    leading.store(false);
  }

  // One batch: true when there may be more right away.
  bool cycle(int& failures_in_a_row) {
    auto held = store->hold_relay_lease(options.owner, options.lease_ttl);
    if (!held) {
      warn("relay lease: " + held.error().to_string());
      ++failures_in_a_row;
      return false;
    }
    leading.store(held.value());
    if (!held.value()) return false;
    last_renewal = clock::now();

    auto batch = store->unpublished(options.batch_size);
    if (!batch) {
      warn("reading the outbox: " + batch.error().to_string());
      ++failures_in_a_row;
      return false;
    }
    update_backlog();
    if (batch.value().empty()) {
      failures_in_a_row = 0;
      return false;
    }
    const auto& events = batch.value();
    const auto outcomes = send(events);
    // Mark each event unless an earlier one of its aggregate failed in this batch: those go again,
    // after it, so an aggregate's events never overtake each other.
    std::vector<std::int64_t> done;
    done.reserve(events.size());
    std::map<std::pair<std::string, std::string>, bool> blocked;
    std::uint64_t failed_now = 0, resent_now = 0;
    for (std::size_t i = 0; i < events.size(); ++i) {
      auto& stop_here = blocked[{events[i].ev.aggregate_type(), events[i].ev.aggregate_id()}];
      if (!outcomes[i]) {
        ++failed_now;
        stop_here = true;
      } else if (stop_here) {
        ++resent_now;
      } else {
        done.push_back(events[i].position);
      }
    }
    if (auto marked = store->mark_published(done); !marked) {
      warn("marking events published (they will be sent again): " + marked.error().to_string());
      ++failures_in_a_row;
      return false;
    }
    relayed.fetch_add(done.size());
    failed.fetch_add(failed_now);
    if (options.metrics) {
      options.metrics->count_relayed(store->backend(), true, done.size());
      if (failed_now > 0) options.metrics->count_relayed(store->backend(), false, failed_now);
    }
    resent.fetch_add(resent_now);
    batches.fetch_add(1);
    if (failed_now > 0) {
      ++failures_in_a_row;
      return false;
    }
    failures_in_a_row = 0;
    return events.size() == options.batch_size;
  }

  // Produces the batch and waits for every acknowledgement, renewing the lease meanwhile (a batch
  // can wait for message.timeout.ms when Kafka is down). outcomes[i]: event i acknowledged.
  std::vector<char> send(const std::vector<stored_event>& events) {
    struct tally {
      std::mutex mu;
      std::condition_variable all_in;
      std::vector<char> ok;
      std::size_t pending = 0;
    };
    auto t = std::make_shared<tally>();
    t->ok.assign(events.size(), 0);
    t->pending = events.size();
    for (std::size_t i = 0; i < events.size(); ++i)
      sink->produce(events[i].ev, [t, i](result<delivery> d) {
        const std::lock_guard lock(t->mu);
        t->ok[i] = d.ok() ? 1 : 0;
        if (--t->pending == 0) t->all_in.notify_all();
      });
    std::unique_lock lock(t->mu);
    while (!t->all_in.wait_for(lock, options.lease_ttl / 3, [&] { return t->pending == 0; })) {
      lock.unlock();
      (void)store->hold_relay_lease(options.owner, options.lease_ttl);
      lock.lock();
    }
    return t->ok;
  }

  void update_backlog() {
    auto b = store->backlog();
    if (!b) return;
    backlog.store(b.value().events);
    if (options.metrics) {
      const double age = b.value().oldest ? std::chrono::duration<double>(now_ms() - *b.value().oldest).count() : 0.0;
      options.metrics->set_outbox_backlog(store->backend(), b.value().events, std::max(0.0, age));
    }
  }

  // One line a second at most: a relay that cannot reach its store or Kafka retries every few seconds.
  void warn(const std::string& what) {
    const auto now = clock::now();
    if (now - last_warning < std::chrono::seconds(1)) return;
    last_warning = now;
    detail::log(log_level::warn, "outbox relay: " + what);
  }

  std::shared_ptr<event_store> store;
  std::shared_ptr<kafka_sink> sink;
  relay_options options;
  std::thread thread;
  std::atomic<bool> stopping{false};
  std::mutex mu;
  std::condition_variable wake;
  bool woken = false;
  clock::time_point last_renewal{}, last_warning{};
  std::atomic<bool> leading{false};
  std::atomic<std::uint64_t> relayed{0}, failed{0}, resent{0}, batches{0};
  std::atomic<std::int64_t> backlog{0};
};

outbox_relay::outbox_relay(std::shared_ptr<event_store> store, std::shared_ptr<kafka_sink> sink, relay_options options)
    : impl_(std::make_unique<impl>(std::move(store), std::move(sink), std::move(options))) {}

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
          .leading = impl_->leading.load(),
          .backlog = impl_->backlog.load()};
}

}  // namespace eventbus
