#include "eventbus/store/inbox.hpp"

#include <libpq-fe.h>
#include <sqlite3.h>

#include <atomic>
#include <optional>
#include <stdexcept>
#include <vector>

#include "support/log.hpp"
#include "store/append_rules.hpp"

namespace eventbus {
namespace {

constexpr std::uint64_t prune_every = 1000;  // handled events between two prunes

std::int64_t now_millis() { return now_ms().time_since_epoch().count(); }

constexpr const char* sqlite_record_sql =
    "INSERT INTO eventbus_inbox (handler, event_id, handled_at_ms) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING";

// record_first's SQLite insert, prepared once on the store's writer connection and reset after each
// use (preparing it again for every event cost more than its execution). It is only used inside
// run_in_transaction, under the store's writer lock, so handlers on other threads never share it
// at once. Finalized before the inbox lets go of its store.
class sqlite_record_statement {
 public:
  sqlite_record_statement() = default;
  ~sqlite_record_statement() { sqlite3_finalize(stmt_); }
  sqlite_record_statement(const sqlite_record_statement&) = delete;
  sqlite_record_statement& operator=(const sqlite_record_statement&) = delete;

  /// The statement on `db`, prepared when it is not yet (or was for another connection); null
  /// when preparing fails (sqlite3_errmsg(db) says why; the next call tries again).
  sqlite3_stmt* on(sqlite3* db) {
    if (db_ != db || stmt_ == nullptr) {
      sqlite3_finalize(stmt_);
      stmt_ = nullptr;
      db_ = db;
      if (sqlite3_prepare_v2(db, sqlite_record_sql, -1, &stmt_, nullptr) != SQLITE_OK) {
        sqlite3_finalize(stmt_);
        stmt_ = nullptr;
      }
    }
    return stmt_;
  }

