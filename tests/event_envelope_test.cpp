// Building envelopes: defaults, validation of every field, encoding, timestamps.

#include <doctest/doctest.h>

#include <set>

#include "eventbus/event.hpp"
#include "test_support.hpp"

using namespace eventbus;
using namespace std::chrono_literals;

namespace {

// The error a make_event call throws, or nullopt when it does not throw.
std::optional<error> build_error(event_fields fields) {
  try {
    (void)make_event(std::move(fields));
  } catch (const exception& e) {
    return e.error();
  }
  return std::nullopt;
}

event_fields valid_fields() {
  return {.event_type = "order.created", .aggregate_type = "order", .aggregate_id = "o-1"};
}

}  // namespace

TEST_CASE("make_event fills event_id, timestamp, version and payload") {
  const auto before = now_ms();
  const auto ev = make_event(valid_fields());
  const auto after = now_ms();

  CHECK(ev.event_id().size() == 36);
  CHECK(ev.event_id()[14] == '4');  // UUID version 4
  CHECK(std::string("89ab").find(ev.event_id()[19]) != std::string::npos);  // RFC 4122 variant
  CHECK(ev.timestamp() >= before);
  CHECK(ev.timestamp() <= after);
  CHECK(ev.version() == 1);
  CHECK(ev.payload() == nlohmann::json::object());
  CHECK_FALSE(ev.correlation_id().has_value());
  CHECK(ev.metadata().empty());
  CHECK(ev.extensions() == nlohmann::json::object());
}

TEST_CASE("generated event ids are unique") {
  std::set<std::string> ids;
  for (int i = 0; i < 20000; ++i) ids.insert(make_event(valid_fields()).event_id());
  CHECK(ids.size() == 20000);
}

TEST_CASE("given fields are kept as given") {
  const time_point when{std::chrono::sys_days{std::chrono::year{2025} / 12 / 4} + 10h + 30min + 45ms};
  const auto ev = make_event({.event_type = "model.version.added",
                              .aggregate_type = "model_catalog",
                              .aggregate_id = "m-1",
                              .payload = {{"version", "v2"}},
                              .event_id = "66000000-e29b-41d4-a716-446655440018",
                              .timestamp = when,
                              .version = 3,
                              .correlation_id = "corr-1",
                              .causation_id = "cause-1",
                              .metadata = {{"tenant", "acme"}}});
  CHECK(ev.event_id() == "66000000-e29b-41d4-a716-446655440018");
  CHECK(ev.timestamp() == when);
  CHECK(ev.version() == 3);
  CHECK(ev.correlation_id() == "corr-1");
  CHECK(ev.causation_id() == "cause-1");
  CHECK(ev.metadata().at("tenant") == "acme");
  CHECK(encode_event(ev) ==
        R"({"event_id":"66000000-e29b-41d4-a716-446655440018","event_type":"model.version.added",)"
        R"("aggregate_id":"m-1","aggregate_type":"model_catalog","payload":{"version":"v2"},)"
        R"("timestamp":"2025-12-04T10:30:00.045Z","version":3,"correlation_id":"corr-1",)"
        R"("causation_id":"cause-1","metadata":{"tenant":"acme"}})");
}

TEST_CASE("make_event rejects every broken field, naming it") {
  struct bad_case {
    const char* what;
    event_fields fields;
    const char* field;
  };
  auto with = [](auto change) {
    auto f = valid_fields();
    change(f);
    return f;
  };
  const bad_case cases[] = {
      {"empty event_type", with([](auto& f) { f.event_type = ""; }), "event_type"},
      {"undotted event_type", with([](auto& f) { f.event_type = "created"; }), "event_type"},
      {"upper case event_type", with([](auto& f) { f.event_type = "Order.Created"; }), "event_type"},
      {"empty segment", with([](auto& f) { f.event_type = "order..created"; }), "event_type"},
      {"trailing dot", with([](auto& f) { f.event_type = "order.created."; }), "event_type"},
      {"space in event_type", with([](auto& f) { f.event_type = "order created"; }), "event_type"},
      {"empty aggregate_id", with([](auto& f) { f.aggregate_id = ""; }), "aggregate_id"},
      {"empty aggregate_type", with([](auto& f) { f.aggregate_type = ""; }), "aggregate_type"},
      {"event_id not a UUID", with([](auto& f) { f.event_id = "42"; }), "event_id"},
      {"version 0", with([](auto& f) { f.version = 0; }), "version"},
      {"negative version", with([](auto& f) { f.version = -3; }), "version"},
      {"array payload", with([](auto& f) { f.payload = nlohmann::json::array({1, 2}); }), "payload"},
      {"null payload", with([](auto& f) { f.payload = nullptr; }), "payload"},
      {"aggregate_id not UTF-8", with([](auto& f) { f.aggregate_id = "o-\xff"; }), "aggregate_id"},
      {"payload not UTF-8", with([](auto& f) { f.payload = {{"name", "\xc3\x28"}}; }), "payload"},
      {"metadata not UTF-8", with([](auto& f) { f.metadata = {{"tenant", "\xed\xa0\x80"}}; }), "metadata.tenant"},
      {"correlation_id not UTF-8", with([](auto& f) { f.correlation_id = "\xf5\x80\x80\x80"; }), "correlation_id"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.what);
    const auto err = build_error(c.fields);
    REQUIRE(err.has_value());
    CHECK(err->code() == errc::invalid_event);
    CHECK(err->field() == c.field);
    CHECK_FALSE(err->message().empty());
  }
}

