#include "worker/work_scheduler.hpp"

#include <algorithm>
#include <iterator>

namespace eventbus::detail {

partition_work& work_scheduler::partition(const std::string& topic, std::int32_t partition) {
  auto [it, inserted] = partitions_.try_emplace({topic, partition});
  if (inserted) {
    it->second.topic = topic;
    it->second.partition = partition;
  }
  return it->second;
}

const std::string& work_scheduler::lane_id(const record_job& job, std::string& scratch) const {
  switch (order_) {
    case processing_order::key: return job.key;  // keyless records share the lane "": one after another
    case processing_order::partition: scratch.clear(); return scratch;
    case processing_order::unordered: break;
  }
  scratch = std::to_string(job.offset);
  return scratch;
}

void work_scheduler::add(partition_work& p, job_ptr job) {
  if (p.first_seen < 0) p.first_seen = job->offset;
  std::string scratch;
  auto [it, inserted] = p.lanes.try_emplace(lane_id(*job, scratch));
  lane& l = it->second;
  if (inserted) {
    l.id = it->first;
    l.partition = &p;
  }
  job->owner = &l;
  if (l.current) job->own_bytes();  // behind a record in backoff: it may wait a while (see own_bytes)
  p.window.push_back(job);
  l.waiting.push_back(std::move(job));
  if (l.ready)
    ++ready_records_;
  else if (!l.busy)
    make_ready(l);
}

void work_scheduler::make_ready(lane& l) {
  l.ready = true;
  ready_.push_back(&l);
  ready_records_ += l.waiting.size();
}

work_batch work_scheduler::take(std::size_t free_slots, std::size_t max_records) {
  work_batch batch;
  if (ready_.empty() || free_slots == 0) return batch;
  // Spread what is ready over the slots that can take it: few big batches when few lanes are
  // ready (one hand-off for many quick records), many small ones when many lanes are (slow
  // handlers of different keys side by side).
  const std::size_t slots = std::min(free_slots, ready_.size());
  const std::size_t target =
      std::clamp<std::size_t>((ready_records_ + slots - 1) / slots, 1, std::clamp<std::size_t>(max_records, 1, max_batch_));
  while (batch.jobs.size() < target && !ready_.empty()) {
    lane& l = *ready_.front();
    ready_.pop_front();
    l.ready = false;
    ready_records_ -= l.waiting.size();
    if (l.partition->revoking) continue;  // stays in its partition until forgotten
    const std::size_t n = std::min(l.waiting.size(), target - batch.jobs.size());
    const auto first = l.waiting.begin(), last = first + static_cast<std::ptrdiff_t>(n);
    batch.runs.push_back({.owner = &l, .begin = batch.jobs.size(), .end = batch.jobs.size() + n});
    batch.jobs.insert(batch.jobs.end(), std::make_move_iterator(first), std::make_move_iterator(last));
    l.waiting.erase(first, last);
    l.busy = true;
    l.partition->on_pool += n;
  }
  return batch;
}

void work_scheduler::release(lane& l) {
  l.busy = false;
  if (!l.waiting.empty()) return make_ready(l);
  auto& p = *l.partition;
  if (order_ == processing_order::unordered) {  // one record each: the lane never comes back
    p.lanes.erase(p.lanes.find(l.id));          // by iterator: the key lives in the element being erased
    return;
  }
  // A key's lane stays for its next record (a new one is a map node and a deque: several
  // allocations, the consumer thread's largest cost per record in a profile). Idle lanes are
  // swept when the partition holds many, and not again before the count doubles (so a partition
  // whose lanes all have work does not sweep on every release).
  if (p.lanes.size() > std::max(max_lanes_kept, 2 * p.lanes_after_sweep)) {
    std::erase_if(p.lanes, [](const auto& kv) {
      const lane& idle = kv.second;
      return !idle.busy && !idle.ready && idle.waiting.empty() && !idle.current;
    });
    p.lanes_after_sweep = p.lanes.size();
  }
}

void work_scheduler::finish(partition_work& p, record_job& job) {
  job.finished = true;
  job.owner = nullptr;
  job.release_bytes();
  p.finished.add(job.offset);
  p.dirty = true;
  advance_commit_point(p);
}

void work_scheduler::add_finished(partition_work& p, std::int64_t offset) {
  if (p.first_seen < 0) p.first_seen = offset;
  auto job = std::make_shared<record_job>();
  job->topic = p.topic;
  job->partition = p.partition;
  job->offset = offset;
  job->finished = true;
  p.window.push_back(std::move(job));
  advance_commit_point(p);
}

void work_scheduler::advance_commit_point(partition_work& p) {
  const auto before = p.commit_next;
  while (!p.window.empty() && p.window.front()->finished) {
    p.commit_next = p.window.front()->offset + 1;
    p.window.pop_front();
  }
  if (p.commit_next != before) {
    p.dirty = true;
    p.finished.drop_below(p.commit_next);
  }
}

void work_scheduler::forget(std::map<partition_key, partition_work>::iterator it) {
  partition_work& p = it->second;
  for (auto& job : p.window) job->abandoned = true;
  std::erase_if(ready_, [&](lane* l) {
    if (l->partition != &p) return false;
    ready_records_ -= l->waiting.size();
    return true;
  });
  partitions_.erase(it);
}

metrics::worker_load work_scheduler::load() const {
  metrics::worker_load load;
  for (const auto& [key, p] : partitions_) {
    load.in_flight += static_cast<std::int64_t>(p.on_pool);
    load.paused_partitions += p.paused ? 1 : 0;
    for (const auto& [id, l] : p.lanes) {
      if (l.current) ++load.in_flight;
      if (l.busy) load.waiting_on_key += static_cast<std::int64_t>(l.waiting.size());
    }
  }
  return load;
}

}  // namespace eventbus::detail
