// `eventbus handlers --url URL`: the handlers a running service or worker has (its metrics
// server's /handlers), as a table.

#include <netdb.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "cli/printable.hpp"

namespace eventbus::cli {
namespace {

constexpr std::string_view handlers_usage = R"(usage: eventbus handlers --url http://HOST:PORT [--timeout SECONDS] [--json]

Shows the handlers of a running service or worker, read from its metrics server's /handlers page:
for each handler its component (the dispatcher, or the worker and its group), name, patterns,
whether it has a condition, its own middleware, calls in flight and totals.

  --url URL            the metrics server (metrics.listen), e.g. http://127.0.0.1:9464; a path other
                       than / is taken as given
  --timeout SECONDS    how long to wait for the answer (default 5)
  --json               the page as it came
)";

struct http_url {
  std::string host;
  std::string port;
  std::string path;
};

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

struct http_reply {
  int status = 0;
  std::string body;
};

// One HTTP/1.0 GET; the error says what failed (resolve, connect, read, reply).
std::optional<http_reply> http_get(const http_url& url, std::chrono::seconds timeout, std::string& problem) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (const int rc = getaddrinfo(url.host.c_str(), url.port.c_str(), &hints, &found); rc != 0) {
    problem = "cannot resolve '" + printable(url.host) + "': " + gai_strerror(rc);
    return std::nullopt;
  }
  int fd = -1;
  std::string connect_error = "no address";
  for (addrinfo* a = found; a != nullptr && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd < 0) continue;
    timeval tv{.tv_sec = static_cast<time_t>(timeout.count()), .tv_usec = 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
      connect_error = std::strerror(errno);
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(found);
  if (fd < 0) {
    problem = "cannot connect to " + printable(url.host) + ":" + url.port + ": " + connect_error;
    return std::nullopt;
  }
  const std::string request = "GET " + url.path + " HTTP/1.0\r\nHost: " + url.host + "\r\n\r\n";
  std::string raw;
  if (write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
    char buf[8192];
    for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) raw.append(buf, static_cast<std::size_t>(n));
  }
  close(fd);
  const auto space = raw.find(' ');
  const auto body = raw.find("\r\n\r\n");
  if (!raw.starts_with("HTTP/") || space == std::string::npos || body == std::string::npos || space + 4 > raw.size()) {
    problem = raw.empty() ? "no answer within " + std::to_string(timeout.count()) + " s" : "the answer is not HTTP";
    return std::nullopt;
  }
  http_reply reply;
  const auto [ptr, ec] = std::from_chars(raw.data() + space + 1, raw.data() + space + 4, reply.status);
  if (ec != std::errc{}) {
    problem = "the answer has no status code";
    return std::nullopt;
  }
  reply.body = raw.substr(body + 4);
  return reply;
}

std::string joined(const nlohmann::json& list) {
  std::string out;
  if (!list.is_array()) return out;
  for (const auto& item : list)
    if (item.is_string()) out += (out.empty() ? "" : ",") + item.get<std::string>();
  return out.empty() ? "-" : out;
}

std::string text_of(const nlohmann::json& row, const char* key) {
  const auto it = row.find(key);
  if (it == row.end()) return "";
  return it->is_string() ? it->get<std::string>() : it->dump();
}

}  // namespace

int run_handlers(std::span<const std::string_view> args) {
  std::vector<std::string_view> rest(args.begin(), args.end());
  const bool json = take_switch(rest, "--json");
  std::string url_text;
  std::chrono::seconds timeout{5};
  arg_parser parser("handlers", handlers_usage);
  parser.add_string("--url", url_text);
  parser.add_seconds("--timeout", timeout);
  if (const auto exit_code = parser.parse(rest)) return *exit_code;
  if (url_text.empty()) {
    std::fprintf(stderr, "eventbus handlers: --url is required\n\n%.*s", static_cast<int>(handlers_usage.size()),
                 handlers_usage.data());
    return exit_usage;
  }
  std::string problem;
  const auto url = parse_url(url_text, problem);
  if (!url) {
    std::fprintf(stderr, "eventbus handlers: --url '%s' %s\n", printable(url_text).c_str(), problem.c_str());
    return exit_usage;
  }
  const auto reply = http_get(*url, timeout, problem);
  if (!reply) {
    std::fprintf(stderr, "eventbus handlers: %s\n", problem.c_str());
    return exit_failure;
  }
  if (reply->status != 200) {
    std::fprintf(stderr, "eventbus handlers: %s answered HTTP %d for %s%s\n", printable(url_text).c_str(),
                 reply->status, url->path.c_str(),
                 reply->status == 404 ? " (an eventbus older than /handlers, or not a metrics server?)" : "");
    return exit_failure;
  }
  const auto page = nlohmann::json::parse(reply->body, nullptr, false);
  if (page.is_discarded() || !page.is_object() || !page.contains("handlers") || !page["handlers"].is_array()) {
    std::fprintf(stderr, "eventbus handlers: %s (%s) is not a /handlers page (no \"handlers\" list)\n",
                 printable(url_text).c_str(), url->path.c_str());
    return exit_failure;
  }
  if (json) {
    std::printf("%s\n", page.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return exit_ok;
  }
  std::printf("%-22s %-24s %-28s %-9s %-22s %9s %10s %9s %9s\n", "COMPONENT", "HANDLER", "PATTERNS", "CONDITION",
              "MIDDLEWARE", "IN_FLIGHT", "CALLS", "FAILURES", "FILTERED");
  for (const auto& row : page["handlers"]) {
    if (!row.is_object()) continue;
    std::printf("%-22s %-24s %-28s %-9s %-22s %9s %10s %9s %9s\n", printable(text_of(row, "component")).c_str(),
                printable(text_of(row, "name")).c_str(), printable(joined(row.value("patterns", nlohmann::json()))).c_str(),
                row.value("condition", false) ? "yes" : "no",
                printable(joined(row.value("middleware", nlohmann::json()))).c_str(), text_of(row, "in_flight").c_str(),
                text_of(row, "calls").c_str(), text_of(row, "failures").c_str(), text_of(row, "filtered").c_str());
  }
  if (page.contains("errors"))
    for (const auto& e : page["errors"])
      std::fprintf(stderr, "eventbus handlers: %s could not list its handlers: %s\n",
                   printable(text_of(e, "component")).c_str(), printable(text_of(e, "error")).c_str());
  std::fprintf(stderr, "%zu handler(s)\n", page["handlers"].size());
  return exit_ok;
}

}  // namespace eventbus::cli
