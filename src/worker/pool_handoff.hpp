#pragma once
// The worker's hand-off to its task pool: ready records go to pool threads in batches (several
// lanes' records, each lane's in order), retry attempts one record at a time, and a record whose
// handlers overran handler_timeout is claimed back from its thread (work_batch's claim). Whatever
// happens to a batch (progress, back from the pool, taken back) is reported only through the
// completion queue, to be handled on the consumer thread; this piece decides nothing about records.
//
// Consumer thread only, except the pool threads' own code (run_batch), which touches nothing here
// but what pool_side holds.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <set>

#include "support/task_pool.hpp"
#include "eventbus/kafka/worker.hpp"
#include "worker/completion_queue.hpp"
#include "worker/record_runner.hpp"
#include "worker/work_batch.hpp"

namespace eventbus::detail {

/// What pool threads use: the options, the record runner (handlers, middleware, counters) and the
/// completion queue they post to. Every pool task holds it by shared_ptr, so a handler that never
/// returns (its thread left detached when stop() gives up on it) cannot outlive anything it touches.
struct pool_side {
  explicit pool_side(worker_options opts) : options(validated(std::move(opts))) {}

  static worker_options validated(worker_options opts) {
    opts.validate();
    return opts;
  }

  const worker_options options;
  record_runner runner{options};  // decodes records and runs their handlers
  std::atomic<bool> stop_requested{false};
  completion_queue completions;
};

class pool_handoff {
 public:
  /// Reports, run on the consumer thread from the completion queue.
  struct reports {
    /// A slow batch finished some records (work_batch::run::done moved).
    std::function<void(work_batch&)> progress;
    /// The pool is done with the batch, or it was taken back: `hung` is then the record whose
    /// handlers overran handler_timeout and still run on their thread.
    std::function<void(work_batch&, std::optional<std::size_t> hung)> returned;
  };

  static constexpr std::size_t max_batch = 256;  // records per hand-off

  pool_handoff(std::shared_ptr<pool_side> side, reports on);

  /// Slots not taken by a batch, a retry attempt or a call that overran handler_timeout.
  [[nodiscard]] std::size_t free_slots() const noexcept;
  /// Records a batch may hold: enough to make the hand-off cheap next to the handling, few enough
  /// that no pool thread sits on work other threads could share (about 2 ms a batch, from the time
  /// records took so far). Quick handlers get big batches, 5 ms ones a record each.
  [[nodiscard]] std::size_t batch_limit() const noexcept;

  /// Hands ready records to a pool thread (there is a free slot).
  void run(work_batch batch);
  /// Runs the record's handlers that are due (a retry) on a pool thread (there is a free slot).
  void attempt(const job_ptr& job);

  /// Records whose handlers run past handler_timeout are taken from their threads and reported as
  /// returned with `hung` set. The call itself cannot be stopped: its thread stays busy (and
  /// counted against max_concurrency) until it returns, and what it returns is ignored.
  void take_back_overdue();
  /// Handler calls past handler_timeout still running (any thread).
  [[nodiscard]] std::size_t hung_calls() const noexcept { return hung_calls_.load(std::memory_order_relaxed); }

  /// Batches finish the record at hand and start no other: all of them (stopping), or those
  /// holding records of partitions being revoked (the next owner handles the rest, and two workers
  /// must not run one key at once for longer than the record at hand).
  void stop_all();
  void stop_revoking();

  [[nodiscard]] bool on_pool_thread() const { return pool_.on_pool_thread(); }
  /// Closes the pool and waits up to `timeout` for its threads; returns how many were left running.
  [[nodiscard]] std::size_t close_and_join(std::chrono::milliseconds timeout) { return pool_.close_and_join(timeout); }
  /// After close_and_join: lets go of the batches still counted as on the pool (a detached
  /// thread's task keeps its own). Their messages must go before the consumer does.
  void forget_batches() { batches_.clear(); }
  /// Frees `what` once the threads close_and_join left running have returned (task_pool).
  void keep_until_threads_exit(std::shared_ptr<void> what) { pool_.keep_until_threads_exit(std::move(what)); }

 private:
  static void run_batch(pool_side& on, pool_handoff* self, const std::shared_ptr<work_batch>& batch);
  static bool call_batch_handlers(pool_side& on, work_batch& batch);
  template <class Body>
  void push(const std::shared_ptr<work_batch>& batch, Body body);
  void back_from_pool(const std::shared_ptr<work_batch>& batch);
  void hung_call_returned();

  static constexpr auto progress_interval = std::chrono::milliseconds(5);  // a slow batch reports this often

  std::shared_ptr<pool_side> side_;
  reports on_;
  task_pool pool_;
  std::size_t on_pool_ = 0;                            // tasks on the pool: batches and retry attempts
  std::set<std::shared_ptr<work_batch>> batches_;      // the same, not taken back (timeout)
  double record_ns_ = 100'000;                         // moving average of a record's first pass; starts cautious
  std::atomic<std::size_t> hung_calls_{0};
};

}  // namespace eventbus::detail
