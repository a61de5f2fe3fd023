// Two registered handlers with one name: subscribe_all refuses at start, naming both places.

#include <doctest/doctest.h>

#include <string>

#include "eventbus/dispatcher.hpp"
#include "eventbus/handler_catalog.hpp"

using namespace eventbus;

namespace {
const registered_handler first{"notify", "order.paid", [](const event&) {}};
const registered_handler second{"notify", "order.shipped", [](const event&) {}};
}  // namespace

TEST_CASE("a handler name registered twice is an error at start naming both registrations") {
  dispatcher bus({.mode = dispatch_mode::caller_thread});
  try {
    (void)subscribe_all(bus);
    FAIL("a duplicate name was accepted");
  } catch (const exception& e) {
    const std::string what = e.what();
    CHECK(e.error().field() == "handler_name");
    CHECK(what.find("'notify'") != std::string::npos);
    CHECK(what.find("handler_catalog_duplicate_test.cpp:13") != std::string::npos);
    CHECK(what.find("handler_catalog_duplicate_test.cpp:14") != std::string::npos);
  }
  CHECK(bus.handlers().empty());
}
