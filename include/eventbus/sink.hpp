#pragma once
// Sinks receive every event a dispatcher accepted, after its local handlers were scheduled: this is
// where the Kafka mirror plugs in.

#include <string_view>

#include "eventbus/delivery.hpp"
#include "eventbus/error.hpp"
#include "eventbus/event.hpp"

namespace eventbus {

class event_sink {
 public:
  virtual ~event_sink() = default;

  /// A short stable name for logs and metrics ("kafka").
  [[nodiscard]] virtual std::string_view name() const noexcept = 0;

  /// Whether this sink can take `ev` at all (for Kafka: a valid topic name). Called before the
  /// event's handlers are scheduled: a failure rejects the whole publish, so nothing half happens.
  [[nodiscard]] virtual result<void> check(const event& ev) const {
    (void)ev;
    return {};
  }

  /// Takes one event, on the publishing thread, possibly from many threads at once. Returns its
  /// eventual outcome. Should not throw: a throw is reported as errc::delivery_failed.
  [[nodiscard]] virtual delivery_future accept(const event& ev) = 0;
};

}  // namespace eventbus
