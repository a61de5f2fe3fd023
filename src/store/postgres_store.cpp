// The PostgreSQL backend: a writer connection (appends, outbox marks), a reader connection (streamed
// reads), a lease connection (the relay lease's row) and, once it relays, a connection for the
// relay's outbox reads (made one batch ahead), each behind its own mutex.
// A connection found broken is re-established once per call.

#include "eventbus/store/postgres_store.hpp"

#include <libpq-fe.h>

#include <array>
#include <charconv>
#include <mutex>
#include <string>
#include <string_view>

#include "envelope/event_data.hpp"
#include "eventbus/time.hpp"
#include "store/append_rules.hpp"
#include "store/outbox_rows.hpp"
#include "store/relay_lease.hpp"

namespace eventbus {
namespace {

// Advisory lock keys ("eventbus" in ASCII, and its neighbour): appends, migrations. (The next one
// was the relay's session lock before the lease became a row: not to be reused.)
constexpr std::int64_t append_lock = 0x6576656e74627573;
constexpr std::int64_t migrate_lock = append_lock + 1;
static_assert(append_lock == 7311142570155996531, "eventbus_append takes this lock by its number");

// An append's checks and insert as a function of simple statements: PL/pgSQL keeps their plans
// for the session, where one statement of common table expressions was planned anew on every
// append (a third of its time, measured in bench/README.md). The plans are generic, made once:
// with sequential scans off they are index scans whatever the table's size when they were made
// (a generic plan made on an empty table scanned it whole ever after). The function takes the
// append lock itself, first: each statement of a volatile function sees what committed before
// it started, so the checks see every append that held the lock before. Returns the current
// version, how many of the ids are stored already, and the first and last position inserted and
// how many rows (none when a check failed).
// JSONB cannot hold U+0000: an event whose envelope has "\u0000" gets a NULL payload column (the
// queryable copy); its envelope, what is loaded and published, keeps it exactly.
constexpr const char* append_function = R"sql(
CREATE OR REPLACE FUNCTION eventbus_append(ids TEXT[], types TEXT[], agg_type TEXT, agg_id TEXT, expected BIGINT,
                                millis BIGINT[], correlations TEXT[], causations TEXT[], envelopes TEXT[],
                                OUT current_version BIGINT, OUT already_stored BIGINT,
                                OUT first_position BIGINT, OUT last_position BIGINT, OUT inserted BIGINT)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan SET enable_seqscan = off AS $fn$
BEGIN
  PERFORM pg_advisory_xact_lock(7311142570155996531);
  SELECT COALESCE(MAX(aggregate_version), 0) INTO current_version FROM event_store
   WHERE aggregate_type = agg_type AND aggregate_id = agg_id;
  SELECT count(*) INTO already_stored FROM event_store WHERE event_id = ANY(ids);
  inserted := 0;
  IF already_stored > 0 OR (expected >= 0 AND current_version <> expected) THEN
    RETURN;
  END IF;
  WITH ins AS (
    INSERT INTO event_store (event_id, event_type, aggregate_type, aggregate_id, aggregate_version, occurred_at,
                             correlation_id, causation_id, payload, envelope)
    SELECT e.id, e.type, agg_type, agg_id, current_version + e.n, to_timestamp(e.ms / 1000.0), e.corr, e.cause,
           CASE WHEN strpos(e.env, '\u0000') = 0 THEN (e.env::jsonb) -> 'payload' END, e.env
      FROM unnest(ids, types, millis, correlations, causations, envelopes) WITH ORDINALITY AS e(id, type, ms, corr, cause, env, n)
     ORDER BY e.n
    RETURNING position)
  SELECT min(position), max(position), count(*) INTO first_position, last_position, inserted FROM ins;
  UPDATE eventbus_outbox_state SET unpublished = unpublished + inserted WHERE id = 1;
END
$fn$;
)sql";

// eventbus_append from the tenth migration on: the ninth's, without the backlog's UPDATE.
const std::string append_function_without_backlog = [] {
  std::string text = append_function;
  const std::string_view counting = "  UPDATE eventbus_outbox_state SET unpublished = unpublished + inserted WHERE id = 1;\n";
  text.erase(text.find(counting), counting.size());
  return text;
}();

// The tenth migration: appends stop writing the backlog's row (an UPDATE of one hot row in every
// append was the gap between an append and a raw insert). The row now counts the rows through
// `counted_through` (`counted`) and the rows settled anywhere, published or parked (`settled`):
// the backlog is counted + the rows above counted_through - settled, read in one snapshot. Rows
// above counted_through are few: reading the backlog moves it up. Positions commit in order (every
// insert holds the append lock until it commits, and the sequence hands out one value at a time),
// so no row can later appear below it; no row is ever deleted. Counted afresh, under the append
// lock that migrate() takes, so no append commits between the count and the change of function.
// `unpublished` goes: an older eventbus still running against this store fails naming it rather
// than keep a count nobody reads.
const std::string backlog_without_appends = R"sql(
ALTER TABLE eventbus_outbox_state ADD COLUMN counted BIGINT NOT NULL DEFAULT 0,
  ADD COLUMN counted_through BIGINT NOT NULL DEFAULT 0, ADD COLUMN settled BIGINT NOT NULL DEFAULT 0;
UPDATE eventbus_outbox_state SET counted = c.n, counted_through = c.top, settled = c.done
  FROM (SELECT count(*) AS n, COALESCE(max(position), 0) AS top, count(*) FILTER (WHERE published_at IS NOT NULL) AS done
          FROM event_store) c
 WHERE id = 1;
ALTER TABLE eventbus_outbox_state DROP COLUMN unpublished;
)sql" + append_function_without_backlog;

// The eleventh migration: the outbox becomes a table of its own, the positions Kafka has not
// acknowledged. A mark had set `published_at`, a column in the outbox index's predicate: no such
// UPDATE is HOT (nor could it be: appended pages are full), so each one wrote the row again and a
// new entry in every index of `event_store` (the relay from PostgreSQL ran at 0.07 of the mirror,
// bench/README.md). Now a mark deletes the position. Triggers keep the queue whoever writes
// `event_store` (eventbus_append, a copy, an older eventbus, a hand-written insert or delete):
// - before an inserting statement, the append lock, so that positions commit in order (the
//   relay's cursor and the backlog's count rely on it; eventbus's own inserts hold it already);
// - after it, its rows queued, once per statement;
// - after a deleting statement, its rows taken out of the queue and the backlog's numbers
//   corrected (a row at or below counted_through was counted; a settled one above it was not).
// Parked: `parked_reason` set, as before. `published_at` goes with its index: an older eventbus
// still running against this store fails naming it, rather than mark rows nobody reads. The
// table is locked first (inserts that do not take the append lock would otherwise slip between
// the queue's copy and its trigger), and the backlog's row is counted afresh.
constexpr const char* outbox_table = R"sql(
LOCK TABLE event_store IN SHARE ROW EXCLUSIVE MODE;
CREATE TABLE eventbus_outbox (position BIGINT PRIMARY KEY);
INSERT INTO eventbus_outbox (position) SELECT position FROM event_store WHERE published_at IS NULL;
CREATE OR REPLACE FUNCTION eventbus_append_lock() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  PERFORM pg_advisory_xact_lock(7311142570155996531);
  RETURN NULL;
END
$fn$;
CREATE TRIGGER eventbus_append_lock BEFORE INSERT ON event_store
  FOR EACH STATEMENT EXECUTE FUNCTION eventbus_append_lock();
CREATE OR REPLACE FUNCTION eventbus_outbox_queue() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $fn$
BEGIN
  INSERT INTO eventbus_outbox (position) SELECT position FROM inserted_rows;
  RETURN NULL;
END
$fn$;
CREATE TRIGGER eventbus_outbox_queue AFTER INSERT ON event_store REFERENCING NEW TABLE AS inserted_rows
  FOR EACH STATEMENT EXECUTE FUNCTION eventbus_outbox_queue();
