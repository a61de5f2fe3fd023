#pragma once
// The topic name of each (aggregate_type, event_type) pair, computed and validated once. A service
// publishes a handful of types millions of times: no string building or validation per event.

#include <deque>
#include <string>
#include <vector>

#include "detail/append_only_list.hpp"
#include "detail/event_data.hpp"
#include "eventbus/topic.hpp"

namespace eventbus::detail {

class topic_cache {
 public:
  explicit topic_cache(std::string prefix) : prefix_(std::move(prefix)) {}

  /// The topic of `ev` (a reference stable for the cache's lifetime), or errc::invalid_topic.
  /// Thread-safe; a hit takes no lock.
  [[nodiscard]] result<const std::string*> topic_of(const event& ev) const {
    const auto hash = event_access::data(ev).type_hash;
    if (const auto* hit = find(entries_.current(), ev, hash)) return hit;
    auto topic = topic_for(ev, prefix_);
    if (!topic) return topic.error();
    return entries_.with_writer_lock([&](const std::vector<const entry*>& latest) -> const std::string* {
      if (const auto* hit = find(latest, ev, hash)) return hit;
      const auto& added = storage_.emplace_back(entry{hash, ev.aggregate_type(), ev.event_type(), std::move(topic).value()});
      entries_.append_locked(&added);
      return &added.topic;
    });
  }

 private:
  struct entry {
    std::size_t type_hash;
    std::string aggregate_type;
    std::string event_type;
    std::string topic;
  };

  static const std::string* find(const std::vector<const entry*>& entries, const event& ev, std::size_t hash) {
    for (const auto* e : entries)
      if (e->type_hash == hash && e->event_type == ev.event_type() && e->aggregate_type == ev.aggregate_type())
        return &e->topic;
    return nullptr;
  }

  const std::string prefix_;
  mutable std::deque<entry> storage_;  // written under the list's writer lock; a deque keeps addresses
  mutable append_only_list<const entry*> entries_;
};

}  // namespace eventbus::detail
