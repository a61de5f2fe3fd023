// The processes of scripts/soak.sh: a publisher at a steady rate, a worker whose handler fails now
// and then, and the final accounting. Each writes event ids, one line each, so that a SIGKILL
// loses nothing already written.
//
//   soak_node publish BOOTSTRAP EVENTS_PER_SECOND SECONDS OUT_FILE
//   soak_node work BOOTSTRAP GROUP OUT_FILE          (until SIGTERM)
//   soak_node account BOOTSTRAP PUBLISHED_FILE HANDLED_FILE...
//
// The worker's handler: events whose seq is a multiple of 100 fail permanently (dead-lettered on
// their first call); of the others, 5 % of calls fail and are retried; the rest take 1 ms.

#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <thread>

#include "eventbus/dispatcher.hpp"
#include "eventbus/kafka/kafka_sink.hpp"
#include "eventbus/stop_signal.hpp"
#include "eventbus/topic.hpp"
#include "eventbus/kafka/worker.hpp"

namespace {

constexpr const char* soak_topic = "app.soak.soak.tick";

void append_line(int fd, const std::string& id) {
  const std::string line = id + "\n";
  if (write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) throw std::runtime_error("write");
}

int publish(const std::string& bootstrap, int rate, int seconds, const char* out_path) {
  const int out = open(out_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (out < 0) return 1;
  auto kafka = std::make_shared<eventbus::kafka_sink>(eventbus::producer_options{
      .kafka = {.bootstrap_servers = bootstrap, .properties = {{"log_level", "3"}}}});
  eventbus::dispatcher bus;
  bus.add_sink(kafka);
  const auto start = std::chrono::steady_clock::now();
  const long total = static_cast<long>(rate) * seconds;
  for (long seq = 0; seq < total && !eventbus::stop_requested(); ++seq) {
    std::this_thread::sleep_until(start + std::chrono::microseconds(seq * 1'000'000 / rate));  // pacing, not a sync
    const auto ev = eventbus::make_event({.event_type = "soak.tick", .aggregate_type = "soak",
                                          .aggregate_id = "s-" + std::to_string(seq % 500),
                                          .payload = {{"seq", seq}, {"filler", std::string(200, 'x')}}});
    if (bus.publish(ev)) append_line(out, ev.event_id());
  }
  const auto flushed = kafka->flush(std::chrono::seconds(30));
  close(out);
  if (!flushed) {
    std::fprintf(stderr, "soak publish: %s\n", flushed.error().to_string().c_str());
    return 1;
  }
  return 0;
}

int work(const std::string& bootstrap, const std::string& group, const char* out_path) {
  const int out = open(out_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (out < 0) return 1;
  eventbus::worker w({.kafka = {.bootstrap_servers = bootstrap,
                                .properties = {{"session.timeout.ms", "6000"},
                                               {"heartbeat.interval.ms", "500"},
                                               {"fetch.wait.max.ms", "10"},
                                               {"log_level", "3"}}},
                      .group_id = group,
                      .topics = {soak_topic}});
  auto sub = w.subscribe("soak.tick", "tick", [&](const eventbus::event& ev) {
    thread_local std::mt19937 rng(std::random_device{}());
    if (ev.payload().value("seq", 0L) % 100 == 0) throw eventbus::permanent_error("seq is a multiple of 100");
    if (rng() % 100 < 5) throw std::runtime_error("transient failure");
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    append_line(out, ev.event_id());
  });
  w.start();
  eventbus::wait_for_stop_signal();
  w.stop();
  close(out);
  return 0;
}

// Event ids of every record in the dead-letter topic, read from the beginning to the end.
std::multiset<std::string> dead_lettered(const std::string& bootstrap) {
  const auto dlq = eventbus::dlq_topic_for(soak_topic).value();
  char why[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), why, sizeof why);
  rd_kafka_conf_set(conf, "group.id", "soak-account", why, sizeof why);
  rd_kafka_conf_set(conf, "enable.partition.eof", "true", why, sizeof why);
  rd_kafka_conf_set(conf, "log_level", "3", why, sizeof why);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof why);
  std::multiset<std::string> ids;
  const rd_kafka_metadata_t* md = nullptr;
  rd_kafka_topic_t* t = rd_kafka_topic_new(rk, dlq.c_str(), nullptr);
  if (rd_kafka_metadata(rk, 0, t, &md, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1 &&
      md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    rd_kafka_topic_partition_list_t* parts = rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
    for (int i = 0; i < md->topics[0].partition_cnt; ++i)
      rd_kafka_topic_partition_list_add(parts, dlq.c_str(), md->topics[0].partitions[i].id)->offset =
          RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(rk, parts);
    int at_end = 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (at_end < parts->cnt && std::chrono::steady_clock::now() < deadline) {
      rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 500);
      if (m == nullptr) continue;
      if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        ++at_end;
      } else if (!m->err && m->payload) {
        const auto v = nlohmann::json::parse(static_cast<const char*>(m->payload),
                                             static_cast<const char*>(m->payload) + m->len, nullptr, false);
        if (v.is_object() && v.contains("event_id") && v["event_id"].is_string()) ids.insert(v["event_id"]);
      }
      rd_kafka_message_destroy(m);
    }
    rd_kafka_topic_partition_list_destroy(parts);
  }
  if (md) rd_kafka_metadata_destroy(md);
  rd_kafka_topic_destroy(t);
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return ids;
}

