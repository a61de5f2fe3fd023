// worker_options: its validation, and the names of the processing orders.

#include <string>

#include "support/utf8.hpp"
#include "eventbus/topic.hpp"
#include "eventbus/kafka/worker.hpp"
#include "worker/topic_tiers.hpp"

namespace eventbus {
namespace {

[[noreturn]] void reject(std::string field, std::string message) {
  throw exception(error(errc::invalid_argument, std::move(message), std::move(field)));
}

}  // namespace

std::string_view to_string(processing_order order) noexcept {
  switch (order) {
    case processing_order::key: return "key";
    case processing_order::partition: return "partition";
    case processing_order::unordered: return "unordered";
  }
  return "unknown";
}

result<processing_order> parse_processing_order(std::string_view text) {
  for (const auto order : {processing_order::key, processing_order::partition, processing_order::unordered})
    if (text == to_string(order)) return order;
  return error(errc::invalid_argument, "must be key, partition or unordered, got '" + detail::sanitize_utf8(text) + "'",
               "ordering");
}

void worker_options::validate() const {
  kafka.validate();
  retry.validate();
  if (group_id.empty()) reject("group_id", "must not be empty");
  if (topics.empty()) reject("topics", "name at least one topic or '^regex'");
  for (const auto& t : topics)
    if (!t.starts_with('^'))
      if (auto valid = validate_topic_name(t); !valid) reject("topics", valid.error().message());
  // Caught here, not at the first dead letter (which would then hold its partition forever).
  if (auto valid = validate_dlq_suffix(dlq_suffix); !valid) reject("dlq_suffix", valid.error().message());
  for (std::size_t i = 0; i < middleware.size(); ++i)
    if (!middleware[i]) reject("middleware[" + std::to_string(i) + "]", "is an empty function");
  if (ordering != processing_order::key && ordering != processing_order::partition &&
      ordering != processing_order::unordered)
    reject("ordering", "must be key, partition or unordered");
  if (max_concurrency == 0 || max_concurrency > 1024) reject("max_concurrency", "must be between 1 and 1024");
  if (max_record_bytes == 0) reject("max_record_bytes", "must be at least 1");
  if (max_buffered_per_partition < 2) reject("max_buffered_per_partition", "must be at least 2");
  if (auto tiers = detail::topic_tiers::make(priority_tiers); !tiers) reject(tiers.error().field(), tiers.error().message());
  // A tier naming a topic the worker does not consume is a typo that would silently do nothing.
  // ('^' tiers cannot be checked here: what they match depends on the topics the cluster has.)
  // (Only with tiers: the topics' own expressions are librdkafka's to compile.)
  auto consumed = priority_tiers.empty() ? detail::topic_tiers::make({}) : detail::topic_tiers::make({topics}, "topics");
  if (!consumed) reject("topics", consumed.error().message());
  for (std::size_t i = 0; i < priority_tiers.size(); ++i)
    for (const auto& t : priority_tiers[i])
      if (!t.starts_with('^') && consumed.value().of(t) != 0)
        reject("priority_tiers[" + std::to_string(i) + "]",
               "names '" + detail::sanitize_utf8(t) + "', which is not among the topics this worker consumes");
  if (lower_tier_share_percent < 1 || lower_tier_share_percent > 90)
    reject("lower_tier_share_percent", "must be 1..90 (a less urgent tier is slowed, never stopped), got " +
                                           std::to_string(lower_tier_share_percent));
  if (!retry.durable_stages.empty() && !parking_store)
    reject("parking_store", "retry.durable_stages needs a store to park records in (open_sqlite_store or open_postgres_store)");
  if (retry.durable_stages.empty() && parking_store)
    reject("parking_store", "is set but retry.durable_stages is empty: nothing would ever be parked");
  if (!retry.durable_stages.empty() && ordering != processing_order::key)
    reject("retry.durable_stages", "needs ordering key (a parked record holds back its key's later records, not a partition's)");
  if (commit_interval.count() <= 0) reject("commit_interval", "must be positive");
  if (shutdown_timeout.count() < 0) reject("shutdown_timeout", "must not be negative");
  if (handler_timeout.count() < 0) reject("handler_timeout", "must not be negative (0: no limit)");
  for (const auto& [name, value] : {std::pair{"commit_interval", commit_interval}, {"shutdown_timeout", shutdown_timeout},
                                    {"handler_timeout", handler_timeout}})
    if (value > max_duration) reject(name, "must be at most a year (" + std::to_string(max_duration.count()) + " ms)");
}

}  // namespace eventbus
