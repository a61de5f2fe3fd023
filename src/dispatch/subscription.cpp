#include "eventbus/subscription.hpp"

#include "handlers/handler_registry.hpp"

namespace eventbus {

subscription::subscription(std::weak_ptr<detail::handler_registry> registry, std::uint64_t id) noexcept
    : registry_(std::move(registry)), id_(id) {}

subscription::subscription(subscription&& other) noexcept
    : registry_(std::move(other.registry_)), id_(std::exchange(other.id_, 0)) {}

subscription& subscription::operator=(subscription&& other) noexcept {
  if (this != &other) {
    unsubscribe();
    registry_ = std::move(other.registry_);
    id_ = std::exchange(other.id_, 0);
  }
  return *this;
}

subscription::~subscription() { unsubscribe(); }

void subscription::unsubscribe() noexcept {
  if (id_ == 0) return;
  if (auto registry = registry_.lock()) registry->remove(id_);
  registry_.reset();
  id_ = 0;
}

bool subscription::active() const noexcept {
  if (id_ == 0) return false;
  auto registry = registry_.lock();
  return registry && registry->contains(id_);
}

}  // namespace eventbus
