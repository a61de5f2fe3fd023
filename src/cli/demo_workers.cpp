#include "cli/demo_workers.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace eventbus::cli {

demo_workers::demo_workers(const kafka_options& kafka, const std::string& group, std::shared_ptr<metrics> m) {
  for (int i = 0; i < 2; ++i) {
    worker_options options{.kafka = kafka,
                           .group_id = group,
                           .topics = {"^app\\..*"},
                           .retry = {.max_attempts = 4, .initial_backoff = std::chrono::milliseconds(20),
                                     .multiplier = 2.0, .max_backoff = std::chrono::milliseconds(200), .jitter = 0.2},
                           .max_concurrency = 8,
                           .commit_interval = std::chrono::milliseconds(200),
                           .shutdown_timeout = std::chrono::seconds(10),
                           .metrics = m};
    options.kafka.client_id = "demo-worker-" + std::to_string(i + 1);
    // The embedded broker waits a whole session timeout for a member that does not rejoin.
    options.kafka.properties.emplace("session.timeout.ms", "6000");
    options.kafka.properties.emplace("heartbeat.interval.ms", "500");
    // librdkafka sends max.poll.interval.ms as the group's rebalance timeout, and the embedded
    // broker holds a JoinGroup that long for a member that went quiet (measured: a 7 s stall of
    // the demo while the group formed left it unformed for over 60 s with the 5-minute default;
    // with 15 s it formed every time). The loop polls every 100 ms; a revocation waits at most
    // shutdown_timeout, kept below it.
    options.kafka.properties.emplace("max.poll.interval.ms", "15000");
    options.kafka.properties.emplace("fetch.wait.max.ms", "20");
    // The workflow creates topics as it goes (the first image.generated, the first model event):
    // look for new topics matching the subscription every second, not every 5 minutes.
    options.kafka.properties.emplace("topic.metadata.refresh.interval.ms", "1000");
    workers_.push_back(std::make_unique<worker>(options));
    subscribe_all(*workers_.back());
  }
}

const std::vector<std::pair<std::string, std::string>>& demo_workers::handler_patterns() {
  static const std::vector<std::pair<std::string, std::string>> patterns{
      {"audit_log", "*"}, {"analytics", "*"}, {"model_cache", "model.*"}, {"notifier", "image.generated"}};
  return patterns;
}

void demo_workers::subscribe_all(worker& w) {
  const auto succeeded = [this](const char* handler, const event& ev) {
    const std::lock_guard lock(mu_);
    handled_[handler].insert(ev.event_id());
  };
  subs_.push_back(w.subscribe("*", "audit_log", [succeeded](const event& ev) { succeeded("audit_log", ev); }));
  subs_.push_back(w.subscribe("*", "analytics", [succeeded](const event& ev) { succeeded("analytics", ev); }));
  subs_.push_back(w.subscribe("model.*", "model_cache", [this, succeeded](const event& ev) {
    // Every third model event finds the cache cold: the first call fails, the retry succeeds.
    if (ev.payload().value("sequence", 0) % 3 == 0) {
      const std::lock_guard lock(mu_);
      if (cache_misses_.insert(ev.event_id()).second) throw std::runtime_error("model cache cold for " + ev.aggregate_id());
    }
    succeeded("model_cache", ev);
  }));
  subs_.push_back(w.subscribe("image.generated", dead_lettering_handler, [succeeded](const event& ev) {
    if (ev.payload().value("user_id", "") == unreachable_user)
      throw permanent_error("user " + std::string(unreachable_user) + " has no notification channel");
    succeeded("notifier", ev);
  }));
}

void demo_workers::start() {
  for (auto& w : workers_) w->start();
}

bool demo_workers::ready() const {
  for (const auto& w : workers_)
    if (!w->in_group()) return false;
  return true;
}

std::uint64_t demo_workers::finished() const {
  std::uint64_t n = 0;
  for (const auto& w : workers_) n += w->stats().handled;
  return n;
}

std::uint64_t demo_workers::distinct_events() const {
  const std::lock_guard lock(mu_);
  const auto it = handled_.find("audit_log");
  return it == handled_.end() ? 0 : it->second.size();
}

std::pair<std::uint64_t, std::uint64_t> demo_workers::progress_of(const std::string& handler, const std::string& pattern,
                                                                   const std::vector<published_event>& published,
                                                                   std::uint64_t expected_dead_letters) const {
  auto due = events_matching(published, pattern);
  if (handler == std::string_view(dead_lettering_handler)) due -= std::min(due, expected_dead_letters);
  const auto it = handled_.find(handler);
  std::uint64_t done = 0;
  if (it != handled_.end())
    for (const auto& ev : published) done += it->second.count(ev.event_id);
  return {done, due};
}

bool demo_workers::caught_up(const std::vector<published_event>& published, std::uint64_t expected_dead_letters) const {
  if (dead_letters() < expected_dead_letters) return false;
  const std::lock_guard lock(mu_);
  for (const auto& [handler, pattern] : handler_patterns()) {
    const auto [done, due] = progress_of(handler, pattern, published, expected_dead_letters);
    if (done < due) return false;
  }
  return true;
}

std::string demo_workers::waiting_for(const std::vector<published_event>& published, std::uint64_t expected_dead_letters) const {
  std::string out = "dead letters " + std::to_string(dead_letters()) + "/" + std::to_string(expected_dead_letters);
  const std::lock_guard lock(mu_);
  for (const auto& [handler, pattern] : handler_patterns()) {
    const auto [done, due] = progress_of(handler, pattern, published, expected_dead_letters);
    out += ", " + handler + " " + std::to_string(done) + "/" + std::to_string(due);
  }
  return out;
}

std::uint64_t demo_workers::retries() const {
  std::uint64_t n = 0;
  for (const auto& w : workers_) n += w->stats().retries;
  return n;
}

std::uint64_t demo_workers::dead_letters() const {
  std::uint64_t n = 0;
  for (const auto& w : workers_) n += w->stats().dead_letters;
  return n;
}

std::string demo_workers::describe() const {
  std::string out;
  for (std::size_t i = 0; i < workers_.size(); ++i) {
    const auto s = workers_[i]->stats();
    out += "  worker " + std::to_string(i + 1) + ": records " + std::to_string(s.records) + ", finished " +
           std::to_string(s.handled) + ", skipped " + std::to_string(s.skipped) + ", in flight " +
           std::to_string(s.in_flight) + ", partitions " + std::to_string(workers_[i]->assigned_partitions()) +
           ", commits " + std::to_string(s.commits) + "\n";
  }
  return out;
}

void demo_workers::stop() {
  for (auto& w : workers_) w->stop();
}

std::map<std::string, std::set<std::string>> demo_workers::handled_by_handler() const {
  const std::lock_guard lock(mu_);
  return handled_;
}

}  // namespace eventbus::cli
