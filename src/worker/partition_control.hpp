#pragma once
// What the worker asks of its consumer for the partitions it holds: the group's rebalances
// (assignment, and revocation: let what runs finish, commit it, forget the rest), commits of
// finished records (asynchronous every commit interval, synchronous on revocation and stop), with
// the records finished above each commit point in its metadata (finished_offsets.hpp), pausing a
// partition whose window is full and resuming it, and the load and consumer-lag gauges.
// Consumer thread only (librdkafka calls the rebalance and commit callbacks from consumer_poll).

#include <librdkafka/rdkafka.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <set>
#include <string>

#include "kafka/rdkafka_handles.hpp"
#include "eventbus/metrics.hpp"
#include "worker/pool_handoff.hpp"
#include "worker/work_scheduler.hpp"

namespace eventbus::detail {

class partition_control {
 public:
  /// `consumer` may be made after this object (it is read at each call), and must outlive it.
  partition_control(const kafka_handle& consumer, work_scheduler& work, pool_handoff& handoff, pool_side& side)
      : consumer_(consumer), work_(work), handoff_(handoff), side_(side), options_(side.options) {}

  /// Before the consumer is made: its rebalance and offset-commit callbacks come here.
  void attach(rd_kafka_conf_t* conf);

  /// Commits every partition whose commit point moved: synchronously (now, waiting for the
  /// answer), or asynchronously when the commit interval has passed since the last one.
  void commit(bool synchronous);
  /// When the next asynchronous commit is due; never while no commit point moved.
  [[nodiscard]] worker_clock::time_point next_commit() const noexcept;
  /// A commit's result (librdkafka's offset-commit callback): positions that failed are marked to
  /// go with the next commit.
  void on_commit_result(rd_kafka_resp_err_t err, const rd_kafka_topic_partition_list_t* offsets);
  [[nodiscard]] std::uint64_t commits() const noexcept { return commits_.load(std::memory_order_relaxed); }

  /// Newly assigned partitions: reads the group's committed offsets with their metadata and notes
  /// the records an earlier owner finished above them (skipped when they arrive). Returns how many.
  /// A failed read costs only redeliveries: those records run again.
  std::size_t resume(const rd_kafka_topic_partition_list_t& assigned);

  /// Told of each assigned partition before its records are fetched (parking loads its parked
  /// records), and of partitions forgotten (`nullptr`: every one).
  std::function<void(const std::string& topic, std::int32_t partition)> on_assigned;
  std::function<void(const std::set<partition_key>* forgotten)> on_forgotten;
  /// Work outside the scheduler that a revocation (or stop) waits for, as for records on the pool:
  /// true while some of it, of the partitions in `only` (any, with nullptr), runs.
  std::function<bool(const std::set<partition_key>* only)> also_busy;

  /// Pauses or resumes fetching the partition.
  void set_paused(partition_work& p, bool pause);

  /// Stopping: lets what runs finish (until `deadline`), commits it, and forgets every partition
  /// (so the revocation that closing the consumer brings waits for nothing); the gauges go to 0.
  void release_all(worker_clock::time_point deadline);

  /// The load gauges every 200 ms (and zero at the end: a stopped worker adds nothing), and
  /// eventbus_consumer_lag every 2 s.
  void update_gauges(bool stopping = false);
  [[nodiscard]] std::uint64_t in_flight() const noexcept { return in_flight_.load(std::memory_order_relaxed); }
  [[nodiscard]] std::uint64_t waiting_on_key() const noexcept { return waiting_on_key_.load(std::memory_order_relaxed); }
  [[nodiscard]] std::uint64_t paused_partitions() const noexcept { return paused_partitions_.load(std::memory_order_relaxed); }

  /// Partitions held now; whether the group ever assigned this worker any (any thread).
  [[nodiscard]] std::size_t assigned() const noexcept { return assigned_.load(); }
  [[nodiscard]] bool joined() const noexcept { return joined_.load(); }

 private:
  static void on_rebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* list,
                           void* opaque) noexcept;
  void assign(rd_kafka_t* rk, const rd_kafka_topic_partition_list_t& list);
  void revoke(const rd_kafka_topic_partition_list_t& list, bool lost);
  void wait_until_settled(const std::set<partition_key>* only, worker_clock::time_point deadline);
  void declare_failure_series(const rd_kafka_topic_partition_list_t& list);
  void unpause_before_release(const std::set<partition_key>& released);
  void report_lag(metrics& m);
  void wake_fetcher(const partition_work& p);
  [[nodiscard]] bool every_other_paused(const partition_work& p) const;
  static void attach_metadata(rd_kafka_topic_partition_t& entry, const std::string& metadata);
  static constexpr int committed_timeout_ms = 10'000;
  static constexpr std::chrono::seconds commit_retry_interval{1};

  const kafka_handle& consumer_;
  work_scheduler& work_;
  pool_handoff& handoff_;
  pool_side& side_;
  const worker_options& options_;
  worker_clock::time_point next_commit_{};
  worker_clock::time_point next_lag_update_{};
  worker_clock::time_point next_load_update_{};
  worker_load published_load_{};  // what this worker added to the load gauges
  std::atomic<std::uint64_t> commits_{0};
  std::atomic<std::uint64_t> in_flight_{0}, waiting_on_key_{0}, paused_partitions_{0};
  std::atomic<std::size_t> assigned_{0};
  std::atomic<bool> joined_{false};
  std::size_t metadata_limit_ = max_finished_metadata;
};

}  // namespace eventbus::detail
