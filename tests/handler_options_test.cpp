// Conditional handlers and middleware on the dispatcher, the shipped pieces (logging, authorize,
// rate_limit), the unit-test harness run_handler, and what /handlers shows.

#include <doctest/doctest.h>

#include <atomic>
#include <mutex>
#include <string>
#include <vector>

#include "eventbus/dispatcher.hpp"
#include "eventbus/metrics_server.hpp"
#include "eventbus/middlewares.hpp"
#include "eventbus/testing.hpp"
#include "http_support.hpp"
#include "test_support.hpp"

using namespace eventbus;
using namespace std::chrono_literals;
using eventbus::testing::http_get;
using eventbus::testing::sample_value;

// In a named namespace: its to_json is not used here, and in an anonymous one clang would say so.
namespace handler_options_test_types {
struct order_created {
  static constexpr std::string_view event_type = "order.created";
  static constexpr std::string_view aggregate_type = "order";
  double total = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(order_created, total)
}  // namespace handler_options_test_types
using handler_options_test_types::order_created;

namespace {

event order(double total, const std::string& id = "o-1", metadata_map metadata = {}) {
  return make_event({.event_type = "order.created", .aggregate_type = "order", .aggregate_id = id,
                     .payload = {{"total", total}}, .metadata = std::move(metadata)});
}

event cancelled(const std::string& id = "o-1") {
  return make_event({.event_type = "order.cancelled", .aggregate_type = "order", .aggregate_id = id});
}

dispatcher inline_bus(dispatcher_options options = {}) {
  options.mode = dispatch_mode::caller_thread;
  return dispatcher(std::move(options));
}

// Records the names of the pieces a call passed through, in order.
middleware tracer(std::string name, std::vector<std::string>& trace) {
  return {name, [name, &trace](const attempt_context& ctx, const next_step& next) {
            trace.push_back(name);
            return next(ctx);
          }};
}

}  // namespace

TEST_CASE("a condition keeps a handler to the events it accepts and counts the rejected ones as filtered") {
  std::vector<std::string> filtered_seen;
  auto bus = inline_bus({.observe_filtered = [&](std::string_view handler, const event&) { filtered_seen.emplace_back(handler); }});
  std::vector<double> big, all;
  auto s1 = bus.subscribe("order.created", "big", [&](const event& ev) { big.push_back(ev.payload()["total"].get<double>()); },
                          {.when = [](const event& ev) { return ev.payload()["total"].get<double>() > 100; }});
  auto s2 = bus.subscribe("order.created", "all", [&](const event& ev) { all.push_back(ev.payload()["total"].get<double>()); });
  for (const double total : {50.0, 150.0, 99.0, 250.0}) REQUIRE(bus.publish(order(total)).accepted());
  CHECK(big == std::vector<double>{150, 250});
  CHECK(all.size() == 4);
  CHECK(filtered_seen == std::vector<std::string>{"big", "big"});
  CHECK(bus.stats().handler_failures == 0);

  const auto rows = bus.handlers();
  REQUIRE(rows.size() == 2);
  CHECK(rows[0].name == "big");
  CHECK(rows[0].has_condition);
  CHECK(rows[0].calls == 2);
  CHECK(rows[0].filtered == 2);
  CHECK_FALSE(rows[1].has_condition);
  CHECK(rows[1].calls == 4);
  CHECK(rows[1].filtered == 0);
}

TEST_CASE("when<T> decodes the payload for its predicate, rejects other types, and lets a broken payload reach the handler") {
  auto bus = inline_bus();
  int handled = 0;
  auto sub = bus.subscribe("order.*", "big-orders", [&](const event& ev) {
    if (!payload_as<order_created>(ev).ok()) throw std::runtime_error("undecodable");
    ++handled;
  }, {.when = when<order_created>([](const order_created& o) { return o.total > 100; })});
  REQUIRE(bus.publish(order(500)).accepted());
  REQUIRE(bus.publish(order(5)).accepted());
  REQUIRE(bus.publish(cancelled()).accepted());  // another type: rejected
  CHECK(handled == 1);
  CHECK(bus.handlers()[0].filtered == 2);
  // "total" as text does not decode: the handler runs and reports it, nothing is hidden.
  REQUIRE(bus.publish(make_event({.event_type = "order.created", .aggregate_type = "order", .aggregate_id = "o-2",
                                  .payload = {{"total", "lots"}}}))
              .accepted());
  CHECK(bus.stats().handler_failures == 1);
}

TEST_CASE("a condition that throws fails the call like the handler would, and others still run") {
  auto bus = inline_bus();
  int ran = 0, sibling = 0;
  auto s1 = bus.subscribe("order.created", "picky", [&](const event&) { ++ran; },
                          {.when = [](const event&) -> bool { throw std::runtime_error("rules service down"); }});
  auto s2 = bus.subscribe("order.created", "sibling", [&](const event&) { ++sibling; });
  REQUIRE(bus.publish(order(1)).accepted());
  CHECK(ran == 0);
  CHECK(sibling == 1);
  CHECK(bus.stats().handler_failures == 1);
  CHECK(bus.handlers()[0].failures == 1);
}

TEST_CASE("dispatcher middleware: the bus's pieces wrap the handler's own, outermost first, and /handlers names them") {
  std::vector<std::string> trace;
  auto bus = inline_bus({.middleware = {tracer("bus-a", trace), tracer("bus-b", trace)}});
  auto sub = bus.subscribe("order.created", "h", [&](const event&) { trace.push_back("handler"); },
                           {.middleware = {tracer("own", trace)}});
  REQUIRE(bus.publish(order(1)).accepted());
  CHECK(trace == std::vector<std::string>{"bus-a", "bus-b", "own", "handler"});
  CHECK(bus.handlers()[0].middleware == std::vector<std::string>{"own"});

  // A piece that refuses: the handler does not run, the call counts as failed.
  trace.clear();
  const middleware refuse{"refuse", [](const attempt_context&, const next_step&) {
                            return attempt_outcome{.result = attempt_result::dead_letter, .error = "no"};
                          }};
  auto refused = bus.subscribe("order.cancelled", "never", [&](const event&) { trace.push_back("never"); },
                               {.middleware = {refuse}});
  REQUIRE(bus.publish(cancelled()).accepted());
  CHECK(trace == std::vector<std::string>{"bus-a", "bus-b"});
  CHECK(bus.stats().handler_failures == 1);

  CHECK_THROWS_AS(dispatcher({.middleware = {nullptr}}), exception);
  CHECK_THROWS_AS((void)bus.subscribe("order.created", "empty-piece", [](const event&) {}, {.middleware = {nullptr}}),
                  exception);
}

TEST_CASE("logging writes one structured line per call with id, type, handler, outcome and duration") {
  std::mutex mu;
  std::vector<std::pair<log_level, std::string>> lines;
  // Restored however the test ends: the sink refers to this frame.
  struct restore_logging {
    log_level previous = current_log_level();
    ~restore_logging() {
      set_log_sink({});
      set_log_level(previous);
    }
  } restore;
  set_log_sink([&](log_level level, std::string_view message) {
    const std::lock_guard lock(mu);
    if (message.starts_with("handler call:")) lines.emplace_back(level, std::string(message));
  });
  set_log_level(log_level::debug);
  {
    auto bus = inline_bus({.middleware = {middlewares::logging(log_level::debug)}});
    auto ok = bus.subscribe("order.created", "charge", [](const event&) {});
    auto bad = bus.subscribe("order.cancelled", "refund", [](const event&) { throw std::runtime_error("card \"declined\""); });
    const auto ev = order(3);
    REQUIRE(bus.publish(ev).accepted());
    REQUIRE(bus.publish(cancelled()).accepted());
    REQUIRE(lines.size() == 2);
    CHECK(lines[0].first == log_level::debug);
    CHECK(lines[0].second.find("handler=charge") != std::string::npos);
    CHECK(lines[0].second.find("event_type=order.created") != std::string::npos);
    CHECK(lines[0].second.find("event_id=" + ev.event_id()) != std::string::npos);
    CHECK(lines[0].second.find("outcome=succeeded") != std::string::npos);
    CHECK(lines[0].second.find("duration_ms=") != std::string::npos);
    CHECK(lines[1].first == log_level::warn);  // failures at warn at least
    CHECK(lines[1].second.find("outcome=threw") != std::string::npos);
    CHECK(lines[1].second.find(R"(error="card \"declined\"")") != std::string::npos);
  }
}

TEST_CASE("authorize lets through what the claims allow, refuses the rest with reason unauthorized, and counts it") {
  auto m = std::make_shared<metrics>();
  auto bus = inline_bus({.middleware = {middlewares::authorize(metadata_map{{"tenant", "acme"}}, m)}});
  int handled = 0;
  auto sub = bus.subscribe("order.created", "ship", [&](const event&) { ++handled; });
  REQUIRE(bus.publish(order(1, "o-1", {{"tenant", "acme"}})).accepted());
  REQUIRE(bus.publish(order(1, "o-2", {{"tenant", "evil"}})).accepted());
  REQUIRE(bus.publish(order(1, "o-3")).accepted());
  CHECK(handled == 1);
  CHECK(bus.stats().handler_failures == 2);

  metrics_server server(m, "127.0.0.1:0");
  server.add_handlers("dispatcher", [&] { return bus.handlers(); });
  CHECK(sample_value(http_get(server.port(), "/metrics").body, "eventbus_events_unauthorized_total", {{"handler", "ship"}}) == 2);

  const auto report = eventbus::testing::run_handler([](const event&) {}, order(1, "o-4", {{"tenant", "evil"}}),
                                                     {.middleware = {middlewares::authorize(metadata_map{{"tenant", "acme"}})}});
  CHECK(report.result == attempt_result::dead_letter);
  CHECK(report.dead_letter_reason == "unauthorized");
  CHECK(report.attempts == 1);  // no retry: it would be refused again

  CHECK_THROWS_AS((void)middlewares::authorize(metadata_map{}), exception);
  CHECK_THROWS_AS((void)middlewares::authorize(middlewares::authorization{}), exception);
}

TEST_CASE("/handlers lists every handler with patterns, condition, middleware and counts, as JSON") {
  auto m = std::make_shared<metrics>();
  auto bus = inline_bus({.middleware = {middlewares::logging()}});
  auto a = bus.subscribe("order.created", "charge", [](const event&) {},
                         {.when = [](const event&) { return true; }, .middleware = {middlewares::logging(log_level::debug)}});
  auto b = bus.subscribe("order.cancelled", "charge", [](const event&) { throw std::runtime_error("x"); });
  auto c = bus.subscribe("*", "audit", [](const event&) {});
  REQUIRE(bus.publish(order(1)).accepted());
  REQUIRE(bus.publish(cancelled()).accepted());
  metrics_server server(m, "127.0.0.1:0");
  server.add_handlers("dispatcher", [&] { return bus.handlers(); });
  server.add_handlers("broken", []() -> std::vector<handler_info> { throw std::runtime_error("not started"); });
  const auto reply = http_get(server.port(), "/handlers");
  REQUIRE(reply.status == 200);
  const auto page = nlohmann::json::parse(reply.body);
  REQUIRE(page["handlers"].size() == 2);
  const auto& charge = page["handlers"][0];
  CHECK(charge["component"] == "dispatcher");
  CHECK(charge["name"] == "charge");
  CHECK(charge["patterns"] == nlohmann::json{"order.created", "order.cancelled"});
  CHECK(charge["condition"] == true);
  CHECK(charge["middleware"] == nlohmann::json{"logging"});
  CHECK(charge["calls"] == 2);
  CHECK(charge["failures"] == 1);
  CHECK(charge["in_flight"] == 0);
  CHECK(page["handlers"][1]["name"] == "audit");
  CHECK(page["handlers"][1]["calls"] == 2);
  REQUIRE(page["errors"].size() == 1);
  CHECK(page["errors"][0]["component"] == "broken");
}

TEST_CASE("/handlers shows a call in flight while it runs on a pool thread") {
  dispatcher bus({.pool_size = 2});
  std::atomic<bool> release{false}, started{false};
  auto sub = bus.subscribe("order.created", "slow", [&](const event&) {
    started = true;
    while (!release.load()) std::this_thread::sleep_for(1ms);
  });
  REQUIRE(bus.publish(order(1)).accepted());
  REQUIRE(eventbus::testing::wait_until([&] { return started.load(); }, 10s));
  CHECK(bus.handlers()[0].in_flight == 1);
  release = true;
  bus.shutdown();
  CHECK(bus.handlers()[0].in_flight == 0);
}

TEST_CASE("rate_limit rejects over the limit when told to, with one bucket per handler or per key") {
  auto m = std::make_shared<metrics>();
  const auto reject_piece = middlewares::rate_limit(
      {.per_second = 0.001, .burst = 2, .when_over = middlewares::over_limit::reject, .metrics = m});
  auto bus = inline_bus({.middleware = {reject_piece}});
  int a = 0, b = 0;
  auto s1 = bus.subscribe("order.created", "a", [&](const event&) { ++a; });
  auto s2 = bus.subscribe("order.cancelled", "b", [&](const event&) { ++b; });
  for (int i = 0; i < 5; ++i) REQUIRE(bus.publish(order(1)).accepted());
  for (int i = 0; i < 3; ++i) REQUIRE(bus.publish(cancelled()).accepted());
  CHECK(a == 2);  // the burst, then refused
  CHECK(b == 2);  // its own bucket
  CHECK(bus.stats().handler_failures == 4);

  auto per_key = inline_bus({.middleware = {middlewares::rate_limit({.per_second = 0.001, .per = middlewares::limit_scope::key,
                                                                     .when_over = middlewares::over_limit::reject})}});
  int calls = 0;
  auto s3 = per_key.subscribe("order.created", "k", [&](const event&) { ++calls; });
  for (const char* id : {"o-1", "o-2", "o-1", "o-3", "o-2"}) REQUIRE(per_key.publish(order(1, id)).accepted());
  CHECK(calls == 3);  // one per key

  // Its own bucket for run_handler's handler name: the burst of two, then refused.
  for (int i = 0; i < 2; ++i)
    CHECK(eventbus::testing::run_handler([](const event&) {}, order(1), {.middleware = {reject_piece}}).succeeded());
  const auto report = eventbus::testing::run_handler([](const event&) {}, order(1), {.middleware = {reject_piece}});
  CHECK(report.result == attempt_result::dead_letter);
  CHECK(report.dead_letter_reason == "rate-limited");

  CHECK_THROWS_AS((void)middlewares::rate_limit({.per_second = 0}), exception);
  CHECK_THROWS_AS((void)middlewares::rate_limit({.per_second = 10, .burst = 0.5}), exception);
  CHECK_THROWS_AS((void)middlewares::rate_limit({.per_second = std::numeric_limits<double>::infinity()}), exception);
}

// The issue's measure: a limit of 1,000/s holds within 2 % over 10 s (waiting mode, four pool
// threads competing for the tokens).
TEST_CASE("rate_limit in waiting mode holds 1,000 calls per second within 2 % over 10 s") {
  dispatcher bus({.pool_size = 4, .queue_capacity = 20'000,
                  .middleware = {middlewares::rate_limit({.per_second = 1000, .burst = 10})}});
  std::mutex mu;
  std::vector<std::chrono::steady_clock::time_point> calls;
  calls.reserve(12'000);
  auto sub = bus.subscribe("order.created", "limited", [&](const event&) {
    const std::lock_guard lock(mu);
    calls.push_back(std::chrono::steady_clock::now());
  });
  const auto ev = order(1);
  for (int i = 0; i < 11'000; ++i) REQUIRE(bus.publish(ev).accepted());
  REQUIRE(eventbus::testing::wait_until([&] {
    const std::lock_guard lock(mu);
    return !calls.empty() && std::chrono::steady_clock::now() - calls.front() > 10s;
  }, 60s));
  std::size_t within = 0;
  {
    const std::lock_guard lock(mu);
    const auto end = calls.front() + 10s;
    for (const auto t : calls) within += t < end ? 1 : 0;
  }
  MESSAGE("calls in 10 s at 1,000/s: " << within);
  CHECK(within >= 9'800);
  CHECK(within <= 10'200);
  sub.unsubscribe();  // the rest of the queue is skipped, not waited for
}

TEST_CASE("run_handler runs a handler as a worker would: retries with their backoffs, no waiting") {
  int calls = 0;
  const handler_fn flaky = [&](const event&) {
    if (++calls < 3) throw std::runtime_error("database busy " + std::to_string(calls));
  };
  const retry_policy policy{.max_attempts = 5, .initial_backoff = 1s, .multiplier = 2.0, .max_backoff = 1min, .jitter = 0.0};
  const auto start = std::chrono::steady_clock::now();
  const auto report = eventbus::testing::run_handler(flaky, order(1), {.retry = policy});
  CHECK(std::chrono::steady_clock::now() - start < 1s);  // 3 s of backoff reported, not slept
  CHECK(report.succeeded());
  CHECK(report.attempts == 3);
  CHECK(report.errors == std::vector<std::string>{"database busy 1", "database busy 2"});
  CHECK(report.backoffs == std::vector<std::chrono::milliseconds>{1s, 2s});

  const auto dead = eventbus::testing::run_handler([](const event&) { throw std::runtime_error("down"); }, order(1),
                                                   {.retry = {.max_attempts = 3, .jitter = 0.0}});
  CHECK(dead.result == attempt_result::dead_letter);
  CHECK(dead.dead_letter_reason == "handler-error");
  CHECK(dead.attempts == 3);

  const auto permanent = eventbus::testing::run_handler([](const event&) { throw permanent_error("no such customer"); },
                                                        order(1));
  CHECK(permanent.attempts == 1);
  CHECK(permanent.errors == std::vector<std::string>{"permanent: no such customer"});

  const auto skipped = eventbus::testing::run_handler([](const event&) { FAIL("must not run"); }, order(1),
                                                      {.handler = {.when = when<order_created>([](const order_created& o) {
                                                                     return o.total > 100;
                                                                   })}});
  CHECK(skipped.filtered);
  CHECK(skipped.succeeded());
  CHECK(skipped.attempts == 0);

  // A rate limit's deferrals are not attempts: the bucket's one token goes to the first event,
  // the second is deferred (reported, not waited for) until max_deferrals.
  int limited_calls = 0;
  const eventbus::testing::run_options limited_options{.middleware = {middlewares::rate_limit({.per_second = 0.001})}, .max_deferrals = 3};
  const handler_fn counting = [&](const event&) { ++limited_calls; };
  CHECK(eventbus::testing::run_handler(counting, order(1), limited_options).succeeded());
  const auto limited = eventbus::testing::run_handler(counting, order(2), limited_options);
  CHECK(limited.result == attempt_result::deferred);
  CHECK(limited.deferrals == 4);
  CHECK(limited.attempts == 0);
  CHECK(limited_calls == 1);

  CHECK_THROWS_AS((void)eventbus::testing::run_handler(handler_fn{}, order(1)), exception);
}
