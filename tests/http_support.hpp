#pragma once
// A minimal HTTP/1.0 GET over loopback, and a reader of Prometheus text format: enough for tests
// to scrape /metrics the way Prometheus does, without a client library.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <map>
#include <optional>
#include <sstream>
#include <string>

namespace eventbus::testing {

struct http_response {
  int status = 0;  // 0: no connection or no valid reply
  std::string body;
};

inline http_response http_get(std::uint16_t port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return {};
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  http_response response;
  if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) {
    const std::string request = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
      std::string raw;
      char buf[8192];
      for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) raw.append(buf, static_cast<std::size_t>(n));
      const auto space = raw.find(' ');
      const auto body = raw.find("\r\n\r\n");
      if (space != std::string::npos && body != std::string::npos) {
        response.status = std::stoi(raw.substr(space + 1, 3));
        response.body = raw.substr(body + 4);
      }
    }
  }
  close(fd);
  return response;
}

/// The value of the sample `name{labels}` in Prometheus text `exposition`, where `labels` must
/// all match (others may be present). nullopt when no sample matches.
inline std::optional<double> sample_value(const std::string& exposition, const std::string& name,
                                          const std::map<std::string, std::string>& labels = {}) {
  std::istringstream lines(exposition);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] == '#' || line.compare(0, name.size(), name) != 0) continue;
    std::size_t pos = name.size();
    std::map<std::string, std::string> found;
    if (pos < line.size() && line[pos] == '{') {
      const auto end = line.find('}', pos);
      if (end == std::string::npos) continue;
      std::string inner = line.substr(pos + 1, end - pos - 1);
      for (std::size_t i = 0; i < inner.size();) {
        const auto eq = inner.find("=\"", i);
        const auto close = inner.find('"', eq + 2);
        if (eq == std::string::npos || close == std::string::npos) break;
        found[inner.substr(i, eq - i)] = inner.substr(eq + 2, close - eq - 2);
        i = close + 2;  // past the quote and the comma
      }
      pos = end + 1;
    }
    if (pos >= line.size() || line[pos] != ' ') continue;  // a longer name with the same prefix
    bool match = true;
    for (const auto& [k, v] : labels) match = match && found.count(k) && found[k] == v;
    if (match) return std::stod(line.substr(pos + 1));
  }
  return std::nullopt;
}

}  // namespace eventbus::testing

namespace eventbus::testing {

/// A loopback port free right now (bound, read, released), for programs that take a fixed address.
inline std::uint16_t free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  std::uint16_t port = 0;
  if (bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0)
    port = ntohs(addr.sin_port);
  close(fd);
  return port;
}

}  // namespace eventbus::testing
