#pragma once
// Durable retry stages (retry_policy::durable_stages): the worker's memory of what it parked.
//
// A record whose handlers spent their in-memory attempts is parked in the store (parked_records,
// stage 1, due after the first stage's delay) and finished in its source partition, so that
// partition's commits and window move on. Every later record of its key, the ones already
// fetched and the ones still to come, is parked behind it (stage 0) instead of running, so the
// key's order holds across the delay. When the head is due it runs once (only the handlers that
// failed it): success deletes it and the next record of the key runs at once (one attempt; if it
// fails it becomes the head at stage 1); failure moves it to the next stage; after the last stage
// it is dead-lettered and the key goes on.
//
// The rows are the truth; this is the owner's index of them, per assigned partition: key ->
// parked records in source-offset order (no bytes: a head's bytes are read when it runs). It is
// loaded when a partition is assigned, before any of its records is looked at, so the next owner
// (after a rebalance, or after every worker was SIGKILLed) continues exactly where the rows say.
//
// Consumer thread only.

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "store/parked_records.hpp"
#include "worker/records.hpp"

namespace eventbus::detail {

class parking {
 public:
  parking(std::shared_ptr<parked_records> rows, std::string group, std::vector<std::chrono::milliseconds> stages)
      : rows_(std::move(rows)), group_(std::move(group)), stages_(std::move(stages)) {}

  [[nodiscard]] parked_records& rows() noexcept { return *rows_; }
  [[nodiscard]] const std::string& group() const noexcept { return group_; }
  [[nodiscard]] std::size_t stage_count() const noexcept { return stages_.size(); }
  /// The delay of durable stage `stage` (1-based).
  [[nodiscard]] std::chrono::milliseconds delay_of(int stage) const { return stages_.at(static_cast<std::size_t>(stage - 1)); }

  /// Reads the partition's parked records (its owner's first step with it).
  [[nodiscard]] result<void> load(const std::string& topic, std::int32_t partition);
  /// The partition is no longer ours: forget its parked keys (their rows stay for the next owner).
  void forget(const partition_key& p);
  void forget_all() { partitions_.clear(); }

  /// What becomes of a fetched record: it runs, it is parked behind its key's parked records, or
  /// it is one of them already (a redelivery) or was finished before the key's first parked
  /// record (key order: nothing earlier of the key can be unfinished): finished at once.
  enum class arrival { runs, park_behind, finished_before };
  [[nodiscard]] arrival on_arrival(const partition_key& p, const std::string& key, std::int64_t offset) const;

  /// A record parked: noted as its key's last parked record, so the key's later records park
  /// behind it. `written` false: its row is not in the store yet; it does not run until
  /// written() says it is. Does nothing for a partition this worker does not hold.
  void note(const partition_key& p, const parked_record& row, bool written = true);
  /// The row of a record noted unwritten is in the store now.
  void written(const partition_key& p, const std::string& key, std::int64_t offset);

  /// Heads that are due (wall clock `now_ms`) and not running: marked running and returned.
  struct head {
    partition_key partition;
    std::string key;
    std::int64_t offset = -1;
    int stage = 0;
    int attempts = 0;
    std::vector<std::string> pending;
  };
  [[nodiscard]] std::vector<head> take_due(std::int64_t now_ms, std::size_t at_most);
  /// When the next head is due (wall clock ms); nullopt when none waits.
  [[nodiscard]] std::optional<std::int64_t> next_due() const;

  /// The running head of `key`, at `offset`, is done (its row deleted): the key's next parked
  /// record, if any, becomes the head, due at once. Each of these three does nothing unless the
  /// key's head is that record and running (an outcome that outlived a reload of the partition).
  void head_done(const partition_key& p, const std::string& key, std::int64_t offset);
  /// The running head failed and waits again: `row` holds its position, new stage, due time and pending.
  void head_again(const partition_key& p, const std::string& key, const parked_record& row);
  /// The running head could not run (its row could not be read): it is due again at `due_ms`.
  void head_retry_at(const partition_key& p, const std::string& key, std::int64_t offset, std::int64_t due_ms);

  [[nodiscard]] bool holds(const partition_key& p) const { return partitions_.contains(p); }
  /// Parked records and keys of `topic` (all topics if empty), and the earliest due time of a head
  /// that waits (0: none).
  struct counts {
    std::size_t records = 0, keys = 0;
    std::int64_t oldest_due_ms = 0;
  };
  [[nodiscard]] counts count(const std::string& topic = {}) const;

 private:
  struct entry {
    std::int64_t offset = -1;
    int stage = 0;
    std::int64_t due_ms = 0;
    int attempts = 0;
    std::vector<std::string> pending;
    bool written = true;  // its row is in the store (it may run)
  };
  struct parked_key {
    std::deque<entry> entries;  // source-offset order; the first is the head
    bool running = false;
  };
  using keys = std::unordered_map<std::string, parked_key>;
  void schedule(const partition_key& p, const std::string& key, std::int64_t due_ms);
  /// The key's entry in partition `p`, or null when the partition is not held or the key not known.
  parked_key* find_key(const partition_key& p, const std::string& key);
  const parked_key* find_key(const partition_key& p, const std::string& key) const;
  /// The key's entry when its head is the running record at `offset`, else null.
  parked_key* running_head(const partition_key& p, const std::string& key, std::int64_t offset);

  std::shared_ptr<parked_records> rows_;
  std::string group_;
  std::vector<std::chrono::milliseconds> stages_;
  std::map<partition_key, keys> partitions_;
  // Due times of heads, by wall clock: looked up lazily (an entry whose head moved on is skipped).
  std::multimap<std::int64_t, std::pair<partition_key, std::string>> due_;
};

}  // namespace eventbus::detail
