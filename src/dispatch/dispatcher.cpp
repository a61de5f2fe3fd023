#include "eventbus/dispatcher.hpp"

#include <atomic>
#include <chrono>
#include <thread>

#include "dispatch/append_only_list.hpp"
#include "envelope/event_data.hpp"
#include "handlers/handler_registry.hpp"
#include "support/log.hpp"
#include "support/task_pool.hpp"
#include "eventbus/causation.hpp"

namespace eventbus {
namespace {

[[noreturn]] void reject_option(std::string field, std::string message) {
  throw exception(error(errc::invalid_argument, std::move(message), std::move(field)));
}

// More levels would not make a pool fairer, only its idle scan longer.
constexpr std::size_t max_priority_levels = 16;

std::size_t type_hash_of(const event& ev) noexcept { return detail::event_access::data(ev).type_hash; }

}  // namespace

void dispatcher_options::validate() const {
  if (mode == dispatch_mode::thread_pool) {
    if (pool_size == 0) reject_option("pool_size", "must be at least 1 in thread_pool mode");
    if (pool_size > 1024) reject_option("pool_size", "must be at most 1024, got " + std::to_string(pool_size));
    if (queue_capacity == 0) reject_option("queue_capacity", "must be at least 1 in thread_pool mode");
  }
  if (priority_levels == 0 || priority_levels > max_priority_levels)
    reject_option("priority_levels", "must be 1.." + std::to_string(max_priority_levels) + ", got " +
                                         std::to_string(priority_levels));
  if (enqueue_timeout.count() < 0) reject_option("enqueue_timeout", "must not be negative");
  for (std::size_t i = 0; i < middleware.size(); ++i)
    if (!middleware[i])
      reject_option("middleware", "piece " + std::to_string(i) + " ('" + middleware[i].name() + "') has no function");
}

// --- publish_result

publish_result publish_result::rejected(error reason) {
  publish_result r;
  r.rejection_ = std::move(reason);
  return r;
}

void publish_result::add_delivery(delivery_future pending) {
  if (!first_.valid())
    first_ = std::move(pending);
  else
    more_.push_back(std::move(pending));
}

const error& publish_result::rejection() const {
  if (!rejection_) throw std::logic_error("eventbus::publish_result::rejection() called on an accepted publish");
  return *rejection_;
}

bool publish_result::is_ready() const noexcept {
  if (rejection_ || !first_.valid()) return true;
  if (!first_.is_ready()) return false;
  for (const auto& f : more_)
    if (!f.is_ready()) return false;
  return true;
}

result<std::vector<delivery>> publish_result::wait() const {
  if (rejection_) return *rejection_;
  std::vector<delivery> deliveries;
  std::optional<error> first_failure;
  auto collect = [&](const delivery_future& f) {
    auto outcome = f.get();  // every future is waited for, even after a failure
    if (outcome.ok())
      deliveries.push_back(std::move(outcome).value());
    else if (!first_failure)
      first_failure = outcome.error();
  };
  if (first_.valid()) collect(first_);
  for (const auto& f : more_) collect(f);
  if (first_failure) return *first_failure;
  return deliveries;
}

// --- dispatcher

struct dispatcher::impl {
  explicit impl(dispatcher_options opts) : options(std::move(opts)) {
    if (options.mode == dispatch_mode::thread_pool)
      pool = std::make_unique<detail::task_pool>(options.pool_size, options.queue_capacity, options.priority_levels);
    chain.push_back(middlewares::recover());
    chain.insert(chain.end(), options.middleware.begin(), options.middleware.end());
  }

  // Runs one handler call, isolated: whatever it throws is logged and counted, never propagated.
  // The caller has made `ev` this thread's cause (a cause_scope) and holds `call`, once for all
  // the handlers it calls: events made by a handler continue ev's chain. False when the call
  // failed; a handler removed meanwhile, or whose condition rejects the event, is skipped (true).
  // Inline in the publish loop for the common call (no condition, no middleware, no observer): a
  // call through another function's frame was a fifth of a dispatch to four handlers.
  [[gnu::always_inline]] bool invoke(detail::running_call& call, detail::handler_entry& handler, const event& ev) noexcept {
    if (!plain_calls || !handler.plain) [[unlikely]]
      return invoke_with_extras(call, handler, ev);
    if (!call.start(handler)) return true;
    handler.calls.add();
    return run(handler, ev);
  }

  [[gnu::noinline]] bool invoke_with_extras(detail::running_call& call, detail::handler_entry& handler,
                                            const event& ev) noexcept {
    if (!call.start(handler)) return true;
    if (handler.when) [[unlikely]] {
      if (auto passed = passes_condition(handler, ev); passed != condition::passed) return passed == condition::rejected;
    }
    handler.calls.add();
    const bool plain = options.middleware.empty() && handler.pieces.empty();
    if (!options.observe_handler) return plain ? run(handler, ev) : run_chain_of(handler, ev);
    const auto start = std::chrono::steady_clock::now();
    const bool success = plain ? run(handler, ev) : run_chain_of(handler, ev);
    try {
      options.observe_handler(handler.name, ev, success, std::chrono::steady_clock::now() - start);
    } catch (...) {  // an observer must not fail a call that succeeded
    }
    return success;
  }

