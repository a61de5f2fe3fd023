#pragma once
// Operating on dead-letter topics: list what is there and why, and replay records onto their
// original topic so a (now fixed) worker handles them again. Used by `eventbus dlq list|replay`.
//
//   eventbus::kafka_options kafka{.bootstrap_servers = "localhost:9092"};
//   auto dead = eventbus::list_dead_letters(kafka, "app.order.order.created.dlq");
//   if (!dead) std::cerr << dead.error().to_string() << "\n";
//   else for (const auto& d : *dead) std::cout << d.reason << " " << d.handler << ": " << d.error << "\n";
//   auto replayed = eventbus::replay_dead_letters(kafka, "app.order.order.created.dlq", {.handler = "mailer"});

#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "eventbus/error.hpp"
#include "eventbus/kafka/options.hpp"
#include "eventbus/topic.hpp"

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
  bool null_key = false;                       // the original key was Kafka's null (not empty)
  bool null_value = false;                     // a tombstone, or a value too large to copy (see headers)
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

/// The same, one record at a time and never more in memory, until `fn` returns false.
[[nodiscard]] result<void> for_each_dead_letter(const kafka_options& kafka, const std::string& dlq_topic,
                                                const std::function<bool(const dead_letter&)>& fn);

struct replay_options {
  std::optional<std::string> handler{};  // only records dead-lettered by this handler; replayed for it alone
  std::size_t limit = std::numeric_limits<std::size_t>::max();
  std::string dlq_suffix{default_dlq_suffix};  // the workers' dlq_suffix: how the dead-letter topic was named
};

struct replay_summary {
  std::size_t replayed = 0;
  std::size_t skipped = 0;  // other handlers', or written without their value (too large to copy)
  std::size_t refused = 0;  // their x-eventbus-dlq-original-topic is not the topic this one is the dead letters of
  std::map<std::string, std::size_t> handlers{};  // dead letters read, by handler ("" for none): what --handler may name
};

/// Produces each selected dead letter's key and value back to its original topic, with its original
/// headers, replay_count_header incremented, and replay_handler_header when a handler was chosen.
/// A replay count that is not plain digits counts as 0 (logged as a warning); one too large to hold
/// stays at the largest std::uint64_t.
/// Streams: memory does not grow with the topic. A record goes back only to the topic whose dead
/// letters `dlq_topic` holds (dlq_topic_for(original, dlq_suffix) == dlq_topic); one naming any
/// other topic is refused. Waits for every write to be acknowledged. The dead-letter topic is left
/// as it is.
[[nodiscard]] result<replay_summary> replay_dead_letters(const kafka_options& kafka, const std::string& dlq_topic,
                                                         const replay_options& options = {});

}  // namespace eventbus
