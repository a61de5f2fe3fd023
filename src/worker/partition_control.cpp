// Commits, pausing, and the load and lag gauges for the worker's partitions (partition_control.hpp;
// rebalances are in partition_rebalance.cpp).

#include "worker/partition_control.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include "kafka/kafka_client.hpp"
#include "support/log.hpp"

namespace eventbus::detail {

void partition_control::commit(bool synchronous) {
  const auto now = worker_clock::now();
  if (!synchronous && now < next_commit_) return;
  const auto offsets = make_partition_list(8);
  for (auto& [key, p] : work_.partitions()) {
    if (!p.dirty) continue;
    p.dirty = false;
    // Before the first committable record, the position we started from (the group's committed
    // offset, or where auto.offset.reset put us) carries what finished above it.
    const std::int64_t at = p.commit_next >= 0 ? p.commit_next : p.first_seen;
    if (at < 0) continue;
    auto* entry = rd_kafka_topic_partition_list_add(offsets.get(), key.first.c_str(), key.second);
    entry->offset = at;
    attach_metadata(*entry, p.finished.encode(at, metadata_limit_));
  }
  if (offsets->cnt > 0) {
    next_commit_ = std::max(next_commit_, now + options_.commit_interval);  // a failure may have pushed it further
    const auto err = rd_kafka_commit(consumer_.get(), offsets.get(), synchronous ? 0 : 1);
    commits_.fetch_add(1, std::memory_order_relaxed);
    if (synchronous) on_commit_result(err, offsets.get());  // marks what failed before the caller forgets it
  }
}

void partition_control::on_commit_result(rd_kafka_resp_err_t err, const rd_kafka_topic_partition_list_t* offsets) {
  if (err == RD_KAFKA_RESP_ERR__NO_OFFSET || offsets == nullptr) return;
  auto& all = work_.partitions();
  bool failed = err != RD_KAFKA_RESP_ERR_NO_ERROR;
  for (int i = 0; i < offsets->cnt; ++i) {
    const auto& e = offsets->elems[i];
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR && e.err == RD_KAFKA_RESP_ERR_NO_ERROR) continue;
    failed = true;
    // A broker with a lower offset.metadata.max.bytes refuses the whole commit: send less (down
    // to none: then only the commit offset is kept, as without this).
    if (e.err == RD_KAFKA_RESP_ERR_OFFSET_METADATA_TOO_LARGE || err == RD_KAFKA_RESP_ERR_OFFSET_METADATA_TOO_LARGE)
      metadata_limit_ = std::min(metadata_limit_, e.metadata_size / 2);
    const auto it = all.find({e.topic, e.partition});
    if (it != all.end()) it->second.dirty = true;
  }
  if (failed) {
    // Retried once a second, not every commit_interval: a coordinator that is away (or a group
    // rebalancing) would otherwise get twenty failing commits a second, and the log twenty lines.
    next_commit_ = std::max(next_commit_, worker_clock::now() + commit_retry_interval);
    log(log_level::warn, "worker: offset commit failed, will retry in a second: " + kafka_error_text(err));
  }
}

worker_clock::time_point partition_control::next_commit() const noexcept {
  for (const auto& [key, p] : work_.partitions())
    if (p.dirty) return next_commit_;
  return worker_clock::time_point::max();  // nothing to commit: no reason to wake
}

std::size_t partition_control::resume(const rd_kafka_topic_partition_list_t& assigned) {
  const kafka_partition_list committed(rd_kafka_topic_partition_list_copy(&assigned));
  std::size_t skippable = 0;
  const auto err = rd_kafka_committed(consumer_.get(), committed.get(), committed_timeout_ms);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    log(log_level::warn, "worker: could not read the committed offsets' metadata (" + kafka_error_text(err) +
                             "): records finished above them by the last owner will run again");
  } else {
    for (int i = 0; i < committed->cnt; ++i) {
      const auto& e = committed->elems[i];
      if (e.err != RD_KAFKA_RESP_ERR_NO_ERROR || e.offset < 0 || e.metadata == nullptr) continue;
      const auto read = decode_finished_offsets(
          e.offset, std::string_view(static_cast<const char*>(e.metadata), e.metadata_size));
      if (!read.offsets) {
        log(log_level::warn, std::string("worker: ") + e.topic + "[" + std::to_string(e.partition) +
                                 "]: ignoring " + read.error + "; what finished above it will run again");
        continue;
      }
      if (read.offsets->empty()) continue;
      auto& p = work_.partition(e.topic, e.partition);
      p.finished = *read.offsets;
      skippable += static_cast<std::size_t>(p.finished.size());
    }
  }
  return skippable;
}

