#include "eventbus/config.hpp"

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "detail/event_data.hpp"
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

// Reads one JSON object: each key at most once, with its path for errors; finish() rejects the
// keys nobody asked for, suggesting the closest known one.
class section {
 public:
  section(const json& doc, std::string path) : doc_(doc), path_(std::move(path)) {
    if (!doc_.is_object()) fail(path_.empty() ? "(document)" : path_, "must be an object, got " + std::string(doc_.type_name()));
  }

  const json* find(const char* key) {
    known_.emplace_back(key);
    const auto it = doc_.find(key);
    return it == doc_.end() ? nullptr : &*it;
  }
  std::string path_of(const char* key) const { return path_.empty() ? key : path_ + "." + key; }

  void string(const char* key, std::string& out, bool allow_empty = false) {
    if (const auto* v = find(key)) {
      if (!v->is_string()) fail(path_of(key), "must be a string, got " + std::string(v->type_name()));
      if (!allow_empty && v->get_ref<const std::string&>().empty()) fail(path_of(key), "must not be empty");
      out = v->get<std::string>();
    }
  }
  void count(const char* key, std::size_t& out) {
    if (const auto* v = find(key)) {
      if (!v->is_number_unsigned() || v->get<std::uint64_t>() == 0)
        fail(path_of(key), "must be a positive integer, got " + shown(*v));
      out = v->get<std::size_t>();
    }
  }
  void integer(const char* key, int& out) {
    if (const auto* v = find(key)) {
      if (!v->is_number_integer()) fail(path_of(key), "must be an integer, got " + shown(*v));
      const bool fits = v->is_number_unsigned()
                            ? v->get<std::uint64_t>() <= static_cast<std::uint64_t>(std::numeric_limits<int>::max())
                            : v->get<std::int64_t>() >= std::numeric_limits<int>::min() &&
                                  v->get<std::int64_t>() <= std::numeric_limits<int>::max();
      if (!fits) fail(path_of(key), "is out of range, got " + v->dump());
      out = v->get<int>();
    }
  }
  void number(const char* key, double& out) {
    if (const auto* v = find(key)) {
      if (!v->is_number()) fail(path_of(key), "must be a number, got " + shown(*v));
      out = v->get<double>();
    }
  }
  void millis(const char* key, std::chrono::milliseconds& out) {
    if (const auto* v = find(key)) {
      if (!v->is_number_integer() || v->get<std::int64_t>() < 0)
        fail(path_of(key), "must be a whole number of milliseconds >= 0, got " + shown(*v));
      if (v->get<std::uint64_t>() > static_cast<std::uint64_t>(max_duration.count()))
        fail(path_of(key), "must be at most " + std::to_string(max_duration.count()) + " (a year), got " + v->dump());
      out = std::chrono::milliseconds(v->get<std::int64_t>());
    }
  }
  void strings(const char* key, std::vector<std::string>& out) {
    if (const auto* v = find(key)) {
      if (!v->is_array()) fail(path_of(key), "must be an array of strings, got " + std::string(v->type_name()));
      out.clear();
      for (std::size_t i = 0; i < v->size(); ++i) {
        const auto& item = (*v)[i];
        if (!item.is_string() || item.get_ref<const std::string&>().empty())
          fail(path_of(key) + "[" + std::to_string(i) + "]", "must be a non-empty string, got " + shown(item));
        out.push_back(item.get<std::string>());
      }
    }
  }
  void string_map(const char* key, std::map<std::string, std::string>& out) {
    if (const auto* v = find(key)) {
      if (!v->is_object()) fail(path_of(key), "must be an object of strings, got " + std::string(v->type_name()));
      for (const auto& [name, value] : v->items()) {
        // librdkafka takes every value as a string; numbers and booleans are accepted as written.
        if (value.is_string())
          out[name] = value.get<std::string>();
        else if (value.is_number() || value.is_boolean())
          out[name] = value.dump();
        else
          fail(path_of(key) + "." + name, "must be a string, number or boolean, got " + std::string(value.type_name()));
      }
    }
  }
  template <class Read>
  void object(const char* key, Read&& read) {
    if (const auto* v = find(key)) {
      section inner(*v, path_of(key));
      read(inner);
      inner.finish();
    }
  }

