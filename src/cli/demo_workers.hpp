#pragma once
// The consuming side of `eventbus demo`: a worker group of two in the same process, as two worker
// processes would be, with the handlers a real deployment has: audit log, analytics, a model cache
// that is cold now and then (fails once, retried, then succeeds) and a notifier that cannot reach
// some users (a permanent failure: dead-lettered).

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "cli/demo_summary.hpp"
#include "eventbus/metrics.hpp"
#include "eventbus/kafka/worker.hpp"

namespace eventbus::cli {

/// Events of users the notifier cannot reach carry this user id: the publisher counts them, so the
/// demo knows exactly how many dead letters to expect.
inline constexpr const char* unreachable_user = "u-no-email";
/// The one handler that dead-letters (the events of that user); every other one ends up succeeding.
inline constexpr const char* dead_lettering_handler = "notifier";

class demo_workers {
 public:
  /// `group`: a group of this run's own, so that a run never shares offsets with an earlier one.
  demo_workers(const kafka_options& kafka, const std::string& group, std::shared_ptr<metrics> m);

  void start();
  /// True when both workers joined the group.
  [[nodiscard]] bool ready() const;
  /// Records finished by the group (handled or dead-lettered); a record redelivered after a
  /// rebalance counts again (at-least-once).
  [[nodiscard]] std::uint64_t finished() const;
  /// Distinct events the group has seen through (the audit log sees every event and never fails).
  [[nodiscard]] std::uint64_t distinct_events() const;
  /// True once every handler has finished every event of `published` it subscribes to: succeeded,
  /// or (the notifier, for the unreachable user) dead-lettered and acknowledged. Not only the audit
  /// log: a record's other handlers may still be in backoff when the audit log is through.
  [[nodiscard]] bool caught_up(const std::vector<published_event>& published, std::uint64_t expected_dead_letters) const;
  /// What caught_up() still waits for, handler by handler ("audit_log 120/426, ..."): printed
  /// while the demo waits, so a stall says where it is.
  [[nodiscard]] std::string waiting_for(const std::vector<published_event>& published, std::uint64_t expected_dead_letters) const;
  [[nodiscard]] std::uint64_t retries() const;
  [[nodiscard]] std::uint64_t dead_letters() const;
  /// One line per worker: what it took from Kafka, finished, skipped, and how many partitions it
  /// holds (printed when the summary does not add up).
  [[nodiscard]] std::string describe() const;
  void stop();

  /// Events each handler finished successfully, by handler name (distinct events: a redelivery
  /// after a rebalance is not counted twice).
  [[nodiscard]] std::map<std::string, std::set<std::string>> handled_by_handler() const;
  /// Which event types each handler subscribes to (its pattern).
  [[nodiscard]] static const std::vector<std::pair<std::string, std::string>>& handler_patterns();

 private:
  void subscribe_all(worker& w);
  // Of `published`, the events `handler` matches and has finished, and how many it must finish
  // (the dead-lettering handler: all but the expected dead letters). Only this run's events count.
  [[nodiscard]] std::pair<std::uint64_t, std::uint64_t> progress_of(const std::string& handler, const std::string& pattern,
                                                                    const std::vector<published_event>& published,
                                                                    std::uint64_t expected_dead_letters) const;

  std::vector<std::unique_ptr<worker>> workers_;
  std::vector<subscription> subs_;
  mutable std::mutex mu_;
  std::map<std::string, std::set<std::string>> handled_;  // handler -> event ids
  std::set<std::string> cache_misses_;  // events whose cache fill already failed once
};

}  // namespace eventbus::cli
