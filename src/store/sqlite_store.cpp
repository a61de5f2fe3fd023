// The SQLite backend: one writer connection and one reader connection on a WAL file, each behind
// its own mutex, so reads (streamed page by page) never wait for an append to commit.

#include "eventbus/store/sqlite_store.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <mutex>

#include "envelope/event_data.hpp"
#include "eventbus/time.hpp"
#include "store/append_rules.hpp"
#include "store/outbox_rows.hpp"
#include "store/relay_lease.hpp"

namespace eventbus {
namespace {

// Versioned migrations: each runs once, in order, in one transaction with its version bump.
constexpr const char* sqlite_migrations[] = {
    R"sql(
CREATE TABLE event_store (
  position          INTEGER PRIMARY KEY AUTOINCREMENT,  -- global order; never reused
  event_id          TEXT    NOT NULL UNIQUE,
  event_type        TEXT    NOT NULL,
  aggregate_type    TEXT    NOT NULL,
  aggregate_id      TEXT    NOT NULL,
  aggregate_version INTEGER NOT NULL,
  occurred_at_ms    INTEGER NOT NULL,                   -- the event's timestamp
  correlation_id    TEXT,
  causation_id      TEXT,
  envelope          TEXT    NOT NULL,                   -- the wire form, published as is
  stored_at_ms      INTEGER NOT NULL,
  published         INTEGER NOT NULL DEFAULT 0,         -- acknowledged by Kafka
  UNIQUE (aggregate_type, aggregate_id, aggregate_version)
);
CREATE INDEX event_store_by_type ON event_store (event_type, position);
CREATE INDEX event_store_by_time ON event_store (occurred_at_ms);
CREATE INDEX event_store_unpublished ON event_store (position) WHERE published = 0;
CREATE TABLE eventbus_relay_lease (
  id            INTEGER PRIMARY KEY CHECK (id = 1),
  owner         TEXT    NOT NULL,
  expires_at_ms INTEGER NOT NULL
);
)sql",
    // The relay lease judged by its renewals (see relay_lease.hpp), not by a wall-clock expiry
    // that each host computed with its own clock.
    R"sql(
ALTER TABLE eventbus_relay_lease RENAME COLUMN expires_at_ms TO renewed_at_ms;  -- for people; never judged
ALTER TABLE eventbus_relay_lease ADD COLUMN renewals INTEGER NOT NULL DEFAULT 0;
-- The outbox's backlog, kept as appends and marks go (in their transactions): reading it is one
-- row, where a COUNT over 200,000 unpublished rows asked every few ms slowed the relay five-fold.
CREATE TABLE eventbus_outbox_state (
  id          INTEGER PRIMARY KEY CHECK (id = 1),
  unpublished INTEGER NOT NULL,
  parked      INTEGER NOT NULL DEFAULT 0
);
INSERT INTO eventbus_outbox_state (id, unpublished) SELECT 1, COUNT(*) FROM event_store WHERE published = 0;
-- published = 2: parked (Kafka refused the record for good), with the reason.
ALTER TABLE event_store ADD COLUMN parked_reason TEXT;
)sql",
    // Projections' checkpoints: how far each got (projection.hpp).
    R"sql(
CREATE TABLE eventbus_checkpoints (
  name        TEXT    PRIMARY KEY,
  position    INTEGER NOT NULL,
  saved_at_ms INTEGER NOT NULL
);
)sql",
    // The inbox: which handler applied which event (inbox.hpp).
    R"sql(
CREATE TABLE eventbus_inbox (
  handler       TEXT    NOT NULL,
  event_id      TEXT    NOT NULL,
  handled_at_ms INTEGER NOT NULL,
  PRIMARY KEY (handler, event_id)
);
CREATE INDEX eventbus_inbox_by_time ON eventbus_inbox (handled_at_ms);
)sql",
    // Aggregates' snapshots, the newest one each (aggregate.hpp).
    R"sql(
CREATE TABLE eventbus_snapshots (
  aggregate_type TEXT    NOT NULL,
  aggregate_id   TEXT    NOT NULL,
  version        INTEGER NOT NULL,  -- the state folds the aggregate's events 1..version
  schema_version INTEGER NOT NULL,  -- the state's shape, the aggregate's own number
  state          TEXT    NOT NULL,  -- JSON
  taken_at_ms    INTEGER NOT NULL,
  PRIMARY KEY (aggregate_type, aggregate_id)
);
)sql",
    // Workers' records parked for a durable retry stage (worker/parking.hpp): each key's in
    // source-offset order, by group and partition.
    R"sql(
CREATE TABLE eventbus_parked (
  group_id      TEXT    NOT NULL,
  topic         TEXT    NOT NULL,
  partition     INTEGER NOT NULL,
  source_offset INTEGER NOT NULL,
  record_key    BLOB,                -- NULL: Kafka's null key
  value         BLOB,                -- NULL: a tombstone
  headers       BLOB    NOT NULL,
  stage         INTEGER NOT NULL,    -- 0: behind an earlier record of its key; n: in durable stage n
  due_at_ms     INTEGER NOT NULL,
  pending       TEXT    NOT NULL,    -- JSON array of handler names; [] = every matching handler
  attempts      INTEGER NOT NULL,
  reason        TEXT    NOT NULL,
  parked_at_ms  INTEGER NOT NULL,
  PRIMARY KEY (group_id, topic, partition, source_offset)
);
)sql",
    // The outbox in a table of its own: the positions Kafka has not acknowledged. Marking an
    // event published deletes its entry here; it used to rewrite the event's whole row (envelope
    // and all), which wrote every event to the WAL a second time and halved the relay's rate
    // (store_bench). Parked: parked_reason set. DROP COLUMN rewrites event_store once. Every
    // insert is queued by a trigger, so that an older eventbus still appending to the file
    // (which knows nothing of this table) cannot store events the relay never sends.
    R"sql(
CREATE TABLE eventbus_outbox (position INTEGER PRIMARY KEY);
INSERT INTO eventbus_outbox (position) SELECT position FROM event_store WHERE published = 0;
UPDATE event_store SET parked_reason = NULL WHERE published <> 2 AND parked_reason IS NOT NULL;
UPDATE event_store SET parked_reason = '' WHERE published = 2 AND parked_reason IS NULL;
UPDATE eventbus_outbox_state SET unpublished = (SELECT COUNT(*) FROM eventbus_outbox),
                                 parked = (SELECT COUNT(*) FROM event_store WHERE published = 2);
DROP INDEX IF EXISTS event_store_unpublished;
ALTER TABLE event_store DROP COLUMN published;
CREATE TRIGGER eventbus_outbox_queue AFTER INSERT ON event_store
BEGIN INSERT INTO eventbus_outbox (position) VALUES (new.position); END;
)sql",
};

