// Configuration files and environment overrides: every key read, every mistake named by its path,
// secrets never printed.

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <set>

#include "eventbus/config.hpp"

using namespace eventbus;
using namespace std::chrono_literals;
using json = nlohmann::json;

namespace {

template <class T>
std::string error_field(const result<T>& r) {
  return r ? "" : r.error().field();
}
template <class T>
std::string error_text(const result<T>& r) {
  return r ? "" : r.error().to_string();
}

// The number of fields of an aggregate: the most initializers it takes. A value that converts to
// a reference of anything initializes exactly one field (no brace elision happens for it).
struct any_field {
  template <class T>
  constexpr operator T&() const&& noexcept;  // NOLINT: declared only, for unevaluated use
};
template <class T, class... Fields>
constexpr std::size_t field_count() {
  if constexpr (requires { T{Fields{}..., any_field{}}; })
    return field_count<T, Fields..., any_field>();
  else
    return sizeof...(Fields);
}

}  // namespace

TEST_CASE("a full config document sets every option it names") {
  const auto doc = json::parse(R"({
    "_comment": "ignored",
    "kafka": {"bootstrap_servers": "k1:9092,k2:9092", "client_id": "billing",
              "properties": {"compression.type": "lz4", "linger.ms": 10, "enable.idempotence": true}},
    "topics": {"prefix": "shop", "dlq_suffix": ".dead.dlq"},
    "dispatcher": {"pool_size": 2, "queue_capacity": 64},
    "worker": {"group": "billing", "topics": ["^shop\\.order\\..*"], "max_concurrency": 16, "ordering": "partition",
               "max_buffered_per_partition": 50, "commit_interval_ms": 250, "shutdown_timeout_ms": 5000, "handler_timeout_ms": 7000,
               "retry": {"max_attempts": 7, "initial_backoff_ms": 20, "multiplier": 3, "max_backoff_ms": 900, "jitter": 0}},
    "metrics": {"listen": "0.0.0.0:9100"}
  })");
  const auto parsed = parse_config(doc);
  REQUIRE_MESSAGE(parsed.ok(), error_text(parsed));
  const auto& c = parsed.value();
  CHECK(c.kafka.bootstrap_servers == "k1:9092,k2:9092");
  CHECK(c.kafka.properties.at("linger.ms") == "10");
  CHECK(c.kafka.properties.at("enable.idempotence") == "true");
  CHECK(c.metrics_listen == "0.0.0.0:9100");

  const auto made = c.make_worker_options();
  REQUIRE_MESSAGE(made.ok(), error_text(made));
  const auto& w = *made;
  CHECK(w.group_id == "billing");
  CHECK(w.topics == std::vector<std::string>{"^shop\\.order\\..*"});
  CHECK(w.dlq_suffix == ".dead.dlq");
  CHECK(w.max_concurrency == 16);
  CHECK(w.ordering == processing_order::partition);
  CHECK(w.max_buffered_per_partition == 50);
  CHECK(w.commit_interval == 250ms);
  CHECK(w.shutdown_timeout == 5000ms);
  CHECK(w.handler_timeout == 7000ms);
  CHECK(w.retry.max_attempts == 7);
  CHECK(w.retry.multiplier == 3.0);
  CHECK(w.retry.max_backoff == 900ms);
  CHECK(c.make_producer_options().topic_prefix == "shop");
  CHECK(c.make_dispatcher_options().queue_capacity == 64);

  // A service's config needs no group; asking it for a worker names the missing key.
  const auto service = parse_config(json::parse(R"({"kafka": {"bootstrap_servers": "k1:9092"}})"));
  REQUIRE(service.ok());
  CHECK(error_field(service.value().make_worker_options()) == "worker.group");
}

