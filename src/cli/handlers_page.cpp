// Parsing what `eventbus handlers` reads (handlers_page.hpp).

#include "cli/handlers_page.hpp"

#include <charconv>
#include <cstdio>

#include "cli/printable.hpp"

namespace eventbus::cli {
namespace {

std::string joined(const nlohmann::json& list) {
  std::string out;
  if (!list.is_array()) return "-";
  for (const auto& item : list)
    if (item.is_string()) out += (out.empty() ? "" : ",") + item.get<std::string>();
  return out.empty() ? "-" : out;
}

std::string text_of(const nlohmann::json& row, const char* key) {
  const auto it = row.find(key);
  if (it == row.end()) return "";
  return it->is_string() ? it->get<std::string>() : it->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

const nlohmann::json& field(const nlohmann::json& row, const char* key) {
  static const nlohmann::json none;
  const auto it = row.find(key);
  return it == row.end() ? none : *it;
}

std::string line(const std::string& component, const std::string& name, const std::string& patterns,
                 const std::string& condition, const std::string& middleware, const std::string& in_flight,
                 const std::string& calls, const std::string& failures, const std::string& filtered) {
  char buf[1024];
  std::snprintf(buf, sizeof buf, "%-22s %-24s %-28s %-9s %-22s %9s %10s %9s %9s\n", component.c_str(), name.c_str(),
                patterns.c_str(), condition.c_str(), middleware.c_str(), in_flight.c_str(), calls.c_str(),
                failures.c_str(), filtered.c_str());
  return buf;
}

}  // namespace


// "http://host:port[/path]"; the error names what is wrong.
std::optional<http_url> parse_url(std::string_view url, std::string& problem) {
  constexpr std::string_view scheme = "http://";
  if (!url.starts_with(scheme)) {
    problem = url.starts_with("https://") ? "https is not served by the metrics server: use http://"
                                          : "must start with http://";
    return std::nullopt;
  }
  std::string_view rest = url.substr(scheme.size());
  const auto slash = rest.find('/');
  const std::string_view authority = rest.substr(0, slash);
  http_url parsed{.host = {}, .port = {}, .path = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash))};
  const auto colon = authority.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    problem = "needs host:port (the metrics server's metrics.listen, e.g. 127.0.0.1:9464)";
    return std::nullopt;
  }
  parsed.host = std::string(authority.substr(0, colon));
  parsed.port = std::string(authority.substr(colon + 1));
  unsigned port = 0;
  const auto [ptr, ec] = std::from_chars(parsed.port.data(), parsed.port.data() + parsed.port.size(), port);
  if (ec != std::errc{} || ptr != parsed.port.data() + parsed.port.size() || port == 0 || port > 65535) {
    problem = "port '" + printable(parsed.port) + "' is not a number from 1 to 65535";
    return std::nullopt;
  }
  if (parsed.host.find_first_of(" \t\r\n@") != std::string::npos) {
    problem = "host '" + printable(parsed.host) + "' is not a host name or address";
    return std::nullopt;
  }
  if (parsed.path.find_first_of(" \t\r\n") != std::string::npos) {
    problem = "the path holds white space";
    return std::nullopt;
  }
  if (parsed.path == "/") parsed.path = "/handlers";
  return parsed;
}


std::optional<http_reply> parse_http_reply(std::string_view raw, std::string& problem) {
  const auto space = raw.find(' ');
  const auto body = raw.find("\r\n\r\n");
  if (!raw.starts_with("HTTP/") || space == std::string_view::npos || body == std::string_view::npos ||
      space + 4 > raw.size()) {
    problem = "the answer is not HTTP";
    return std::nullopt;
  }
  http_reply reply;
  const auto [ptr, ec] = std::from_chars(raw.data() + space + 1, raw.data() + space + 4, reply.status);
  if (ec != std::errc{} || ptr != raw.data() + space + 4) {
    problem = "the answer has no status code";
    return std::nullopt;
  }
  reply.body = std::string(raw.substr(body + 4));
  return reply;
}

std::string handlers_table(const nlohmann::json& page) {
  std::string out = line("COMPONENT", "HANDLER", "PATTERNS", "CONDITION", "MIDDLEWARE", "IN_FLIGHT", "CALLS", "FAILURES",
                         "FILTERED");
  if (!page.is_object() || !page.contains("handlers") || !page["handlers"].is_array()) return out;
  for (const auto& row : page["handlers"]) {
    if (!row.is_object()) continue;
    const auto& condition = field(row, "condition");
    // A name longer than a line would be cut by the line buffer: cut it visibly first.
    auto cell = [](std::string text) { return printable(text.size() > 200 ? text.substr(0, 200) + "..." : text); };
    out += line(cell(text_of(row, "component")), cell(text_of(row, "name")), cell(joined(field(row, "patterns"))),
                condition.is_boolean() && condition.get<bool>() ? "yes" : "no", cell(joined(field(row, "middleware"))),
                cell(text_of(row, "in_flight")), cell(text_of(row, "calls")), cell(text_of(row, "failures")),
                cell(text_of(row, "filtered")));
  }
  return out;
}

}  // namespace eventbus::cli
