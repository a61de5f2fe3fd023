#pragma once
// Moving a store: every event of one store into another, between any two backends (a service that
// outgrew its SQLite file takes its history to PostgreSQL, or a database is copied back to a file).
//
//   #include <eventbus/store/postgres_store.hpp>
//   #include <eventbus/store/sqlite_store.hpp>
//   #include <eventbus/store/store_copy.hpp>
//   #include <iostream>
//   int main() {
//     auto from = eventbus::open_sqlite_store({.path = "orders.db", .read_only = true});
//     auto to = eventbus::open_postgres_store({.dsn = "host=db dbname=orders user=app"});
//     auto copied = eventbus::copy_store(*from, *to);
//     if (!copied) { std::cerr << copied.error().to_string() << "\n"; return 1; }
//     std::cout << copied->events << " events copied\n";
//   }
//
// What moves: each event with its version, in position order (positions are the target's own,
// in the same order), with its outbox state (published, waiting for the relay, parked with its
// reason), each aggregate's snapshot (at the same version), and each projection's checkpoint,
// moved to the target position of the same event. A relay on the target sends exactly what the
// source's relay had not: nothing is lost, and only what the source relay sent during the copy
// goes twice (at least once, as ever).
//
// Resumable: each batch commits with the copy's own checkpoint ("eventbus.copy", the source
// position reached) in the target, so a copy interrupted (killed, limit reached, network gone)
// goes on where it stopped when run again. The target must be empty when a copy starts.

#include <cstdint>
#include <functional>
#include <iosfwd>

#include "eventbus/error.hpp"
#include "eventbus/store/event_store.hpp"

namespace eventbus {

struct store_copy_summary {
  std::uint64_t events = 0;       // copied by this call
  std::int64_t source_position = 0;  // the source position copied up to (all calls together)
  std::uint64_t snapshots = 0;    // aggregates' snapshots carried over (once every event is copied)
  std::uint64_t checkpoints = 0;  // projections' checkpoints carried over (once the copy is complete)
  bool complete = false;          // everything the source held when this call read it is in the target
};

struct store_copy_options {
  std::size_t batch_size = 1000;  // events per transaction in the target
  std::uint64_t limit = 0;        // stop after this many events (0: all); run again to go on
  /// Called after each batch with the running totals; none if empty.
  std::function<void(const store_copy_summary&)> progress{};
};

/// The checkpoint name a copy keeps its progress under, in the target. Names starting "eventbus."
/// are eventbus's own: projections may not take them.
inline constexpr std::string_view copy_checkpoint_name = "eventbus.copy";

/// The checkpoint name an import keeps its progress under, in the target.
inline constexpr std::string_view import_checkpoint_name = "eventbus.import";

/// Writes `from` as JSON lines (a backup): first one line per projection checkpoint,
/// {"checkpoint": NAME, "position": P}, then one per event in position order, {"position",
/// "version", "stored_at_ms", "published" (0 waiting, 1 published, 2 parked), "parked_reason",
/// "envelope"} with the envelope's exact bytes as a string. Returns the events written.
[[nodiscard]] result<std::uint64_t> export_store(outbox_store& from, std::ostream& out, const store_copy_options& options = {});

/// Reads what export_store wrote into `to`, as copy_store copies (same outbox states, checkpoints
/// moved to their events, resumable: "eventbus.import" holds the last source position imported,
/// and lines up to it are skipped when run again). errc::invalid_argument naming the line for a
/// line that is not one of export_store's, and for a target holding events no import started.
[[nodiscard]] result<store_copy_summary> import_store(std::istream& in, outbox_store& to, const store_copy_options& options = {});

/// Copies `from` into `to` (see the header comment). errc::invalid_argument when `to` already holds
/// events and no copy into it was started, or for stores not opened by open_sqlite_store or
/// open_postgres_store; the stores' errors (store_failed) as they come, everything committed
/// before them kept.
[[nodiscard]] result<store_copy_summary> copy_store(outbox_store& from, outbox_store& to, const store_copy_options& options = {});

}  // namespace eventbus
