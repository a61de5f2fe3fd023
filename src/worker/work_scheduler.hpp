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

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <string>

#include "eventbus/metrics.hpp"
#include "eventbus/worker.hpp"
#include "worker/records.hpp"
#include "worker/work_batch.hpp"

namespace eventbus::detail {

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
