#pragma once
// The PostgreSQL event store: several service instances share one database. Payloads are also kept
// as JSONB (queryable); the envelope is kept as written, so what is relayed is byte for byte what
// was appended.
//
// Appends take a transaction-level advisory lock, so positions become visible in commit order: a
// reader that follows positions never skips an event that commits late. The cost is that appends
// to one store run one at a time (each is one short transaction).
//
// Durability is the server's: with synchronous_commit on (its default) an appended event survives
// a crash of the server's machine.
//
// Same transaction as your own rows: on your own libpq connection, BEGIN, write your rows, call
// append_in_transaction(conn, ...), COMMIT.

#include <chrono>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "eventbus/metrics.hpp"
#include "eventbus/store/event_store.hpp"

struct pg_conn;

namespace eventbus {

struct postgres_store_options {
  /// libpq connection string or URI ("host=... dbname=... user=..." or "postgresql://..."). It may
  /// hold a password: eventbus never logs or prints it.
  std::string dsn;
  std::chrono::seconds connect_timeout{5};
  std::shared_ptr<eventbus::metrics> metrics{};  // appends by outcome; none if null
  /// Reads an existing store and writes nothing: the database must hold eventbus's tables (nothing
  /// is created or migrated) and every session is read-only. What `eventbus store list|stats` open.
  bool read_only = false;

  /// Throws eventbus::exception (errc::invalid_argument) naming the option.
  void validate() const;
};

/// Connects, creates and migrates the tables as needed (unless read_only). Throws eventbus::exception:
/// errc::invalid_argument for bad options, errc::store_failed when the server cannot be reached
/// or (read_only) the database holds no event store.
[[nodiscard]] std::shared_ptr<outbox_store> open_postgres_store(const postgres_store_options& options);

/// append() inside the caller's open transaction on `conn` (a connection to a database where a store
/// was opened once, so its tables exist). The caller commits or rolls back.
[[nodiscard]] result<append_result> append_in_transaction(pg_conn* conn, std::string_view aggregate_type,
                                                          std::string_view aggregate_id, expected_version expected,
                                                          std::span<const event> events);

}  // namespace eventbus