 private:
  sqlite3* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
};

// Records (handler, event_id) in the open transaction: false when it was there already.
result<bool> record_first(store_transaction& tx, sqlite_record_statement& sqlite_insert, const std::string& handler,
                          const std::string& event_id) {
  if (tx.sqlite() != nullptr) {
    sqlite3_stmt* insert = sqlite_insert.on(tx.sqlite());
    if (insert == nullptr)
      return error(errc::store_failed, std::string("sqlite: recording in the inbox: ") + sqlite3_errmsg(tx.sqlite()));
    sqlite3_bind_text(insert, 1, handler.data(), static_cast<int>(handler.size()), SQLITE_STATIC);
    sqlite3_bind_text(insert, 2, event_id.data(), static_cast<int>(event_id.size()), SQLITE_STATIC);
    sqlite3_bind_int64(insert, 3, now_millis());
    const int rc = sqlite3_step(insert);
    const bool inserted = rc == SQLITE_DONE && sqlite3_changes(tx.sqlite()) == 1;
    std::string why = rc == SQLITE_DONE ? "" : sqlite3_errmsg(tx.sqlite());
    sqlite3_reset(insert);  // ready for the next event, and no borrowed text left bound
    sqlite3_clear_bindings(insert);
    if (rc != SQLITE_DONE) return error(errc::store_failed, "sqlite: recording in the inbox: " + why);
    return inserted;
  }
  // On PostgreSQL the insert also takes the row's lock: a duplicate delivered at the same time
  // waits for this transaction, then finds the record.
  auto* conn = reinterpret_cast<PGconn*>(tx.postgres());
  const char* values[] = {handler.c_str(), event_id.c_str()};
  PGresult* r = PQexecParams(conn,
                             "INSERT INTO eventbus_inbox (handler, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING", 2,
                             nullptr, values, nullptr, nullptr, 0);
  const bool ok = r != nullptr && PQresultStatus(r) == PGRES_COMMAND_OK;
  const bool inserted = ok && std::string_view(PQcmdTuples(r)) == "1";
  std::string why = ok ? "" : PQerrorMessage(conn);
  PQclear(r);
  if (!ok) return error(errc::store_failed, "postgresql: recording in the inbox: " + why);
  return inserted;
}

// Deletes the record of (handler, event_id) in the open transaction: an event a batch handler
// marked failed was not applied.
result<void> forget(store_transaction& tx, const std::string& handler, const std::string& event_id) {
  if (tx.sqlite() != nullptr) {
    sqlite3_stmt* drop = nullptr;
    const bool ok =
        sqlite3_prepare_v2(tx.sqlite(), "DELETE FROM eventbus_inbox WHERE handler = ?1 AND event_id = ?2", -1, &drop,
                           nullptr) == SQLITE_OK &&
        sqlite3_bind_text(drop, 1, handler.data(), static_cast<int>(handler.size()), SQLITE_STATIC) == SQLITE_OK &&
        sqlite3_bind_text(drop, 2, event_id.data(), static_cast<int>(event_id.size()), SQLITE_STATIC) == SQLITE_OK &&
        sqlite3_step(drop) == SQLITE_DONE;
    sqlite3_finalize(drop);
    if (!ok) return error(errc::store_failed, std::string("sqlite: forgetting an inbox record: ") + sqlite3_errmsg(tx.sqlite()));
    return {};
  }
  auto* conn = reinterpret_cast<PGconn*>(tx.postgres());
  const char* values[] = {handler.c_str(), event_id.c_str()};
  PGresult* r = PQexecParams(conn, "DELETE FROM eventbus_inbox WHERE handler = $1 AND event_id = $2", 2, nullptr, values,
                             nullptr, nullptr, 0);
  const bool ok = r != nullptr && PQresultStatus(r) == PGRES_COMMAND_OK;
  PQclear(r);
  if (!ok) return error(errc::store_failed, std::string("postgresql: forgetting an inbox record: ") + PQerrorMessage(conn));
  return {};
}

// Deletes the records handled before `cutoff_ms` in the open transaction; how many.
result<std::uint64_t> delete_before(store_transaction& tx, std::int64_t cutoff_ms) {
  if (tx.sqlite() != nullptr) {
    sqlite3_stmt* drop = nullptr;
    const bool ok = sqlite3_prepare_v2(tx.sqlite(), "DELETE FROM eventbus_inbox WHERE handled_at_ms < ?1", -1, &drop,
                                       nullptr) == SQLITE_OK &&
                    sqlite3_bind_int64(drop, 1, cutoff_ms) == SQLITE_OK && sqlite3_step(drop) == SQLITE_DONE;
    sqlite3_finalize(drop);
    if (!ok) return error(errc::store_failed, std::string("sqlite: pruning the inbox: ") + sqlite3_errmsg(tx.sqlite()));
    return static_cast<std::uint64_t>(sqlite3_changes(tx.sqlite()));
  }
  auto* conn = reinterpret_cast<PGconn*>(tx.postgres());
  const std::string cutoff = std::to_string(cutoff_ms);
  const char* values[] = {cutoff.c_str()};
  PGresult* r = PQexecParams(conn, "DELETE FROM eventbus_inbox WHERE handled_at < to_timestamp($1::bigint / 1000.0)", 1,
                             nullptr, values, nullptr, nullptr, 0);
  const bool ok = r != nullptr && PQresultStatus(r) == PGRES_COMMAND_OK;
  const std::uint64_t removed = ok ? std::stoull(PQcmdTuples(r)) : 0;
  PQclear(r);
  if (!ok) return error(errc::store_failed, std::string("postgresql: pruning the inbox: ") + PQerrorMessage(conn));
  return removed;
}

}  // namespace

struct inbox::impl {
  std::shared_ptr<outbox_store> store;
  detail::checked_store* backend = nullptr;
  inbox_options options;
  std::atomic<std::uint64_t> duplicates{0};
  std::atomic<std::uint64_t> handled{0};
  sqlite_record_statement sqlite_insert;  // after `store`: finalized before the store may close

