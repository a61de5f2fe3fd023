#pragma once
// A prepared SQLite statement for the examples: values only ever go in as bound parameters (never
// pasted into the SQL, where a quote in an id would break the statement or inject another), and
// every SQLite call is checked: a failure throws std::runtime_error naming the statement and
// SQLite's reason.

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace examples {

[[noreturn]] inline void sqlite_failed(sqlite3* db, std::string_view what) {
  throw std::runtime_error(std::string(what) + ": " + sqlite3_errmsg(db));
}

class statement {
 public:
  statement(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK) sqlite_failed(db, sql);
  }
  ~statement() { sqlite3_finalize(stmt_); }
  statement(const statement&) = delete;
  statement& operator=(const statement&) = delete;

  statement& bind(int index, std::string_view text) {
    check(sqlite3_bind_text(stmt_, index, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT));
    return *this;
  }
  statement& bind(int index, std::int64_t number) {
    check(sqlite3_bind_int64(stmt_, index, number));
    return *this;
  }
  /// Runs it to its next row: true with a row to read, false when done.
  bool step() {
    const int rc = sqlite3_step(stmt_);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) sqlite_failed(db_, sqlite3_sql(stmt_));
    return rc == SQLITE_ROW;
  }
  [[nodiscard]] std::string text(int column) const {
    const auto* value = sqlite3_column_text(stmt_, column);
    return value != nullptr ? reinterpret_cast<const char*>(value) : "";
  }
  [[nodiscard]] std::int64_t integer(int column) const { return sqlite3_column_int64(stmt_, column); }

 private:
  void check(int rc) const {
    if (rc != SQLITE_OK) sqlite_failed(db_, sqlite3_sql(stmt_));
  }
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

/// A connection of one's own to `path` (created when missing), closed with the unique_ptr.
/// `busy_timeout`: how long a write waits for another connection's (the event store's) lock
/// instead of failing at once with SQLITE_BUSY.
inline std::unique_ptr<sqlite3, int (*)(sqlite3*)> open_database(const std::string& path, int busy_timeout_ms = 5000) {
  sqlite3* db = nullptr;
  const int rc = sqlite3_open(path.c_str(), &db);
  std::unique_ptr<sqlite3, int (*)(sqlite3*)> owned(db, sqlite3_close);  // sqlite3_open makes one even when it fails
  if (rc != SQLITE_OK) sqlite_failed(db, "open " + path);
  if (sqlite3_busy_timeout(db, busy_timeout_ms) != SQLITE_OK) sqlite_failed(db, "busy_timeout");
  return owned;
}

}  // namespace examples
