// Parked records in the store's database (parked_records.hpp). Both backends, each statement
// with bound parameters; bytes go to PostgreSQL as hex (decode($n, 'hex')) so every parameter
// and result stays text.

#include "store/parked_records.hpp"

#include <libpq-fe.h>
#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include <cstring>
#include <functional>

#include "eventbus/store/inbox.hpp"
#include "store/append_rules.hpp"

namespace eventbus::detail {
namespace {

void put_u32(std::string& out, std::size_t n) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
}

bool get_u32(std::string_view& in, std::size_t& n) {
  if (in.size() < 4) return false;
  n = 0;
  for (int i = 0; i < 4; ++i) n |= static_cast<std::size_t>(static_cast<unsigned char>(in[static_cast<std::size_t>(i)])) << (8 * i);
  in.remove_prefix(4);
  return true;
}

std::string pending_json(const std::vector<std::string>& names) {
  return nlohmann::json(names).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::vector<std::string> pending_of(std::string_view text) {
  const auto parsed = nlohmann::json::parse(text, nullptr, false);
  std::vector<std::string> names;
  if (parsed.is_array())
    for (const auto& n : parsed)
      if (n.is_string()) names.push_back(n.get<std::string>());
  return names;
}

std::string to_hex(std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const unsigned char c : bytes) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

std::string from_hex(std::string_view hex) {  // PostgreSQL's encode(x, 'hex'): lower case, no prefix
  const auto nibble = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
  std::string out;
  out.reserve(hex.size() / 2);
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(static_cast<char>(nibble(hex[i]) * 16 + nibble(hex[i + 1])));
  return out;
}

// --- SQLite

class sqlite_step {
 public:
  sqlite_step(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK) stmt_ = nullptr;
  }
  ~sqlite_step() { sqlite3_finalize(stmt_); }
  sqlite_step(const sqlite_step&) = delete;
  sqlite_step& operator=(const sqlite_step&) = delete;
  [[nodiscard]] bool ok() const noexcept { return stmt_ != nullptr; }
  sqlite_step& text(int i, std::string_view v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  sqlite_step& blob(int i, std::string_view v, bool null) {
    if (null)
      sqlite3_bind_null(stmt_, i);
    else
      sqlite3_bind_blob(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  sqlite_step& integer(int i, std::int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  int step() { return sqlite3_step(stmt_); }
  void reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  [[nodiscard]] std::int64_t column_integer(int i) const { return sqlite3_column_int64(stmt_, i); }
  [[nodiscard]] bool column_null(int i) const { return sqlite3_column_type(stmt_, i) == SQLITE_NULL; }
  [[nodiscard]] std::string column_bytes(int i) const {
    const void* data = sqlite3_column_blob(stmt_, i);
    const int size = sqlite3_column_bytes(stmt_, i);
    return data == nullptr ? std::string() : std::string(static_cast<const char*>(data), static_cast<std::size_t>(size));
  }
  [[nodiscard]] error failure(std::string_view what) const {
    return error(errc::store_failed, "sqlite: " + std::string(what) + ": " + sqlite3_errmsg(db_));
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

constexpr const char* columns =
    "group_id, topic, partition, source_offset, record_key, stage, due_at_ms, pending, attempts, reason, "
    "parked_at_ms";
constexpr const char* byte_columns = ", value, headers";

parked_record sqlite_row(const sqlite_step& s, bool with_bytes) {
  parked_record r;
  r.group = s.column_bytes(0);
  r.topic = s.column_bytes(1);
  r.partition = static_cast<std::int32_t>(s.column_integer(2));
  r.offset = s.column_integer(3);
  r.null_key = s.column_null(4);
  r.key = s.column_bytes(4);
  r.stage = static_cast<int>(s.column_integer(5));
  r.due_ms = s.column_integer(6);
  r.pending = pending_of(s.column_bytes(7));
  r.attempts = static_cast<int>(s.column_integer(8));
  r.reason = s.column_bytes(9);
  r.parked_ms = s.column_integer(10);
  if (with_bytes) {
    r.null_value = s.column_null(11);
    r.value = s.column_bytes(11);
    r.headers = decode_headers(s.column_bytes(12)).value_or(record_headers{});
  }
  return r;
}

// --- PostgreSQL

struct pg_result_deleter {
  void operator()(PGresult* r) const noexcept { PQclear(r); }
};
using pg_result = std::unique_ptr<PGresult, pg_result_deleter>;

result<pg_result> pg_exec(store_transaction& tx, std::string_view what, const char* sql, const std::vector<std::string>& params,
                          const std::vector<bool>& null = {}) {
  auto* conn = reinterpret_cast<PGconn*>(tx.postgres());
  std::vector<const char*> values;
  for (std::size_t i = 0; i < params.size(); ++i) values.push_back(i < null.size() && null[i] ? nullptr : params[i].c_str());
  pg_result r(PQexecParams(conn, sql, static_cast<int>(values.size()), nullptr, values.data(), nullptr, nullptr, 0));
  const auto status = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK)
    return error(errc::store_failed, "postgresql: " + std::string(what) + ": " + PQerrorMessage(conn));
  return r;
}

parked_record pg_row(PGresult* r, int row, bool with_bytes) {
  const auto text = [&](int col) { return std::string(PQgetvalue(r, row, col), static_cast<std::size_t>(PQgetlength(r, row, col))); };
  parked_record p;
  p.group = text(0);
  p.topic = text(1);
  p.partition = static_cast<std::int32_t>(std::stol(text(2)));
  p.offset = std::stoll(text(3));
  p.null_key = PQgetisnull(r, row, 4) != 0;
  p.key = from_hex(text(4));
  p.stage = std::stoi(text(5));
  p.due_ms = std::stoll(text(6));
  p.pending = pending_of(text(7));
  p.attempts = std::stoi(text(8));
  p.reason = text(9);
  p.parked_ms = std::stoll(text(10));
  if (with_bytes) {
    p.null_value = PQgetisnull(r, row, 11) != 0;
    p.value = from_hex(text(11));
    p.headers = decode_headers(from_hex(text(12))).value_or(record_headers{});
  }
  return p;
}

constexpr const char* pg_columns =
    "group_id, topic, partition, source_offset, encode(record_key, 'hex'), stage, due_at_ms, pending, attempts, "
    "reason, parked_at_ms";
constexpr const char* pg_byte_columns = ", encode(value, 'hex'), encode(headers, 'hex')";

}  // namespace

std::string encode_headers(const record_headers& headers) {
  std::string out;
  put_u32(out, headers.size());
  for (const auto& [name, value] : headers) {
    put_u32(out, name.size());
    out += name;
    put_u32(out, value.size());
    out += value;
  }
  return out;
}

std::optional<record_headers> decode_headers(std::string_view bytes) {
  std::size_t count = 0;
  if (!get_u32(bytes, count) || count > bytes.size()) return std::nullopt;
  record_headers headers;
  for (std::size_t i = 0; i < count; ++i) {
    std::size_t n = 0;
    if (!get_u32(bytes, n) || n > bytes.size()) return std::nullopt;
    std::string name(bytes.substr(0, n));
    bytes.remove_prefix(n);
    if (!get_u32(bytes, n) || n > bytes.size()) return std::nullopt;
    headers.emplace_back(std::move(name), std::string(bytes.substr(0, n)));
    bytes.remove_prefix(n);
  }
  if (!bytes.empty()) return std::nullopt;
  return headers;
}

result<std::shared_ptr<parked_records>> parked_records::open(std::shared_ptr<outbox_store> store, bool for_writing) {
  if (!store) return error(errc::invalid_argument, "must not be null", "parking_store");
  auto* backend = dynamic_cast<checked_store*>(store.get());
  if (backend == nullptr)
    return error(errc::invalid_argument, "must be a store opened by open_sqlite_store or open_postgres_store",
                 "parking_store");
  auto rows = std::make_shared<parked_records>(std::move(store), backend);
  // A store that cannot take the rows (opened read-only, a read-only PostgreSQL role, a schema
  // without the table) is refused now, not at the first record to park.
  auto probe = for_writing ? backend->run_in_transaction([](store_transaction& tx) -> result<bool> {
    if (tx.sqlite() != nullptr) {
      sqlite_step probe_write(tx.sqlite(), "DELETE FROM eventbus_parked WHERE 0");
      if (!probe_write.ok() || probe_write.step() != SQLITE_DONE) return probe_write.failure("writing parked records");
      return false;  // nothing to keep
    }
    auto r = pg_exec(tx, "writing parked records", "DELETE FROM eventbus_parked WHERE false", {});
    if (!r) return r.error();
    return false;
  })
                           : result<bool>(false);
  if (!probe)
    return error(errc::invalid_argument,
                 "must be a store this process can write (not opened read-only, nor a read-only database role): " +
                     probe.error().message(),
                 "parking_store");
  return rows;
}

namespace {

result<void> insert_rows(store_transaction& tx, std::span<const parked_record> rows) {
  if (rows.empty()) return {};
  if (tx.sqlite() != nullptr) {
    sqlite_step insert(tx.sqlite(),
                       "INSERT INTO eventbus_parked (group_id, topic, partition, source_offset, record_key, value, headers, "
                       "stage, due_at_ms, pending, attempts, reason, parked_at_ms) "
                       "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) ON CONFLICT DO NOTHING");
    if (!insert.ok()) return insert.failure("parking records");
    for (const auto& r : rows) {
      const std::string headers = encode_headers(r.headers);
      insert.text(1, r.group).text(2, r.topic).integer(3, r.partition).integer(4, r.offset);
      insert.blob(5, r.key, r.null_key).blob(6, r.value, r.null_value).blob(7, headers, false);
      insert.integer(8, r.stage).integer(9, r.due_ms).text(10, pending_json(r.pending)).integer(11, r.attempts);
      insert.text(12, r.reason).integer(13, r.parked_ms);
      if (insert.step() != SQLITE_DONE) return insert.failure("parking a record");
      insert.reset();
    }
    return {};
  }
  for (const auto& r : rows) {
    auto inserted = pg_exec(
        tx, "parking a record",
        "INSERT INTO eventbus_parked (group_id, topic, partition, source_offset, record_key, value, headers, stage, "
        "due_at_ms, pending, attempts, reason, parked_at_ms) VALUES ($1, $2, $3::integer, $4::bigint, decode($5, 'hex'), "
        "decode($6, 'hex'), decode($7, 'hex'), $8::integer, $9::bigint, $10, $11::integer, $12, $13::bigint) "
        "ON CONFLICT DO NOTHING",
        {r.group, r.topic, std::to_string(r.partition), std::to_string(r.offset), to_hex(r.key), to_hex(r.value),
         to_hex(encode_headers(r.headers)), std::to_string(r.stage), std::to_string(r.due_ms), pending_json(r.pending),
         std::to_string(r.attempts), r.reason, std::to_string(r.parked_ms)},
        {false, false, false, false, r.null_key, r.null_value});
    if (!inserted) return inserted.error();
  }
  return {};
}

result<void> update_rows(store_transaction& tx, std::span<const parked_record> rows) {
  if (rows.empty()) return {};
  if (tx.sqlite() != nullptr) {
    sqlite_step update(tx.sqlite(),
                       "UPDATE eventbus_parked SET stage = ?5, due_at_ms = ?6, pending = ?7, attempts = ?8, reason = ?9 "
                       "WHERE group_id = ?1 AND topic = ?2 AND partition = ?3 AND source_offset = ?4");
    if (!update.ok()) return update.failure("rescheduling a parked record");
    for (const auto& p : rows) {
      update.text(1, p.group).text(2, p.topic).integer(3, p.partition).integer(4, p.offset);
      update.integer(5, p.stage).integer(6, p.due_ms).text(7, pending_json(p.pending)).integer(8, p.attempts).text(9, p.reason);
      if (update.step() != SQLITE_DONE) return update.failure("rescheduling a parked record");
      update.reset();
    }
    return {};
  }
  for (const auto& p : rows) {
    auto r = pg_exec(tx, "rescheduling a parked record",
                     "UPDATE eventbus_parked SET stage = $5::integer, due_at_ms = $6::bigint, pending = $7, "
                     "attempts = $8::integer, reason = $9 WHERE group_id = $1 AND topic = $2 AND partition = $3::integer "
                     "AND source_offset = $4::bigint",
                     {p.group, p.topic, std::to_string(p.partition), std::to_string(p.offset), std::to_string(p.stage),
                      std::to_string(p.due_ms), pending_json(p.pending), std::to_string(p.attempts), p.reason});
    if (!r) return r.error();
  }
  return {};
}

result<void> delete_rows(store_transaction& tx, std::string_view group, std::span<const parked_records::position> rows) {
  if (rows.empty()) return {};
  if (tx.sqlite() != nullptr) {
    sqlite_step drop(tx.sqlite(),
                     "DELETE FROM eventbus_parked WHERE group_id = ?1 AND topic = ?2 AND partition = ?3 AND source_offset = ?4");
    if (!drop.ok()) return drop.failure("deleting a parked record");
    for (const auto& p : rows) {
      drop.text(1, group).text(2, p.topic).integer(3, p.partition).integer(4, p.offset);
      if (drop.step() != SQLITE_DONE) return drop.failure("deleting a parked record");
      drop.reset();
    }
    return {};
  }
  for (const auto& p : rows) {
    auto r = pg_exec(tx, "deleting a parked record",
                     "DELETE FROM eventbus_parked WHERE group_id = $1 AND topic = $2 AND partition = $3::integer "
                     "AND source_offset = $4::bigint",
                     {std::string(group), p.topic, std::to_string(p.partition), std::to_string(p.offset)});
    if (!r) return r.error();
  }
  return {};
}

}  // namespace

result<void> parked_records::apply(std::string_view group, std::span<const parked_record> added,
                                   std::span<const parked_record> rescheduled, std::span<const position> removed) {
  if (added.empty() && rescheduled.empty() && removed.empty()) return {};
  auto done = backend_->run_in_transaction([&](store_transaction& tx) -> result<bool> {
    if (auto ok = insert_rows(tx, added); !ok) return ok.error();
    if (auto ok = update_rows(tx, rescheduled); !ok) return ok.error();
    if (auto ok = delete_rows(tx, group, removed); !ok) return ok.error();
    return true;
  });
  if (!done) return done.error();
  return {};
}

result<void> parked_records::add(std::span<const parked_record> rows) {
  return apply(rows.empty() ? std::string_view() : std::string_view(rows.front().group), rows, {}, {});
}

namespace {

// The rows a SELECT of the row columns (and the bytes, `with_bytes`) finds: `where` is the rest of
// the statement for each backend, with its parameters bound by `bind` (SQLite) or given as text in
// `params` (PostgreSQL).
result<std::vector<parked_record>> select_rows(store_transaction& tx, std::string_view what, bool with_bytes,
                                               const char* sqlite_where, const std::function<void(sqlite_step&)>& bind,
                                               const char* postgres_where, const std::vector<std::string>& params) {
  std::vector<parked_record> rows;
  if (tx.sqlite() != nullptr) {
    const std::string sql = std::string("SELECT ") + columns + (with_bytes ? byte_columns : "") + " FROM eventbus_parked " + sqlite_where;
    sqlite_step select(tx.sqlite(), sql.c_str());
    if (!select.ok()) return select.failure(what);
    bind(select);
    int rc = 0;
    while ((rc = select.step()) == SQLITE_ROW) rows.push_back(sqlite_row(select, with_bytes));
    if (rc != SQLITE_DONE) return select.failure(what);
    return rows;
  }
  const std::string sql = std::string("SELECT ") + pg_columns + (with_bytes ? pg_byte_columns : "") + " FROM eventbus_parked " + postgres_where;
  auto r = pg_exec(tx, what, sql.c_str(), params);
  if (!r) return r.error();
  for (int i = 0; i < PQntuples(r.value().get()); ++i) rows.push_back(pg_row(r.value().get(), i, with_bytes));
  return rows;
}

}  // namespace

result<std::vector<parked_record>> parked_records::of_partition(std::string_view group, std::string_view topic,
                                                                std::int32_t partition, bool with_bytes) {
  result<std::vector<parked_record>> rows = std::vector<parked_record>{};
  auto done = backend_->run_read([&](store_transaction& tx) -> result<void> {
    rows = select_rows(
        tx, "reading parked records", with_bytes,
        "WHERE group_id = ?1 AND topic = ?2 AND partition = ?3 ORDER BY source_offset",
        [&](sqlite_step& s) { s.text(1, group).text(2, topic).integer(3, partition); },
        "WHERE group_id = $1 AND topic = $2 AND partition = $3::integer ORDER BY source_offset",
        {std::string(group), std::string(topic), std::to_string(partition)});
    if (!rows) return rows.error();
    return {};
  });
  if (!done) return done.error();
  return rows;
}

result<std::optional<parked_record>> parked_records::one(std::string_view group, std::string_view topic,
                                                         std::int32_t partition, std::int64_t offset) {
  result<std::vector<parked_record>> rows = std::vector<parked_record>{};
  auto done = backend_->run_read([&](store_transaction& tx) -> result<void> {
    rows = select_rows(
        tx, "reading a parked record", true,
        "WHERE group_id = ?1 AND topic = ?2 AND partition = ?3 AND source_offset = ?4",
        [&](sqlite_step& s) { s.text(1, group).text(2, topic).integer(3, partition).integer(4, offset); },
        "WHERE group_id = $1 AND topic = $2 AND partition = $3::integer AND source_offset = $4::bigint",
        {std::string(group), std::string(topic), std::to_string(partition), std::to_string(offset)});
    if (!rows) return rows.error();
    return {};
  });
  if (!done) return done.error();
  if (rows.value().empty()) return std::optional<parked_record>{};
  return std::optional<parked_record>(std::move(rows.value().front()));
}

result<void> parked_records::reschedule(const parked_record& p) { return apply(p.group, {}, std::span(&p, 1), {}); }

result<void> parked_records::remove(std::string_view group, std::string_view topic, std::int32_t partition,
                                    std::int64_t offset) {
  const position at{std::string(topic), partition, offset};
  return apply(group, {}, {}, std::span(&at, 1));
}

result<std::vector<parked_record>> parked_records::list(std::string_view group, std::string_view topic,
                                                        std::size_t limit) {
  const auto max_rows = static_cast<std::int64_t>(std::min<std::size_t>(limit, INT64_MAX));
  result<std::vector<parked_record>> rows = std::vector<parked_record>{};
  auto done = backend_->run_read([&](store_transaction& tx) -> result<void> {
    rows = select_rows(
        tx, "listing parked records", false,
        "WHERE (?1 = '' OR group_id = ?1) AND (?2 = '' OR topic = ?2) ORDER BY group_id, topic, partition, source_offset "
        "LIMIT ?3",
        [&](sqlite_step& s) { s.text(1, group).text(2, topic).integer(3, max_rows); },
        "WHERE ($1 = '' OR group_id = $1) AND ($2 = '' OR topic = $2) ORDER BY group_id, topic, partition, source_offset "
        "LIMIT $3::bigint",
        {std::string(group), std::string(topic), std::to_string(max_rows)});
    if (!rows) return rows.error();
    return {};
  });
  if (!done) return done.error();
  return rows;
}

}  // namespace eventbus::detail