TEST_CASE("unknown keys and wrong types are refused with the key's path") {
  const auto field_of = [](const char* text) { return error_field(parse_config(json::parse(text))); };
  CHECK(field_of(R"({"kafka": {"bootstrap_server": "x:9092"}})") == "kafka.bootstrap_server");
  CHECK(error_text(parse_config(json::parse(R"({"worker": {"retry": {"max_atempts": 3}}})"))) ==
        "worker.retry.max_atempts: unknown key (did you mean 'max_attempts'?)");
  CHECK(field_of(R"({"metrix": {}})") == "metrix");
  CHECK(field_of(R"({"worker": {"max_concurrency": "8"}})") == "worker.max_concurrency");
  CHECK(field_of(R"({"worker": {"max_concurrency": 0}})") == "worker.max_concurrency");
  CHECK(field_of(R"({"worker": {"max_concurrency": 4096}})") == "worker.max_concurrency");
  CHECK(field_of(R"({"worker": {"ordering": "by-key"}})") == "worker.ordering");
  CHECK(field_of(R"({"worker": {"topics": ["ok", 3]}})") == "worker.topics[1]");
  CHECK(field_of(R"({"worker": {"commit_interval_ms": -1}})") == "worker.commit_interval_ms");
  CHECK(field_of(R"({"kafka": {"properties": {"sasl.jaas": {"nested": 1}}}})") == "kafka.properties.sasl.jaas");
  CHECK(field_of(R"({"kafka": []})") == "kafka");
  CHECK(field_of(R"([1, 2])") == "(document)");
  // The library's own rules, reported at the file's paths.
  CHECK(field_of(R"({"worker": {"retry": {"max_attempts": 0}}})") == "worker.retry.max_attempts");
  CHECK(field_of(R"({"worker": {"retry": {"jitter": 2}}})") == "worker.retry.jitter");
  CHECK(field_of(R"({"topics": {"prefix": "bad prefix"}})") == "topics.prefix");
  CHECK(field_of(R"({"kafka": {"properties": {"bootstrap.servers": "x:1"}}})") == "kafka.properties.bootstrap.servers");
  CHECK(field_of(R"({"worker": {"topics": ["not a topic"]}})") == "worker.topics");
  CHECK(field_of(R"({"metrics": {"listen": "9464"}})") == "metrics.listen");
  CHECK(field_of(R"({"metrics": {"listen": "0.0.0.0:99999"}})") == "metrics.listen");
  CHECK(field_of(R"({"log": {"level": "verbose"}})") == "log.level");
  CHECK(field_of(R"({"log": {"format": "xml"}})") == "log.format");
}

TEST_CASE("environment variables override the file and bad ones are named") {
  const auto doc = json::parse(R"({"kafka": {"bootstrap_servers": "file:9092"}, "worker": {"group": "from-file"}})");
  const auto parsed = parse_config(doc, {{"EVENTBUS_BOOTSTRAP_SERVERS", "env:9092"},
                                         {"EVENTBUS_GROUP_ID", "from-env"},
                                         {"EVENTBUS_WORKER_TOPICS", "app.a.b,^app\\.c\\..*"},
                                         {"EVENTBUS_WORKER_MAX_CONCURRENCY", "12"},
                                         {"EVENTBUS_WORKER_ORDERING", "unordered"},
                                         {"EVENTBUS_METRICS_LISTEN", "0.0.0.0:9999"},
                                         {"EVENTBUS_KAFKA_SASL_PASSWORD", "hunter2"},
                                         {"EVENTBUS_KAFKA_SECURITY_PROTOCOL", "SASL_SSL"},
                                         {"EVENTBUS_LOG_LEVEL", "warning"},
                                         {"EVENTBUS_LOG_FORMAT", "json"},
                                         {"EVENTBUS_JOBS", "2"}});  // not ours to read: ignored
  REQUIRE_MESSAGE(parsed.ok(), error_text(parsed));
  const auto& c = parsed.value();
  CHECK(c.kafka.bootstrap_servers == "env:9092");
  CHECK(c.worker.group_id == "from-env");
  CHECK(c.worker.topics == std::vector<std::string>{"app.a.b", "^app\\.c\\..*"});
  CHECK(c.worker.max_concurrency == 12);
  CHECK(c.worker.ordering == processing_order::unordered);
  CHECK(c.metrics_listen == "0.0.0.0:9999");
  CHECK(c.kafka.properties.at("sasl.password") == "hunter2");
  CHECK(c.kafka.properties.at("security.protocol") == "SASL_SSL");
  CHECK(c.log.level == log_level::warn);
  CHECK(c.log.format == log_format::json);

  CHECK(error_field(parse_config(doc, {{"EVENTBUS_WORKER_MAX_CONCURRENCY", "lots"}})) == "EVENTBUS_WORKER_MAX_CONCURRENCY");
  CHECK(error_field(parse_config(doc, {{"EVENTBUS_WORKER_ORDERING", "random"}})) == "EVENTBUS_WORKER_ORDERING");
  CHECK(error_field(parse_config(doc, {{"EVENTBUS_BOOTSTRAP_SERVERS", ""}})) == "EVENTBUS_BOOTSTRAP_SERVERS");
  CHECK(error_field(parse_config(doc, {{"EVENTBUS_WORKER_TOPICS", ",,"}})) == "EVENTBUS_WORKER_TOPICS");
  CHECK(error_field(parse_config(doc, {{"EVENTBUS_LOG_FORMAT", "yaml"}})) == "EVENTBUS_LOG_FORMAT");
}

