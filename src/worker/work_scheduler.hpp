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
// The scheduler owns lanes and windows whole: what goes to the pool, what comes back (settle), when
// a record is finished, and forgetting revoked partitions. The worker only decides what becomes of
// a record that needs more than a clean pass (retry, dead letter) and says when that is over.
//
// Priority tiers (worker_options::priority_tiers): each partition belongs to its topic's tier, and
// ready lanes wait per tier. take() serves the most urgent tier that has ready lanes; every less
// urgent tier with records not finished is owed lower_share_percent of the records taken so, and
// a tier owed a record or more is served first (the one owed the most), with what it is owed.
//
// Used from one thread only (the worker's consumer thread).

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "eventbus/metrics.hpp"
#include "metrics/worker_load.hpp"
#include "eventbus/kafka/worker.hpp"
#include "worker/records.hpp"
#include "worker/work_batch.hpp"

namespace eventbus::detail {

class work_scheduler {
 public:
  /// `on_finished` is told of every record that becomes finished, with its partition (the worker
  /// counts them, and resumes a paused partition whose window emptied enough).
  using finished_hook = std::function<void(partition_work&)>;
  work_scheduler(processing_order order, std::size_t max_batch, finished_hook on_finished = {})
      : order_(order), max_batch_(max_batch), on_finished_(std::move(on_finished)) {}

  struct tier_plan {
    std::size_t count = 1;
    std::function<std::size_t(const std::string& topic)> tier_of{};  // 0 (most urgent) .. count - 1
    std::size_t lower_share_percent = 10;                             // 1..90
  };
  /// Before the first partition: sorts partitions into tiers (one tier without a plan).
  void use_tiers(tier_plan plan);
  [[nodiscard]] std::size_t tier_count() const noexcept { return tiers_.size(); }
  /// Records of the tier fetched and not finished (waiting, on the pool, retried, dead-lettered).
  [[nodiscard]] std::size_t unfinished_in_tier(std::size_t tier) const noexcept { return tiers_[tier].unfinished; }

  /// The partition's bookkeeping, created on first use. Records come in runs of one partition (a
  /// fetch response each): the last one found is remembered, so a run looks up no map and builds
  /// no string.
  partition_work& partition(std::string_view topic, std::int32_t partition);
  [[nodiscard]] std::map<partition_key, partition_work>& partitions() noexcept { return partitions_; }

  /// A fetched record joins its partition's window and its lane (and may make the lane ready).
  void add(partition_work& p, job_ptr job);

  /// The next batch for one of `free_slots` free pool slots: whole or partial lanes from the ready
  /// list, sized so that the ready records spread over the slots, at most `max_records` (and
  /// max_batch). Empty when nothing is ready. The lanes taken are busy until release().
  [[nodiscard]] work_batch take(std::size_t free_slots, std::size_t max_records = SIZE_MAX);
  [[nodiscard]] bool has_ready() const noexcept { return ready_lanes_ > 0; }
  /// Records waiting in ready lanes, over every tier.
  [[nodiscard]] std::size_t ready_records() const noexcept {
    std::size_t n = 0;
    for (const auto& t : tiers_) n += t.ready_records;
    return n;
  }

  /// The lane's in-flight work is over: it becomes ready again if records wait, else it idles for
  /// its key's next record (key and partition order; unordered lanes are dropped). A partition's
  /// idle lanes are dropped when it holds more than max_lanes_kept (and twice what the last sweep
  /// left).
  void release(lane& l);
  static constexpr std::size_t max_lanes_kept = 1024;

  /// Marks the record finished and moves its partition's commit point over every finished record
  /// at the window's head. Drops the record's bytes if the caller has not. Tells on_finished.
  void finish(partition_work& p, record_job& job);

  /// A record that stopped its lane's run on the pool: it needs a retry or a dead letter, or it
  /// overran handler_timeout (and is still read by its pool thread). It is its lane's `current`
  /// record now, and the lane waits until finish_held().
  struct held_record {
    job_ptr job;
    bool overran = false;
  };