void partition_control::attach_metadata(rd_kafka_topic_partition_t& entry, const std::string& metadata) {
  if (metadata.empty()) return;
  // librdkafka frees it with the list (its rd_free is free()).
  entry.metadata = std::malloc(metadata.size());
  if (entry.metadata == nullptr) return;
  std::memcpy(entry.metadata, metadata.data(), metadata.size());
  entry.metadata_size = metadata.size();
}

void partition_control::set_paused(partition_work& p, bool pause) {
  const auto list = make_partition_list(1);
  rd_kafka_topic_partition_list_add(list.get(), p.topic.c_str(), p.partition);
  (void)(pause ? rd_kafka_pause_partitions(consumer_.get(), list.get()) : rd_kafka_resume_partitions(consumer_.get(), list.get()));
  p.paused = pause;
  if (!pause && every_other_paused(p)) wake_fetcher(p);
}

// librdkafka keeps a pause across a rebalance, and resuming at the next assignment instead (every
// partition, as it cannot tell which) stalls: librdkafka 2.0 bumps a partition's version on a
// resume even when it is not paused, which can leave a freshly assigned partition never fetched
// (seen after a lost session: one partition of 35 held its records for good). So the partitions
// this worker paused are resumed before they are let go.
void partition_control::unpause_before_release(const std::set<partition_key>& released) {
  const auto list = make_partition_list(4);
  for (auto& [key, p] : work_.partitions())
    if (p.paused && released.count(key) > 0) {
      rd_kafka_topic_partition_list_add(list.get(), p.topic.c_str(), p.partition);
      p.paused = false;  // no wake-up: the partition is unassigned next
    }
  if (list->cnt > 0) (void)rd_kafka_resume_partitions(consumer_.get(), list.get());
}

// While another partition still fetches, its fetches wake the broker thread anyway, and the
// wake-up's round trip (blocking this thread) is wasted: measured, resuming 128 partitions with a
// round trip each halved a worker's rate with the default window.
bool partition_control::every_other_paused(const partition_work& p) const {
  for (const auto& [key, other] : work_.partitions())
    if (&other != &p && !other.paused && !other.revoking) return false;
  return true;
}

// librdkafka (2.0.2) notes a resume but its broker thread only looks again when something else
// wakes it: with every partition of that broker paused, that is up to a second later, and a
// drained window sits idle meanwhile (measured: key order fell to a third of its rate). A request
// to the partition's leader wakes that thread: one round trip, once per resume.
void partition_control::wake_fetcher(const partition_work& p) {
  std::int64_t low = 0, high = 0;
  (void)rd_kafka_query_watermark_offsets(consumer_.get(), p.topic.c_str(), p.partition, &low, &high, 200);
}

void partition_control::update_gauges(bool stopping) {
  const auto now = worker_clock::now();
  if (stopping || now >= next_load_update_) {
    next_load_update_ = now + std::chrono::milliseconds(200);
    const auto load = stopping ? worker_load{} : work_.load();
    in_flight_.store(static_cast<std::uint64_t>(load.in_flight), std::memory_order_relaxed);
    waiting_on_key_.store(static_cast<std::uint64_t>(load.waiting_on_key), std::memory_order_relaxed);
    paused_partitions_.store(static_cast<std::uint64_t>(load.paused_partitions), std::memory_order_relaxed);
    if (options_.metrics) {
      metrics_access::add_worker_load(*options_.metrics, options_.group_id,
                                        {.in_flight = load.in_flight - published_load_.in_flight,
                                         .waiting_on_key = load.waiting_on_key - published_load_.waiting_on_key,
                                         .paused_partitions = load.paused_partitions - published_load_.paused_partitions});
      published_load_ = load;
    }
  }
  if (options_.metrics && !stopping) report_lag(*options_.metrics);
}

// eventbus_consumer_lag of every held partition, at most every 2 s: records after the last
// committable one, from librdkafka's cached high watermark (no request of its own).
void partition_control::report_lag(metrics& m) {
  const auto now = worker_clock::now();
  if (now < next_lag_update_) return;
  next_lag_update_ = now + std::chrono::seconds(2);
  for (const auto& [key, p] : work_.partitions()) {
    std::int64_t low = 0, high = 0;
    if (rd_kafka_get_watermark_offsets(consumer_.get(), key.first.c_str(), key.second, &low, &high) != 0 || high < 0) continue;
    const auto done = p.commit_next >= 0 ? p.commit_next : p.first_seen;
    m.set_consumer_lag(key.first, key.second, std::max<std::int64_t>(0, high - done));
  }
}

}  // namespace eventbus::detail
