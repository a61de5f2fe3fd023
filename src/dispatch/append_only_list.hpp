#pragma once
// A list that only grows, read on hot paths without a lock or a reference count: readers load one
// pointer to an immutable version; a writer publishes a longer copy. Every version lives until the
// list is destroyed, so a reader can never see one freed. Meant for short lists that change rarely
// (sinks of a dispatcher, topic names of a sink): n appends keep O(n^2) elements in total.

#include <atomic>
#include <memory>
#include <mutex>
#include <vector>

namespace eventbus::detail {

template <class T>
class append_only_list {
 public:
  append_only_list() {
    versions_.push_back(std::make_unique<const std::vector<T>>());
    current_.store(versions_.back().get(), std::memory_order_release);
  }

  /// The latest version; valid for the lifetime of the list.
  [[nodiscard]] const std::vector<T>& current() const noexcept { return *current_.load(std::memory_order_acquire); }

  void append(T value) {
    const std::lock_guard lock(mu_);
    append_locked(std::move(value));
  }

  /// Runs `f` under the writers' lock (to check-then-append without a race between writers).
  template <class F>
  decltype(auto) with_writer_lock(F&& f) {
    const std::lock_guard lock(mu_);
    return f(*versions_.back());
  }
  /// append() for use inside with_writer_lock().
  void append_locked(T value) {
    auto next = std::make_unique<std::vector<T>>(*versions_.back());
    next->push_back(std::move(value));
    current_.store(next.get(), std::memory_order_release);
    versions_.push_back(std::move(next));
  }

 private:
  std::mutex mu_;
  std::vector<std::unique_ptr<const std::vector<T>>> versions_;
  std::atomic<const std::vector<T>*> current_{nullptr};
};

}  // namespace eventbus::detail