TEST_CASE("secrets are redacted in the printed configuration") {
  const auto parsed = parse_config(json::parse(R"({"kafka": {"properties": {
      "sasl.password": "hunter2", "ssl.key.password": "k3y", "sasl.oauthbearer.config": "s3cret",
      "sasl.username": "billing", "linger.ms": "5"}}})"));
  REQUIRE(parsed.ok());
  const auto printed = parsed.value().redacted_json();
  const auto text = printed.dump();
  CHECK(text.find("hunter2") == std::string::npos);
  CHECK(text.find("k3y") == std::string::npos);
  CHECK(text.find("s3cret") == std::string::npos);
  CHECK(printed["kafka"]["properties"]["sasl.password"] == "***");
  CHECK(printed["kafka"]["properties"]["sasl.username"] == "billing");
  CHECK(printed["kafka"]["properties"]["linger.ms"] == "5");
  // What is printed reads back as the same configuration (secrets aside).
  auto round_trip = printed;
  round_trip["kafka"]["properties"].erase("sasl.password");
  round_trip["kafka"]["properties"].erase("ssl.key.password");
  round_trip["kafka"]["properties"].erase("sasl.oauthbearer.config");
  const auto reparsed = parse_config(round_trip);
  CHECK_MESSAGE(reparsed.ok(), (reparsed.ok() ? "" : reparsed.error().to_string()));
  CHECK(is_secret_property("ssl.keystore.password"));
  CHECK_FALSE(is_secret_property("bootstrap.servers"));
}

TEST_CASE("config files: the shipped ones are valid, a missing or broken file is named") {
  const std::string dir = EVENTBUS_CONFIG_DIR;
  const auto defaults = load_config(dir + "/eventbus.json");
  REQUIRE_MESSAGE(defaults.ok(), error_text(defaults));
  // eventbus.json documents the defaults: it must say exactly what the code does without it.
  CHECK(defaults.value().redacted_json() == app_config{}.redacted_json());
  const auto example = load_config(dir + "/worker.example.json", {{"EVENTBUS_KAFKA_SASL_PASSWORD", "x"}});
  REQUIRE_MESSAGE(example.ok(), error_text(example));
  CHECK(example.value().make_worker_options()->group_id == "billing");

  CHECK(error_field(load_config(dir + "/no-such-file.json")) == "config");
  const std::string broken = "config_test_broken.json";
  std::ofstream(broken) << "{\"kafka\": {";
  const auto bad = load_config(broken);
  CHECK(error_field(bad) == "config");
  CHECK(error_text(bad).find("is not JSON") != std::string::npos);
  std::remove(broken.c_str());
}

