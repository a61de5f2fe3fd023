// libFuzzer target: what `eventbus handlers` reads from outside. The first line is its --url, the
// rest the server's reply: a bad URL or reply is an error naming the problem, never a crash, and
// any page prints as a table.

#include <cstdint>
#include <string>
#include <string_view>

#include "cli/handlers_page.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const auto newline = input.find('\n');
  std::string problem;
  const auto url = eventbus::cli::parse_url(input.substr(0, newline), problem);
  if (!url && problem.empty()) __builtin_trap();  // a refusal always says why
  if (url && (url->host.empty() || url->path.empty() || url->path[0] != '/')) __builtin_trap();
  if (newline == std::string_view::npos) return 0;
  problem.clear();
  const auto reply = eventbus::cli::parse_http_reply(input.substr(newline + 1), problem);
  if (!reply) {
    if (problem.empty()) __builtin_trap();
    return 0;
  }
  const auto page = nlohmann::json::parse(reply->body, nullptr, false);
  if (page.is_discarded()) return 0;
  const auto table = eventbus::cli::handlers_table(page);
  if (table.empty()) __builtin_trap();  // the header line at least
  return 0;
}