CREATE OR REPLACE FUNCTION eventbus_outbox_forget() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $fn$
BEGIN
  WITH gone AS (DELETE FROM eventbus_outbox o USING deleted_rows d WHERE o.position = d.position RETURNING o.position)
  UPDATE eventbus_outbox_state s
     SET settled = s.settled + (SELECT count(*) FROM gone g WHERE g.position <= s.counted_through)
                 - (SELECT count(*) FROM deleted_rows d WHERE d.position > s.counted_through
                       AND NOT EXISTS (SELECT 1 FROM gone g WHERE g.position = d.position)),
         parked = s.parked - (SELECT count(*) FROM deleted_rows d WHERE d.parked_reason IS NOT NULL)
   WHERE s.id = 1;
  RETURN NULL;
END
$fn$;
CREATE TRIGGER eventbus_outbox_forget AFTER DELETE ON event_store REFERENCING OLD TABLE AS deleted_rows
  FOR EACH STATEMENT EXECUTE FUNCTION eventbus_outbox_forget();
ALTER TABLE event_store DROP COLUMN published_at;
UPDATE eventbus_outbox_state SET counted = c.n, counted_through = c.top, settled = c.n - c.queued, parked = c.refused
  FROM (SELECT count(*) AS n, COALESCE(max(position), 0) AS top, (SELECT count(*) FROM eventbus_outbox) AS queued,
               count(*) FILTER (WHERE parked_reason IS NOT NULL) AS refused FROM event_store) c
 WHERE id = 1;
)sql";

const char* const postgres_migrations[] = {
    R"sql(
CREATE TABLE event_store (
  position          BIGSERIAL   PRIMARY KEY,   -- global order: appends commit one at a time
  event_id          TEXT        NOT NULL UNIQUE,
  event_type        TEXT        NOT NULL,
  aggregate_type    TEXT        NOT NULL,
  aggregate_id      TEXT        NOT NULL,
  aggregate_version BIGINT      NOT NULL,
  occurred_at       TIMESTAMPTZ NOT NULL,      -- the event's timestamp
  correlation_id    TEXT,
  causation_id      TEXT,
  payload           JSONB       NOT NULL,
  envelope          TEXT        NOT NULL,      -- the wire form, published as is
  stored_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
  published_at      TIMESTAMPTZ,               -- acknowledged by Kafka
  UNIQUE (aggregate_type, aggregate_id, aggregate_version)
);
CREATE INDEX event_store_by_type ON event_store (event_type, position);
CREATE INDEX event_store_by_time ON event_store (occurred_at);
CREATE INDEX event_store_unpublished ON event_store (position) WHERE published_at IS NULL;
)sql",
    append_function,  // the second migration
    // The payload column may be NULL (see append_function), and the relay lease becomes a row
    // judged by its renewals (see relay_lease.hpp): a session advisory lock outlived a hung
    // relay whose connection stayed open.
    R"sql(
ALTER TABLE event_store ALTER COLUMN payload DROP NOT NULL;
CREATE TABLE eventbus_relay_lease (
  id         INTEGER     PRIMARY KEY CHECK (id = 1),
  owner      TEXT        NOT NULL,
  renewals   BIGINT      NOT NULL,
  renewed_at TIMESTAMPTZ NOT NULL DEFAULT now()   -- for people reading the table; never judged
);
-- The outbox's backlog, kept as appends and marks go (in their transactions): reading it is one
-- row, where a count over the unpublished rows grew with the backlog.
CREATE TABLE eventbus_outbox_state (
  id          INTEGER PRIMARY KEY CHECK (id = 1),
  unpublished BIGINT  NOT NULL,
  parked      BIGINT  NOT NULL DEFAULT 0
);
INSERT INTO eventbus_outbox_state (id, unpublished) SELECT 1, count(*) FROM event_store WHERE published_at IS NULL;
-- Set (with published_at) when Kafka refused the record for good.
ALTER TABLE event_store ADD COLUMN parked_reason TEXT;
)sql",
    append_function,  // again, for stores made before it wrote NULL payloads
    // Projections' checkpoints: how far each got (projection.hpp).
    R"sql(
CREATE TABLE eventbus_checkpoints (
  name     TEXT        PRIMARY KEY,
  position BIGINT      NOT NULL,
  saved_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
)sql",
    // The inbox: which handler applied which event (inbox.hpp).
    R"sql(
CREATE TABLE eventbus_inbox (
  handler    TEXT        NOT NULL,
  event_id   TEXT        NOT NULL,
  handled_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (handler, event_id)
);
CREATE INDEX eventbus_inbox_by_time ON eventbus_inbox (handled_at);
)sql",
    // Aggregates' snapshots, the newest one each (aggregate.hpp). The state as TEXT, not JSONB:
    // it comes back exactly as written, and is not parsed on the way in.
    R"sql(
CREATE TABLE eventbus_snapshots (
  aggregate_type TEXT        NOT NULL,
  aggregate_id   TEXT        NOT NULL,
  version        BIGINT      NOT NULL,  -- the state folds the aggregate's events 1..version
  schema_version BIGINT      NOT NULL,  -- the state's shape, the aggregate's own number
  state          TEXT        NOT NULL,  -- JSON
  taken_at       TIMESTAMPTZ NOT NULL,
  PRIMARY KEY (aggregate_type, aggregate_id)
);
)sql",
    // Workers' records parked for a durable retry stage (worker/parking.hpp): each key's in
    // source-offset order, by group and partition.
    R"sql(
CREATE TABLE eventbus_parked (
  group_id      TEXT        NOT NULL,
  topic         TEXT        NOT NULL,
  partition     INTEGER     NOT NULL,
  source_offset BIGINT      NOT NULL,
  record_key    BYTEA,                  -- NULL: Kafka's null key
  value         BYTEA,                  -- NULL: a tombstone
  headers       BYTEA       NOT NULL,
  stage         INTEGER     NOT NULL,   -- 0: behind an earlier record of its key; n: in durable stage n
  due_at_ms     BIGINT      NOT NULL,
  pending       TEXT        NOT NULL,   -- JSON array of handler names; [] = every matching handler
  attempts      INTEGER     NOT NULL,
  reason        TEXT        NOT NULL,
  parked_at_ms  BIGINT      NOT NULL,
  PRIMARY KEY (group_id, topic, partition, source_offset)
);
)sql",
    append_function,  // again: generic plans kept (index scans forced), the append lock taken inside
    backlog_without_appends.c_str(),
    outbox_table,
};

struct result_deleter {
  void operator()(PGresult* r) const noexcept { PQclear(r); }
};
using pg_result = std::unique_ptr<PGresult, result_deleter>;

// A PostgreSQL text[] / bigint[] literal: {"a","b"} with quotes and backslashes escaped.
class array_literal {
 public:
  void add(std::string_view text) {
    out_.push_back(out_.empty() ? '{' : ',');
    out_.push_back('"');
    for (const char c : text) {
      if (c == '"' || c == '\\') out_.push_back('\\');
      out_.push_back(c);
    }
    out_.push_back('"');
  }
  void add(const std::optional<std::string>& text) {
    if (text) return add(std::string_view(*text));
    out_.append(out_.empty() ? "{NULL" : ",NULL");
  }
  void add(std::int64_t n) {
    out_.push_back(out_.empty() ? '{' : ',');
    out_.append(std::to_string(n));
  }
  [[nodiscard]] std::string text() const { return out_.empty() ? std::string("{}") : out_ + "}"; }

 private:
  std::string out_;
};

std::int64_t to_int(const PGresult* r, int row, int col) {
  const char* text = PQgetvalue(r, row, col);
  std::int64_t n = 0;
  std::from_chars(text, text + PQgetlength(r, row, col), n);
  return n;
}

// A BIGINT column of a binary result: 8 bytes, most significant first.
std::int64_t binary_int(const PGresult* r, int row, int col) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(PQgetvalue(r, row, col));
  if (PQgetlength(r, row, col) != 8) return 0;
  std::uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n = (n << 8) | bytes[i];
  return static_cast<std::int64_t>(n);
}