// One prepared statement; reset (not finalized) between uses.
class statement {
 public:
  statement(sqlite3* db, const char* sql) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK) stmt_ = nullptr;
  }
  /// Also keeps why the first of several statements prepared together failed (a later success
  /// would clear the connection's message).
  statement(sqlite3* db, const char* sql, std::string& first_failure) : statement(db, sql) {
    if (stmt_ == nullptr && first_failure.empty()) first_failure = sqlite3_errmsg(db);
  }
  ~statement() { sqlite3_finalize(stmt_); }
  statement(const statement&) = delete;
  statement& operator=(const statement&) = delete;

  [[nodiscard]] bool ok() const noexcept { return stmt_ != nullptr; }
  statement& reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
    return *this;
  }
  statement& bind(int i, std::string_view text) {
    sqlite3_bind_text(stmt_, i, text.data(), static_cast<int>(text.size()), SQLITE_STATIC);
    return *this;
  }
  statement& bind(int i, const std::string& text) { return bind(i, std::string_view(text)); }
  statement& bind(int i, const std::optional<std::string>& text) {
    if (text) return bind(i, std::string_view(*text));
    sqlite3_bind_null(stmt_, i);
    return *this;
  }
  statement& bind(int i, std::int64_t n) {
    sqlite3_bind_int64(stmt_, i, n);
    return *this;
  }
  /// SQLITE_ROW, SQLITE_DONE or an error code.
  int step() { return sqlite3_step(stmt_); }
  /// Runs a statement that returns no rows and resets it, so that it holds nothing afterwards
  /// (one that got SQLITE_BUSY stays active for a retry otherwise). SQLITE_DONE, or the error
  /// code with the connection's message in `why` (read before the reset).
  int run_and_reset(sqlite3* db, std::string& why) {
    const int rc = sqlite3_step(stmt_);
    if (rc != SQLITE_DONE) why = sqlite3_errmsg(db);
    reset();
    return rc;
  }
  [[nodiscard]] std::int64_t integer(int col) const { return sqlite3_column_int64(stmt_, col); }
  [[nodiscard]] std::string_view text(int col) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    return p ? std::string_view(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col))) : std::string_view();
  }
  [[nodiscard]] bool is_null(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }

 private:
  sqlite3_stmt* stmt_ = nullptr;
};

// Resets a statement on every way out of a scope: one left on a row (or busy) holds its read
// snapshot open, and a later write on the connection fails as busy.
class reset_at_exit {
 public:
  explicit reset_at_exit(statement& st) : st_(st) {}
  ~reset_at_exit() { st_.reset(); }
  reset_at_exit(const reset_at_exit&) = delete;
  reset_at_exit& operator=(const reset_at_exit&) = delete;

 private:
  statement& st_;
};

error sqlite_failure(sqlite3* db, std::string_view what) {
  return {errc::store_failed, "sqlite: " + std::string(what) + ": " + sqlite3_errmsg(db)};
}

result<void> exec(sqlite3* db, const char* sql) {
  char* message = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &message) == SQLITE_OK) return {};
  error failure(errc::store_failed, std::string("sqlite: ") + (message ? message : sqlite3_errmsg(db)));
  sqlite3_free(message);
  return failure;
}

// The outbox relay's statements on the writer connection, prepared once on first use: a relay
// holds its lease and marks a batch every cycle, and preparing them each time cost more than
// running them (SQLite's parser allocations made glibc consolidate every chunk freed since: a
// quarter of the relay thread's cycles in `perf record`).
struct relay_statements {
  explicit relay_statements(sqlite3* db)
      : lease_read(db, "SELECT owner, renewals FROM eventbus_relay_lease WHERE id = 1", failure),
        // ?1 owner, ?2 and ?3 the row seen (take only), ?4 now (for people reading the table).
        lease_insert(db, "INSERT INTO eventbus_relay_lease (id, owner, renewals, renewed_at_ms) VALUES (1, ?1, 0, ?4) "
                         "ON CONFLICT (id) DO NOTHING", failure),
        lease_renew(db, "UPDATE eventbus_relay_lease SET renewals = renewals + 1, renewed_at_ms = ?4 "
                        "WHERE id = 1 AND owner = ?1", failure),
        lease_take(db, "UPDATE eventbus_relay_lease SET owner = ?1, renewals = 0, renewed_at_ms = ?4 "
                       "WHERE id = 1 AND owner = ?2 AND renewals = ?3", failure),
        mark(db, "DELETE FROM eventbus_outbox WHERE position BETWEEN ?1 AND ?2", failure),
        uncount(db, "UPDATE eventbus_outbox_state SET unpublished = unpublished - ?1 WHERE id = 1", failure) {}

  std::string failure;  // why one could not be prepared; empty when all were (declared first: set while they are)
  statement lease_read, lease_insert, lease_renew, lease_take, mark, uncount;
};

// BEGIN IMMEDIATE, COMMIT and ROLLBACK, prepared once per connection.
struct transaction_statements {
  explicit transaction_statements(sqlite3* db)
      : begin(db, "BEGIN IMMEDIATE", failure), commit(db, "COMMIT", failure), rollback(db, "ROLLBACK", failure) {}
  std::string failure;  // why one could not be prepared; empty when all were
  statement begin, commit, rollback;
};

