#pragma once
// The one error model of eventbus.
//
// Setup failures (a bad option, an invalid event built by the caller) throw eventbus::exception.
// Runtime outcomes (decoding bytes, publishing, delivery) are returned as values: result<T>, which
// holds either a T or an eventbus::error that says whether trying again can help.

#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <variant>

namespace eventbus {

enum class errc {
  invalid_event = 1,  // a field of an envelope breaks the contract (field() names it)
  decode_failed,      // bytes are not a JSON document at all
  payload_mismatch,   // the payload does not decode into the requested type
  invalid_topic,      // a topic name Kafka would refuse, or one that could collide
  invalid_argument,   // a bad option, pattern or handler name
  queue_full,         // backpressure: no room before the timeout (retriable)
  shut_down,          // the component no longer accepts work
  delivery_failed,    // a sink could not deliver the event (retriable: a later try may succeed)
  rejected_by_broker, // the cluster refused the record itself (too large, not authorized): final
  timed_out,          // an operation did not finish in time (retriable)
  concurrency_conflict,  // an append expected another aggregate version (the message names the current one)
  store_failed,       // the event store's database refused or could not be reached: nothing was stored
  producer_failed,    // the Kafka producer hit a fatal error (idempotence lost) and was replaced: not
                      // delivered; sending it again is the caller's call (it may come after later ones)
};

[[nodiscard]] const std::error_category& error_category() noexcept;
[[nodiscard]] std::error_code make_error_code(errc code) noexcept;

/// A failure as a value: what went wrong (code), a message for humans, and the offending field
/// of an envelope or option when there is one. Cheap to copy, safe to share between threads.
class error {
 public:
  error(errc code, std::string message, std::string field = {});

  [[nodiscard]] errc code() const noexcept { return code_; }
  [[nodiscard]] const std::string& message() const noexcept { return message_; }
  /// The envelope field or option at fault ("timestamp", "payload.total"), or empty.
  [[nodiscard]] const std::string& field() const noexcept { return field_; }
  /// True when the same operation may succeed later without any change (backpressure, timeouts).
  [[nodiscard]] bool retriable() const noexcept;
  /// "<field>: <message>" or just the message.
  [[nodiscard]] std::string to_string() const;

  friend bool operator==(const error&, const error&) = default;

 private:
  errc code_;
  std::string message_;
  std::string field_;
};

/// Thrown for setup failures, and by result<T>::value() on an error.
class exception : public std::runtime_error {
 public:
  explicit exception(eventbus::error err);
  [[nodiscard]] const eventbus::error& error() const noexcept { return error_; }

 private:
  eventbus::error error_;
};

/// Either a T or an eventbus::error. Marked [[nodiscard]]: an ignored outcome is a lost failure.
template <class T>
class [[nodiscard]] result {
 public:
  result(T value) : state_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
  result(eventbus::error err) : state_(std::in_place_index<1>, std::move(err)) {}  // NOLINT

  [[nodiscard]] bool ok() const noexcept { return state_.index() == 0; }
  [[nodiscard]] bool has_value() const noexcept { return ok(); }
  explicit operator bool() const noexcept { return ok(); }

  /// The value; throws eventbus::exception carrying the error when there is none.
  [[nodiscard]] T& value() & { return check(), std::get<0>(state_); }
  [[nodiscard]] const T& value() const& { return check(), std::get<0>(state_); }
  [[nodiscard]] T&& value() && { return check(), std::get<0>(std::move(state_)); }

  /// Read like a pointer, as std::expected and absl::StatusOr are: `*r`, `r->field`. Checked, as
  /// value() is (std::expected's are not): on an error they throw eventbus::exception.
  [[nodiscard]] T& operator*() & { return value(); }
  [[nodiscard]] const T& operator*() const& { return value(); }
  [[nodiscard]] T&& operator*() && { return std::move(*this).value(); }
  [[nodiscard]] T* operator->() { return &value(); }
  [[nodiscard]] const T* operator->() const { return &value(); }

  /// The error; precondition: !ok() (throws std::logic_error otherwise).
  [[nodiscard]] const eventbus::error& error() const {
    if (ok()) throw std::logic_error("eventbus::result::error() called on a success");
    return std::get<1>(state_);
  }

 private:
  void check() const {
    if (!ok()) throw exception(std::get<1>(state_));
  }
  std::variant<T, eventbus::error> state_;
};

/// The outcome of an operation that yields nothing but success or an error.
template <>
class [[nodiscard]] result<void> {
 public:
  result() = default;
  result(eventbus::error err) : error_(std::move(err)) {}  // NOLINT: implicit by design

  [[nodiscard]] bool ok() const noexcept { return !error_.has_value(); }
  [[nodiscard]] bool has_value() const noexcept { return ok(); }
  explicit operator bool() const noexcept { return ok(); }
  /// Throws eventbus::exception carrying the error, if there is one.
  void value() const {
    if (error_) throw exception(*error_);
  }
  [[nodiscard]] const eventbus::error& error() const {
    if (!error_) throw std::logic_error("eventbus::result::error() called on a success");
    return *error_;
  }

 private:
  std::optional<eventbus::error> error_;
};

}  // namespace eventbus

template <>
struct std::is_error_code_enum<eventbus::errc> : std::true_type {};