  result<std::uint64_t> prune() {
    std::uint64_t removed = 0;
    auto done = backend->run_in_transaction([&](store_transaction& tx) -> result<bool> {
      auto deleted = delete_before(tx, now_millis() - options.retention.count());
      if (!deleted) return deleted.error();
      removed = deleted.value();
      return true;
    });
    if (!done) return done.error();
    return removed;
  }
};

inbox::inbox(std::shared_ptr<outbox_store> store, inbox_options options) : impl_(std::make_unique<impl>()) {
  if (!store) throw exception(error(errc::invalid_argument, "must not be null", "store"));
  impl_->backend = dynamic_cast<detail::checked_store*>(store.get());
  if (impl_->backend == nullptr)
    throw exception(error(errc::invalid_argument, "an inbox needs a store opened by open_sqlite_store or open_postgres_store", "store"));
  if (options.retention.count() <= 0) throw exception(error(errc::invalid_argument, "must be positive", "retention"));
  impl_->store = std::move(store);
  impl_->options = std::move(options);
}

inbox::~inbox() = default;

handler_fn inbox::wrap(std::string handler_name, inbox_handler fn) {
  if (handler_name.empty()) throw exception(error(errc::invalid_argument, "must not be empty", "handler_name"));
  if (!fn) throw exception(error(errc::invalid_argument, "must not be empty", "fn"));
  if (impl_->options.metrics) impl_->options.metrics->count_inbox_duplicates(handler_name, 0);
  return [state = impl_.get(), name = std::move(handler_name), fn = std::move(fn)](const event& ev) {
    bool duplicate = false;
    auto done = state->backend->run_in_transaction([&](store_transaction& tx) -> result<bool> {
      auto first = record_first(tx, state->sqlite_insert, name, ev.event_id());
      if (!first) return first.error();
      if (!first.value()) {
        duplicate = true;
        return false;  // nothing to write: roll back
      }
      fn(ev, tx);  // throws: rolled back, and the worker retries
      return true;
    });
    if (!done) throw exception(done.error());  // the store failed: a failed call, retried
    if (duplicate) {
      state->duplicates.fetch_add(1, std::memory_order_relaxed);
      if (state->options.metrics) state->options.metrics->count_inbox_duplicates(name, 1);
      detail::log(log_level::debug, "inbox: " + name + " already applied " + ev.event_id() + ": skipped");
      return;
    }
    if (state->handled.fetch_add(1, std::memory_order_relaxed) % prune_every == prune_every - 1) {
      // Pruning is housekeeping: a failure is logged, never the handler's.
      auto pruned = state->prune();
      if (!pruned) detail::log(log_level::warn, "inbox: " + pruned.error().to_string());
    }
  };
}

batch_handler_fn inbox::wrap_batch(std::string handler_name, inbox_batch_handler fn) {
  if (handler_name.empty()) throw exception(error(errc::invalid_argument, "must not be empty", "handler_name"));
  if (!fn) throw exception(error(errc::invalid_argument, "must not be empty", "fn"));
  if (impl_->options.metrics) impl_->options.metrics->count_inbox_duplicates(handler_name, 0);
  return [state = impl_.get(), name = std::move(handler_name), fn = std::move(fn)](event_batch& batch) {
    std::optional<event_batch> fresh;
    std::vector<std::size_t> fresh_at;  // the index in `batch` of each fresh event
    std::uint64_t duplicates = 0;
    auto done = state->backend->run_in_transaction([&](store_transaction& tx) -> result<bool> {
      fresh.reset();
      fresh_at.clear();
      duplicates = 0;
      std::vector<event> events;
      for (std::size_t i = 0; i < batch.size(); ++i) {
        auto first = record_first(tx, state->sqlite_insert, name, batch[i].event_id());
        if (!first) return first.error();
        if (!first.value()) {
          ++duplicates;
          continue;
        }
        events.push_back(batch[i]);
        fresh_at.push_back(i);
      }
      if (events.empty()) return false;  // nothing to write: roll back
      fresh.emplace(std::move(events));
      fn(*fresh, tx);  // throws: rolled back, and the worker calls each event again alone
      for (std::size_t j = 0; j < fresh->size(); ++j) {
        // A failed event: the later events of its key were written in this transaction, and must
        // not stay applied before it. Everything goes back; the worker calls each event alone.
        if (fresh->outcome_of(j) == event_batch::outcome::failed) {
          if (fresh->size() == 1) throw std::runtime_error(fresh->reason_of(j));  // alone: its own error
          throw std::runtime_error("event " + (*fresh)[j].event_id() + " failed in a batch (" + fresh->reason_of(j) +
                                   "): the batch is rolled back");
        }
        // A dead-lettered one is not applied: a replay of its dead letter must run it.
        if (fresh->outcome_of(j) == event_batch::outcome::dead_letter)
          if (auto forgotten = forget(tx, name, (*fresh)[j].event_id()); !forgotten) return forgotten.error();
      }
      return true;
    });
    if (!done) throw exception(done.error());  // the store failed: the whole batch failed
    if (duplicates > 0) {
      state->duplicates.fetch_add(duplicates, std::memory_order_relaxed);
      if (state->options.metrics) state->options.metrics->count_inbox_duplicates(name, duplicates);
    }
    if (!fresh) return;
    std::size_t applied = 0;
    for (std::size_t j = 0; j < fresh->size(); ++j) {
      if (fresh->outcome_of(j) == event_batch::outcome::dead_letter)
        batch.dead_letter(fresh_at[j], fresh->reason_of(j));
      else
        ++applied;
    }
    const auto before = state->handled.fetch_add(applied, std::memory_order_relaxed);
    if (before / prune_every != (before + applied) / prune_every) {
      auto pruned = state->prune();
      if (!pruned) detail::log(log_level::warn, "inbox: " + pruned.error().to_string());
    }
  };
}

result<std::uint64_t> inbox::prune() { return impl_->prune(); }

std::uint64_t inbox::duplicates() const noexcept { return impl_->duplicates.load(std::memory_order_relaxed); }

}  // namespace eventbus