// The statements of an append, prepared once per connection.
struct append_statements {
  explicit append_statements(sqlite3* connection)
      : db(connection),
        find_id(db, "SELECT 1 FROM event_store WHERE event_id = ?1"),
        current_version(db,
                        "SELECT COALESCE(MAX(aggregate_version), 0) FROM event_store "
                        "WHERE aggregate_type = ?1 AND aggregate_id = ?2"),
        insert(db,
               "INSERT INTO event_store (event_id, event_type, aggregate_type, aggregate_id, aggregate_version, "
               "occurred_at_ms, correlation_id, causation_id, envelope, stored_at_ms) "
               "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
        count_backlog(db, "UPDATE eventbus_outbox_state SET unpublished = unpublished + ?1 WHERE id = 1") {}

  [[nodiscard]] bool ok() const noexcept {
    return find_id.ok() && current_version.ok() && insert.ok() && count_backlog.ok();
  }

  // Inside an open transaction: the checks and the inserts of one append.
  result<append_result> run(std::string_view aggregate_type, std::string_view aggregate_id, std::int64_t expected,
                            std::span<const event> events) {
    if (!ok()) return sqlite_failure(db, "the event store's tables are missing (open the file with open_sqlite_store first)");
    std::size_t stored = 0;
    for (const auto& ev : events) {
      const int rc = find_id.reset().bind(1, ev.event_id()).step();
      find_id.reset();  // a statement left mid-way holds its read snapshot open
      if (rc == SQLITE_ROW) ++stored;
      else if (rc != SQLITE_DONE) return sqlite_failure(db, "reading event ids");
    }
    if (stored == events.size()) {  // an idempotent retry: report what the aggregate is at
      auto version = read_version(aggregate_type, aggregate_id);
      if (!version) return version.error();
      return append_result{.version = version.value(), .already_stored = true};
    }
    if (stored > 0) return detail::partly_stored(stored, events.size());
    auto current = read_version(aggregate_type, aggregate_id);
    if (!current) return current.error();
    if (expected != detail::any_version && expected != current.value())
      return detail::version_conflict(aggregate_type, aggregate_id, expected, current.value());

    append_result out{.version = current.value()};
    const auto stored_at = detail::epoch_millis(now_ms());
    for (const auto& ev : events) {
      const auto& d = detail::event_access::data(ev);
      insert.reset()
          .bind(1, d.event_id)
          .bind(2, d.event_type)
          .bind(3, aggregate_type)
          .bind(4, aggregate_id)
          .bind(5, ++out.version)
          .bind(6, detail::epoch_millis(d.timestamp))
          .bind(7, d.correlation_id)
          .bind(8, d.causation_id)
          .bind(9, detail::event_access::encoded(d))
          .bind(10, stored_at);
      const int rc = insert.step();
      insert.reset();
      if (rc != SQLITE_DONE) return sqlite_failure(db, "storing event " + d.event_id);
      const auto position = sqlite3_last_insert_rowid(db);
      if (out.first_position == 0) out.first_position = position;
      out.last_position = position;
    }
    const int rc = count_backlog.reset().bind(1, static_cast<std::int64_t>(events.size())).step();
    count_backlog.reset();
    if (rc != SQLITE_DONE) return sqlite_failure(db, "counting the outbox backlog");
    return out;
  }

  result<std::int64_t> read_version(std::string_view aggregate_type, std::string_view aggregate_id) {
    if (current_version.reset().bind(1, aggregate_type).bind(2, aggregate_id).step() != SQLITE_ROW)
      return sqlite_failure(db, "reading the aggregate's version");
    const auto version = current_version.integer(0);
    current_version.reset();  // ends its read snapshot: a stale one would make the next write fail as busy
    return version;
  }

  sqlite3* db;
  statement find_id, current_version, insert, count_backlog;
};

class sqlite_event_store final : public detail::checked_store, public detail::outbox_row_reader {
 public:
  explicit sqlite_event_store(const sqlite_store_options& options)
      : checked_store(options.metrics), path_(options.path), read_only_(options.read_only) {
    if (options.read_only) {
      open_for_reading(options);
      return;
    }
    writer_ = open(SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, options);
    // WAL lets the reader read while the writer commits; synchronous sets what a commit survives.
    for (const char* pragma : {"PRAGMA journal_mode = WAL", "PRAGMA foreign_keys = ON"})
      if (auto done = exec(writer_, pragma); !done) fail(done.error());
    const char* sync = options.durability == sqlite_durability::full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL";
    if (auto done = exec(writer_, sync); !done) fail(done.error());
    if (auto migrated = migrate(); !migrated) fail(migrated.error());
    statements_ = std::make_unique<append_statements>(writer_);
    reader_ = open(SQLITE_OPEN_READONLY, options);
  }

  ~sqlite_event_store() override {
    statements_.reset();
    relay_statements_.reset();
    transaction_statements_.reset();
    unpublished_rows_.reset();
    unpublished_columns_.reset();
    sqlite3_close_v2(reader_);
    sqlite3_close_v2(writer_);
  }

  result<append_result> store_events(std::string_view aggregate_type, std::string_view aggregate_id,
                                     std::int64_t expected_version, std::span<const event> events) override {
    const std::lock_guard lock(writer_mu_);
    if (auto there = still_there(); !there) return there.error();
    // The version read below cannot change before the insert (transaction() takes the write lock first).
    std::optional<result<append_result>> out;
    auto done = transaction([&] {
      out = statements_->run(aggregate_type, aggregate_id, expected_version, events);
      return out->ok() && !out->value().already_stored;  // nothing new: nothing to commit
    });
    if (!done) return done.error();
    return *out;
  }

  result<void> load(std::string_view aggregate_type, std::string_view aggregate_id, std::int64_t from_version,
                    const stored_event_visitor& fn) override {
    if (auto ok = detail::check_aggregate(aggregate_type, aggregate_id); !ok) return ok;
    const std::lock_guard lock(reader_mu_);
    statement page(reader_,
                   "SELECT position, aggregate_version, envelope FROM event_store WHERE aggregate_type = ?1 AND "
                   "aggregate_id = ?2 AND aggregate_version >= ?3 ORDER BY aggregate_version LIMIT 500");
    if (!page.ok()) return named(sqlite_failure(reader_, "load"));
    for (std::int64_t next = std::max<std::int64_t>(from_version, 1);;) {
      page.reset().bind(1, aggregate_type).bind(2, aggregate_id).bind(3, next);
      std::size_t rows = 0;
      for (int rc; (rc = page.step()) != SQLITE_DONE;) {
        if (rc != SQLITE_ROW) return named(sqlite_failure(reader_, "load"));
        ++rows;
        auto row = detail::stored_row(page.integer(0), page.integer(1), page.text(2));
        if (!row) return row.error();
        next = row.value().version + 1;
        if (!fn(row.value())) return {};
      }
      if (rows < 500) return {};
    }
  }

  result<void> read_all(const read_filter& filter, const stored_event_visitor& fn) override {
    if (auto ok = detail::check_filter(filter); !ok) return ok;
    std::string sql = "SELECT position, aggregate_version, envelope FROM event_store WHERE position > ?1";
    if (filter.from_time) sql += " AND occurred_at_ms >= ?2";
    if (filter.event_type) sql += " AND event_type = ?3";
    if (filter.aggregate_type) sql += " AND aggregate_type = ?4";
    if (filter.aggregate_id) sql += " AND aggregate_id = ?5";
    sql += " ORDER BY position LIMIT ?6";
    const std::lock_guard lock(reader_mu_);
    statement page(reader_, sql.c_str());
    if (!page.ok()) return named(sqlite_failure(reader_, "read_all"));
    const auto page_size = static_cast<std::int64_t>(std::max<std::size_t>(filter.page_size, 1));
    for (std::int64_t after = filter.after_position;;) {
      page.reset().bind(1, after).bind(6, page_size);
      if (filter.from_time) page.bind(2, detail::epoch_millis(*filter.from_time));
      if (filter.event_type) page.bind(3, std::string_view(*filter.event_type));
      if (filter.aggregate_type) page.bind(4, std::string_view(*filter.aggregate_type));
      if (filter.aggregate_id) page.bind(5, std::string_view(*filter.aggregate_id));
      std::int64_t rows = 0;
      for (int rc; (rc = page.step()) != SQLITE_DONE;) {
        if (rc != SQLITE_ROW) return named(sqlite_failure(reader_, "read_all"));
        ++rows;
        auto row = detail::stored_row(page.integer(0), page.integer(1), page.text(2));
        if (!row) return row.error();
        after = row.value().position;
        if (!fn(row.value())) return {};
      }
      if (rows < page_size) return {};
    }
  }

