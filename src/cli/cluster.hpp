#pragma once
// What the commands that talk to Kafka do first: make sure a broker answers within --timeout, and
// check the topics they are given against the ones that exist. Without it librdkafka retries for
// minutes against a closed port, and a metadata request for a mistyped topic may create it.

#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cli/args.hpp"
#include "cli/printable.hpp"
#include "eventbus/admin/topics.hpp"

namespace eventbus::cli {

/// The topics of the cluster at `bootstrap`. When no broker answers within `timeout`: nullopt,
/// after saying on stderr which servers were tried and how to point elsewhere.
inline std::optional<std::vector<std::string>> reach_cluster(std::string_view command, const kafka_options& kafka,
                                                             std::chrono::seconds timeout) {
  auto names = topic_names(kafka, timeout);
  if (names) return std::move(names).value();
  const std::string& servers = kafka.bootstrap_servers;
  std::fprintf(stderr,
               "eventbus %.*s: no Kafka broker answered within %lld s at %s (%s): %s\n"
               "  point elsewhere with --bootstrap HOST:PORT or EVENTBUS_BOOTSTRAP_SERVERS=HOST:PORT,\n"
               "  or start a local broker with `eventbus dev-broker` (it prints the address to use);\n"
               "  --timeout SECONDS waits longer\n",
               static_cast<int>(command.size()), command.data(), static_cast<long long>(timeout.count()),
               printable(servers).c_str(), bootstrap_origin(servers).c_str(), names.error().to_string().c_str());
  return std::nullopt;
}

/// "a, b, c" for messages: at most `max` names, then how many more.
inline std::string name_list(const std::vector<std::string>& names, std::size_t max = 20) {
  if (names.empty()) return "none";
  std::string out;
  for (std::size_t i = 0; i < names.size() && i < max; ++i) out += (i == 0 ? "" : ", ") + printable(names[i]);
  if (names.size() > max) out += ", and " + std::to_string(names.size() - max) + " more";
  return out;
}

/// The names of `names` that start with `prefix` and end with `suffix`.
inline std::vector<std::string> names_like(const std::vector<std::string>& names, std::string_view prefix,
                                           std::string_view suffix = {}) {
  std::vector<std::string> out;
  for (const auto& n : names)
    if (std::string_view(n).starts_with(prefix) && std::string_view(n).ends_with(suffix)) out.push_back(n);
  return out;
}

}  // namespace eventbus::cli
