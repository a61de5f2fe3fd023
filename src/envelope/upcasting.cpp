// The process's upcasters (upcaster.hpp) and payload_at_version (event.hpp).

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <vector>

#include "envelope/event_data.hpp"
#include "eventbus/upcaster.hpp"

namespace eventbus {
namespace {

// Steps by event type, then by the version they start from. Entries are never erased or replaced,
// so a pointer to a step stays valid after the lock is released: the steps run unlocked (a step
// that registers another, or a slow one, blocks nobody).
struct registry {
  std::shared_mutex mu;
  std::map<std::string, std::map<int, upcaster_fn>, std::less<>> steps;
};

// Constructed on first use: registrations run during static initialisation, in any order.
registry& the_registry() {
  static registry r;
  return r;
}

[[noreturn]] void reject(std::string message, std::string field) {
  throw exception(error(errc::invalid_argument, std::move(message), std::move(field)));
}

std::string in_quotes(const std::string& type) { return "'" + type + "'"; }

// "1, 2" or "none": the versions `type` has steps from, for an error that says what exists.
std::string registered_from(const std::map<int, upcaster_fn>* steps) {
  if (steps == nullptr || steps->empty()) return "none";
  std::string list;
  for (const auto& [from, fn] : *steps) list += (list.empty() ? "" : ", ") + std::to_string(from);
  return list;
}

const upcaster_fn* step_of(const std::map<int, upcaster_fn>* steps, int from) {
  if (steps == nullptr) return nullptr;
  const auto step = steps->find(from);
  return step == steps->end() ? nullptr : &step->second;
}

error no_path(const event& ev, int wanted, const std::string& why) {
  return error(errc::payload_mismatch,
               in_quotes(ev.event_type()) + " is stored at version " + std::to_string(ev.version()) +
                   " and read as version " + std::to_string(wanted) + ": " + why,
               "version");
}

}  // namespace

void register_upcaster(std::string event_type, int from_version, upcaster_fn fn) {
  if (event_type.empty()) reject("an upcaster needs the event type it applies to", "event_type");
  if (auto problem = detail::event_type_problem(event_type))
    reject("the upcaster's event type " + *problem, "event_type");
  if (from_version < 1)
    reject("an upcaster of " + in_quotes(event_type) + " starts from a schema version >= 1, got " +
               std::to_string(from_version),
           "from_version");
  if (!fn)
    reject("the upcaster of " + in_quotes(event_type) + " from version " + std::to_string(from_version) +
               " is an empty function",
           "fn");
  auto& r = the_registry();
  const std::unique_lock lock(r.mu);
  auto& of_type = r.steps[event_type];
  if (!of_type.try_emplace(from_version, std::move(fn)).second)
    reject("an upcaster of " + in_quotes(event_type) + " from version " + std::to_string(from_version) + " to " +
               std::to_string(from_version + 1) + " is already registered: each step has one function",
           "from_version");
}

upcaster::upcaster(std::string event_type, int from_version, upcaster_fn fn) {
  // An exception out of a static initialiser ends the program with whatever the runtime prints:
  // say plainly which registration failed, then stop.
  try {
    register_upcaster(std::move(event_type), from_version, std::move(fn));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "eventbus: upcaster registration refused: %s\n", e.what());
    std::abort();
  }
}

result<nlohmann::json> payload_at_version(const event& ev, int wanted) {
  if (wanted < 1)
    return error(errc::invalid_argument, "the wanted schema version must be >= 1, got " + std::to_string(wanted),
                 "version");
  const int stored = ev.version();
  if (stored == wanted) return ev.payload();
  if (stored > wanted)
    return no_path(ev, wanted,
                   "upcasters only go up, and this reader is older than the event (deploy the reader of version " +
                       std::to_string(stored) + ")");

  // Every step first, so a missing one fails before any runs.
  std::vector<const upcaster_fn*> path;
  path.reserve(std::min<std::size_t>(static_cast<std::size_t>(wanted - stored), 8));  // not 2^31 for a typo'd version
  {
    auto& r = the_registry();
    const std::shared_lock lock(r.mu);
    const auto type = r.steps.find(ev.event_type());
    const auto* steps = type == r.steps.end() ? nullptr : &type->second;
    for (int from = stored; from < wanted; ++from) {
      const upcaster_fn* step = step_of(steps, from);
      if (step == nullptr)
        return no_path(ev, wanted,
                       "no upcaster from version " + std::to_string(from) + " to " + std::to_string(from + 1) +
                           " is registered (steps registered from versions: " + registered_from(steps) + ")");
      path.push_back(step);
    }
  }

  nlohmann::json payload = ev.payload();
  int at = stored;
  try {
    for (const auto* step : path) {
      payload = (*step)(std::move(payload));
      ++at;
      if (!payload.is_object())
        return error(errc::payload_mismatch,
                     "the upcaster of " + in_quotes(ev.event_type()) + " from version " + std::to_string(at - 1) +
                         " returned a JSON " + payload.type_name() + ", not an object, for event " + ev.event_id(),
                     "payload");
    }
  } catch (const std::exception& e) {
    return error(errc::payload_mismatch,
                 "the upcaster of " + in_quotes(ev.event_type()) + " from version " + std::to_string(at) + " to " +
                     std::to_string(at + 1) + " failed on event " + ev.event_id() + ": " + e.what(),
                 "payload");
  } catch (...) {  // a step that throws something else still gives a result, never an escape
    return error(errc::payload_mismatch,
                 "the upcaster of " + in_quotes(ev.event_type()) + " from version " + std::to_string(at) + " to " +
                     std::to_string(at + 1) + " failed on event " + ev.event_id() + ": an exception not derived from std::exception",
                 "payload");
  }
  return payload;
}

}  // namespace eventbus