  result<std::int64_t> version_of(std::string_view aggregate_type, std::string_view aggregate_id) override {
    if (auto ok = detail::check_aggregate(aggregate_type, aggregate_id); !ok) return ok.error();
    const std::lock_guard lock(writer_mu_);
    auto version = statements_->read_version(aggregate_type, aggregate_id);
    if (!version) return named(version.error());
    return version;
  }

  result<std::int64_t> last_position() override {
    const std::lock_guard lock(reader_mu_);
    statement last(reader_, "SELECT COALESCE(MAX(position), 0) FROM event_store");
    if (!last.ok() || last.step() != SQLITE_ROW) return named(sqlite_failure(reader_, "reading the last position"));
    return last.integer(0);
  }

  result<std::int64_t> load_checkpoint(std::string_view name) override {
    if (name.empty()) return error(errc::invalid_argument, "must not be empty", "name");
    const std::lock_guard lock(reader_mu_);
    statement row(reader_, "SELECT position FROM eventbus_checkpoints WHERE name = ?1");
    if (!row.ok()) return named(sqlite_failure(reader_, "reading a checkpoint"));
    const int rc = row.bind(1, name).step();
    if (rc == SQLITE_DONE) return std::int64_t{0};
    if (rc != SQLITE_ROW) return named(sqlite_failure(reader_, "reading a checkpoint"));
    return row.integer(0);
  }

  result<void> save_checkpoint(std::string_view name, std::int64_t position) override {
    if (name.empty()) return error(errc::invalid_argument, "must not be empty", "name");
    if (position < 0) return error(errc::invalid_argument, "must be >= 0", "position");
    const std::lock_guard lock(writer_mu_);
    if (writer_ == nullptr) return error(errc::store_failed, "'" + path_ + "' is open read-only: checkpoints are not saved");
    if (auto there = still_there(); !there) return there.error();
    statement save(writer_,
                   "INSERT INTO eventbus_checkpoints (name, position, saved_at_ms) VALUES (?1, ?2, ?3) "
                   "ON CONFLICT (name) DO UPDATE SET position = excluded.position, saved_at_ms = excluded.saved_at_ms");
    if (!save.ok() || save.bind(1, name).bind(2, position).bind(3, detail::epoch_millis(now_ms())).step() != SQLITE_DONE)
      return named(sqlite_failure(writer_, "saving a checkpoint"));
    return {};
  }

  result<std::vector<checkpoint>> checkpoints() override {
    const std::lock_guard lock(reader_mu_);
    statement rows(reader_, "SELECT name, position, saved_at_ms FROM eventbus_checkpoints ORDER BY name");
    if (!rows.ok()) return named(sqlite_failure(reader_, "reading the checkpoints"));
    std::vector<checkpoint> out;
    for (int rc; (rc = rows.step()) != SQLITE_DONE;) {
      if (rc != SQLITE_ROW) return named(sqlite_failure(reader_, "reading the checkpoints"));
      out.push_back({.name = std::string(rows.text(0)), .position = rows.integer(1),
                     .saved_at = time_point(std::chrono::milliseconds(rows.integer(2)))});
    }
    return out;
  }

  result<bool> save_snapshot(const snapshot& s) override {
    if (auto ok = detail::check_snapshot(s); !ok) return ok.error();
    if (read_only_) return error(errc::store_failed, "'" + path_ + "' is open read-only: snapshots are not saved");
    const std::lock_guard lock(writer_mu_);
    if (auto there = still_there(); !there) return there.error();
    // The version check and the upsert in one write transaction: the events' version cannot move
    // under it (and never moves back).
    std::optional<result<bool>> kept;
    auto done = transaction([&] {
      kept = save_snapshot_steps(s);
      return kept->ok();
    });
    if (!done) return done.error();
    if (!kept->ok()) return named(kept->error());
    return *kept;
  }

  // save_snapshot's reads and writes, inside its transaction. writer_mu_ held.
  result<bool> save_snapshot_steps(const snapshot& s) {
    auto stored = statements_->read_version(s.aggregate_type, s.aggregate_id);
    if (!stored) return stored.error();
    if (s.version > stored.value()) return detail::snapshot_ahead(s, stored.value());
    statement save(writer_,
                   "INSERT INTO eventbus_snapshots (aggregate_type, aggregate_id, version, schema_version, state, "
                   "taken_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE "
                   "SET version = excluded.version, schema_version = excluded.schema_version, state = excluded.state, "
                   "taken_at_ms = excluded.taken_at_ms WHERE excluded.version >= eventbus_snapshots.version OR "
                   "excluded.schema_version <> eventbus_snapshots.schema_version");
    const auto taken = s.taken_at == time_point{} ? now_ms() : s.taken_at;
    if (!save.ok() || save.bind(1, s.aggregate_type).bind(2, s.aggregate_id).bind(3, s.version)
                              .bind(4, s.schema_version).bind(5, s.state).bind(6, detail::epoch_millis(taken)).step() != SQLITE_DONE)
      return sqlite_failure(writer_, "saving a snapshot of " + s.aggregate_type + " " + s.aggregate_id);
    return sqlite3_changes(writer_) > 0;
  }

  result<std::optional<snapshot>> load_snapshot(std::string_view aggregate_type, std::string_view aggregate_id) override {
    if (auto ok = detail::check_aggregate(aggregate_type, aggregate_id); !ok) return ok.error();
    const std::lock_guard lock(reader_mu_);
    statement row(reader_,
                  "SELECT version, schema_version, state, taken_at_ms FROM eventbus_snapshots "
                  "WHERE aggregate_type = ?1 AND aggregate_id = ?2");
    if (!row.ok()) return named(sqlite_failure(reader_, "reading a snapshot"));
    const int rc = row.bind(1, aggregate_type).bind(2, aggregate_id).step();
    if (rc == SQLITE_DONE) return std::optional<snapshot>();
    if (rc != SQLITE_ROW) return named(sqlite_failure(reader_, "reading a snapshot"));
    return std::optional<snapshot>(snapshot{.aggregate_type = std::string(aggregate_type),
                                            .aggregate_id = std::string(aggregate_id),
                                            .version = row.integer(0),
                                            .schema_version = row.integer(1),
                                            .state = std::string(row.text(2)),
                                            .taken_at = time_point(std::chrono::milliseconds(row.integer(3)))});
  }

