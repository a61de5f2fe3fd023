#pragma once
// The topic name of each (aggregate_type, event_type) pair, computed and validated once. A service
// publishes a handful of types millions of times: no string building or validation per event.
//
// Bounded and linear: a fixed table of max_entries slots, each written once (under a lock) and read
// without one. Past that many distinct pairs, names are built per call instead of cached, so a
// service that makes types up from input costs time, never unbounded memory.

#include <array>
#include <atomic>
#include <cstddef>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>

#include "envelope/event_data.hpp"
#include "eventbus/topic.hpp"

namespace eventbus::detail {

class topic_cache {
 public:
  static constexpr std::size_t max_entries = 4096;

  explicit topic_cache(std::string prefix) : prefix_(std::move(prefix)) {}

  /// The topic of `ev`, or errc::invalid_topic. The pointer is either the cache's own (stable for
  /// its lifetime) or `scratch`, when the cache is full. Thread-safe; a hit takes no lock.
  /// `first_send`, when given, is set the first time it is given for a cached name (a sink about to
  /// produce to it); a hit costs one relaxed load more.
  [[nodiscard]] result<const std::string*> topic_of(const event& ev, std::string& scratch,
                                                    bool* first_send = nullptr) const {
    return topic_of(ev.aggregate_type(), ev.event_type(), event_access::data(ev).type_hash, scratch, first_send);
  }
  /// The same from the two names, `hash` being event_type_hash(event_type).
  [[nodiscard]] result<const std::string*> topic_of(std::string_view aggregate_type, std::string_view event_type,
                                                    std::size_t hash, std::string& scratch,
                                                    bool* first_send = nullptr) const {
    if (const auto* hit = find(aggregate_type, event_type, hash)) return first(*hit, first_send);
    auto topic = topic_for(aggregate_type, event_type, prefix_);
    if (!topic) return topic.error();
    const std::lock_guard lock(mu_);
    if (const auto* hit = find(aggregate_type, event_type, hash)) return first(*hit, first_send);
    if (storage_.size() >= max_entries) {
      scratch = std::move(topic).value();
      return &scratch;
    }
    const entry& cached = storage_.emplace_back(hash, std::string(aggregate_type), std::string(event_type),
                                                std::move(topic).value());
    // Half full at most (max_entries of 2 * max_entries slots): probing stays short and always ends.
    for (std::size_t i = hash % slots_.size();; i = (i + 1) % slots_.size()) {
      if (slots_[i].load(std::memory_order_relaxed) == nullptr) {
        slots_[i].store(&cached, std::memory_order_release);
        return first(cached, first_send);
      }
    }
  }

 private:
  struct entry {
    entry(std::size_t hash, std::string aggregate, std::string event, std::string name)
        : type_hash(hash), aggregate_type(std::move(aggregate)), event_type(std::move(event)), topic(std::move(name)) {}
    std::size_t type_hash;
    std::string aggregate_type;
    std::string event_type;
    std::string topic;
    mutable std::atomic<bool> sent{false};  // a first_send was reported for it
  };

  static const std::string* first(const entry& e, bool* first_send) {
    if (first_send != nullptr && !e.sent.load(std::memory_order_relaxed) && !e.sent.exchange(true)) *first_send = true;
    return &e.topic;
  }

  const entry* find(std::string_view aggregate_type, std::string_view event_type, std::size_t hash) const {
    for (std::size_t i = hash % slots_.size();; i = (i + 1) % slots_.size()) {
      const entry* e = slots_[i].load(std::memory_order_acquire);
      if (e == nullptr) return nullptr;
      if (e->type_hash == hash && e->event_type == event_type && e->aggregate_type == aggregate_type) return e;
    }
  }

  const std::string prefix_;
  mutable std::mutex mu_;
  mutable std::deque<entry> storage_;  // written under mu_; a deque keeps addresses
  mutable std::array<std::atomic<const entry*>, 2 * max_entries> slots_{};
};

}  // namespace eventbus::detail
