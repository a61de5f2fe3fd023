#include "handlers/handler_registry.hpp"

#include <algorithm>
#include <chrono>
#include <optional>
#include <stdexcept>
#include <thread>

#include "eventbus/retry.hpp"

#include "handlers/call_slots.hpp"

#include "envelope/event_data.hpp"

namespace eventbus::detail {

thread_local constinit const running_call* t_innermost_call = nullptr;

namespace {


[[noreturn]] void reject(std::string message, std::string field) {
  throw eventbus::exception(eventbus::error(errc::invalid_argument, std::move(message), std::move(field)));
}

void validate_pattern(const std::string& pattern) {
  if (pattern == "*") return;
  if (pattern.size() > 2 && pattern.ends_with(".*")) {
    if (is_dotted_lower_case(std::string_view(pattern).substr(0, pattern.size() - 2), 1)) return;
  } else if (is_valid_event_type(pattern)) {
    return;
  }
  reject("'" + pattern + "' is not an event type ('order.created'), a prefix ('order.*') or '*'", "pattern");
}

// Generations come from one process-wide counter: a cache can never mistake a snapshot of one
// registry for another's, even when a registry is allocated where a destroyed one was.
std::atomic<std::uint64_t> g_next_generation{1};

struct snapshot_cache {
  std::uint64_t generation = 0;
  std::shared_ptr<const registry_snapshot> snapshot;
};
thread_local snapshot_cache t_snapshot_cache;

std::vector<entry_ptr>& exact_list_for(registry_snapshot& snapshot, const std::string& type) {
  const auto hash = event_type_hash(type);
  for (auto& e : snapshot.exact)
    if (e.type_hash == hash && e.type == type) return e.handlers;
  return snapshot.exact.emplace_back(exact_handlers{hash, type, {}, {}}).handlers;
}

}  // namespace

// Outside a handler call-site's hot path (the constructor and destructor are inline): a call that
// ends after its handler was removed wakes the remover.
void running_call::counted_call_ended(handler_entry& entry) noexcept {
  entry.in_flight.fetch_sub(1, std::memory_order_seq_cst);
  // Only a removed handler can have a waiter; see deactivate_and_wait() for why this cannot miss one.
  if (!entry.active.load(std::memory_order_seq_cst)) entry.in_flight.notify_all();
}

handler_registry::handler_registry() {
  const std::lock_guard lock(mu_);
  publish_snapshot_locked();
}

const registry_snapshot& handler_registry::snapshot_for_publish(
    std::shared_ptr<const registry_snapshot>& holder) const {
  // Inside a handler, an outer publish on this thread may still be iterating the cached snapshot:
  // replacing the cache could free it, so nested publishes take a counted reference instead.
  if (t_innermost_call != nullptr) {
    holder = snapshot();
    return *holder;
  }
  auto& cache = t_snapshot_cache;
  if (cache.generation != current_generation_.load(std::memory_order_acquire)) {
    cache.snapshot = snapshot();
    cache.generation = cache.snapshot->generation;
  }
  return *cache.snapshot;
}

std::uint64_t handler_registry::add(std::string pattern, std::string name, handler_fn fn, handler_options options) {
  validate_pattern(pattern);
  if (name.empty()) reject("must not be empty", "handler_name");
  if (!fn) reject("handler '" + name + "' has no function", "handler");
  for (std::size_t i = 0; i < options.middleware.size(); ++i)
    if (!options.middleware[i])
      reject("handler '" + name + "': middleware " + std::to_string(i) + " ('" + options.middleware[i].name() +
                 "') has no function",
             "middleware");
  auto entry = std::make_shared<handler_entry>();
  entry->pattern = std::move(pattern);
  entry->name = std::move(name);
  entry->fn = std::move(fn);
  entry->when = std::move(options.when);
  entry->pieces = std::move(options.middleware);
  return add_entry(std::move(entry));
}

std::uint64_t handler_registry::add_batch(std::string pattern, std::string name, batch_handler_fn fn,
                                          batch_options options) {
  validate_pattern(pattern);
  if (name.empty()) reject("must not be empty", "handler_name");
  if (!fn) reject("batch handler '" + name + "' has no function", "handler");
  if (options.max_events < 1 || options.max_events > 256)
    reject("batch handler '" + name + "': max_events must be 1..256, got " + std::to_string(options.max_events),
           "max_events");
  if (options.max_wait.count() < 0 || options.max_wait > std::chrono::minutes(1))
    reject("batch handler '" + name + "': max_wait must be 0..60000 ms, got " + std::to_string(options.max_wait.count()) +
               " ms",
           "max_wait");
  auto entry = std::make_shared<handler_entry>();
  entry->pattern = std::move(pattern);
  entry->name = std::move(name);
  entry->when = std::move(options.when);
  entry->batch_max = options.max_events;
  entry->batch_wait = options.max_wait;
  entry->batch = std::move(fn);
  // One event at a time (a retry, a worker with middleware): a batch of one whose outcome becomes
  // what a handler of one event reports, so the middleware's recover and retry pieces apply.
  entry->fn = [batch = entry->batch](const event& ev) {
    event_batch one({ev});
    batch(one);
    switch (one.outcome_of(0)) {
      case event_batch::outcome::succeeded: return;
      case event_batch::outcome::failed: throw std::runtime_error(one.reason_of(0));
      case event_batch::outcome::dead_letter: throw permanent_error(one.reason_of(0));
    }
  };
  return add_entry(std::move(entry));
}

std::uint64_t handler_registry::add_entry(std::shared_ptr<handler_entry> entry) {
  const std::lock_guard lock(mu_);
  for (const auto& e : entries_)
    if (e->pattern == entry->pattern && e->name == entry->name)
      reject("handler '" + entry->name + "' is already subscribed to '" + entry->pattern + "'", "handler_name");
  entry->id = next_id_++;
  entry->plain = !entry->when && entry->pieces.empty();
  entries_.push_back(std::move(entry));
  publish_snapshot_locked();
  return entries_.back()->id;
}

bool handler_registry::remove(std::uint64_t id) noexcept {
  entry_ptr removed;
  {
    const std::lock_guard lock(mu_);
    const auto it = std::find_if(entries_.begin(), entries_.end(), [id](const entry_ptr& e) { return e->id == id; });
    if (it == entries_.end()) return false;
    removed = std::move(*it);
    entries_.erase(it);
    publish_snapshot_locked();
  }
  deactivate_and_wait(*removed);
  return true;
}

void handler_registry::clear() noexcept {
  std::vector<entry_ptr> removed;
  {
    const std::lock_guard lock(mu_);
    removed.swap(entries_);
    publish_snapshot_locked();
  }
  for (const auto& e : removed) deactivate_and_wait(*e);
}

bool handler_registry::contains(std::uint64_t id) const noexcept {
  const std::lock_guard lock(mu_);
  return std::any_of(entries_.begin(), entries_.end(), [id](const entry_ptr& e) { return e->id == id; });
}

std::vector<handler_info> handler_registry::describe() const {
  std::vector<handler_info> rows;
  const std::lock_guard lock(mu_);
  for (const auto& e : entries_) {
    auto row = std::find_if(rows.begin(), rows.end(), [&](const handler_info& r) { return r.name == e->name; });
    if (row == rows.end()) row = rows.insert(rows.end(), handler_info{.name = e->name});
    row->patterns.push_back(e->pattern);
    row->has_condition = row->has_condition || static_cast<bool>(e->when);
    row->max_events = std::max(row->max_events, e->batch_max);
    for (const auto& piece : e->pieces)
      if (std::find(row->middleware.begin(), row->middleware.end(), piece.name()) == row->middleware.end())
        row->middleware.push_back(piece.name());
    row->in_flight += static_cast<std::uint64_t>(std::max(0, e->in_flight.load(std::memory_order_relaxed))) +
                      (call_slots::available() ? call_slots::count_held(e.get()) : 0);
    row->calls += e->calls.load();
    row->failures += e->failures.load(std::memory_order_relaxed);
    row->filtered += e->filtered.load(std::memory_order_relaxed);
  }
  return rows;
}

void handler_registry::deactivate_and_wait(handler_entry& entry) noexcept {
  entry.active.store(false, std::memory_order_seq_cst);
  // Calls of it below us on this thread's stack (a handler removing itself) cannot end while we
  // wait: they are not waited for.
  int own = 0, own_counted = 0;
  for (const running_call* call = t_innermost_call; call != nullptr; call = call->outer_)
    if (call->entry_ == &entry) {
      ++own;
      if (call->counted_) ++own_counted;
    }
  for (int n = entry.in_flight.load(std::memory_order_seq_cst); n > own_counted; n = entry.in_flight.load())
    entry.in_flight.wait(n);
  if (call_slots::available()) {
    call_slots::heavy_fence();
    // Removal is rare and a call usually short: look again after a pause that grows to 1 ms.
    for (auto pause = std::chrono::microseconds(20); call_slots::held_elsewhere(&entry);
         pause = std::min(pause * 2, std::chrono::microseconds(1000)))
      std::this_thread::sleep_for(pause);
  }
  // No call can start any more, and none is running (unless our own): release the function and what
  // it captured now, rather than when the last stale per-thread snapshot cache lets go of the entry.
  if (own == 0) entry.fn = nullptr;
}

void handler_registry::publish_snapshot_locked() {
  auto next = std::make_shared<registry_snapshot>();
  next->generation = g_next_generation.fetch_add(1, std::memory_order_relaxed);
  std::size_t largest_batch = 0;
  std::optional<std::chrono::milliseconds> shortest_wait;
  for (const auto& e : entries_) {
    largest_batch = std::max(largest_batch, e->batch_max);
    if (e->batch) shortest_wait = std::min(shortest_wait.value_or(e->batch_wait), e->batch_wait);
    if (e->pattern == "*")
      next->wildcard.push_back(e);
    else if (e->pattern.ends_with(".*"))
      next->prefixed.emplace_back(e->pattern.substr(0, e->pattern.size() - 1), e);
    else
      exact_list_for(*next, e->pattern).push_back(e);
  }
  for (auto& type : next->exact) {
    type.all = type.handlers;
    for (const auto& [prefix, e] : next->prefixed)
      if (type.type.starts_with(prefix)) type.all.push_back(e);
    type.all.insert(type.all.end(), next->wildcard.begin(), next->wildcard.end());
    std::sort(type.all.begin(), type.all.end(), [](const entry_ptr& a, const entry_ptr& b) { return a->id < b->id; });
  }
  std::sort(next->exact.begin(), next->exact.end(),
            [](const exact_handlers& a, const exact_handlers& b) { return a.type_hash < b.type_hash; });
  std::shared_ptr<const registry_snapshot> previous;  // released outside the lock
  const auto generation = next->generation;
  {
    const std::lock_guard lock(current_mu_);
    previous = std::exchange(current_, std::move(next));
  }
  current_generation_.store(generation, std::memory_order_release);
  largest_batch_.store(largest_batch, std::memory_order_relaxed);
  batch_wait_ms_.store(shortest_wait.value_or(std::chrono::milliseconds(0)).count(), std::memory_order_relaxed);
}

}  // namespace eventbus::detail
