// decode_event's two paths (simdjson for well-formed envelopes, nlohmann for everything else and
// for naming problems) must give the same event or the same error. The differential fuzz target
// (tests/fuzz/fuzz_decode_event.cpp) explores this at random; these are the corners where the two
// parsers are known to differ.

#include <doctest/doctest.h>

#include <string>

#include "envelope/event_data.hpp"
#include "eventbus/event.hpp"

using namespace eventbus;

namespace {

const std::string head = R"({"event_id":"66000000-e29b-41d4-a716-446655440018","event_type":"model.registered",)"
                         R"("aggregate_id":"a-1","aggregate_type":"model_catalog",)";
const std::string tail = R"("timestamp":"2025-12-04T10:30:00Z","version":1})";

std::string with_payload(const std::string& payload) { return head + R"("payload":)" + payload + "," + tail; }

void same_outcome(const std::string& bytes) {
  CAPTURE(bytes);
  const auto fast = decode_event(bytes);
  const auto reference = detail::decode_event_nlohmann(bytes);
  REQUIRE(fast.ok() == reference.ok());
  if (!fast) {
    CHECK(fast.error().code() == reference.error().code());
    CHECK(fast.error().field() == reference.error().field());
    CHECK(fast.error().message() == reference.error().message());
    return;
  }
  CHECK(fast.value() == reference.value());
  CHECK(encode_event(fast.value()) == encode_event(reference.value()));
  CHECK(fast.value().payload().dump() == reference.value().payload().dump());
}

}  // namespace

TEST_CASE("numbers decode as nlohmann reads them: unsigned, signed, double, and the ones it refuses") {
  for (const char* n : {"0", "-0", "1", "-1", "9223372036854775807", "9223372036854775808", "-9223372036854775808",
                        "18446744073709551615", "18446744073709551616", "-9223372036854775809", "1.5", "1e3", "1E-3",
                        "-0.0", "1e308", "1e309", "1e400", "-1e400", "0.1e-400", "123456789012345678901234567890"}) {
    same_outcome(with_payload(std::string(R"({"n":)") + n + "}"));
    same_outcome(with_payload(std::string(R"({"a":[)") + n + "," + n + "]}"));
  }
  const auto big = decode_event(with_payload(R"({"n":18446744073709551615,"m":-5,"k":7})"));
  REQUIRE(big.ok());
  CHECK(big.value().payload()["n"].is_number_unsigned());
  CHECK(big.value().payload()["m"].is_number_integer());
  CHECK(big.value().payload()["k"].is_number_unsigned());
}

TEST_CASE("duplicate keys keep the last value, in the envelope, the payload and the metadata") {
  same_outcome(with_payload(R"({"k":1,"k":2})"));
  same_outcome(head + R"("payload":{},"payload":{"x":1},)" + tail);
  same_outcome(head + R"("payload":{},"event_type":"order.created",)" + tail);
  same_outcome(head + R"("payload":{},"metadata":{"a":"1","a":"2"},)" + tail);
  same_outcome(head + R"("payload":{},"x":1,"x":[2],)" + tail);
  same_outcome(head + R"("payload":{},"version":2,)" + tail);  // version twice
}

TEST_CASE("strings: escapes, surrogates, UTF-8, control characters") {
  for (const char* s : {R"("plain")", R"("tab\there")", R"("\u00e9\u4e2d")", R"("\ud83d\ude00")", R"("\ud800")",
                        R"("\udc00x")", R"("\uD83D\uDE00")", "\"caf\xc3\xa9\"", "\"bad \xff byte\"",
                        "\"ctl \x01 char\"", R"("\\ud800 is text")", R"("\/")"}) {
    same_outcome(with_payload(std::string(R"({"s":)") + s + "}"));
    same_outcome(head + R"("payload":{},"correlation_id":)" + s + "," + tail);
    same_outcome(head + R"("payload":{},"metadata":{"k":)" + s + "}," + tail);
  }
}

TEST_CASE("field types and shapes the fast path hands over all come out as the nlohmann path's errors") {
  for (const std::string payload : {"[]", "null", "1", "\"x\"", "{}", R"({"a":{"b":{"c":[1,{"d":null}]}}})"})
    same_outcome(with_payload(payload));
  for (const std::string version : {"1", "1.0", "0", "-1", "2147483648", "\"1\"", "null", "true"})
    same_outcome(head + R"("payload":{},"timestamp":"2025-12-04T10:30:00Z","version":)" + version + "}");
  for (const std::string ts : {R"("2025-12-04T10:30:00Z")", R"("2025-12-04T10:30:00.123+02:00")", R"("yesterday")",
                               "1733300000", "null"})
    same_outcome(head + R"("payload":{},"version":1,"timestamp":)" + ts + "}");
  same_outcome(head + R"("payload":{},"metadata":{"k":1},)" + tail);
  same_outcome(head + R"("payload":{},"metadata":null,"correlation_id":null,"causation_id":null,)" + tail);
  same_outcome(head + R"("payload":{},"causation_id":5,)" + tail);
  same_outcome(R"({"event_type":"a.b"})");
  same_outcome("[1,2]");
  same_outcome("{\"a\":1} trailing");
  same_outcome("");
  same_outcome(std::string(std::string_view()));  // no data pointer at all (a tombstone's value)
  CHECK_FALSE(decode_event(std::string_view()).ok());
  same_outcome(with_payload("{}") + " ");
}

TEST_CASE("nesting around the depth limit: both paths accept and refuse the same documents") {
  for (std::size_t depth = max_payload_depth - 3; depth <= max_payload_depth + 3; ++depth) {
    std::string payload;
    for (std::size_t i = 1; i < depth; ++i) payload += R"({"a":)";
    payload += "{}";
    for (std::size_t i = 1; i < depth; ++i) payload += "}";
    same_outcome(with_payload(payload));
    std::string arrays = "{\"a\":" + std::string(depth - 1, '[') + std::string(depth - 1, ']') + "}";
    same_outcome(with_payload(arrays));
  }
}

TEST_CASE("records over the fast path's size cap decode the same") {
  same_outcome(with_payload(R"({"blob":")" + std::string(100'000, 'x') + R"("})"));
}