  // The store's acknowledgement of `ev`, as a settled delivery ("store", offset = its position).
  [[gnu::noinline]] result<delivery_future> append_to_store(const event& ev) {
    auto appended = options.store->append(ev.aggregate_type(), ev.aggregate_id(), expected_version::any(), ev);
    if (!appended) return appended.error();
    return delivery_future::ready(delivery{.sink = "store", .topic = "", .partition = -1,
                                           .offset = appended.value().already_stored ? -1 : appended.value().last_position});
  }

  enum class condition { passed, rejected, threw };

  // The handler's condition, isolated like the handler: a throw is a failed call.
  condition passes_condition(detail::handler_entry& handler, const event& ev) noexcept {
    try {
      if (handler.accepts(ev)) return condition::passed;
      if (options.observe_filtered) options.observe_filtered(handler.name, ev);
      return condition::rejected;
    } catch (const std::exception& e) {
      handler.calls.add();
      report_failure(handler, ev, std::string("its condition threw: ") + e.what());
    } catch (...) {
      handler.calls.add();
      report_failure(handler, ev, "its condition threw an unknown exception");
    }
    return condition::threw;
  }

  // The call through recover -> the bus's pieces -> the handler's pieces. A deferral (a rate limit
  // in waiting mode) waits here, on the pool thread, and runs the chain again.
  bool run_chain_of(detail::handler_entry& handler, const event& ev) noexcept {
    const attempt_context ctx{.ev = ev, .handler = handler.name, .attempt = 1, .topic = {}, .partition = -1, .offset = -1};
    try {
      for (;;) {
        auto outcome = eventbus::run_chain(chain, handler.pieces, handler.fn, ctx);
        if (outcome.result == attempt_result::deferred) {
          std::this_thread::sleep_for(outcome.retry_after);
          continue;
        }
        if (outcome.result == attempt_result::succeeded) return true;
        report_failure(handler, ev, outcome.reason.empty() ? outcome.error : outcome.reason + ": " + outcome.error);
        return false;
      }
    } catch (const std::exception& e) {  // only a piece outside recover could get here (none: out of memory)
      report_failure(handler, ev, e.what());
    } catch (...) {
      report_failure(handler, ev, "unknown exception");
    }
    return false;
  }

  bool run(detail::handler_entry& handler, const event& ev) noexcept {
    try {
      handler.fn(ev);
      return true;
    } catch (const std::exception& e) {
      report_failure(handler, ev, e.what());
    } catch (...) {
      report_failure(handler, ev, "unknown exception (not derived from std::exception)");
    }
    return false;
  }

  void report_failure(detail::handler_entry& handler, const event& ev, std::string_view what) noexcept {
    handler_failures.fetch_add(1, std::memory_order_relaxed);
    handler.failures.fetch_add(1, std::memory_order_relaxed);
    if (!detail::log_enabled(log_level::error)) return;
    try {
      detail::log(log_level::error, "handler '" + handler.name + "' failed on event " + ev.event_id() + " (" +
                                        ev.event_type() + "): " + std::string(what));
    } catch (...) {
      // Out of memory while formatting: the failure is still counted.
    }
  }

  result<void> schedule(const detail::registry_snapshot& handlers, const event& ev, std::size_t priority) {
    std::vector<detail::task_pool::task> tasks;
    handlers.for_each_match(ev.event_type(), type_hash_of(ev), [&](const detail::entry_ptr& handler) {
      // The task keeps the entry alive; invoke() skips it if it was removed meanwhile.
      tasks.emplace_back([this, handler, ev] {
        const cause_scope cause(ev);
        detail::running_call call;
        (void)invoke(call, *handler, ev);
      });
    });
    switch (pool->push_all(tasks, options.enqueue_timeout, priority)) {
      case detail::task_pool::push_status::ok: return {};
      case detail::task_pool::push_status::closed: return error(errc::shut_down, "dispatcher is shut down");
      case detail::task_pool::push_status::full: break;
    }
    return error(errc::queue_full, "dispatcher queue is full (capacity " + std::to_string(options.queue_capacity) +
                                       " handler calls); waited " + std::to_string(options.enqueue_timeout.count()) +
                                       " ms to schedule " + std::to_string(tasks.size()) + " for '" +
                                       ev.event_type() + "'");
  }

