// `eventbus dev-broker` as a separate process: prints its address, serves a client, stops on SIGTERM.

#include <doctest/doctest.h>

#include <sqlite3.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/workflow_tree.hpp"
#include "eventbus/dispatcher.hpp"
#include "eventbus/metrics_server.hpp"
#include "eventbus/kafka/kafka_sink.hpp"
#include "eventbus/kafka/embedded_broker.hpp"
#include "eventbus/admin/topics.hpp"
#include "eventbus/store/sqlite_store.hpp"
#include "kafka/record_producer.hpp"
#include "store/parked_records.hpp"
#include "kafka_test_support.hpp"
#include "http_support.hpp"
#include "process_support.hpp"
#include "test_support.hpp"

using namespace eventbus;
using namespace std::chrono_literals;

using testing::spawn;

TEST_CASE("dev-broker prints its address, serves clients from other processes and stops on SIGTERM") {
  auto broker = spawn({EVENTBUS_CLI_PATH, "dev-broker", "--partitions", "3", "--topic", "app.order.order.created"});
  const std::string bootstrap = broker.read_line();  // blocks until the first line
  CHECK(bootstrap.rfind("127.0.0.1:", 0) == 0);

  {
    kafka_sink sink({.kafka = {.bootstrap_servers = bootstrap, .properties = {{"log_level", "2"}}}});
    const auto ev = make_event({.event_type = "order.created", .aggregate_type = "order", .aggregate_id = "o-1"});
    auto delivered = sink.accept(ev).get();
    REQUIRE(delivered.ok());
    CHECK(delivered.value().partition < 3);  // the topic was created with --partitions 3
    const auto records = testing::read_topic(bootstrap, "app.order.order.created", 1);
    REQUIRE(records.size() == 1);
    CHECK(records[0].value == encode_event(ev));
  }

  CHECK(broker.stop(SIGTERM) == 0);
}

