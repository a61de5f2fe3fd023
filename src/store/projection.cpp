#include "eventbus/store/projection.hpp"

#include <pthread.h>

#include <condition_variable>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "support/log.hpp"
#include "store/append_rules.hpp"

namespace eventbus {
namespace {

[[noreturn]] void reject(const char* field, const std::string& why) {
  throw exception(error(errc::invalid_argument, why, field));
}

}  // namespace

void projection_options::validate() const {
  if (name.empty()) reject("name", "must not be empty: it names the checkpoint");
  if (name.starts_with("eventbus.")) reject("name", "names starting 'eventbus.' are eventbus's own (a store copy's progress)");
  if (filter.after_position != 0 || filter.from_time)
    reject("filter", "after_position and from_time must be unset: a projection starts from its checkpoint");
  if (filter.page_size == 0 || filter.page_size > 100'000) reject("filter.page_size", "must be between 1 and 100000");
  if (poll_interval.count() <= 0) reject("poll_interval", "must be positive");
  retry.validate();
}

std::string_view to_string(projection_state state) noexcept {
  switch (state) {
    case projection_state::stopped: return "stopped";
    case projection_state::catching_up: return "catching_up";
    case projection_state::live: return "live";
    case projection_state::failed: return "failed";
  }
  return "unknown";
}

struct projection::impl {
  impl(std::shared_ptr<outbox_store> s, projection_options o, projection_handler h, projection_tx_handler th)
      : store(std::move(s)), options(std::move(o)), handler(std::move(h)), tx_handler(std::move(th)) {
    if (!store) reject("store", "must not be null");
    if (!handler && !tx_handler) reject("handler", "must not be empty");
    if (tx_handler) {
      backend = dynamic_cast<detail::checked_store*>(store.get());
      if (backend == nullptr) reject("store", "a transactional projection needs a store opened by open_sqlite_store or open_postgres_store");
    }
    options.validate();
    if (options.metrics) options.metrics->count_projection_errors(options.name, 0);  // a rate reads 0 before the first
  }

  void run() noexcept {
    auto loaded = store->load_checkpoint(options.name);
    if (!loaded) return fail(loaded.error());
    set([&](projection_status& s) {
      s.position = loaded.value();
      s.state = projection_state::catching_up;
    });
    std::uint64_t appends_seen = 0;
    while (!stopping()) {
      // What is stored now: everything up to it is visible to the read that follows (PostgreSQL
      // appends commit in position order), so once read, the checkpoint may move up to it even
      // when the filter left the last events out.
      const auto head = store->last_position();
      if (!head) {
        warn("reading the store's last position: " + head.error().to_string());
        appends_seen = store->wait_for_append(appends_seen, options.poll_interval);
        continue;
      }
      const auto caught_up = follow_up_to(head.value());
      if (!caught_up) return fail(caught_up.error());
      if (!caught_up.value()) continue;  // more to read (a full page), or stopping
      set([&](projection_status& s) {
        s.state = projection_state::live;
        s.lag = 0;
      });
      publish_lag(0);
      appends_seen = store->wait_for_append(appends_seen, options.poll_interval);
    }
    if (auto saved = save(current_position()); !saved) warn("saving the checkpoint at stop: " + saved.error().to_string());
    set([](projection_status& s) { s.state = projection_state::stopped; });
  }

  // Handles the events after the position, a page at a time, up to `head`. True once caught up
  // (every event up to head handled or filtered out); false when stopping with more to do.
  result<bool> follow_up_to(std::int64_t head) {
    for (;;) {
      std::int64_t from = current_position();
      if (from >= head) return true;
      read_filter page_filter = options.filter;
      page_filter.after_position = from;
      std::vector<stored_event> page;
      page.reserve(options.filter.page_size);
      auto read = store->read_all(page_filter, [&](const stored_event& e) {
        page.push_back(e);
        return page.size() < options.filter.page_size;
      });
      if (!read) return read.error();
      set([&](projection_status& s) { s.lag = std::max<std::int64_t>(0, head - from); });
      publish_lag(head - from);
      for (const auto& e : page) {
        if (stopping()) return false;
        if (auto handled = handle(e); !handled) return handled.error();
        set([&](projection_status& s) {
          s.position = e.position;
          s.lag = std::max<std::int64_t>(0, head - e.position);
          ++s.handled;
        });
      }
      const bool full = page.size() == options.filter.page_size;
      // A short page read everything stored up to head: nothing between is left unread.
      if (!full)
        set([&](projection_status& s) {
          s.position = std::max(s.position, head);
          s.lag = 0;
        });
      if (auto saved = save(current_position()); !saved) warn("saving the checkpoint: " + saved.error().to_string());
      caught_up_cv.notify_all();
      if (!full) return true;
    }
  }

  // One event through the handler, with the retry policy's backoffs between attempts.
  result<void> handle(const stored_event& e) {
    for (int attempt = 1;; ++attempt) {
      std::string why;
      try {
        if (!tx_handler) {
          handler(e);
          return {};
        }
        // The rows and the checkpoint together: committed, this event is never handed over again.
        auto done = backend->run_in_transaction([&](store_transaction& tx) -> result<bool> {
          tx_handler(e, tx);
          if (auto saved = backend->save_checkpoint_in(tx, options.name, e.position); !saved) return saved.error();
          return true;
        });
        if (!done) throw exception(done.error());
        saved_position = e.position;
        return {};
      } catch (const std::exception& ex) {
        why = ex.what();
      } catch (...) {
        why = "a non-standard exception";
      }
      if (options.metrics) options.metrics->count_projection_errors(options.name, 1);
      if (attempt >= options.retry.max_attempts || stopping())
        return error(errc::delivery_failed, "projection '" + options.name + "': the handler failed on the event at position " +
                                                std::to_string(e.position) + " (" + e.ev.event_type() + " " +
                                                e.ev.event_id() + ") " + std::to_string(attempt) +
                                                " time(s), the last with: " + why);
      warn("the handler failed on position " + std::to_string(e.position) + " (attempt " + std::to_string(attempt) +
           "), retrying: " + why);
      std::unique_lock lock(mu);
      wake.wait_for(lock, options.retry.backoff_before(attempt + 1, unit_random(random)), [&] { return stop_asked; });
    }
  }

  result<void> save(std::int64_t position) {
    if (position == saved_position) return {};
    auto saved = store->save_checkpoint(options.name, position);
    if (saved) saved_position = position;
    return saved;
  }

  void fail(const error& why) {
    (void)save(current_position());  // what was handled stays handled
    detail::log(log_level::error, "projection '" + options.name + "' stopped: " + why.to_string());
    set([&](projection_status& s) {
      s.state = projection_state::failed;
      s.failure = why;
    });
    caught_up_cv.notify_all();
  }

  void publish_lag(std::int64_t lag) const {
    if (options.metrics) options.metrics->set_projection_lag(options.name, std::max<std::int64_t>(0, lag));
  }

  // At most one line a second: a store that is down is tried again every poll.
  void warn(const std::string& what) {
    const auto now = std::chrono::steady_clock::now();
    if (now - last_warning < std::chrono::seconds(1)) return;
    last_warning = now;
    detail::log(log_level::warn, "projection '" + options.name + "': " + what);
  }

  template <class Edit>
  void set(Edit&& edit) {
    const std::lock_guard lock(mu);
    edit(status);
  }
  std::int64_t current_position() const {
    const std::lock_guard lock(mu);
    return status.position;
  }
  bool stopping() const {
    const std::lock_guard lock(mu);
    return stop_asked;
  }

  std::shared_ptr<outbox_store> store;
  projection_options options;
  projection_handler handler;
  projection_tx_handler tx_handler;
  detail::checked_store* backend = nullptr;  // transactional projections
  std::thread thread;
  mutable std::mutex mu;
  std::condition_variable wake;          // stop() ends a backoff
  std::condition_variable caught_up_cv;  // a page saved, or failed
  bool stop_asked = false;
  projection_status status;
  std::int64_t saved_position = -1;  // projection thread only
  std::chrono::steady_clock::time_point last_warning{};
  std::minstd_rand random{std::random_device{}()};
  std::uniform_real_distribution<double> unit_random{0.0, 1.0};
};

projection::projection(std::shared_ptr<outbox_store> store, projection_options options, projection_handler handler)
    : impl_(std::make_unique<impl>(std::move(store), std::move(options), std::move(handler), projection_tx_handler{})) {}

projection::projection(std::shared_ptr<outbox_store> store, projection_options options, projection_tx_handler handler)
    : impl_(std::make_unique<impl>(std::move(store), std::move(options), projection_handler{}, std::move(handler))) {}

projection::~projection() { stop(); }

void projection::start() {
  if (impl_->thread.joinable()) throw exception(error(errc::invalid_argument, "projection already started"));
  impl_->thread = std::thread([this] {
    pthread_setname_np(pthread_self(), "eventbus-proj");
    impl_->run();
  });
}

void projection::stop() noexcept {
  {
    const std::lock_guard lock(impl_->mu);
    impl_->stop_asked = true;
  }
  impl_->wake.notify_all();
  if (impl_->thread.joinable() && impl_->thread.get_id() != std::this_thread::get_id()) impl_->thread.join();
}

result<void> projection::wait_until_caught_up(std::chrono::milliseconds timeout) {
  const auto head = impl_->store->last_position();
  if (!head) return head.error();
  std::unique_lock lock(impl_->mu);
  const bool done = impl_->caught_up_cv.wait_for(lock, timeout, [&] {
    return impl_->status.position >= head.value() || impl_->status.state == projection_state::failed;
  });
  if (impl_->status.state == projection_state::failed) return *impl_->status.failure;
  if (!done)
    return error(errc::timed_out, "projection '" + impl_->options.name + "' is at position " +
                                      std::to_string(impl_->status.position) + ", not yet at " +
                                      std::to_string(head.value()) + " after " + std::to_string(timeout.count()) + " ms");
  return {};
}

projection_status projection::status() const {
  const std::lock_guard lock(impl_->mu);
  return impl_->status;
}

result<void> projection::reset(checkpoint_store& store, std::string_view name) { return store.save_checkpoint(name, 0); }

}  // namespace eventbus
