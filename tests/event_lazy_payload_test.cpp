// A decoded event leaves its payload in the record until someone reads it. What must hold: the payload read later is the one the record carried, whichever
// thread reads first and however many at once, and the wire form and equality see it too.

#include <doctest/doctest.h>

#include <thread>
#include <vector>

#include "envelope/event_data.hpp"
#include "eventbus/event.hpp"

using namespace eventbus;

namespace {

const std::string head = R"({"event_id":"66000000-e29b-41d4-a716-446655440018","event_type":"model.registered",)"
                         R"("aggregate_id":"a-1","aggregate_type":"model_catalog",)";
const std::string tail = R"("timestamp":"2025-12-04T10:30:00Z","version":1})";

bool is_lazy(const event& ev) {
  return !detail::event_access::data(ev).payload_ready.load(std::memory_order_acquire);
}

}  // namespace

TEST_CASE("a decoded payload is built when first read and is the one the record carried") {
  const std::string payload = R"({"total":99.5,"lines":[{"sku":"a\"b","n":2}],"note":"}{","big":18446744073709551615})";
  const auto decoded = decode_event(head + R"("x":{"payload":{"not":"this"}},"payload":)" + payload + "," + tail);
  REQUIRE(decoded.ok());
  const event& ev = decoded.value();
  CHECK(is_lazy(ev));
  CHECK(ev.event_type() == "model.registered");  // the envelope is read without building it
  CHECK(is_lazy(ev));
  CHECK(ev.payload() == nlohmann::json::parse(payload));
  CHECK_FALSE(is_lazy(ev));
  CHECK(&ev.payload() == &ev.payload());  // built once
  CHECK(ev.extensions()["x"] == nlohmann::json::parse(R"({"payload":{"not":"this"}})"));
}

TEST_CASE("the wire form and equality of a decoded event include its payload, read or not") {
  const std::string bytes = head + R"("payload":{"b":1,"a":[true,null]},)" + tail;
  const event reference = detail::decode_event_nlohmann(bytes).value();
  const event unread = decode_event(bytes).value();
  REQUIRE(is_lazy(unread));
  CHECK(encode_event(unread) == encode_event(reference));  // writing it reads the payload
  CHECK(unread == reference);
  const event other = decode_event(head + R"("payload":{"b":2,"a":[true,null]},)" + tail).value();
  CHECK_FALSE(other == reference);
}

TEST_CASE("threads reading a decoded payload at once all get the one value") {
  for (int round = 0; round < 50; ++round) {
    const event ev = decode_event(head + R"("payload":{"seq":)" + std::to_string(round) + "}," + tail).value();
    REQUIRE(is_lazy(ev));
    std::vector<const nlohmann::json*> seen(4);
    std::vector<std::string> wire(4);
    std::vector<std::thread> readers;
    for (std::size_t t = 0; t < seen.size(); ++t)
      readers.emplace_back([&, t] {
        if (t % 2 == 0) wire[t] = encode_event(ev);  // the wire form builds the payload too
        seen[t] = &ev.payload();
      });
    for (auto& r : readers) r.join();
    for (const auto* p : seen) {
      CHECK(p == seen[0]);
      CHECK((*p)["seq"] == round);
    }
    CHECK(wire[0] == wire[2]);
  }
}
