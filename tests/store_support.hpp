#pragma once
// The store backends the tests run against: a SQLite file in the test's working directory, and
// the throwaway PostgreSQL server that tests/pg_cluster.sh started (CTest fixture), in a database
// of the test's own (created empty; test binaries run side by side).

#include <libpq-fe.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>

#include "eventbus/store/postgres_store.hpp"
#include "eventbus/store/sqlite_store.hpp"

namespace eventbus::testing {

/// The DSN of the test server (EVENTBUS_PG_STATE/dsn, written by pg_cluster.sh start).
inline std::string postgres_dsn() {
  std::ifstream in(std::string(EVENTBUS_PG_STATE).append("/dsn"));  // append: GCC 12 misreports +
  std::string dsn;
  if (!std::getline(in, dsn) || dsn.empty())
    throw std::runtime_error("no PostgreSQL test server: run the tests through ctest (fixture postgres_server)");
  return dsn;
}

/// The DSN of test `name`'s database.
inline std::string postgres_dsn_of(const std::string& name) {
  std::string dsn = postgres_dsn();
  dsn.replace(dsn.find("dbname=postgres"), std::string("dbname=postgres").size(), "dbname=eb_" + name);
  return dsn;
}

/// The DSN of a database of its own for test `name`, created empty (tests run side by side).
inline std::string fresh_postgres_database(const std::string& name) {
  PGconn* conn = PQconnectdb(postgres_dsn().c_str());
  if (PQstatus(conn) != CONNECTION_OK) {
    const std::string why = PQerrorMessage(conn);
    PQfinish(conn);
    throw std::runtime_error("cannot reach the test PostgreSQL: " + why);
  }
  PQsetNoticeProcessor(conn, [](void*, const char*) {}, nullptr);
  const std::string db = "eb_" + name;
  PQclear(PQexec(conn, ("DROP DATABASE IF EXISTS " + db + " WITH (FORCE)").c_str()));
  PGresult* made = PQexec(conn, ("CREATE DATABASE " + db).c_str());
  const bool ok = PQresultStatus(made) == PGRES_COMMAND_OK;
  const std::string why = PQresultErrorMessage(made);
  PQclear(made);
  PQfinish(conn);
  if (!ok) throw std::runtime_error("cannot create test database " + db + ": " + why);
  return postgres_dsn_of(name);
}


/// A fresh SQLite file for this test (removed first, WAL files included).
inline std::string fresh_sqlite_path(const std::string& name) {
  const std::string path = name + ".db";
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);
  return path;
}

/// An empty store of the backend named ("sqlite" or "postgresql").
inline std::shared_ptr<outbox_store> fresh_store(const std::string& backend, const std::string& name,
                                                std::shared_ptr<metrics> m = nullptr) {
  if (backend == "sqlite") return open_sqlite_store({.path = fresh_sqlite_path(name), .metrics = std::move(m)});
  return open_postgres_store({.dsn = fresh_postgres_database(name), .metrics = std::move(m)});
}

/// Another store on the same database as fresh_store(backend, name) made (a second service instance).
inline std::shared_ptr<outbox_store> same_store(const std::string& backend, const std::string& name) {
  if (backend == "sqlite") return open_sqlite_store({.path = name + ".db"});
  return open_postgres_store({.dsn = postgres_dsn_of(name)});
}

}  // namespace eventbus::testing
