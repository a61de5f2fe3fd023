#include "eventbus/config.hpp"

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <sstream>
#include <utility>

#include "support/utf8.hpp"
#include "eventbus/store/postgres_store.hpp"

extern char** environ;

namespace eventbus {
namespace {

using json = nlohmann::json;

// Thrown inside the reader, turned into a result at the top.
struct config_error {
  std::string path;
  std::string message;
};

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// A value as an error message shows it: scalars as written, arrays and objects by their type (they
// can be huge, or nested too deep to write out).
std::string shown(const json& v) { return v.is_structured() ? std::string("an ") + v.type_name() : v.dump(); }

// Every mistake, wherever found, becomes an error naming the key's path (at the top: a result).
struct section {
  [[noreturn]] static void fail(std::string path, std::string message) {
    throw config_error{std::move(path), std::move(message)};
  }
};

// --- one table: every key of the file, what it sets, and its environment variable

// One key of the file. `read` takes its JSON value, `from_env` its variable's text, `dump` prints it
// (secrets as "***"); `option` is the library option it sets, as "struct::member", and `validator`
// plus `option_field` say under which name that option's validate() reports it.
struct setting {
  std::string path;
  std::string env;
  std::string option;
  std::string validator;     // "worker", "kafka", ... (see validators below), or "" when none checks it
  std::string option_field;  // the field name validate() uses ("commit_interval", "retry.max_attempts")
  std::function<void(const json&, const std::string& where, app_config&)> read;
  std::function<void(const std::string& text, const std::string& where, app_config&)> from_env;
  std::function<json(const app_config&)> dump;
};

template <class T>
using access = T& (*)(app_config&);

// Readers of one JSON value, failing with the key's path.
std::string read_string(const json& v, const std::string& where, bool allow_empty) {
  if (!v.is_string()) section::fail(where, "must be a string, got " + std::string(v.type_name()));
  if (!allow_empty && v.get_ref<const std::string&>().empty()) section::fail(where, "must not be empty");
  return v.get<std::string>();
}

std::size_t read_count(const json& v, const std::string& where) {
  if (!v.is_number_unsigned() || v.get<std::uint64_t>() == 0)
    section::fail(where, "must be a positive integer, got " + shown(v));
  return v.get<std::size_t>();
}

std::size_t count_from_text(const std::string& text, const std::string& where) {
  std::size_t n = 0;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc{} || ptr != text.data() + text.size() || n == 0)
    section::fail(where, "must be a positive integer, got '" + text + "'");
  return n;
}

int read_integer(const json& v, const std::string& where) {
  if (!v.is_number_integer()) section::fail(where, "must be an integer, got " + shown(v));
  const bool fits = v.is_number_unsigned()
                        ? v.get<std::uint64_t>() <= static_cast<std::uint64_t>(std::numeric_limits<int>::max())
                        : v.get<std::int64_t>() >= std::numeric_limits<int>::min() &&
                              v.get<std::int64_t>() <= std::numeric_limits<int>::max();
  if (!fits) section::fail(where, "is out of range, got " + v.dump());
  return v.get<int>();
}

double read_number(const json& v, const std::string& where) {
  if (!v.is_number()) section::fail(where, "must be a number, got " + shown(v));
  return v.get<double>();
}

std::chrono::milliseconds read_millis(const json& v, const std::string& where) {
  if (!v.is_number_integer() || v.get<std::int64_t>() < 0)
    section::fail(where, "must be a whole number of milliseconds >= 0, got " + shown(v));
  if (v.get<std::uint64_t>() > static_cast<std::uint64_t>(max_duration.count()))
    section::fail(where, "must be at most " + std::to_string(max_duration.count()) + " (a year), got " + v.dump());
  return std::chrono::milliseconds(v.get<std::int64_t>());
}

std::vector<std::string> read_strings(const json& v, const std::string& where) {
  if (!v.is_array()) section::fail(where, "must be an array of strings, got " + std::string(v.type_name()));
  std::vector<std::string> out;
  for (std::size_t i = 0; i < v.size(); ++i) {
    const auto& item = v[i];
    if (!item.is_string() || item.get_ref<const std::string&>().empty())
      section::fail(where + "[" + std::to_string(i) + "]", "must be a non-empty string, got " + shown(item));
    out.push_back(item.get<std::string>());
  }
  return out;
}

// The kinds of setting: each makes the three functions from where the value lives.
setting text_setting(std::string path, std::string env, std::string option, access<std::string> at, bool allow_empty = false) {
  return {.path = std::move(path), .env = std::move(env), .option = std::move(option), .validator = {}, .option_field = {},
          .read = [at, allow_empty](const json& v, const std::string& where, app_config& c) { at(c) = read_string(v, where, allow_empty); },
          .from_env = [at](const std::string& text, const std::string&, app_config& c) { at(c) = text; },
          .dump = [at](const app_config& c) { return json(at(const_cast<app_config&>(c))); }};
}

setting count_setting(std::string path, std::string env, std::string option, access<std::size_t> at) {
  return {.path = std::move(path), .env = std::move(env), .option = std::move(option), .validator = {}, .option_field = {},
          .read = [at](const json& v, const std::string& where, app_config& c) { at(c) = read_count(v, where); },
          .from_env = [at](const std::string& text, const std::string& where, app_config& c) { at(c) = count_from_text(text, where); },
          .dump = [at](const app_config& c) { return json(at(const_cast<app_config&>(c))); }};
}

setting millis_setting(std::string path, std::string option, access<std::chrono::milliseconds> at) {
  return {.path = std::move(path), .env = {}, .option = std::move(option), .validator = {}, .option_field = {},
          .read = [at](const json& v, const std::string& where, app_config& c) { at(c) = read_millis(v, where); },
          .from_env = {},
          .dump = [at](const app_config& c) { return json(at(const_cast<app_config&>(c)).count()); }};
}

setting integer_setting(std::string path, std::string option, access<int> at) {
  return {.path = std::move(path), .env = {}, .option = std::move(option), .validator = {}, .option_field = {},
          .read = [at](const json& v, const std::string& where, app_config& c) { at(c) = read_integer(v, where); },
          .from_env = {},
          .dump = [at](const app_config& c) { return json(at(const_cast<app_config&>(c))); }};
}

setting number_setting(std::string path, std::string option, access<double> at) {
  return {.path = std::move(path), .env = {}, .option = std::move(option), .validator = {}, .option_field = {},
          .read = [at](const json& v, const std::string& where, app_config& c) { at(c) = read_number(v, where); },
          .from_env = {},
          .dump = [at](const app_config& c) { return json(at(const_cast<app_config&>(c))); }};
}

// An enum named by its text: parse (a result naming the choices) and show.
template <class E>
setting choice_setting(std::string path, std::string env, std::string option, access<E> at,
                       result<E> (*parse)(std::string_view), std::string_view (*show)(E)) {
  const auto set = [at, parse](const std::string& text, const std::string& where, app_config& c) {
    auto parsed = parse(text);
    if (!parsed) section::fail(where, parsed.error().message());
    at(c) = *parsed;
  };
  return {.path = std::move(path), .env = std::move(env), .option = std::move(option), .validator = {}, .option_field = {},
          .read = [set](const json& v, const std::string& where, app_config& c) { set(read_string(v, where, false), where, c); },
          .from_env = set,
          .dump = [at, show](const app_config& c) { return json(std::string(show(at(const_cast<app_config&>(c))))); }};
}

// Checked by `validator`'s validate(), which calls it `field`.
setting checked(setting s, std::string validator, std::string field) {
  s.validator = std::move(validator);
  s.option_field = std::move(field);
  return s;
}

result<sqlite_durability> parse_durability(std::string_view text) {
  if (text == "full") return sqlite_durability::full;
  if (text == "normal") return sqlite_durability::normal;
  return error(errc::invalid_argument, "must be full or normal, got '" + detail::sanitize_utf8(text) + "'");
}
std::string_view durability_name(sqlite_durability d) { return d == sqlite_durability::full ? "full" : "normal"; }

result<log_format> parse_format(std::string_view text) {
  if (text == "text") return log_format::text;
  if (text == "json") return log_format::json;
  return error(errc::invalid_argument, "must be text or json, got '" + detail::sanitize_utf8(text) + "'");
}
std::string_view format_name(log_format f) { return f == log_format::json ? "json" : "text"; }
std::string_view level_name(log_level l) { return to_string(l); }
std::string_view ordering_name(processing_order o) { return to_string(o); }
std::string_view backend_name(store_backend b) { return to_string(b); }

const std::vector<setting>& settings() {
  static const std::vector<setting> table = [] {
    std::vector<setting> t;
    t.push_back(checked(text_setting("kafka.bootstrap_servers", "EVENTBUS_BOOTSTRAP_SERVERS", "kafka_options::bootstrap_servers",
                                     [](app_config& c) -> std::string& { return c.kafka.bootstrap_servers; }),
                        "kafka", "bootstrap_servers"));
    t.push_back(checked(text_setting("kafka.client_id", "EVENTBUS_CLIENT_ID", "kafka_options::client_id",
                                     [](app_config& c) -> std::string& { return c.kafka.client_id; }),
                        "kafka", "client_id"));
    t.push_back(checked(
        setting{.path = "kafka.properties",
                .env = "EVENTBUS_KAFKA_<NAME>",  // read by apply_environment: one variable a property
                .option = "kafka_options::properties",
                .validator = {},
                .option_field = {},
                .read =
                    [](const json& v, const std::string& where, app_config& c) {
                      if (!v.is_object()) section::fail(where, "must be an object of strings, got " + std::string(v.type_name()));
                      for (const auto& [name, value] : v.items()) {
                        // librdkafka takes every value as a string; numbers and booleans as written.
                        if (value.is_string())
                          c.kafka.properties[name] = value.get<std::string>();
                        else if (value.is_number() || value.is_boolean())
                          c.kafka.properties[name] = value.dump();
                        else
                          section::fail(where + "." + name,
                                        "must be a string, number or boolean, got " + std::string(value.type_name()));
                      }
                    },
                .from_env = {},
                .dump =
                    [](const app_config& c) {
                      json properties = json::object();
                      for (const auto& [name, value] : c.kafka.properties)
                        properties[name] = is_secret_property(name) ? "***" : value;
                      return properties;
                    }},
        "kafka", "properties"));
    t.push_back(text_setting("topics.prefix", "EVENTBUS_TOPIC_PREFIX", "producer_options::topic_prefix",
                             [](app_config& c) -> std::string& { return c.topic_prefix; }));
    t.push_back(text_setting("topics.dlq_suffix", "", "worker_options::dlq_suffix",
                             [](app_config& c) -> std::string& { return c.dlq_suffix; }));
    t.push_back(checked(count_setting("dispatcher.pool_size", "", "dispatcher_options::pool_size",
                                      [](app_config& c) -> std::size_t& { return c.dispatcher.pool_size; }),
                        "dispatcher", "pool_size"));
    t.push_back(checked(count_setting("dispatcher.queue_capacity", "", "dispatcher_options::queue_capacity",
                                      [](app_config& c) -> std::size_t& { return c.dispatcher.queue_capacity; }),
                        "dispatcher", "queue_capacity"));
    t.push_back(checked(count_setting("dispatcher.priority_levels", "", "dispatcher_options::priority_levels",
                                      [](app_config& c) -> std::size_t& { return c.dispatcher.priority_levels; }),
                        "dispatcher", "priority_levels"));
    t.push_back(checked(text_setting("worker.group", "EVENTBUS_GROUP_ID", "worker_options::group_id",
                                     [](app_config& c) -> std::string& { return c.worker.group_id; }, true),
                        "worker", "group_id"));
    t.push_back(checked(
        setting{.path = "worker.topics",
                .env = "EVENTBUS_WORKER_TOPICS",
                .option = "worker_options::topics",
                .validator = {},
                .option_field = {},
                .read = [](const json& v, const std::string& where, app_config& c) { c.worker.topics = read_strings(v, where); },
                .from_env =
                    [](const std::string& text, const std::string& where, app_config& c) {
                      c.worker.topics.clear();  // a comma list
                      std::stringstream list(text);
                      for (std::string topic; std::getline(list, topic, ',');)
                        if (!topic.empty()) c.worker.topics.push_back(topic);
                      if (c.worker.topics.empty()) section::fail(where, "names no topic");
                    },
                .dump = [](const app_config& c) { return json(c.worker.topics); }},
        "worker", "topics"));
    t.push_back(checked(
        setting{.path = "worker.priority_tiers",
                .env = {},
                .option = "worker_options::priority_tiers",
                .validator = {},
                .option_field = {},
                .read =
                    [](const json& v, const std::string& where, app_config& c) {
                      if (!v.is_array()) section::fail(where, "must be an array of tiers (arrays of topic names or '^regex'), got " + shown(v));
                      c.worker.priority_tiers.clear();
                      for (std::size_t i = 0; i < v.size(); ++i)
                        c.worker.priority_tiers.push_back(read_strings(v[i], where + "[" + std::to_string(i) + "]"));
                    },
                .from_env = {},
                .dump = [](const app_config& c) { return json(c.worker.priority_tiers); }},
        "worker", "priority_tiers"));
    t.push_back(checked(count_setting("worker.lower_tier_share_percent", "", "worker_options::lower_tier_share_percent",
                                      [](app_config& c) -> std::size_t& { return c.worker.lower_tier_share_percent; }),
                        "worker", "lower_tier_share_percent"));
    t.push_back(checked(choice_setting<processing_order>("worker.ordering", "EVENTBUS_WORKER_ORDERING", "worker_options::ordering",
                                                         [](app_config& c) -> processing_order& { return c.worker.ordering; },
                                                         parse_processing_order, ordering_name),
                        "worker", "ordering"));
    t.push_back(checked(count_setting("worker.max_concurrency", "EVENTBUS_WORKER_MAX_CONCURRENCY", "worker_options::max_concurrency",
                                      [](app_config& c) -> std::size_t& { return c.worker.max_concurrency; }),
                        "worker", "max_concurrency"));
    t.push_back(checked(count_setting("worker.max_record_bytes", "", "worker_options::max_record_bytes",
                                      [](app_config& c) -> std::size_t& { return c.worker.max_record_bytes; }),
                        "worker", "max_record_bytes"));
    t.push_back(checked(count_setting("worker.max_buffered_per_partition", "", "worker_options::max_buffered_per_partition",
                                      [](app_config& c) -> std::size_t& { return c.worker.max_buffered_per_partition; }),
                        "worker", "max_buffered_per_partition"));
    t.push_back(checked(millis_setting("worker.commit_interval_ms", "worker_options::commit_interval",
                                       [](app_config& c) -> std::chrono::milliseconds& { return c.worker.commit_interval; }),
                        "worker", "commit_interval"));
    t.push_back(checked(millis_setting("worker.shutdown_timeout_ms", "worker_options::shutdown_timeout",
                                       [](app_config& c) -> std::chrono::milliseconds& { return c.worker.shutdown_timeout; }),
                        "worker", "shutdown_timeout"));
    t.push_back(checked(millis_setting("worker.handler_timeout_ms", "worker_options::handler_timeout",
                                       [](app_config& c) -> std::chrono::milliseconds& { return c.worker.handler_timeout; }),
                        "worker", "handler_timeout"));
    t.push_back(checked(integer_setting("worker.retry.max_attempts", "retry_policy::max_attempts",
                                        [](app_config& c) -> int& { return c.worker.retry.max_attempts; }),
                        "worker", "retry.max_attempts"));
    t.push_back(checked(millis_setting("worker.retry.initial_backoff_ms", "retry_policy::initial_backoff",
                                       [](app_config& c) -> std::chrono::milliseconds& { return c.worker.retry.initial_backoff; }),
                        "worker", "retry.initial_backoff"));
    t.push_back(checked(number_setting("worker.retry.multiplier", "retry_policy::multiplier",
                                       [](app_config& c) -> double& { return c.worker.retry.multiplier; }),
                        "worker", "retry.multiplier"));
    t.push_back(checked(millis_setting("worker.retry.max_backoff_ms", "retry_policy::max_backoff",
                                       [](app_config& c) -> std::chrono::milliseconds& { return c.worker.retry.max_backoff; }),
                        "worker", "retry.max_backoff"));
    t.push_back(checked(number_setting("worker.retry.jitter", "retry_policy::jitter",
                                       [](app_config& c) -> double& { return c.worker.retry.jitter; }),
                        "worker", "retry.jitter"));
    t.push_back(checked(
        setting{.path = "worker.retry.durable_stages_ms",
                .env = {},
                .option = "retry_policy::durable_stages",
                .validator = {},
                .option_field = {},
                .read =
                    [](const json& v, const std::string& where, app_config& c) {
                      if (!v.is_array()) section::fail(where, "must be an array of delays in ms (e.g. [60000, 600000]), got " + shown(v));
                      c.worker.retry.durable_stages.clear();
                      for (std::size_t i = 0; i < v.size(); ++i)
                        c.worker.retry.durable_stages.push_back(read_millis(v[i], where + "[" + std::to_string(i) + "]"));
                    },
                .from_env = {},
                .dump =
                    [](const app_config& c) {
                      json stages = json::array();
                      for (const auto& d : c.worker.retry.durable_stages) stages.push_back(d.count());
                      return stages;
                    }},
        "worker", "retry.durable_stages"));
    t.push_back(choice_setting<store_backend>("store.backend", "EVENTBUS_STORE_BACKEND", "app_config::store.backend",
                                              [](app_config& c) -> store_backend& { return c.store.backend; },
                                              parse_store_backend, backend_name));
    t.push_back(checked(text_setting("store.path", "EVENTBUS_STORE_PATH", "sqlite_store_options::path",
                                     [](app_config& c) -> std::string& { return c.store.sqlite.path; }),
                        "sqlite", "path"));
    {
      auto dsn = checked(text_setting("store.dsn", "EVENTBUS_STORE_DSN", "postgres_store_options::dsn",
                                      [](app_config& c) -> std::string& { return c.store.postgres.dsn; }, true),
                         "postgresql", "dsn");
      dsn.dump = [](const app_config& c) { return json(c.store.postgres.dsn.empty() ? "" : "***"); };  // a secret
      t.push_back(std::move(dsn));
    }
    t.push_back(checked(choice_setting<sqlite_durability>("store.durability", "", "sqlite_store_options::durability",
                                                          [](app_config& c) -> sqlite_durability& { return c.store.sqlite.durability; },
                                                          parse_durability, durability_name),
                        "sqlite", "durability"));
    t.push_back(checked(count_setting("store.relay.batch_size", "", "relay_options::batch_size",
                                      [](app_config& c) -> std::size_t& { return c.store.relay.batch_size; }),
                        "relay", "batch_size"));
    t.push_back(checked(millis_setting("store.relay.interval_ms", "relay_options::interval",
                                       [](app_config& c) -> std::chrono::milliseconds& { return c.store.relay.interval; }),
                        "relay", "interval"));
    t.push_back(checked(millis_setting("store.relay.lease_ttl_ms", "relay_options::lease_ttl",
                                       [](app_config& c) -> std::chrono::milliseconds& { return c.store.relay.lease_ttl; }),
                        "relay", "lease_ttl"));
    t.push_back(text_setting("metrics.listen", "EVENTBUS_METRICS_LISTEN", "app_config::metrics_listen",
                             [](app_config& c) -> std::string& { return c.metrics_listen; }));
    t.push_back(choice_setting<log_level>("log.level", "EVENTBUS_LOG_LEVEL", "app_config::log.level",
                                          [](app_config& c) -> log_level& { return c.log.level; }, parse_log_level, level_name));
    t.push_back(choice_setting<log_format>("log.format", "EVENTBUS_LOG_FORMAT", "app_config::log.format",
                                           [](app_config& c) -> log_format& { return c.log.format; }, parse_format, format_name));
    return t;
  }();
  return table;
}

// The option fields no key sets: filled in code (handlers' middleware, metrics, the store a
// service opens) or from another section (a worker's kafka options are the kafka section's).
constexpr std::string_view code_only[] = {
    "worker_options::kafka",          "worker_options::middleware",         "worker_options::metrics",
    "dispatcher_options::mode",       "dispatcher_options::enqueue_timeout", "dispatcher_options::observe_handler",
    "dispatcher_options::store",      "relay_options::owner",               "relay_options::metrics",
    "sqlite_store_options::busy_timeout", "sqlite_store_options::metrics",  "sqlite_store_options::read_only",
    "postgres_store_options::connect_timeout", "postgres_store_options::metrics", "postgres_store_options::read_only",
    "producer_options::kafka",        "producer_options::enqueue_timeout",  "producer_options::close_timeout",
    "producer_options::metrics",      "dispatcher_options::middleware",     "dispatcher_options::observe_filtered",
    "worker_options::parking_store",  // the store section's, with worker.retry.durable_stages_ms (make_worker_options)
};

bool is_section_of(const std::string& prefix, const std::string& path) {
  return path.size() > prefix.size() && path.compare(0, prefix.size(), prefix) == 0 && path[prefix.size()] == '.';
}

// Reads one object of the document at `prefix` ("" for the root, "worker.retry", ...): each key is
// a setting, a section holding settings, a comment ('_'), or a mistake named with the closest key.
void read_object(const json& doc, const std::string& prefix, app_config& c) {
  if (!doc.is_object()) section::fail(prefix.empty() ? "(document)" : prefix, "must be an object, got " + std::string(doc.type_name()));
  for (const auto& [key, value] : doc.items()) {
    if (key.starts_with('_')) continue;
    const std::string path = prefix.empty() ? key : prefix + "." + key;
    bool section_found = false;
    const setting* found = nullptr;
    for (const auto& s : settings()) {
      if (s.path == path) found = &s;
      if (is_section_of(path, s.path)) section_found = true;
    }
    if (found != nullptr) {
      found->read(value, path, c);
    } else if (section_found) {
      read_object(value, path, c);
    } else {
      std::string hint;
      std::size_t best = 3;  // suggest only close matches
      for (const auto& s : settings()) {
        if (!(prefix.empty() || is_section_of(prefix, s.path))) continue;
        const std::string rest = prefix.empty() ? s.path : s.path.substr(prefix.size() + 1);
        const std::string known = rest.substr(0, rest.find('.'));
        if (const auto d = edit_distance(key, known); d < best) {
          best = d;
          hint = " (did you mean '" + known + "'?)";
        }
      }
      section::fail(path, "unknown key" + hint);
    }
  }
}

void apply_environment(const environment& env, app_config& c) {
  // Every value ends up in JSON (config check, logs) and in librdkafka: text only. Found by fuzzing:
  // invalid UTF-8 in a variable was accepted, and printing the configuration then threw.
  for (const auto& [name, value] : env)
    if (name.starts_with("EVENTBUS_") && (detail::sanitize_utf8(name) != name || detail::sanitize_utf8(value) != value))
      section::fail(detail::sanitize_utf8(name), "is not valid UTF-8 text");
  for (const auto& s : settings()) {
    if (!s.from_env) continue;
    const auto it = env.find(s.env);
    if (it == env.end()) continue;
    if (it->second.empty()) section::fail(it->first, "is set but empty");
    s.from_env(it->second, it->first, c);
  }
  constexpr std::string_view property_prefix = "EVENTBUS_KAFKA_";
  for (const auto& [name, value] : env) {
    if (!name.starts_with(property_prefix)) continue;
    // Set but empty is a mistake (an unset secret in a deployment template, say), as for every
    // other variable: librdkafka would take an empty sasl.password and fail to authenticate later.
    if (name.size() == property_prefix.size()) section::fail(name, "names no Kafka property");
    if (value.empty()) section::fail(name, "is set but empty");
    std::string property = name.substr(property_prefix.size());
    std::transform(property.begin(), property.end(), property.begin(),
                   [](char ch) { return ch == '_' ? '.' : static_cast<char>(std::tolower(static_cast<unsigned char>(ch))); });
    c.kafka.properties[property] = value;
  }
}

worker_options worker_options_of(const app_config& c) {
  worker_options w = c.worker;
  w.kafka = c.kafka;           // one kafka section for every client
  w.dlq_suffix = c.dlq_suffix;  // topics.dlq_suffix
  return w;
}

// Runs one option struct's own validate() and names what it refuses by the file's key: the
// setting whose option field it is, else the section path and the field.
void run_validator(const char* validator, const char* section_path, const std::function<void()>& validate_fn) {
  try {
    validate_fn();
  } catch (const exception& e) {
    const std::string& field = e.error().field();
    std::string path = field.empty() ? section_path : std::string(section_path) + "." + field;
    std::size_t best = 0;
    for (const auto& s : settings()) {
      if (s.validator != validator || s.option_field.empty()) continue;
      if (field == s.option_field) {
        path = s.path;
        break;
      }
      // A field under the option ("properties.bootstrap.servers") keeps its tail.
      if (is_section_of(s.option_field, field) && s.option_field.size() > best) {
        best = s.option_field.size();
        path = s.path + field.substr(s.option_field.size());
      }
    }
    section::fail(path, e.error().message());
  }
}

void validate(const app_config& c) {
  run_validator("kafka", "kafka", [&] { c.kafka.validate(); });
  run_validator("topics", "topics", [&] {
    if (auto probe = topic_for("aggregate", "event.type", c.topic_prefix); !probe)
      throw exception(error(errc::invalid_argument, probe.error().message(), "prefix"));
    if (auto valid = validate_dlq_suffix(c.dlq_suffix); !valid)
      throw exception(error(errc::invalid_argument, valid.error().message(), "dlq_suffix"));
  });
  run_validator("dispatcher", "dispatcher", [&] { c.dispatcher.validate(); });
  run_validator("worker", "worker", [&] {
    auto w = worker_options_of(c);
    if (w.group_id.empty()) w.group_id = "unset";  // a service config needs no group
    // Durable stages park records in the store section's store, which make_worker_options opens:
    // here the stages are checked on their own, and the store section for being there.
    const auto stages = std::exchange(w.retry.durable_stages, {});
    w.validate();
    if (stages.empty()) return;
    w.retry.durable_stages = stages;
    w.retry.validate();
    if (w.ordering != processing_order::key)
      throw exception(error(errc::invalid_argument, "needs worker.ordering key (a parked record holds back its key's later records)",
                            "retry.durable_stages"));
    if (c.store.backend == store_backend::none)
      throw exception(error(errc::invalid_argument, "needs a store to park records in: set store.backend to sqlite or postgresql",
                            "retry.durable_stages"));
  });
  if (c.store.backend == store_backend::postgresql && c.store.postgres.dsn.empty())
    section::fail("store.dsn", "must be set for the postgresql backend (or EVENTBUS_STORE_DSN)");
  if (c.store.backend == store_backend::sqlite) run_validator("sqlite", "store", [&] { c.store.sqlite.validate(); });
  if (c.store.backend == store_backend::postgresql) run_validator("postgresql", "store", [&] { c.store.postgres.validate(); });
  run_validator("relay", "store.relay", [&] { c.store.relay.validate(); });
  if (!is_valid_metrics_listen(c.metrics_listen))
    section::fail("metrics.listen", "must be host:port with a port up to 65535, got '" + c.metrics_listen + "'");
}

}  // namespace

