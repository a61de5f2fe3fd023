// A transactional projection as its own process, for the test that kills it: it copies each
// event's position into table `seen` of the store's database, in the transaction that moves its
// checkpoint. Runs until killed (or SIGTERM).
//
//   projection_process sqlite:PATH|postgresql:DSN

#include <libpq-fe.h>
#include <sqlite3.h>

#include <cstdio>
#include <stdexcept>
#include <string>

#include "eventbus/stop_signal.hpp"
#include "eventbus/store/postgres_store.hpp"
#include "eventbus/store/projection.hpp"
#include "eventbus/store/sqlite_store.hpp"

int main(int argc, char** argv) {
  eventbus::watch_stop_signals();
  if (argc != 2) {
    std::fprintf(stderr, "usage: projection_process sqlite:PATH|postgresql:DSN\n");
    return 2;
  }
  const std::string where = argv[1];
  auto store = where.starts_with("sqlite:") ? eventbus::open_sqlite_store({.path = where.substr(7)})
                                            : eventbus::open_postgres_store({.dsn = where.substr(11)});
  eventbus::projection copy(store, {.name = "seen", .filter = {.page_size = 100}},
                            [](const eventbus::stored_event& e, eventbus::store_transaction& tx) {
                              const std::string position = std::to_string(e.position);
                              if (tx.sqlite() != nullptr) {
                                sqlite3_stmt* insert = nullptr;
                                if (sqlite3_prepare_v2(tx.sqlite(), "INSERT INTO seen (position) VALUES (?1)", -1, &insert,
                                                       nullptr) != SQLITE_OK)
                                  throw std::runtime_error(sqlite3_errmsg(tx.sqlite()));
                                sqlite3_bind_int64(insert, 1, e.position);
                                const int rc = sqlite3_step(insert);
                                sqlite3_finalize(insert);
                                if (rc != SQLITE_DONE) throw std::runtime_error(sqlite3_errmsg(tx.sqlite()));
                                return;
                              }
                              auto* conn = reinterpret_cast<PGconn*>(tx.postgres());
                              const char* values[] = {position.c_str()};
                              PGresult* r = PQexecParams(conn, "INSERT INTO seen (position) VALUES ($1::bigint)", 1, nullptr,
                                                         values, nullptr, nullptr, 0);
                              const bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
                              PQclear(r);
                              if (!ok) throw std::runtime_error(PQerrorMessage(conn));
                            });
  copy.start();
  std::puts("running");  // the test's SIGTERM waits for this: before main, it would kill us
  std::fflush(stdout);
  eventbus::wait_for_stop_signal();
  copy.stop();
  return 0;
}
