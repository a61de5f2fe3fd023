#pragma once
// The event store: every event an aggregate ever emitted, in order, durable once append() returns.
//
//   #include <eventbus/store/sqlite_store.hpp>
//   auto store = eventbus::open_sqlite_store({.path = "orders.db"});
//   auto created = eventbus::make_event({.event_type = "order.created", .aggregate_type = "order", .aggregate_id = "o-42"});
//   auto appended = store->append("order", "o-42", eventbus::expected_version::none(), created);  // a new aggregate
//   if (!appended && appended.error().code() == eventbus::errc::concurrency_conflict) { /* reload, retry */ }
//   auto loaded = store->load("order", "o-42", 1, [](const eventbus::stored_event& e) {
//     std::cout << e.version << " " << e.ev.event_type() << "\n";   // apply it to your state
//     return true;                                                   // false stops
//   });
//
// Each event has a version within its aggregate (1, 2, 3, ...; unique with aggregate type and id)
// and a position in the whole store (increasing in commit order). Appends are atomic: all of a
// call's events are stored, or none. Reads stream page by page: reading ten million events holds
// one page in memory, never all of them.
//
// Two interfaces, for two clients: event_store is what a service uses (append, load, read_all,
// version_of); outbox is what the outbox_relay uses (the unpublished events, marking them, the relay
// lease). A backend's database is both at once, an outbox_store: the transactional outbox is the
// event table itself, so an event is stored and queued for Kafka in one transaction. It also keeps
// projections' checkpoints (checkpoint_store) and aggregates' snapshots (snapshot_store).
//
// Backends: open_sqlite_store (one file, one host) and open_postgres_store (several service
// instances sharing one database). Both return an outbox_store and are thread-safe.

#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "eventbus/error.hpp"
#include "eventbus/event.hpp"

namespace eventbus {

class snapshot_store;

/// The version append() expects an aggregate to be at before the new events (optimistic
/// concurrency): none() for a new aggregate, exactly(n) after loading version n, any() to skip the
/// check (the events go after whatever the aggregate holds: what a dispatcher with a store does).
class expected_version {
 public:
  [[nodiscard]] static constexpr expected_version none() noexcept { return expected_version(0); }
  [[nodiscard]] static constexpr expected_version any() noexcept { return expected_version(any_); }
  /// Throws eventbus::exception (errc::invalid_argument) for a negative version.
  [[nodiscard]] static constexpr expected_version exactly(std::int64_t version) {
    if (version < 0)
      throw exception(error(errc::invalid_argument, "must be >= 0, got " + std::to_string(version), "expected_version"));
    return expected_version(version);
  }

  [[nodiscard]] constexpr bool is_any() const noexcept { return version_ == any_; }
  /// The version expected; 0 for none(). Precondition: !is_any().
  [[nodiscard]] constexpr std::int64_t version() const noexcept { return version_; }
  friend constexpr bool operator==(expected_version, expected_version) noexcept = default;

 private:
  static constexpr std::int64_t any_ = -1;
  constexpr explicit expected_version(std::int64_t v) noexcept : version_(v) {}
  std::int64_t version_;
};

/// The largest Kafka record (envelope, key and headers) an event may make for append() to store it:
/// it still fits librdkafka's default message.max.bytes (1,000,000) with room for framing, so the
/// relay can always publish it.
inline constexpr std::size_t max_stored_event_bytes = 900 * 1024;

struct stored_event {
  std::int64_t position = 0;  // in the whole store, from 1, in commit order
  std::int64_t version = 0;   // within its aggregate, from 1
  event ev;
};

struct append_result {
  std::int64_t first_position = 0;
  std::int64_t last_position = 0;
  std::int64_t version = 0;     // the aggregate's version after the append
  bool already_stored = false;  // every event_id was stored before: an idempotent retry, nothing written
};

/// What read_all() reads: events after a position, or from a time, optionally of one type or
/// aggregate type only.
struct read_filter {
  std::int64_t after_position = 0;            // positions > this
  std::optional<time_point> from_time{};      // event timestamps >= this
  std::optional<std::string> event_type{};    // exactly this type
  std::optional<std::string> aggregate_type{};
  std::optional<std::string> aggregate_id{};  // with aggregate_type
  std::size_t page_size = 500;                // rows fetched per query
};

/// The outbox's backlog: events stored and not yet acknowledged by Kafka.
struct outbox_backlog {
  std::int64_t events = 0;
  std::optional<time_point> oldest{};  // stored time of the oldest one
  std::int64_t parked = 0;             // events Kafka refused for good, kept out of the backlog (park())
};

/// Receives one event at a time; return false to stop.
using stored_event_visitor = std::function<bool(const stored_event&)>;

/// What a service reads and writes. Thread-safe.
class event_store {
 public:
  virtual ~event_store() = default;

