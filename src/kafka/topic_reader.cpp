#include "kafka/topic_reader.hpp"

#include <map>

#include "kafka/kafka_client.hpp"

namespace eventbus::detail {
namespace {

error timed_out(const std::string& what) { return {errc::timed_out, what}; }

}  // namespace

result<void> read_to_end(const kafka_options& kafka, const std::string& topic,
                         const std::function<bool(const rd_kafka_message_t&)>& on_record,
                         std::chrono::milliseconds idle_timeout) {
  const auto timeout = idle_timeout;
  if (auto valid = validate_topic_name(topic); !valid) return valid.error();
  auto config = make_client_config(kafka, detail::client_role::consumer, {{"group.id", "eventbus-reader"},  // never joins: assign() only
                                           {"enable.auto.commit", "false"},
                                           {"allow.auto.create.topics", "false"},
                                           {"enable.partition.eof", "false"},
                                           {"fetch.wait.max.ms", "10"}});
  const auto broker = config.broker;
  const kafka_handle rk = make_handle(RD_KAFKA_CONSUMER, std::move(config.conf));
  const int ms = static_cast<int>(timeout.count());

  // Metadata for all topics, not for this one by name: a request naming a topic that does not
  // exist lets the cluster create it (auto.create.topics.enable), and reading must never create
  // the topic it was asked to read (a mistyped `eventbus dlq list` did). Absent reads as empty.
  int partitions = 0;
  {
    kafka_metadata md;
    if (const auto md_err = rd_kafka_metadata(rk.get(), 1, nullptr, out_ptr(md), ms))
      return timed_out("no metadata for '" + topic + "': " + kafka_error_text(md_err));
    for (int t = 0; t < md->topic_cnt; ++t)
      if (topic == md->topics[t].topic && md->topics[t].err == RD_KAFKA_RESP_ERR_NO_ERROR) partitions = md->topics[t].partition_cnt;
  }

  std::map<std::int32_t, std::int64_t> end;  // partition -> high watermark, for partitions with data
  for (std::int32_t p = 0; p < partitions; ++p) {
    std::int64_t low = 0, high = 0;
    if (const auto err = rd_kafka_query_watermark_offsets(rk.get(), topic.c_str(), p, &low, &high, ms))
      return timed_out("no offsets for '" + topic + "' [" + std::to_string(p) + "]: " + kafka_error_text(err));
    if (high > low) end[p] = high;
  }
  if (end.empty()) return {};

  {
    const auto assignment = make_partition_list(static_cast<int>(end.size()));
    for (const auto& [p, high] : end) rd_kafka_topic_partition_list_add(assignment.get(), topic.c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(rk.get(), assignment.get());  // copies the list
  }

  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!end.empty()) {
    if (std::chrono::steady_clock::now() > deadline)
      return timed_out("reading '" + topic + "': no record for " + std::to_string(timeout.count()) + " ms before its end");
    const kafka_message msg(rd_kafka_consumer_poll(rk.get(), 100));
    if (!msg || msg->err) continue;
    const auto it = end.find(msg->partition);
    if (it == end.end()) continue;
    deadline = std::chrono::steady_clock::now() + timeout;
    if (!on_record(*msg)) break;
    if (msg->offset + 1 >= it->second) end.erase(it);
  }
  rd_kafka_consumer_close(rk.get());
  return {};
}

}  // namespace eventbus::detail
