#pragma once
// The worker's bookkeeping of fetched records, without Kafka or threads: which records may run now,
// which must wait for an earlier one, and how far each partition may be committed.
//
// Every fetched record joins its partition's window (offset order) and a lane: the records that
// must run one after another. A lane is a key's records (processing_order::key), a partition's
// (partition) or a single record (unordered). A lane holds at most one piece of in-flight work (a
// batch on the pool, or the one record being retried or dead-lettered), so its records run in
// offset order; different lanes run in parallel. A partition is committable up to its first
// unfinished record, never past it, whatever finishes later in other lanes.
//
// Used from one thread only (the worker's consumer thread).

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstddef>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "detail/handler_registry.hpp"
#include "eventbus/event.hpp"
#include "eventbus/metrics.hpp"
#include "eventbus/worker.hpp"
#include "worker/dead_letter.hpp"
#include "worker/dead_letter_writer.hpp"
#include "worker/finished_offsets.hpp"

namespace eventbus::detail {

using worker_clock = std::chrono::steady_clock;

enum class handler_state { pending, succeeded, dead };

struct handler_run {
  entry_ptr handler;
  handler_state state = handler_state::pending;
  int attempts = 0;
  std::string last_error{};
  worker_clock::time_point next_try{};
  bool dead_letter_sent = false;
};

struct lane;

// What a pool thread found on its pass over a record (published with release, so the consumer
// thread may read the record's state once it sees anything but `pending`).
enum class pass_state : std::uint8_t { pending, finished, needs_more };

// One consumed record, from the fetch until its offset may be committed.
struct record_job : consumed_record {
  std::optional<event> ev;
  std::optional<dead_letter_reason> bad;  // set when it cannot be handled (not decodable, too large)
  std::vector<handler_run> handlers;      // touched by the pool only while it runs the record
  std::atomic<pass_state> pass{pass_state::pending};  // written by the pool once per batch pass
  bool running = false;                   // a retry attempt is on the pool
  bool abandoned = false;  // its partition was revoked: forget it, it will be redelivered
  bool finished = false;
  /// Its handlers overran handler_timeout and still run on a thread of their own: it was
  /// dead-lettered (reason timeout) without waiting, and nothing here may touch what that thread
  /// still reads (event, handlers, bytes). Freed when that thread lets go of it.
  bool hung = false;
  int dead_letters_outstanding = 0;
  lane* owner = nullptr;  // valid until finished or abandoned

  /// Once finished, a record needs neither its event nor its bytes (no retry, no dead letter).
  void release_bytes() noexcept {
    if (hung) return;
    ev.reset();
    message.reset();
    std::string().swap(owned_value);
    handlers.clear();
  }
};
using job_ptr = std::shared_ptr<record_job>;

struct partition_work;

struct lane {
  std::string id;
  partition_work* partition = nullptr;
  std::deque<job_ptr> waiting;  // in offset order, not started
  job_ptr current;              // the record being retried or dead-lettered
  bool busy = false;            // a batch of it is on the pool, or `current` is set
  bool ready = false;           // in the scheduler's ready list
};

struct partition_work {
  std::string topic;
  std::int32_t partition = -1;
  std::deque<job_ptr> window;  // every fetched record not yet committable, in offset order
  std::unordered_map<std::string, lane> lanes;  // key and partition order: idle ones are kept (release)
  std::size_t lanes_after_sweep = 0;            // lanes left by the last sweep of idle ones
  std::size_t on_pool = 0;        // records of this partition in batches on the pool
  std::int64_t commit_next = -1;  // offset after the last committable record; -1: none yet
  std::int64_t first_seen = -1;   // offset of the first record received since the assignment
  /// Finished records above the commit point: by this worker, or by an earlier owner (read from
  /// the commit metadata at assignment; such records are skipped when they arrive).
  finished_offsets finished;
  bool dirty = false;             // commit point or finished set not committed yet
  bool paused = false;
  bool revoking = false;  // being revoked: start nothing new
};
using partition_key = std::pair<std::string, std::int32_t>;

// Records handed to the pool together: each lane's records side by side, in offset order. The pool
// runs a lane's records until one needs more than a clean pass and records how many finished.
//
// A pool thread claims each record before it runs it (`claim` = 2k+1 while record k runs, 2k+2
// once it is over), so the consumer thread can take a record whose handlers overran
// handler_timeout away from it: it swaps the odd claim for `cancelled`, and the pool thread, finding
// its claim gone when the call returns, leaves that record (and the rest of the batch) alone.
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

