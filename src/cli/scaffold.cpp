// The text `eventbus new` writes (scaffold.hpp).

#include "cli/scaffold.hpp"

#include <algorithm>
#include <array>
#include <map>
#include <string_view>

#include "envelope/event_data.hpp"

namespace eventbus::cli {
namespace {

// C++ type and default initializer of each field type.
const std::map<std::string, std::pair<std::string, std::string>, std::less<>>& field_types() {
  static const std::map<std::string, std::pair<std::string, std::string>, std::less<>> types{
      {"string", {"std::string", ""}},
      {"int", {"std::int64_t", " = 0"}},
      {"double", {"double", " = 0"}},
      {"bool", {"bool", " = false"}},
      {"strings", {"std::vector<std::string>", ""}},
      {"json", {"nlohmann::json", " = nlohmann::json::object()"}},
  };
  return types;
}

constexpr std::array keywords{
    "alignas", "alignof", "and", "and_eq", "asm", "auto", "bitand", "bitor", "bool", "break", "case", "catch",
    "char", "char8_t", "char16_t", "char32_t", "class", "co_await", "co_return", "co_yield", "compl", "concept",
    "const", "consteval", "constexpr", "constinit", "const_cast", "continue", "decltype", "default", "delete",
    "do", "double", "dynamic_cast", "else", "enum", "explicit", "export", "extern", "false", "float", "for",
    "friend", "goto", "if", "inline", "int", "long", "mutable", "namespace", "new", "noexcept", "not", "not_eq",
    "nullptr", "operator", "or", "or_eq", "private", "protected", "public", "register", "reinterpret_cast",
    "requires", "return", "short", "signed", "sizeof", "static", "static_assert", "static_cast", "struct",
    "switch", "template", "this", "thread_local", "throw", "true", "try", "typedef", "typeid", "typename",
    "union", "unsigned", "using", "virtual", "void", "volatile", "wchar_t", "while", "xor", "xor_eq",
    // names the generated code uses itself
    "event_type", "aggregate_type", "version", "j", "value", "ev", "envelope"};

std::string type_names() {
  std::string out;
  for (const auto& [name, unused] : field_types()) out += (out.empty() ? "" : ", ") + name;
  return out;
}

// "a" or "an" before `word`, by its first sound rather than its first letter: "an order.shipped",
// "a user.created" (a 'u' read "you": u, one consonant, a vowel), "a euro...", "an hour...". The
// generated test names read as English; a rare miss only costs grammar.
std::string article_for(std::string_view word) {
  const auto vowel = [](char c) { return c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u'; };
  const auto starts = [&](std::string_view prefix) { return word.starts_with(prefix); };
  if (starts("hour") || starts("honest") || starts("honor") || starts("heir")) return "an";
  if (word.empty() || !vowel(word[0]) || starts("eu") || starts("one")) return "a";
  if (word[0] == 'u' && word.size() > 2 && !vowel(word[1]) && vowel(word[2])) return "a";
  return "an";
}

std::string replace_all(std::string text, const std::string& from, const std::string& to) {
  for (std::size_t at = 0; (at = text.find(from, at)) != std::string::npos; at += to.size()) text.replace(at, from.size(), to);
  return text;
}

}  // namespace

result<void> check_identifier(const std::string& name, const std::string& what) {
  const bool shaped = !name.empty() && name.size() <= 64 && (std::islower(static_cast<unsigned char>(name[0])) || name[0] == '_') &&
                      std::all_of(name.begin(), name.end(), [](char c) {
                        return std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) || c == '_';
                      });
  if (!shaped)
    return error(errc::invalid_argument, "'" + name + "' is not a lower-case C++ name ([a-z_][a-z0-9_]*, at most 64 characters)", what);
  if (name.starts_with("__") || name.find("__") != std::string::npos)
    return error(errc::invalid_argument, "'" + name + "' has a double underscore (reserved in C++)", what);
  if (std::find(keywords.begin(), keywords.end(), name) != keywords.end())
    return error(errc::invalid_argument, "'" + name + "' is a C++ keyword or a name the generated code uses", what);
  return {};
}

result<event_field> parse_field(const std::string& text) {
  const auto colon = text.find(':');
  if (colon == std::string::npos)
    return error(errc::invalid_argument, "'" + text + "' is not NAME:TYPE (types: " + type_names() + ")", "--field");
  event_field field{text.substr(0, colon), text.substr(colon + 1)};
  if (auto ok = check_identifier(field.name, "--field"); !ok) return ok.error();
  if (!field_types().contains(field.type))
    return error(errc::invalid_argument, "field '" + field.name + "' has unknown type '" + field.type + "' (types: " + type_names() + ")",
                 "--field");
  return field;
}

result<std::string> struct_name_of(const std::string& event_type) {
  if (auto problem = detail::event_type_problem(event_type)) return error(errc::invalid_argument, *problem, "event type");
  std::string name = event_type;
  std::replace(name.begin(), name.end(), '.', '_');
  if (auto ok = check_identifier(name, "event type"); !ok)
    return error(errc::invalid_argument, "'" + event_type + "' does not make a C++ struct name ('" + name + "'): " + ok.error().message(),
                 "event type");
  return name;
}

std::string event_header(const event_spec& spec) {
  const std::string name = struct_name_of(spec.event_type).value();
  std::string members, to_json, from_json;
  for (const auto& f : spec.fields) {
    const auto& [cpp_type, init] = field_types().at(f.type);
    members += "  " + cpp_type + " " + f.name + init + ";\n";
    to_json += "  j[\"" + f.name + "\"] = value." + f.name + ";\n";
    from_json += "  j.at(\"" + f.name + "\").get_to(value." + f.name + ");\n";
  }
  if (spec.fields.empty()) {
    members = "  // Fields of the payload go here (and in to_json / from_json below).\n";
    to_json = "  (void)value;\n";
    from_json = "  (void)j;\n  (void)value;\n";
  }
  std::string text = R"(#pragma once
// @TYPE@: a typed event (generated by `eventbus new event`; edit freely).
//
//   auto ev = eventbus::make_event("<aggregate id>", @NAME@{...});  // the envelope
//   auto sub = bus.subscribe<@NAME@>("handler_name", [](const @NAME@& e) { ... });
//
// from_json names a missing or mistyped field in the error a handler reports (payload_mismatch).

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <eventbus/typed_event.hpp>

struct @NAME@ {
  static constexpr std::string_view event_type = "@TYPE@";
  static constexpr std::string_view aggregate_type = "@AGGREGATE@";
  static constexpr int version = 1;  // raise it when the payload changes incompatibly

@MEMBERS@};

inline void to_json(nlohmann::json& j, const @NAME@& value) {
  j = nlohmann::json::object();
@TO_JSON@}

inline void from_json(const nlohmann::json& j, @NAME@& value) {
@FROM_JSON@}
)";
  text = replace_all(text, "@MEMBERS@", members);
  text = replace_all(text, "@TO_JSON@", to_json);
  text = replace_all(text, "@FROM_JSON@", from_json);
  text = replace_all(text, "@NAME@", name);
  text = replace_all(text, "@TYPE@", spec.event_type);
  return replace_all(text, "@AGGREGATE@", spec.aggregate_type);
}

