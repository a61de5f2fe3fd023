#pragma once
// A statistics counter many threads may add to, cheap for the thread that adds the most.
//
// A handler's call count and a dispatcher's publish count are bumped once per call: with
// fetch_add that is a locked instruction each time (about 5 ns on the machines we measure, a
// fifth of a whole dispatch to four handlers). Usually one thread does nearly all the adding (the
// publisher, or a worker's handler thread), so the first thread to add becomes the counter's
// owner and adds with a plain load and store; every other thread adds with fetch_add. Only the
// owner ever writes `owned_`, so its increments are never lost. (The idea of biased reference
// counting, Choi et al., PACT 2018.) Readers sum both halves: relaxed, for display.

#include <atomic>
#include <cstdint>

namespace eventbus::detail {

/// A number for the calling thread that no other thread of the process ever had (threads' own
/// addresses are reused after they end; these are not). Never 0.
[[nodiscard]] std::uint64_t this_thread_number() noexcept;

class biased_counter {
 public:
  void add(std::uint64_t n = 1) noexcept {
    if (owned_by_caller()) [[likely]]
      owned_.store(owned_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    else
      shared_.fetch_add(n, std::memory_order_relaxed);
  }
  /// Takes back what the same thread added (the two go to the same half, so no half goes below 0).
  void take_back(std::uint64_t n = 1) noexcept {
    if (owned_by_caller()) [[likely]]
      owned_.store(owned_.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
    else
      shared_.fetch_sub(n, std::memory_order_relaxed);
  }
  [[nodiscard]] std::uint64_t load() const noexcept {
    return owned_.load(std::memory_order_relaxed) + shared_.load(std::memory_order_relaxed);
  }

 private:
  bool owned_by_caller() noexcept {
    const std::uint64_t me = this_thread_number();
    std::uint64_t owner = owner_.load(std::memory_order_relaxed);
    if (owner == me) [[likely]]
      return true;
    // The first thread to add takes the counter; ownership never moves after that.
    return owner == 0 && owner_.compare_exchange_strong(owner, me, std::memory_order_relaxed);
  }

  std::atomic<std::uint64_t> owner_{0};
  std::atomic<std::uint64_t> owned_{0};
  std::atomic<std::uint64_t> shared_{0};
};

namespace internal {
extern thread_local constinit std::uint64_t t_thread_number;
[[nodiscard]] std::uint64_t assign_thread_number() noexcept;
}  // namespace internal

inline std::uint64_t this_thread_number() noexcept {
  if (internal::t_thread_number != 0) [[likely]]
    return internal::t_thread_number;
  return internal::assign_thread_number();
}

}  // namespace eventbus::detail
