#pragma once
// Reading topics back in integration tests: a plain librdkafka consumer, assigned to every partition
// from the beginning (no group join to wait for), independent of the code under test.

#include <librdkafka/rdkafka.h>

#include <chrono>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace eventbus::testing {

struct consumed_record {
  std::string topic;
  std::int32_t partition = -1;
  std::int64_t offset = -1;
  std::string key;
  std::string value;
  std::map<std::string, std::string> headers;
  bool null_key = false;  // Kafka's null, as opposed to an empty key
  bool null_value = false;
};

/// Every record of `topic`: the sum of its partitions' high watermarks. -1 if not known.
std::int64_t topic_record_count(const std::string& bootstrap, const std::string& topic);

/// Reads `topic` from the beginning until `expected` records arrived or `timeout` passed, and
/// returns what it read (fewer than expected on timeout: the caller's assertion says so).
inline std::vector<consumed_record> read_topic(const std::string& bootstrap, const std::string& topic,
                                               std::size_t expected,
                                               std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
  char why[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  for (const auto& [k, v] : std::map<std::string, std::string>{{"bootstrap.servers", bootstrap},
                                                               {"group.id", "eventbus-test-reader"},
                                                               {"enable.auto.commit", "false"},
                                                               {"fetch.wait.max.ms", "10"},
                                                               {"log_level", "3"}})
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), why, sizeof why) != RD_KAFKA_CONF_OK) throw std::runtime_error(why);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof why);
  if (rk == nullptr) throw std::runtime_error(why);

  std::vector<consumed_record> records;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  // The topic may not exist yet (auto-created on first produce): retry metadata until it does.
  int partitions = 0;
  while (partitions == 0 && std::chrono::steady_clock::now() < deadline) {
    rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
    const rd_kafka_metadata_t* md = nullptr;
    if (rd_kafka_metadata(rk, 0, rkt, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR) partitions = md->topics[0].partition_cnt;
      rd_kafka_metadata_destroy(md);
    }
    rd_kafka_topic_destroy(rkt);
  }
  rd_kafka_topic_partition_list_t* assignment = rd_kafka_topic_partition_list_new(partitions);
  for (int p = 0; p < partitions; ++p)
    rd_kafka_topic_partition_list_add(assignment, topic.c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
  rd_kafka_assign(rk, assignment);
  rd_kafka_topic_partition_list_destroy(assignment);

  while (records.size() < expected && std::chrono::steady_clock::now() < deadline) {
    rd_kafka_message_t* msg = rd_kafka_consumer_poll(rk, 100);
    if (msg == nullptr) continue;
    if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      consumed_record r;
      r.topic = rd_kafka_topic_name(msg->rkt);
      r.partition = msg->partition;
      r.offset = msg->offset;
      r.null_key = msg->key == nullptr;
      r.null_value = msg->payload == nullptr;
      if (msg->key) r.key.assign(static_cast<const char*>(msg->key), msg->key_len);
      if (msg->payload) r.value.assign(static_cast<const char*>(msg->payload), msg->len);
      rd_kafka_headers_t* headers = nullptr;
      if (rd_kafka_message_headers(msg, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char* name = nullptr;
        const void* value = nullptr;
        size_t size = 0;
        for (size_t i = 0; rd_kafka_header_get_all(headers, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; ++i)
          r.headers[name] = std::string(static_cast<const char*>(value), size);
      }
      records.push_back(std::move(r));
    }
    rd_kafka_message_destroy(msg);
  }
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return records;
}

inline std::int64_t topic_record_count(const std::string& bootstrap, const std::string& topic) {
  char why[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), why, sizeof why);
  rd_kafka_conf_set(conf, "log_level", "3", why, sizeof why);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof why);
  if (rk == nullptr) return -1;
  std::int64_t total = 0;
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  const rd_kafka_metadata_t* md = nullptr;
  if (rd_kafka_metadata(rk, 0, rkt, &md, 5000) != RD_KAFKA_RESP_ERR_NO_ERROR || md->topic_cnt != 1) {
    total = -1;
  } else {
    for (int p = 0; p < md->topics[0].partition_cnt && total >= 0; ++p) {
      std::int64_t low = 0, high = 0;
      if (rd_kafka_query_watermark_offsets(rk, topic.c_str(), p, &low, &high, 5000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        total = -1;
      else
        total += high - low;
    }
  }
  if (md) rd_kafka_metadata_destroy(md);
  rd_kafka_topic_destroy(rkt);
  rd_kafka_destroy(rk);
  return total;
}

/// A record as a hostile producer may write it: any bytes, or Kafka's null for key or value.
struct raw_record {
  std::string topic;
  std::optional<std::string> key;
  std::optional<std::string> value;
  std::map<std::string, std::string> headers{};
  std::map<std::string, std::string> producer_properties{};  // e.g. message.max.bytes for big records
};

/// Produces one raw record and waits for its acknowledgement. Returns the partition.
inline std::int32_t produce_raw(const std::string& bootstrap, const raw_record& record) {
  char why[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), why, sizeof why);
  rd_kafka_conf_set(conf, "log_level", "3", why, sizeof why);
  for (const auto& [k, v] : record.producer_properties)
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), why, sizeof why) != RD_KAFKA_CONF_OK) throw std::runtime_error(why);
  std::int32_t partition = -1;
  rd_kafka_conf_set_opaque(conf, &partition);
  rd_kafka_conf_set_dr_msg_cb(conf, [](rd_kafka_t*, const rd_kafka_message_t* msg, void* opaque) {
    *static_cast<std::int32_t*>(opaque) = msg->err ? -2 : msg->partition;
  });
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof why);
  if (rk == nullptr) throw std::runtime_error(why);
  rd_kafka_headers_t* headers = rd_kafka_headers_new(record.headers.size());
  for (const auto& [name, value] : record.headers)
    rd_kafka_header_add(headers, name.c_str(), -1, value.data(), static_cast<ssize_t>(value.size()));
  rd_kafka_vu_t fields[5];
  fields[0].vtype = RD_KAFKA_VTYPE_TOPIC;
  fields[0].u.cstr = record.topic.c_str();
  fields[1].vtype = RD_KAFKA_VTYPE_KEY;
  fields[1].u.mem = {record.key ? const_cast<char*>(record.key->data()) : nullptr, record.key ? record.key->size() : 0};
  fields[2].vtype = RD_KAFKA_VTYPE_VALUE;
  fields[2].u.mem = {record.value ? const_cast<char*>(record.value->data()) : nullptr,
                     record.value ? record.value->size() : 0};
  fields[3].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
  fields[3].u.i = RD_KAFKA_MSG_F_COPY;
  fields[4].vtype = RD_KAFKA_VTYPE_HEADERS;
  fields[4].u.headers = headers;
  if (rd_kafka_error_t* err = rd_kafka_produceva(rk, fields, 5)) {
    rd_kafka_error_destroy(err);
    rd_kafka_headers_destroy(headers);
  }
  rd_kafka_flush(rk, 10000);
  rd_kafka_destroy(rk);
  if (partition < 0) throw std::runtime_error("produce_raw: not delivered");
  return partition;
}

