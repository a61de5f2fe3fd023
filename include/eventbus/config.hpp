#pragma once
// The settings of a service or worker process: a JSON file (config/eventbus.json documents every
// key and its default) with EVENTBUS_* environment variables on top.
//
//   auto cfg = eventbus::load_config("config/worker.json", eventbus::process_environment());
//   if (!cfg) { std::cerr << cfg.error().to_string() << "\n"; return 2; }  // "worker.retry.max_attempts: ..."
//   auto options = cfg->make_worker_options();                               // "worker.group: must not be empty ..."
//   if (!options) { std::cerr << options.error().to_string() << "\n"; return 2; }
//   eventbus::worker w(*options);
//
// A producing service is wired from it by eventbus::service (service.hpp): the store and its
// outbox relay, or the Kafka mirror, as the store section says.
//
// Unknown keys and wrong types are errors naming the key's path; keys starting with '_' are
// comments. Secrets (sasl.password, ssl.key.password, ...) never leave redacted_json().
//
// Environment (wins over the file):
//   EVENTBUS_BOOTSTRAP_SERVERS  kafka.bootstrap_servers     EVENTBUS_CLIENT_ID        kafka.client_id
//   EVENTBUS_TOPIC_PREFIX       topics.prefix               EVENTBUS_GROUP_ID         worker.group
//   EVENTBUS_WORKER_TOPICS      worker.topics (comma list)  EVENTBUS_WORKER_ORDERING  worker.ordering
//   EVENTBUS_WORKER_MAX_CONCURRENCY  worker.max_concurrency
//   EVENTBUS_METRICS_LISTEN     metrics.listen
//   EVENTBUS_STORE_BACKEND      store.backend (none|sqlite|postgresql)
//   EVENTBUS_STORE_PATH         store.path                  EVENTBUS_STORE_DSN        store.dsn
//   EVENTBUS_LOG_LEVEL          log.level (debug|info|warn|error|off)
//   EVENTBUS_LOG_FORMAT         log.format (text|json)
//   EVENTBUS_KAFKA_<NAME>       kafka.properties: <name> lower-cased, '_' -> '.'
//                               (EVENTBUS_KAFKA_SASL_PASSWORD -> sasl.password)

#include <chrono>
#include <cstddef>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "eventbus/dispatcher.hpp"
#include "eventbus/error.hpp"
#include "eventbus/kafka/options.hpp"
#include "eventbus/log.hpp"
#include "eventbus/metrics_server.hpp"
#include "eventbus/retry.hpp"
#include "eventbus/store/outbox_relay.hpp"
#include "eventbus/store/postgres_store.hpp"
#include "eventbus/store/sqlite_store.hpp"
#include "eventbus/topic.hpp"
#include "eventbus/kafka/worker.hpp"

namespace eventbus {

/// Where a service stores its events: nowhere (publish mirrors to Kafka), or an event store whose
/// outbox relay takes them to Kafka.
enum class store_backend { none, sqlite, postgresql };
[[nodiscard]] std::string_view to_string(store_backend backend) noexcept;
/// "none", "sqlite", "postgresql"; errc::invalid_argument (field "backend") for anything else.
[[nodiscard]] result<store_backend> parse_store_backend(std::string_view text);

/// The configuration holds the library's own option structs: every default is the option's, every
/// range is checked by the option's validate() (its errors named by the file's key). config_keys()
/// lists which key sets which option.
struct app_config {
  kafka_options kafka{};
  std::string topic_prefix{default_topic_prefix};
  std::string dlq_suffix{default_dlq_suffix};
  /// pool_size and queue_capacity from the file; a service adds the store.
  dispatcher_options dispatcher{};
  /// group_id ("worker.group"), topics, ordering, ...; make_worker_options() adds the kafka section
  /// and topics.dlq_suffix.
  worker_options worker{};

  struct store_section {
    store_backend backend = store_backend::none;
    sqlite_store_options sqlite{.path = "eventbus.db"};  // store.path, store.durability
    postgres_store_options postgres{};                   // store.dsn (a secret: printed as ***)
    relay_options relay{};                               // store.relay.*
  } store{};

  std::string metrics_listen{default_metrics_listen};

  struct log_section {
    log_level level = log_level::info;
    log_format format = log_format::text;
  } log{};
  /// Applies the log section: eventbus::set_log_level and set_log_format.
  void apply_logging() const;

  [[nodiscard]] producer_options make_producer_options() const;
  /// The dispatcher section; no store (eventbus::service adds the one open_store() opens).
  [[nodiscard]] dispatcher_options make_dispatcher_options() const;
  /// Opens the store the store section names (created and migrated as needed): nullptr for none;
  /// errc::store_failed when it cannot be opened.
  [[nodiscard]] result<std::shared_ptr<outbox_store>> open_store(std::shared_ptr<eventbus::metrics> metrics = {}) const;
  [[nodiscard]] relay_options make_relay_options() const;
  /// errc::invalid_argument naming the key ("worker.group") when the worker part is unusable.
  [[nodiscard]] result<worker_options> make_worker_options() const;

  /// The effective configuration as JSON, in the file's layout, secrets replaced by "***".
  [[nodiscard]] nlohmann::json redacted_json() const;
};

using environment = std::map<std::string, std::string>;

/// The EVENTBUS_* variables of this process.
[[nodiscard]] environment process_environment();

/// Reads a config document, then applies `env`. Errors (errc::invalid_argument) name the key's
/// path or the variable.
[[nodiscard]] result<app_config> parse_config(const nlohmann::json& document, const environment& env = {});
/// The same from a file; a missing file or bad JSON is an error naming the file.
[[nodiscard]] result<app_config> load_config(const std::string& path, const environment& env = {});

/// One key of the file: its path ("worker.max_concurrency"), its environment variable (empty when
/// none), and the option it sets ("worker_options::max_concurrency").
struct config_key {
  std::string path;
  std::string env;
  std::string option;
};
/// Every key the file may hold, in the file's order.
[[nodiscard]] std::vector<config_key> config_keys();
/// The option fields no key sets ("worker_options::middleware"): they are set in code.
[[nodiscard]] std::span<const std::string_view> code_only_options() noexcept;

/// True for librdkafka properties that hold credentials: printed and logged as "***".
[[nodiscard]] bool is_secret_property(std::string_view name) noexcept;

}  // namespace eventbus
