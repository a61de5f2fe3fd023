#pragma once
// A ledger for the inbox tests: accounts whose balances transfers move, written through an inbox
// transaction on either backend, with bound parameters.

#include <libpq-fe.h>
#include <sqlite3.h>

#include <stdexcept>
#include <string>

#include "eventbus/store/inbox.hpp"

namespace eventbus::testing {

/// Moves payload.amount from payload.from to payload.to, in the inbox's transaction.
inline void apply_transfer(const event& ev, store_transaction& tx) {
  const std::string from = ev.payload().at("from"), to = ev.payload().at("to");
  const long long amount = ev.payload().at("amount");
  for (const auto& [account, delta] : {std::pair{from, -amount}, std::pair{to, amount}}) {
    if (tx.sqlite() != nullptr) {
      sqlite3_stmt* move = nullptr;
      if (sqlite3_prepare_v2(tx.sqlite(), "UPDATE accounts SET balance = balance + ?1 WHERE id = ?2", -1, &move, nullptr) != SQLITE_OK)
        throw std::runtime_error(sqlite3_errmsg(tx.sqlite()));
      sqlite3_bind_int64(move, 1, delta);
      sqlite3_bind_text(move, 2, account.c_str(), -1, SQLITE_TRANSIENT);
      const int rc = sqlite3_step(move);
      sqlite3_finalize(move);
      if (rc != SQLITE_DONE) throw std::runtime_error(sqlite3_errmsg(tx.sqlite()));
    } else {
      auto* conn = reinterpret_cast<PGconn*>(tx.postgres());
      const std::string by = std::to_string(delta);
      const char* values[] = {by.c_str(), account.c_str()};
      PGresult* r = PQexecParams(conn, "UPDATE accounts SET balance = balance + $1::bigint WHERE id = $2", 2, nullptr, values,
                                 nullptr, nullptr, 0);
      const bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
      PQclear(r);
      if (!ok) throw std::runtime_error(PQerrorMessage(conn));
    }
  }
}

}  // namespace eventbus::testing
