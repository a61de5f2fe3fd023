#include "worker/work_scheduler.hpp"

#include <algorithm>
#include <iterator>

namespace eventbus::detail {

void work_scheduler::use_tiers(tier_plan plan) {
  tiers_.assign(std::max<std::size_t>(plan.count, 1), tier_queue{});
  tier_of_ = std::move(plan.tier_of);
  lower_share_percent_ = std::clamp<std::size_t>(plan.lower_share_percent, 1, 90);
}

partition_work& work_scheduler::partition(std::string_view topic, std::int32_t partition) {
  if (last_found_ != nullptr && last_found_->partition == partition && last_found_->topic == topic) return *last_found_;
  auto [it, inserted] = partitions_.try_emplace({std::string(topic), partition});
  if (inserted) {
    it->second.topic = topic;
    it->second.partition = partition;
    if (tier_of_) it->second.tier = std::min(tier_of_(it->second.topic), tiers_.size() - 1);
  }
  last_found_ = &it->second;
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
  ++tiers_[p.tier].unfinished;
  if (l.current) job->own_bytes();  // behind a record in backoff: it may wait a while (see own_bytes)
  p.window.push_back(job);
  l.waiting.push_back(std::move(job));
  if (l.ready)
    ++tiers_[p.tier].ready_records;
  else if (!l.busy)
    make_ready(l);
}

void work_scheduler::make_ready(lane& l) {
  l.ready = true;
  auto& t = tiers_[l.partition->tier];
  t.ready.push_back(&l);
  t.ready_records += l.waiting.size();
  ++ready_lanes_;
}

// The most urgent tier with ready lanes, unless a less urgent one with ready lanes is owed at
// least a record: then the one owed the most (so with three tiers, both lower ones get theirs).
work_scheduler::tier_choice work_scheduler::tier_to_serve() {
  std::size_t top = 0;
  while (tiers_[top].ready.empty()) ++top;  // has_ready(): one has
  std::size_t owed_most = top;
  for (std::size_t t = top + 1; t < tiers_.size(); ++t) {
    if (tiers_[t].unfinished == 0) tiers_[t].owed = 0;  // nothing of it waits: no debt carried over
    if (!tiers_[t].ready.empty() && tiers_[t].owed >= 1 && (owed_most == top || tiers_[t].owed > tiers_[owed_most].owed))
      owed_most = t;
  }
  return {.served = owed_most, .paying_debt = owed_most != top};
}

work_batch work_scheduler::take(std::size_t free_slots, std::size_t max_records) {
  work_batch batch;
  if (ready_lanes_ == 0 || free_slots == 0) return batch;
  const tier_choice choice = tiers_.size() == 1 ? tier_choice{} : tier_to_serve();
  auto& t = tiers_[choice.served];
  // Spread what is ready over the slots that can take it: few big batches when few lanes are
  // ready (one hand-off for many quick records), many small ones when many lanes are (slow
  // handlers of different keys side by side).
  const std::size_t slots = std::min(free_slots, t.ready.size());
  std::size_t limit = std::clamp<std::size_t>(max_records, 1, max_batch_);
  if (choice.paying_debt) limit = std::min(limit, static_cast<std::size_t>(t.owed));
  const std::size_t target = std::clamp<std::size_t>((t.ready_records + slots - 1) / slots, 1, std::max<std::size_t>(limit, 1));
  while (batch.jobs.size() < target && !t.ready.empty()) {
    lane& l = *t.ready.front();
    t.ready.pop_front();
    --ready_lanes_;
    l.ready = false;
    t.ready_records -= l.waiting.size();
    if (l.partition->revoking) continue;  // stays in its partition until forgotten
    const std::size_t n = std::min(l.waiting.size(), target - batch.jobs.size());
    const auto first = l.waiting.begin(), last = first + static_cast<std::ptrdiff_t>(n);
    batch.runs.push_back({.owner = &l, .begin = batch.jobs.size(), .end = batch.jobs.size() + n});
    batch.jobs.insert(batch.jobs.end(), std::make_move_iterator(first), std::make_move_iterator(last));
    l.waiting.erase(first, last);
    l.busy = true;
    l.partition->on_pool += n;
  }
  if (choice.paying_debt) {
    t.owed -= static_cast<double>(batch.jobs.size());
  } else {
    // Every less urgent tier with work not done is owed its share of what was taken here; bounded,
    // so a tier that could not take its share (its lanes busy) catches up by a batch at most.
    const double share = static_cast<double>(batch.jobs.size()) * static_cast<double>(lower_share_percent_) /
                         static_cast<double>(100 - lower_share_percent_);
    for (std::size_t lower = choice.served + 1; lower < tiers_.size(); ++lower)
      if (tiers_[lower].unfinished > 0)
        tiers_[lower].owed = std::min(tiers_[lower].owed + share, static_cast<double>(max_batch_));
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
  --tiers_[p.tier].unfinished;
  job.owner = nullptr;
  job.release_bytes();
  p.finished.add(job.offset);
  p.dirty = true;
  advance_commit_point(p);
  if (on_finished_) on_finished_(p);
}

void work_scheduler::collect_finished(work_batch& batch) {
  for (auto& run : batch.runs) {
    if (batch.jobs[run.begin]->abandoned) continue;  // revoked meanwhile: its lane is gone
    while (run.begin + run.reported < run.end &&
           batch.jobs[run.begin + run.reported]->pass.load(std::memory_order_acquire) == pass_state::finished) {
      record_job& job = *batch.jobs[run.begin + run.reported];
      finish(*job.owner->partition, job);
      ++run.reported;
    }
  }
}

void work_scheduler::settle(work_batch& batch, std::optional<std::size_t> hung, std::vector<held_record>& held) {
  collect_finished(batch);
  for (const auto& run : batch.runs) {
    if (batch.jobs[run.begin]->abandoned) continue;  // revoked meanwhile: the next owner gets them again
    lane& l = *run.owner;
    l.partition->on_pool -= run.end - run.begin;
    const std::size_t at = run.begin + run.reported;
    if (at == run.end) {
      release(l);
      continue;
    }
    const auto first = batch.jobs.begin() + static_cast<std::ptrdiff_t>(at);
    const auto end = batch.jobs.begin() + static_cast<std::ptrdiff_t>(run.end);
    const job_ptr& stopped_at = *first;
    const bool overran = hung && *hung == at;
    if (!overran && stopped_at->pass.load(std::memory_order_acquire) == pass_state::pending) {
      l.waiting.insert(l.waiting.begin(), first, end);  // never started
      release(l);
      continue;
    }
    l.waiting.insert(l.waiting.begin(), first + 1, end);
    l.current = stopped_at;
    // It and the lane's waiting records may wait for seconds: they stop holding fetch buffers.
    // (A record that overran is still read by its thread: it is dead-lettered as it is.)
    if (!overran) stopped_at->own_bytes();
    for (const auto& waiting : l.waiting) waiting->own_bytes();
    held.push_back({stopped_at, overran});
  }
}

void work_scheduler::finish_held(job_ptr job) {
  if (job->abandoned || job->running || job->dead_letters_outstanding > 0) return;
  if (!job->hung)  // a hung record's handlers belong to its thread; its dead letter covers them all
    for (const auto& run : job->handlers)
      if (run.state == handler_state::pending) return;
  lane& l = *job->owner;
  l.current.reset();
  finish(*l.partition, *job);
  release(l);
}

void work_scheduler::add_unlaned(partition_work& p, job_ptr job) {
  if (p.first_seen < 0) p.first_seen = job->offset;
  job->owner = nullptr;
  ++tiers_[p.tier].unfinished;
  p.window.push_back(std::move(job));
}

std::vector<job_ptr> work_scheduler::take_waiting(lane& l) {
  std::vector<job_ptr> taken(std::make_move_iterator(l.waiting.begin()), std::make_move_iterator(l.waiting.end()));
  l.waiting.clear();
  if (l.ready) {  // not while it holds a record, but kept exact in any case
    tiers_[l.partition->tier].ready_records -= taken.size();
  }
  for (auto& job : taken) job->owner = nullptr;
  return taken;
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
  last_found_ = nullptr;
  auto& t = tiers_[p.tier];
  for (auto& job : p.window) {
    job->abandoned = true;
    if (!job->finished) --t.unfinished;
  }
  std::erase_if(t.ready, [&](lane* l) {
    if (l->partition != &p) return false;
    t.ready_records -= l->waiting.size();
    --ready_lanes_;
    return true;
  });
  partitions_.erase(it);
}

void work_scheduler::forget(const std::set<partition_key>& keys) {
  for (auto it = partitions_.begin(); it != partitions_.end();) {
    const auto next = std::next(it);
    if (keys.count(it->first) > 0) forget(it);
    it = next;
  }
}

void work_scheduler::forget_all() {
  while (!partitions_.empty()) forget(partitions_.begin());
}

void work_scheduler::mark_revoking(const std::set<partition_key>& keys) {
  for (auto& [key, p] : partitions_)
    if (keys.count(key) > 0) p.revoking = true;
}

bool work_scheduler::busy(const partition_work& p) {
  if (p.on_pool > 0) return true;
  return std::any_of(p.lanes.begin(), p.lanes.end(), [](const auto& kv) {
    const auto& current = kv.second.current;
    return current && (current->running || current->dead_letters_outstanding > 0);
  });
}

bool work_scheduler::busy(const std::set<partition_key>& keys) const {
  return std::any_of(partitions_.begin(), partitions_.end(),
                     [&](const auto& kv) { return keys.count(kv.first) > 0 && busy(kv.second); });
}

bool work_scheduler::busy() const {
  return std::any_of(partitions_.begin(), partitions_.end(), [](const auto& kv) { return busy(kv.second); });
}

worker_load work_scheduler::load() const {
  worker_load load;
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
