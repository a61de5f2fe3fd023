#include "worker/dead_letter_writer.hpp"

#include <algorithm>

#include "detail/kafka_client.hpp"
#include "detail/log.hpp"
#include "eventbus/time.hpp"
#include "eventbus/topic.hpp"

namespace eventbus::detail {

struct dead_letter_writer::pending {
  std::shared_ptr<const consumed_record> record;
  std::string topic;
  record_headers headers;
  std::function<bool()> cancelled;
  std::function<void()> acknowledged;
  int tries = 0;
};

dead_letter_writer::dead_letter_writer(const kafka_options& kafka, std::string group, std::string dlq_suffix,
                                       scheduler on_owner)
    : group_(std::move(group)), dlq_suffix_(std::move(dlq_suffix)), on_owner_(std::move(on_owner)), producer_(kafka) {}

void dead_letter_writer::write(std::shared_ptr<const consumed_record> record, const dead_letter_reason& why,
                               std::function<bool()> cancelled, std::function<void()> acknowledged) {
  auto dlq = dlq_topic_for(record->topic, dlq_suffix_);
  if (!dlq) {  // never acknowledged: the record stays uncommitted, nothing is lost
    log(log_level::error, "worker: no dead-letter topic for '" + record->topic + "': " + dlq.error().to_string() +
                              "; the record stays uncommitted");
    return;
  }
  auto p = std::make_shared<pending>();
  p->headers = dead_letter_headers(record->headers, why, {record->topic, record->partition, record->offset, group_},
                                   format_timestamp(now_ms()));
  p->record = std::move(record);
  p->topic = std::move(dlq).value();
  p->cancelled = std::move(cancelled);
  p->acknowledged = std::move(acknowledged);
  attempt(std::move(p));
}

void dead_letter_writer::attempt(std::shared_ptr<pending> p) {
  ++p->tries;
  const auto& r = *p->record;
  producer_.produce(p->topic, r.key, r.value, p->headers, [this, p](rd_kafka_resp_err_t err) {
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      written_.fetch_add(1, std::memory_order_relaxed);
      on_owner_(std::chrono::milliseconds(0), p->acknowledged);
      return;
    }
    failures_.fetch_add(1, std::memory_order_relaxed);
    const auto wait = std::min(std::chrono::milliseconds(5000), std::chrono::milliseconds(100) * (1 << std::min(p->tries, 6)));
    const auto& failed = *p->record;
    log(log_level::warn, "worker: dead-letter write to '" + p->topic + "' failed (" + kafka_error_text(err) + "); record " +
                             failed.topic + "[" + std::to_string(failed.partition) + "]@" + std::to_string(failed.offset) +
                             " stays uncommitted; retrying in " + std::to_string(wait.count()) + " ms");
    on_owner_(wait, [this, p] {
      if (!p->cancelled()) attempt(p);
    });
  });
}

}  // namespace eventbus::detail
