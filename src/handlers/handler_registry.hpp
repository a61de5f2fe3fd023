#pragma once
// Subscriptions as an immutable snapshot swapped on every change (copy-on-write): publishing takes a
// reference to the current snapshot and never waits for a subscriber, subscribing builds the next one.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <algorithm>
#include <vector>

#include "handlers/call_slots.hpp"
#include "support/biased_counter.hpp"
#include "eventbus/handler.hpp"
#include "eventbus/handler_options.hpp"
#include "eventbus/kafka/event_batch.hpp"

namespace eventbus::detail {

struct handler_entry {
  std::uint64_t id = 0;
  std::string pattern;
  std::string name;
  handler_fn fn;
  event_filter when;                   // empty: every matching event
  std::vector<eventbus::middleware> pieces;  // its own middleware, inside the bus's
  // A worker's batch handler (event_batch.hpp): `fn` calls it with a batch of one event, the
  // worker's first pass with up to batch_max ready events at once. Empty for other handlers.
  batch_handler_fn batch;
  std::size_t batch_max = 0;
  std::chrono::milliseconds batch_wait{0};
  bool plain = false;  // no condition and no middleware of its own (set when subscribed)
  std::atomic<bool> active{true};
  std::atomic<int> in_flight{0};  // calls counted instead of held in a call slot (call_slots.hpp)
  // For /handlers (handler_info). Relaxed: only read for display. `calls` is bumped on every call,
  // so it is biased toward the first thread that calls it, in practice the publisher or a worker's
  // handler thread (biased_counter.hpp).
  biased_counter calls;
  mutable std::atomic<std::uint64_t> failures{0}, filtered{0};

  /// The event passes the handler's condition (true without one). Throws what the condition throws.
  [[nodiscard]] bool accepts(const event& ev) const {
    if (!when || when(ev)) return true;
    filtered.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
};
using entry_ptr = std::shared_ptr<handler_entry>;

/// Marks calls of handlers as running, so that removing a handler can wait for them: in a slot of
/// the calling thread (call_slots.hpp), or where slots cannot be used, in the handler's count.
/// One running_call serves a publish's calls of all its handlers, one after another: it takes its
/// slot and its link in t_innermost_call once, and start() points the slot at each handler in turn
/// (a store, a compiler barrier and a load per call). start() is false when the handler was
/// removed before its call began: skip the call.
class running_call {
 public:
  running_call() noexcept = default;
  /// Starts a call of `entry` at once; admitted() says whether it may run.
  explicit running_call(handler_entry& entry) noexcept { admitted_ = start(entry); }
  ~running_call() { end(); }
  running_call(const running_call&) = delete;
  running_call& operator=(const running_call&) = delete;

  /// Ends the call running (if any), then starts one of `entry`. False when `entry` was removed.
  bool start(handler_entry& entry) noexcept;
  [[nodiscard]] bool admitted() const noexcept { return admitted_; }

 private:
  friend class handler_registry;
  void take_slot_and_link() noexcept;
  void end() noexcept;
  static void counted_call_ended(handler_entry& entry) noexcept;

