// The process's catalog of self-registered handlers (handler_catalog.hpp).

#include "eventbus/handler_catalog.hpp"

#include <mutex>

#include "eventbus/error.hpp"
#include "envelope/event_data.hpp"

namespace eventbus {
namespace {

struct catalog {
  std::mutex mu;
  std::vector<catalog_entry> entries;
};

// Constructed on first use: registrations run during static initialisation, in any order.
catalog& the_catalog() {
  static catalog c;
  return c;
}

[[noreturn]] void reject(std::string message, std::string field) {
  throw exception(error(errc::invalid_argument, std::move(message), std::move(field)));
}

// Whether every event `pattern` matches is also matched by `only`.
bool lies_within(const std::string& pattern, std::string_view only) {
  if (only == "*") return true;
  if (only.ends_with(".*")) return pattern != "*" && pattern.starts_with(only.substr(0, only.size() - 1));
  return pattern == only;
}

}  // namespace

registered_handler::registered_handler(std::string name, std::string pattern, handler_fn fn, handler_options options,
                                       code_location where) {
  // No validation here: a throw during static initialisation would end the process before main
  // with no useful message. subscribe_all and subscribe check everything, naming the handler.
  auto& c = the_catalog();
  const std::lock_guard lock(c.mu);
  c.entries.push_back({.name = std::move(name),
                       .pattern = std::move(pattern),
                       .fn = std::move(fn),
                       .options = std::move(options),
                       .where = std::string(where.file) + ":" + std::to_string(where.line)});
}

std::vector<catalog_entry> registered_handlers() {
  auto& c = the_catalog();
  const std::lock_guard lock(c.mu);
  for (std::size_t i = 0; i < c.entries.size(); ++i)
    for (std::size_t j = 0; j < i; ++j)
      if (c.entries[i].name == c.entries[j].name)
        reject("handler name '" + c.entries[i].name + "' is registered twice: at " + c.entries[j].where + " and at " +
                   c.entries[i].where,
               "handler_name");
  return c.entries;
}

namespace detail {

std::vector<catalog_entry> catalog_within(std::string_view only) {
  const bool valid_only = only == "*" ||
                          (only.size() > 2 && only.ends_with(".*") && is_dotted_lower_case(only.substr(0, only.size() - 2), 1)) ||
                          is_valid_event_type(only);
  if (!valid_only)
    reject("'" + std::string(only) + "' is not an event type ('order.created'), a prefix ('order.*') or '*'", "only");
  auto all = registered_handlers();
  std::vector<catalog_entry> chosen;
  std::string names;
  for (auto& entry : all) {
    names += (names.empty() ? "" : ", ") + entry.name + " (" + entry.pattern + ")";
    if (lies_within(entry.pattern, only)) chosen.push_back(std::move(entry));
  }
  if (chosen.empty())
    reject(all.empty() ? "no handler is registered in this program (a registered_handler in a static library that "
                         "nothing references is dropped by the linker: link it as an OBJECT library)"
                       : "no registered handler lies within '" + std::string(only) + "'; registered: " + names,
           "only");
  return chosen;
}

}  // namespace detail
}  // namespace eventbus
