// Decoding wire records: the seed example, forward compatibility, and every kind of bad input.

#include <doctest/doctest.h>

#include <random>

#include "eventbus/event.hpp"

using namespace eventbus;
using json = nlohmann::json;

namespace {

constexpr const char* seed_example =
    R"({"event_id":"66000000-e29b-41d4-a716-446655440018","event_type":"model.registered",)"
    R"("aggregate_id":"770e8400-e29b-41d4-a716-446655440003","aggregate_type":"model_catalog",)"
    R"("payload":{"model_id":"sentence-transformers/all-MiniLM-L6-v2","task_type":"txt2embed","version":"v2.2.2"},)"
    R"("timestamp":"2025-12-04T10:30:00Z","version":1})";

json valid() { return json::parse(seed_example); }

// Decodes `value` and returns the error it must produce.
error decode_error(const json& value) {
  auto decoded = decode_event(value.dump());
  REQUIRE_FALSE(decoded.ok());
  return decoded.error();
}

}  // namespace

TEST_CASE("golden: the seed example decodes and re-encodes to the same JSON value") {
  auto decoded = decode_event(seed_example);
  REQUIRE(decoded.ok());
  const event& ev = decoded.value();
  CHECK(ev.event_id() == "66000000-e29b-41d4-a716-446655440018");
  CHECK(ev.event_type() == "model.registered");
  CHECK(ev.aggregate_id() == "770e8400-e29b-41d4-a716-446655440003");
  CHECK(ev.aggregate_type() == "model_catalog");
  CHECK(ev.payload()["task_type"] == "txt2embed");
  CHECK(ev.version() == 1);
  CHECK(format_timestamp(ev.timestamp()) == "2025-12-04T10:30:00.000Z");

  json expected = valid();
  expected["timestamp"] = "2025-12-04T10:30:00.000Z";  // the one normalisation: milliseconds added
  CHECK(json::parse(encode_event(ev)) == expected);
  // And from then on the bytes are stable.
  CHECK(encode_event(decode_event(encode_event(ev)).value()) == encode_event(ev));
}

TEST_CASE("unknown top-level fields are kept and re-encoded unchanged") {
  json in = valid();
  in["schema_url"] = "https://example.com/s/1";
  in["trace"] = {{"span", 7}, {"sampled", true}, {"tags", {"a", "b"}}};
  in["weight"] = 0.25;
  auto decoded = decode_event(in.dump());
  REQUIRE(decoded.ok());
  CHECK(decoded.value().extensions().size() == 3);
  const json out = json::parse(encode_event(decoded.value()));
  CHECK(out["schema_url"] == in["schema_url"]);
  CHECK(out["trace"] == in["trace"]);
  CHECK(out["weight"] == in["weight"]);
}

TEST_CASE("optional fields decode, and null means absent") {
  json in = valid();
  in["correlation_id"] = "corr-9";
  in["causation_id"] = nullptr;
  in["metadata"] = {{"tenant", "acme"}, {"source", "registry"}};
  auto ev = decode_event(in.dump()).value();
  CHECK(ev.correlation_id() == "corr-9");
  CHECK_FALSE(ev.causation_id().has_value());
  CHECK(ev.metadata().at("tenant") == "acme");
}

TEST_CASE("bytes that are not JSON are decode_failed, never a crash") {
  for (const std::string_view bytes : {std::string_view(""), std::string_view("{"), std::string_view("not json"),
                                       std::string_view("{\"event_id\":}"), std::string_view("\xff\xfe{}", 4),
                                       std::string_view("{\"a\":1} trailing"),
                                       // found by fuzzing: a number too large for a double made the
                                       // message's second parse throw out_of_range, uncaught
                                       std::string_view("1e9999999999-9"), std::string_view("{\"payload\":{\"x\":1e99999}}")}) {
    CAPTURE(bytes);
    auto decoded = decode_event(bytes);
    REQUIRE_FALSE(decoded.ok());
    CHECK(decoded.error().code() == errc::decode_failed);
    CHECK(decoded.error().message().find("not JSON") != std::string::npos);
  }
}

TEST_CASE("JSON that is not an object is invalid_event") {
  for (const char* bytes : {"[]", "\"event\"", "42", "null", "true"}) {
    CAPTURE(bytes);
    auto decoded = decode_event(std::string_view(bytes));
    REQUIRE_FALSE(decoded.ok());
    CHECK(decoded.error().code() == errc::invalid_event);
    CHECK(decoded.error().message().find("must be a JSON object") != std::string::npos);
  }
}

TEST_CASE("every missing required field is named") {
  for (const char* field :
       {"event_id", "event_type", "aggregate_id", "aggregate_type", "payload", "timestamp", "version"}) {
    CAPTURE(field);
    json in = valid();
    in.erase(field);
    const auto err = decode_error(in);
    CHECK(err.code() == errc::invalid_event);
    CHECK(err.field() == field);
    CHECK(err.message() == "missing required field");
  }
}

