#include "eventbus/admin/dead_letters.hpp"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <limits>
#include <mutex>

#include "support/log.hpp"
#include "kafka/record_producer.hpp"
#include "kafka/topic_reader.hpp"
#include "worker/dead_letter.hpp"
#include "support/utf8.hpp"

namespace eventbus {
namespace {

dead_letter to_dead_letter(const rd_kafka_message_t& msg) {
  dead_letter d;
  d.partition = msg.partition;
  d.offset = msg.offset;
  d.null_key = msg.key == nullptr;
  d.null_value = msg.payload == nullptr;
  if (msg.key) d.key.assign(static_cast<const char*>(msg.key), msg.key_len);
  if (msg.payload) d.value.assign(static_cast<const char*>(msg.payload), msg.len);
  rd_kafka_headers_t* headers = nullptr;
  if (rd_kafka_message_headers(&msg, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    const char* name = nullptr;
    const void* value = nullptr;
    size_t size = 0;
    for (size_t i = 0; rd_kafka_header_get_all(headers, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; ++i)
      d.headers[name] = std::string(static_cast<const char*>(value), size);
  }
  detail::read_dead_letter_headers(d);
  return d;
}

// The replay count a dead letter carries. The header comes from whoever wrote the record, so it is
// read strictly: digits only. Anything else ("-3", "+1", "2x", "") counts as 0, with a warning
// naming the record, instead of counting on from a negative number; a count too large to hold
// saturates instead of reading as 0 and restarting at 1.
std::uint64_t replay_count_of(const dead_letter& d) {
  const auto it = d.headers.find(std::string(replay_count_header));
  if (it == d.headers.end()) return 0;
  const std::string& text = it->second;
  const bool digits = !text.empty() && std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
  std::uint64_t count = 0;
  const std::errc parsed = digits ? std::from_chars(text.data(), text.data() + text.size(), count).ec : std::errc::invalid_argument;
  if (parsed == std::errc::result_out_of_range) return std::numeric_limits<std::uint64_t>::max();
  if (parsed != std::errc{}) {
    detail::log(log_level::warn, "dead letter [" + std::to_string(d.partition) + "]@" + std::to_string(d.offset) + ": " +
                                     std::string(replay_count_header) + " '" + detail::truncate_utf8(text, 64) +
                                     "' is not a count; replayed as if it were 0");
    return 0;
  }
  return count;
}

std::uint64_t next_replay_count(const dead_letter& d) {
  const auto count = replay_count_of(d);
  return count == std::numeric_limits<std::uint64_t>::max() ? count : count + 1;
}

}  // namespace

result<void> for_each_dead_letter(const kafka_options& kafka, const std::string& dlq_topic,
                                  const std::function<bool(const dead_letter&)>& fn) {
  return detail::read_to_end(kafka, dlq_topic, [&](const rd_kafka_message_t& msg) { return fn(to_dead_letter(msg)); });
}

result<std::vector<dead_letter>> list_dead_letters(const kafka_options& kafka, const std::string& dlq_topic,
                                                   std::size_t limit) {
  std::vector<dead_letter> out;
  if (limit == 0) return out;
  auto read = for_each_dead_letter(kafka, dlq_topic, [&](const dead_letter& d) {
    out.push_back(d);
    return out.size() < limit;
  });
  if (!read) return read.error();
  return out;
}

result<replay_summary> replay_dead_letters(const kafka_options& kafka, const std::string& dlq_topic,
                                           const replay_options& options) {
  if (auto valid = validate_dlq_suffix(options.dlq_suffix); !valid) return valid.error();
  replay_summary summary;
  std::mutex mu;
  std::optional<error> first_failure;
  std::atomic<std::size_t> outstanding{0};
  constexpr std::size_t max_outstanding = 10'000;  // bounds what waits in the producer's queue
  {
    detail::record_producer producer(kafka);
    auto read = for_each_dead_letter(kafka, dlq_topic, [&](const dead_letter& d) {
      if (summary.replayed >= options.limit) return false;
      ++summary.handlers[d.handler];
      if (options.handler && d.handler != *options.handler) {
        ++summary.skipped;
        return true;
      }
      if (d.headers.count(std::string(detail::dead_letter_value_dropped_header)) > 0) {
        ++summary.skipped;  // nothing to replay: the bytes are only in the original topic
        return true;
      }
      // A dead letter goes back only where it came from: a header naming another topic (written by
      // hand, or copied between topics) must not turn replay into a way to write anywhere.
      const auto expected = dlq_topic_for(d.original_topic, options.dlq_suffix);
      if (d.original_topic.empty() || !expected || expected.value() != dlq_topic) {
        ++summary.refused;
        return true;
      }
      detail::record_headers headers;
      for (const auto& [name, value] : d.headers)
        if (!name.starts_with("x-eventbus-dlq-") && name != replay_count_header && name != replay_handler_header)
          headers.emplace_back(name, value);
      headers.emplace_back(replay_count_header, std::to_string(next_replay_count(d)));
      if (options.handler) headers.emplace_back(replay_handler_header, *options.handler);
      if (outstanding.load() >= max_outstanding) (void)producer.flush(std::chrono::seconds(60));
      outstanding.fetch_add(1);
      producer.produce(d.original_topic, d.null_key ? std::nullopt : std::optional<std::string_view>(d.key),
                       d.null_value ? std::nullopt : std::optional<std::string_view>(d.value), headers,
                       [&, topic = d.original_topic](rd_kafka_resp_err_t err) {
                         outstanding.fetch_sub(1);
                         if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return;
                         const std::lock_guard lock(mu);
                         if (!first_failure)
                           first_failure = error(errc::delivery_failed, "replay to '" + topic + "' failed: " + rd_kafka_err2str(err));
                       });
      ++summary.replayed;
      return true;
    });
    if (!producer.flush(std::chrono::seconds(60))) return error(errc::timed_out, "replayed records not acknowledged in 60 s");
    if (!read) return read.error();
  }
  if (first_failure) return *first_failure;
  return summary;
}

}  // namespace eventbus
