#pragma once
// Effects applied once: an inbox records (handler, event_id) in the store's database in the same
// transaction as the handler's own writes, so an event delivered again (a worker restarted before
// its commit, a relay that resent, a replay) changes nothing the second time.
//
//   #include <eventbus/store/inbox.hpp>
//   #include <eventbus/stop_signal.hpp>
//   #include <eventbus/store/sqlite_store.hpp>
//   #include <eventbus/kafka/worker.hpp>
//   #include <sqlite3.h>
//   int main() {
//     auto store = eventbus::open_sqlite_store({.path = "ledger.db"});
//     eventbus::inbox once(store);
//     eventbus::worker w({.group_id = "ledger"});
//     auto sub = w.subscribe("payment.received", "ledger", once.wrap("ledger", [](const eventbus::event& ev, eventbus::store_transaction& tx) {
//       sqlite3_stmt* credit = nullptr;  // the handler's own writes, on the transaction's connection
//       if (sqlite3_prepare_v2(tx.sqlite(), "UPDATE accounts SET balance = balance + ?1 WHERE id = ?2", -1, &credit, nullptr) != SQLITE_OK)
//         throw std::runtime_error(sqlite3_errmsg(tx.sqlite()));
//       sqlite3_bind_int64(credit, 1, ev.payload().value("amount", 0L));
//       sqlite3_bind_text(credit, 2, ev.aggregate_id().c_str(), -1, SQLITE_TRANSIENT);
//       const int rc = sqlite3_step(credit);
//       sqlite3_finalize(credit);
//       if (rc != SQLITE_DONE) throw std::runtime_error(sqlite3_errmsg(tx.sqlite()));  // rolled back, retried
//     }));
//     eventbus::watch_stop_signals();
//     w.start();
//     eventbus::wait_for_stop_signal();
//   }
//
// The wrapped function runs inside a transaction on the store's own connection: write with it
// (tx.sqlite() or tx.postgres()), never through another connection, or those writes are not part
// of the transaction. It commits when the function returns; when it throws, everything rolls back
// (the record included) and the exception goes on to the worker, which retries. A record older
// than `retention` is pruned: an event redelivered after that runs again.
//
// Cost: one more row written per event, and the handlers of one inbox take the store's write
// connection one at a time (on SQLite, as every write does; on PostgreSQL, per store object:
// open a store per inbox for handlers that write in parallel).

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "eventbus/error.hpp"
#include "eventbus/event.hpp"
#include "eventbus/handler.hpp"
#include "eventbus/kafka/event_batch.hpp"
#include "eventbus/metrics.hpp"
#include "eventbus/store/event_store.hpp"

struct sqlite3;
struct pg_conn;  // libpq's PGconn

namespace eventbus {

/// The open transaction an inbox handler writes with: one of the two is set, by the store's backend.
class store_transaction {
 public:
  store_transaction(sqlite3* sqlite, pg_conn* postgres) noexcept : sqlite_(sqlite), postgres_(postgres) {}
  /// The SQLite connection (SQLite stores), else nullptr.
  [[nodiscard]] sqlite3* sqlite() const noexcept { return sqlite_; }
  /// The PostgreSQL connection, a PGconn* (PostgreSQL stores), else nullptr.
  [[nodiscard]] pg_conn* postgres() const noexcept { return postgres_; }

 private:
  sqlite3* sqlite_;
  pg_conn* postgres_;
};

/// Receives the event and the transaction to write with; throwing rolls everything back.
using inbox_handler = std::function<void(const event&, store_transaction&)>;
/// The batch form: receives the events of a batch not applied before (duplicates are taken out)
/// and the one transaction to write them all with. Throwing rolls everything back (the whole batch
/// failed), and so does marking an event with fail(i) (later events of its key may be written
/// already); an event marked dead_letter(i) is not recorded, so it must have written nothing.
using inbox_batch_handler = std::function<void(event_batch& fresh, store_transaction&)>;

struct inbox_options {
  /// Records older than this are deleted (every 1,000 handled events, and by prune()).
  std::chrono::milliseconds retention = std::chrono::hours(24 * 7);
  /// eventbus_inbox_duplicates_total{handler}; none if null.
  std::shared_ptr<eventbus::metrics> metrics{};
};

class inbox {
 public:
  /// Throws eventbus::exception (errc::invalid_argument) for a null store, a store not opened by
  /// open_sqlite_store or open_postgres_store, or a retention that is not positive.
  explicit inbox(std::shared_ptr<outbox_store> store, inbox_options options = {});
  ~inbox();
  inbox(const inbox&) = delete;
  inbox& operator=(const inbox&) = delete;

  /// A handler (for a worker or a dispatcher) that runs `fn` at most once per event id for
  /// `handler_name` (use the name it is subscribed under): a duplicate is skipped and counted.
  /// Throws eventbus::exception (errc::invalid_argument) for an empty name or fn. The inbox must
  /// outlive the handler.
  [[nodiscard]] handler_fn wrap(std::string handler_name, inbox_handler fn);

  /// A worker's batch handler (worker::subscribe_batch) that runs `fn` once per batch, in one
  /// transaction, for the events not applied before by `handler_name`; duplicates are skipped
  /// and counted. Outcomes `fn` marks go back to the worker's batch. Same rules as wrap.
  [[nodiscard]] batch_handler_fn wrap_batch(std::string handler_name, inbox_batch_handler fn);

  /// Deletes records older than the retention; how many.
  [[nodiscard]] result<std::uint64_t> prune();

  /// Events skipped because their record was there, since this inbox was made.
  [[nodiscard]] std::uint64_t duplicates() const noexcept;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace eventbus