std::string handler_header(const std::string& handler, const std::string& event_type) {
  std::string text = R"(#pragma once
// @HANDLER@: what to do on @TYPE@ (generated by `eventbus new handler`; fill in the body).
// @HANDLER@.cpp registers it: eventbus::subscribe_all(bus_or_worker) subscribes it.

#include <eventbus/event.hpp>

#include "@EVENT@.hpp"

/// Runs once per @TYPE@ event (more than once when a delivery is repeated: make it idempotent,
/// e.g. by remembering envelope.event_id()). Throw eventbus::permanent_error for input that can
/// never succeed (a worker dead-letters it at once); any other exception is retried with backoff.
inline void @HANDLER@(const @EVENT@& event, const eventbus::event& envelope) {
  (void)event;
  (void)envelope;
}
)";
  text = replace_all(text, "@HANDLER@", handler);
  text = replace_all(text, "@EVENT@", struct_name_of(event_type).value());
  return replace_all(text, "@TYPE@", event_type);
}

std::string handler_registration(const std::string& handler, const std::string& event_type) {
  std::string text = R"(// Registers @HANDLER@ (generated by `eventbus new handler`): link this file into the program
// (not through a static library, whose unreferenced files the linker drops) and call
// eventbus::subscribe_all(bus_or_worker) once at start.

#include <eventbus/handler_catalog.hpp>

#include "@HANDLER@.hpp"

namespace {
const auto registration = eventbus::registered_handler::of<@EVENT@>("@HANDLER@", &@HANDLER@);
}  // namespace
)";
  text = replace_all(text, "@HANDLER@", handler);
  return replace_all(text, "@EVENT@", struct_name_of(event_type).value());
}