// A TIMESTAMPTZ column of a binary result (microseconds since 2000-01-01 UTC) as milliseconds
// since the Unix epoch, rounded down as the text form's floor(extract(epoch ...) * 1000) was.
std::int64_t binary_millis(const PGresult* r, int row, int col) {
  constexpr std::int64_t unix_to_2000_ms = 946'684'800'000;
  const std::int64_t micros = binary_int(r, row, col);
  const std::int64_t whole = micros / 1000 - (micros % 1000 < 0 ? 1 : 0);
  return whole + unix_to_2000_ms;
}

// A failed statement as an error naming what was being done (and the SQLSTATE); never the DSN.
error failure(PGconn* conn, const PGresult* r, std::string_view what) {
  std::string message = r ? PQresultErrorMessage(r) : PQerrorMessage(conn);
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
  const char* state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
  // Class 22 (data exception: a value the column cannot take) fails the same way on every retry:
  // the event, not the database, is at fault.
  const bool bad_data = state != nullptr && std::string_view(state).starts_with("22");
  return error(bad_data ? errc::invalid_event : errc::store_failed, "postgresql: " + std::string(what) + ": " + message +
                                       (state ? " (SQLSTATE " + std::string(state) + ")" : ""));
}

// Runs one statement with text parameters.
// Results in text, or in binary (`binary_results`: numbers and times as the server keeps them,
// with no conversion to text and back).
enum class result_format : int { text = 0, binary = 1 };

result<pg_result> run(PGconn* conn, std::string_view what, const char* sql, std::initializer_list<const char*> params = {},
                      result_format format = result_format::text) {
  std::vector<const char*> values(params);
  // Without parameters, PQexec: it also runs several statements (a migration) in one go.
  pg_result r(values.empty() ? PQexec(conn, sql)
                             : PQexecParams(conn, sql, static_cast<int>(values.size()), nullptr, values.data(), nullptr,
                                            nullptr, static_cast<int>(format)));
  const auto status = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
  if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) return r;
  return failure(conn, r.get(), what);
}

// The checks, and the insert only when they pass (ids new, version as expected): the function of
// the second migration. $1 ids, $2 types, $3 aggregate type, $4 aggregate id, $5 expected version,
// $6 timestamps (ms), $7 correlation ids, $8 causation ids, $9 envelopes. Its one row: current
// version, how many of the ids were stored already, first and last position inserted, rows inserted.
constexpr const char* append_sql =
    "SELECT * FROM eventbus_append($1::text[], $2::text[], $3, $4, $5::bigint, $6::bigint[], $7::text[], "
    "$8::text[], $9::text[])";
constexpr int append_param_count = 9;

// The parameters of append_sql for one append, as text.
struct append_params {
  append_params(std::string_view aggregate_type, std::string_view aggregate_id, std::int64_t expected,
                std::span<const event> events)
      : type(aggregate_type), id(aggregate_id), want(std::to_string(expected)) {
    array_literal ids, types, occurred, correlations, causations, envelopes;
    for (const auto& ev : events) {
      const auto& d = detail::event_access::data(ev);
      ids.add(std::string_view(d.event_id));
      types.add(std::string_view(d.event_type));
      occurred.add(detail::epoch_millis(d.timestamp));
      correlations.add(d.correlation_id);
      causations.add(d.causation_id);
      envelopes.add(std::string_view(detail::event_access::encoded(d)));
    }
    arrays = {ids.text(), types.text(), occurred.text(), correlations.text(), causations.text(), envelopes.text()};
    values = {arrays[0].c_str(), arrays[1].c_str(), type.c_str(), id.c_str(), want.c_str(),
              arrays[2].c_str(), arrays[3].c_str(), arrays[4].c_str(), arrays[5].c_str()};
  }
  append_params(const append_params&) = delete;
  append_params& operator=(const append_params&) = delete;

  std::string type, id, want;
  std::array<std::string, 6> arrays;
  std::array<const char*, append_param_count> values{};
};

// What append_sql's row says about the append.
result<append_result> append_outcome(const PGresult* row, std::string_view aggregate_type, std::string_view aggregate_id,
                                     std::int64_t expected, std::size_t count) {
  const auto current = to_int(row, 0, 0);
  const auto stored = static_cast<std::size_t>(to_int(row, 0, 1));
  if (stored == count) return append_result{.version = current, .already_stored = true};
  if (stored > 0) return detail::partly_stored(stored, count);
  if (to_int(row, 0, 4) != static_cast<std::int64_t>(count))
    return detail::version_conflict(aggregate_type, aggregate_id, expected, current);
  return append_result{.first_position = to_int(row, 0, 2),
                        .last_position = to_int(row, 0, 3),
                        .version = current + static_cast<std::int64_t>(count)};
}

// The checks and inserts of one append on `conn`: in the caller's open transaction, or in the
// statement's own. eventbus_append (from the ninth migration on) takes the append lock before its
// checks.
result<append_result> append_rows(PGconn* conn, std::string_view aggregate_type, std::string_view aggregate_id,
                                  std::int64_t expected, std::span<const event> events) {
  const append_params params(aggregate_type, aggregate_id, expected, events);
  pg_result r(PQexecParams(conn, append_sql, append_param_count, nullptr, params.values.data(), nullptr, nullptr, 0));
  if (!r || PQresultStatus(r.get()) != PGRES_TUPLES_OK) return failure(conn, r.get(), "storing the events");
  return append_outcome(r.get(), aggregate_type, aggregate_id, expected, events.size());
}

// One libpq connection, re-established when found broken.
class connection {
 public:
  explicit connection(const postgres_store_options& options) : options_(options) {
    if (auto ok = connect(); !ok) throw exception(ok.error());
  }
  struct on_first_use_t {};
  static constexpr on_first_use_t on_first_use{};
  /// Connects on the first get() or query() instead: for a connection few stores use.
  connection(const postgres_store_options& options, on_first_use_t) : options_(options) {}
  ~connection() { PQfinish(conn_); }
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  /// One statement outside a transaction. A connection found broken (server restarted, session
  /// terminated) is re-established and the statement run once more.
  result<pg_result> query(std::string_view what, const char* sql, std::initializer_list<const char*> params = {},
                          result_format format = result_format::text) {
    auto conn = get();
    if (!conn) return conn.error();
    auto r = run(conn.value(), what, sql, params, format);
    if (r || PQstatus(conn.value()) != CONNECTION_BAD) return r;
    auto again = get();
    if (!again) return r;
    return run(again.value(), what, sql, params, format);
  }

  /// The connection, reconnected first if it broke.
  result<PGconn*> get() {
    if (conn_ != nullptr && PQstatus(conn_) == CONNECTION_OK) return conn_;
    if (auto ok = connect(); !ok) return ok.error();
    return conn_;
  }
  /// Closes the connection (left in a state it cannot be used in): the next get() makes a new one.
  void drop() noexcept {
    PQfinish(conn_);
    conn_ = nullptr;
  }
  std::mutex mu;

 private:
  result<void> connect() {
    PQfinish(conn_);
    const std::string timeout = std::to_string(options_.connect_timeout.count());
    const char* keys[] = {"dbname", "connect_timeout", "application_name", nullptr};
    const char* values[] = {options_.dsn.c_str(), timeout.c_str(), "eventbus", nullptr};
    conn_ = PQconnectdbParams(keys, values, /*expand_dbname=*/1);
    if (conn_ == nullptr || PQstatus(conn_) != CONNECTION_OK) {
      std::string why = conn_ ? PQerrorMessage(conn_) : "out of memory";
      while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
      PQfinish(conn_);  // a failed attempt is still an allocated connection (and a throwing
      conn_ = nullptr;  // constructor never reaches the destructor that would free it)
      return error(errc::store_failed, "cannot connect to PostgreSQL: " + why);
    }
    // Quiet notices ("relation already exists, skipping") instead of printing them to stderr.
    PQsetNoticeProcessor(conn_, [](void*, const char*) {}, nullptr);
    if (options_.read_only)  // the server refuses every write of this session, whatever asks for it
      if (auto ro = run(conn_, "opening read-only", "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"); !ro) {
        PQfinish(conn_);
        conn_ = nullptr;
        return ro.error();
      }
    return {};
  }