  /// Stores `events` (all of aggregate_type/aggregate_id, in order) after version `expected`,
  /// atomically.
  /// errc::concurrency_conflict when the aggregate is at another version (the message names it);
  /// an append whose event ids are all stored already is a successful no-op (already_stored);
  /// errc::invalid_event for events of another aggregate, whose Kafka record would be over
  /// max_stored_event_bytes or whose topic (app.<aggregate_type>.<event_type>) Kafka would refuse,
  /// or some ids stored and some not;
  /// errc::store_failed when the database refuses (read-only, gone, full): nothing was stored.
  [[nodiscard]] virtual result<append_result> append(std::string_view aggregate_type, std::string_view aggregate_id,
                                                     expected_version expected, std::span<const event> events) = 0;
  /// One event.
  [[nodiscard]] result<append_result> append(std::string_view aggregate_type, std::string_view aggregate_id,
                                             expected_version expected, const event& ev) {
    return append(aggregate_type, aggregate_id, expected, std::span<const event>(&ev, 1));
  }
  /// A few events written in place: append(type, id, expected_version::none(), {created, paid}).
  [[nodiscard]] result<append_result> append(std::string_view aggregate_type, std::string_view aggregate_id,
                                             expected_version expected, std::initializer_list<event> events) {
    return append(aggregate_type, aggregate_id, expected, std::span<const event>(events.begin(), events.size()));
  }

  /// The aggregate's events with version >= from_version, in version order.
  [[nodiscard]] virtual result<void> load(std::string_view aggregate_type, std::string_view aggregate_id,
                                          std::int64_t from_version, const stored_event_visitor& fn) = 0;

  /// Events matching `filter`, in position order, a page at a time.
  [[nodiscard]] virtual result<void> read_all(const read_filter& filter, const stored_event_visitor& fn) = 0;

  /// The aggregate's current version (0 when it has no events).
  [[nodiscard]] virtual result<std::int64_t> version_of(std::string_view aggregate_type, std::string_view aggregate_id) = 0;

  /// The position of the newest event in the store (0 when it is empty).
  [[nodiscard]] virtual result<std::int64_t> last_position() = 0;

  /// Waits until an append through this store object commits something new after `seen` (what an
  /// earlier call returned; 0 at first), or `timeout` passes; returns the count of appends so far.
  /// What wakes a projection at once in the same process. Appends by other processes or other
  /// store objects are not seen here: read the store to find them (a projection polls).
  [[nodiscard]] virtual std::uint64_t wait_for_append(std::uint64_t seen, std::chrono::milliseconds timeout);

  /// A cheap round trip to the database: what a readiness probe asks.
  [[nodiscard]] virtual result<void> check() = 0;
  /// "sqlite" or "postgresql".
  [[nodiscard]] virtual std::string_view backend() const noexcept = 0;

  /// Where this store keeps aggregates' snapshots (aggregate.hpp reads and takes them there), in
  /// its own database; nullptr for a store that keeps none. Both backends keep them: the store
  /// itself, living as long as it does.
  [[nodiscard]] virtual snapshot_store* snapshots() noexcept { return nullptr; }
};

/// What the outbox_relay reads and writes: the stored events not yet acknowledged by Kafka.
/// Thread-safe.
class outbox {
 public:
  virtual ~outbox() = default;