  /// As a slow batch reports progress: each run's records the pool finished so far become
  /// finished, in order, up to the first that is not.
  void collect_finished(work_batch& batch);

  /// The pool is done with `batch`, or the worker took it back (`hung`: the record still running).
  /// In each run, the records finished become finished; the first one that needs more holds its
  /// lane and is appended to `held`; the rest, and records the pool never started (a stop or a
  /// revocation came first), go back to the head of their lane. Runs of revoked partitions are left
  /// alone: the next owner gets their records again.
  void settle(work_batch& batch, std::optional<std::size_t> hung, std::vector<held_record>& held);

  /// A held record is over (retried to the end, dead-lettered): finished, and its lane goes on.
  /// Nothing happens while a retry attempt or a dead letter of it is outstanding. By value: the
  /// caller's pointer may be the lane's `current`, which this resets.
  void finish_held(job_ptr job);

  /// A fetched record that an earlier owner finished (p.finished has it): it joins the window as
  /// finished, runs nothing, and the commit point moves over it.
  void add_finished(partition_work& p, std::int64_t offset);

  /// A fetched record that joins the window unfinished but no lane: it runs nothing here (it is
  /// being parked behind its key's parked records); finish() it once it is.
  void add_unlaned(partition_work& p, job_ptr job);

  /// The records waiting behind the lane's held record, taken out of the lane (they stay in the
  /// window, unfinished): they are parked with it. finish() each once it is.
  [[nodiscard]] std::vector<job_ptr> take_waiting(lane& l);

  /// Forgets the partition; its unfinished records are marked abandoned.
  void forget(std::map<partition_key, partition_work>::iterator it);
  /// Forgets every partition in `keys`.
  void forget(const std::set<partition_key>& keys);
  /// Forgets every partition.
  void forget_all();

  /// Partitions being revoked: nothing of theirs is taken any more (take()).
  void mark_revoking(const std::set<partition_key>& keys);

  /// True while something of a partition in `keys` (of any, without) runs: records on the pool, a
  /// retry attempt, a dead letter outstanding. Records waiting for a backoff do not count: they
  /// were not started again (the next owner starts them).
  [[nodiscard]] bool busy(const std::set<partition_key>& keys) const;
  [[nodiscard]] bool busy() const;

  /// Records on the pool, in backoff or being dead-lettered (in_flight); records held back by an
  /// earlier record of their lane (waiting_on_key); paused partitions.
  [[nodiscard]] worker_load load() const;

 private:
  const std::string& lane_id(const record_job& job, std::string& scratch) const;
  void make_ready(lane& l);
  void advance_commit_point(partition_work& p);
  struct tier_choice {
    std::size_t served = 0;
    bool paying_debt = false;  // `served` is a less urgent tier, taking what it is owed
  };
  [[nodiscard]] tier_choice tier_to_serve();
  [[nodiscard]] static bool busy(const partition_work& p);

  struct tier_queue {
    std::deque<lane*> ready;        // idle lanes with waiting records, oldest first
    std::size_t ready_records = 0;  // waiting records of the lanes in `ready`
    std::size_t unfinished = 0;     // fetched, not finished
    double owed = 0;                // records owed to it by more urgent tiers (its minimum share)
  };

  processing_order order_;
  std::size_t max_batch_;
  finished_hook on_finished_;
  std::map<partition_key, partition_work> partitions_;
  std::vector<tier_queue> tiers_ = std::vector<tier_queue>(1);
  std::function<std::size_t(const std::string&)> tier_of_;
  std::size_t lower_share_percent_ = 10;
  std::size_t ready_lanes_ = 0;
  partition_work* last_found_ = nullptr;  // partition()'s memory; forgetting any partition clears it
};

}  // namespace eventbus::detail
