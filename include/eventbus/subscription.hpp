#pragma once
// The handle a subscribe() call returns. Move-only; unsubscribes when destroyed.

#include <cstdint>
#include <memory>

namespace eventbus {

namespace detail {
class handler_registry;
}
class dispatcher;
class worker;

/// Owns one registration. After unsubscribe() (or the destructor) returns, the handler is never
/// started again and no call of it is still running, except a call on the current thread (a handler
/// may unsubscribe itself). Safe to outlive the dispatcher: it then does nothing.
class [[nodiscard]] subscription {
 public:
  subscription() noexcept = default;
  subscription(subscription&& other) noexcept;
  subscription& operator=(subscription&& other) noexcept;
  subscription(const subscription&) = delete;
  subscription& operator=(const subscription&) = delete;
  ~subscription();

  /// Idempotent. Blocks while the handler is running on another thread.
  void unsubscribe() noexcept;
  /// True while the registration exists (false after unsubscribe, clear or dispatcher destruction).
  [[nodiscard]] bool active() const noexcept;

 private:
  friend class dispatcher;  // the two that register handlers hand out their handles
  friend class worker;
  subscription(std::weak_ptr<detail::handler_registry> registry, std::uint64_t id) noexcept;

  std::weak_ptr<detail::handler_registry> registry_;
  std::uint64_t id_ = 0;
};

}  // namespace eventbus
