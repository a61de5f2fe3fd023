// Thread numbers for biased_counter (biased_counter.hpp).

#include "support/biased_counter.hpp"

namespace eventbus::detail::internal {

thread_local constinit std::uint64_t t_thread_number = 0;

std::uint64_t assign_thread_number() noexcept {
  static std::atomic<std::uint64_t> next{1};
  t_thread_number = next.fetch_add(1, std::memory_order_relaxed);
  return t_thread_number;
}

}  // namespace eventbus::detail::internal
