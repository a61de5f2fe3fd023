#pragma once
// Operating on dead-letter topics: list what is there and why, and replay records onto their
// original topic so a (now fixed) worker handles them again. Used by `eventbus dlq list|replay`.
//
//   for (const auto& d : eventbus::list_dead_letters(kafka, "app.order.order.created.dlq"))
//     std::cout << d.reason << " " << d.handler << ": " << d.error << "\n";
//   eventbus::replay_dead_letters(kafka, "app.order.order.created.dlq", {.handler = "mailer"});

#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "eventbus/error.hpp"
#include "eventbus/kafka/options.hpp"

namespace eventbus {

/// Header a replayed record carries: how many times it was replayed.
inline constexpr std::string_view replay_count_header = "x-eventbus-replay-count";
/// Header that restricts a replayed record to one handler (the others already succeeded on it).
inline constexpr std::string_view replay_handler_header = "x-eventbus-replay-handler";

struct dead_letter {
  std::int32_t partition = -1;  // position in the dead-letter topic
  std::int64_t offset = -1;
  std::string key;
  std::string value;                           // the original record's bytes
  std::map<std::string, std::string> headers;  // all of them, x-eventbus-dlq-* included
  std::string reason, error, handler, original_topic, group, failed_at;
  std::int32_t original_partition = -1;
  std::int64_t original_offset = -1;
  int attempts = 0;
};

/// Every record of `dlq_topic` (at most `limit`), oldest first per partition. errc::invalid_topic
/// for a bad name; errc::timed_out when the cluster cannot be reached.
[[nodiscard]] result<std::vector<dead_letter>> list_dead_letters(
    const kafka_options& kafka, const std::string& dlq_topic,
    std::size_t limit = std::numeric_limits<std::size_t>::max());

struct replay_options {
  std::optional<std::string> handler{};  // only records dead-lettered by this handler; replayed for it alone
  std::size_t limit = std::numeric_limits<std::size_t>::max();
};

struct replay_summary {
  std::size_t replayed = 0;
  std::size_t skipped = 0;  // other handlers', or without an original topic
};

/// Produces each selected dead letter's key and value back to its original topic, with its original
/// headers, replay_count_header incremented, and replay_handler_header when a handler was chosen.
/// Waits for every write to be acknowledged. The dead-letter topic is left as it is.
[[nodiscard]] result<replay_summary> replay_dead_letters(const kafka_options& kafka, const std::string& dlq_topic,
                                                         const replay_options& options = {});

}  // namespace eventbus