TEST_CASE("librdkafka properties are tried at check time: a misspelled name or a bad value is named") {
  const auto misspelled = parse_config(json::parse(R"({"kafka": {"properties": {"sasl.pasword": "hunter2"}}})"));
  CHECK(error_field(misspelled) == "kafka.properties.sasl.pasword");
  CHECK(error_text(misspelled).find("hunter2") == std::string::npos);  // the value is never echoed
  const auto bad_value = parse_config(json::parse(R"({"kafka": {"properties": {"security.protocol": "bogus"}}})"));
  CHECK(error_field(bad_value) == "kafka.properties.security.protocol");
  const auto from_env = parse_config(json::object(), {{"EVENTBUS_KAFKA_LINGER_MSX", "5"}});
  CHECK(error_field(from_env) == "kafka.properties.linger.msx");
  // Set but empty, as for every other variable: an unfilled secret is not an empty password.
  const auto empty_secret = parse_config(json::object(), {{"EVENTBUS_KAFKA_SASL_PASSWORD", ""}});
  CHECK(error_field(empty_secret) == "EVENTBUS_KAFKA_SASL_PASSWORD");
  CHECK(error_text(empty_secret).find("empty") != std::string::npos);
  CHECK(error_field(parse_config(json::object(), {{"EVENTBUS_KAFKA_", "x"}})) == "EVENTBUS_KAFKA_");
  // Workers use the eager rebalance protocol: the cooperative one would silently consume nothing.
  const auto cooperative = parse_config(
      json::parse(R"({"kafka": {"properties": {"partition.assignment.strategy": "cooperative-sticky"}}})"));
  CHECK(error_field(cooperative) == "kafka.properties.partition.assignment.strategy");
  CHECK(parse_config(json::parse(R"({"kafka": {"properties": {"partition.assignment.strategy": "roundrobin"}}})")).ok());
  const worker_options w{.kafka = {.properties = {{"partition.assignment.strategy", "range,cooperative-sticky"}}},
                         .group_id = "g", .topics = {"app.a.b"}};
  CHECK_THROWS_AS(w.validate(), exception);
}

TEST_CASE("secret-looking keys are redacted whatever their case or spelling") {
  // Every marker docs/configuration.md lists.
  for (const char* name : {"SASL.PASSWORD", "sasl.pasword", "ssl.keystore.password", "Sasl.Jaas.Config", "api.token",
                           "x.pwd", "client.secret", "cloud.credential", "sasl.oauthbearer.config", "ssl.key.pem",
                           "ssl_key_location", "ssl.keystore.location", "private.thing"})
    CHECK_MESSAGE(is_secret_property(name), std::string(name));
  CHECK_FALSE(is_secret_property("linger.ms"));
  CHECK_FALSE(is_secret_property("sasl.username"));
}

TEST_CASE("numbers out of range, lists of addresses and durations past the clock are refused") {
  const auto attempts = parse_config(json::parse(R"({"worker": {"retry": {"max_attempts": 4294967301}}})"));
  CHECK(error_field(attempts) == "worker.retry.max_attempts");
  CHECK(error_text(attempts).find("out of range") != std::string::npos);
  const auto listen = parse_config(json::parse(R"({"metrics": {"listen": "127.0.0.1:1,0.0.0.0:9464"}})"));
  CHECK(error_field(listen) == "metrics.listen");
  for (const char* key : {"commit_interval_ms", "shutdown_timeout_ms", "handler_timeout_ms"}) {
    CAPTURE(key);
    const auto huge = parse_config(json{{"worker", {{key, 9223372036854775ULL}}}});
    CHECK(error_field(huge) == std::string("worker.") + key);
    const auto beyond = parse_config(json{{"worker", {{key, 18446744073709551615ULL}}}});
    CHECK(error_field(beyond) == std::string("worker.") + key);
  }
  const auto backoff = parse_config(json::parse(R"({"worker": {"retry": {"max_backoff_ms": 9223372036854775}}})"));
  CHECK(error_field(backoff) == "worker.retry.max_backoff_ms");
}

