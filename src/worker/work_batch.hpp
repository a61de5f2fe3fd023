#pragma once
// Records handed to the pool together (made by the scheduler, run by the pool hand-off), and the
// claim that lets the consumer thread take an overdue record away from its pool thread.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "worker/records.hpp"

namespace eventbus::detail {

// Each lane's records side by side, in offset order. The pool runs a lane's records until one needs
// more than a clean pass and records how many finished.
//
// A pool thread claims each record before it runs it (`claim` = 2n+1 while its n-th claim runs,
// 2n+2 once it is over; `claimed` names the record), so the consumer thread can take a record
// whose handlers overran handler_timeout away from it: it swaps the odd claim for `cancelled`, and
// the pool thread, finding its claim gone when the call returns, leaves that record (and the rest
// of the batch) alone. Claims are numbered, not named by record: a record is claimed twice (a
// batch handler's call, then its own pass), and a stale look at the first must not take the second.
struct work_batch {
  struct run {
    lane* owner;
    std::size_t begin, end;
    std::size_t done = 0;      // written by the pool
    std::size_t reported = 0;  // consumer thread: records of the run already finished there
  };
  static constexpr std::uint64_t cancelled = ~std::uint64_t{0};

  work_batch() = default;
  /// Moves what the scheduler put together; only before the batch is on the pool (the claim
  /// starts afresh).
  work_batch(work_batch&& other) noexcept
      : jobs(std::move(other.jobs)), runs(std::move(other.runs)), took(other.took), passes(other.passes),
        retry(other.retry) {}
  work_batch& operator=(work_batch&&) = delete;

  std::vector<job_ptr> jobs;
  std::vector<run> runs;
  std::chrono::nanoseconds took{};  // written by the pool: time spent on the batch
  std::size_t passes = 0;           // written by the pool: records it ran
  bool retry = false;               // one record's due retries (jobs[0] is its lane's current)
  std::atomic<std::uint64_t> claim{0};
  std::atomic<std::int64_t> started_ns{0};  // steady clock, when the claimed record started
  std::atomic<bool> stop{false};            // consumer: stop before the next record (stop, revocation)
  std::atomic<std::size_t> claimed{0};     // the record the current claim names
  /// Set by the pool, before it claims, while the claim is a batch handler's call of several
  /// records, with those records in `call_members`: read by the consumer thread once it took the
  /// claim (acquire), when the pool thread is still in that call.
  std::atomic<bool> batch_call{false};
  std::vector<record_job*> call_members;

  /// Pool thread: record k starts (its handlers, or a batch call it heads).
  void begin(std::size_t k) noexcept {
    ++claims_;
    claimed.store(k, std::memory_order_relaxed);
    started_ns.store(worker_clock::now().time_since_epoch().count(), std::memory_order_relaxed);
    claim.store(2 * claims_ + 1, std::memory_order_release);
  }
  /// Pool thread: what begin() started is over. False when the consumer took it away meanwhile.
  [[nodiscard]] bool end() noexcept {
    std::uint64_t running = 2 * claims_ + 1;
    return claim.compare_exchange_strong(running, 2 * claims_ + 2, std::memory_order_acq_rel);
  }
  /// Consumer thread: the record running for longer than `limit`, taken away from the pool thread.
  [[nodiscard]] std::optional<std::size_t> cancel_overdue(worker_clock::duration limit) noexcept {
    std::uint64_t seen = claim.load(std::memory_order_acquire);
    if (seen == cancelled || seen % 2 == 0) return std::nullopt;
    const auto started = worker_clock::time_point(worker_clock::duration(started_ns.load(std::memory_order_relaxed)));
    if (worker_clock::now() - started < limit) return std::nullopt;
    if (!claim.compare_exchange_strong(seen, cancelled, std::memory_order_acq_rel)) return std::nullopt;
    return claimed.load(std::memory_order_relaxed);  // stored before `seen` was released
  }

 private:
  std::uint64_t claims_ = 0;  // pool thread only
};

}  // namespace eventbus::detail
