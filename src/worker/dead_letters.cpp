#include "eventbus/dead_letters.hpp"

#include <atomic>
#include <charconv>
#include <mutex>

#include "kafka/record_producer.hpp"
#include "kafka/topic_reader.hpp"

namespace eventbus {
namespace {

template <class Int>
Int number_or(const std::map<std::string, std::string>& headers, const char* name, Int fallback) {
  const auto it = headers.find(name);
  if (it == headers.end()) return fallback;
  Int value = fallback;
  const auto [ptr, ec] = std::from_chars(it->second.data(), it->second.data() + it->second.size(), value);
  return ec == std::errc{} && ptr == it->second.data() + it->second.size() ? value : fallback;
}

std::string text_or_empty(const std::map<std::string, std::string>& headers, const char* name) {
  const auto it = headers.find(name);
  return it == headers.end() ? std::string() : it->second;
}

dead_letter to_dead_letter(const rd_kafka_message_t& msg) {
  dead_letter d;
  d.partition = msg.partition;
  d.offset = msg.offset;
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
  d.reason = text_or_empty(d.headers, "x-eventbus-dlq-reason");
  d.error = text_or_empty(d.headers, "x-eventbus-dlq-error");
  d.handler = text_or_empty(d.headers, "x-eventbus-dlq-handler");
  d.original_topic = text_or_empty(d.headers, "x-eventbus-dlq-original-topic");
  d.group = text_or_empty(d.headers, "x-eventbus-dlq-group");
  d.failed_at = text_or_empty(d.headers, "x-eventbus-dlq-failed-at");
  d.original_partition = number_or<std::int32_t>(d.headers, "x-eventbus-dlq-original-partition", -1);
  d.original_offset = number_or<std::int64_t>(d.headers, "x-eventbus-dlq-original-offset", -1);
  d.attempts = number_or<int>(d.headers, "x-eventbus-dlq-attempts", 0);
  return d;
}

}  // namespace

result<std::vector<dead_letter>> list_dead_letters(const kafka_options& kafka, const std::string& dlq_topic,
                                                   std::size_t limit) {
  std::vector<dead_letter> out;
  auto read = detail::read_to_end(kafka, dlq_topic, limit, [&](const rd_kafka_message_t& msg) {
    out.push_back(to_dead_letter(msg));
  });
  if (!read) return read.error();
  return out;
}

result<replay_summary> replay_dead_letters(const kafka_options& kafka, const std::string& dlq_topic,
                                           const replay_options& options) {
  auto letters = list_dead_letters(kafka, dlq_topic);
  if (!letters) return letters.error();

  replay_summary summary;
  std::mutex mu;
  std::optional<error> first_failure;
  {
    detail::record_producer producer(kafka);
    for (const auto& d : letters.value()) {
      if (summary.replayed >= options.limit) break;
      if ((options.handler && d.handler != *options.handler) || d.original_topic.empty()) {
        ++summary.skipped;
        continue;
      }
      detail::record_headers headers;
      for (const auto& [name, value] : d.headers)
        if (!name.starts_with("x-eventbus-dlq-") && name != replay_count_header && name != replay_handler_header)
          headers.emplace_back(name, value);
      headers.emplace_back(replay_count_header, std::to_string(number_or<int>(d.headers, replay_count_header.data(), 0) + 1));
      if (options.handler) headers.emplace_back(replay_handler_header, *options.handler);
      producer.produce(d.original_topic, d.key, d.value, headers, [&, topic = d.original_topic](rd_kafka_resp_err_t err) {
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return;
        const std::lock_guard lock(mu);
        if (!first_failure)
          first_failure = error(errc::delivery_failed, "replay to '" + topic + "' failed: " + rd_kafka_err2str(err));
      });
      ++summary.replayed;
    }
    if (!producer.flush(std::chrono::seconds(60))) return error(errc::timed_out, "replayed records not acknowledged in 60 s");
  }
  if (first_failure) return *first_failure;
  return summary;
}

}  // namespace eventbus
