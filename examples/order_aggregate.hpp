#pragma once
// The order aggregate of the event-sourced examples (order_es_service.cpp decides with it,
// order_es_worker.cpp reads its events): typed events, the state they fold into, and the commands
// that decide new events from that state.
//
// An order is placed, then paid, then shipped; each command refuses what its state does not allow,
// with an error naming the order, and then nothing is appended.

#include <cstdint>
#include <string>
#include <string_view>

#include "eventbus/store/aggregate.hpp"

namespace orders {

// The events: what happened, in the past tense. Money in integer cents, never floating point.
struct order_placed {
  static constexpr std::string_view event_type = "order.placed";
  static constexpr std::string_view aggregate_type = "order";
  std::string customer;
  std::int64_t total_cents = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(order_placed, customer, total_cents)

struct order_paid {
  static constexpr std::string_view event_type = "order.paid";
  static constexpr std::string_view aggregate_type = "order";
  std::int64_t amount_cents = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(order_paid, amount_cents)

struct order_shipped {
  static constexpr std::string_view event_type = "order.shipped";
  static constexpr std::string_view aggregate_type = "order";
  std::string carrier;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(order_shipped, carrier)

enum class status { none, placed, paid, shipped };  // none: no event yet (a new aggregate)

// The state: what the commands need to decide, folded from the events. apply decides nothing and
// cannot fail: the event is already a stored fact.
struct order {
  static constexpr std::string_view aggregate_type = "order";
  using events = eventbus::event_types<order_placed, order_paid, order_shipped>;
  status current = status::none;
  std::int64_t total_cents = 0;
  void apply(const order_placed& e) {
    current = status::placed;
    total_cents = e.total_cents;
  }
  void apply(const order_paid&) { current = status::paid; }
  void apply(const order_shipped&) { current = status::shipped; }
};

// The commands. They may run more than once (again on a newer state after a concurrency
// conflict), so they only decide: effects belong to handlers of the events they raise.
inline eventbus::error refused(std::string_view id, std::string_view why) {
  return eventbus::error(eventbus::errc::invalid_argument, "order " + std::string(id) + " " + std::string(why));
}

inline auto place(std::string id, std::string customer, std::int64_t total_cents) {
  return [=](const order& o) -> eventbus::result<order_placed> {
    if (o.current != status::none) return refused(id, "is placed already");
    if (total_cents <= 0) return refused(id, "needs a total above 0, got " + std::to_string(total_cents));
    return order_placed{.customer = customer, .total_cents = total_cents};
  };
}

inline auto pay(std::string id) {
  return [=](const order& o) -> eventbus::result<order_paid> {
    if (o.current == status::none) return refused(id, "does not exist");
    if (o.current != status::placed) return refused(id, "is paid already");
    return order_paid{.amount_cents = o.total_cents};
  };
}

inline auto ship(std::string id, std::string carrier) {
  return [=](const order& o) -> eventbus::result<order_shipped> {
    if (o.current == status::none) return refused(id, "does not exist");
    if (o.current == status::placed) return refused(id, "is not paid: it cannot be shipped");
    if (o.current == status::shipped) return refused(id, "is shipped already");
    return order_shipped{.carrier = carrier};
  };
}

}  // namespace orders