std::vector<std::string> lines(const std::string& path) {
  std::vector<std::string> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);)
    if (line.size() == 36) out.push_back(line);  // a torn last line (killed mid-write) is not an id
  return out;
}

// published = handled + dead-lettered, each at least once; prints the figures, exits 1 on a loss.
int account(const std::string& bootstrap, int files, char** paths) {
  const auto published = lines(paths[0]);
  std::map<std::string, int> handled;
  for (int i = 1; i < files; ++i)
    for (const auto& id : lines(paths[i])) ++handled[id];
  const auto dead = dead_lettered(bootstrap);
  long missing = 0, handled_twice = 0, dead_twice = 0, both = 0;
  for (const auto& id : published) {
    const auto h = handled.find(id);
    const auto d = dead.count(id);
    if (h == handled.end() && d == 0) ++missing;
    if (h != handled.end() && d > 0) ++both;
  }
  for (const auto& [id, n] : handled) handled_twice += n - 1;
  for (auto it = dead.begin(); it != dead.end(); it = dead.upper_bound(*it)) dead_twice += static_cast<long>(dead.count(*it)) - 1;
  std::set<std::string> dead_ids(dead.begin(), dead.end());
  std::printf("published %zu  handled %zu  dead-lettered %zu  missing %ld  handled twice %ld  dead-lettered twice %ld"
              "  both %ld\n",
              published.size(), handled.size(), dead_ids.size(), missing, handled_twice, dead_twice, both);
  return missing == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  eventbus::watch_stop_signals();
  const std::string mode = argc > 1 ? argv[1] : "";
  try {
    if (mode == "publish" && argc == 6) return publish(argv[2], std::stoi(argv[3]), std::stoi(argv[4]), argv[5]);
    if (mode == "work" && argc == 5) return work(argv[2], argv[3], argv[4]);
    if (mode == "account" && argc >= 5) return account(argv[2], argc - 3, argv + 3);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "soak_node %s: %s\n", mode.c_str(), e.what());
    return 1;
  }
  std::fprintf(stderr,
               "usage: soak_node publish BOOTSTRAP EVENTS_PER_SECOND SECONDS OUT_FILE\n"
               "       soak_node work BOOTSTRAP GROUP OUT_FILE\n"
               "       soak_node account BOOTSTRAP PUBLISHED_FILE HANDLED_FILE...\n");
  return 2;
}
