#include "worker/dead_letter_writer.hpp"

#include <algorithm>

#include "kafka/kafka_client.hpp"
#include "support/log.hpp"
#include "eventbus/time.hpp"
#include "eventbus/topic.hpp"

namespace eventbus::detail {

namespace {

// Errors the same write can never get past: retrying them would hold the partition forever.
bool is_permanent(rd_kafka_resp_err_t err) {
  switch (err) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
      return true;
    default:
      return false;
  }
}

std::size_t record_size(std::string_view key, std::string_view value, const record_headers& headers) {
  std::size_t size = key.size() + value.size() + 128;  // record and batch framing
  for (const auto& [name, text] : headers) size += name.size() + text.size() + 16;
  return size;
}

}  // namespace

namespace {

std::string position_of(const consumed_record& r) {
  return r.topic + "[" + std::to_string(r.partition) + "]@" + std::to_string(r.offset);
}

}  // namespace

struct dead_letter_writer::pending {
  std::shared_ptr<const consumed_record> record;
  std::string topic;
  record_headers headers;
  std::function<bool()> cancelled;
  std::function<void(dead_letter_outcome)> done;
  int tries = 0;
  bool value_dropped = false;
};

dead_letter_writer::dead_letter_writer(const kafka_options& kafka, std::string group, std::string dlq_suffix,
                                       scheduler on_owner)
    : group_(std::move(group)), dlq_suffix_(std::move(dlq_suffix)), on_owner_(std::move(on_owner)), producer_(kafka) {}

void dead_letter_writer::write(std::shared_ptr<const consumed_record> record, const dead_letter_reason& why,
                               std::function<bool()> cancelled, std::function<void(dead_letter_outcome)> done) {
  auto dlq = dlq_topic_for(record->topic, dlq_suffix_);
  if (!dlq) {  // the worker validated its topics and suffix: only a topic name Kafka itself refuses
    dropped_.fetch_add(1, std::memory_order_relaxed);
    log(log_level::error, "worker: no dead-letter topic for '" + record->topic + "': " + dlq.error().to_string() +
                              "; record " + position_of(*record) + " is given up without a dead letter");
    on_owner_(std::chrono::milliseconds(0), [done = std::move(done)] { done(dead_letter_outcome::dropped); });
    return;
  }
  auto p = std::make_shared<pending>();
  p->headers = dead_letter_headers(record->headers(), why, {record->topic, record->partition, record->offset, group_},
                                   format_timestamp(now_ms()));
  p->record = std::move(record);
  p->topic = std::move(dlq).value();
  p->cancelled = std::move(cancelled);
  p->done = std::move(done);
  const auto& r = *p->record;
  if (const auto size = record_size(r.key, r.value(), p->headers); size > producer_.max_record_bytes())
    drop_value(*p, "the record (" + std::to_string(size) + " bytes with its headers) is larger than the dead-letter "
                   "producer's message.max.bytes (" + std::to_string(producer_.max_record_bytes()) + ")");
  attempt(std::move(p));
}

// Keeps what says why and where from; leaves the bytes in the original topic, at its position.
void dead_letter_writer::drop_value(pending& p, const std::string& why) const {
  p.value_dropped = true;
  record_headers kept;
  for (auto& h : p.headers)
    if (h.first.starts_with("x-eventbus-dlq-")) kept.push_back(std::move(h));
  kept.emplace_back(std::string(dead_letter_value_dropped_header),
                    std::to_string(p.record->value().size()) + " bytes not copied: " + why);
  p.headers = std::move(kept);
}

void dead_letter_writer::attempt(std::shared_ptr<pending> p) {
  ++p->tries;
  const auto& r = *p->record;
  const std::optional<std::string_view> key = r.null_key ? std::nullopt : std::optional<std::string_view>(r.key);
  const std::optional<std::string_view> value =
      r.null_value || p->value_dropped ? std::nullopt : std::optional<std::string_view>(r.value());
  producer_.produce(p->topic, key, value, p->headers, [this, p](rd_kafka_resp_err_t err) {
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      written_.fetch_add(1, std::memory_order_relaxed);
      const auto outcome = p->value_dropped ? dead_letter_outcome::value_dropped : dead_letter_outcome::written;
      on_owner_(std::chrono::milliseconds(0), [p, outcome] { p->done(outcome); });
      return;
    }
    failures_.fetch_add(1, std::memory_order_relaxed);
    const auto& failed = *p->record;
    if (is_permanent(err) && !p->value_dropped) {
      drop_value(*p, "the dead-letter topic refused it: " + kafka_error_text(err));
      log(log_level::warn, "worker: dead-letter write to '" + p->topic + "' refused (" + kafka_error_text(err) +
                               "); writing record " + position_of(failed) + " without its value");
      on_owner_(std::chrono::milliseconds(0), [this, p] {
        if (!p->cancelled()) attempt(p);
      });
      return;
    }
    if (is_permanent(err)) {
      dropped_.fetch_add(1, std::memory_order_relaxed);
      log(log_level::error, "worker: dead-letter write to '" + p->topic + "' refused for good (" +
                                kafka_error_text(err) + "); record " + position_of(failed) +
                                " is given up without a dead letter and committed");
      on_owner_(std::chrono::milliseconds(0), [p] { p->done(dead_letter_outcome::dropped); });
      return;
    }
    const auto wait = std::min(std::chrono::milliseconds(5000), std::chrono::milliseconds(100) * (1 << std::min(p->tries, 6)));
    log(log_level::warn, "worker: dead-letter write to '" + p->topic + "' failed (" + kafka_error_text(err) + "); record " +
                             position_of(failed) + " stays uncommitted; retrying in " + std::to_string(wait.count()) + " ms");
    on_owner_(wait, [this, p] {
      if (!p->cancelled()) attempt(p);
    });
  });
}

}  // namespace eventbus::detail
