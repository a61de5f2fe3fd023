#include "eventbus/admin/topics.hpp"

#include <algorithm>
#include <numeric>

#include "kafka/kafka_client.hpp"

namespace eventbus {

std::int64_t topic_info::total() const noexcept {
  return std::accumulate(end_offsets.begin(), end_offsets.end(), std::int64_t{0});
}

result<std::vector<topic_info>> list_topics(const kafka_options& kafka, std::string_view prefix,
                                            std::chrono::milliseconds timeout) {
  const int timeout_ms = static_cast<int>(timeout.count());
  auto config = detail::make_client_config(kafka, detail::client_role::consumer, {{"group.id", "eventbus-topics"}, {"enable.auto.commit", "false"}});
  const auto broker = config.broker;
  const detail::kafka_handle rk = detail::make_handle(RD_KAFKA_CONSUMER, std::move(config.conf));
  detail::kafka_metadata md;
  if (const auto err = rd_kafka_metadata(rk.get(), 1, nullptr, detail::out_ptr(md), timeout_ms))
    return error(errc::timed_out, "cannot list topics: " + detail::kafka_error_text(err));
  std::vector<topic_info> topics;
  for (int t = 0; t < md->topic_cnt; ++t) {
    const auto& topic = md->topics[t];
    if (!std::string_view(topic.topic).starts_with(prefix)) continue;
    topic_info info{.name = topic.topic, .end_offsets = std::vector<std::int64_t>(static_cast<std::size_t>(topic.partition_cnt), 0)};
    for (int p = 0; p < topic.partition_cnt; ++p) {
      const auto id = topic.partitions[p].id;
      std::int64_t low = 0, high = 0;
      if (const auto err = rd_kafka_query_watermark_offsets(rk.get(), topic.topic, id, &low, &high, timeout_ms))
        return error(errc::timed_out, "no end offset for " + info.name + "[" + std::to_string(id) +
                                          "]: " + detail::kafka_error_text(err));
      if (id >= 0 && static_cast<std::size_t>(id) < info.end_offsets.size()) info.end_offsets[static_cast<std::size_t>(id)] = high;
    }
    topics.push_back(std::move(info));
  }
  md.reset();
  std::sort(topics.begin(), topics.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return topics;
}

result<std::vector<std::string>> topic_names(const kafka_options& kafka, std::chrono::milliseconds timeout) {
  // A producer handle: it needs no group.id, and a metadata request for all topics names none, so
  // the cluster creates nothing whatever its auto.create.topics.enable.
  auto config = detail::make_client_config(kafka, detail::client_role::producer, {});
  const auto broker = config.broker;
  const detail::kafka_handle rk = detail::make_handle(RD_KAFKA_PRODUCER, std::move(config.conf));
  detail::kafka_metadata md;
  if (const auto err = rd_kafka_metadata(rk.get(), 1, nullptr, detail::out_ptr(md), static_cast<int>(timeout.count())))
    return error(errc::timed_out, "cannot list topics: " + detail::kafka_error_text(err));
  std::vector<std::string> names;
  for (int t = 0; t < md->topic_cnt; ++t)
    if (md->topics[t].err == RD_KAFKA_RESP_ERR_NO_ERROR) names.emplace_back(md->topics[t].topic);
  md.reset();
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace eventbus