  void finish() const {
    for (const auto& [key, value] : doc_.items()) {
      (void)value;
      if (key.starts_with('_') || std::find(known_.begin(), known_.end(), key) != known_.end()) continue;
      std::string hint;
      std::size_t best = 3;  // suggest only close matches
      for (const auto& k : known_)
        if (const auto d = edit_distance(key, k); d < best) {
          best = d;
          hint = " (did you mean '" + k + "'?)";
        }
      fail(path_of(key.c_str()), "unknown key" + hint);
    }
  }

  [[noreturn]] static void fail(std::string path, std::string message) {
    throw config_error{std::move(path), std::move(message)};
  }

 private:
  const json& doc_;
  std::string path_;
  std::vector<std::string> known_;
};

// A parser's result into `out`, its error under the key's path.
template <class T>
void set_parsed(const std::string& where, result<T> parsed, T& out) {
  if (!parsed) section::fail(where, parsed.error().message());
  out = *parsed;
}

void set_level(const std::string& where, const std::string& text, log_level& out) {
  set_parsed(where, parse_log_level(text), out);
}

void set_ordering(const std::string& where, const std::string& text, processing_order& out) {
  set_parsed(where, parse_processing_order(text), out);
}

void set_backend(const std::string& where, const std::string& text, store_backend& out) {
  set_parsed(where, parse_store_backend(text), out);
}

void set_durability(const std::string& where, const std::string& text, sqlite_durability& out) {
  if (text == "full")
    out = sqlite_durability::full;
  else if (text == "normal")
    out = sqlite_durability::normal;
  else
    section::fail(where, "must be full or normal, got '" + text + "'");
}

void set_format(const std::string& where, const std::string& text, log_format& out) {
  if (text == "text")
    out = log_format::text;
  else if (text == "json")
    out = log_format::json;
  else
    section::fail(where, "must be text or json, got '" + text + "'");
}

void read_document(const json& doc, app_config& c) {
  section root(doc, "");
  root.object("kafka", [&](section& s) {
    s.string("bootstrap_servers", c.kafka.bootstrap_servers);
    s.string("client_id", c.kafka.client_id);
    s.string_map("properties", c.kafka.properties);
  });
  root.object("topics", [&](section& s) {
    s.string("prefix", c.topic_prefix);
    s.string("dlq_suffix", c.dlq_suffix);
  });
  root.object("dispatcher", [&](section& s) {
    s.count("pool_size", c.dispatcher.pool_size);
    s.count("queue_capacity", c.dispatcher.queue_capacity);
  });
  root.object("worker", [&](section& s) {
    s.string("group", c.worker.group, true);
    s.strings("topics", c.worker.topics);
    std::string ordering;
    s.string("ordering", ordering);
    if (!ordering.empty()) set_ordering(s.path_of("ordering"), ordering, c.worker.ordering);
    s.count("max_concurrency", c.worker.max_concurrency);
    s.count("max_buffered_per_partition", c.worker.max_buffered_per_partition);
    s.millis("commit_interval_ms", c.worker.commit_interval);
    s.millis("shutdown_timeout_ms", c.worker.shutdown_timeout);
    s.millis("handler_timeout_ms", c.worker.handler_timeout);
    s.object("retry", [&](section& r) {
      r.integer("max_attempts", c.worker.retry.max_attempts);
      r.millis("initial_backoff_ms", c.worker.retry.initial_backoff);
      r.number("multiplier", c.worker.retry.multiplier);
      r.millis("max_backoff_ms", c.worker.retry.max_backoff);
      r.number("jitter", c.worker.retry.jitter);
    });
  });
  root.object("store", [&](section& s) {
    std::string backend;
    s.string("backend", backend);
    if (!backend.empty()) set_backend(s.path_of("backend"), backend, c.store.backend);
    s.string("path", c.store.path);
    s.string("dsn", c.store.dsn, true);
    std::string durability;
    s.string("durability", durability);
    if (!durability.empty()) set_durability(s.path_of("durability"), durability, c.store.durability);
    s.object("relay", [&](section& r) {
      r.count("batch_size", c.store.relay_batch_size);
      r.millis("interval_ms", c.store.relay_interval);
    });
  });
  root.object("metrics", [&](section& s) { s.string("listen", c.metrics_listen); });
  root.object("log", [&](section& s) {
    std::string level, format;
    s.string("level", level);
    s.string("format", format);
    if (!level.empty()) set_level(s.path_of("level"), level, c.log.level);
    if (!format.empty()) set_format(s.path_of("format"), format, c.log.format);
  });
  root.finish();
}

