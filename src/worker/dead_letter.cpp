#include "worker/dead_letter.hpp"

#include "support/utf8.hpp"

namespace eventbus::detail {

namespace {

std::string text_or_empty(const std::map<std::string, std::string>& headers, const char* name) {
  const auto it = headers.find(name);
  return it == headers.end() ? std::string() : it->second;
}

}  // namespace

void read_dead_letter_headers(dead_letter& d) {
  d.reason = text_or_empty(d.headers, "x-eventbus-dlq-reason");
  d.error = text_or_empty(d.headers, "x-eventbus-dlq-error");
  d.handler = text_or_empty(d.headers, "x-eventbus-dlq-handler");
  d.original_topic = text_or_empty(d.headers, "x-eventbus-dlq-original-topic");
  d.group = text_or_empty(d.headers, "x-eventbus-dlq-group");
  d.failed_at = text_or_empty(d.headers, "x-eventbus-dlq-failed-at");
  d.original_partition = header_number_or<std::int32_t>(d.headers, "x-eventbus-dlq-original-partition", -1);
  d.original_offset = header_number_or<std::int64_t>(d.headers, "x-eventbus-dlq-original-offset", -1);
  d.attempts = header_number_or<int>(d.headers, "x-eventbus-dlq-attempts", 0);
}

record_headers dead_letter_headers(const record_headers& original, const dead_letter_reason& why,
                                   const record_origin& origin, std::string_view failed_at) {
  record_headers headers = original;
  headers.emplace_back("x-eventbus-dlq-reason", std::string(why.reason));
  // Error texts can quote the record's own bytes: headers are always valid UTF-8.
  headers.emplace_back("x-eventbus-dlq-error", truncate_utf8(sanitize_utf8(why.error), max_dlq_error_bytes));
  headers.emplace_back("x-eventbus-dlq-handler", sanitize_utf8(why.handler));
  headers.emplace_back("x-eventbus-dlq-attempts", std::to_string(why.attempts));
  headers.emplace_back("x-eventbus-dlq-original-topic", origin.topic);
  headers.emplace_back("x-eventbus-dlq-original-partition", std::to_string(origin.partition));
  headers.emplace_back("x-eventbus-dlq-original-offset", std::to_string(origin.offset));
  headers.emplace_back("x-eventbus-dlq-group", origin.group);
  headers.emplace_back("x-eventbus-dlq-failed-at", std::string(failed_at));
  return headers;
}

}  // namespace eventbus::detail
