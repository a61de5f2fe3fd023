#pragma once
// PostgreSQL helpers the store benchmarks share: each round starts from an empty store.

#include <libpq-fe.h>

#include <memory>
#include <string>

#include "eventbus/store/postgres_store.hpp"

namespace eventbus::bench {

/// Drops every table and function a store makes (the schema table too: the next open migrates afresh). One
/// list for every benchmark: a list that missed a table made the next round fail to migrate.
inline void drop_store_tables(PGconn* conn) {
  PQclear(PQexec(conn, "DROP TABLE IF EXISTS event_store, eventbus_outbox, eventbus_relay_lease, eventbus_outbox_state, "
                       "eventbus_checkpoints, eventbus_inbox, eventbus_snapshots, eventbus_parked, eventbus_schema"));
  PQclear(PQexec(conn, "DROP FUNCTION IF EXISTS eventbus_outbox_queue, eventbus_outbox_forget, eventbus_append_lock, "
                       "eventbus_append"));
}

/// A store on `dsn` with no events: its tables dropped, then made again by opening it.
inline std::shared_ptr<outbox_store> fresh_postgres(const std::string& dsn) {
  PGconn* conn = PQconnectdb(dsn.c_str());
  PQsetNoticeProcessor(conn, [](void*, const char*) {}, nullptr);
  drop_store_tables(conn);
  PQfinish(conn);
  return open_postgres_store({.dsn = dsn});
}

}  // namespace eventbus::bench