namespace {

/// Runs the command; its standard output (and standard error too, with `errors`). With
/// `limit_seconds`, a command still running then is stopped (exit status 124): for commands that
/// may wait forever when the behaviour under test is broken.
std::string run_cli(const std::string& args, int& exit_code, bool errors = false, int limit_seconds = 0) {
  std::string command = limit_seconds > 0 ? "timeout -k 5 " + std::to_string(limit_seconds) + " " : "";
  command.append(EVENTBUS_CLI_PATH);  // appended step by step: GCC 12 misreports a chain of + here
  command.append(" ").append(args).append(errors ? " 2>&1" : " 2>/dev/null");
  FILE* pipe = popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::string out;
  char buf[4096];
  while (std::fgets(buf, sizeof buf, pipe) != nullptr) out += buf;
  const int status = pclose(pipe);
  exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

/// Commits `offset` for `group` on topic[partition] from outside the group, as a group that ran
/// would have: what `eventbus replay` requires of the group it moves.
void commit_for(const std::string& bootstrap, const std::string& group, const std::string& topic,
                std::int32_t partition, std::int64_t offset) {
  char why[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  for (const auto& [k, v] : std::map<std::string, std::string>{
           {"bootstrap.servers", bootstrap}, {"group.id", group}, {"enable.auto.commit", "false"}, {"log_level", "3"}})
    REQUIRE(rd_kafka_conf_set(conf, k.c_str(), v.c_str(), why, sizeof why) == RD_KAFKA_CONF_OK);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof why);
  REQUIRE(rk != nullptr);
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(list, topic.c_str(), partition)->offset = offset;
  const auto err = rd_kafka_commit(rk, list, 0);
  rd_kafka_topic_partition_list_destroy(list);
  rd_kafka_destroy(rk);
  REQUIRE(err == RD_KAFKA_RESP_ERR_NO_ERROR);
}

/// Whether the cluster has `topic`, asked without naming it (a request naming it could create it).
bool topic_exists(const std::string& bootstrap, const std::string& topic) {
  const auto names = topic_names({.bootstrap_servers = bootstrap, .properties = {{"log_level", "3"}}}, 10s);
  REQUIRE(names.ok());
  return std::find(names.value().begin(), names.value().end(), topic) != names.value().end();
}

}  // namespace

TEST_CASE("eventbus dlq list shows dead letters and dlq replay puts them back") {
  embedded_broker broker;
  const std::string dlq = "app.order.order.created.dlq";
  const auto ev = make_event({.event_type = "order.created", .aggregate_type = "order", .aggregate_id = "o-7"});
  {
    detail::record_producer producer({.bootstrap_servers = broker.bootstrap_servers(), .properties = {{"log_level", "3"}}});
    producer.produce(dlq, "o-7", encode_event(ev),
                     {{"event_id", ev.event_id()},
                      {"x-eventbus-dlq-reason", "handler-error"},
                      {"x-eventbus-dlq-error", "smtp down"},
                      {"x-eventbus-dlq-handler", "mailer"},
                      {"x-eventbus-dlq-attempts", "5"},
                      {"x-eventbus-dlq-original-topic", "app.order.order.created"},
                      {"x-eventbus-dlq-original-partition", "0"},
                      {"x-eventbus-dlq-original-offset", "41"},
                      {"x-eventbus-dlq-group", "billing"},
                      {"x-eventbus-dlq-failed-at", "2026-11-23T10:00:00.000Z"}},
                     [](rd_kafka_resp_err_t err) { REQUIRE(err == RD_KAFKA_RESP_ERR_NO_ERROR); });
    REQUIRE(producer.flush(10s));
  }

  int code = -1;
  const auto listed = run_cli("dlq list " + dlq + " --json --bootstrap " + broker.bootstrap_servers(), code);
  CHECK(code == 0);
  const auto row = nlohmann::json::parse(listed);
  CHECK(row["reason"] == "handler-error");
  CHECK(row["handler"] == "mailer");
  CHECK(row["attempts"] == 5);
  CHECK(row["error"] == "smtp down");
  CHECK(row["original_topic"] == "app.order.order.created");
  CHECK(row["original_offset"] == 41);

  const auto replayed = run_cli("dlq replay " + dlq + " --handler mailer --bootstrap " + broker.bootstrap_servers(), code);
  CHECK(code == 0);
  CHECK(replayed == "replayed 1, skipped 0\n");
  const auto back = testing::read_topic(broker.bootstrap_servers(), "app.order.order.created", 1);
  REQUIRE(back.size() == 1);
  CHECK(back[0].value == encode_event(ev));
  CHECK(back[0].headers.at("x-eventbus-replay-handler") == "mailer");

  (void)run_cli("dlq list", code);
  CHECK(code == 2);  // usage error: no topic
  (void)run_cli("dlq list bad/topic --bootstrap " + broker.bootstrap_servers(), code);
  CHECK(code == 1);  // invalid topic name, said on stderr
}

TEST_CASE("eventbus replay moves a group's offsets to a time and rejects bad input with usage errors") {
  embedded_broker broker;
  const std::string topic = "app.order.order.created";
  broker.create_topic(topic, 2);
  {
    detail::record_producer producer({.bootstrap_servers = broker.bootstrap_servers(), .properties = {{"log_level", "3"}}});
    for (int i = 0; i < 4; ++i)
      producer.produce(topic, "o-" + std::to_string(i), "{}", {},
                       [](rd_kafka_resp_err_t err) { REQUIRE(err == RD_KAFKA_RESP_ERR_NO_ERROR); });
    REQUIRE(producer.flush(10s));
  }
  const std::string where = " --bootstrap " + broker.bootstrap_servers();
  int code = -1;
  for (const char* group : {"billing", "late"}) commit_for(broker.bootstrap_servers(), group, topic, 0, 1);  // groups that ran
  const auto out = run_cli("replay --group billing --topics '^app\\.order\\..*' --from 1970-01-01T00:00:00Z" + where, code);
  CHECK(code == 0);
  CHECK(out == topic + "[0] -> 0\n" + topic + "[1] -> 0\n");

  const auto later = run_cli("replay --group late --topics " + topic + " --from 2999-01-01T00:00:00Z" + where, code);
  CHECK(code == 0);
  const auto ends = testing::topic_record_count(broker.bootstrap_servers(), topic);
  CHECK(ends == 4);
  CHECK(later.find(topic + "[0] -> ") == 0);
  CHECK(testing::committed_offset(broker.bootstrap_servers(), "late", topic, 0) +
            testing::committed_offset(broker.bootstrap_servers(), "late", topic, 1) == 4);

  (void)run_cli("replay --group g --topics " + topic + where, code);
  CHECK(code == 2);  // --from missing
  (void)run_cli("replay --group g --topics " + topic + " --from yesterday" + where, code);
  CHECK(code == 2);
  (void)run_cli("replay --group g --topics '^nothing$' --from 2026-01-01T00:00:00Z" + where, code);
  CHECK(code == 2);
}

TEST_CASE("eventbus config check prints the effective config with secrets redacted, and names bad keys") {
  const std::string dir = EVENTBUS_CONFIG_DIR;
  setenv("EVENTBUS_KAFKA_SASL_PASSWORD", "hunter2", 1);
  setenv("EVENTBUS_GROUP_ID", "billing-blue", 1);
  int code = -1;
  const auto out = run_cli("config check " + dir + "/worker.example.json", code);
  unsetenv("EVENTBUS_KAFKA_SASL_PASSWORD");
  unsetenv("EVENTBUS_GROUP_ID");
  CHECK(code == 0);
  CHECK(out.find("hunter2") == std::string::npos);
  const auto printed = nlohmann::json::parse(out);
  CHECK(printed["kafka"]["properties"]["sasl.password"] == "***");
  CHECK(printed["worker"]["group"] == "billing-blue");

  const std::string bad = "cli_config_bad.json";
  std::FILE* f = std::fopen(bad.c_str(), "w");
  REQUIRE(f != nullptr);
  std::fputs(R"({"worker": {"concurency": 4}})", f);
  std::fclose(f);
  (void)run_cli("config check " + bad, code);
  CHECK(code == 1);
  std::remove(bad.c_str());
  (void)run_cli("config check", code);
  CHECK(code == 2);
}

TEST_CASE("eventbus publish takes flags or JSON lines, skips bad lines by number, and topics and tail show the result") {
  embedded_broker broker;
  broker.create_topic("app.order.order.created", 2);
  const std::string where = " --bootstrap " + broker.bootstrap_servers();
  int code = -1;

  const auto one = run_cli("publish --type order.created --aggregate-id o-1 --payload '{\"total\":5}'" + where, code);
  CHECK(code == 0);
  CHECK(one.rfind("app.order.order.created[", 0) == 0);  // where it landed, then its event id

  const std::string input = "cli_publish_input.jsonl";
  std::FILE* f = std::fopen(input.c_str(), "w");
  REQUIRE(f != nullptr);
  std::fputs("{\"event_type\":\"order.paid\",\"aggregate_id\":\"o-1\",\"payload\":{\"total\":5}}\n"
             "not json\n"
             "\n"
             "{\"event_type\":\"Order Paid\",\"aggregate_id\":\"o-2\"}\n"
             "{\"event_type\":\"order.paid\",\"aggregate_id\":\"o-3\",\"correlation_id\":\"c-9\"}\n",
             f);
  std::fclose(f);
  (void)run_cli("publish --stdin" + where + " < " + input, code);
  CHECK(code == 1);  // two lines were invalid: reported, skipped, the rest delivered
  std::remove(input.c_str());
  CHECK(testing::topic_record_count(broker.bootstrap_servers(), "app.order.order.paid") == 2);

  const auto listed = run_cli("topics --json" + where, code);
  CHECK(code == 0);
  std::map<std::string, nlohmann::json> by_name;
  for (std::size_t start = 0, end; (end = listed.find('\n', start)) != std::string::npos; start = end + 1) {
    const auto row = nlohmann::json::parse(listed.substr(start, end - start));
    by_name[row["topic"]] = row;
  }
  REQUIRE(by_name.count("app.order.order.created") == 1);
  CHECK(by_name["app.order.order.created"]["partitions"] == 2);
  CHECK(by_name["app.order.order.created"]["total"] == 1);
  CHECK(by_name["app.order.order.paid"]["total"] == 2);

  testing::produce_raw(broker.bootstrap_servers(), "app.order.order.created", "o-9", "{oops");
  const auto tailed = run_cli("tail --topics '^app\\.order\\..*' --from-beginning --json --limit 4" + where, code);
  CHECK(code == 0);
  int events = 0, errors = 0;
  std::set<std::string> correlations;
  for (std::size_t start = 0, end; (end = tailed.find('\n', start)) != std::string::npos; start = end + 1) {
    const auto row = nlohmann::json::parse(tailed.substr(start, end - start));
    if (row.contains("event")) {
      ++events;
      if (row["event"].contains("correlation_id")) correlations.insert(row["event"]["correlation_id"]);
    } else {
      ++errors;
      CHECK(row["error"].get<std::string>().find("not JSON") != std::string::npos);
    }
  }
  CHECK(events == 3);
  CHECK(errors == 1);
  CHECK(correlations == std::set<std::string>{"c-9"});

  (void)run_cli("publish --type order.created" + where, code);
  CHECK(code == 2);  // no aggregate id: the error names the field
  (void)run_cli("tail" + where, code);
  CHECK(code == 2);
}

TEST_CASE("eventbus demo runs the workflow through a worker group and its summary adds up") {
  int code = -1;
  const auto out = run_cli("demo --duration 5 --rate 20 --metrics-listen 127.0.0.1:0", code);
  INFO("the demo printed:\n" << out);
  CHECK(code == 0);
  const auto line = out.find("summary: ");
  REQUIRE_MESSAGE(line != std::string::npos, out);
  unsigned long long published = 0, handled = 0, dead = 0, expected = 0, duplicates = 0;
  char adds_up[8] = {};
  REQUIRE(std::sscanf(out.c_str() + line,
                      "summary: published=%llu handled=%llu dead_lettered=%llu expected_dead_letters=%llu "
                      "duplicate_dead_letters=%llu adds_up=%7s",
                      &published, &handled, &dead, &expected, &duplicates, adds_up) == 6);
  CHECK(published > 300);  // 5 s at 20 workflows/s, about 4 events each
  CHECK(published == handled + dead);
  CHECK(dead == expected);  // read back from the dead-letter topic: exactly the unreachable users' events
  CHECK(expected > 0);
  CHECK(std::string(adds_up) == "yes");
  CHECK(out.find("retried    0") == std::string::npos);  // the cold cache was retried
  CHECK(out.find("eventbus dlq list app.image_generation.image.generated.dlq") != std::string::npos);
}

TEST_CASE("eventbus demo runs any number of times against the same Kafka, counting only its own events") {
  embedded_broker broker;  // a Kafka of its own, outside the demo's process, as a dev-broker would be
  for (int run = 1; run <= 2; ++run) {
    CAPTURE(run);
    int code = -1;
    const auto out = run_cli("demo --duration 2 --rate 10 --metrics-listen 127.0.0.1:0 --bootstrap " +
                                 broker.bootstrap_servers(), code);
    INFO("the demo printed:\n" << out);
    CHECK(code == 0);
    CHECK(out.find("adds_up=yes") != std::string::npos);
    // The second run finds the first run's dead letters, and says they are not counted.
    if (run == 2) CHECK(out.find("from earlier runs not counted") != std::string::npos);
  }
}

TEST_CASE("hostile input to the commands: clear errors and exit codes, never a crash") {
  embedded_broker broker;
  broker.create_topic("app.order.order.created", 1);
  const auto& bootstrap = broker.bootstrap_servers();
  const std::string where = " --bootstrap " + bootstrap;
  int code = -1;

  // dlq list --json: a key and an error that are not UTF-8 still make valid JSON lines.
  const std::string dlq = "app.order.order.created.dlq";
  testing::produce_raw(bootstrap, {.topic = dlq, .key = std::string("k\xff\xfe", 3), .value = "x",
                                   .headers = {{"x-eventbus-dlq-reason", "deserialization"},
                                               {"x-eventbus-dlq-error", std::string("bad \xc3 byte")},
                                               {"x-eventbus-dlq-original-topic", "app.order.order.created"}}});
  testing::produce_raw(bootstrap, {.topic = dlq, .key = std::nullopt, .value = "y"});
  const auto listed = run_cli("dlq list " + dlq + " --json" + where, code);
  CHECK(code == 0);
  int rows = 0, null_keys = 0;
  for (std::size_t start = 0, end; (end = listed.find('\n', start)) != std::string::npos; start = end + 1) {
    const auto row = nlohmann::json::parse(listed.substr(start, end - start));  // throws on invalid UTF-8
    ++rows;
    if (row["key"].is_null()) ++null_keys;
  }
  CHECK(rows == 2);
  CHECK(null_keys == 1);

  // tail: ids are printed with control characters escaped (no terminal escape, no bell). A NUL is
  // refused in ids (make_event and the decoder), so it never reaches a line.
  const auto sneaky = make_event({.event_type = "order.created", .aggregate_type = "order",
                                  .aggregate_id = std::string("o\x1b[31m-red\x07tail", 15)});
  testing::produce_raw(bootstrap, "app.order.order.created", "o-1", encode_event(sneaky));
  std::string deep = encode_event(make_event({.event_type = "order.created", .aggregate_type = "order", .aggregate_id = "d"}));
  deep.insert(deep.find("\"payload\":{") + 11, "\"d\":" + std::string(300'000, '[') + std::string(300'000, ']') + ",");
  testing::produce_raw(bootstrap, {.topic = "app.order.order.created", .key = "d", .value = deep,
                                   .producer_properties = {{"message.max.bytes", "2000000"}}});
  const auto tailed = run_cli("tail --topics app.order.order.created --from-beginning --limit 2" + where, code);
  CHECK(code == 0);
  CHECK(tailed.find('\x1b') == std::string::npos);
  CHECK_MESSAGE(tailed.find("o\\x1b[31m-red\\x07tail") != std::string::npos, tailed);

  // publish: event types that would land on dead-letter topics are refused; so is a payload
  // nested deeper than the limit (it used to crash at 60k levels).
  (void)run_cli("publish --type payment.dlq --aggregate-id p-1" + where, code);
  CHECK(code == 2);
  (void)run_cli("publish --type order.created.dlq --aggregate-id o-1" + where, code);
  CHECK(code == 2);
  const std::string deep_payload = "deep_payload.json";
  {
    std::ofstream out(deep_payload);
    out << std::string(60'000, '[') << std::string(60'000, ']');
  }
  (void)run_cli("publish --type order.created --aggregate-id o-1 --payload \"$(cat " + deep_payload + ")\"" + where, code);
  CHECK(code == 2);
  std::remove(deep_payload.c_str());

  // publish --file: a bad first line no longer drops the whole file of lines.
  const std::string lines = "cli_bad_first_line.jsonl";
  {
    std::ofstream out(lines);
    out << "{oops\n"
        << R"({"event_type":"order.shipped","aggregate_id":"o-1"})" << "\n"
        << "[" + std::string(500'000, '[') + "\n"
        << R"({"event_type":"order.shipped","aggregate_id":"o-2"})" << "\n";
  }
  (void)run_cli("publish --file " + lines + where, code);
  CHECK(code == 1);  // two lines invalid, named on stderr
  std::remove(lines.c_str());
  CHECK(testing::topic_record_count(bootstrap, "app.order.order.shipped") == 2);

  // config check: a deep value under a known key, a directory, a file that is not there.
  const std::string deep_config = "deep_config.json";
  {
    std::ofstream out(deep_config);
    out << R"({"worker": {"max_concurrency": )" << std::string(300'000, '[') << std::string(300'000, ']') << "}}";
  }
  (void)run_cli("config check " + deep_config, code);
  CHECK(code == 1);
  std::remove(deep_config.c_str());
  (void)run_cli("config check /tmp", code);
  CHECK(code == 1);
}

TEST_CASE("eventbus store lists a store, shows its outbox, and replays stored events to Kafka") {
  embedded_broker broker;
  const std::string path = "cli_store.db";
  for (const char* suffix : {"", "-wal", "-shm"}) std::remove((path + suffix).c_str());
  {
    auto store = open_sqlite_store({.path = path});
    for (int i = 0; i < 30; ++i) {
      const auto ev = make_event({.event_type = i % 3 == 0 ? "order.cancelled" : "order.placed", .aggregate_type = "order",
                                  .aggregate_id = "o-" + std::to_string(i % 5), .payload = {{"seq", i}}});
      REQUIRE(store->append("order", ev.aggregate_id(), eventbus::expected_version::any(), std::span(&ev, 1)).ok());
    }
  }
  int code = -1;
  const auto listed = run_cli("store list --sqlite " + path + " --json --type order.cancelled", code);
  CHECK(code == 0);
  int rows = 0;
  for (std::size_t start = 0, end; (end = listed.find('\n', start)) != std::string::npos; start = end + 1) {
    const auto row = nlohmann::json::parse(listed.substr(start, end - start));
    CHECK(row["event"]["event_type"] == "order.cancelled");
    // "version" is the aggregate's (events 0, 15 of o-0 are its versions 1 and 4); the envelope's
    // schema version has a name of its own.
    const int seq = row["event"]["payload"]["seq"];
    CHECK(row["version"] == seq / 5 + 1);
    CHECK(row["event"]["envelope_version"] == 1);
    CHECK_FALSE(row["event"].contains("version"));
    ++rows;
  }
  CHECK(rows == 10);
  // The last 4 events, in store order; the last 2 of a type.
  const auto recent = run_cli("store list --sqlite " + path + " --recent 4 --json", code);
  CHECK(code == 0);
  std::vector<std::int64_t> recent_positions;
  for (std::size_t start = 0, end; (end = recent.find('\n', start)) != std::string::npos; start = end + 1)
    recent_positions.push_back(nlohmann::json::parse(recent.substr(start, end - start))["position"].get<std::int64_t>());
  CHECK(recent_positions == std::vector<std::int64_t>{27, 28, 29, 30});
  const auto recent_cancelled = run_cli("store list --sqlite " + path + " --recent 2 --type order.cancelled --json", code);
  CHECK(code == 0);
  CHECK(recent_cancelled.find("\"position\":25") != std::string::npos);  // events 24 and 27 (positions 25, 28)
  CHECK(recent_cancelled.find("\"position\":28") != std::string::npos);
  CHECK(std::count(recent_cancelled.begin(), recent_cancelled.end(), '\n') == 2);
  (void)run_cli("store list --sqlite " + path + " --recent 2 --limit 3", code);
  CHECK(code == 2);

  // Health: 30 events stored just now and not published: healthy; with a max age of 1 s once they
  // are older than that, not (exit 1, saying why).
  const auto healthy = run_cli("store health --sqlite " + path, code);
  CHECK(code == 0);
  CHECK(healthy.find("healthy") != std::string::npos);
  CHECK(healthy.find("schema ") != std::string::npos);
  CHECK(testing::wait_until([&] {
    const auto stale = run_cli("store health --sqlite " + path + " --max-age 1", code);
    return code == 1 && stale.find("oldest unpublished event has waited") != std::string::npos;
  }, 10s));
  (void)run_cli("store health --sqlite cli_store_typo.db", code);
  CHECK(code == 1);

  const auto stats = run_cli("store stats --sqlite " + path, code);
  CHECK(code == 0);
  CHECK(stats.find("outbox backlog 30 events") != std::string::npos);
  const auto replayed = run_cli("store replay --sqlite " + path + " --aggregate order/o-1 --bootstrap " +
                                    broker.bootstrap_servers(), code);
  CHECK(code == 0);
  CHECK(replayed == "replayed 6\n");
  CHECK(testing::topic_record_count(broker.bootstrap_servers(), "app.order.order.placed") +
            std::max<std::int64_t>(0, testing::topic_record_count(broker.bootstrap_servers(), "app.order.order.cancelled")) ==
        6);
  (void)run_cli("store list", code);
  CHECK(code == 2);  // no store named
  (void)run_cli("store list --sqlite " + path + " --from yesterday", code);
  CHECK(code == 2);
  (void)run_cli("store list --sqlite /nonexistent-dir/x.db", code);
  CHECK(code == 1);
  // A mistyped path is named and not created (it used to report an empty store, exit 0).
  std::remove("cli_store_typo.db");
  const auto typo = run_cli("store stats --sqlite cli_store_typo.db", code, true);
  CHECK(code == 1);
  CHECK(typo.find("cli_store_typo.db' does not exist") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists("cli_store_typo.db"));

  // Projections: listed with their lag; a rebuild resets one, a typo of its name changes nothing.
  {
    auto store = open_sqlite_store({.path = path});
    REQUIRE(store->save_checkpoint("orders_by_status", 25).ok());
  }
  const auto projections = run_cli("store projections --sqlite " + path, code, true);
  CHECK(code == 0);
  CHECK(projections.find("orders_by_status") != std::string::npos);
  CHECK(projections.find("1 projection(s)") != std::string::npos);
  CHECK(projections.find("          25          5") != std::string::npos);  // position 25, 5 stored after it
  const auto typo_rebuild = run_cli("store projections --sqlite " + path + " --rebuild orders_by_stat", code, true);
  CHECK(code == 1);
  CHECK(typo_rebuild.find("no projection named 'orders_by_stat'") != std::string::npos);
  const auto rebuilt = run_cli("store projections --sqlite " + path + " --rebuild orders_by_status", code);
  CHECK(code == 0);
  CHECK(rebuilt.find("reset to position 0") != std::string::npos);
  CHECK(open_sqlite_store({.path = path, .read_only = true})->load_checkpoint("orders_by_status").value() == 0);
  (void)run_cli("store projections --sqlite cli_store_typo.db --rebuild x", code, true);
  CHECK(code == 1);
  CHECK_FALSE(std::filesystem::exists("cli_store_typo.db"));

  // A store copy's progress in the target is eventbus's own: neither listed nor counted as a
  // projection, and not reset by a rebuild (the copy would start again into a target it filled).
  const std::string target_copy = "cli_store_copied_into.db";
  for (const char* suffix : {"", "-wal", "-shm"}) std::remove((target_copy + suffix).c_str());
  {
    auto target = open_sqlite_store({.path = target_copy});
    REQUIRE(target->save_checkpoint("eventbus.copy", 30).ok());
    REQUIRE(target->save_checkpoint("orders_by_status", 12).ok());
  }
  const auto own = run_cli("store projections --sqlite " + target_copy, code, true);
  CHECK(code == 0);
  CHECK(own.find("eventbus.copy") == std::string::npos);
  CHECK(own.find("1 projection(s)") != std::string::npos);
  const auto own_rebuild = run_cli("store projections --sqlite " + target_copy + " --rebuild eventbus.copy", code, true);
  CHECK(code == 1);
  CHECK(own_rebuild.find("'eventbus.copy' is eventbus's own progress") != std::string::npos);
  CHECK(open_sqlite_store({.path = target_copy, .read_only = true})->load_checkpoint("eventbus.copy").value() == 30);

  // Copy: into a new file, every event; a source that does not exist is named and not created.
  const std::string copy = "cli_store_copy.db";
  for (const char* suffix : {"", "-wal", "-shm"}) std::remove((copy + suffix).c_str());
  const auto copied = run_cli("store copy --from sqlite:" + path + " --to sqlite:" + copy, code);
  CHECK(code == 0);
  CHECK(copied == "copied 30 events, 0 snapshots, 1 checkpoints; complete\n");
  CHECK(open_sqlite_store({.path = copy, .read_only = true})->last_position().value() == 30);
  (void)run_cli("store copy --from sqlite:cli_store_typo.db --to sqlite:" + copy, code, true);
  CHECK(code == 1);
  CHECK_FALSE(std::filesystem::exists("cli_store_typo.db"));
  (void)run_cli("store copy --from mysql:x --to sqlite:" + copy, code, true);
  CHECK(code == 2);
  const auto into_full = run_cli("store copy --from sqlite:" + copy + " --to sqlite:" + path, code, true);
  CHECK(code == 1);
  CHECK(into_full.find("already holds events") != std::string::npos);

  // Export and import: a backup as JSON lines, read back into a new store.
  const std::string backup = "cli_store_backup.jsonl", restored = "cli_store_restored.db";
  for (const char* suffix : {"", "-wal", "-shm"}) std::remove((restored + suffix).c_str());
  (void)run_cli("store export --sqlite " + path + " > " + backup, code);
  CHECK(code == 0);
  const auto imported = run_cli("store import --sqlite " + restored + " < " + backup, code);
  CHECK(code == 0);
  CHECK(imported == "imported 30 events, 1 checkpoints; complete\n");
  CHECK(open_sqlite_store({.path = restored, .read_only = true})->last_position().value() == 30);
  std::remove(backup.c_str());
  for (const auto& file : {path, copy, restored})
    for (const char* suffix : {"", "-wal", "-shm"}) std::remove((file + suffix).c_str());
}

TEST_CASE("eventbus store reads no outbox of a store an older eventbus made, and says how to migrate it") {
  const std::string path = "cli_store_older.db", copy = "cli_store_older_copy.db";
  for (const auto& file : {path, copy})
    for (const char* suffix : {"", "-wal", "-shm"}) std::remove((file + suffix).c_str());
  {
    auto store = open_sqlite_store({.path = path});
    const auto ev = make_event({.event_type = "order.placed", .aggregate_type = "order", .aggregate_id = "o-1"});
    REQUIRE(store->append("order", "o-1", eventbus::expected_version::none(), std::span(&ev, 1)).ok());
  }
  // Back to the sixth schema (its outbox state in each event's row), as an older eventbus left it.
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  REQUIRE(sqlite3_exec(db,
                       "ALTER TABLE event_store ADD COLUMN published INTEGER NOT NULL DEFAULT 0; "
                       "CREATE INDEX event_store_unpublished ON event_store (position) WHERE published = 0; "
                       "DROP TRIGGER eventbus_outbox_queue; DROP TABLE eventbus_outbox; "
                       "DELETE FROM eventbus_schema WHERE version = 7",
                       nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(db);
  const std::string expected = "schema 6 is older than this build's 7: open it once read-write";
  int code = -1;
  for (const std::string& command : {"store stats --sqlite " + path, "store export --sqlite " + path,
                                    "store copy --from sqlite:" + path + " --to sqlite:" + copy}) {
    CAPTURE(command);
    const auto said = run_cli(command, code, true);
    CHECK(code == 1);
    CHECK(said.find(expected) != std::string::npos);
  }
  CHECK_FALSE(std::filesystem::exists(copy));  // nothing made by a copy that could not read
  // Its events can still be listed; a read-write open migrates it, and then it reads.
  (void)run_cli("store list --sqlite " + path, code);
  CHECK(code == 0);
  (void)open_sqlite_store({.path = path});
  const auto stats = run_cli("store stats --sqlite " + path, code);
  CHECK(code == 0);
  CHECK(stats.find("outbox backlog 1 events") != std::string::npos);
  for (const auto& file : {path, copy})
    for (const char* suffix : {"", "-wal", "-shm"}) std::remove((file + suffix).c_str());
}

TEST_CASE("eventbus tail --correlation shows one workflow as a tree, each event under its cause") {
  embedded_broker broker;
  auto kafka = std::make_shared<kafka_sink>(producer_options{.kafka = {.bootstrap_servers = broker.bootstrap_servers()}});
  dispatcher bus({.mode = dispatch_mode::caller_thread});
  bus.add_sink(kafka);
  const auto follow = [&](const char* type) {
    (void)bus.publish(make_event({.event_type = type, .aggregate_type = "order", .aggregate_id = "o-1"}));
  };
  auto a = bus.subscribe("order.placed", "pay", [&](const event&) { follow("order.paid"); });
  auto b = bus.subscribe("order.placed", "notify", [&](const event&) { follow("order.notified"); });
  auto c = bus.subscribe("order.paid", "ship", [&](const event&) { follow("order.shipped"); });
  const auto root = make_event({.event_type = "order.placed", .aggregate_type = "order", .aggregate_id = "o-1"});
  REQUIRE(bus.publish(root).accepted());
  REQUIRE(bus.publish(make_event({.event_type = "order.placed", .aggregate_type = "order", .aggregate_id = "o-2"})).accepted());
  REQUIRE(kafka->flush(std::chrono::seconds(10)).ok());

  int code = -1;
  const auto out = run_cli("tail --topics '^app\\.order\\..*' --from-beginning --correlation " + root.event_id() +
                               " --limit 4 --bootstrap " + broker.bootstrap_servers(), code);
  CHECK(code == 0);
  CAPTURE(out);
  const auto header = out.find("workflow " + root.event_id() + ": 4 event(s)\n");
  REQUIRE(header != std::string::npos);
  const auto tree = out.substr(header);
  const auto line_of = [&](const std::string& type) {
    const auto at = tree.find(type + "  ");
    REQUIRE(at != std::string::npos);
    return tree.substr(tree.rfind('\n', at) + 1, at - tree.rfind('\n', at) - 1);  // what precedes the type
  };
  CHECK(line_of("order.placed") == "* ");
  CHECK(line_of("order.paid") == "  `- ");
  CHECK(line_of("order.notified") == "  `- ");
  CHECK(line_of("order.shipped") == "    `- ");
  CHECK(tree.find("o-2") == std::string::npos);  // another workflow

  // --until-end: stops by itself once everything there was is read, and prints the tree then
  // (it used to wait for Ctrl-C or --limit); stderr says it reached the end.
  const auto ended = run_cli("tail --topics '^app\\.order\\..*' --from-beginning --until-end --correlation " +
                                 root.event_id() + " --bootstrap " + broker.bootstrap_servers(), code, true);
  CHECK(code == 0);
  CHECK_MESSAGE(ended.find("reached the end: 4 event(s) so far") != std::string::npos, ended);
  CHECK(ended.find("workflow " + root.event_id() + ": 4 event(s)\n") != std::string::npos);
}

TEST_CASE("a workflow tree of a 100,000-event causation chain renders in linear space, without recursion") {
  std::vector<event> chain;
  chain.reserve(100'000);
  chain.push_back(make_event({.event_type = "order.placed", .aggregate_type = "order", .aggregate_id = "o-1"}));
  for (int i = 1; i < 100'000; ++i)
    chain.push_back(make_event({.event_type = "order.step", .aggregate_type = "order", .aggregate_id = "o-1",
                                .timestamp = chain.back().timestamp(), .correlation_id = chain.front().event_id(),
                                .causation_id = chain.back().event_id()}));
  const auto tree = cli::render_workflow(chain);  // used to overflow the stack (SIGSEGV)
  CHECK(std::count(tree.begin(), tree.end(), '\n') == 100'000);
  CHECK(tree.size() < 100'000 * 200);  // indentation capped: it grew with the depth, 4 GB in all
  CHECK(tree.find("[99999] `- order.step") != std::string::npos);
  CHECK(tree.find(std::string(2 * cli::max_indent_depth + 1, ' ')) == std::string::npos);
}

TEST_CASE("eventbus new refuses names that would not compile or would collide, and names the problem") {
  const std::string dir = "cli_new_scratch";
  std::filesystem::remove_all(dir);
  int code = -1;
  const auto expect_usage = [&](const std::string& args, const std::string& why) {
    CAPTURE(args);
    const auto err = run_cli(args + " --dir " + dir, code, true);
    CHECK(code == 2);
    CHECK(err.find(why) != std::string::npos);
  };
  expect_usage("new event Order.Shipped", "Order.Shipped");
  expect_usage("new event order.shipped --field carrier", "not NAME:TYPE");
  expect_usage("new event order.shipped --field carrier:float", "unknown type 'float'");
  expect_usage("new event order.shipped --field class:string", "keyword");
  expect_usage("new event order.shipped --field Carrier:string", "lower-case C++ name");
  expect_usage("new event order.shipped --field a:int --field a:string", "given twice");
  expect_usage("new event order.shipped --aggregate 'a.b'", "--aggregate");
  expect_usage("new event 3d.rendered", "C++ struct name");
  expect_usage("new handler 9lives --event order.shipped", "handler name");
  expect_usage("new handler notify", "--event TYPE is required");
  CHECK_FALSE(std::filesystem::exists(dir + "/order_shipped.hpp"));  // nothing written on any of these

  const auto missing = run_cli("new handler notify --event order.shipped --dir " + dir, code, true);
  CHECK(code == 1);
  CHECK(missing.find("eventbus new event order.shipped") != std::string::npos);  // says what to run first
  (void)run_cli("new event order.shipped --dir " + dir, code);
  CHECK(code == 0);
  (void)run_cli("new event order.shipped --dir " + dir, code);
  CHECK(code == 1);  // exists: refused without --force
  (void)run_cli("new kind x", code);
  CHECK(code == 2);
  std::filesystem::remove_all(dir);
}

TEST_CASE("eventbus new handler prints CMake lines that register the test with ctest, and its test names read right") {
  const std::string dir = "cli_new_handler_scratch";
  std::filesystem::remove_all(dir);
  int code = -1;
  const auto read = [&](const std::string& name) {
    std::ifstream in(dir + "/" + name);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
  };
  for (const char* type : {"order.shipped", "user.created", "item.added"}) {
    (void)run_cli(std::string("new event ") + type + " --dir " + dir, code);
    REQUIRE(code == 0);
  }
  const auto printed = run_cli("new handler notify --event order.shipped --dir " + dir, code);
  CHECK(code == 0);
  // add_test registers nothing unless enable_testing() ran first in the top-level CMakeLists.txt.
  const auto enable = printed.find("enable_testing()");
  REQUIRE_MESSAGE(enable != std::string::npos, printed);
  CHECK(enable < printed.find("add_test(NAME notify_test COMMAND notify_test)"));
  CHECK(printed.find("notify.cpp") != std::string::npos);  // the registration, linked with the test and the program
  CHECK(read("notify.cpp").find("eventbus::registered_handler::of<order_shipped>(\"notify\"") != std::string::npos);
  CHECK(read("notify_test.cpp").find("is dead-lettered on an order.shipped payload") != std::string::npos);

  (void)run_cli("new handler welcome --event user.created --dir " + dir, code);
  CHECK(code == 0);
  CHECK(read("welcome_test.cpp").find("is dead-lettered on a user.created payload") != std::string::npos);
  (void)run_cli("new handler count --event item.added --dir " + dir, code);
  CHECK(code == 0);
  CHECK(read("count_test.cpp").find("is dead-lettered on an item.added payload") != std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST_CASE("eventbus dlq replay reads x-eventbus-replay-count strictly: bad counts restart at 0 with a warning, big ones saturate") {
  embedded_broker broker;
  const std::string topic = "app.order.order.created", dlq = topic + ".dlq";
  broker.create_topic(topic, 1);
  broker.create_topic(dlq, 1);
  const std::string max = "18446744073709551615";
  // key -> the count the dead letter carries, and the count its replay must carry.
  const std::map<std::string, std::pair<std::string, std::string>> cases{
      {"plain", {"2", "3"}},           {"negative", {"-5", "1"}},   {"signed", {"+4", "1"}},
      {"junk", {"7x", "1"}},           {"empty", {"", "1"}},        {"at-max", {max, max}},
      {"overflow", {"99999999999999999999999", max}}};
  for (const auto& [key, counts] : cases)
    testing::produce_raw(broker.bootstrap_servers(),
                         {.topic = dlq, .key = key, .value = "{}",
                          .headers = {{"x-eventbus-replay-count", counts.first},
                                      {"x-eventbus-dlq-original-topic", topic}}});

  int code = -1;
  const auto out = run_cli("dlq replay " + dlq + " --bootstrap " + broker.bootstrap_servers(), code, true);
  CHECK(code == 0);
  CAPTURE(out);
  CHECK(out.find("replayed 7, skipped 0") != std::string::npos);
  for (const char* bad : {"'-5' is not a count", "'+4' is not a count", "'7x' is not a count", "'' is not a count"})
    CHECK(out.find(bad) != std::string::npos);
  CHECK(out.find("'2' is not a count") == std::string::npos);

  const auto back = testing::read_topic(broker.bootstrap_servers(), topic, cases.size());
  REQUIRE(back.size() == cases.size());
  for (const auto& r : back) {
    CAPTURE(r.key);
    CHECK(r.headers.at("x-eventbus-replay-count") == cases.at(r.key).second);
  }
}

TEST_CASE("eventbus config check --role checks what that process needs and says which role it checked") {
  const std::string file = "cli_config_role.json";
  const auto write = [&](const char* text) {
    std::ofstream out(file, std::ios::trunc);
    out << text;
  };
  int code = -1;
  // No worker.group: valid keys, but a worker refuses it (order_worker: "worker.group: must not be empty").
  write(R"({"kafka": {"bootstrap_servers": "localhost:9092"}})");
  auto out = run_cli("config check " + file + " --role worker", code, true);
  CHECK(code == 1);
  CHECK_MESSAGE(out.find("worker.group: must not be empty") != std::string::npos, out);
  CHECK(out.find("role worker") != std::string::npos);
  out = run_cli("config check " + file + " --role service", code, true);
  CHECK(code == 0);
  CHECK_MESSAGE(out.find("valid for role service") != std::string::npos, out);
  out = run_cli("config check " + file + " --role relay", code, true);
  CHECK(code == 1);
  CHECK_MESSAGE(out.find("store.backend: must be sqlite or postgresql for a relay") != std::string::npos, out);
  out = run_cli("config check " + file, code, true);
  CHECK(code == 0);
  CHECK_MESSAGE(out.find("no role checked") != std::string::npos, out);

  write(R"({"worker": {"group": "billing"}, "store": {"backend": "sqlite", "path": "x.db"}})");
  out = run_cli("config check " + file + " --role worker", code, true);
  CHECK(code == 0);
  CHECK_MESSAGE(out.find("valid for role worker") != std::string::npos, out);
  (void)run_cli("config check " + file + " --role relay", code);
  CHECK(code == 0);

  out = run_cli("config check " + file + " --role wroker", code, true);
  CHECK(code == 2);
  CHECK(out.find("'wroker' is not a role: worker, service or relay") != std::string::npos);
  (void)run_cli("config check " + file + " --role", code);
  CHECK(code == 2);
  std::remove(file.c_str());
}

namespace {

/// Runs the command with stderr; how long it took.
std::string run_cli_timed(const std::string& args, int& exit_code, std::chrono::duration<double>& took) {
  const auto start = std::chrono::steady_clock::now();
  auto out = run_cli(args, exit_code, true);
  took = std::chrono::steady_clock::now() - start;
  return out;
}

}  // namespace

TEST_CASE("publish and topics with no broker answering give up within --timeout and say where they looked") {
  // Port 1 on loopback: nothing listens there, connections are refused at once and retried.
  const std::string nowhere = "127.0.0.1:1";
  int code = -1;
  std::chrono::duration<double> took{};
  const auto hints_at = [&](const std::string& out, const std::string& origin) {
    CAPTURE(out);
    CHECK(out.find("no Kafka broker answered") != std::string::npos);
    CHECK(out.find(nowhere + " (" + origin + ")") != std::string::npos);
    CHECK(out.find("--bootstrap") != std::string::npos);
    CHECK(out.find("EVENTBUS_BOOTSTRAP_SERVERS") != std::string::npos);
    CHECK(out.find("eventbus dev-broker") != std::string::npos);
  };

  auto out = run_cli_timed("publish --type order.created --aggregate-id o-1 --timeout 2 --bootstrap " + nowhere, code, took);
  CHECK(code == 1);
  CHECK(took < std::chrono::seconds(8));
  hints_at(out, "from --bootstrap");

  out = run_cli_timed("topics --timeout 1 --bootstrap " + nowhere, code, took);
  CHECK(code == 1);
  CHECK(took < std::chrono::seconds(7));
  hints_at(out, "from --bootstrap");

  setenv("EVENTBUS_BOOTSTRAP_SERVERS", nowhere.c_str(), 1);
  out = run_cli_timed("publish --stdin < /dev/null", code, took);  // the default timeout: 10 s
  unsetenv("EVENTBUS_BOOTSTRAP_SERVERS");
  CHECK(code == 1);
  CHECK(took > std::chrono::seconds(9));
  CHECK(took < std::chrono::seconds(20));
  hints_at(out, "from $EVENTBUS_BOOTSTRAP_SERVERS");

  for (const char* bad : {"0", "-3", "ten", "1.5", "86401"}) {
    CAPTURE(bad);
    out = run_cli(std::string("topics --timeout ") + bad + " --bootstrap " + nowhere, code, true);
    CHECK(code == 2);
    CHECK(out.find("--timeout needs a whole number of seconds") != std::string::npos);
  }
}

TEST_CASE("reads and typos create no topic and no group: dlq, tail and replay refuse names that do not exist") {
  embedded_broker broker;
  const auto& bootstrap = broker.bootstrap_servers();
  const std::string where = " --bootstrap " + bootstrap;
  const std::string topic = "app.order.order.created", dlq = topic + ".dlq";
  broker.create_topic(topic, 1);
  testing::produce_raw(bootstrap, {.topic = dlq, .key = "o-1", .value = "{}",
                                   .headers = {{"x-eventbus-dlq-handler", "mailer"},
                                               {"x-eventbus-dlq-original-topic", topic}}});
  int code = -1;

  auto out = run_cli("dlq list app.nope.dlq" + where, code, true);
  CHECK(code == 1);
  CHECK_MESSAGE(out.find("no topic 'app.nope.dlq'") != std::string::npos, out);
  CHECK(out.find(dlq) != std::string::npos);  // the dead-letter topics that do exist
  CHECK_FALSE(topic_exists(bootstrap, "app.nope.dlq"));
  (void)run_cli("dlq replay app.nope.dlq" + where, code);
  CHECK(code == 1);
  CHECK_FALSE(topic_exists(bootstrap, "app.nope.dlq"));

  out = run_cli("dlq list " + topic + where, code, true);
  CHECK(code == 2);
  CHECK_MESSAGE(out.find("'" + topic + "' is not a dead-letter topic") != std::string::npos, out);
  CHECK(out.find("did you mean " + dlq) != std::string::npos);

  // tail follows until --limit: bounded here so that a tail that does not refuse fails, not hangs.
  out = run_cli("tail --topics app.typo.topic --limit 1" + where, code, true, 20);
  CHECK(code == 1);
  CHECK_MESSAGE(out.find("no topic 'app.typo.topic'") != std::string::npos, out);
  CHECK(out.find(topic) != std::string::npos);
  CHECK_FALSE(topic_exists(bootstrap, "app.typo.topic"));

  out = run_cli("dlq replay " + dlq + " --handler nosuch" + where, code, true);
  CHECK(code == 1);
  CHECK_MESSAGE(out.find("handler 'nosuch'") != std::string::npos, out);
  CHECK(out.find("handlers there: mailer (1)") != std::string::npos);
  CHECK(testing::topic_record_count(bootstrap, topic) == 0);  // nothing replayed

  // replay: a group that never committed is refused, not created.
  out = run_cli("replay --group no-such-group --topics '^app\\..*' --from 1970-01-01T00:00:00Z" + where, code, true);
  CHECK(code == 2);
  CHECK_MESSAGE(out.find("'no-such-group' has no committed offsets") != std::string::npos, out);
  CHECK(testing::committed_offset(bootstrap, "no-such-group", topic, 0) == -1);
  // Unless asked for: a new group positioned before its first start.
  out = run_cli("replay --group new-group --new-group --topics " + topic + " --from 1970-01-01T00:00:00Z" + where, code);
  CHECK(code == 0);
  CHECK(testing::committed_offset(bootstrap, "new-group", topic, 0) == 0);

  // A group that ran: its regex moves the event topic, never the dead-letter topic.
  testing::produce_raw(bootstrap, topic, "o-1", "{}");
  commit_for(bootstrap, "billing", topic, 0, 1);
  commit_for(bootstrap, "billing", dlq, 0, 1);
  out = run_cli("replay --group billing --topics '^app\\..*' --from 1970-01-01T00:00:00Z" + where, code);
  CHECK(code == 0);
  CHECK(out == topic + "[0] -> 0\n");
  CHECK(testing::committed_offset(bootstrap, "billing", topic, 0) == 0);
  CHECK(testing::committed_offset(bootstrap, "billing", dlq, 0) == 1);
  (void)run_cli("replay --group billing --topics " + dlq + " --from 1970-01-01T00:00:00Z" + where, code);
  CHECK(code == 2);
}

TEST_CASE("eventbus handlers prints a running service's handlers as a table, and names what is wrong with a bad URL") {
  dispatcher bus({.mode = dispatch_mode::caller_thread});
  auto a = bus.subscribe("order.created", "charge-card", [](const event&) {}, {.when = [](const event&) { return false; }});
  auto b = bus.subscribe("order.*", "audit", [](const event&) { throw std::runtime_error("disk full"); });
  REQUIRE(bus.publish(make_event({.event_type = "order.created", .aggregate_type = "order", .aggregate_id = "o-1"})).accepted());
  metrics_server server(std::make_shared<metrics>(), "127.0.0.1:0");
  server.add_handlers("dispatcher", [&] { return bus.handlers(); });
  const std::string url = "http://127.0.0.1:" + std::to_string(server.port());

  int code = -1;
  const auto table = run_cli("handlers --url " + url, code);
  CHECK(code == 0);
  std::istringstream lines(table);
  std::string header, charge, audit;
  std::getline(lines, header);
  std::getline(lines, charge);
  std::getline(lines, audit);
  CHECK(header.find("HANDLER") != std::string::npos);
  CHECK(charge.find("charge-card") != std::string::npos);
  CHECK(charge.find("order.created") != std::string::npos);
  CHECK(charge.find(" yes ") != std::string::npos);  // a condition
  CHECK(audit.find("audit") != std::string::npos);
  CHECK(audit.find("order.*") != std::string::npos);
  CHECK(audit.find(" 1 ") != std::string::npos);  // one call, one failure

  const auto json = run_cli("handlers --json --url " + url + "/handlers", code);
  CHECK(code == 0);
  CHECK(nlohmann::json::parse(json)["handlers"].size() == 2);

  const auto refused = run_cli("handlers --url https://127.0.0.1:9464", code, true);
  CHECK(code == 2);
  CHECK(refused.find("use http://") != std::string::npos);
  const auto no_port = run_cli("handlers --url http://localhost", code, true);
  CHECK(code == 2);
  CHECK(no_port.find("needs host:port") != std::string::npos);
  const auto bad_port = run_cli("handlers --url http://localhost:99999", code, true);
  CHECK(code == 2);
  CHECK(bad_port.find("port '99999'") != std::string::npos);
  const auto missing = run_cli("handlers", code, true);
  CHECK(code == 2);
  CHECK(missing.find("--url is required") != std::string::npos);
  const auto not_handlers = run_cli("handlers --url " + url + "/metrics", code, true);
  CHECK(code == 1);
  CHECK(not_handlers.find("is not a /handlers page") != std::string::npos);
  const auto nobody = run_cli("handlers --timeout 2 --url http://127.0.0.1:" + std::to_string(testing::free_port()), code, true);
  CHECK(code == 1);
  CHECK(nobody.find("cannot connect") != std::string::npos);
}

TEST_CASE("eventbus dlq parked lists a group's parked records from its store, reads only, and names groups for a typo") {
  const std::string path = "cli_parked.db";
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);
  auto rows = detail::parked_records::open(open_sqlite_store({.path = path})).value();
  const std::vector<detail::parked_record> parked{
      {.group = "shipping", .topic = "app.order.placed", .partition = 1, .offset = 40, .key = "o-1", .value = "{}",
       .stage = 2, .due_ms = 1'800'000'000'000, .pending = {"ship"}, .attempts = 4, .reason = "carrier down"},
      {.group = "shipping", .topic = "app.order.placed", .partition = 1, .offset = 41, .key = "o-1", .value = "{}"},
      {.group = "billing", .topic = "app.order.placed", .partition = 0, .offset = 7, .key = "o-2", .value = "{}",
       .stage = 1, .due_ms = 1'800'000'000'000, .attempts = 3, .reason = "ledger locked"},
      {.group = "shipping", .topic = "app.order.placed", .partition = 1, .offset = 43, .key = "o-3", .value = "{}"}};
  REQUIRE(rows->add(parked).ok());

  int code = -1;
  const auto listed = run_cli("dlq parked --group shipping --sqlite " + path, code, true);
  CHECK(code == 0);
  CHECK(listed.find("app.order.placed[1]@40  key=o-1  stage 2  due 2027-01-15T08:00:00.000Z  handlers=ship  attempts=4") != std::string::npos);
  CHECK(listed.find("carrier down") != std::string::npos);
  CHECK(listed.find("[1]@41  key=o-1  stage 0  due after the key's earlier records  handlers=all") != std::string::npos);
  CHECK(listed.find("[1]@43  key=o-3  stage 0  due at once (its key's first)  handlers=all") != std::string::npos);
  CHECK(listed.find("ledger locked") == std::string::npos);  // another group's
  CHECK(listed.find("3 parked record(s) of group shipping") != std::string::npos);

  const auto json = run_cli("dlq parked --group billing --sqlite " + path + " --json", code);
  CHECK(code == 0);
  const auto line = nlohmann::json::parse(json);
  CHECK(line.at("offset") == 7);
  CHECK(line.at("stage") == 1);
  CHECK(line.at("error") == "ledger locked");
  CHECK(line.at("first_of_key") == true);

  const auto typo = run_cli("dlq parked --group shiping --sqlite " + path, code, true);
  CHECK(code == 0);
  CHECK(typo.find("no parked records for group 'shiping'; groups with parked records: billing, shipping") != std::string::npos);

  const auto missing = run_cli("dlq parked --group shipping --sqlite no_such_store.db", code, true);
  CHECK(code == 1);
  CHECK(missing.find("does not exist") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists("no_such_store.db"));  // a typo creates nothing
  run_cli("dlq parked --sqlite " + path, code);
  CHECK(code == 2);  // no group
  run_cli("dlq parked --group shipping", code);
  CHECK(code == 2);  // no store
}
