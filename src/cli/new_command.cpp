// `eventbus new event|handler`: scaffolding for a user's project. Writes a typed event struct, or a
// handler with its subscription and a doctest test; never overwrites a file without --force.

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "cli/printable.hpp"
#include "cli/scaffold.hpp"
#include "eventbus/topic.hpp"

namespace eventbus::cli {
namespace {

constexpr std::string_view new_usage = R"(usage: eventbus new event TYPE [--aggregate TYPE] [--field NAME:TYPE ...] [--dir DIR] [--force]
       eventbus new handler NAME --event TYPE [--dir DIR] [--force]

event    writes DIR/<type with '_' for '.'>.hpp: a typed event struct with its event type,
         aggregate type, schema version, fields, to_json and from_json
handler  writes DIR/NAME.hpp (the handler), DIR/NAME.cpp (its registration: subscribe_all(bus)
         subscribes it on a dispatcher or a worker) and DIR/NAME_test.cpp (a doctest test run
         through eventbus::testing::run_handler); the event's header must be in DIR already

  --aggregate TYPE    the aggregate type (default: the event type's first segment)
  --field NAME:TYPE   a payload field, repeatable; TYPE: string, int, double, bool, strings, json
  --dir DIR           where to write (default: the current directory; created if missing)
  --force             overwrite files that exist

  eventbus new event order.shipped --aggregate order --field carrier:string --field weight_kg:double --dir src
  eventbus new handler notify_customer --event order.shipped --dir src
)";

int usage_error(const std::string& what) {
  std::fprintf(stderr, "eventbus new: %s\n", printable(what).c_str());
  return exit_usage;
}

// Writes every file, or none when one exists already (without --force) or the directory fails.
int write_all(const std::filesystem::path& dir, const std::vector<std::pair<std::string, std::string>>& files, bool force) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec || !std::filesystem::is_directory(dir)) {
    std::fprintf(stderr, "eventbus new: cannot use directory '%s': %s\n", printable(dir.string()).c_str(),
                 ec ? ec.message().c_str() : "not a directory");
    return exit_failure;
  }
  if (!force)
    for (const auto& [name, text] : files)
      if (std::filesystem::exists(dir / name)) {
        std::fprintf(stderr, "eventbus new: %s exists already; nothing written (--force overwrites)\n",
                     printable((dir / name).string()).c_str());
        return exit_failure;
      }
  for (const auto& [name, text] : files) {
    std::ofstream out(dir / name, std::ios::binary | std::ios::trunc);
    out << text;
    out.close();
    if (!out) {
      std::fprintf(stderr, "eventbus new: cannot write %s\n", printable((dir / name).string()).c_str());
      return exit_failure;
    }
    std::printf("wrote %s\n", (dir / name).string().c_str());
  }
  return exit_ok;
}

int new_event(const std::string& type, std::span<const std::string_view> args) {
  std::string aggregate, dir = ".";
  std::vector<std::string> fields;
  std::vector<std::string_view> rest(args.begin(), args.end());
  const bool force = take_switch(rest, "--force");
  arg_parser parser("new event", new_usage);
  parser.add_string("--aggregate", aggregate);
  parser.add_list("--field", fields);
  parser.add_string("--dir", dir);
  if (const auto exit_code = parser.parse(rest)) return *exit_code;

  const auto name = struct_name_of(type);
  if (!name) return usage_error(name.error().to_string());
  event_spec spec{.event_type = type, .aggregate_type = aggregate.empty() ? type.substr(0, type.find('.')) : aggregate};
  // The product's own rule: the event's topic must be a valid name (the aggregate type is part of it).
  if (auto topic = topic_for(spec.aggregate_type, spec.event_type); !topic)
    return usage_error("--aggregate: " + topic.error().to_string());
  for (const auto& text : fields) {
    auto field = parse_field(text);
    if (!field) return usage_error(field.error().to_string());
    for (const auto& seen : spec.fields)
      if (seen.name == field.value().name) return usage_error("--field: '" + seen.name + "' is given twice");
    spec.fields.push_back(std::move(field).value());
  }
  return write_all(dir, {{name.value() + ".hpp", event_header(spec)}}, force);
}

int new_handler(const std::string& handler, std::span<const std::string_view> args) {
  std::string event_type, dir = ".";
  std::vector<std::string_view> rest(args.begin(), args.end());
  const bool force = take_switch(rest, "--force");
  arg_parser parser("new handler", new_usage);
  parser.add_string("--event", event_type);
  parser.add_string("--dir", dir);
  if (const auto exit_code = parser.parse(rest)) return *exit_code;

  if (auto ok = check_identifier(handler, "handler name"); !ok) return usage_error(ok.error().to_string());
  if (event_type.empty()) return usage_error("--event TYPE is required: the event the handler takes");
  const auto event_struct = struct_name_of(event_type);
  if (!event_struct) return usage_error(event_struct.error().to_string());
  if (handler == event_struct.value()) return usage_error("the handler needs a name of its own, not the event's ('" + handler + "')");
  if (!std::filesystem::exists(std::filesystem::path(dir) / (event_struct.value() + ".hpp"))) {
    std::fprintf(stderr, "eventbus new: %s.hpp is not in '%s': run `eventbus new event %s --dir %s` first\n",
                 event_struct.value().c_str(), printable(dir).c_str(), event_type.c_str(), printable(dir).c_str());
    return exit_failure;
  }
  const int written = write_all(dir, {{handler + ".hpp", handler_header(handler, event_type)},
                                      {handler + ".cpp", handler_registration(handler, event_type)},
                                      {handler + "_test.cpp", handler_test(handler, event_type)}},
                                force);
  if (written == exit_ok)
    // enable_testing() belongs in the top-level CMakeLists.txt: without it add_test registers
    // nothing and ctest reports "No tests were found".
    std::printf("\nbuild and run its test from your CMakeLists.txt (find_package(eventbus), find_package(doctest)):\n"
                "  enable_testing()  # once, in the top-level CMakeLists.txt\n"
                "  add_executable(%s_test %s/%s_test.cpp %s/%s.cpp)\n"
                "  target_link_libraries(%s_test PRIVATE eventbus::core doctest::doctest)\n"
                "  add_test(NAME %s_test COMMAND %s_test)\n"
                "and add %s/%s.cpp to your program's sources; eventbus::subscribe_all(bus) subscribes it\n",
                handler.c_str(), dir.c_str(), handler.c_str(), dir.c_str(), handler.c_str(), handler.c_str(),
                handler.c_str(), handler.c_str(), dir.c_str(), handler.c_str());
  return written;
}

}  // namespace

int run_new(std::span<const std::string_view> args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::fwrite(new_usage.data(), 1, new_usage.size(), args.empty() ? stderr : stdout);
    return args.empty() ? exit_usage : exit_ok;
  }
  if (args[0] != "event" && args[0] != "handler") {
    (void)usage_error("unknown kind '" + std::string(args[0]) + "' (event or handler)");
    std::fprintf(stderr, "\n%s", new_usage.data());
    return exit_usage;
  }
  if (args.size() < 2 || args[1].starts_with("--")) {
    (void)usage_error("'new " + std::string(args[0]) + "' needs a name");
    std::fprintf(stderr, "\n%s", new_usage.data());
    return exit_usage;
  }
  const std::string name(args[1]);
  return args[0] == "event" ? new_event(name, args.subspan(2)) : new_handler(name, args.subspan(2));
}

}  // namespace eventbus::cli
