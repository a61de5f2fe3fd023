#pragma once
// Upcasters: per event type, a function from schema version n of the payload to version n + 1,
// registered once per process. Wherever a typed event is read (payload_as<T>: typed handlers on a
// dispatcher or a worker, when<T>, replays, aggregates, projections), a payload of an older
// version is upcast step by step to the version T declares, so a handler sees only the version it
// was written for. Stored and published events keep the bytes they were written with.
//
//   #include <eventbus/upcaster.hpp>
//   struct customer_renamed {  // version 2: "name" became "full_name"
//     static constexpr std::string_view event_type = "customer.renamed";
//     static constexpr std::string_view aggregate_type = "customer";
//     static constexpr int version = 2;
//     std::string full_name;
//   };
//   NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(customer_renamed, full_name)
//   static const eventbus::upcaster renamed_v1{"customer.renamed", 1, [](nlohmann::json p) {
//     p["full_name"] = p.at("name");
//     p.erase("name");
//     return p;
//   }};
//   int main() {
//     auto v1 = eventbus::make_event({.event_type = "customer.renamed", .aggregate_type = "customer",
//                                     .aggregate_id = "c-1", .payload = {{"name", "Ada"}}, .version = 1});
//     eventbus::result<customer_renamed> now = eventbus::payload_as<customer_renamed>(v1);
//     return now && now->full_name == "Ada" ? 0 : 1;
//   }
//
// A version with no path to the one wanted (a missing step, or an event newer than its reader) is
// errc::payload_mismatch with field "version", naming the type and both versions; a worker
// dead-letters such a record with reason `validation` at once (no retry can help). The payload
// at a given version, without a struct: payload_at_version(ev, n) (declared in event.hpp, which
// payload_as uses).
//
// Register during start-up, before events are read: steps registered later apply from then on.
// Registrations are never removed. A step runs on whichever thread reads, many at once: keep it a
// pure function of its payload.

#include <functional>
#include <string>

#include "eventbus/event.hpp"

namespace eventbus {

/// One step: the payload at version from_version in, the payload at from_version + 1 out (a JSON
/// object). It may throw (a payload it cannot read): that read fails with payload_mismatch.
using upcaster_fn = std::function<nlohmann::json(nlohmann::json payload)>;

/// Registers the step of `event_type` from `from_version` to from_version + 1. Thread-safe.
/// Throws eventbus::exception (errc::invalid_argument, naming the field) for an event type that
/// is not one (empty, not dotted lower case), from_version < 1, an empty fn, or a second step
/// for the same (event_type, from_version): two answers to one question.
void register_upcaster(std::string event_type, int from_version, upcaster_fn fn);

/// Registers a step while static objects are initialised, like registered_handler:
/// `static const eventbus::upcaster up{"order.created", 1, fn};` in the .cpp of the event type.
/// A refused registration (see register_upcaster) prints its reason and ends the program before
/// main: a process that would read some events differently than the code says must not start.
struct upcaster {
  upcaster(std::string event_type, int from_version, upcaster_fn fn);
};

}  // namespace eventbus