std::string_view to_string(store_backend backend) noexcept {
  switch (backend) {
    case store_backend::none: return "none";
    case store_backend::sqlite: return "sqlite";
    case store_backend::postgresql: return "postgresql";
  }
  return "unknown";
}

result<store_backend> parse_store_backend(std::string_view text) {
  for (const auto backend : {store_backend::none, store_backend::sqlite, store_backend::postgresql})
    if (text == to_string(backend)) return backend;
  return error(errc::invalid_argument, "must be none, sqlite or postgresql, got '" + detail::sanitize_utf8(text) + "'",
               "backend");
}

std::vector<config_key> config_keys() {
  std::vector<config_key> keys;
  for (const auto& s : settings()) keys.push_back({.path = s.path, .env = s.env, .option = s.option});
  return keys;
}

std::span<const std::string_view> code_only_options() noexcept { return code_only; }

void app_config::apply_logging() const {
  set_log_level(log.level);
  set_log_format(log.format);
}

producer_options app_config::make_producer_options() const {
  return {.kafka = kafka, .topic_prefix = topic_prefix};
}

dispatcher_options app_config::make_dispatcher_options() const { return dispatcher; }

result<std::shared_ptr<outbox_store>> app_config::open_store(std::shared_ptr<eventbus::metrics> metrics) const {
  try {
    switch (store.backend) {
      case store_backend::none: return std::shared_ptr<outbox_store>{};
      case store_backend::sqlite: {
        auto options = store.sqlite;
        options.metrics = std::move(metrics);
        return open_sqlite_store(options);
      }
      case store_backend::postgresql: {
        auto options = store.postgres;
        options.metrics = std::move(metrics);
        return open_postgres_store(options);
      }
    }
  } catch (const exception& e) {
    return e.error();
  }
  return std::shared_ptr<outbox_store>{};
}

