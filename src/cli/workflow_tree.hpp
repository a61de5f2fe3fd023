#pragma once
// A workflow as a tree: the events of one correlation id, each under the event that caused it
// (causation_id), siblings in time order. Events whose cause is not among them are roots.

#include <algorithm>
#include <functional>
#include <map>
#include <set>
#include <string_view>
#include <string>
#include <vector>

#include "cli/printable.hpp"
#include "eventbus/event.hpp"
#include "eventbus/time.hpp"

namespace eventbus::cli {

/// Depth past which lines stop moving right and show their depth instead: indenting every level
/// made a 100,000-event chain's output quadratic in size (gigabytes).
inline constexpr std::size_t max_indent_depth = 32;

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
  std::set<std::string_view> printed;  // guards against a cycle of causation ids
  // Depth first with a stack of its own: recursion overflowed the stack on a long causation chain.
  std::vector<std::pair<const event*, std::size_t>> pending;
  const auto print = [&](const event& top) {
    pending.emplace_back(&top, 0);
    while (!pending.empty()) {
      const auto [ev, depth] = pending.back();
      pending.pop_back();
      if (!printed.insert(ev->event_id()).second) continue;
      out.append(2 * std::min(depth, max_indent_depth), ' ');
      if (depth > max_indent_depth) out.append("[").append(std::to_string(depth)).append("] ");
      out.append(depth == 0 ? "* " : "`- ");
      out.append(printable(ev->event_type())).append("  ").append(printable(ev->aggregate_type())).append("/");
      out.append(printable(ev->aggregate_id())).append("  ").append(format_timestamp(ev->timestamp()));
      out.append("  ").append(printable(ev->event_id())).append("\n");
      if (const auto kids = children.find(ev->event_id()); kids != children.end())
        for (auto child = kids->second.rbegin(); child != kids->second.rend(); ++child) pending.emplace_back(*child, depth + 1);
    }
  };
  for (const event* root : roots) print(*root);
  // Members of a cycle have no root: print them flat rather than lose them.
  for (const auto& ev : events) print(ev);
  return out;
}

}  // namespace eventbus::cli