void apply_environment(const environment& env, app_config& c) {
  // Every value ends up in JSON (config check, logs) and in librdkafka: text only. Found by fuzzing:
  // invalid UTF-8 in a variable was accepted, and printing the configuration then threw.
  for (const auto& [name, value] : env)
    if (name.starts_with("EVENTBUS_") && (detail::sanitize_utf8(name) != name || detail::sanitize_utf8(value) != value))
      section::fail(detail::sanitize_utf8(name), "is not valid UTF-8 text");
  const auto take = [&](const char* name, std::string& out) {
    if (const auto it = env.find(name); it != env.end()) {
      if (it->second.empty()) section::fail(name, "is set but empty");
      out = it->second;
    }
  };
  take("EVENTBUS_BOOTSTRAP_SERVERS", c.kafka.bootstrap_servers);
  take("EVENTBUS_CLIENT_ID", c.kafka.client_id);
  take("EVENTBUS_TOPIC_PREFIX", c.topic_prefix);
  take("EVENTBUS_GROUP_ID", c.worker.group);
  take("EVENTBUS_METRICS_LISTEN", c.metrics_listen);
  if (const auto it = env.find("EVENTBUS_STORE_BACKEND"); it != env.end()) set_backend(it->first, it->second, c.store.backend);
  take("EVENTBUS_STORE_PATH", c.store.path);
  take("EVENTBUS_STORE_DSN", c.store.dsn);
  if (const auto it = env.find("EVENTBUS_LOG_LEVEL"); it != env.end()) set_level(it->first, it->second, c.log.level);
  if (const auto it = env.find("EVENTBUS_LOG_FORMAT"); it != env.end()) set_format(it->first, it->second, c.log.format);
  if (const auto it = env.find("EVENTBUS_WORKER_TOPICS"); it != env.end()) {
    c.worker.topics.clear();
    std::stringstream list(it->second);
    for (std::string topic; std::getline(list, topic, ',');)
      if (!topic.empty()) c.worker.topics.push_back(topic);
    if (c.worker.topics.empty()) section::fail("EVENTBUS_WORKER_TOPICS", "names no topic");
  }
  if (const auto it = env.find("EVENTBUS_WORKER_ORDERING"); it != env.end()) set_ordering(it->first, it->second, c.worker.ordering);
  if (const auto it = env.find("EVENTBUS_WORKER_MAX_CONCURRENCY"); it != env.end()) {
    const auto& v = it->second;
    std::size_t n = 0;
    const auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc{} || ptr != v.data() + v.size() || n == 0)
      section::fail(it->first, "must be a positive integer, got '" + v + "'");
    c.worker.max_concurrency = n;
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
  return {.kafka = c.kafka,
          .group_id = c.worker.group,
          .topics = c.worker.topics,
          .dlq_suffix = c.dlq_suffix,
          .retry = c.worker.retry,
          .ordering = c.worker.ordering,
          .max_concurrency = c.worker.max_concurrency,
          .max_buffered_per_partition = c.worker.max_buffered_per_partition,
          .commit_interval = c.worker.commit_interval,
          .shutdown_timeout = c.worker.shutdown_timeout,
          .handler_timeout = c.worker.handler_timeout};
}