TEST_CASE("hostile config files get a clear error: a directory, deep nesting under a known key") {
  const auto dir = load_config("/tmp");
  CHECK(error_field(dir) == "config");
  CHECK(error_text(dir).find("directory") != std::string::npos);
  // Found by fuzzing the config: a variable that is not UTF-8 was accepted, and printing the
  // configuration (eventbus config check) then threw.
  const auto binary = parse_config(json::object(), {{"EVENTBUS_CLIENT_ID", "a\xda\xff"}});
  CHECK(error_field(binary) == "EVENTBUS_CLIENT_ID");
  CHECK(error_text(binary).find("UTF-8") != std::string::npos);
  // Found by fuzzing decode_event: a number too large for a double is an error, not a crash.
  const std::string huge = "config_test_huge_number.json";
  std::ofstream(huge) << R"({"worker": {"max_concurrency": 1e99999}})";
  const auto overflow = load_config(huge);
  CHECK(error_field(overflow) == "config");
  CHECK(error_text(overflow).find("not JSON") != std::string::npos);
  std::remove(huge.c_str());
  // Error messages never write out a whole value: one nested 200k deep would crash doing so.
  const std::string deep = R"({"worker": {"max_concurrency": )" + std::string(200'000, '[') + std::string(200'000, ']') + "}}";
  const auto nested = parse_config(json::parse(deep));
  CHECK(error_field(nested) == "worker.max_concurrency");
  CHECK(error_text(nested).find("array") != std::string::npos);
}

TEST_CASE("the store section: backend, path, a redacted dsn, and mistakes named") {
  const auto sqlite = parse_config(json::parse(R"({"store": {"backend": "sqlite", "path": "orders.db", "durability": "normal",
                                                  "relay": {"batch_size": 50, "interval_ms": 20}}})"));
  REQUIRE(sqlite.ok());
  CHECK(sqlite.value().store.sqlite.durability == sqlite_durability::normal);
  CHECK(sqlite.value().make_relay_options().batch_size == 50);
  const auto pg = parse_config(json::parse(R"({"store": {"backend": "postgresql"}})"),
                               {{"EVENTBUS_STORE_DSN", "host=db user=app password=hunter2"}});
  REQUIRE(pg.ok());
  CHECK(pg.value().redacted_json().dump().find("hunter2") == std::string::npos);
  CHECK(error_field(parse_config(json::parse(R"({"store": {"backend": "mysql"}})"))) == "store.backend");
  CHECK(error_field(parse_config(json::parse(R"({"store": {"backend": "postgresql"}})"))) == "store.dsn");
  CHECK(error_field(parse_config(json::parse(R"({"store": {"durability": "sometimes"}})"))) == "store.durability");
  CHECK(error_field(parse_config(json::parse(R"({"store": {"relay": {"interval_ms": 0}}})"))) == "store.relay.interval_ms");
  CHECK(sqlite.value().store.backend == store_backend::sqlite);
  CHECK(*parse_config(json::object()).value().open_store() == nullptr);  // none by default
  CHECK(error_field(parse_config(json::object(), {{"EVENTBUS_STORE_BACKEND", "sqlit"}})) == "EVENTBUS_STORE_BACKEND");
  // Opening is explicit and its failure a value: a directory that does not exist.
  auto unopenable = parse_config(json::parse(R"({"store": {"backend": "sqlite", "path": "no/such/dir/x.db"}})"));
  REQUIRE(unopenable.ok());
  const auto opened = unopenable.value().open_store();
  REQUIRE_FALSE(opened.ok());
  CHECK(opened.error().code() == errc::store_failed);
}