  postgres_store_options options_;
  PGconn* conn_ = nullptr;
};

result<void> in_transaction(PGconn* conn, const std::function<result<void>()>& body, const char* begin = "BEGIN") {
  if (auto begun = run(conn, "BEGIN", begin); !begun) return begun.error();
  auto done = body();
  if (!done) {
    (void)run(conn, "ROLLBACK", "ROLLBACK");
    return done;
  }
  if (auto committed = run(conn, "COMMIT", "COMMIT"); !committed) return committed.error();
  return {};
}

class postgres_event_store final : public detail::checked_store, public detail::outbox_row_reader {
 public:
  explicit postgres_event_store(const postgres_store_options& options)
      : checked_store(options.metrics),
        read_only_(options.read_only),
        writer_(options),
        reader_(options),
        lease_(options),
        ahead_(options) {
    if (options.read_only) {
      const std::lock_guard lock(reader_.mu);
      if (auto ok = check_schema(); !ok) throw exception(ok.error());
      return;
    }
    const std::lock_guard lock(writer_.mu);
    if (auto migrated = migrate(); !migrated) throw exception(migrated.error());
  }

  result<append_result> store_events(std::string_view aggregate_type, std::string_view aggregate_id,
                                     std::int64_t expected_version, std::span<const event> events) override {
    const std::lock_guard lock(writer_.mu);
    auto out = append_once(aggregate_type, aggregate_id, expected_version, events);
    // A connection that broke mid-way (server restarted): once more on a new one. Safe even if the
    // commit went through: the same event ids again are an idempotent no-op.
    if (!out && out.error().code() == errc::store_failed && broke_)
      out = append_once(aggregate_type, aggregate_id, expected_version, events);
    return out;
  }

  // One statement, the function call, in its own implicit transaction: one round trip per
  // append. The function takes the append lock, held to the commit; the insert runs only when the
  // checks pass, so a conflict commits an empty transaction, and an error rolls it all back.
  result<append_result> append_once(std::string_view aggregate_type, std::string_view aggregate_id,
                                    std::int64_t expected_version, std::span<const event> events) {
    auto got = writer_.get();
    if (!got) return got.error();
    // The call must be its own transaction: one left open on this connection (by a failure this
    // code did not foresee) would take the append in, hold the append lock and never commit.
    if (PQtransactionStatus(got.value()) != PQTRANS_IDLE) {
      writer_.drop();
      got = writer_.get();
      if (!got) return got.error();
    }
    auto out = append_rows(got.value(), aggregate_type, aggregate_id, expected_version, events);
    broke_ = PQstatus(got.value()) == CONNECTION_BAD;
    return out;
  }

  result<void> load(std::string_view aggregate_type, std::string_view aggregate_id, std::int64_t from_version,
                    const stored_event_visitor& fn) override {
    if (auto ok = detail::check_aggregate(aggregate_type, aggregate_id); !ok) return ok;
    read_filter filter{.aggregate_type = std::string(aggregate_type), .aggregate_id = std::string(aggregate_id)};
    return page_through(filter, std::max<std::int64_t>(from_version, 1), fn);
  }

  result<void> read_all(const read_filter& filter, const stored_event_visitor& fn) override {
    if (auto ok = detail::check_filter(filter); !ok) return ok;
    return page_through(filter, 0, fn);
  }

  result<std::int64_t> version_of(std::string_view aggregate_type, std::string_view aggregate_id) override {
    if (auto ok = detail::check_aggregate(aggregate_type, aggregate_id); !ok) return ok.error();
    const std::lock_guard lock(reader_.mu);
    const std::string type(aggregate_type), id(aggregate_id);
    auto r = reader_.query("reading the aggregate's version",
                 "SELECT COALESCE(MAX(aggregate_version), 0) FROM event_store WHERE aggregate_type = $1 AND aggregate_id = $2",
                 {type.c_str(), id.c_str()});
    if (!r) return r.error();
    return to_int(r.value().get(), 0, 0);
  }

  result<std::vector<stored_event>> unpublished(std::size_t limit, std::int64_t after_position) override {
    const std::lock_guard lock(reader_.mu);
    const std::string n = std::to_string(limit), after = std::to_string(after_position);
    auto r = reader_.query("reading the outbox",
                 "SELECT e.position, e.aggregate_version, e.envelope FROM (SELECT position FROM eventbus_outbox "
                 "WHERE position > $2::bigint ORDER BY position LIMIT $1::bigint) o JOIN event_store e "
                 "ON e.position = o.position ORDER BY o.position",
                 {n.c_str(), after.c_str()});
    if (!r) return r.error();
    std::vector<stored_event> out;
    const PGresult* rows = r.value().get();
    out.reserve(static_cast<std::size_t>(PQntuples(rows)));
    for (int i = 0; i < PQntuples(rows); ++i) {
      auto row = detail::stored_row(to_int(rows, i, 0), to_int(rows, i, 1),
                                    std::string_view(PQgetvalue(rows, i, 2), static_cast<std::size_t>(PQgetlength(rows, i, 2))));
      if (!row) return row.error();
      out.push_back(std::move(row).value());
    }
    return out;
  }

  // The positions first, then their rows: a join of the two tables under one LIMIT was planned as
  // a merge join that walked event_store's index from its first position on every read (the relay
  // slowed as the store grew); this is at most `limit` index lookups wherever the outbox stands.
  // In binary: the position and time as the server keeps them (converting them to text, the time
  // through numeric arithmetic, was a part of every row's cost).
  static constexpr const char* outbox_read_sql =
      "SELECT e.position, e.occurred_at, e.event_id, e.event_type, "
      "e.aggregate_type, e.aggregate_id, e.correlation_id, e.envelope FROM (SELECT position FROM "
      "eventbus_outbox WHERE position > $2::bigint ORDER BY position LIMIT $1::bigint) o "
      "JOIN event_store e ON e.position = o.position ORDER BY o.position";

  // The relay's reads, one batch ahead: a full batch means more waits, so the next batch's query
  // is sent before this one is returned, and the server reads it while the relay produces this
  // one. The read was most of the relay's time, waited for (pg_stat_statements: 1.6 of 2.75 s at
  // 300,000 events). It returns what a read made when it was sent would have: positions commit in
  // order, so rows committed later are above it and come with the next read; rows marked or
  // parked since are sent again, as after any crash of a relay (at least once), and a read ahead
  // older than a second is not used. Asked with another limit or position (the relay's cursor
  // went back after a failure), it is dropped; failed or empty, the read is made again. The relay
  // drops it before any wait (forget_read_ahead), so that no query stays open on the server. On a connection of its own, made on first use.
  result<void> unpublished_rows(std::size_t limit, std::int64_t after_position, detail::outbox_rows& out) override {
    out.clear();
    const std::lock_guard lock(ahead_.mu);
    pg_result got;
    if (ahead_.pending) {
      // Older than a second, it may hold rows marked since by another relay that led meanwhile
      // (a read ahead is normally taken within milliseconds).
      const bool asked = ahead_.limit == limit && ahead_.after == after_position &&
                         std::chrono::steady_clock::now() - ahead_.sent_at < std::chrono::seconds(1);
      pg_result early = collect_ahead();
      // Empty, it may be older than rows appended since: read again (the outbox was drained: rare).
      if (asked && early && PQresultStatus(early.get()) == PGRES_TUPLES_OK && PQntuples(early.get()) > 0)
        got = std::move(early);
    }
    if (!got) {
      const std::string n = std::to_string(limit), after = std::to_string(after_position);
      auto r = ahead_.conn.query("reading the outbox", outbox_read_sql, {n.c_str(), after.c_str()}, result_format::binary);
      if (!r) return r.error();
      got = std::move(r).value();
    }
    const PGresult* rows = got.get();
    const auto text = [&](int i, int col) {
      return std::string_view(PQgetvalue(rows, i, col), static_cast<std::size_t>(PQgetlength(rows, i, col)));
    };
    const int n = PQntuples(rows);
    if (n > 0 && (PQgetlength(rows, 0, 0) != 8 || PQgetlength(rows, 0, 1) != 8))
      return error(errc::store_failed, "postgresql: reading the outbox: position and time are not 8-byte binary values");
    for (int i = 0; i < n; ++i) {
      detail::record_fields columns{.event_id = text(i, 2), .event_type = text(i, 3), .aggregate_type = text(i, 4),
                                    .aggregate_id = text(i, 5), .value = text(i, 7)};
      if (!PQgetisnull(rows, i, 6)) columns.correlation_id = text(i, 6);
      out.add_stored(binary_int(rows, i, 0), binary_millis(rows, i, 1), columns);
    }
    out.seal();
    if (n > 0 && static_cast<std::size_t>(n) == limit) send_ahead(limit, binary_int(rows, n - 1, 0));
    return {};
  }

