#pragma once
// The SQLite event store: one file, WAL journal, for a service on one host (the embedded default).
//
// Durability (PRAGMA synchronous), chosen per store:
//   sqlite_durability::full    every commit is fsynced before append() returns: an appended event
//                              survives a crash of the process and of the machine (power loss).
//   sqlite_durability::normal  WAL without an fsync per commit: survives a crash of the process,
//                              but the last commits may be lost if the machine loses power.
//                              Several times more appends per second on most disks.
//
// Same transaction as your own rows: open your own connection to the same file, BEGIN, write your
// rows, call append_in_transaction(db, ...), COMMIT. Either both are stored or neither.

#include <chrono>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "eventbus/metrics.hpp"
#include "eventbus/store/event_store.hpp"

struct sqlite3;

namespace eventbus {

enum class sqlite_durability { full, normal };

struct sqlite_store_options {
  std::string path;  // the database file; created (with its tables) when missing
  sqlite_durability durability = sqlite_durability::full;
  std::chrono::milliseconds busy_timeout{5000};  // how long a write waits for another connection's
  std::shared_ptr<eventbus::metrics> metrics{};  // appends by outcome; none if null
  /// Reads an existing store and writes nothing: the file must exist and hold eventbus's tables
  /// (nothing is created or migrated); appends, marks and the relay lease fail with store_failed.
  /// What read-only tools (`eventbus store list|stats`) open.
  bool read_only = false;

  /// Throws eventbus::exception (errc::invalid_argument) naming the option.
  void validate() const;
};

/// Opens (creating and migrating as needed, unless read_only) the store. Throws eventbus::exception:
/// errc::invalid_argument for bad options, errc::store_failed when the file cannot be opened or
/// migrated, or (read_only) is missing or not an eventbus store.
///
/// A file deleted or replaced while the store has it open fails every later append, mark and
/// check() with store_failed (SQLite would otherwise write on into the unlinked file, and the
/// next open would start an empty store).
[[nodiscard]] std::shared_ptr<outbox_store> open_sqlite_store(const sqlite_store_options& options);

/// append() inside the caller's open transaction on `db`, a connection to a store's file (opened
/// once with open_sqlite_store, so its tables exist). The caller commits or rolls back.
[[nodiscard]] result<append_result> append_in_transaction(sqlite3* db, std::string_view aggregate_type,
                                                          std::string_view aggregate_id, expected_version expected,
                                                          std::span<const event> events);

}  // namespace eventbus
