#pragma once
// Running a record's handlers, the part of the worker that pool threads execute: check the record
// (size, envelope, that its event belongs on its topic), find its handlers (only the one named by a
// replay header, if any), and run each attempt through the middleware chain
// (timing -> retry -> recover -> the user's pieces -> handler). No Kafka and no threads of its own:
// testable alone (tests/record_runner_test.cpp). Thread-safe for distinct records.

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "handlers/handler_registry.hpp"
#include "eventbus/middleware.hpp"
#include "eventbus/kafka/worker.hpp"
#include "worker/records.hpp"

namespace eventbus::detail {

/// True when `topic` ends with ".<aggregate_type>.<event_type>" of `ev`: an event is handled only
/// from its own topic, so its type comes from a bounded set (which metric labels rely on) and a
/// record cannot pose as another type.
[[nodiscard]] bool belongs_on(std::string_view topic, const event& ev);

class record_runner {
 public:
  /// `options` must be valid (worker_options::validate) and outlive the runner.
  explicit record_runner(const worker_options& options);
  record_runner(const record_runner&) = delete;
  record_runner& operator=(const record_runner&) = delete;

  /// A record of a dead-letter topic (one a subscription's regex matched): finished as it is,
  /// never handled (handling dead letters is for a group subscribed to them by name).
  [[nodiscard]] bool is_dead_letter(const record_job& job) const noexcept { return job.topic.ends_with(options_.dlq_suffix); }
  /// Decodes and checks the record and finds its handlers, once (later calls do nothing). False,
  /// with job.bad set (the dead-letter reason), when it cannot be handled.
  [[nodiscard]] bool prepare(record_job& job) noexcept;
  /// Prepares the record and runs each of its handlers not run yet (a batch call may have run
  /// some). True when the record is finished (every handler succeeded, or none applies); false
  /// with job.bad set when it cannot be handled, or with handlers pending (a retry) or dead (a
  /// dead letter).
  [[nodiscard]] bool first_pass(record_job& job) noexcept;
  /// Runs the record's pending handlers whose backoff is over (a retry attempt).
  void run_due_handlers(record_job& job) noexcept;

  /// One event of a batch call (a copy: the call touches no record), and the lane its record
  /// belongs to (an index the caller picks: records of one lane are one key's, in order).
  struct batch_member {
    event ev;
    std::size_t lane;
  };
  /// True when batch handlers may take several events a call: the worker has no middleware (which
  /// wraps calls of one event).
  [[nodiscard]] bool batching() const noexcept { return options_.middleware.empty(); }
  /// What a batch call left for one member: `again` (not done: its record's pass calls it alone),
  /// `done` (succeeded, or its condition rejected it), `dead` (dead_letter(i): `error` says why).
  struct batch_result {
    enum class kind : unsigned char { again, done, dead } what = kind::again;
    std::string error{};
  };
  /// One call of batch handler `handler` for `members` (its batch_max at most, in lane order).
  /// Returns each member's result; the caller records them (it alone knows whether the records
  /// are still its own). A member that failed, and every later member of its lane, come back
  /// `again`, so a lane's events reach the handler in order. Touches no record.
  [[nodiscard]] std::vector<batch_result> call_batch(handler_entry& handler,
                                                     const std::vector<batch_member>& members) noexcept;

  [[nodiscard]] handler_registry& registry() noexcept { return *registry_; }
  [[nodiscard]] const std::shared_ptr<handler_registry>& shared_registry() const noexcept { return registry_; }
  [[nodiscard]] std::uint64_t handler_calls() const noexcept { return handler_calls_.load(); }
  [[nodiscard]] std::uint64_t retries() const noexcept { return retries_.load(); }

 private:
  void call_handler(const record_job& job, handler_progress& run) noexcept;
  std::vector<middleware> build_chain();

  const worker_options& options_;
  const std::shared_ptr<handler_registry> registry_ = std::make_shared<handler_registry>();
  std::atomic<std::uint64_t> handler_calls_{0}, retries_{0};
  const std::vector<middleware> chain_;  // after the counters its timing piece bumps
};

}  // namespace eventbus::detail