relay_options app_config::make_relay_options() const { return store.relay; }

result<worker_options> app_config::make_worker_options() const {
  if (worker.group_id.empty())
    return error(errc::invalid_argument, "must not be empty to run a worker (or set EVENTBUS_GROUP_ID)", "worker.group");
  auto options = worker_options_of(*this);
  if (!options.retry.durable_stages.empty()) {  // parked in the store section's store
    auto opened = open_store();
    if (!opened) return opened.error();
    options.parking_store = std::move(opened).value();
  }
  return options;
}

bool is_secret_property(std::string_view name) noexcept {
  // Case-insensitive, and broad on purpose: a misspelled secret ("sasl.pasword") is still a secret,
  // and redacting a harmless value costs nothing.
  std::string lower(name);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); });
  for (const std::string_view marker : {"pass", "pasw", "pwd", "secret", "token", "credential", "oauthbearer", "ssl.key",
                                        "ssl_key", "keystore", "private", "jaas"})
    if (lower.find(marker) != std::string::npos) return true;
  return false;
}

json app_config::redacted_json() const {
  json out = json::object();
  for (const auto& s : settings()) {
    json* at = &out;
    std::string_view path = s.path;
    for (auto dot = path.find('.'); dot != std::string_view::npos; dot = path.find('.')) {
      at = &(*at)[std::string(path.substr(0, dot))];
      path.remove_prefix(dot + 1);
    }
    (*at)[std::string(path)] = s.dump(*this);
  }
  return out;
}

