#include "eventbus/admin/replay.hpp"

#include <chrono>
#include <regex>

#include "kafka/kafka_client.hpp"
#include "eventbus/topic.hpp"

namespace eventbus {
namespace {

// The offset of the first record of topic[partition] whose timestamp is >= from_ms, found by
// reading. Used only when the broker says "no such record" although the partition has some: the
// last record is checked first (Kafka's answer is then confirmed with one fetch), and only a broker
// that does not implement the lookup by time (librdkafka's mock cluster) leads to a scan.
std::int64_t find_by_reading(const kafka_options& kafka, const std::string& topic, std::int32_t partition,
                             std::int64_t low, std::int64_t high, std::int64_t from_ms) {
  auto config = detail::make_client_config(kafka, detail::client_role::consumer, {{"group.id", "eventbus-reader"},
                                                   {"enable.auto.commit", "false"},
                                                   {"fetch.wait.max.ms", "10"}});
  const auto broker = config.broker;
  const detail::kafka_handle rk = detail::make_handle(RD_KAFKA_CONSUMER, std::move(config.conf));
  const auto read_from = [&](std::int64_t start, auto&& stop) {
    const auto list = detail::make_partition_list(1);
    rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), partition)->offset = start;
    rd_kafka_assign(rk.get(), list.get());  // copies the list
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
      const detail::kafka_message msg(rd_kafka_consumer_poll(rk.get(), 100));
      if (!msg || msg->err) continue;
      if (stop(msg->offset, rd_kafka_message_timestamp(msg.get(), nullptr))) return msg->offset;
      if (msg->offset + 1 >= high) break;
    }
    return high;
  };
  const auto last = read_from(high - 1, [](std::int64_t, std::int64_t) { return true; });
  bool last_is_late = false;
  (void)read_from(last, [&](std::int64_t, std::int64_t ts) {
    last_is_late = ts >= from_ms;
    return true;
  });
  if (!last_is_late) return high;
  return read_from(low, [&](std::int64_t, std::int64_t ts) { return ts >= from_ms; });
}

// True when the regex should leave `topic` alone: dead-letter topics (workers do not consume them;
// `eventbus dlq replay` is how they go back) and the cluster's internal ones (__consumer_offsets).
bool skipped_by_pattern(std::string_view topic) {
  return topic.ends_with(default_dlq_suffix) || topic.starts_with("__");
}

// The groups the cluster lists, for an error message; a note instead when it cannot list them.
std::string known_groups(rd_kafka_t* rk, int timeout_ms) {
  detail::kafka_group_list groups;
  if (const auto err = rd_kafka_list_groups(rk, nullptr, detail::out_ptr(groups), timeout_ms))
    return "the cluster did not list its groups: " + detail::kafka_error_text(err);
  std::string names;
  for (int i = 0; i < groups->group_cnt; ++i)
    names += (names.empty() ? "" : ", ") + std::string(groups->groups[i].group);
  return "groups the cluster knows: " + (names.empty() ? std::string("none") : names);
}

// A group with no committed offset on any partition never ran (or is mistyped): committing for it
// would create it, and the workers meant to be rewound would start where they were.
bool has_committed_offsets(rd_kafka_t* rk, const rd_kafka_metadata_t& md, int timeout_ms) {
  const auto all = detail::make_partition_list(16);
  for (int t = 0; t < md.topic_cnt; ++t)
    for (int p = 0; p < md.topics[t].partition_cnt; ++p)
      rd_kafka_topic_partition_list_add(all.get(), md.topics[t].topic, md.topics[t].partitions[p].id);
  bool found = false;
  if (rd_kafka_committed(rk, all.get(), timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR)
    for (int i = 0; i < all->cnt && !found; ++i) found = all->elems[i].offset >= 0;
  return found;
}

}  // namespace

result<std::vector<partition_position>> rewind_group(const kafka_options& kafka, const std::string& group,
                                                     const std::string& topics, time_point from,
                                                     const rewind_options& options) {
  if (group.empty()) return error(errc::invalid_argument, "must not be empty", "group");
  std::regex pattern;
  try {
    pattern = std::regex(topics.starts_with('^') ? topics : "^" + std::regex_replace(topics, std::regex(R"([.^$|()\[\]{}*+?\\])"), R"(\$&)") + "$");
  } catch (const std::regex_error& e) {
    return error(errc::invalid_argument, std::string("not a regular expression: ") + e.what(), "topics");
  }
  auto config = detail::make_client_config(kafka, detail::client_role::consumer, {{"group.id", group}, {"enable.auto.commit", "false"}});
  const auto broker = config.broker;
  const detail::kafka_handle rk = detail::make_handle(RD_KAFKA_CONSUMER, std::move(config.conf));
  constexpr int timeout_ms = 15'000;

  detail::kafka_metadata md;
  if (const auto err = rd_kafka_metadata(rk.get(), 1, nullptr, detail::out_ptr(md), timeout_ms))
    return error(errc::timed_out, "cannot list topics: " + detail::kafka_error_text(err));
  if (!options.new_group && !has_committed_offsets(rk.get(), *md, timeout_ms)) {
    return error(errc::invalid_argument,
                 "'" + group + "' has no committed offsets: not a group that has run (" +
                     known_groups(rk.get(), timeout_ms) + ")",
                 "group");
  }
  const bool by_pattern = topics.starts_with('^');
  if (!by_pattern && skipped_by_pattern(topics)) {
    return error(errc::invalid_argument,
                 "'" + topics + "' is a dead-letter or internal topic: `eventbus dlq replay` puts dead letters back",
                 "topics");
  }
  const auto list = detail::make_partition_list(16);
  for (int t = 0; t < md->topic_cnt; ++t) {
    const auto& topic = md->topics[t];
    if (!std::regex_search(topic.topic, pattern) || (by_pattern && skipped_by_pattern(topic.topic))) continue;
    for (int p = 0; p < topic.partition_cnt; ++p)
      rd_kafka_topic_partition_list_add(list.get(), topic.topic, topic.partitions[p].id)->offset =
          from.time_since_epoch().count();
  }
  md.reset();
  if (list->cnt == 0) {
    return error(errc::invalid_argument, "no topic matches '" + topics + "'", "topics");
  }

  if (const auto err = rd_kafka_offsets_for_times(rk.get(), list.get(), timeout_ms)) {
    return error(errc::timed_out, "cannot look up offsets for the time: " + detail::kafka_error_text(err));
  }
  std::vector<partition_position> positions;
  for (int i = 0; i < list->cnt; ++i) {
    auto& e = list->elems[i];
    if (e.err) {
      return error(errc::timed_out, "no offset for the time in " + std::string(e.topic) + ": " +
                                        detail::kafka_error_text(e.err));
    }
    if (e.offset < 0) {  // "no record at or after the time": check, then start at the end
      std::int64_t low = 0, high = 0;
      (void)rd_kafka_query_watermark_offsets(rk.get(), e.topic, e.partition, &low, &high, timeout_ms);
      e.offset = high > low ? find_by_reading(kafka, e.topic, e.partition, low, high, from.time_since_epoch().count())
                            : high;
    }
    positions.push_back({e.topic, e.partition, e.offset});
  }
  // A commit from outside the group: Kafka takes it only while the group has no members.
  if (const auto err = rd_kafka_commit(rk.get(), list.get(), 0))
    return error(errc::delivery_failed, "the group's offsets were not committed (stop its workers first): " +
                                            detail::kafka_error_text(err));
  return positions;
}

}  // namespace eventbus