// The library's own validation, with its field names turned into the file's paths.
void validate(const app_config& c) {
  const auto check = [](const char* section_path, auto&& fn) {
    try {
      fn();
    } catch (const exception& e) {
      const std::string& field = e.error().field();
      section::fail(field.empty() ? section_path : std::string(section_path) + "." + field, e.error().message());
    }
  };
  check("kafka", [&] { c.kafka.validate(); });
  check("topics", [&] {
    if (auto probe = topic_for("aggregate", "event.type", c.topic_prefix); !probe)
      throw exception(error(errc::invalid_argument, probe.error().message(), "prefix"));
    if (auto valid = validate_dlq_suffix(c.dlq_suffix); !valid)
      throw exception(error(errc::invalid_argument, valid.error().message(), "dlq_suffix"));
  });
  check("worker", [&] {
    auto w = worker_options_of(c);
    if (w.group_id.empty()) w.group_id = "unset";  // a service config needs no group
    w.validate();
  });
  if (c.store.backend == store_backend::postgresql && c.store.dsn.empty())
    section::fail("store.dsn", "must be set for the postgresql backend (or EVENTBUS_STORE_DSN)");
  if (c.store.relay_batch_size > 100'000) section::fail("store.relay.batch_size", "must be at most 100000");
  if (c.store.relay_interval.count() == 0) section::fail("store.relay.interval_ms", "must be positive");
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

void app_config::apply_logging() const {
  set_log_level(log.level);
  set_log_format(log.format);
}

producer_options app_config::make_producer_options() const {
  return {.kafka = kafka, .topic_prefix = topic_prefix};
}

dispatcher_options app_config::make_dispatcher_options() const {
  return {.pool_size = dispatcher.pool_size, .queue_capacity = dispatcher.queue_capacity};
}

result<std::shared_ptr<outbox_store>> app_config::open_store(std::shared_ptr<eventbus::metrics> metrics) const {
  try {
    switch (store.backend) {
      case store_backend::none: return std::shared_ptr<outbox_store>{};
      case store_backend::sqlite:
        return open_sqlite_store({.path = store.path, .durability = store.durability, .metrics = std::move(metrics)});
      case store_backend::postgresql: return open_postgres_store({.dsn = store.dsn, .metrics = std::move(metrics)});
    }
  } catch (const exception& e) {
    return e.error();
  }
  return std::shared_ptr<outbox_store>{};
}

relay_options app_config::make_relay_options() const {
  return {.batch_size = store.relay_batch_size, .interval = store.relay_interval};
}

result<worker_options> app_config::make_worker_options() const {
  if (worker.group.empty())
    return error(errc::invalid_argument, "must not be empty to run a worker (or set EVENTBUS_GROUP_ID)", "worker.group");
  return worker_options_of(*this);
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
  json properties = json::object();
  for (const auto& [name, value] : kafka.properties) properties[name] = is_secret_property(name) ? "***" : value;
  return {{"kafka", {{"bootstrap_servers", kafka.bootstrap_servers}, {"client_id", kafka.client_id}, {"properties", properties}}},
          {"topics", {{"prefix", topic_prefix}, {"dlq_suffix", dlq_suffix}}},
          {"dispatcher", {{"pool_size", dispatcher.pool_size}, {"queue_capacity", dispatcher.queue_capacity}}},
          {"worker",
           {{"group", worker.group},
            {"topics", worker.topics},
            {"ordering", to_string(worker.ordering)},
            {"max_concurrency", worker.max_concurrency},
            {"max_buffered_per_partition", worker.max_buffered_per_partition},
            {"commit_interval_ms", worker.commit_interval.count()},
            {"shutdown_timeout_ms", worker.shutdown_timeout.count()},
            {"handler_timeout_ms", worker.handler_timeout.count()},
            {"retry",
             {{"max_attempts", worker.retry.max_attempts},
              {"initial_backoff_ms", worker.retry.initial_backoff.count()},
              {"multiplier", worker.retry.multiplier},
              {"max_backoff_ms", worker.retry.max_backoff.count()},
              {"jitter", worker.retry.jitter}}}}},
          {"store",
           {{"backend", to_string(store.backend)},
            {"path", store.path},
            {"dsn", store.dsn.empty() ? "" : "***"},
            {"durability", store.durability == sqlite_durability::full ? "full" : "normal"},
            {"relay", {{"batch_size", store.relay_batch_size}, {"interval_ms", store.relay_interval.count()}}}}},
          {"metrics", {{"listen", metrics_listen}}},
          {"log", {{"level", to_string(log.level)}, {"format", log.format == log_format::json ? "json" : "text"}}}};
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
    read_document(document, c);
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
