#include "eventbus/delivery.hpp"

#include <algorithm>
#include <thread>

namespace eventbus {
namespace detail {

void delivery_state::settle(result<delivery> outcome) noexcept {
  std::uint32_t expected = pending;
  if (!state_.compare_exchange_strong(expected, writing, std::memory_order_acq_rel)) return;
  outcome_.emplace(std::move(outcome));
  state_.store(done, std::memory_order_release);
  state_.notify_all();  // no system call unless someone waits
}

void delivery_state::wait() const noexcept {
  for (auto s = state_.load(std::memory_order_acquire); s != done; s = state_.load(std::memory_order_acquire))
    state_.wait(s, std::memory_order_acquire);
}

}  // namespace detail

delivery_future delivery_future::ready(result<delivery> outcome) {
  auto state = std::make_shared<detail::delivery_state>();
  state->settle(std::move(outcome));
  return delivery_future(std::move(state));
}

bool delivery_future::wait_for(std::chrono::milliseconds timeout) const {
  if (!state_) return false;
  // std::atomic has no timed wait: poll with a growing pause, bounded by the deadline.
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto pause = std::chrono::microseconds(50);
  while (!state_->settled()) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return false;
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(pause, deadline - now));
    pause = std::min(pause * 2, std::chrono::microseconds(5000));
  }
  return true;
}

result<delivery> delivery_future::get() const {
  if (!state_) return error(errc::invalid_argument, "get() on an empty delivery_future");
  state_->wait();
  return state_->outcome();
}

}  // namespace eventbus
