// Commits, pausing and lag for the worker's partitions (partition_control.hpp).

#include "worker/partition_control.hpp"

#include <algorithm>
#include <string>

#include "detail/kafka_client.hpp"
#include "detail/log.hpp"

namespace eventbus::detail {

void partition_control::commit(bool synchronous) {
  if (!synchronous && worker_clock::now() < next_commit_) return;
  next_commit_ = worker_clock::now() + commit_interval_;
  rd_kafka_topic_partition_list_t* offsets = rd_kafka_topic_partition_list_new(8);
  for (auto& [key, p] : work_.partitions()) {
    if (!p.dirty) continue;
    rd_kafka_topic_partition_list_add(offsets, key.first.c_str(), key.second)->offset = p.commit_next;
    p.dirty = false;
  }
  if (offsets->cnt > 0) {
    const auto err = rd_kafka_commit(consumer_.get(), offsets, synchronous ? 0 : 1);
    commits_.fetch_add(1, std::memory_order_relaxed);
    if (synchronous && err && err != RD_KAFKA_RESP_ERR__NO_OFFSET) on_commit_result(err, offsets);
  }
  rd_kafka_topic_partition_list_destroy(offsets);
}

void partition_control::on_commit_result(rd_kafka_resp_err_t err, const rd_kafka_topic_partition_list_t* offsets) {
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR__NO_OFFSET || offsets == nullptr) return;
  auto& all = work_.partitions();
  for (int i = 0; i < offsets->cnt; ++i) {
    const auto& e = offsets->elems[i];
    const auto it = all.find({e.topic, e.partition});
    if (it != all.end() && it->second.commit_next == e.offset) it->second.dirty = true;
  }
  log(log_level::warn, "worker: offset commit failed, will retry: " + kafka_error_text(err));
}

void partition_control::set_paused(partition_work& p, bool pause) {
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(list, p.topic.c_str(), p.partition);
  (void)(pause ? rd_kafka_pause_partitions(consumer_.get(), list) : rd_kafka_resume_partitions(consumer_.get(), list));
  rd_kafka_topic_partition_list_destroy(list);
  p.paused = pause;
  if (!pause) wake_fetcher(p);
}

// librdkafka (2.0.2) notes a resume but its broker thread only looks again when something else
// wakes it: with every partition of that broker paused, that is up to a second later, and a
// drained window sits idle meanwhile (measured: key order fell to a third of its rate). A request
// to the partition's leader wakes that thread: one round trip, once per resume.
void partition_control::wake_fetcher(const partition_work& p) {
  std::int64_t low = 0, high = 0;
  (void)rd_kafka_query_watermark_offsets(consumer_.get(), p.topic.c_str(), p.partition, &low, &high, 200);
}

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
