// Workers that die or join mid-stream: SIGKILL loses nothing, committed offsets never pass an
// unhandled record, and a rebalance loses nothing.

#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <fstream>
#include <map>
#include <mutex>
#include <set>

#include "eventbus/kafka/embedded_broker.hpp"
#include "eventbus/kafka/kafka_sink.hpp"
#include "eventbus/worker.hpp"
#include "kafka_test_support.hpp"
#include "test_support.hpp"
#include "worker_test_support.hpp"

using namespace eventbus;
using namespace std::chrono_literals;
using eventbus::testing::wait_until;

namespace {

constexpr const char* topic = "app.order.order.created";

struct position {
  std::int32_t partition;
  std::int64_t offset;
};

// Publishes `count` events over many aggregates; returns where each landed, by event id.
std::map<std::string, position> publish(const embedded_broker& broker, int count) {
  kafka_sink sink({.kafka = {.bootstrap_servers = broker.bootstrap_servers(), .properties = {{"log_level", "3"}}}});
  std::vector<std::pair<std::string, delivery_future>> pending;
  for (int i = 0; i < count; ++i) {
    auto ev = make_event({.event_type = "order.created", .aggregate_type = "order",
                          .aggregate_id = "o-" + std::to_string(i % 97), .payload = {{"seq", i}}});
    pending.emplace_back(ev.event_id(), sink.accept(ev));
  }
  std::map<std::string, position> where;
  for (auto& [id, future] : pending) {
    const auto d = future.get().value();
    where[id] = {d.partition, d.offset};
  }
  return where;
}

std::set<std::string> lines_of(const std::string& path) {
  std::set<std::string> lines;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);)
    if (line.size() == 36) lines.insert(line);  // a torn last line (killed mid-write) is not a record
  return lines;
}

pid_t spawn_worker(const embedded_broker& broker, const std::string& group, const std::string& out) {
  const pid_t pid = fork();
  if (pid == 0) {
    execl(EVENTBUS_WORKER_PROCESS, EVENTBUS_WORKER_PROCESS, broker.bootstrap_servers().c_str(), group.c_str(), topic,
          out.c_str(), "5000", static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

}  // namespace

TEST_CASE("a worker killed with SIGKILL mid-stream loses nothing and commits never pass an unhandled record") {
  embedded_broker broker;
  broker.create_topic(topic, 8);
  constexpr int total = 20'000;
  const auto where = publish(broker, total);
  REQUIRE(where.size() == total);

  const std::string dir = "worker_crash_test." + std::to_string(getpid());
  const std::string first_out = dir + ".first", second_out = dir + ".second";
  std::remove(first_out.c_str());
  std::remove(second_out.c_str());

  const pid_t first = spawn_worker(broker, "g-crash", first_out);
  REQUIRE(first > 0);
  // Killed once it handled a good part and committed some of it (commits go every 100 ms).
  REQUIRE(wait_until(
      [&] {
        if (lines_of(first_out).size() < 3000) return false;
        for (std::int32_t p = 0; p < 8; ++p)
          if (testing::committed_offset(broker.bootstrap_servers(), "g-crash", topic, p) > 0) return true;
        return false;
      },
      60s));
  REQUIRE(kill(first, SIGKILL) == 0);
  REQUIRE(waitpid(first, nullptr, 0) == first);
  const auto handled_by_first = lines_of(first_out);
  CHECK(handled_by_first.size() < total);  // it really died mid-stream

  // Every record below a committed offset was handled by the dead worker.
  std::map<std::int32_t, std::int64_t> committed;
  for (std::int32_t p = 0; p < 8; ++p)
    committed[p] = testing::committed_offset(broker.bootstrap_servers(), "g-crash", topic, p);
  int committed_records = 0;
  for (const auto& [id, pos] : where) {
    if (pos.offset < committed[pos.partition]) {
      ++committed_records;
      CHECK_MESSAGE(handled_by_first.count(id) == 1, "committed but never handled: " << id);
    }
  }
  CHECK(committed_records > 0);

  const pid_t second = spawn_worker(broker, "g-crash", second_out);
  REQUIRE(second > 0);
  const bool all_handled = wait_until(
      [&] {
        auto handled = lines_of(second_out);
        handled.insert(handled_by_first.begin(), handled_by_first.end());
        return handled.size() == total;
      },
      90s);
  kill(second, SIGTERM);
  int status = 0;
  REQUIRE(waitpid(second, &status, 0) == second);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(all_handled);
  // SIGTERM is a graceful stop: everything handled is committed before the process exits.
  std::int64_t committed_total = 0;
  for (std::int32_t p = 0; p < 8; ++p)
    committed_total += testing::committed_offset(broker.bootstrap_servers(), "g-crash", topic, p);
  CHECK(committed_total == total);
  std::remove(first_out.c_str());
  std::remove(second_out.c_str());
}

TEST_CASE("a second worker joining mid-stream (rebalance) loses nothing") {
  embedded_broker broker;
  broker.create_topic(topic, 4);
  constexpr int total = 4000;
  const auto where = publish(broker, total);

  std::mutex mu;
  std::set<std::string> handled;
  auto record = [&](const event& ev) {
    std::this_thread::sleep_for(5ms);  // simulated work: 4000 x 5 ms on 4 threads, about 5 s of stream
    const std::lock_guard lock(mu);
    handled.insert(ev.event_id());
  };
  auto options = worker_options{.kafka = testing::mock_group_kafka(broker),
                                .group_id = "g-rebalance",
                                .topics = {topic},
                                .max_concurrency = 4,  // calls still in flight when the second joins
                                // Small windows: partitions are paused when the rebalance comes, and
                                // must not stay paused when they are assigned again.
                                .max_buffered_per_partition = 50,
                                .commit_interval = 100ms};
  worker first(options);
  auto s1 = first.subscribe("*", "record", record);
  first.start();
  REQUIRE(wait_until([&] {
    const std::lock_guard lock(mu);
    return handled.size() >= 200;
  }, 30s));
  REQUIRE(wait_until([&] { return first.stats().in_flight > 0; }, 5s));

  worker second(options);
  auto s2 = second.subscribe("*", "record", record);
  second.start();
  REQUIRE(wait_until([&] { return second.assigned_partitions() > 0; }, 30s));  // the rebalance happened
  {
    const std::lock_guard lock(mu);
    CHECK(handled.size() < total);  // ... mid-stream
  }
  const bool all = wait_until(
      [&] {
        const std::lock_guard lock(mu);
        return handled.size() == total;
      },
      60s);
  first.stop();
  second.stop();
  CHECK(all);
  CHECK(first.stats().handled + second.stats().handled >= total);
  // Never committed past the end. (Not necessarily to it: the last worker to stop may find the
  // group rebalancing after the first one left, and then its final commit is refused.)
  std::map<std::int32_t, std::int64_t> ends;
  for (const auto& [id, pos] : where) ends[pos.partition] = std::max(ends[pos.partition], pos.offset + 1);
  for (const auto& [partition, end] : ends)
    CHECK(testing::committed_offset(broker.bootstrap_servers(), "g-rebalance", topic, partition) <= end);
}
