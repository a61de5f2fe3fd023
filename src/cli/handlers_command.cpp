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
#include "cli/handlers_page.hpp"
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
  if (raw.empty()) {
    problem = "no answer within " + std::to_string(timeout.count()) + " s";
    return std::nullopt;
  }
  return parse_http_reply(raw, problem);
}

// A string member of `value`, or "" (not an object, absent, another type).
std::string string_field(const nlohmann::json& value, const char* key) {
  if (!value.is_object()) return "";
  const auto it = value.find(key);
  return it != value.end() && it->is_string() ? it->get<std::string>() : "";
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
  std::fputs(handlers_table(page).c_str(), stdout);
  if (page.contains("errors"))
    for (const auto& e : page["errors"])
      std::fprintf(stderr, "eventbus handlers: %s could not list its handlers: %s\n",
                   printable(string_field(e, "component")).c_str(), printable(string_field(e, "error")).c_str());
  std::fprintf(stderr, "%zu handler(s)\n", page["handlers"].size());
  return exit_ok;
}

}  // namespace eventbus::cli
