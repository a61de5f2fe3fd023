#pragma once
// What every backend checks and says the same way: the arguments of an append, a version conflict,
// and a stored row that no longer decodes.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "eventbus/error.hpp"
#include "eventbus/event.hpp"
#include "eventbus/metrics.hpp"
#include "eventbus/store/event_store.hpp"
#include "eventbus/store/inbox.hpp"

namespace eventbus::detail {

/// A stored time: milliseconds since the epoch, as both backends keep it.
[[nodiscard]] constexpr std::int64_t epoch_millis(time_point t) noexcept { return t.time_since_epoch().count(); }

/// Inside the backends an expected version is a number, with this for expected_version::any().
inline constexpr std::int64_t any_version = -1;
[[nodiscard]] constexpr std::int64_t raw_version(expected_version expected) noexcept {
  return expected.is_any() ? any_version : expected.version();
}

/// An aggregate named for a read: both parts non-empty and free of NUL bytes (a C string would end
/// there and name another aggregate).
[[nodiscard]] result<void> check_aggregate(std::string_view aggregate_type, std::string_view aggregate_id);

/// A read_all filter every backend takes: aggregate_id only with aggregate_type, no NUL bytes.
[[nodiscard]] result<void> check_filter(const read_filter& filter);

/// The events belong to the aggregate named, there is at least one, and the version is one append
/// accepts. Nothing touches the database before this passes.
[[nodiscard]] result<void> check_append(std::string_view aggregate_type, std::string_view aggregate_id,
                                        std::int64_t expected_version, std::span<const event> events);

/// errc::concurrency_conflict naming what was expected and what the aggregate is at.
[[nodiscard]] error version_conflict(std::string_view aggregate_type, std::string_view aggregate_id,
                                     std::int64_t expected, std::int64_t current);

/// errc::invalid_event: some ids of an append are stored and some not (a retry of another append).
[[nodiscard]] error partly_stored(std::size_t stored, std::size_t total);

/// A stored row back as a stored_event; errc::store_failed if its envelope no longer decodes.
[[nodiscard]] result<stored_event> stored_row(std::int64_t position, std::int64_t version, std::string_view envelope);

/// A snapshot save_snapshot takes: the aggregate named as check_aggregate wants, a version of 1 or
/// more, a state. Whether the version is stored is the backend's check (in its transaction).
[[nodiscard]] result<void> check_snapshot(const snapshot& s);

/// errc::invalid_argument (field "version"): the snapshot is ahead of the aggregate's events.
[[nodiscard]] error snapshot_ahead(const snapshot& s, std::int64_t stored_version);

/// One stored row with its outbox state, as copying a store moves it (store_copy.cpp).
struct copied_event {
  stored_event stored;  // position and version in the source
  std::int64_t stored_at_ms = 0;
  int published = 0;    // 0: the relay has yet to send it; 1: Kafka acknowledged it; 2: parked
  std::optional<std::string> parked_reason{};
};

/// What both backends do around an append: check the arguments, and count the outcome
/// (eventbus_store_appends_total: stored, already_stored, conflict, failed). The backend stores.
class checked_store : public outbox_store {
 public:
  explicit checked_store(std::shared_ptr<metrics> m) : metrics_(std::move(m)) {}

  using event_store::append;
  result<append_result> append(std::string_view aggregate_type, std::string_view aggregate_id,
                               expected_version expected, std::span<const event> events) final;
  std::uint64_t wait_for_append(std::uint64_t seen, std::chrono::milliseconds timeout) final;
  snapshot_store* snapshots() noexcept final { return this; }

  /// Runs `steps` in a write transaction on this store's own connection (an inbox's handler):
  /// committed when they return true; rolled back when they return false or an error (returned)
  /// or throw (rethrown). The store's writes wait meanwhile: `steps` must not call this store.
  virtual result<bool> run_in_transaction(const std::function<result<bool>(store_transaction&)>& steps) = 0;
  /// Runs `steps` on this store's reading connection (it writes nothing): what works on a store
  /// opened read-only. The store's reads wait meanwhile.
  virtual result<void> run_read(const std::function<result<void>(store_transaction&)>& steps) = 0;

  /// The migrations applied to this database, and how many this build has (a read-only open of an
  /// older store sees fewer: `eventbus store health` says so).
  virtual result<int> schema_version() = 0;
  virtual int schema_version_expected() const noexcept = 0;

  /// save_checkpoint inside a transaction of run_in_transaction (a projection whose rows and
  /// checkpoint commit together).
  virtual result<void> save_checkpoint_in(store_transaction& tx, std::string_view name, std::int64_t position) = 0;

  // --- copying a whole store (store_copy.cpp), between any two backends

  /// Rows after `after_position`, oldest first, with their outbox state.
  virtual result<std::vector<copied_event>> read_for_copy(std::int64_t after_position, std::size_t limit) = 0;
  /// Inserts `events` in order (each keeps its version and outbox state; positions are this
  /// store's), counts them into the backlog, and saves checkpoint `progress` = `source_position`:
  /// all in one transaction, so an interrupted copy resumes exactly after the last batch.
  virtual result<void> write_copy(std::span<const copied_event> events, std::string_view progress,
                                  std::int64_t source_position) = 0;
  /// The id of the newest event at or before `position`; none when there is none.
  virtual result<std::optional<std::string>> event_id_at_or_before(std::int64_t position) = 0;
  /// Where the event `event_id` is stored, if it is.
  virtual result<std::optional<std::int64_t>> position_of(std::string_view event_id) = 0;
  /// Up to `limit` snapshots after the aggregate (after_type, after_id), ordered by aggregate type
  /// then id (both empty: from the first).
  virtual result<std::vector<snapshot>> read_snapshots(std::string_view after_type, std::string_view after_id,
                                                       std::size_t limit) = 0;

 protected:
  /// The append itself, arguments already checked.
  virtual result<append_result> store_events(std::string_view aggregate_type, std::string_view aggregate_id,
                                             std::int64_t expected_version, std::span<const event> events) = 0;

 private:
  std::shared_ptr<metrics> metrics_;
  std::mutex appended_mu_;
  std::condition_variable appended_;
  std::uint64_t appends_ = 0;  // committed appends that stored something
};

}  // namespace eventbus::detail
