// libFuzzer target: a configuration file's text with EVENTBUS_* environment overrides on top, as a
// service loads it. Bad input is an error naming the key, never a crash; an accepted config can be
// printed redacted and turned into worker options that validate.

#include <fuzzer/FuzzedDataProvider.h>

#include <array>
#include <cstdint>
#include <string>

#include "eventbus/config.hpp"

namespace {

constexpr std::array env_names{"EVENTBUS_BOOTSTRAP_SERVERS", "EVENTBUS_CLIENT_ID",   "EVENTBUS_TOPIC_PREFIX",
                               "EVENTBUS_GROUP_ID",          "EVENTBUS_METRICS_LISTEN", "EVENTBUS_STORE_BACKEND",
                               "EVENTBUS_STORE_PATH",        "EVENTBUS_STORE_DSN",   "EVENTBUS_LOG_LEVEL",
                               "EVENTBUS_LOG_FORMAT",        "EVENTBUS_WORKER_TOPICS", "EVENTBUS_WORKER_ORDERING",
                               "EVENTBUS_WORKER_MAX_CONCURRENCY", "EVENTBUS_KAFKA_LINGER_MS", "EVENTBUS_KAFKA_SASL_PASSWORD"};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  eventbus::environment env;
  const int overrides = in.ConsumeIntegralInRange(0, 3);
  for (int i = 0; i < overrides; ++i) {
    std::string name = in.ConsumeBool() ? env_names[in.ConsumeIntegralInRange<std::size_t>(0, env_names.size() - 1)]
                                        : "EVENTBUS_KAFKA_" + in.ConsumeRandomLengthString(30);
    env[name] = in.ConsumeRandomLengthString(60);
  }
  const std::string text = in.ConsumeRemainingBytesAsString();
  const auto document = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false, /*ignore_comments=*/true);
  if (document.is_discarded()) return 0;
  const auto config = eventbus::parse_config(document, env);
  if (!config) {
    if (config.error().message().empty()) __builtin_trap();
    return 0;
  }
  (void)config.value().redacted_json().dump();
  if (!config.value().worker.group_id.empty()) config.value().make_worker_options()->validate();  // throws: a bug
  return 0;
}