  handler_entry* entry_ = nullptr;  // the handler whose call runs, or null
  bool admitted_ = false;
  bool counted_ = false;            // entry_ is counted in its in_flight
  bool linked_ = false;             // this is in the t_innermost_call chain
  call_slots::thread_slots* slots_ = nullptr;
  std::atomic<const void*>* slot_ = nullptr;  // held from the first start() to the end
  const running_call* outer_ = nullptr;
};

// The calls running on this thread, innermost first, linked through the running_call objects on
// the stack: a handler that unsubscribes itself must not wait for its own call to end.
extern thread_local constinit const running_call* t_innermost_call;

inline void running_call::take_slot_and_link() noexcept {
  call_slots::thread_slots* slots = call_slots::available() ? call_slots::mine() : nullptr;
  if (slots != nullptr && slots->used < call_slots::depth) [[likely]] {
    slots_ = slots;
    slot_ = &slots->slot[slots->used++];
  }
  outer_ = t_innermost_call;
  linked_ = true;
  // GCC sees a local's address stored in a thread_local; end() takes it out again.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdangling-pointer"
#endif
  t_innermost_call = this;
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
}

// Inline: it runs around every handler call.
inline bool running_call::start(handler_entry& entry) noexcept {
  if (!linked_) [[unlikely]]
    take_slot_and_link();
  if (slot_ != nullptr) [[likely]] {
    // Write the slot, then check: paired with deactivate_and_wait() (clear `active`, membarrier,
    // read the slots), either this call sees the handler removed or the remover sees the slot.
    // The compiler barrier is this side's half of the asymmetric fence. The store replaces the
    // previous handler of this publish, so it is a release: what that call did happens before its
    // remover goes on.
    slot_->store(&entry, std::memory_order_release);
    std::atomic_signal_fence(std::memory_order_seq_cst);
    if (entry.active.load(std::memory_order_relaxed)) [[likely]] {
      entry_ = &entry;
      return true;
    }
    slot_->store(nullptr, std::memory_order_release);
    entry_ = nullptr;
    return false;
  }
  // Increment first, then check: the same pairing, with the fences in the atomics.
  if (counted_) counted_call_ended(*entry_);
  entry.in_flight.fetch_add(1, std::memory_order_seq_cst);
  if (entry.active.load(std::memory_order_seq_cst)) {
    entry_ = &entry;
    counted_ = true;
    return true;
  }
  counted_call_ended(entry);
  entry_ = nullptr;
  counted_ = false;
  return false;
}

inline void running_call::end() noexcept {
  if (!linked_) return;
  t_innermost_call = outer_;
  if (slot_ != nullptr) [[likely]] {
    --slots_->used;
    slot_->store(nullptr, std::memory_order_release);  // what the call did happens before the remover goes on
  } else if (counted_) {
    counted_call_ended(*entry_);
  }
}

// The handlers of one exact event type. Looked up by the type's hash, which every event computes once
// when it is built, so a publish neither hashes a string nor walks hash-table nodes.
struct exact_handlers {
  std::size_t type_hash = 0;
  std::string type;
  std::vector<entry_ptr> handlers;  // subscribed to exactly this type
  // Every handler an event of this type reaches (these, the matching prefixes, the wildcards) in
  // subscription order, merged when the snapshot is made: a publish then walks one flat list
  // instead of merging three by id (a pointer chase per handler, a third of a dispatch).
  std::vector<entry_ptr> all;
};

struct registry_snapshot {
  std::uint64_t generation = 0;  // unique in the process, so per-thread caches can tell snapshots apart
  std::vector<exact_handlers> exact;  // sorted by type_hash
  std::vector<std::pair<std::string, entry_ptr>> prefixed;  // prefix keeps its trailing '.'
  std::vector<entry_ptr> wildcard;

  /// Calls f(const entry_ptr&) for every handler matching `type`, in subscription order (a merge
  /// of the three lists, each of which is already in that order).
  template <class F>
  void for_each_match(std::string_view type, std::size_t type_hash, F&& f) const;

  /// Every handler an event of `type` reaches (exact_handlers::all), or null when no handler is
  /// subscribed to exactly that type.
  [[nodiscard]] const std::vector<entry_ptr>* find_exact(std::string_view type, std::size_t type_hash) const noexcept;
};

class handler_registry {
 public:
  handler_registry();