  result<std::vector<snapshot>> read_snapshots(std::string_view after_type, std::string_view after_id,
                                               std::size_t limit) override {
    const std::lock_guard lock(reader_mu_);
    statement rows(reader_,
                   "SELECT aggregate_type, aggregate_id, version, schema_version, state, taken_at_ms FROM "
                   "eventbus_snapshots WHERE (aggregate_type, aggregate_id) > (?1, ?2) "
                   "ORDER BY aggregate_type, aggregate_id LIMIT ?3");
    if (!rows.ok()) return named(sqlite_failure(reader_, "reading snapshots to copy"));
    rows.bind(1, after_type).bind(2, after_id).bind(3, static_cast<std::int64_t>(limit));
    std::vector<snapshot> out;
    for (int rc; (rc = rows.step()) != SQLITE_DONE;) {
      if (rc != SQLITE_ROW) return named(sqlite_failure(reader_, "reading snapshots to copy"));
      out.push_back({.aggregate_type = std::string(rows.text(0)), .aggregate_id = std::string(rows.text(1)),
                     .version = rows.integer(2), .schema_version = rows.integer(3), .state = std::string(rows.text(4)),
                     .taken_at = time_point(std::chrono::milliseconds(rows.integer(5)))});
    }
    return out;
  }

  result<bool> run_in_transaction(const std::function<result<bool>(store_transaction&)>& steps) override {
    const std::lock_guard lock(writer_mu_);
    if (writer_ == nullptr) return error(errc::store_failed, "'" + path_ + "' is open read-only: nothing is written");
    if (auto there = still_there(); !there) return there.error();
    store_transaction tx(writer_, nullptr);
    std::optional<result<bool>> outcome;
    auto done = transaction([&] {  // rolled back when steps fail, return false or throw
      outcome = steps(tx);
      return outcome->ok() && outcome->value();
    });
    if (!done) return done.error();
    return *outcome;
  }

  result<void> run_read(const std::function<result<void>(store_transaction&)>& steps) override {
    const std::lock_guard lock(reader_mu_);
    store_transaction tx(reader_, nullptr);
    return steps(tx);
  }

  result<int> schema_version() override {
    const std::lock_guard lock(reader_mu_);
    statement version(reader_, "SELECT COALESCE(MAX(version), 0) FROM eventbus_schema");
    if (!version.ok() || version.step() != SQLITE_ROW) return named(sqlite_failure(reader_, "reading the schema version"));
    return static_cast<int>(version.integer(0));
  }
  int schema_version_expected() const noexcept override { return static_cast<int>(std::size(sqlite_migrations)); }

  result<void> save_checkpoint_in(store_transaction& tx, std::string_view name, std::int64_t position) override {
    statement save(tx.sqlite(),
                   "INSERT INTO eventbus_checkpoints (name, position, saved_at_ms) VALUES (?1, ?2, ?3) "
                   "ON CONFLICT (name) DO UPDATE SET position = excluded.position, saved_at_ms = excluded.saved_at_ms");
    if (!save.ok() || save.bind(1, name).bind(2, position).bind(3, detail::epoch_millis(now_ms())).step() != SQLITE_DONE)
      return named(sqlite_failure(tx.sqlite(), "saving a checkpoint"));
    return {};
  }

  result<std::vector<detail::copied_event>> read_for_copy(std::int64_t after_position, std::size_t limit) override {
    const std::lock_guard lock(reader_mu_);
    statement rows(reader_,
                   "SELECT position, aggregate_version, envelope, stored_at_ms, CASE WHEN EXISTS (SELECT 1 FROM "
                   "eventbus_outbox o WHERE o.position = event_store.position) THEN 0 WHEN parked_reason IS NOT NULL "
                   "THEN 2 ELSE 1 END, parked_reason FROM event_store WHERE position > ?1 ORDER BY position LIMIT ?2");
    if (!rows.ok()) return named(sqlite_failure(reader_, "reading events to copy"));
    rows.bind(1, after_position).bind(2, static_cast<std::int64_t>(limit));
    std::vector<detail::copied_event> out;
    for (int rc; (rc = rows.step()) != SQLITE_DONE;) {
      if (rc != SQLITE_ROW) return named(sqlite_failure(reader_, "reading events to copy"));
      auto row = detail::stored_row(rows.integer(0), rows.integer(1), rows.text(2));
      if (!row) return row.error();
      out.push_back({.stored = std::move(row).value(), .stored_at_ms = rows.integer(3),
                     .published = static_cast<int>(rows.integer(4)),
                     .parked_reason = rows.is_null(5) ? std::nullopt : std::optional<std::string>(rows.text(5))});
    }
    return out;
  }

  result<void> write_copy(std::span<const detail::copied_event> events, std::string_view progress,
                          std::int64_t source_position) override {
    const std::lock_guard lock(writer_mu_);
    if (writer_ == nullptr) return error(errc::store_failed, "'" + path_ + "' is open read-only: nothing is copied into it");
    if (auto there = still_there(); !there) return there.error();
    statement insert(writer_,
                     "INSERT INTO event_store (event_id, event_type, aggregate_type, aggregate_id, aggregate_version, "
                     "occurred_at_ms, correlation_id, causation_id, envelope, stored_at_ms, parked_reason) "
                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)");
    statement settled(writer_, "DELETE FROM eventbus_outbox WHERE position = ?1");  // queued by the insert's trigger
    statement count(writer_,
                    "UPDATE eventbus_outbox_state SET unpublished = unpublished + ?1, parked = parked + ?2 WHERE id = 1");
    statement save(writer_,
                   "INSERT INTO eventbus_checkpoints (name, position, saved_at_ms) VALUES (?1, ?2, ?3) "
                   "ON CONFLICT (name) DO UPDATE SET position = excluded.position, saved_at_ms = excluded.saved_at_ms");
    return write_transaction("copying events", [&] {
      if (!insert.ok() || !settled.ok() || !count.ok() || !save.ok()) return false;
      std::int64_t unpublished = 0, parked = 0;
      for (const auto& e : events) {
        const auto& d = detail::event_access::data(e.stored.ev);
        // Bound, not copied: lives until this event's row is inserted. Parked is a reason set.
        const std::optional<std::string> parked_reason =
            e.published == 2 ? std::optional<std::string>(e.parked_reason.value_or("")) : std::nullopt;
        insert.reset()
            .bind(1, d.event_id)
            .bind(2, d.event_type)
            .bind(3, d.aggregate_type)
            .bind(4, d.aggregate_id)
            .bind(5, e.stored.version)
            .bind(6, detail::epoch_millis(d.timestamp))
            .bind(7, d.correlation_id)
            .bind(8, d.causation_id)
            .bind(9, detail::event_access::encoded(d))
            .bind(10, e.stored_at_ms)
            .bind(11, parked_reason);
        if (insert.step() != SQLITE_DONE) return false;
        if (e.published != 0 && settled.reset().bind(1, sqlite3_last_insert_rowid(writer_)).step() != SQLITE_DONE)
          return false;
        unpublished += e.published == 0 ? 1 : 0;
        parked += e.published == 2 ? 1 : 0;
      }
      return count.bind(1, unpublished).bind(2, parked).step() == SQLITE_DONE &&
             save.bind(1, progress).bind(2, source_position).bind(3, detail::epoch_millis(now_ms())).step() == SQLITE_DONE;
    });
  }