  result<void> mark_published(std::span<const std::int64_t> positions) override {
    if (positions.empty()) return {};
    // By runs of consecutive positions: a range scan each, where a list of positions was a lookup
    // each (a third of the mark's time).
    array_literal firsts, lasts;
    for (const auto& run : detail::consecutive_runs(positions)) {
      firsts.add(run.first);
      lasts.add(run.last);
    }
    const std::lock_guard lock(writer_.mu);
    auto r = writer_.query("marking events published",
                 "WITH marked AS (DELETE FROM eventbus_outbox o USING unnest($1::bigint[], $2::bigint[]) AS r(lo, hi) "
                 "WHERE o.position BETWEEN r.lo AND r.hi RETURNING 1) "
                 "UPDATE eventbus_outbox_state SET settled = settled + (SELECT count(*) FROM marked) WHERE id = 1",
                 {firsts.text().c_str(), lasts.text().c_str()});
    if (!r) return r.error();
    return {};
  }

  result<void> park(std::span<const std::int64_t> positions, std::string_view reason) override {
    if (positions.empty()) return {};
    array_literal list;
    for (const auto p : positions) list.add(p);
    const std::string why(reason);
    const std::lock_guard lock(writer_.mu);
    auto r = writer_.query("parking events",
                 "WITH taken AS (DELETE FROM eventbus_outbox WHERE position = ANY($1::bigint[]) RETURNING position), "
                 "parked AS (UPDATE event_store e SET parked_reason = $2 FROM taken t WHERE e.position = t.position "
                 "RETURNING 1), n AS (SELECT count(*) AS c FROM parked) "
                 "UPDATE eventbus_outbox_state SET settled = settled + n.c, parked = parked + n.c FROM n WHERE id = 1",
                 {list.text().c_str(), why.c_str()});
    if (!r) return r.error();
    return {};
  }

  result<bool> run_in_transaction(const std::function<result<bool>(store_transaction&)>& steps) override {
    const std::lock_guard lock(writer_.mu);
    auto got = writer_.get();
    if (!got) return got.error();
    PGconn* conn = got.value();
    if (auto begun = run(conn, "beginning a transaction", "BEGIN"); !begun) return begun.error();
    store_transaction tx(nullptr, conn);
    result<bool> outcome = false;
    try {
      outcome = steps(tx);
    } catch (...) {
      (void)run(conn, "ROLLBACK", "ROLLBACK");
      throw;
    }
    if (!outcome || !outcome.value()) {
      (void)run(conn, "ROLLBACK", "ROLLBACK");
      return outcome;
    }
    if (auto committed = run(conn, "committing", "COMMIT"); !committed) {
      (void)run(conn, "ROLLBACK", "ROLLBACK");
      return committed.error();
    }
    return true;
  }

  result<void> run_read(const std::function<result<void>(store_transaction&)>& steps) override {
    const std::lock_guard lock(reader_.mu);
    auto got = reader_.get();
    if (!got) return got.error();
    store_transaction tx(nullptr, got.value());
    return steps(tx);
  }

  result<int> schema_version() override {
    const std::lock_guard lock(reader_.mu);
    auto r = reader_.query("reading the schema version", "SELECT COALESCE(MAX(version), 0) FROM eventbus_schema");
    if (!r) return r.error();
    return static_cast<int>(to_int(r.value().get(), 0, 0));
  }
  int schema_version_expected() const noexcept override { return static_cast<int>(std::size(postgres_migrations)); }

  result<void> save_checkpoint_in(store_transaction& tx, std::string_view name, std::int64_t position) override {
    const std::string who(name), at = std::to_string(position);
    auto r = run(reinterpret_cast<PGconn*>(tx.postgres()), "saving a checkpoint",
                 "INSERT INTO eventbus_checkpoints (name, position) VALUES ($1, $2::bigint) ON CONFLICT (name) DO UPDATE SET "
                 "position = excluded.position, saved_at = now()",
                 {who.c_str(), at.c_str()});
    if (!r) return r.error();
    return {};
  }

  result<std::vector<detail::copied_event>> read_for_copy(std::int64_t after_position, std::size_t limit) override {
    const std::lock_guard lock(reader_.mu);
    const std::string after = std::to_string(after_position), most = std::to_string(limit);
    auto r = reader_.query("reading events to copy",
                           "SELECT position, aggregate_version, envelope, (EXTRACT(EPOCH FROM stored_at) * 1000)::bigint, "
                           "CASE WHEN EXISTS (SELECT 1 FROM eventbus_outbox o WHERE o.position = e.position) THEN 0 "
                           "WHEN parked_reason IS NOT NULL THEN 2 ELSE 1 END, "
                           "parked_reason FROM event_store e WHERE position > $1::bigint ORDER BY position LIMIT $2::bigint",
                           {after.c_str(), most.c_str()});
    if (!r) return r.error();
    const PGresult* rows = r.value().get();
    std::vector<detail::copied_event> out;
    for (int i = 0; i < PQntuples(rows); ++i) {
      auto row = detail::stored_row(to_int(rows, i, 0), to_int(rows, i, 1),
                                    std::string_view(PQgetvalue(rows, i, 2), static_cast<std::size_t>(PQgetlength(rows, i, 2))));
      if (!row) return row.error();
      out.push_back({.stored = std::move(row).value(), .stored_at_ms = to_int(rows, i, 3),
                     .published = static_cast<int>(to_int(rows, i, 4)),
                     .parked_reason = PQgetisnull(rows, i, 5) ? std::nullopt : std::optional<std::string>(PQgetvalue(rows, i, 5))});
    }
    return out;
  }