TEST_CASE("durable stages in the file: delays in ms, parked in the store section's store, mistakes named") {
  std::remove("config_parking.db");
  const auto good = parse_config(json::parse(R"({"worker": {"group": "g", "retry": {"durable_stages_ms": [1000, 60000]}},
                                                "store": {"backend": "sqlite", "path": "config_parking.db"}})"));
  REQUIRE(good.ok());
  const auto options = good.value().make_worker_options();
  REQUIRE(options.ok());
  CHECK(options.value().retry.durable_stages == std::vector<std::chrono::milliseconds>{std::chrono::seconds(1), std::chrono::minutes(1)});
  CHECK(options.value().parking_store != nullptr);
  CHECK_NOTHROW(options.value().validate());
  CHECK(good.value().redacted_json()["worker"]["retry"]["durable_stages_ms"] == json::array({1000, 60000}));
  // No store to park in, a delay of 0, a word, another order: each named by its key.
  const auto field = [](const char* text) { return error_field(parse_config(json::parse(text))); };
  CHECK(field(R"({"worker": {"retry": {"durable_stages_ms": [1000]}}})") == "worker.retry.durable_stages_ms");
  CHECK(field(R"({"worker": {"retry": {"durable_stages_ms": [0]}}, "store": {"backend": "sqlite"}})") == "worker.retry.durable_stages_ms");
  CHECK(field(R"({"worker": {"retry": {"durable_stages_ms": "1h"}}, "store": {"backend": "sqlite"}})") == "worker.retry.durable_stages_ms");
  CHECK(field(R"({"worker": {"ordering": "partition", "retry": {"durable_stages_ms": [10]}}, "store": {"backend": "sqlite"}})") ==
        "worker.retry.durable_stages_ms");
}

TEST_CASE("every field of every option struct has a config key, or is listed as set in code") {
  const auto keys = config_keys();
  const auto code_only = code_only_options();
  const auto named = [&](std::string_view option_struct) {
    const std::string prefix = std::string(option_struct) + "::";
    std::size_t n = 0;
    for (const auto& k : keys) n += k.option.starts_with(prefix) ? 1 : 0;
    for (const auto& o : code_only) n += o.starts_with(prefix) ? 1 : 0;
    return n;
  };
  // A new option field fails here until the table (src/config/config.cpp) gives it a key or lists
  // it as code-only. worker_options::retry is the retry_policy, whose fields are counted there.
  CHECK(named("worker_options") + 1 == field_count<worker_options>());
  CHECK(named("retry_policy") == field_count<retry_policy>());
  CHECK(named("kafka_options") == field_count<kafka_options>());
  CHECK(named("producer_options") == field_count<producer_options>());
  CHECK(named("dispatcher_options") == field_count<dispatcher_options>());
  CHECK(named("relay_options") == field_count<relay_options>());
  CHECK(named("sqlite_store_options") == field_count<sqlite_store_options>());
  CHECK(named("postgres_store_options") == field_count<postgres_store_options>());

  // Each key once, each variable once, and every key is in the documented defaults file.
  std::set<std::string> paths, variables;
  for (const auto& k : keys) {
    CHECK_MESSAGE(paths.insert(k.path).second, k.path);
    if (!k.env.empty()) CHECK_MESSAGE(variables.insert(k.env).second, k.env);
  }
  const auto defaults = app_config{}.redacted_json();
  for (const auto& k : keys) CHECK_MESSAGE(defaults.contains(json::json_pointer("/" + [&] {
    std::string p = k.path;
    std::replace(p.begin(), p.end(), '.', '/');
    return p;
  }())), k.path);
}

TEST_CASE("an option's own validate() names the file's key: one range, checked once") {
  // Ranges that only the options know (no reader checks them): the key, not the member, is named.
  CHECK(error_field(parse_config(json::parse(R"({"dispatcher": {"pool_size": 5000}})"))) == "dispatcher.pool_size");
  CHECK(error_field(parse_config(json::parse(R"({"store": {"relay": {"batch_size": 200000}}})"))) == "store.relay.batch_size");
  CHECK(error_field(parse_config(json::parse(R"({"store": {"relay": {"interval_ms": 100, "lease_ttl_ms": 200}}})"))) ==
        "store.relay.lease_ttl_ms");
  CHECK(error_field(parse_config(json::parse(R"({"worker": {"retry": {"initial_backoff_ms": 10, "max_backoff_ms": 5}}})"))) ==
        "worker.retry.max_backoff_ms");
  CHECK(error_field(parse_config(json::parse(R"({"kafka": {"properties": {"bootstrap.servers": "x:1"}}})"))) ==
        "kafka.properties.bootstrap.servers");
}