  result<std::optional<std::string>> event_id_at_or_before(std::int64_t position) override {
    const std::lock_guard lock(reader_mu_);
    statement row(reader_, "SELECT event_id FROM event_store WHERE position <= ?1 ORDER BY position DESC LIMIT 1");
    if (!row.ok()) return named(sqlite_failure(reader_, "finding an event by position"));
    const int rc = row.bind(1, position).step();
    if (rc == SQLITE_DONE) return std::optional<std::string>();
    if (rc != SQLITE_ROW) return named(sqlite_failure(reader_, "finding an event by position"));
    return std::optional<std::string>(row.text(0));
  }

  result<std::optional<std::int64_t>> position_of(std::string_view event_id) override {
    const std::lock_guard lock(reader_mu_);
    statement row(reader_, "SELECT position FROM event_store WHERE event_id = ?1");
    if (!row.ok()) return named(sqlite_failure(reader_, "finding an event by id"));
    const int rc = row.bind(1, event_id).step();
    if (rc == SQLITE_DONE) return std::optional<std::int64_t>();
    if (rc != SQLITE_ROW) return named(sqlite_failure(reader_, "finding an event by id"));
    return std::optional<std::int64_t>(row.integer(0));
  }

  result<std::vector<stored_event>> unpublished(std::size_t limit, std::int64_t after_position) override {
    const std::lock_guard lock(reader_mu_);
    statement* prepared = prepared_once(unpublished_rows_,
                                        "SELECT e.position, e.aggregate_version, e.envelope FROM eventbus_outbox o "
                                        "CROSS JOIN event_store e ON e.position = o.position WHERE o.position > ?2 "
                                        "ORDER BY o.position LIMIT ?1");
    if (prepared == nullptr) return named(sqlite_failure(reader_, "reading the outbox"));
    statement& rows = prepared->reset();
    const reset_at_exit done_reading(rows);
    rows.bind(1, static_cast<std::int64_t>(limit)).bind(2, after_position);
    // Room for a whole batch at once: growing by doubling made each batch several large
    // allocations, each one making glibc consolidate the small chunks freed since (a quarter of
    // the relay thread's cycles, when the relay read through here, in `perf record`).
    std::vector<stored_event> out;
    out.reserve(std::min<std::size_t>(limit, 4096));
    for (int rc; (rc = rows.step()) != SQLITE_DONE;) {
      if (rc != SQLITE_ROW) return named(sqlite_failure(reader_, "reading the outbox"));
      auto row = detail::stored_row(rows.integer(0), rows.integer(1), rows.text(2));
      if (!row) return row.error();
      out.push_back(std::move(row).value());
    }
    return out;
  }

  result<void> unpublished_rows(std::size_t limit, std::int64_t after_position, detail::outbox_rows& out) override {
    out.clear();
    const std::lock_guard lock(reader_mu_);
    statement* prepared = prepared_once(
        unpublished_columns_,
        "SELECT e.position, e.occurred_at_ms, e.event_id, e.event_type, e.aggregate_type, e.aggregate_id, "
        "e.correlation_id, e.envelope FROM eventbus_outbox o CROSS JOIN event_store e ON e.position = o.position "
        "WHERE o.position > ?2 ORDER BY o.position LIMIT ?1");
    if (prepared == nullptr) return named(sqlite_failure(reader_, "reading the outbox"));
    statement& rows = prepared->reset();
    const reset_at_exit done_reading(rows);
    rows.bind(1, static_cast<std::int64_t>(limit)).bind(2, after_position);
    for (int rc; (rc = rows.step()) != SQLITE_DONE;) {
      if (rc != SQLITE_ROW) return named(sqlite_failure(reader_, "reading the outbox"));
      detail::record_fields columns{.event_id = rows.text(2), .event_type = rows.text(3), .aggregate_type = rows.text(4),
                                    .aggregate_id = rows.text(5), .value = rows.text(7)};
      if (!rows.is_null(6)) columns.correlation_id = rows.text(6);
      out.add_stored(rows.integer(0), rows.integer(1), columns);
    }
    out.seal();
    return {};
  }

  // A statement on the reader connection, prepared on first use and kept: the relay reads a
  // batch every cycle (see relay_statements), as unpublished()'s callers may. Null when it cannot be prepared (tried again next
  // time); reader_mu_ held.
  statement* prepared_once(std::unique_ptr<statement>& slot, const char* sql) {
    if (!slot) {
      auto made = std::make_unique<statement>(reader_, sql);
      if (!made->ok()) return nullptr;
      slot = std::move(made);
    }
    return slot.get();
  }

  result<void> mark_published(std::span<const std::int64_t> positions) override {
    if (positions.empty()) return {};
    const std::lock_guard lock(writer_mu_);
    if (auto there = still_there(); !there) return there.error();
    // One statement per run of consecutive positions (a relay's batch is mostly one run), not per event.
    auto relay = relay_statements_for("marking events published");
    if (!relay) return relay.error();
    statement &mark = relay.value()->mark, &uncount = relay.value()->uncount;
    const reset_at_exit mark_done(mark), uncount_done(uncount);  // none left active (see write_transaction)
    const auto runs = detail::consecutive_runs(positions);
    auto marked_all = write_transaction("marking events published", [&] {
      std::int64_t marked = 0;
      for (const auto& run : runs) {
        if (mark.reset().bind(1, run.first).bind(2, run.last).step() != SQLITE_DONE) return false;
        marked += sqlite3_changes(writer_);
      }
      return uncount.reset().bind(1, marked).step() == SQLITE_DONE;
    });
    return marked_all;
  }