std::string handler_test(const std::string& handler, const std::string& event_type) {
  std::string text = R"(// Tests of @HANDLER@ (generated by `eventbus new handler`): the handler runs as a worker runs
// it (retries and middleware, no Kafka, no waiting) through eventbus::testing::run_handler. A
// program of its own by default; where a doctest main exists already, compile it with
// EVENTBUS_TEST_HAS_MAIN defined. Link @HANDLER@.cpp with it.

#ifndef EVENTBUS_TEST_HAS_MAIN
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#endif
#include <doctest/doctest.h>

#include <eventbus/dispatcher.hpp>
#include <eventbus/handler_catalog.hpp>
#include <eventbus/testing.hpp>

#include "@HANDLER@.hpp"

TEST_CASE("@HANDLER@ handles @TYPE@") {
  const auto report = eventbus::testing::run_handler(eventbus::make_typed_handler<@EVENT@>(&@HANDLER@),
                                                     eventbus::make_event("@AGGREGATE_ID@", @EVENT@{}));
  CHECK(report.succeeded());
  CHECK(report.attempts == 1);
  // Add what the handler must have done: rows written, calls made, events published.
}

TEST_CASE("@HANDLER@ is dead-lettered on @A_TYPE@ payload that misses a field") {
  nlohmann::json missing = nlohmann::json(@EVENT@{});
  const bool has_fields = !missing.empty();
  if (has_fields) missing.erase(missing.begin());
  const auto ev = eventbus::make_event({.event_type = std::string(@EVENT@::event_type),
                                        .aggregate_type = std::string(@EVENT@::aggregate_type),
                                        .aggregate_id = "@AGGREGATE_ID@",
                                        .payload = missing});
  const auto report = eventbus::testing::run_handler(eventbus::make_typed_handler<@EVENT@>(&@HANDLER@), ev);
  CHECK(report.succeeded() == !has_fields);  // the payload does not decode
  if (has_fields) CHECK(report.result == eventbus::attempt_result::dead_letter);
}

TEST_CASE("@HANDLER@ registers itself for @TYPE@") {
  eventbus::dispatcher bus({.mode = eventbus::dispatch_mode::caller_thread});
  const auto subscriptions = eventbus::subscribe_all(bus, @EVENT@::event_type);
  const auto handlers = bus.handlers();
  REQUIRE(handlers.size() == 1);
  CHECK(handlers[0].name == "@HANDLER@");
}
)";
  text = replace_all(text, "@HANDLER@", handler);
  text = replace_all(text, "@EVENT@", struct_name_of(event_type).value());
  text = replace_all(text, "@AGGREGATE_ID@", "test-1");
  text = replace_all(text, "@A_TYPE@", article_for(event_type) + " " + event_type);
  return replace_all(text, "@TYPE@", event_type);
}

}  // namespace eventbus::cli
