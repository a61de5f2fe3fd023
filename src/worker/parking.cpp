// The worker's memory of its parked records (parking.hpp).

#include "worker/parking.hpp"

#include <utility>

namespace eventbus::detail {

result<void> parking::load(const std::string& topic, std::int32_t partition) {
  auto rows = rows_->of_partition(group_, topic, partition, false);
  if (!rows) return rows.error();
  const partition_key p{topic, partition};
  partitions_[p].clear();  // held from here on
  for (const auto& row : rows.value()) note(p, row);
  return {};
}

void parking::forget(const partition_key& p) { partitions_.erase(p); }

const parking::parked_key* parking::find_key(const partition_key& p, const std::string& key) const {
  const auto part = partitions_.find(p);
  if (part == partitions_.end()) return nullptr;
  const auto k = part->second.find(key);
  return k == part->second.end() ? nullptr : &k->second;
}

parking::parked_key* parking::find_key(const partition_key& p, const std::string& key) {
  return const_cast<parked_key*>(std::as_const(*this).find_key(p, key));
}

parking::arrival parking::on_arrival(const partition_key& p, const std::string& key, std::int64_t offset) const {
  const parked_key* k = find_key(p, key);
  if (k == nullptr || k->entries.empty()) return arrival::runs;
  const auto& entries = k->entries;
  if (offset <= entries.back().offset) return arrival::finished_before;  // parked already, or done before the first
  return arrival::park_behind;
}

void parking::note(const partition_key& p, const parked_record& row, bool written) {
  const auto part = partitions_.find(p);
  if (part == partitions_.end()) return;  // not ours (any more): its next owner reads the rows
  auto& k = part->second[row.key];
  if (!k.entries.empty() && row.offset <= k.entries.back().offset) return;  // already noted
  k.entries.push_back({.offset = row.offset, .stage = row.stage, .due_ms = row.due_ms, .attempts = row.attempts,
                       .pending = row.pending, .written = written});
  if (written && k.entries.size() == 1 && !k.running) schedule(p, row.key, row.stage == 0 ? 0 : row.due_ms);
}

void parking::written(const partition_key& p, const std::string& key, std::int64_t offset) {
  parked_key* k = find_key(p, key);
  if (k == nullptr) return;
  auto& entries = k->entries;
  for (auto e = entries.rbegin(); e != entries.rend(); ++e) {  // the newest are last: written in order
    if (e->offset != offset) continue;
    e->written = true;
    if (&*e == &entries.front() && !k->running) schedule(p, key, e->stage == 0 ? 0 : e->due_ms);
    return;
  }
}

void parking::schedule(const partition_key& p, const std::string& key, std::int64_t due_ms) {
  due_.emplace(due_ms, std::make_pair(p, key));
}

std::vector<parking::head> parking::take_due(std::int64_t now_ms, std::size_t at_most) {
  std::vector<head> due;
  while (due.size() < at_most && !due_.empty() && due_.begin()->first <= now_ms) {
    auto [p, key] = std::move(due_.begin()->second);
    due_.erase(due_.begin());
    parked_key* k = find_key(p, key);
    if (k == nullptr || k->entries.empty() || k->running) continue;
    const entry& first = k->entries.front();
    if (!first.written) continue;  // scheduled again once its row is in the store
    if (first.stage > 0 && first.due_ms > now_ms) continue;  // an older due time: its own entry comes later
    k->running = true;
    due.push_back({.partition = p, .key = key, .offset = first.offset, .stage = first.stage, .attempts = first.attempts,
                   .pending = first.pending});
  }
  return due;
}

std::optional<std::int64_t> parking::next_due() const {
  if (due_.empty()) return std::nullopt;
  return due_.begin()->first;
}

parking::parked_key* parking::running_head(const partition_key& p, const std::string& key, std::int64_t offset) {
  parked_key* k = find_key(p, key);
  if (k == nullptr || !k->running || k->entries.empty() || k->entries.front().offset != offset) return nullptr;
  return k;
}

void parking::head_done(const partition_key& p, const std::string& key, std::int64_t offset) {
  parked_key* k = running_head(p, key, offset);
  if (k == nullptr) return;
  k->running = false;
  k->entries.pop_front();
  if (k->entries.empty()) {
    partitions_[p].erase(key);
    return;
  }
  auto& next = k->entries.front();
  next.stage = 0;  // a follower: one attempt now, whatever it was before
  if (next.written) schedule(p, key, 0);
}

void parking::head_again(const partition_key& p, const std::string& key, const parked_record& row) {
  parked_key* k = running_head(p, key, row.offset);
  if (k == nullptr) return;
  k->running = false;
  auto& first = k->entries.front();
  first.stage = row.stage;
  first.due_ms = row.due_ms;
  first.attempts = row.attempts;
  first.pending = row.pending;
  schedule(p, key, row.due_ms);
}

void parking::head_retry_at(const partition_key& p, const std::string& key, std::int64_t offset, std::int64_t due_ms) {
  parked_key* k = running_head(p, key, offset);
  if (k == nullptr) return;
  k->running = false;
  k->entries.front().due_ms = due_ms;
  schedule(p, key, due_ms);
}

parking::counts parking::count(const std::string& topic) const {
  counts c;
  for (const auto& [p, ks] : partitions_) {
    if (!topic.empty() && p.first != topic) continue;
    for (const auto& [key, k] : ks) {
      if (k.entries.empty()) continue;
      ++c.keys;
      c.records += k.entries.size();
      const auto& first = k.entries.front();
      if (first.stage == 0 || k.running) continue;  // running now, or released from behind another: runs now
      if (c.oldest_due_ms == 0 || first.due_ms < c.oldest_due_ms) c.oldest_due_ms = first.due_ms;
    }
  }
  return c;
}

}  // namespace eventbus::detail
