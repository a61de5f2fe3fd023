// The hand-off to the task pool (pool_handoff.hpp). One hand-off per batch instead of per record is
// what lets the worker keep up with the consumer when handlers are quick.

#include "worker/pool_handoff.hpp"

#include <algorithm>
#include <vector>

namespace eventbus::detail {

pool_handoff::pool_handoff(std::shared_ptr<pool_side> side, reports on)
    : side_(std::move(side)), on_(std::move(on)), pool_(side_->options.max_concurrency, std::size_t{1} << 20) {}

std::size_t pool_handoff::free_slots() const noexcept {
  const auto slots = side_->options.max_concurrency;
  return on_pool_ < slots ? slots - on_pool_ : 0;
}

std::size_t pool_handoff::batch_limit() const noexcept {
  constexpr double batch_budget_ns = 2'000'000;
  return static_cast<std::size_t>(std::clamp(batch_budget_ns / std::max(record_ns_, 1.0), 1.0, double(max_batch)));
}

// The task holds the pool side, never the worker: if its handlers hang past stop(), it outlives the
// worker safely. (It carries this object's address only to put it in what it posts, which only the
// worker's own loop ever runs.)
template <class Body>
void pool_handoff::push(const std::shared_ptr<work_batch>& batch, Body body) {
  ++on_pool_;
  batches_.insert(batch);
  std::vector<task_pool::task> task{[side = side_, self = this, batch, body] { body(*side, self, batch); }};
  (void)pool_.push_all(task, std::chrono::milliseconds(0));  // at most max_concurrency tasks: always room
}

void pool_handoff::run(work_batch batch) {
  push(std::make_shared<work_batch>(std::move(batch)),
       [](pool_side& on, pool_handoff* self, const std::shared_ptr<work_batch>& b) { run_batch(on, self, b); });
}

void pool_handoff::attempt(const job_ptr& job) {
  job->running = true;
  auto batch = std::make_shared<work_batch>();
  batch->jobs.push_back(job);
  batch->retry = true;
  push(batch, [](pool_side& on, pool_handoff* self, const std::shared_ptr<work_batch>& b) {
    b->begin(0);
    on.runner.run_due_handlers(*b->jobs[0]);
    if (!b->end()) return on.completions.post([self] { self->hung_call_returned(); });
    on.completions.post([self, b] { self->back_from_pool(b); });
  });
}

// On a pool thread: each run's records in order, until one needs more than a clean pass. Stops
// before the next record when asked (stop, revocation); records finished in a slow batch are
// reported as they finish, so they become committable without waiting for the rest.
void pool_handoff::run_batch(pool_side& on, pool_handoff* self, const std::shared_ptr<work_batch>& batch) {
  const auto start = worker_clock::now();
  auto last_report = start;
  if (on.runner.batching() && on.runner.registry().largest_batch() > 1 && !call_batch_handlers(on, *batch)) {
    on.completions.post([self] { self->hung_call_returned(); });  // overran handler_timeout: taken over
    return;
  }
  for (auto& run : batch->runs) {
    while (run.begin + run.done < run.end) {
      if (batch->stop.load(std::memory_order_relaxed) || on.stop_requested.load(std::memory_order_relaxed)) break;
      const std::size_t k = run.begin + run.done;
      auto& job = *batch->jobs[k];
      batch->begin(k);
      ++batch->passes;
      const bool finished = on.runner.first_pass(job);
      if (!batch->end()) {  // it overran handler_timeout: the consumer thread took it (and the batch) over
        on.completions.post([self] { self->hung_call_returned(); });
        return;
      }
      // Freed here, not on the consumer thread: freeing a parsed event is not free. Before the
      // state is published: from then on the consumer thread may finish the record.
      if (finished) job.release_bytes();
      job.pass.store(finished ? pass_state::finished : pass_state::needs_more, std::memory_order_release);
      if (!finished) break;
      ++run.done;
      if (const auto now = worker_clock::now(); now - last_report >= progress_interval) {
        last_report = now;
        on.completions.post([self, batch] { self->on_.progress(*batch); });
      }
    }
  }
  batch->took = worker_clock::now() - start;
  on.completions.post([self, batch] { self->back_from_pool(batch); });
}

// On a pool thread, before the records' own passes: every batch handler gets the records of the
// batch that it handles, up to its batch_max a call, each lane's in order. A run is prepared up to
// its first record that cannot be handled (its pass reports it). What a batch call leaves pending
// is called alone by the record's pass, and so is every later record of its lane in this batch
// (later calls leave them out), so the handler sees a lane's records in order. False when a call
// overran handler_timeout and the consumer thread took the batch over (nothing here may touch it
// then).
bool pool_handoff::call_batch_handlers(pool_side& on, work_batch& batch) {
  using kind = record_runner::batch_result::kind;
  struct member {
    std::size_t record;  // its index in batch.jobs
    handler_progress* progress;
    std::size_t lane;
  };
  std::vector<std::pair<handler_entry*, std::vector<member>>> calls;
  for (std::size_t r = 0; r < batch.runs.size(); ++r) {
    const auto& run = batch.runs[r];
    for (std::size_t k = run.begin + run.done; k < run.end; ++k) {
      auto& job = *batch.jobs[k];
      if (job.call_alone || on.runner.is_dead_letter(job) || !on.runner.prepare(job)) break;
      for (auto& progress : job.handlers) {
        handler_entry& h = *progress.handler;
        if (h.batch_max < 2 || progress.state != handler_state::pending || progress.attempts > 0) continue;
        auto it = std::find_if(calls.begin(), calls.end(), [&](const auto& c) { return c.first == &h; });
        if (it == calls.end()) {
          calls.emplace_back(&h, std::vector<member>{});
          it = calls.end() - 1;
        }
        it->second.push_back({.record = k, .progress = &progress, .lane = r});
      }
    }
  }
  for (auto& [handler, members] : calls) {
    std::vector<std::size_t> blocked;  // lanes with a member not done: their later members wait
    const auto is_blocked = [&](std::size_t lane) { return std::find(blocked.begin(), blocked.end(), lane) != blocked.end(); };
    std::size_t next = 0;
    while (next < members.size()) {
      std::vector<member> chunk;
      for (; next < members.size() && chunk.size() < handler->batch_max; ++next)
        if (!is_blocked(members[next].lane)) chunk.push_back(members[next]);
      if (chunk.size() < 2) break;  // one event: its record's pass calls it, through the middleware
      if (batch.stop.load(std::memory_order_relaxed) || on.stop_requested.load(std::memory_order_relaxed)) return true;
      // Everything the call reads is copied before the claim: once the consumer thread takes it
      // (handler_timeout), the records go back to their lanes and may be finished and freed while
      // this call still runs.
      std::vector<record_runner::batch_member> call;
      call.reserve(chunk.size());
      batch.call_members.clear();
      for (const auto& m : chunk) {
        record_job& job = *batch.jobs[m.record];
        call.push_back({.ev = *job.ev, .lane = m.lane});
        batch.call_members.push_back(&job);
      }
      // The claim names the chunk's first record; `batch_call` tells the consumer thread that a
      // call past handler_timeout holds several records, none of which can be blamed alone.
      batch.batch_call.store(true, std::memory_order_relaxed);
      batch.begin(chunk[0].record);
      const auto results = on.runner.call_batch(*handler, call);
      if (!batch.end()) return false;
      batch.batch_call.store(false, std::memory_order_relaxed);
      for (std::size_t i = 0; i < chunk.size(); ++i) {
        handler_progress& progress = *chunk[i].progress;
        const auto what = results.size() == chunk.size() ? results[i].what : kind::again;
        if (what == kind::done) {
          progress.state = handler_state::succeeded;
          progress.attempts = 1;
        } else if (what == kind::dead) {
          progress.state = handler_state::dead;
          progress.attempts = 1;
          progress.last_error = results[i].error;
        } else if (!is_blocked(chunk[i].lane)) {
          blocked.push_back(chunk[i].lane);
        }
      }
    }
  }
  return true;
}

// Consumer thread: the pool is done with a batch or a retry attempt.
void pool_handoff::back_from_pool(const std::shared_ptr<work_batch>& batch) {
  batches_.erase(batch);
  --on_pool_;
  if (!batch->retry && batch->passes > 0) {
    const double per_record = static_cast<double>(batch->took.count()) / static_cast<double>(batch->passes);
    record_ns_ = 0.8 * record_ns_ + 0.2 * per_record;
  }
  on_.returned(*batch, std::nullopt);
}

void pool_handoff::take_back_overdue() {
  const auto limit = side_->options.handler_timeout;
  if (limit.count() == 0) return;
  for (auto it = batches_.begin(); it != batches_.end();) {
    const auto batch = *it++;
    if (const auto k = batch->cancel_overdue(limit)) {
      batches_.erase(batch);
      hung_calls_.fetch_add(1, std::memory_order_relaxed);
      side_->completions.post([this, batch, k] { on_.returned(*batch, k); });
    }
  }
}

// The pool thread of a timed-out record is back: its slot is free again.
void pool_handoff::hung_call_returned() {
  --on_pool_;
  hung_calls_.fetch_sub(1, std::memory_order_relaxed);
}

void pool_handoff::stop_all() {
  for (const auto& b : batches_) b->stop.store(true);
}

void pool_handoff::stop_revoking() {
  for (const auto& b : batches_)
    for (const auto& run : b->runs)
      if (!b->jobs[run.begin]->abandoned && run.owner->partition->revoking) b->stop.store(true);
}

}  // namespace eventbus::detail