  // One transaction under the append lock, so copied positions commit in order with any append.
  result<void> write_copy(std::span<const detail::copied_event> events, std::string_view progress,
                          std::int64_t source_position) override {
    const std::lock_guard lock(writer_.mu);
    auto got = writer_.get();
    if (!got) return got.error();
    PGconn* conn = got.value();
    const std::string lock_key = std::to_string(append_lock);
    if (auto begun = run(conn, "copying events", "BEGIN"); !begun) return begun.error();
    const auto rollback = [&](error why) -> result<void> {
      (void)run(conn, "ROLLBACK", "ROLLBACK");
      return why;
    };
    if (auto locked = run(conn, "copying events", "SELECT pg_advisory_xact_lock($1::bigint)", {lock_key.c_str()}); !locked)
      return rollback(locked.error());
    // Every inserted row is queued by the outbox's trigger; the published and parked ones are
    // taken out again below.
    array_literal settled_positions;  // of the copied rows: published or parked
    std::int64_t parked = 0;
    for (const auto& e : events) {
      const auto& d = detail::event_access::data(e.stored.ev);
      const std::string version = std::to_string(e.stored.version), occurred = std::to_string(detail::epoch_millis(d.timestamp)),
                        stored_at = std::to_string(e.stored_at_ms), envelope(detail::event_access::encoded(d));
      const char* values[] = {d.event_id.c_str(), d.event_type.c_str(), d.aggregate_type.c_str(), d.aggregate_id.c_str(),
                              version.c_str(), occurred.c_str(), d.correlation_id ? d.correlation_id->c_str() : nullptr,
                              d.causation_id ? d.causation_id->c_str() : nullptr, envelope.c_str(), stored_at.c_str(),
                              e.parked_reason ? e.parked_reason->c_str() : nullptr};
      pg_result r(PQexecParams(
          conn,
          "INSERT INTO event_store (event_id, event_type, aggregate_type, aggregate_id, aggregate_version, occurred_at, "
          "correlation_id, causation_id, payload, envelope, stored_at, parked_reason) VALUES ($1, $2, $3, $4, "
          "$5::bigint, to_timestamp($6::bigint / 1000.0), $7, $8, CASE WHEN strpos($9, '\\u0000') = 0 THEN ($9::jsonb) -> "
          "'payload' END, $9, to_timestamp($10::bigint / 1000.0), $11) RETURNING position",
          11, nullptr, values, nullptr, nullptr, 0));
      if (!r || PQresultStatus(r.get()) != PGRES_TUPLES_OK) return rollback(failure(conn, r.get(), "copying event " + d.event_id));
      if (e.published != 0) settled_positions.add(to_int(r.get(), 0, 0));
      parked += e.published == 2 ? 1 : 0;
    }
    // Settled: what the delete took out of the queue (what the trigger put there), not what was
    // meant to be: the count follows the table.
    const std::string taken_out = settled_positions.text();
    auto dequeued = run(conn, "copying events", "DELETE FROM eventbus_outbox WHERE position = ANY($1::bigint[])",
                        {taken_out.c_str()});
    if (!dequeued) return rollback(dequeued.error());
    const std::string done = PQcmdTuples(dequeued.value().get()), refused = std::to_string(parked), name(progress),
                      at = std::to_string(source_position);
    if (auto counted = run(conn, "copying events",
                           "UPDATE eventbus_outbox_state SET settled = settled + $1::bigint, parked = parked + "
                           "$2::bigint WHERE id = 1",
                           {done.c_str(), refused.c_str()});
        !counted)
      return rollback(counted.error());
    if (auto saved = run(conn, "copying events",
                         "INSERT INTO eventbus_checkpoints (name, position) VALUES ($1, $2::bigint) ON CONFLICT (name) DO "
                         "UPDATE SET position = excluded.position, saved_at = now()",
                         {name.c_str(), at.c_str()});
        !saved)
      return rollback(saved.error());
    if (auto committed = run(conn, "copying events", "COMMIT"); !committed) return rollback(committed.error());
    return {};
  }

  result<std::optional<std::string>> event_id_at_or_before(std::int64_t position) override {
    const std::lock_guard lock(reader_.mu);
    const std::string at = std::to_string(position);
    auto r = reader_.query("finding an event by position",
                           "SELECT event_id FROM event_store WHERE position <= $1::bigint ORDER BY position DESC LIMIT 1",
                           {at.c_str()});
    if (!r) return r.error();
    if (PQntuples(r.value().get()) == 0) return std::optional<std::string>();
    return std::optional<std::string>(PQgetvalue(r.value().get(), 0, 0));
  }

  result<std::optional<std::int64_t>> position_of(std::string_view event_id) override {
    const std::lock_guard lock(reader_.mu);
    const std::string id(event_id);
    auto r = reader_.query("finding an event by id", "SELECT position FROM event_store WHERE event_id = $1", {id.c_str()});
    if (!r) return r.error();
    if (PQntuples(r.value().get()) == 0) return std::optional<std::int64_t>();
    return std::optional<std::int64_t>(to_int(r.value().get(), 0, 0));
  }

  result<std::int64_t> last_position() override {
    const std::lock_guard lock(reader_.mu);
    auto r = reader_.query("reading the last position", "SELECT COALESCE(MAX(position), 0) FROM event_store");
    if (!r) return r.error();
    return to_int(r.value().get(), 0, 0);
  }

  result<std::int64_t> load_checkpoint(std::string_view name) override {
    if (name.empty()) return error(errc::invalid_argument, "must not be empty", "name");
    const std::lock_guard lock(reader_.mu);
    const std::string who(name);
    auto r = reader_.query("reading a checkpoint", "SELECT position FROM eventbus_checkpoints WHERE name = $1", {who.c_str()});
    if (!r) return r.error();
    return PQntuples(r.value().get()) == 0 ? std::int64_t{0} : to_int(r.value().get(), 0, 0);
  }

  result<void> save_checkpoint(std::string_view name, std::int64_t position) override {
    if (name.empty()) return error(errc::invalid_argument, "must not be empty", "name");
    if (position < 0) return error(errc::invalid_argument, "must be >= 0", "position");
    const std::lock_guard lock(writer_.mu);
    const std::string who(name), at = std::to_string(position);
    auto r = writer_.query("saving a checkpoint",
                           "INSERT INTO eventbus_checkpoints (name, position) VALUES ($1, $2::bigint) ON CONFLICT (name) "
                           "DO UPDATE SET position = excluded.position, saved_at = now()",
                           {who.c_str(), at.c_str()});
    if (!r) return r.error();
    return {};
  }

  // The version check and the upsert in one statement: events are never deleted, so the version
  // it reads can only have grown by the time it commits.
  result<bool> save_snapshot(const snapshot& s) override {
    if (auto ok = detail::check_snapshot(s); !ok) return ok.error();
    if (read_only_) return error(errc::store_failed, "postgresql: the store is open read-only: snapshots are not saved");
    const std::lock_guard lock(writer_.mu);
    const std::string version = std::to_string(s.version), schema = std::to_string(s.schema_version),
                      taken = std::to_string(detail::epoch_millis(s.taken_at == time_point{} ? now_ms() : s.taken_at));
    auto r = writer_.query(
        "saving a snapshot",
        "WITH stored AS (SELECT COALESCE(MAX(aggregate_version), 0) AS v FROM event_store "
        "WHERE aggregate_type = $1 AND aggregate_id = $2), "
        "saved AS (INSERT INTO eventbus_snapshots (aggregate_type, aggregate_id, version, schema_version, state, taken_at) "
        "SELECT $1, $2, $3::bigint, $4::bigint, $5, to_timestamp($6::bigint / 1000.0) FROM stored WHERE $3::bigint <= stored.v "
        "ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE SET version = excluded.version, schema_version = "
        "excluded.schema_version, state = excluded.state, taken_at = excluded.taken_at WHERE excluded.version >= "
        "eventbus_snapshots.version OR excluded.schema_version <> eventbus_snapshots.schema_version RETURNING 1) "
        "SELECT (SELECT v FROM stored), (SELECT count(*) FROM saved)",
        {s.aggregate_type.c_str(), s.aggregate_id.c_str(), version.c_str(), schema.c_str(), s.state.c_str(), taken.c_str()});
    if (!r) return r.error();
    const auto stored = to_int(r.value().get(), 0, 0);
    if (s.version > stored) return detail::snapshot_ahead(s, stored);
    return to_int(r.value().get(), 0, 1) > 0;
  }

  result<std::optional<snapshot>> load_snapshot(std::string_view aggregate_type, std::string_view aggregate_id) override {
    if (auto ok = detail::check_aggregate(aggregate_type, aggregate_id); !ok) return ok.error();
    const std::lock_guard lock(reader_.mu);
    const std::string type(aggregate_type), id(aggregate_id);
    auto r = reader_.query("reading a snapshot",
                           "SELECT version, schema_version, state, (EXTRACT(EPOCH FROM taken_at) * 1000)::bigint FROM "
                           "eventbus_snapshots WHERE aggregate_type = $1 AND aggregate_id = $2",
                           {type.c_str(), id.c_str()});
    if (!r) return r.error();
    const PGresult* row = r.value().get();
    if (PQntuples(row) == 0) return std::optional<snapshot>();
    return std::optional<snapshot>(snapshot{
        .aggregate_type = type,
        .aggregate_id = id,
        .version = to_int(row, 0, 0),
        .schema_version = to_int(row, 0, 1),
        .state = std::string(PQgetvalue(row, 0, 2), static_cast<std::size_t>(PQgetlength(row, 0, 2))),
        .taken_at = time_point(std::chrono::milliseconds(to_int(row, 0, 3)))});
  }