/// Produces one raw record (any bytes) and waits for its acknowledgement. Returns the partition.
inline std::int32_t produce_raw(const std::string& bootstrap, const std::string& topic, const std::string& key,
                                const std::string& value) {
  return produce_raw(bootstrap, raw_record{.topic = topic, .key = key, .value = value});
}

/// What `group` committed for topic[partition]: the offset (-1 if none or unknown) and its metadata.
struct committed_position {
  std::int64_t offset = -1;
  std::string metadata;
};

inline committed_position committed(const std::string& bootstrap, const std::string& group, const std::string& topic,
                                    std::int32_t partition) {
  char why[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), why, sizeof why);
  rd_kafka_conf_set(conf, "group.id", group.c_str(), why, sizeof why);
  rd_kafka_conf_set(conf, "log_level", "3", why, sizeof why);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof why);
  if (rk == nullptr) return {};
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(list, topic.c_str(), partition);
  committed_position out;
  if (rd_kafka_committed(rk, list, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR && list->elems[0].offset >= 0) {
    out.offset = list->elems[0].offset;
    if (list->elems[0].metadata != nullptr)
      out.metadata.assign(static_cast<const char*>(list->elems[0].metadata), list->elems[0].metadata_size);
  }
  rd_kafka_topic_partition_list_destroy(list);
  rd_kafka_destroy(rk);
  return out;
}

/// The offset `group` committed for topic[partition], or -1 if none (or unknown).
inline std::int64_t committed_offset(const std::string& bootstrap, const std::string& group, const std::string& topic,
                                     std::int32_t partition) {
  return committed(bootstrap, group, topic, partition).offset;
}

}  // namespace eventbus::testing