  result<void> park(std::span<const std::int64_t> positions, std::string_view reason) override {
    if (positions.empty()) return {};
    const std::lock_guard lock(writer_mu_);
    if (auto there = still_there(); !there) return there.error();
    statement dequeue(writer_, "DELETE FROM eventbus_outbox WHERE position = ?1");
    // COALESCE: an empty reason may bind as NULL, and a NULL reason would read as published.
    statement park_one(writer_, "UPDATE event_store SET parked_reason = COALESCE(?2, '') WHERE position = ?1");
    statement count(writer_,
                    "UPDATE eventbus_outbox_state SET unpublished = unpublished - ?1, parked = parked + ?1 WHERE id = 1");
    if (!dequeue.ok() || !park_one.ok() || !count.ok()) return named(sqlite_failure(writer_, "parking events"));
    return write_transaction("parking events", [&] {
      std::int64_t parked = 0;
      for (const auto position : positions) {
        if (dequeue.reset().bind(1, position).step() != SQLITE_DONE) return false;
        if (sqlite3_changes(writer_) == 0) continue;  // published or parked already
        if (park_one.reset().bind(1, position).bind(2, reason).step() != SQLITE_DONE) return false;
        ++parked;
      }
      return count.bind(1, parked).step() == SQLITE_DONE;
    });
  }

  result<outbox_backlog> backlog() override {
    const std::lock_guard lock(reader_mu_);
    // One row, and the oldest unpublished event through the outbox index: cheap at any backlog.
    statement count(reader_,
                    "SELECT unpublished, (SELECT e.stored_at_ms FROM eventbus_outbox o CROSS JOIN event_store e ON "
                    "e.position = o.position ORDER BY o.position LIMIT 1), parked FROM eventbus_outbox_state WHERE id = 1");
    if (!count.ok() || count.step() != SQLITE_ROW) return named(sqlite_failure(reader_, "reading the outbox backlog"));
    outbox_backlog out{.events = count.integer(0), .parked = count.integer(2)};
    if (!count.is_null(1)) out.oldest = time_point(std::chrono::milliseconds(count.integer(1)));
    return out;
  }

  result<bool> hold_relay_lease(std::string_view owner, std::chrono::milliseconds ttl) override {
    const std::lock_guard lock(writer_mu_);
    if (auto there = still_there(); !there) return there.error();
    auto relay = relay_statements_for("taking the relay lease");
    if (!relay) return relay.error();
    lease_statements ops{*this, *relay.value()};
    return lease_.hold(owner, ttl, ops);
  }

  void release_relay_lease(std::string_view owner) noexcept override {
    const std::lock_guard lock(writer_mu_);
    statement drop(writer_, "DELETE FROM eventbus_relay_lease WHERE owner = ?1");
    if (drop.ok()) (void)drop.bind(1, owner).step();
  }

  result<void> check() override {
    if (writer_ != nullptr) {
      const std::lock_guard lock(writer_mu_);
      if (auto there = still_there(); !there) return there.error();
    }
    const std::lock_guard lock(reader_mu_);
    statement probe(reader_, "SELECT 1");
    if (!probe.ok() || probe.step() != SQLITE_ROW) return named(sqlite_failure(reader_, "check"));
    return {};
  }

  std::string_view backend() const noexcept override { return "sqlite"; }

 private:
  // The relay lease's statements for relay_lease_judge, on the writer connection (writer_mu_ held).
  struct lease_statements {
    sqlite_event_store& store;
    relay_statements& st;

    result<std::optional<detail::lease_row>> read() {
      statement& row = st.lease_read.reset();
      const reset_at_exit done_reading(row);
      const int rc = row.step();
      if (rc == SQLITE_ROW) return std::optional<detail::lease_row>(detail::lease_row{std::string(row.text(0)), row.integer(1)});
      if (rc == SQLITE_DONE) return std::optional<detail::lease_row>();
      return store.named(sqlite_failure(store.writer_, "reading the relay lease"));
    }
    result<bool> insert(std::string_view owner) { return change(st.lease_insert, owner, nullptr); }
    result<bool> renew(std::string_view owner) { return change(st.lease_renew, owner, nullptr); }
    result<bool> take(std::string_view owner, const detail::lease_row& seen) { return change(st.lease_take, owner, &seen); }
    result<bool> change(statement& change, std::string_view owner, const detail::lease_row* seen) {
      change.reset().bind(1, owner).bind(4, detail::epoch_millis(now_ms()));
      if (seen != nullptr) change.bind(2, seen->owner).bind(3, seen->renewals);
      std::string why;
      if (change.run_and_reset(store.writer_, why) != SQLITE_DONE)  // no borrowed text left bound either
        return store.named(error(errc::store_failed, "sqlite: taking the relay lease: " + why));
      return sqlite3_changes(store.writer_) > 0;
    }
  };

  // The relay's statements, prepared on first use, or why they cannot be (tables missing); tried
  // again on the next call. writer_mu_ held.
  result<relay_statements*> relay_statements_for(std::string_view what) {
    if (!relay_statements_) {
      auto made = std::make_unique<relay_statements>(writer_);
      if (!made->failure.empty())
        return named(error(errc::store_failed, "sqlite: " + std::string(what) + ": " + made->failure));
      relay_statements_ = std::move(made);
    }
    return relay_statements_.get();
  }

  // BEGIN IMMEDIATE (the write lock now: what `steps` reads cannot change before it writes), then
  // `steps`: COMMIT when it returns true, ROLLBACK when it returns false or throws (rethrown).
  // True when committed, false when rolled back; an error when BEGIN or COMMIT failed. The three
  // statements are prepared once per connection (the relay marks a batch every cycle: see
  // relay_statements) and reset on every path. writer_mu_ held.
  result<bool> transaction(const std::function<bool()>& steps) {
    if (!transaction_statements_) {  // tried again on the next call when they cannot be prepared
      auto made = std::make_unique<transaction_statements>(writer_);
      if (!made->failure.empty()) return named(error(errc::store_failed, "sqlite: beginning a transaction: " + made->failure));
      transaction_statements_ = std::move(made);
    }
    auto& tx = *transaction_statements_;
    // Each reset once it has run: a BEGIN that got SQLITE_BUSY and stayed active made every later
    // COMMIT on this connection fail ("SQL statements in progress"), an active COMMIT held a read
    // snapshot.
    const auto run = [&](statement& st, std::string_view doing) -> result<void> {
      std::string why;
      if (st.reset().run_and_reset(writer_, why) != SQLITE_DONE)
        return named(error(errc::store_failed, "sqlite: " + std::string(doing) + ": " + why));
      return {};
    };
    if (auto begun = run(tx.begin, "beginning a transaction"); !begun) return begun.error();
    bool keep = false;
    try {
      keep = steps();
    } catch (...) {
      (void)run(tx.rollback, "rolling back");
      throw;
    }
    if (!keep) {
      (void)run(tx.rollback, "rolling back");
      return false;
    }
    if (auto committed = run(tx.commit, "committing"); !committed) {
      (void)run(tx.rollback, "rolling back");
      return committed.error();
    }
    return true;
  }

