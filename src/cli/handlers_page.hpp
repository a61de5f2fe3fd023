#pragma once
// What `eventbus handlers` reads from outside, parsed without a network (so it can be fuzzed): the
// URL it is given, the HTTP reply it gets, and the /handlers page it prints as a table.

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace eventbus::cli {

struct http_url {
  std::string host;
  std::string port;
  std::string path;
};

/// "http://host:port[/path]" (path "/" becomes "/handlers"); nullopt with `problem` naming what is wrong.
[[nodiscard]] std::optional<http_url> parse_url(std::string_view url, std::string& problem);

struct http_reply {
  int status = 0;
  std::string body;
};

/// A whole HTTP/1.x reply (status line, headers, body); nullopt with `problem` when it is not one.
[[nodiscard]] std::optional<http_reply> parse_http_reply(std::string_view raw, std::string& problem);

/// The table `eventbus handlers` prints for a page `{"handlers": [...]}` (rows that are not objects,
/// and fields of the wrong type, print as empty); every value made printable.
[[nodiscard]] std::string handlers_table(const nlohmann::json& page);

}  // namespace eventbus::cli
