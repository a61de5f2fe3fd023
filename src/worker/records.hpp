#pragma once
// The worker's record types, shared by the scheduler (work_scheduler.hpp), the timers, the record
// runner and the dead-letter writer: a consumed record, its handler runs, the lane and partition it
// belongs to. Plain data without Kafka: librdkafka's message is held opaque (detail/held_message.hpp),
// so everything that includes this compiles and tests without librdkafka.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "handlers/handler_registry.hpp"
#include "worker/held_message.hpp"
#include "eventbus/event.hpp"
#include "kafka/record_headers.hpp"
#include "worker/dead_letter.hpp"
#include "worker/finished_offsets.hpp"

namespace eventbus::detail {

using worker_clock = std::chrono::steady_clock;

/// A record as consumed, with what a dead letter copies from it. The worker holds librdkafka's
/// message and reads value and headers from it (no copy per record; headers are only parsed when
/// asked for); tests and fuzzing set owned_value and owned_headers instead. (records.cpp)
struct consumed_record {
  std::string topic;
  std::int32_t partition = -1;
  std::int64_t offset = -1;
  std::string key;
  held_message message;         // when set, value and headers come from it
  std::string owned_value;      // otherwise these
  record_headers owned_headers;
  bool null_key = false;    // Kafka's null, not an empty key: a dead letter and its replay keep it
  bool null_value = false;  // a tombstone

  /// The value; a tombstone's is empty, but never a null pointer.
  [[nodiscard]] std::string_view value() const noexcept;
  /// The last header called `name`, if any. Parses the message's headers on first use: one thread
  /// at a time (the worker hands a record from thread to thread, never shares it).
  [[nodiscard]] std::optional<std::string_view> header(std::string_view name) const;
  /// Every header, copied (for a dead letter).
  [[nodiscard]] record_headers headers() const;
  /// Copies value and headers out of the message and lets it go. For a record that will wait
  /// (in backoff, or behind one that is): a held message keeps librdkafka's whole fetch response
  /// alive, other partitions' records included. Only while no other thread reads the record.
  void own_bytes();
};

// parked: its in-memory attempts are spent and the worker has durable stages: the record is
// parked for it (worker/parking.hpp) rather than dead-lettered.
enum class handler_state { pending, succeeded, dead, parked };

// One handler's progress on one record: the state it reached, its attempts, when it may try again.
struct handler_progress {
  entry_ptr handler;
  handler_state state = handler_state::pending;
  int attempts = 0;
  std::string last_error{};
  std::string dead_letter_reason{};  // the outcome's reason when dead; empty: "handler-error"
  bool retries_exhausted = false;    // dead because its attempts were spent (attempt_outcome)
  worker_clock::time_point next_try{};
  bool dead_letter_sent = false;
};

struct lane;

// What a pool thread found on its pass over a record (published with release, so the consumer
// thread may read the record's state once it sees anything but `pending`).
enum class pass_state : std::uint8_t { pending, finished, needs_more };

// One consumed record, from the fetch until its offset may be committed.
struct record_job : consumed_record {
  std::optional<event> ev;
  std::optional<dead_letter_reason> bad;  // set when it cannot be handled (not decodable, too large)
  std::vector<handler_progress> handlers;      // touched by the pool only while it runs the record
  std::atomic<pass_state> pass{pass_state::pending};  // written by the pool once per batch pass
  bool running = false;                   // a retry attempt is on the pool
  bool abandoned = false;  // its partition was revoked: forget it, it will be redelivered
  bool finished = false;
  /// Its handlers overran handler_timeout and still run on a thread of their own: it was
  /// dead-lettered (reason timeout) without waiting, and nothing here may touch what that thread
  /// still reads (event, handlers, bytes). Freed when that thread lets go of it.
  bool hung = false;
  /// Its batch handlers are called with it alone: a batch call holding it overran
  /// handler_timeout, and only a call of one record can say which record hangs.
  bool call_alone = false;
  int dead_letters_outstanding = 0;
  lane* owner = nullptr;  // valid until finished or abandoned
  /// A parked record run from the store (worker/parking.hpp): no lane, no window; its durable
  /// stage (0: released from behind another, n: stage n).
  std::optional<int> parked_stage;
  int parked_attempts_added = 0;  // what its handlers' attempt counts were raised by for its run
  bool park_queued = false;       // parked, its row not written yet (worker.cpp flush_parking)

  /// Once finished, a record needs neither its event nor its bytes (no retry, no dead letter).
  void release_bytes() noexcept {
    if (hung) return;
    ev.reset();
    message.reset();
    std::string().swap(owned_value);
    handlers.clear();
  }
};
using job_ptr = std::shared_ptr<record_job>;

struct partition_work;

struct lane {
  std::string id;
  partition_work* partition = nullptr;
  std::deque<job_ptr> waiting;  // in offset order, not started
  job_ptr current;              // the record being retried or dead-lettered
  bool busy = false;            // a batch of it is on the pool, or `current` is set
  bool ready = false;           // in the scheduler's ready list
};

struct partition_work {
  std::string topic;
  std::int32_t partition = -1;
  std::deque<job_ptr> window;  // every fetched record not yet committable, in offset order
  std::unordered_map<std::string, lane> lanes;  // key and partition order: idle ones are kept (release)
  std::size_t lanes_after_sweep = 0;            // lanes left by the last sweep of idle ones
  std::size_t on_pool = 0;        // records of this partition in batches on the pool
  std::int64_t commit_next = -1;  // offset after the last committable record; -1: none yet
  std::int64_t first_seen = -1;   // offset of the first record received since the assignment
  /// Finished records above the commit point: by this worker, or by an earlier owner (read from
  /// the commit metadata at assignment; such records are skipped when they arrive).
  finished_offsets finished;
  bool dirty = false;             // commit point or finished set not committed yet
  bool paused = false;
  bool revoking = false;  // being revoked: start nothing new
  std::size_t tier = 0;   // its topic's priority tier: 0 is the most urgent (work_scheduler::tier_plan)
};
using partition_key = std::pair<std::string, std::int32_t>;

}  // namespace eventbus::detail