  /// Up to `limit` unpublished events after `after_position`, oldest position first.
  [[nodiscard]] virtual result<std::vector<stored_event>> unpublished(std::size_t limit, std::int64_t after_position = 0) = 0;
  /// Marks these positions published (acknowledged by Kafka).
  [[nodiscard]] virtual result<void> mark_published(std::span<const std::int64_t> positions) = 0;
  /// Takes these unpublished positions out of the backlog for good, keeping `reason` with them: the
  /// cluster refused their records themselves (too large for it, invalid), which no retry fixes.
  /// They stay stored (load, read_all and `eventbus store replay` see them) and are counted in
  /// backlog().parked.
  [[nodiscard]] virtual result<void> park(std::span<const std::int64_t> positions, std::string_view reason) = 0;
  [[nodiscard]] virtual result<outbox_backlog> backlog() = 0;
  /// One relay at a time per store, so events leave in store order: true when `owner` holds the
  /// relay lease now (taken, or renewed for `ttl`). A relay that dies loses it after `ttl` at most.
  [[nodiscard]] virtual result<bool> hold_relay_lease(std::string_view owner, std::chrono::milliseconds ttl) = 0;
  /// Gives the lease up (a relay that stops), so another instance takes over at once.
  virtual void release_relay_lease(std::string_view owner) noexcept = 0;

  /// "sqlite" or "postgresql".
  [[nodiscard]] virtual std::string_view backend() const noexcept = 0;
};

/// Where a projection keeps how far it got: one named position per projection, in the store's database.
struct checkpoint {
  std::string name;
  std::int64_t position = 0;  // events up to this position are handled
  time_point saved_at{};
};

/// Named checkpoints, for projections (projection.hpp). Thread-safe.
class checkpoint_store {
 public:
  virtual ~checkpoint_store() = default;
  /// The position saved under `name`, 0 when there is none.
  [[nodiscard]] virtual result<std::int64_t> load_checkpoint(std::string_view name) = 0;
  /// Saves `position` under `name` (0 resets it: the projection starts over).
  [[nodiscard]] virtual result<void> save_checkpoint(std::string_view name, std::int64_t position) = 0;
  /// Every checkpoint, by name.
  [[nodiscard]] virtual result<std::vector<checkpoint>> checkpoints() = 0;
};

/// An aggregate's state saved at one of its versions, so that loading it reads only the events
/// after that version (aggregate.hpp takes and reads them; the state is the aggregate's own JSON).
struct snapshot {
  std::string aggregate_type;
  std::string aggregate_id;
  std::int64_t version = 0;         // the state is the fold of the aggregate's events 1..version
  std::int64_t schema_version = 0;  // the shape of `state`: a reader of another shape ignores it
  std::string state;                // JSON text, stored as is
  time_point taken_at{};            // save_snapshot: now when left at the epoch
};

/// The newest snapshot of each aggregate, in the store's database. Thread-safe.
class snapshot_store {
 public:
  virtual ~snapshot_store() = default;
  /// Keeps `s` as its aggregate's snapshot, replacing the one kept unless that one is of the same
  /// schema_version and at a higher version (a slower writer's older state never replaces a newer
  /// one; a snapshot of another schema version always does, so that a new shape takes over).
  /// True when `s` was kept; false when the newer one stayed.
  /// errc::invalid_argument when s.version is below 1 or above the aggregate's stored version (a
  /// snapshot is never ahead of the events: field "version"), for an empty state, an empty aggregate
  /// type or id, or one holding a NUL byte; errc::store_failed when the database refuses (a store opened
  /// read_only always does).
  [[nodiscard]] virtual result<bool> save_snapshot(const snapshot& s) = 0;
  /// The aggregate's snapshot, none when it has none.
  [[nodiscard]] virtual result<std::optional<snapshot>> load_snapshot(std::string_view aggregate_type,
                                                                      std::string_view aggregate_id) = 0;
};

/// One database that is all four: an event store that is its own outbox (what is stored is sent,
/// in the same transaction's commit), and where projections keep their checkpoints and
/// aggregates their snapshots. What open_sqlite_store and
/// open_postgres_store return; it converts to each interface.
class outbox_store : public event_store, public outbox, public checkpoint_store, public snapshot_store {
 public:
  /// One name for both interfaces' backend().
  [[nodiscard]] std::string_view backend() const noexcept override = 0;
};

}  // namespace eventbus
