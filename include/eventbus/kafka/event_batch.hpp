#pragma once
// Batch handlers for a worker: one call for many events, so a handler that writes to a database
// pays one round trip (one transaction) per batch instead of one per event.
//
// A batch is what the worker has ready at once for the handler, up to batch_options::max_events:
// events of several keys may share it, and each key's events come in offset order (each
// partition's, under processing_order::partition). The whole batch succeeds when the call returns;
// a call that throws fails it whole. A handler that knows which events failed says so with
// fail(i) (retried) or dead_letter(i) (never retried): the others succeed. Whatever failed in a
// batch, and every later event of its key in the worker's hand-off, is called again one event at
// a time (at once, as a batch of one, through the worker's middleware); from there the retry
// policy counts attempts, backs off and dead-letters as for any handler, and the key's later
// events wait for it. So a key's events still reach the handler in order (order is per handler:
// a record's other handlers do not wait for this one), and a poison event ends up alone.
//
//   #include <eventbus/kafka/worker.hpp>
//   eventbus::worker w({.group_id = "ledger", .topics = {"^app\\.order\\..*"}});
//   auto sub = w.subscribe_batch("order.created", "ledger-rows", [](eventbus::event_batch& batch) {
//     // one transaction for every event of the batch ...
//     for (std::size_t i = 0; i < batch.size(); ++i)
//       if (batch[i].aggregate_id().empty()) batch.dead_letter(i, "no aggregate id");
//   }, {.max_events = 100});
//
// What differs from a handler of one event: the worker's middleware wraps calls of one event only,
// so a batch handler on a worker with middleware is called one event at a time (batching would
// skip authorization or rate limits); events published in a call of several have no cause unless
// the handler opens an eventbus::cause_scope for the event at hand; a call past handler_timeout
// dead-letters none of its events (they are called again alone). docs/worker.md has the rest.

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "eventbus/event.hpp"
#include "eventbus/handler_options.hpp"

namespace eventbus {

class event_batch {
 public:
  /// What became of each event of a call.
  enum class outcome : unsigned char { succeeded, failed, dead_letter };

  explicit event_batch(std::vector<event> events)
      : events_(std::move(events)), outcomes_(events_.size(), outcome::succeeded), reasons_(events_.size()) {}
  // Marks on a copy would be lost: a batch is handed by reference, and only moved.
  event_batch(const event_batch&) = delete;
  event_batch& operator=(const event_batch&) = delete;
  event_batch(event_batch&&) noexcept = default;
  event_batch& operator=(event_batch&&) noexcept = default;

  [[nodiscard]] std::size_t size() const noexcept { return events_.size(); }
  [[nodiscard]] const event& operator[](std::size_t i) const { return events_.at(i); }
  [[nodiscard]] auto begin() const noexcept { return events_.cbegin(); }
  [[nodiscard]] auto end() const noexcept { return events_.cend(); }

  /// Event `i` failed (`why` is its error): it is called again, alone, and retried per the
  /// worker's retry policy. A dead_letter mark on it stays. Both throw std::out_of_range for an
  /// index past the batch (which fails the whole batch).
  void fail(std::size_t i, std::string why) {
    if (outcomes_.at(i) != outcome::dead_letter) mark(i, outcome::failed, std::move(why));
  }
  /// Event `i` can never succeed: dead-lettered without another call (as eventbus::permanent_error
  /// would be, with `why` as its error).
  void dead_letter(std::size_t i, std::string why) { mark(i, outcome::dead_letter, std::move(why)); }

  [[nodiscard]] outcome outcome_of(std::size_t i) const { return outcomes_.at(i); }
  [[nodiscard]] const std::string& reason_of(std::size_t i) const { return reasons_.at(i); }

 private:
  void mark(std::size_t i, outcome o, std::string why) {
    outcomes_.at(i) = o;
    reasons_[i] = std::move(why);
  }

  std::vector<event> events_;
  std::vector<outcome> outcomes_;
  std::vector<std::string> reasons_;
};

using batch_handler_fn = std::function<void(event_batch& batch)>;

struct batch_options {
  /// Events one call takes at most: 1..256.
  std::size_t max_events = 100;
  /// How long ready events may wait for more to fill a call, when fewer than max_events are
  /// ready: 0 (the default) hands over what is there at once; at most a minute. With several batch
  /// handlers the shortest wait applies, and single-event handlers of the worker wait with them.
  std::chrono::milliseconds max_wait{0};
  /// When set, the handler takes only the events this accepts (as handler_options::when).
  event_filter when{};
};

}  // namespace eventbus
