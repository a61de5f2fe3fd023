#pragma once
// A workflow as a tree: the events of one correlation id, each under the event that caused it
// (causation_id), siblings in time order. Events whose cause is not among them are roots.

#include <algorithm>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "cli/printable.hpp"
#include "eventbus/event.hpp"
#include "eventbus/time.hpp"

namespace eventbus::cli {

[[nodiscard]] inline std::string render_workflow(std::vector<event> events) {
  std::stable_sort(events.begin(), events.end(), [](const event& a, const event& b) { return a.timestamp() < b.timestamp(); });
  std::map<std::string, std::vector<const event*>, std::less<>> children;  // by causation_id
  std::map<std::string, const event*, std::less<>> by_id;
  for (const auto& ev : events) by_id.emplace(ev.event_id(), &ev);
  std::vector<const event*> roots;
  for (const auto& ev : events) {
    const auto& cause = ev.causation_id();
    if (cause && *cause != ev.event_id() && by_id.contains(*cause))
      children[*cause].push_back(&ev);
    else
      roots.push_back(&ev);
  }
  std::string out;
  std::map<std::string, bool, std::less<>> printed;  // guards against a cycle of causation ids
  const std::function<void(const event&, std::size_t)> print = [&](const event& ev, std::size_t depth) {
    if (printed[ev.event_id()]) return;
    printed[ev.event_id()] = true;
    out.append(2 * depth, ' ').append(depth == 0 ? "* " : "`- ");
    out.append(printable(ev.event_type())).append("  ").append(printable(ev.aggregate_type())).append("/");
    out.append(printable(ev.aggregate_id())).append("  ").append(format_timestamp(ev.timestamp()));
    out.append("  ").append(printable(ev.event_id())).append("\n");
    if (const auto kids = children.find(ev.event_id()); kids != children.end())
      for (const event* child : kids->second) print(*child, depth + 1);
  };
  for (const event* root : roots) print(*root, 0);
  // Members of a cycle have no root: print them flat rather than lose them.
  for (const auto& ev : events) print(ev, 0);
  return out;
}

}  // namespace eventbus::cli
