#include "eventbus/error.hpp"

namespace eventbus {
namespace {

class category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "eventbus"; }
  std::string message(int code) const override {
    switch (static_cast<errc>(code)) {
      case errc::invalid_event: return "invalid event";
      case errc::decode_failed: return "not a decodable event";
      case errc::payload_mismatch: return "payload does not match the requested type";
      case errc::invalid_topic: return "invalid topic name";
      case errc::invalid_argument: return "invalid argument";
      case errc::queue_full: return "queue full";
      case errc::shut_down: return "shut down";
      case errc::delivery_failed: return "delivery failed";
      case errc::rejected_by_broker: return "rejected by the broker";
      case errc::timed_out: return "timed out";
      case errc::concurrency_conflict: return "concurrency conflict";
      case errc::store_failed: return "event store failed";
      case errc::producer_failed: return "Kafka producer failed";
    }
    return "unknown eventbus error";
  }
};

}  // namespace

const std::error_category& error_category() noexcept {
  static const category instance;
  return instance;
}

std::error_code make_error_code(errc code) noexcept { return {static_cast<int>(code), error_category()}; }

error::error(errc code, std::string message, std::string field)
    : code_(code), message_(std::move(message)), field_(std::move(field)) {}

bool error::retriable() const noexcept {
  return code_ == errc::queue_full || code_ == errc::timed_out || code_ == errc::delivery_failed;
}

std::string error::to_string() const { return field_.empty() ? message_ : field_ + ": " + message_; }

exception::exception(eventbus::error err) : std::runtime_error(err.to_string()), error_(std::move(err)) {}

}  // namespace eventbus
