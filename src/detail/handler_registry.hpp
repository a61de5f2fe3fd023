#pragma once
// Subscriptions as an immutable snapshot swapped on every change (copy-on-write): publishing reads a
// snapshot without taking a lock, subscribing builds the next one.

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "eventbus/handler.hpp"

namespace eventbus::detail {

struct handler_entry {
  std::uint64_t id = 0;
  std::string pattern;
  std::string name;
  handler_fn fn;
  std::atomic<bool> active{true};
  std::atomic<int> in_flight{0};
};
using entry_ptr = std::shared_ptr<handler_entry>;

/// Marks one call of a handler as running, so that removing the handler can wait for it.
/// admitted() is false when the handler was removed before the call started: skip the call.
class running_call {
 public:
  explicit running_call(handler_entry& entry) noexcept;
  ~running_call();
  running_call(const running_call&) = delete;
  running_call& operator=(const running_call&) = delete;
  [[nodiscard]] bool admitted() const noexcept { return admitted_; }

 private:
  handler_entry& entry_;
  bool admitted_;
};

// Lets the exact-type map be searched with a string_view: no temporary string per publish.
struct string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

struct registry_snapshot {
  std::unordered_map<std::string, std::vector<entry_ptr>, string_hash, std::equal_to<>> exact;
  std::vector<std::pair<std::string, entry_ptr>> prefixed;  // prefix keeps its trailing '.'
  std::vector<entry_ptr> wildcard;

  /// Calls f(const entry_ptr&) for every handler matching `type`, in subscription order (a merge
  /// of the three lists, each of which is already in that order).
  template <class F>
  void for_each_match(std::string_view type, F&& f) const;
};

class handler_registry {
 public:
  handler_registry();

  /// Throws eventbus::exception (errc::invalid_argument) for a bad pattern, name or function, or
  /// a duplicate (pattern, name).
  std::uint64_t add(std::string pattern, std::string name, handler_fn fn);
  /// Removes and waits for running calls (other than the current thread's). False if unknown.
  bool remove(std::uint64_t id) noexcept;
  void clear() noexcept;
  [[nodiscard]] bool contains(std::uint64_t id) const noexcept;

  [[nodiscard]] std::shared_ptr<const registry_snapshot> snapshot() const noexcept {
    return current_.load(std::memory_order_acquire);
  }

 private:
  void publish_snapshot_locked();
  static void deactivate_and_wait(handler_entry& entry) noexcept;

  mutable std::mutex mu_;  // serialises writers; readers only load current_
  std::vector<entry_ptr> entries_;  // in subscription order
  std::uint64_t next_id_ = 1;
  std::atomic<std::shared_ptr<const registry_snapshot>> current_;
};

template <class F>
void registry_snapshot::for_each_match(std::string_view type, F&& f) const {
  static const std::vector<entry_ptr> none;
  const std::vector<entry_ptr>* exact_list = &none;
  if (!exact.empty()) {
    if (auto it = exact.find(type); it != exact.end()) exact_list = &it->second;
  }
  auto matches_prefix = [&](std::size_t i) { return type.starts_with(prefixed[i].first); };

  std::size_t e = 0, p = 0, w = 0;
  while (p < prefixed.size() && !matches_prefix(p)) ++p;
  constexpr auto end_id = ~std::uint64_t{0};
  for (;;) {
    const std::uint64_t ide = e < exact_list->size() ? (*exact_list)[e]->id : end_id;
    const std::uint64_t idp = p < prefixed.size() ? prefixed[p].second->id : end_id;
    const std::uint64_t idw = w < wildcard.size() ? wildcard[w]->id : end_id;
    if (ide == end_id && idp == end_id && idw == end_id) return;
    if (ide < idp && ide < idw) {
      f((*exact_list)[e++]);
    } else if (idp < idw) {
      f(prefixed[p++].second);
      while (p < prefixed.size() && !matches_prefix(p)) ++p;
    } else {
      f(wildcard[w++]);
    }
  }
}

}  // namespace eventbus::detail
