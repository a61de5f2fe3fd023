#include "cli/demo_summary.hpp"

#include <prometheus/registry.h>

#include <cstdio>
#include <thread>

#include "eventbus/admin/dead_letters.hpp"
#include "eventbus/admin/topics.hpp"

namespace eventbus::cli {
namespace {

bool matches(const std::string& pattern, const std::string& type) {
  if (pattern == "*") return true;
  if (pattern.ends_with(".*")) return type.starts_with(pattern.substr(0, pattern.size() - 1));
  return pattern == type;
}

}  // namespace

std::uint64_t events_matching(const std::vector<published_event>& published, const std::string& pattern) {
  std::uint64_t n = 0;
  for (const auto& ev : published) n += matches(pattern, ev.event_type) ? 1 : 0;
  return n;
}

demo_summary summarize(const kafka_options& kafka, const std::vector<published_event>& published,
                       const std::map<std::string, std::set<std::string>>& handled_by_handler,
                       const std::vector<std::pair<std::string, std::string>>& handler_patterns,
                       std::uint64_t expected_dead_letters) {
  demo_summary out;
  // Only this run's events count: the same Kafka may hold earlier runs'.
  std::set<std::string> ids;
  for (const auto& ev : published) ids.insert(ev.event_id);
  // Dead letters, read back from every dead-letter topic: which handler gave up on which event.
  // A record dead-lettered twice (redelivered after a rebalance: at least once) is one event, and
  // the duplicate is counted and shown, not hidden.
  std::map<std::string, std::set<std::string>> dead_by_handler;
  std::set<std::string> dead_events;
  std::uint64_t dead_records = 0, earlier_runs = 0;
  if (const auto topics = list_topics(kafka, "app."); topics) {
    for (const auto& t : topics.value()) {
      if (!t.name.ends_with(".dlq") || t.total() == 0) continue;
      out.dlq_topic = t.name;
      if (const auto letters = list_dead_letters(kafka, t.name); letters)
        for (const auto& d : letters.value()) {
          const auto id = d.headers.count("event_id") ? d.headers.at("event_id") : d.original_topic + "@" + std::to_string(d.original_offset);
          if (ids.count(id) == 0) {
            ++earlier_runs;
            continue;
          }
          ++dead_records;
          dead_by_handler[d.handler].insert(id);
          dead_events.insert(id);
        }
    }
  }
  std::uint64_t distinct_letters = 0;
  for (const auto& [handler, events] : dead_by_handler) distinct_letters += events.size();
  out.duplicate_dead_letters = dead_records - distinct_letters;
  if (out.duplicate_dead_letters > 0 || earlier_runs > 0)
    std::printf("\ndead-letter records of this run: %llu for %llu events (%llu written twice: a record redelivered "
                "after a rebalance, at least once); %llu from earlier runs not counted\n",
                static_cast<unsigned long long>(dead_records), static_cast<unsigned long long>(distinct_letters),
                static_cast<unsigned long long>(out.duplicate_dead_letters), static_cast<unsigned long long>(earlier_runs));
  if (out.dlq_topic.empty()) out.dlq_topic = "app.image_generation.image.generated.dlq";

  bool every_handler_adds_up = true;
  std::printf("\nworker handlers (a group of two):\n  %-12s %8s %8s %14s\n", "handler", "events", "handled", "dead-lettered");
  for (const auto& [handler, pattern] : handler_patterns) {
    const std::uint64_t expected = events_matching(published, pattern);
    std::size_t handled = 0;
    if (const auto it = handled_by_handler.find(handler); it != handled_by_handler.end())
      for (const auto& id : it->second) handled += ids.count(id);
    const auto dead = dead_by_handler.count(handler) ? dead_by_handler.at(handler).size() : 0;
    const bool ok = expected == handled + dead;
    every_handler_adds_up = every_handler_adds_up && ok;
    std::printf("  %-12s %8llu %8zu %14zu   %s\n", handler.c_str(), static_cast<unsigned long long>(expected), handled,
                dead, ok ? "= handled + dead-lettered" : "MISMATCH");
  }
  // Events neither handled by every handler they match nor dead-lettered: named, so that a
  // summary that does not add up says where to look (the first few; the count is in the totals).
  std::size_t unaccounted = 0;
  for (const auto& ev : published) {
    bool all = true;
    std::string missing;
    for (const auto& [handler, pattern] : handler_patterns)
      if (matches(pattern, ev.event_type) &&
          !(handled_by_handler.count(handler) && handled_by_handler.at(handler).count(ev.event_id))) {
        all = false;
        missing += (missing.empty() ? "" : ", ") + handler;
      }
    out.handled_events += all ? 1 : 0;
    if (!all && dead_events.count(ev.event_id) == 0 && ++unaccounted <= 5)
      std::printf("  not handled and not dead-lettered: %s %s (by %s)\n", ev.event_type.c_str(), ev.event_id.c_str(),
                  missing.c_str());
  }
  out.dead_lettered_events = dead_events.size();
  out.adds_up = every_handler_adds_up && out.handled_events + out.dead_lettered_events == published.size() &&
                out.dead_lettered_events == expected_dead_letters;
  return out;
}

std::string p99_text(metrics& m) {
  std::vector<std::uint64_t> cumulative;
  std::vector<double> bounds;
  std::uint64_t total = 0;
  for (const auto& family : m.registry().Collect()) {
    if (family.name != "eventbus_handler_duration_seconds") continue;
    for (const auto& series : family.metric) {
      const auto& h = series.histogram;
      total += h.sample_count;
      if (cumulative.size() < h.bucket.size()) {
        cumulative.resize(h.bucket.size(), 0);
        bounds.resize(h.bucket.size(), 0);
      }
      for (std::size_t i = 0; i < h.bucket.size(); ++i) {
        cumulative[i] += h.bucket[i].cumulative_count;
        bounds[i] = h.bucket[i].upper_bound;
      }
    }
  }
  if (total == 0) return "-";
  for (std::size_t i = 0; i < cumulative.size(); ++i)
    if (static_cast<double>(cumulative[i]) >= 0.99 * static_cast<double>(total)) {
      char text[32];
      std::snprintf(text, sizeof text, "<= %g ms", bounds[i] * 1000.0);
      return text;
    }
  return "> 30 s";
}

bool poll_until(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return condition();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

}  // namespace eventbus::cli