  const dispatcher_options options;
  // No bus middleware and no observer: a handler without its own extras is called directly.
  const bool plain_calls = options.middleware.empty() && !options.observe_handler;
  std::vector<middleware> chain;  // recover, then options.middleware
  std::shared_ptr<detail::handler_registry> registry = std::make_shared<detail::handler_registry>();
  std::unique_ptr<detail::task_pool> pool;
  detail::append_only_list<std::shared_ptr<event_sink>> sinks;  // read per publish without a lock
  std::atomic<bool> closed{false};
  detail::biased_counter published;  // once per publish: biased to the publishing thread
  std::atomic<std::uint64_t> rejected{0};
  std::atomic<std::uint64_t> handler_failures{0};
};

dispatcher::dispatcher(dispatcher_options options) {
  options.validate();
  impl_ = std::make_unique<impl>(options);
}

dispatcher::~dispatcher() {
  shutdown();
  // Releases every handler's function now: per-thread snapshot caches may outlive the dispatcher.
  impl_->registry->clear();
}

subscription dispatcher::subscribe(std::string pattern, std::string handler_name, handler_fn fn,
                                   handler_options options) {
  const auto id = impl_->registry->add(std::move(pattern), std::move(handler_name), std::move(fn), std::move(options));
  return subscription(impl_->registry, id);
}

std::vector<handler_info> dispatcher::handlers() const { return impl_->registry->describe(); }

void dispatcher::clear() noexcept { impl_->registry->clear(); }

publish_result dispatcher::publish(const event& ev, publish_options how) {
  auto& d = *impl_;
  // Every return returns this one object, so it is built in the caller's slot and never moved.
  publish_result outcome;
  const auto reject = [&](error why) {
    d.rejected.fetch_add(1, std::memory_order_relaxed);
    outcome.rejection_ = std::move(why);
  };
  if (how.priority >= d.options.priority_levels) [[unlikely]] {
    reject(error(errc::invalid_argument,
                 "priority " + std::to_string(how.priority) + " is out of range: this dispatcher has priority_levels " +
                     std::to_string(d.options.priority_levels) + " (0.." + std::to_string(d.options.priority_levels - 1) + ")",
                 "priority"));
    return outcome;
  }
  const bool from_handler = d.pool && d.pool->on_pool_thread();
  if (d.closed.load(std::memory_order_acquire) && !from_handler) {
    reject(error(errc::shut_down, "dispatcher is shut down"));
    return outcome;
  }

  const auto& sinks = d.sinks.current();
  for (const auto& sink : sinks) {
    if (auto ok = sink->check(ev); !ok) {
      reject(ok.error());
      return outcome;
    }
  }

  // Stored first: nothing runs for an event that is not durable. (Out of line: a dispatcher without
  // a store then builds no delivery on its stack; zeroing one was a third of a publish.)
  if (d.options.store) {
    auto appended = d.append_to_store(ev);
    if (!appended) {
      reject(appended.error());
      return outcome;
    }
    outcome.add_delivery(std::move(appended).value());
  }

  std::shared_ptr<const detail::registry_snapshot> holder;
  const auto& handlers = d.registry->snapshot_for_publish(holder);
  if (d.pool) {
    if (auto scheduled = d.schedule(handlers, ev, how.priority); !scheduled) {
      reject(scheduled.error());
      outcome.first_ = {};  // a stored event's delivery goes with the rejection (as before: none)
      return outcome;
    }
  } else {
    const cause_scope cause(ev);
    detail::running_call call;
    handlers.for_each_match(ev.event_type(), type_hash_of(ev), [&](const detail::entry_ptr& h) { (void)d.invoke(call, *h, ev); });
  }
  d.published.add();

  for (const auto& sink : sinks) {
    try {
      outcome.add_delivery(sink->accept(ev));
    } catch (const std::exception& e) {
      outcome.add_delivery(delivery_future::ready(
          error(errc::delivery_failed, "sink '" + std::string(sink->name()) + "' threw: " + e.what())));
    }
  }
  return outcome;
}

handler_run dispatcher::run_handlers(const event& ev) {
  auto& d = *impl_;
  std::shared_ptr<const detail::registry_snapshot> holder;
  const auto& handlers = d.registry->snapshot_for_publish(holder);
  handler_run outcome;
  const cause_scope cause(ev);
  detail::running_call call;
  handlers.for_each_match(ev.event_type(), type_hash_of(ev), [&](const detail::entry_ptr& h) {
    ++outcome.calls;
    if (!d.invoke(call, *h, ev)) ++outcome.failures;
  });
  return outcome;
}

void dispatcher::add_sink(std::shared_ptr<event_sink> sink) {
  if (!sink) reject_option("sink", "must not be null");
  // Both would send every event to Kafka: once mirrored now, once more by the store's relay.
  if (impl_->options.store && sink->name() == "kafka")
    reject_option("sink", "a kafka sink on a dispatcher with dispatcher_options.store would send every event twice: "
                          "with a store, an outbox_relay takes stored events to Kafka (eventbus::service wires it)");
  impl_->sinks.append(std::move(sink));
}

void dispatcher::shutdown() noexcept {
  impl_->closed.store(true, std::memory_order_release);
  if (impl_->pool) impl_->pool->close_and_join();
}

dispatcher_stats dispatcher::stats() const noexcept {
  return {.published = impl_->published.load(),
          .rejected = impl_->rejected.load(std::memory_order_relaxed),
          .handler_failures = impl_->handler_failures.load(std::memory_order_relaxed)};
}

}  // namespace eventbus