TEST_CASE("text is escaped so the wire form is valid JSON, and UTF-8 passes through") {
  const auto ev = make_event({.event_type = "order.created",
                              .aggregate_type = "order",
                              .aggregate_id = "quote\" back\\slash \n tab\t ctrl\x01 é 日本 😀",
                              .payload = {{"note", "line\nbreak"}}});
  const auto parsed = nlohmann::json::parse(encode_event(ev));
  CHECK(parsed["aggregate_id"] == ev.aggregate_id());
  CHECK(parsed["payload"]["note"] == "line\nbreak");
}

TEST_CASE("encode then decode gives the same event and the same bytes") {
  const auto ev = make_event({.event_type = "order.created",
                              .aggregate_type = "order",
                              .aggregate_id = "o-77",
                              .payload = {{"items", {{{"sku", "A1"}, {"qty", 2}}}}, {"total", 12.5}, {"gift", false}},
                              .correlation_id = "c",
                              .metadata = {{"source", "checkout"}, {"user_id", "u-1"}}});
  auto back = decode_event(encode_event(ev));
  REQUIRE(back.ok());
  CHECK(back.value() == ev);
  CHECK(encode_event(back.value()) == encode_event(ev));
  CHECK(to_json(ev)["payload"]["total"] == 12.5);
}

TEST_CASE("copies share one immutable state") {
  const auto a = make_event(valid_fields());
  const auto b = a;  // NOLINT(performance-unnecessary-copy-initialization)
  CHECK(a == b);
  CHECK(&a.payload() == &b.payload());
  CHECK_FALSE(a == make_event(valid_fields()));  // another id
}

TEST_CASE("timestamps format as RFC 3339 UTC with milliseconds") {
  using namespace std::chrono;
  CHECK(format_timestamp(eventbus::time_point{}) == "1970-01-01T00:00:00.000Z");
  const eventbus::time_point t{sys_days{year{2024} / 2 / 29} + 23h + 59min + 59s + 999ms};
  CHECK(format_timestamp(t) == "2024-02-29T23:59:59.999Z");
  CHECK(parse_timestamp(format_timestamp(t)).value() == t);
}

TEST_CASE("timestamps parse with or without fraction, and with offsets") {
  using namespace std::chrono;
  const eventbus::time_point base{sys_days{year{2025} / 12 / 4} + 10h + 30min};
  CHECK(parse_timestamp("2025-12-04T10:30:00Z").value() == base);
  CHECK(parse_timestamp("2025-12-04T10:30:00.045Z").value() == base + 45ms);
  CHECK(parse_timestamp("2025-12-04T10:30:00.5Z").value() == base + 500ms);
  CHECK(parse_timestamp("2025-12-04T10:30:00.123456789Z").value() == base + 123ms);  // truncated
  CHECK(parse_timestamp("2025-12-04t10:30:00z").value() == base);
  CHECK(parse_timestamp("2025-12-04T12:30:00+02:00").value() == base);
  CHECK(parse_timestamp("2025-12-04T05:00:00-05:30").value() == base);
}

TEST_CASE("bad timestamps are errors that say why") {
  for (const char* text : {"", "2025-12-04", "2025-12-04T10:30Z", "2025-12-04 10:30:00Z", "2025-13-04T10:30:00Z",
                           "2025-02-30T10:30:00Z", "2025-12-04T24:00:00Z", "2025-12-04T10:60:00Z",
                           "2025-12-04T10:30:00", "2025-12-04T10:30:00.Z", "2025-12-04T10:30:00+0200",
                           "2025-12-04T10:30:00Zjunk", "20251204T103000Z", "yesterday"}) {
    CAPTURE(text);
    const auto parsed = parse_timestamp(text);
    REQUIRE_FALSE(parsed.ok());
    CHECK(parsed.error().message().find("RFC 3339") != std::string::npos);
  }
}