  // A transaction of `steps` (false when one failed: the writer's error names why, read before
  // the rollback). writer_mu_ held.
  result<void> write_transaction(std::string_view what, const std::function<bool()>& steps) {
    std::optional<error> failure;
    auto done = transaction([&] {
      if (steps()) return true;
      failure = named(sqlite_failure(writer_, what));
      return false;
    });
    if (!done) return done.error();
    if (failure) return *failure;
    return {};
  }

  // A file deleted (or replaced) while open takes every later commit with it, silently: SQLite
  // writes on through its open descriptors, and the next open makes an empty store. Asked before
  // each write: one stat(2).
  result<void> still_there() {
    int moved = 0;
    if (sqlite3_file_control(writer_, "main", SQLITE_FCNTL_HAS_MOVED, &moved) == SQLITE_OK && moved != 0)
      return error(errc::store_failed, "'" + path_ + "': the database file was deleted or replaced while open; nothing "
                                       "more is stored here (restore the file, or reopen the store)");
    return {};
  }

  // Reading only: the file must exist and be an eventbus store; nothing is created or migrated.
  void open_for_reading(const sqlite_store_options& options) {
    std::error_code ignored;
    if (!std::filesystem::exists(path_, ignored))
      throw exception(error(errc::store_failed, "'" + path_ + "' does not exist", "path"));
    writer_ = open(SQLITE_OPEN_READONLY, options);
    std::optional<std::string> not_a_store;
    {
      statement version(writer_, "SELECT MAX(version) FROM eventbus_schema");
      if (!version.ok()) not_a_store = "it has no eventbus_schema table";
      else if (version.step() != SQLITE_ROW || version.is_null(0)) not_a_store = "its schema version is missing";
    }
    if (not_a_store) fail(error(errc::store_failed, "is not an eventbus event store: " + *not_a_store));
    statements_ = std::make_unique<append_statements>(writer_);
    reader_ = open(SQLITE_OPEN_READONLY, options);
  }

  sqlite3* open(int flags, const sqlite_store_options& options) {
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(path_.c_str(), &db, flags | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK) {
      const std::string why = db ? sqlite3_errmsg(db) : "out of memory";
      sqlite3_close_v2(db);
      throw exception(error(errc::store_failed, "cannot open '" + path_ + "': " + why, "path"));
    }
    sqlite3_busy_timeout(db, static_cast<int>(options.busy_timeout.count()));
    return db;
  }

  [[noreturn]] void fail(const error& why) {
    sqlite3_close_v2(writer_);
    throw exception(error(errc::store_failed, "'" + path_ + "': " + why.message(), "path"));
  }

  result<void> migrate() {
    if (auto ok = exec(writer_, "CREATE TABLE IF NOT EXISTS eventbus_schema (version INTEGER NOT NULL)"); !ok) return ok;
    for (std::size_t i = 0; i < std::size(sqlite_migrations); ++i) {
      if (auto begun = exec(writer_, "BEGIN IMMEDIATE"); !begun) return begun;
      statement current(writer_, "SELECT COALESCE(MAX(version), 0) FROM eventbus_schema");
      if (!current.ok() || current.step() != SQLITE_ROW) {
        (void)exec(writer_, "ROLLBACK");
        return sqlite_failure(writer_, "reading the schema version");
      }
      const std::int64_t applied = current.integer(0);
      current.reset();  // left on its row, it would make a migration's DROP TABLE fail ("database table is locked")
      if (applied > static_cast<std::int64_t>(i)) {  // applied already (maybe by another process)
        (void)exec(writer_, "ROLLBACK");
        continue;
      }
      const std::string bump = "INSERT INTO eventbus_schema (version) VALUES (" + std::to_string(i + 1) + ")";
      for (const char* sql : {sqlite_migrations[i], bump.c_str()})
        if (auto done = exec(writer_, sql); !done) {
          (void)exec(writer_, "ROLLBACK");
          return done;
        }
      if (auto committed = exec(writer_, "COMMIT"); !committed) return committed;
    }
    return {};
  }

  error named(const error& e) const { return {e.code(), "'" + path_ + "': " + e.message(), e.field()}; }

  std::string path_;
  bool read_only_ = false;
  std::mutex writer_mu_, reader_mu_;
  sqlite3* writer_ = nullptr;
  sqlite3* reader_ = nullptr;
  std::unique_ptr<append_statements> statements_;
  std::unique_ptr<relay_statements> relay_statements_;
  std::unique_ptr<transaction_statements> transaction_statements_;
  std::unique_ptr<statement> unpublished_rows_;     // on reader_
  std::unique_ptr<statement> unpublished_columns_;  // on reader_
  detail::relay_lease_judge lease_;
};

}  // namespace

void sqlite_store_options::validate() const {
  if (path.empty()) throw exception(error(errc::invalid_argument, "must name the database file", "path"));
  if (durability != sqlite_durability::full && durability != sqlite_durability::normal)
    throw exception(error(errc::invalid_argument, "must be full or normal", "durability"));
  if (busy_timeout.count() < 0) throw exception(error(errc::invalid_argument, "must not be negative", "busy_timeout"));
}

std::shared_ptr<outbox_store> open_sqlite_store(const sqlite_store_options& options) {
  options.validate();
  return std::make_shared<sqlite_event_store>(options);
}

result<append_result> append_in_transaction(sqlite3* db, std::string_view aggregate_type, std::string_view aggregate_id,
                                            expected_version expected, std::span<const event> events) {
  const std::int64_t expected_raw = detail::raw_version(expected);
  if (db == nullptr) return error(errc::invalid_argument, "is null", "db");
  if (auto ok = detail::check_append(aggregate_type, aggregate_id, expected_raw, events); !ok) return ok.error();
  if (sqlite3_get_autocommit(db) != 0)
    return error(errc::invalid_argument, "has no open transaction: BEGIN first, so your rows and the events commit together", "db");
  append_statements statements(db);
  return statements.run(aggregate_type, aggregate_id, expected_raw, events);
}

}  // namespace eventbus
