// The default log sink: text lines, or JSON lines a log shipper can parse, escapes included.

#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "support/log.hpp"
#include "eventbus/log.hpp"

using namespace eventbus;

namespace {

// Runs `fn` with stderr redirected to a file; returns what was written.
template <class Fn>
std::string captured_stderr(Fn&& fn) {
  const std::string path = "log_format_test." + std::to_string(getpid());
  std::fflush(stderr);
  const int saved = dup(STDERR_FILENO);
  FILE* file = std::fopen(path.c_str(), "w");
  REQUIRE(file != nullptr);
  dup2(fileno(file), STDERR_FILENO);
  fn();
  std::fflush(stderr);
  dup2(saved, STDERR_FILENO);
  close(saved);
  std::fclose(file);
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  std::remove(path.c_str());
  return text.str();
}

}  // namespace

TEST_CASE("json log format writes one parseable object a line, text format a readable line") {
  set_log_format(log_format::json);
  const auto json_out = captured_stderr([] { detail::log(log_level::warn, "worker: \"quoted\"\nand a newline"); });
  set_log_format(log_format::text);
  REQUIRE(json_out.size() > 1);
  CHECK(json_out.back() == '\n');
  CHECK(json_out.find('\n') == json_out.size() - 1);  // one line, the message's newline escaped
  const auto line = nlohmann::json::parse(json_out);
  CHECK(line["level"] == "warn");
  CHECK(line["logger"] == "eventbus");
  CHECK(line["msg"] == "worker: \"quoted\"\nand a newline");
  CHECK(line["ts"].get<std::string>().size() == 24);  // 2026-11-23T10:00:00.045Z

  const auto text_out = captured_stderr([] { detail::log(log_level::error, "plain"); });
  CHECK(text_out.find(" error eventbus: plain\n") != std::string::npos);

  set_log_level(log_level::error);
  CHECK(captured_stderr([] { detail::log(log_level::warn, "below the threshold"); }).empty());
  set_log_level(log_level::info);
}

TEST_CASE("log levels parse from their names") {
  CHECK(*parse_log_level("debug") == log_level::debug);
  CHECK(*parse_log_level("warning") == log_level::warn);
  const auto unknown = parse_log_level("verbose");
  REQUIRE_FALSE(unknown.has_value());
  CHECK(unknown.error().field() == "level");
  CHECK(unknown.error().message().find("'verbose'") != std::string::npos);
}
