#include "kafka/kafka_client.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "support/log.hpp"
#include "eventbus/error.hpp"

namespace eventbus {
namespace {

[[noreturn]] void reject(std::string field, std::string message) {
  throw exception(error(errc::invalid_argument, std::move(message), std::move(field)));
}

// librdkafka calls these from its own threads: they must never let an exception unwind into C.
void log_trampoline(const rd_kafka_t*, int level, const char* facility, const char* message) noexcept {
  const log_level mapped = level <= 3 ? log_level::error : level == 4 ? log_level::warn
                           : level <= 6                   ? log_level::info
                                                          : log_level::debug;
  if (!detail::log_enabled(mapped)) return;
  try {
    detail::log(mapped, std::string("librdkafka ") + facility + ": " + message);
  } catch (...) {
  }
}

void error_trampoline(rd_kafka_t*, int err, const char* reason, void*) noexcept {
  const auto code = static_cast<rd_kafka_resp_err_t>(err);
  // Fatal errors stop the client for good; transport errors come and go with brokers.
  const log_level level = code == RD_KAFKA_RESP_ERR__FATAL ? log_level::error : log_level::warn;
  if (!detail::log_enabled(level)) return;
  try {
    detail::log(level, std::string("kafka: ") + rd_kafka_err2name(code) + ": " + reason);
  } catch (...) {
  }
}

}  // namespace

void kafka_options::validate() const {
  if (bootstrap_servers.empty()) reject("bootstrap_servers", "must not be empty (use \"embedded\" for the in-process broker)");
  if (client_id.empty()) reject("client_id", "must not be empty");
  // Every property is tried on a scratch configuration, so a misspelled name or a bad value is
  // named here (and by `eventbus config check`), not when a client is first created.
  const detail::kafka_conf scratch(rd_kafka_conf_new());
  for (const auto& [name, value] : properties) {
    if (name == "bootstrap.servers")
      reject("properties.bootstrap.servers", "set bootstrap_servers instead, so \"embedded\" keeps working");
    // Workers revoke and assign whole assignments (the eager protocol); under the cooperative one
    // librdkafka refuses rd_kafka_assign and the worker would consume nothing.
    if (name == "partition.assignment.strategy" && value.find("cooperative") != std::string::npos)
      reject("properties.partition.assignment.strategy",
             "'" + value + "' is not supported: eventbus workers use the eager rebalance protocol (range, roundrobin)");
    char why[512];
    if (rd_kafka_conf_set(scratch.get(), name.c_str(), value.c_str(), why, sizeof why) != RD_KAFKA_CONF_OK)
      reject("properties." + name, std::string("librdkafka refused it: ") + why);
  }
}

void producer_options::validate() const {
  kafka.validate();
  if (auto probe = topic_for("aggregate", "event.type", topic_prefix); !probe)
    reject("topic_prefix", probe.error().message());
  if (enqueue_timeout.count() < 0) reject("enqueue_timeout", "must not be negative");
  if (close_timeout.count() < 0) reject("close_timeout", "must not be negative");
}

namespace detail {

void set_property(rd_kafka_conf_t* conf, const std::string& name, const std::string& value) {
  char why[512];
  if (rd_kafka_conf_set(conf, name.c_str(), value.c_str(), why, sizeof why) != RD_KAFKA_CONF_OK)
    reject(name, std::string("librdkafka refused it: ") + why);
}

kafka_handle make_handle(rd_kafka_type_t type, kafka_conf conf) {
  char why[512];
  rd_kafka_t* rk = rd_kafka_new(type, conf.get(), why, sizeof why);
  if (rk == nullptr)
    throw exception(error(errc::invalid_argument, std::string("cannot create the Kafka client: ") + why));
  (void)conf.release();  // rd_kafka_new took it over
  return kafka_handle(rk);
}

namespace {

// Property name -> 'C' (consumer only) or 'P' (producer only), read once from the table librdkafka
// prints (rd_kafka_conf_properties_show: "name | C/P | range | default | ..."), so it always
// matches the librdkafka linked in.
std::map<std::string, char, std::less<>> read_property_scopes() {
  std::map<std::string, char, std::less<>> scopes;
  char* text = nullptr;
  std::size_t size = 0;
  FILE* out = open_memstream(&text, &size);
  if (out == nullptr) return scopes;
  rd_kafka_conf_properties_show(out);
  std::fclose(out);
  const std::string_view all(text, size);
  for (std::size_t start = 0, end; start < all.size(); start = end + 1) {
    end = std::min(all.find('\n', start), all.size());
    const auto line = all.substr(start, end - start);
    const auto bar = line.find('|');
    const auto next_bar = line.find('|', bar + 1);
    if (bar == std::string_view::npos || next_bar == std::string_view::npos) continue;
    const auto name = line.substr(0, std::min(line.find(' '), bar));
    auto scope = line.substr(bar + 1, next_bar - bar - 1);  // "  C  ", "  P  " or "  *  "
    scope.remove_prefix(std::min(scope.find_first_not_of(' '), scope.size()));
    if (!name.empty() && (scope.starts_with("C ") || scope.starts_with("P "))) scopes.emplace(std::string(name), scope[0]);
  }
  std::free(text);
  return scopes;
}

}  // namespace

bool only_for_other_role(const std::string& property, client_role role) {
  static const auto scopes = read_property_scopes();
  const auto it = scopes.find(property);
  if (it == scopes.end()) return false;
  return it->second != (role == client_role::producer ? 'P' : 'C');
}

client_config make_client_config(const kafka_options& options, client_role role,
                                 const std::map<std::string, std::string>& defaults) {
  options.validate();
  client_config out;
  if (options.bootstrap_servers == embedded_bootstrap) {
    out.broker = embedded_broker::shared();
    out.bootstrap_servers = out.broker->bootstrap_servers();
  } else {
    out.bootstrap_servers = options.bootstrap_servers;
  }
  out.conf.reset(rd_kafka_conf_new());
  rd_kafka_conf_set_log_cb(out.conf.get(), log_trampoline);
  rd_kafka_conf_set_error_cb(out.conf.get(), error_trampoline);
  set_property(out.conf.get(), "bootstrap.servers", out.bootstrap_servers);
  set_property(out.conf.get(), "client.id", options.client_id);
  for (const auto& [name, value] : defaults) set_property(out.conf.get(), name, value);
  for (const auto& [name, value] : options.properties)
    if (!only_for_other_role(name, role)) set_property(out.conf.get(), name, value);
  return out;
}

std::string kafka_error_text(rd_kafka_resp_err_t err) {
  return std::string(rd_kafka_err2name(err)) + " (" + rd_kafka_err2str(err) + ")";
}

}  // namespace detail
}  // namespace eventbus