  result<std::vector<snapshot>> read_snapshots(std::string_view after_type, std::string_view after_id,
                                               std::size_t limit) override {
    const std::lock_guard lock(reader_.mu);
    const std::string type(after_type), id(after_id), n = std::to_string(limit);
    auto r = reader_.query("reading snapshots to copy",
                           "SELECT aggregate_type, aggregate_id, version, schema_version, state, "
                           "(EXTRACT(EPOCH FROM taken_at) * 1000)::bigint FROM eventbus_snapshots WHERE "
                           "(aggregate_type, aggregate_id) > ($1, $2) ORDER BY aggregate_type, aggregate_id LIMIT $3::bigint",
                           {type.c_str(), id.c_str(), n.c_str()});
    if (!r) return r.error();
    const PGresult* rows = r.value().get();
    std::vector<snapshot> out;
    for (int i = 0; i < PQntuples(rows); ++i)
      out.push_back({.aggregate_type = PQgetvalue(rows, i, 0), .aggregate_id = PQgetvalue(rows, i, 1),
                     .version = to_int(rows, i, 2), .schema_version = to_int(rows, i, 3),
                     .state = std::string(PQgetvalue(rows, i, 4), static_cast<std::size_t>(PQgetlength(rows, i, 4))),
                     .taken_at = time_point(std::chrono::milliseconds(to_int(rows, i, 5)))});
    return out;
  }

  result<std::vector<checkpoint>> checkpoints() override {
    const std::lock_guard lock(reader_.mu);
    auto r = reader_.query("reading the checkpoints",
                           "SELECT name, position, (EXTRACT(EPOCH FROM saved_at) * 1000)::bigint FROM eventbus_checkpoints "
                           "ORDER BY name");
    if (!r) return r.error();
    std::vector<checkpoint> out;
    for (int row = 0; row < PQntuples(r.value().get()); ++row)
      out.push_back({.name = PQgetvalue(r.value().get(), row, 0), .position = to_int(r.value().get(), row, 1),
                     .saved_at = time_point(std::chrono::milliseconds(to_int(r.value().get(), row, 2)))});
    return out;
  }

  // The rows counted and settled, plus the rows above counted_through, in one snapshot (see
  // backlog_without_appends). A writable store first moves counted_through up to the last row, so
  // that the next read counts only what was appended since. That move only saves later reads
  // work: it is skipped while the writer is busy (an append, a caller's transaction) and its
  // failure (a database gone read-only) leaves the read below exact.
  result<outbox_backlog> backlog() override {
    if (std::unique_lock writing(writer_.mu, std::try_to_lock); writing.owns_lock() && !read_only_)
      (void)writer_.query("counting the outbox backlog",
                          "UPDATE eventbus_outbox_state s SET counted = s.counted + (SELECT count(*) FROM event_store "
                          "WHERE position > s.counted_through AND position <= m.top), counted_through = m.top "
                          "FROM (SELECT max(position) AS top FROM event_store) m WHERE s.id = 1 AND m.top > s.counted_through");
    const std::lock_guard lock(reader_.mu);
    // The oldest queued position, looked for from the last one found: the queue's low end is
    // where marks delete, and until vacuum comes by, finding its first live entry walked every
    // deleted one (38 ms after 299,000 marks; the relay reads the backlog every `interval`). The
    // lowest queued position only rises: new rows are above every stored one (positions are
    // never reused), so the last one found bounds it. Looked for from the start again once a
    // minute: a row put back below it by hand, or marks lost by a restore, are found then.
    const auto now = std::chrono::steady_clock::now();
    if (now - oldest_hint_since_ >= std::chrono::minutes(1)) {
      oldest_queued_hint_ = 0;
      oldest_hint_since_ = now;
    }
    const std::string from = std::to_string(oldest_queued_hint_);
    auto r = reader_.query("reading the outbox backlog",
                           "SELECT counted + (SELECT count(*) FROM event_store WHERE position > counted_through) - settled, "
                           "(SELECT (EXTRACT(EPOCH FROM stored_at) * 1000)::bigint FROM event_store WHERE position = q.low), "
                           "parked, q.low FROM eventbus_outbox_state, (SELECT min(position) AS low FROM eventbus_outbox "
                           "WHERE position >= $1::bigint) q WHERE id = 1",
                           {from.c_str()});
    if (!r) return r.error();
    const PGresult* row = r.value().get();
    outbox_backlog out{.events = to_int(row, 0, 0), .parked = to_int(row, 0, 2)};
    if (!PQgetisnull(row, 0, 3)) oldest_queued_hint_ = to_int(row, 0, 3);
    if (!PQgetisnull(row, 0, 1)) out.oldest = time_point(std::chrono::milliseconds(to_int(row, 0, 1)));
    return out;
  }

  // The lease is a row judged by its renewals (relay_lease.hpp), on a connection of its own so
  // that a long append or read does not delay its renewal.
  result<bool> hold_relay_lease(std::string_view owner, std::chrono::milliseconds ttl) override {
    const std::lock_guard lock(lease_.mu);
    lease_statements ops{lease_};
    return lease_judge_.hold(owner, ttl, ops);
  }

  void release_relay_lease(std::string_view owner) noexcept override {
    const std::lock_guard lock(lease_.mu);
    const std::string who(owner);
    (void)lease_.query("releasing the relay lease", "DELETE FROM eventbus_relay_lease WHERE owner = $1", {who.c_str()});
  }

  result<void> check() override {
    const std::lock_guard lock(reader_.mu);
    if (auto r = reader_.query("check", "SELECT 1"); !r) return r.error();
    return {};
  }

  std::string_view backend() const noexcept override { return "postgresql"; }

 private:
  // The relay lease's statements for relay_lease_judge (lease_.mu held).
  struct lease_statements {
    connection& conn;

    result<std::optional<detail::lease_row>> read() {
      auto r = conn.query("reading the relay lease", "SELECT owner, renewals FROM eventbus_relay_lease WHERE id = 1");
      if (!r) return r.error();
      if (PQntuples(r.value().get()) == 0) return std::optional<detail::lease_row>();
      return std::optional<detail::lease_row>(detail::lease_row{PQgetvalue(r.value().get(), 0, 0), to_int(r.value().get(), 0, 1)});
    }
    result<bool> insert(std::string_view owner) {
      const std::string who(owner);
      return changed(conn.query("taking the relay lease",
                                "INSERT INTO eventbus_relay_lease (id, owner, renewals) VALUES (1, $1, 0) "
                                "ON CONFLICT (id) DO NOTHING", {who.c_str()}));
    }
    result<bool> renew(std::string_view owner) {
      const std::string who(owner);
      return changed(conn.query("renewing the relay lease",
                                "UPDATE eventbus_relay_lease SET renewals = renewals + 1, renewed_at = now() "
                                "WHERE id = 1 AND owner = $1", {who.c_str()}));
    }
    result<bool> take(std::string_view owner, const detail::lease_row& seen) {
      const std::string who(owner), renewals = std::to_string(seen.renewals);
      return changed(conn.query("taking the relay lease",
                                "UPDATE eventbus_relay_lease SET owner = $1, renewals = 0, renewed_at = now() "
                                "WHERE id = 1 AND owner = $2 AND renewals = $3::bigint",
                                {who.c_str(), seen.owner.c_str(), renewals.c_str()}));
    }
    static result<bool> changed(result<pg_result> r) {
      if (!r) return r.error();
      return std::string_view(PQcmdTuples(r.value().get())) != "0";
    }
  };

