#pragma once
// The topic name of each (aggregate_type, event_type) pair, computed and validated once. A service
// publishes a handful of types millions of times: no string building or validation per event.

#include <deque>
#include <shared_mutex>
#include <string>
#include <vector>

#include "detail/event_data.hpp"
#include "eventbus/topic.hpp"

namespace eventbus::detail {

class topic_cache {
 public:
  explicit topic_cache(std::string prefix) : prefix_(std::move(prefix)) {}

  /// The topic of `ev` (a stable reference), or errc::invalid_topic. Thread-safe.
  [[nodiscard]] result<const std::string*> topic_of(const event& ev) const {
    const auto hash = event_access::data(ev).type_hash;
    {
      const std::shared_lock lock(mu_);
      if (const auto* hit = find(ev, hash)) return hit;
    }
    auto topic = topic_for(ev, prefix_);
    if (!topic) return topic.error();
    const std::unique_lock lock(mu_);
    if (const auto* hit = find(ev, hash)) return hit;
    entries_.push_back({hash, ev.aggregate_type(), ev.event_type(), std::move(topic).value()});
    return &entries_.back().topic;
  }

 private:
  struct entry {
    std::size_t type_hash;
    std::string aggregate_type;
    std::string event_type;
    std::string topic;
  };

  const std::string* find(const event& ev, std::size_t hash) const {
    for (const auto& e : entries_)
      if (e.type_hash == hash && e.event_type == ev.event_type() && e.aggregate_type == ev.aggregate_type())
        return &e.topic;
    return nullptr;
  }

  const std::string prefix_;
  mutable std::shared_mutex mu_;
  mutable std::deque<entry> entries_;  // a deque: references stay valid as it grows
};

}  // namespace eventbus::detail