environment process_environment() {
  environment env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const std::string_view entry(*e);
    const auto eq = entry.find('=');
    if (eq != std::string_view::npos && entry.starts_with("EVENTBUS_"))
      env.emplace(std::string(entry.substr(0, eq)), std::string(entry.substr(eq + 1)));
  }
  return env;
}

result<app_config> parse_config(const json& document, const environment& env) {
  app_config c;
  try {
    read_object(document, "", c);
    apply_environment(env, c);
    validate(c);
  } catch (const config_error& e) {
    return error(errc::invalid_argument, e.message, e.path);
  }
  return c;
}

result<app_config> load_config(const std::string& path, const environment& env) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    return error(errc::invalid_argument, "the config file '" + path + "' is a directory", "config");
  std::ifstream in(path);
  if (!in) return error(errc::invalid_argument, "cannot read the config file '" + path + "'", "config");
  json document = json::parse(in, nullptr, /*allow_exceptions=*/false, /*ignore_comments=*/true);
  if (document.is_discarded()) {
    in.clear();
    in.seekg(0);
    try {
      const json unreachable = json::parse(in, nullptr, true, true);  // throws: the first parse failed
      (void)unreachable;
    } catch (const json::exception& e) {  // parse_error, or out_of_range for a number like 1e9999
      return error(errc::invalid_argument, "'" + path + "' is not JSON: " + e.what(), "config");
    }
    return error(errc::invalid_argument, "'" + path + "' is not JSON", "config");
  }
  return parse_config(document, env);
}

}  // namespace eventbus
