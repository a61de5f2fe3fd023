#pragma once
// The outbox relay's reads: a batch of unpublished events as their Kafka records need them. Both
// stores read them from their columns without decoding the envelopes; decoding, and the small
// allocations of every decoded event freed again once sent, were most of the relay thread's
// time (`perf record` of store_bench --only relay). A user's own outbox's events are decoded
// (outbox::unpublished) and viewed.

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "eventbus/store/event_store.hpp"
#include "kafka/mirror_record.hpp"

namespace eventbus::detail {

class outbox_rows {
 public:
  outbox_rows() = default;
  outbox_rows(outbox_rows&&) noexcept = default;
  outbox_rows& operator=(outbox_rows&&) noexcept = default;
  outbox_rows(const outbox_rows&) = delete;  // a copy's views would be into the original's bytes
  outbox_rows& operator=(const outbox_rows&) = delete;

  struct row {
    std::int64_t position = 0;
    std::int64_t occurred_at_ms = 0;
    record_fields record;  // views into this batch
  };

  /// Adds a row read from a store's columns (`traceparent` unset: it is read from the envelope
  /// here), copying what the views show (an SQLite column's text lives until its next step).
  void add_stored(std::int64_t position, std::int64_t occurred_at_ms, record_fields columns);
  /// Adds a decoded event, kept with the batch.
  void add_decoded(stored_event stored);
  /// Once every row is added: the copied rows' views point into the batch's bytes from now on.
  void seal();
  void clear();
  /// The bytes kept for copied rows' fields (the buffer a cleared batch keeps for the next).
  [[nodiscard]] std::size_t bytes_capacity() const noexcept { return bytes_.capacity(); }

  [[nodiscard]] const std::vector<row>& rows() const noexcept { return rows_; }
  [[nodiscard]] bool empty() const noexcept { return rows_.empty(); }
  [[nodiscard]] std::size_t size() const noexcept { return rows_.size(); }

 private:
  // Where a copied row's fields are in bytes_, until seal(): appending may move the bytes.
  struct copied_at {
    std::size_t row;
    std::size_t offsets[8];  // event_id, event_type, aggregate_type, aggregate_id, value, correlation_id, traceparent, end
    bool has_correlation_id, has_traceparent;
  };
  std::vector<row> rows_;
  std::vector<char> bytes_;  // a vector: moving it keeps its elements where they are (views stay valid)
  std::vector<copied_at> copied_;
  std::vector<stored_event> decoded_;
};

/// An outbox that reads its unpublished events as rows, without decoding them.
class outbox_row_reader {
 public:
  virtual ~outbox_row_reader() = default;
  /// Up to `limit` unpublished events after `after_position`, oldest first, into `out` (cleared
  /// first, and sealed).
  [[nodiscard]] virtual result<void> unpublished_rows(std::size_t limit, std::int64_t after_position, outbox_rows& out) = 0;
  /// Drops a read made ahead of being asked, if the store makes them (PostgreSQL): the relay
  /// calls it before it waits (idle, standing by, Kafka down, stopping), so that no query stays
  /// open on the server meanwhile, holding a snapshot and its tables' locks.
  virtual void forget_read_ahead() noexcept {}
};

/// outbox_row_reader::forget_read_ahead, for any outbox (nothing for one that is not a reader).
void forget_read_ahead(outbox& store) noexcept;

/// The same from any outbox: through its outbox_row_reader when it is one, else decoded by
/// outbox::unpublished.
[[nodiscard]] result<void> read_unpublished_rows(outbox& store, std::size_t limit, std::int64_t after_position,
                                                 outbox_rows& out);

/// A first and last position, both included.
struct position_run {
  std::int64_t first = 0;
  std::int64_t last = 0;
};

/// The positions as runs of consecutive positions, in order (duplicates merged): a relay's batch
/// is mostly one run, marked by one range rather than one position at a time.
[[nodiscard]] std::vector<position_run> consecutive_runs(std::span<const std::int64_t> positions);

}  // namespace eventbus::detail
