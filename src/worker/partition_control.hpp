#pragma once
// What the worker asks of its consumer for the partitions it holds: commits of finished records
// (asynchronous every commit interval, synchronous on revocation and stop), with the records
// finished above each commit point in its metadata (finished_offsets.hpp), pausing a partition
// whose window is full and resuming it, and the consumer-lag gauge. Consumer thread only.

#include <librdkafka/rdkafka.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <set>
#include <string>

#include "detail/rdkafka_handles.hpp"
#include "eventbus/metrics.hpp"
#include "worker/work_scheduler.hpp"

namespace eventbus::detail {

class partition_control {
 public:
  /// `consumer` may be made after this object (it is read at each call), and must outlive it.
  partition_control(const kafka_handle& consumer, work_scheduler& work, std::chrono::milliseconds commit_interval)
      : consumer_(consumer), work_(work), commit_interval_(commit_interval) {}

  /// Commits every partition whose commit point moved: synchronously (now, waiting for the
  /// answer), or asynchronously when the commit interval has passed since the last one.
  void commit(bool synchronous);
  /// When the next asynchronous commit is due.
  [[nodiscard]] worker_clock::time_point next_commit() const noexcept { return next_commit_; }
  /// A commit's result (librdkafka's offset-commit callback): positions that failed are marked to
  /// go with the next commit.
  void on_commit_result(rd_kafka_resp_err_t err, const rd_kafka_topic_partition_list_t* offsets);
  [[nodiscard]] std::uint64_t commits() const noexcept { return commits_.load(std::memory_order_relaxed); }

  /// Newly assigned partitions: reads the group's committed offsets with their metadata and notes
  /// the records an earlier owner finished above them (skipped when they arrive). Returns how many.
  /// A failed read costs only redeliveries: those records run again.
  std::size_t resume(const rd_kafka_topic_partition_list_t& assigned);

  /// Pauses or resumes fetching the partition.
  void set_paused(partition_work& p, bool pause);

  /// Before partitions are let go: resumes those this worker paused. librdkafka keeps a pause
  /// across a rebalance, and resuming at the next assignment instead (every partition, as it
  /// cannot tell which) stalls: librdkafka 2.0 bumps a partition's version on a resume even when it
  /// is not paused, which can leave a freshly assigned partition never fetched (seen after a lost
  /// session: one partition of 35 held its records for good).
  void unpause_before_release(const std::set<partition_key>& released);

  /// eventbus_consumer_lag of every held partition, at most every 2 s: records after the last
  /// committable one, from librdkafka's cached high watermark (no request of its own).
  void report_lag(metrics& m);

 private:
  void wake_fetcher(const partition_work& p);
  [[nodiscard]] bool every_other_paused(const partition_work& p) const;
  static void attach_metadata(rd_kafka_topic_partition_t& entry, const std::string& metadata);
  static constexpr int committed_timeout_ms = 10'000;

  const kafka_handle& consumer_;
  work_scheduler& work_;
  const std::chrono::milliseconds commit_interval_;
  worker_clock::time_point next_commit_{};
  worker_clock::time_point next_lag_update_{};
  std::atomic<std::uint64_t> commits_{0};
  std::size_t metadata_limit_ = max_finished_metadata;
};

}  // namespace eventbus::detail