  /// Pool thread: record k starts.
  void begin(std::size_t k) noexcept {
    started_ns.store(worker_clock::now().time_since_epoch().count(), std::memory_order_relaxed);
    claim.store(2 * k + 1, std::memory_order_release);
  }
  /// Pool thread: record k is over. False when the consumer took it away meanwhile.
  [[nodiscard]] bool end(std::size_t k) noexcept {
    std::uint64_t running = 2 * k + 1;
    return claim.compare_exchange_strong(running, 2 * k + 2, std::memory_order_acq_rel);
  }
  /// Consumer thread: the record running for longer than `limit`, taken away from the pool thread.
  [[nodiscard]] std::optional<std::size_t> cancel_overdue(worker_clock::duration limit) noexcept {
    std::uint64_t seen = claim.load(std::memory_order_acquire);
    if (seen == cancelled || seen % 2 == 0) return std::nullopt;
    const auto started = worker_clock::time_point(worker_clock::duration(started_ns.load(std::memory_order_relaxed)));
    if (worker_clock::now() - started < limit) return std::nullopt;
    if (!claim.compare_exchange_strong(seen, cancelled, std::memory_order_acq_rel)) return std::nullopt;
    return static_cast<std::size_t>((seen - 1) / 2);
  }
};

class work_scheduler {
 public:
  work_scheduler(processing_order order, std::size_t max_batch) : order_(order), max_batch_(max_batch) {}

  /// The partition's bookkeeping, created on first use.
  partition_work& partition(const std::string& topic, std::int32_t partition);
  [[nodiscard]] std::map<partition_key, partition_work>& partitions() noexcept { return partitions_; }

  /// A fetched record joins its partition's window and its lane (and may make the lane ready).
  void add(partition_work& p, job_ptr job);

  /// The next batch for one of `free_slots` free pool slots: whole or partial lanes from the ready
  /// list, sized so that the ready records spread over the slots, at most `max_records` (and
  /// max_batch). Empty when nothing is ready. The lanes taken are busy until release().
  [[nodiscard]] work_batch take(std::size_t free_slots, std::size_t max_records = SIZE_MAX);
  [[nodiscard]] bool has_ready() const noexcept { return !ready_.empty(); }

  /// The lane's in-flight work is over: it becomes ready again if records wait, else it idles for
  /// its key's next record (key and partition order; unordered lanes are dropped). A partition's
  /// idle lanes are dropped when it holds more than max_lanes_kept (and twice what the last sweep
  /// left).
  void release(lane& l);
  static constexpr std::size_t max_lanes_kept = 1024;

  /// Marks the record finished and moves its partition's commit point over every finished record
  /// at the window's head. Drops the record's bytes if the caller has not.
  void finish(partition_work& p, record_job& job);

  /// A fetched record that an earlier owner finished (p.finished has it): it joins the window as
  /// finished, runs nothing, and the commit point moves over it.
  void add_finished(partition_work& p, std::int64_t offset);

  /// Forgets the partition; its unfinished records are marked abandoned.
  void forget(std::map<partition_key, partition_work>::iterator it);

  /// Records on the pool, in backoff or being dead-lettered (in_flight); records held back by an
  /// earlier record of their lane (waiting_on_key); paused partitions.
  [[nodiscard]] metrics::worker_load load() const;

 private:
  const std::string& lane_id(const record_job& job, std::string& scratch) const;
  void make_ready(lane& l);
  void advance_commit_point(partition_work& p);

  processing_order order_;
  std::size_t max_batch_;
  std::map<partition_key, partition_work> partitions_;
  std::deque<lane*> ready_;        // idle lanes with waiting records, oldest first
  std::size_t ready_records_ = 0;  // waiting records of the lanes in ready_
};

}  // namespace eventbus::detail