  /// Throws eventbus::exception (errc::invalid_argument) for a bad pattern, name or function, or
  /// a duplicate (pattern, name).
  std::uint64_t add(std::string pattern, std::string name, handler_fn fn, handler_options options = {});
  /// A worker's batch handler (same rules; max_events 1..256).
  std::uint64_t add_batch(std::string pattern, std::string name, batch_handler_fn fn, batch_options options);
  /// Removes and waits for running calls (other than the current thread's). False if unknown.
  bool remove(std::uint64_t id) noexcept;
  void clear() noexcept;
  [[nodiscard]] bool contains(std::uint64_t id) const noexcept;
  /// The largest max_events of the batch handlers subscribed now; 0 without any.
  [[nodiscard]] std::size_t largest_batch() const noexcept { return largest_batch_.load(std::memory_order_relaxed); }
  /// The shortest max_wait of the batch handlers subscribed now; 0 without any, or when one has none.
  [[nodiscard]] std::chrono::milliseconds batch_wait() const noexcept {
    return std::chrono::milliseconds(batch_wait_ms_.load(std::memory_order_relaxed));
  }
  /// One row per handler name, in subscription order (what /handlers shows).
  [[nodiscard]] std::vector<handler_info> describe() const;

  /// The current snapshot, as a counted reference.
  [[nodiscard]] std::shared_ptr<const registry_snapshot> snapshot() const noexcept {
    const std::lock_guard lock(current_mu_);
    return current_;
  }

  /// The current snapshot for one publish on this thread, valid until that publish returns. The hot
  /// path: a publish that is not inside a handler reuses a per-thread cached snapshot while the
  /// registry has not changed, so it takes no lock and touches no reference count.
  [[nodiscard]] const registry_snapshot& snapshot_for_publish(std::shared_ptr<const registry_snapshot>& holder) const;

 private:
  void publish_snapshot_locked();
  std::uint64_t add_entry(std::shared_ptr<handler_entry> entry);
  static void deactivate_and_wait(handler_entry& entry) noexcept;

  mutable std::mutex mu_;  // serialises writers
  std::vector<entry_ptr> entries_;  // in subscription order
  std::uint64_t next_id_ = 1;
  // Guards only the pointer swap and copy, never a rebuild, so readers wait for nothing else.
  // (A mutex rather than std::atomic<std::shared_ptr>: the same cost uncontended, and TSan
  // understands it, which it does not libstdc++ 12's lock-bit implementation.)
  mutable std::mutex current_mu_;
  std::shared_ptr<const registry_snapshot> current_;
  std::atomic<std::uint64_t> current_generation_{0};
  std::atomic<std::size_t> largest_batch_{0};
  std::atomic<std::int64_t> batch_wait_ms_{0};
};

inline const std::vector<entry_ptr>* registry_snapshot::find_exact(std::string_view type,
                                                                  std::size_t type_hash) const noexcept {
  // A few types (the usual case) are scanned: cheaper than a binary search's unpredictable branches.
  auto it = exact.begin();
  if (exact.size() <= 8) {
    while (it != exact.end() && it->type_hash < type_hash) ++it;
  } else {
    it = std::lower_bound(exact.begin(), exact.end(), type_hash,
                          [](const exact_handlers& e, std::size_t h) { return e.type_hash < h; });
  }
  for (; it != exact.end() && it->type_hash == type_hash; ++it)
    if (it->type == type) return &it->all;
  return nullptr;
}

template <class F>
void registry_snapshot::for_each_match(std::string_view type, std::size_t type_hash, F&& f) const {
  if (const std::vector<entry_ptr>* all = find_exact(type, type_hash)) {
    for (const auto& h : *all) f(h);
    return;
  }
  // A type without exact handlers: merge the prefixes that match it with the wildcards, by id.
  auto matches_prefix = [&](std::size_t i) { return type.starts_with(prefixed[i].first); };
  std::size_t p = 0, w = 0;
  while (p < prefixed.size() && !matches_prefix(p)) ++p;
  constexpr auto end_id = ~std::uint64_t{0};
  for (;;) {
    const std::uint64_t idp = p < prefixed.size() ? prefixed[p].second->id : end_id;
    const std::uint64_t idw = w < wildcard.size() ? wildcard[w]->id : end_id;
    if (idp == end_id && idw == end_id) return;
    if (idp < idw) {
      f(prefixed[p++].second);
      while (p < prefixed.size() && !matches_prefix(p)) ++p;
    } else {
      f(wildcard[w++]);
    }
  }
}

}  // namespace eventbus::detail