  // Reading only: the database must hold eventbus's tables; nothing is created or migrated.
  result<void> check_schema() {
    auto r = reader_.query("reading the schema version", "SELECT MAX(version) FROM eventbus_schema");
    if (!r) return error(errc::store_failed, "the database is not an eventbus event store: " + r.error().message());
    if (PQgetisnull(r.value().get(), 0, 0)) return error(errc::store_failed, "the database is not an eventbus event store: no schema version");
    return {};
  }

  result<void> migrate() {
    auto conn = writer_.get();
    if (!conn) return conn.error();
    const std::string key = std::to_string(migrate_lock), append_key = std::to_string(append_lock);
    return in_transaction(conn.value(), [&]() -> result<void> {
      // One migrator at a time, whatever number of instances start together.
      if (auto locked = run(conn.value(), "migrating", "SELECT pg_advisory_xact_lock($1::bigint)", {key.c_str()}); !locked)
        return locked.error();
      if (auto made = run(conn.value(), "migrating", "CREATE TABLE IF NOT EXISTS eventbus_schema (version INTEGER NOT NULL)");
          !made)
        return made.error();
      auto version = run(conn.value(), "migrating", "SELECT COALESCE(MAX(version), 0) FROM eventbus_schema");
      if (!version) return version.error();
      const auto at_version = static_cast<std::size_t>(to_int(version.value().get(), 0, 0));
      // And no append while migrating, taken before any migration locks a table an append waits
      // on (else an append holding this lock and a migration holding the table wait on each
      // other): the tenth migration counts the rows as they stand.
      if (at_version < std::size(postgres_migrations))
        if (auto locked = run(conn.value(), "migrating", "SELECT pg_advisory_xact_lock($1::bigint)", {append_key.c_str()});
            !locked)
          return locked.error();
      for (auto v = at_version; v < std::size(postgres_migrations); ++v) {
        if (auto applied = run(conn.value(), "migrating", postgres_migrations[v]); !applied) return applied.error();
        const std::string next = std::to_string(v + 1);
        if (auto bumped = run(conn.value(), "migrating", "INSERT INTO eventbus_schema (version) VALUES ($1::int)", {next.c_str()});
            !bumped)
          return bumped.error();
      }
      return {};
    });
  }

  // Pages by position (read_all) or by version (load, from_version > 0), a page per query.
  result<void> page_through(const read_filter& filter, std::int64_t from_version, const stored_event_visitor& fn) {
    const bool by_version = from_version > 0;
    std::string sql = "SELECT position, aggregate_version, envelope FROM event_store WHERE ";
    sql += by_version ? "aggregate_version >= $1::bigint" : "position > $1::bigint";
    sql += " AND ($2::bigint IS NULL OR occurred_at >= to_timestamp($2::bigint / 1000.0))";
    sql += " AND ($3::text IS NULL OR event_type = $3) AND ($4::text IS NULL OR aggregate_type = $4)";
    sql += " AND ($5::text IS NULL OR aggregate_id = $5)";
    sql += by_version ? " ORDER BY aggregate_version" : " ORDER BY position";
    sql += " LIMIT $6::bigint";
    const auto page_size = static_cast<std::int64_t>(std::max<std::size_t>(filter.page_size, 1));
    const std::string limit = std::to_string(page_size);
    const std::optional<std::string> from_time =
        filter.from_time ? std::optional<std::string>(std::to_string(detail::epoch_millis(*filter.from_time))) : std::nullopt;
    const auto param = [](const std::optional<std::string>& v) { return v ? v->c_str() : nullptr; };
    for (std::int64_t cursor = by_version ? from_version : filter.after_position;;) {
      pg_result page;
      {
        const std::lock_guard lock(reader_.mu);
        const std::string at = std::to_string(cursor);
        auto r = reader_.query("reading events", sql.c_str(),
                     {at.c_str(), param(from_time), param(filter.event_type), param(filter.aggregate_type),
                      param(filter.aggregate_id), limit.c_str()});
        if (!r) return r.error();
        page = std::move(r).value();
      }
      const PGresult* rows = page.get();
      const int n = PQntuples(rows);
      for (int i = 0; i < n; ++i) {
        auto row = detail::stored_row(to_int(rows, i, 0), to_int(rows, i, 1),
                                      std::string_view(PQgetvalue(rows, i, 2), static_cast<std::size_t>(PQgetlength(rows, i, 2))));
        if (!row) return row.error();
        cursor = by_version ? row.value().version + 1 : row.value().position;
        if (!fn(row.value())) return {};
      }
      if (n < page_size) return {};
    }
  }

  // The next read of the outbox, sent (ahead_.mu held); nothing when it cannot be sent: the next
  // read is then made when asked.
  void send_ahead(std::size_t limit, std::int64_t after_position) {
    auto conn = ahead_.conn.get();
    if (!conn) return;
    const std::string n = std::to_string(limit), after = std::to_string(after_position);
    const char* values[] = {n.c_str(), after.c_str()};
    if (PQsendQueryParams(conn.value(), outbox_read_sql, 2, nullptr, values, nullptr, nullptr,
                          static_cast<int>(result_format::binary)) != 1)
      return;
    ahead_.pending = true;
    ahead_.limit = limit;
    ahead_.after = after_position;
    ahead_.sent_at = std::chrono::steady_clock::now();
  }

  void forget_read_ahead() noexcept override {
    const std::lock_guard lock(ahead_.mu);
    if (ahead_.pending) (void)collect_ahead();
  }

  // The read sent ahead, waited for (ahead_.mu held): its result, or none when it failed. The
  // connection is left with no result pending either way.
  pg_result collect_ahead() {
    ahead_.pending = false;
    auto conn = ahead_.conn.get();
    if (!conn) return {};
    pg_result first(PQgetResult(conn.value()));
    while (PGresult* more = PQgetResult(conn.value())) PQclear(more);
    return first;
  }

  bool read_only_ = false;
  connection writer_, reader_, lease_;
  // Under reader_.mu: a position at or below the oldest queued (backlog()), and since when it is
  // kept (looked for from the start once a minute).
  std::int64_t oldest_queued_hint_ = 0;
  std::chrono::steady_clock::time_point oldest_hint_since_{};
  struct read_ahead {
    explicit read_ahead(const postgres_store_options& options) : conn(options, connection::on_first_use) {}
    std::mutex mu;
    connection conn;
    bool pending = false;  // a read was sent on conn and its result not taken
    std::size_t limit = 0;
    std::int64_t after = 0;
    std::chrono::steady_clock::time_point sent_at{};
  } ahead_;
  bool broke_ = false;  // under writer_.mu: the last append found its connection broken
  detail::relay_lease_judge lease_judge_;
};

}  // namespace

void postgres_store_options::validate() const {
  if (dsn.empty()) throw exception(error(errc::invalid_argument, "must not be empty", "dsn"));
  if (connect_timeout.count() <= 0) throw exception(error(errc::invalid_argument, "must be positive", "connect_timeout"));
}

std::shared_ptr<outbox_store> open_postgres_store(const postgres_store_options& options) {
  options.validate();
  return std::make_shared<postgres_event_store>(options);
}

result<append_result> append_in_transaction(pg_conn* conn, std::string_view aggregate_type, std::string_view aggregate_id,
                                            expected_version expected, std::span<const event> events) {
  const std::int64_t expected_raw = detail::raw_version(expected);
  if (conn == nullptr) return error(errc::invalid_argument, "is null", "conn");
  if (auto ok = detail::check_append(aggregate_type, aggregate_id, expected_raw, events); !ok) return ok.error();
  if (PQtransactionStatus(conn) != PQTRANS_INTRANS)
    return error(errc::invalid_argument, "has no open transaction: BEGIN first, so your rows and the events commit together", "conn");
  // Taken here too (a transaction may take it twice): the store may have been migrated last by an
  // older eventbus, whose eventbus_append leaves the lock to its caller.
  const std::string lock = std::to_string(append_lock);
  if (auto locked = run(conn, "taking the append lock", "SELECT pg_advisory_xact_lock($1::bigint)", {lock.c_str()}); !locked)
    return locked.error();
  return append_rows(conn, aggregate_type, aggregate_id, expected_raw, events);
}

}  // namespace eventbus
