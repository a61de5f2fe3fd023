#include "detail/handler_registry.hpp"

#include <algorithm>

#include "detail/event_data.hpp"

namespace eventbus::detail {
namespace {

// The handlers running on this thread, innermost last: a handler that unsubscribes itself must not
// wait for its own call to end.
thread_local std::vector<const handler_entry*> t_running;

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

}  // namespace

running_call::running_call(handler_entry& entry) noexcept : entry_(entry) {
  // Increment first, then check: paired with deactivate_and_wait() (store, then read the count),
  // either this call sees the handler removed or the remover sees this call running.
  entry_.in_flight.fetch_add(1, std::memory_order_seq_cst);
  admitted_ = entry_.active.load(std::memory_order_seq_cst);
  if (admitted_) t_running.push_back(&entry_);
}

running_call::~running_call() {
  if (admitted_) t_running.pop_back();
  entry_.in_flight.fetch_sub(1, std::memory_order_seq_cst);
  // Only a removed handler can have a waiter; see deactivate_and_wait() for why this cannot miss one.
  if (!entry_.active.load(std::memory_order_seq_cst)) entry_.in_flight.notify_all();
}

handler_registry::handler_registry() : current_(std::make_shared<const registry_snapshot>()) {}

std::uint64_t handler_registry::add(std::string pattern, std::string name, handler_fn fn) {
  validate_pattern(pattern);
  if (name.empty()) reject("must not be empty", "handler_name");
  if (!fn) reject("handler '" + name + "' has no function", "handler");

  const std::lock_guard lock(mu_);
  for (const auto& e : entries_)
    if (e->pattern == pattern && e->name == name)
      reject("handler '" + name + "' is already subscribed to '" + pattern + "'", "handler_name");
  auto entry = std::make_shared<handler_entry>();
  entry->id = next_id_++;
  entry->pattern = std::move(pattern);
  entry->name = std::move(name);
  entry->fn = std::move(fn);
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

void handler_registry::deactivate_and_wait(handler_entry& entry) noexcept {
  entry.active.store(false, std::memory_order_seq_cst);
  const int own = static_cast<int>(std::count(t_running.begin(), t_running.end(), &entry));
  for (int n = entry.in_flight.load(std::memory_order_seq_cst); n > own; n = entry.in_flight.load())
    entry.in_flight.wait(n);
}

void handler_registry::publish_snapshot_locked() {
  auto next = std::make_shared<registry_snapshot>();
  for (const auto& e : entries_) {
    if (e->pattern == "*")
      next->wildcard.push_back(e);
    else if (e->pattern.ends_with(".*"))
      next->prefixed.emplace_back(e->pattern.substr(0, e->pattern.size() - 1), e);
    else
      next->exact[e->pattern].push_back(e);
  }
  current_.store(std::move(next), std::memory_order_release);
}

}  // namespace eventbus::detail
