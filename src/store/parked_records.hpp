#pragma once
// Records a worker parked for a durable retry stage (retry_policy::durable_stages), kept in the
// store's database (table eventbus_parked): the record as consumed, its stage, when it is due,
// which handlers still have to run it, and why it failed. A row is written before the source
// record's offset may be committed, and deleted once the record succeeded or was dead-lettered,
// so a parked record survives the death of every worker. Keyed by (group, topic, partition,
// source offset): writing a record twice (a redelivery) writes nothing. Thread-safe (each write is
// one transaction on the store's write connection; reads use its reading connection).

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "eventbus/error.hpp"
#include "kafka/record_headers.hpp"

namespace eventbus {
class outbox_store;
}

namespace eventbus::detail {

class checked_store;

struct parked_record {
  std::string group{};
  std::string topic{};
  std::int32_t partition = -1;
  std::int64_t offset = -1;  // in the source topic
  std::string key{};
  bool null_key = false;
  std::string value{};  // empty when read without bytes
  bool null_value = false;
  record_headers headers{};
  /// 0: waiting behind an earlier parked record of its key, never tried since it was parked;
  /// n >= 1: failed, waiting out durable stage n (its delay is durable_stages[n - 1]).
  int stage = 0;
  std::int64_t due_ms = 0;  // wall clock, ms since the epoch; meaningful with stage >= 1
  std::vector<std::string> pending{};  // handlers still to run it; empty: every matching handler
  int attempts = 0;                    // calls so far, in-memory ones included
  std::string reason{};                // the last failure
  std::int64_t parked_ms = 0;          // when it was first parked
};

class parked_records {
 public:
  /// `store` must be one opened by open_sqlite_store or open_postgres_store, and with
  /// `for_writing` one that can take rows (not read-only, its schema migrated): errc::invalid_argument
  /// (field parking_store) naming the problem. Reads work on a store opened read-only.
  static result<std::shared_ptr<parked_records>> open(std::shared_ptr<outbox_store> store, bool for_writing = true);

  /// Writes `rows` in one transaction; a row already there (same position) is left as it is.
  [[nodiscard]] result<void> add(std::span<const parked_record> rows);
  /// A partition's parked records of `group`, in offset order; `with_bytes` false leaves value and
  /// headers out (what a listing or a worker's bookkeeping needs).
  [[nodiscard]] result<std::vector<parked_record>> of_partition(std::string_view group, std::string_view topic,
                                                                std::int32_t partition, bool with_bytes);
  /// One parked record with its bytes, if it is there.
  [[nodiscard]] result<std::optional<parked_record>> one(std::string_view group, std::string_view topic,
                                                         std::int32_t partition, std::int64_t offset);
  /// Sets stage, due time, pending handlers, attempts and reason of the row at `r`'s position.
  [[nodiscard]] result<void> reschedule(const parked_record& r);
  /// A position in the table.
  struct position {
    std::string topic;
    std::int32_t partition = -1;
    std::int64_t offset = -1;
  };
  /// In one transaction: writes `added` (as add), sets stage, due time, pending handlers, attempts
  /// and reason of the rows at `rescheduled`'s positions (as reschedule), deletes `removed` (rows
  /// of `group`). What a worker changes in one loop turn: one commit (one fsync) for all of it.
  [[nodiscard]] result<void> apply(std::string_view group, std::span<const parked_record> added,
                                   std::span<const parked_record> rescheduled, std::span<const position> removed);
  /// Deletes the row at that position (done: succeeded or dead-lettered).
  [[nodiscard]] result<void> remove(std::string_view group, std::string_view topic, std::int32_t partition,
                                    std::int64_t offset);
  /// Every parked record of `group` (every group's if empty; of `topic` only, unless empty),
  /// without bytes, in (group, topic, partition, offset) order; at most `limit`.
  [[nodiscard]] result<std::vector<parked_record>> list(std::string_view group, std::string_view topic,
                                                        std::size_t limit);

  explicit parked_records(std::shared_ptr<outbox_store> store, checked_store* backend)
      : store_(std::move(store)), backend_(backend) {}

 private:
  std::shared_ptr<outbox_store> store_;
  checked_store* backend_;
};

/// Headers as one byte string (a u32 count, then per header a u32 name length, the name, a u32
/// value length, the value; little-endian) and back. decode: nullopt when `bytes` is not that.
[[nodiscard]] std::string encode_headers(const record_headers& headers);
[[nodiscard]] std::optional<record_headers> decode_headers(std::string_view bytes);

}  // namespace eventbus::detail
