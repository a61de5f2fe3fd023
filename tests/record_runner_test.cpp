// The worker's record runner on its own (no Kafka, no threads): what a first pass makes of good and
// bad records, per-handler retries, dead letters for permanent failures, and replays for one handler.

#include <doctest/doctest.h>

#include "eventbus/admin/dead_letters.hpp"
#include "test_support.hpp"
#include "worker/record_runner.hpp"

using namespace eventbus;
using detail::handler_state;

namespace {

worker_options runner_options() {
  worker_options options{.group_id = "g", .topics = {"^app\\..*"}, .retry = {.max_attempts = 3}};
  options.max_record_bytes = 4096;
  options.validate();
  return options;
}

// A record as the consumer thread hands it over (record_job holds an atomic: made in place).
detail::job_ptr record_of(std::string value, std::string topic = "app.order.order.created") {
  auto job = std::make_shared<detail::record_job>();
  job->topic = std::move(topic);
  job->partition = 0;
  job->offset = 7;
  job->key = "o-1";
  job->owned_value = std::move(value);
  return job;
}

std::string order_created() { return encode_event(testing::make_test_event("order.created", "o-1")); }

}  // namespace

TEST_CASE("a good record runs every matching handler once, and a bad one gets its dead-letter reason") {
  const auto options = runner_options();
  detail::record_runner runner(options);
  int calls = 0;
  (void)runner.registry().add("order.*", "count", [&](const event&) { ++calls; });
  (void)runner.registry().add("user.*", "other", [&](const event&) { FAIL("wrong handler"); });

  auto good = record_of(order_created());
  CHECK(runner.first_pass(*good));
  CHECK(calls == 1);
  CHECK(runner.handler_calls() == 1);
  REQUIRE(good->ev.has_value());

  auto not_json = record_of("{oops");
  CHECK_FALSE(runner.first_pass(*not_json));
  REQUIRE(not_json->bad.has_value());
  CHECK(not_json->bad->reason == "deserialization");

  auto no_type = record_of(R"({"event_id":"x"})");
  CHECK_FALSE(runner.first_pass(*no_type));
  CHECK(no_type->bad->reason == "validation");

  auto too_big = record_of(std::string(5000, ' ') + order_created());
  CHECK_FALSE(runner.first_pass(*too_big));
  CHECK(too_big->bad->reason == "validation");
  CHECK(too_big->bad->error.find("max_record_bytes") != std::string::npos);

  auto posing = record_of(order_created(), "app.user.user.created");  // an order event on a user topic
  CHECK_FALSE(runner.first_pass(*posing));
  CHECK(posing->bad->error.find("does not belong on topic") != std::string::npos);

  auto dead_letter_topic = record_of("{oops", "app.order.order.created.dlq");  // matched by a regex
  CHECK(runner.first_pass(*dead_letter_topic));                               // skipped, never handled
  CHECK(calls == 1);
}

TEST_CASE("a failing handler is retried alone, and a permanent failure is dead") {
  const auto options = runner_options();
  detail::record_runner runner(options);
  int flaky_calls = 0, steady_calls = 0;
  (void)runner.registry().add("order.created", "steady", [&](const event&) { ++steady_calls; });
  (void)runner.registry().add("order.created", "flaky", [&](const event&) {
    if (++flaky_calls == 1) throw std::runtime_error("try again");
  });
  (void)runner.registry().add("order.created", "refuser", [&](const event&) { throw permanent_error("never"); });

  auto job = record_of(order_created());
  CHECK_FALSE(runner.first_pass(*job));
  REQUIRE(job->handlers.size() == 3);
  CHECK(job->handlers[0].state == handler_state::succeeded);
  CHECK(job->handlers[1].state == handler_state::pending);
  CHECK(job->handlers[1].last_error.find("try again") != std::string::npos);
  CHECK(job->handlers[2].state == handler_state::dead);

  job->handlers[1].next_try = detail::worker_clock::now();  // the backoff is over
  runner.run_due_handlers(*job);
  CHECK(job->handlers[1].state == handler_state::succeeded);
  CHECK(steady_calls == 1);  // the handler that had succeeded is not run again
  CHECK(flaky_calls == 2);
  CHECK(runner.retries() == 1);
}

TEST_CASE("a record replayed for one handler runs only that handler") {
  const auto options = runner_options();
  detail::record_runner runner(options);
  std::vector<std::string> ran;
  (void)runner.registry().add("order.created", "charge", [&](const event&) { ran.push_back("charge"); });
  (void)runner.registry().add("order.created", "mail", [&](const event&) { ran.push_back("mail"); });
  auto job = record_of(order_created());
  const std::string name(replay_handler_header), value("mail");  // named: GCC 12 misreports a temporary here
  job->owned_headers.emplace_back(name, value);
  CHECK(runner.first_pass(*job));
  CHECK(ran == std::vector<std::string>{"mail"});
}

TEST_CASE("belongs_on accepts an event only on its own topic") {
  const auto ev = testing::make_test_event("order.created", "o-1");
  CHECK(detail::belongs_on("app.order.order.created", ev));
  CHECK(detail::belongs_on("prod.app.order.order.created", ev));
  CHECK_FALSE(detail::belongs_on("app.order.order.created.dlq", ev));
  CHECK_FALSE(detail::belongs_on("app.user.order.created", ev));
  CHECK_FALSE(detail::belongs_on("order.order.created", ev));  // no prefix
  CHECK_FALSE(detail::belongs_on("apporder.order.created", ev));
}
