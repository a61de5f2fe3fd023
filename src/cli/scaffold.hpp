#pragma once
// What `eventbus new` writes: a typed event struct, and a handler with its subscription and a
// doctest test. Pure text generation: the command checks names and writes the files.

#include <string>
#include <vector>

#include "eventbus/error.hpp"

namespace eventbus::cli {

struct event_field {
  std::string name;  // a C++ identifier
  std::string type;  // string | int | double | bool | strings | json
};

struct event_spec {
  std::string event_type;      // order.shipped
  std::string aggregate_type;  // order
  std::vector<event_field> fields{};
};

/// "carrier:string" as a field. errc::invalid_argument naming the problem.
[[nodiscard]] result<event_field> parse_field(const std::string& text);
/// The C++ struct (and file) name of an event type: order.shipped -> order_shipped.
[[nodiscard]] result<std::string> struct_name_of(const std::string& event_type);
/// errc::invalid_argument unless `name` is a lower-case C++ identifier that is not a keyword.
[[nodiscard]] result<void> check_identifier(const std::string& name, const std::string& what);

/// <struct>.hpp: the struct, its names and schema version, to_json and from_json.
[[nodiscard]] std::string event_header(const event_spec& spec);
/// <handler>.hpp: the handler function.
[[nodiscard]] std::string handler_header(const std::string& handler, const std::string& event_type);
/// <handler>.cpp: its self-registration (eventbus::registered_handler), for subscribe_all.
[[nodiscard]] std::string handler_registration(const std::string& handler, const std::string& event_type);
/// <handler>_test.cpp: a doctest test that runs the handler through eventbus::testing::run_handler
/// and checks that it registered itself.
[[nodiscard]] std::string handler_test(const std::string& handler, const std::string& event_type);

}  // namespace eventbus::cli