TEST_CASE("wrongly typed and broken fields are named with the problem") {
  struct bad_case {
    const char* field;
    json value;
    const char* field_in_error;
    const char* message_part;
  };
  const bad_case cases[] = {
      {"event_id", 42, "event_id", "must be a string, got number"},
      {"event_id", "not-a-uuid", "event_id", "is not a UUID"},
      {"event_type", json::array(), "event_type", "must be a string, got array"},
      {"event_type", "", "event_type", "must not be empty"},
      {"event_type", "OrderCreated", "event_type", "dotted lower case"},
      {"aggregate_id", "", "aggregate_id", "must not be empty"},
      {"aggregate_id", nullptr, "aggregate_id", "must be a string, got null"},
      {"aggregate_type", true, "aggregate_type", "must be a string, got boolean"},
      {"payload", "text", "payload", "must be a JSON object, got string"},
      {"payload", nullptr, "payload", "must be a JSON object, got null"},
      {"timestamp", 1733307000, "timestamp", "must be a string, got number"},
      {"timestamp", "2025-12-04", "timestamp", "RFC 3339"},
      {"timestamp", "04/12/2025 10:30", "timestamp", "RFC 3339"},
      {"version", 0, "version", "must be >= 1"},
      {"version", -1, "version", "must be >= 1"},
      {"version", 1.5, "version", "must be an integer, got a fraction"},
      {"version", "1", "version", "must be an integer, got string"},
      {"version", 4294967296LL, "version", "out of range"},
      {"correlation_id", 7, "correlation_id", "must be a string, got number"},
      {"causation_id", json::object(), "causation_id", "must be a string, got object"},
      {"metadata", "tenant=acme", "metadata", "must be an object of strings"},
      {"metadata", {{"tenant", 1}}, "metadata.tenant", "must be a string, got number"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.field);
    CAPTURE(c.value.dump());
    json in = valid();
    in[c.field] = c.value;
    const auto err = decode_error(in);
    CHECK(err.code() == errc::invalid_event);
    CHECK(err.field() == c.field_in_error);
    CHECK_MESSAGE(err.message().find(c.message_part) != std::string::npos, err.message());
  }
}

TEST_CASE("mutated and truncated records never crash the decoder") {
  const std::string good = seed_example;
  std::mt19937 rng(1234);
  int decoded_ok = 0, rejected = 0;
  for (int i = 0; i < 5000; ++i) {
    std::string bytes = good;
    if (i % 2 == 0) {
      bytes.resize(rng() % bytes.size());
    } else {
      for (int k = 0; k < 3; ++k) bytes[rng() % bytes.size()] = static_cast<char>(rng() % 256);
    }
    auto decoded = decode_event(bytes);
    if (decoded.ok()) {
      ++decoded_ok;
      CHECK(decode_event(encode_event(decoded.value())).ok());
    } else {
      ++rejected;
      CHECK_FALSE(decoded.error().message().empty());
    }
  }
  CHECK(rejected > 0);
  CHECK(decoded_ok + rejected == 5000);
}

namespace {
std::string nested_payload(std::size_t depth) {  // {"payload": {"a":{"a":...}}}, `depth` levels in the payload
  std::string inner;
  for (std::size_t i = 1; i < depth; ++i) inner += R"({"a":)";
  inner += "{}";
  inner.append(depth - 1, '}');
  return inner;
}
std::string envelope_with_payload(const std::string& payload) {
  return R"({"event_id":"6f1c2a9e-3b4d-4e5f-8a7b-9c0d1e2f3a4b","event_type":"order.created","aggregate_id":"o-1",)"
         R"("aggregate_type":"order","timestamp":"2024-01-01T00:00:00.000Z","version":1,"payload":)" +
         payload + "}";
}
}  // namespace

TEST_CASE("nesting deeper than max_payload_depth is refused, never recursed over") {
  // At the limit: decodes, and writes back out.
  const auto at_limit = decode_event(envelope_with_payload(nested_payload(max_payload_depth)));
  REQUIRE(at_limit.ok());
  CHECK(encode_event(at_limit.value()).size() > 0);

  // 300k deep used to decode, then crash whatever wrote it out (a handler, tail, to_json).
  for (const std::size_t depth : {max_payload_depth + 1, std::size_t{300'000}}) {
    CAPTURE(depth);
    const auto deep = decode_event(envelope_with_payload(nested_payload(depth)));
    REQUIRE_FALSE(deep.ok());
    CHECK(deep.error().code() == errc::invalid_event);  // a dead letter with reason "validation"
    CHECK(deep.error().field() == "payload");
  }
  // Deep but broken stays a decode failure, as any other bytes that are not JSON.
  const auto broken = decode_event(std::string(5000, '{'));
  REQUIRE_FALSE(broken.ok());
  CHECK(broken.error().code() == errc::decode_failed);
  // Brackets inside strings are not nesting.
  const auto in_string = decode_event(envelope_with_payload(R"({"text":")" + std::string(1000, '[') + R"("})"));
  CHECK(in_string.ok());

  // make_event and event_from_json refuse the same, without recursing.
  auto deep_value = json::parse(nested_payload(300'000));
  try {
    (void)make_event({.event_type = "order.created", .aggregate_type = "order", .aggregate_id = "o-1",
                      .payload = std::move(deep_value)});
    FAIL("make_event accepted a payload nested 300k deep");
  } catch (const exception& e) {
    CHECK(e.error().field() == "payload");
  }
  const auto envelope = json::parse(envelope_with_payload(nested_payload(300'000)));
  const auto from_json = event_from_json(envelope);
  REQUIRE_FALSE(from_json.ok());
  CHECK(from_json.error().field() == "payload");
}

TEST_CASE("over-long event types are refused") {
  std::string type = "order.";
  type.append(max_event_type_length, 'x');
  const auto decoded = decode_event(R"({"event_id":"6f1c2a9e-3b4d-4e5f-8a7b-9c0d1e2f3a4b","event_type":")" + type +
                                    R"(","aggregate_id":"o-1","aggregate_type":"order","timestamp":"2024-01-01T00:00:00.000Z","version":1,"payload":{}})");
  REQUIRE_FALSE(decoded.ok());
  CHECK(decoded.error().field() == "event_type");
  CHECK(decoded.error().message().size() < 400);  // the message quotes a bounded part of it
}
