// The worker's middleware pieces on their own: recover, retry and timing turn handler calls into
// outcomes, and a chain runs outermost first and can be cut short.

#include <doctest/doctest.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "eventbus/middleware.hpp"

using namespace eventbus;
using namespace std::chrono_literals;

namespace {

const event sample = make_event({.event_type = "order.created", .aggregate_type = "order", .aggregate_id = "o-1"});

attempt_context attempt_number(int n) {
  return {.ev = sample, .handler = "h", .attempt = n, .topic = "app.order.order.created", .partition = 0, .offset = 7};
}

handler_fn throwing(std::exception_ptr what) {
  return [what](const event&) { std::rethrow_exception(what); };
}

}  // namespace

TEST_CASE("recover turns exceptions into outcomes: permanent ones into dead letters, others into retries") {
  const std::vector<middleware> chain{middlewares::recover()};
  CHECK(run_chain(chain, [](const event&) {}, attempt_number(1)).result == attempt_result::succeeded);

  const auto transient = run_chain(chain, throwing(std::make_exception_ptr(std::runtime_error("smtp down"))), attempt_number(1));
  CHECK(transient.result == attempt_result::retry);
  CHECK(transient.error == "smtp down");

  const auto permanent = run_chain(chain, throwing(std::make_exception_ptr(permanent_error("no such customer"))), attempt_number(1));
  CHECK(permanent.result == attempt_result::dead_letter);
  CHECK(permanent.error == "permanent: no such customer");

  const auto odd = run_chain(chain, throwing(std::make_exception_ptr(42)), attempt_number(1));
  CHECK(odd.result == attempt_result::retry);
  CHECK(odd.error.find("unknown exception") != std::string::npos);
}

TEST_CASE("recover dead-letters a version with no upcaster path as validation, other eventbus errors are retried") {
  const std::vector<middleware> chain{middlewares::retry({.max_attempts = 5}), middlewares::recover()};
  const auto no_path =
      exception(error(errc::payload_mismatch, "'order.created' is stored at version 4 and read as version 3", "version"));
  const auto versioned = run_chain(chain, throwing(std::make_exception_ptr(no_path)), attempt_number(1));
  CHECK(versioned.result == attempt_result::dead_letter);  // on the first of five attempts
  CHECK(versioned.reason == "validation");
  CHECK(versioned.error == "version: 'order.created' is stored at version 4 and read as version 3");

  // The same code for another field (a payload that does not fit), or another code: retried as before.
  const auto misfit = exception(error(errc::payload_mismatch, "does not decode", "payload"));
  CHECK(run_chain(chain, throwing(std::make_exception_ptr(misfit)), attempt_number(1)).result == attempt_result::retry);
  const auto other = exception(error(errc::invalid_argument, "no", "version"));
  CHECK(run_chain(chain, throwing(std::make_exception_ptr(other)), attempt_number(1)).result == attempt_result::retry);
}

TEST_CASE("retry gives a failed attempt its backoff, and dead-letters it after the last attempt") {
  const retry_policy policy{.max_attempts = 3, .initial_backoff = 100ms, .multiplier = 2.0, .max_backoff = 1s, .jitter = 0.0};
  const std::vector<middleware> chain{middlewares::retry(policy), middlewares::recover()};
  const auto fails = throwing(std::make_exception_ptr(std::runtime_error("busy")));

  const auto first = run_chain(chain, fails, attempt_number(1));
  CHECK(first.result == attempt_result::retry);
  CHECK(first.retry_after == 100ms);
  CHECK(run_chain(chain, fails, attempt_number(2)).retry_after == 200ms);
  const auto last = run_chain(chain, fails, attempt_number(3));
  CHECK(last.result == attempt_result::dead_letter);
  CHECK(last.error == "busy");

  // Only retries are touched: successes and dead letters pass through.
  CHECK(run_chain(chain, [](const event&) {}, attempt_number(3)).result == attempt_result::succeeded);
  const auto permanent = run_chain(chain, throwing(std::make_exception_ptr(permanent_error("bad"))), attempt_number(1));
  CHECK(permanent.result == attempt_result::dead_letter);
  CHECK(permanent.retry_after == 0ms);

  CHECK_THROWS_AS((void)middlewares::retry({.max_attempts = 0}), exception);
}

TEST_CASE("timing reports every attempt with its outcome, and a throwing observer changes nothing") {
  std::vector<std::string> observed;
  const std::vector<middleware> chain{
      middlewares::timing([&](const attempt_context& ctx, const attempt_outcome& outcome, std::chrono::nanoseconds took) {
        observed.push_back(std::string(ctx.handler) + ":" + std::string(to_string(outcome.result)));
        CHECK(took >= 0ns);
        throw std::runtime_error("observer bug");
      }),
      middlewares::recover()};
  CHECK(run_chain(chain, throwing(std::make_exception_ptr(std::runtime_error("x"))), attempt_number(1)).result ==
        attempt_result::retry);
  CHECK(run_chain(chain, [](const event&) {}, attempt_number(2)).result == attempt_result::succeeded);
  CHECK(observed == std::vector<std::string>{"h:retry", "h:succeeded"});
}

TEST_CASE("a chain runs outermost first, and a piece that does not call next skips the rest") {
  std::vector<std::string> order;
  const auto named = [&](std::string name) -> middleware {
    return [&order, name](const attempt_context& ctx, const next_step& next) {
      order.push_back(name + ">");
      auto outcome = next(ctx);
      order.push_back("<" + name);
      return outcome;
    };
  };
  bool handled = false;
  const handler_fn handler = [&](const event&) {
    handled = true;
    order.push_back("handler");
  };
  CHECK(run_chain({named("a"), named("b")}, handler, attempt_number(1)).result == attempt_result::succeeded);
  CHECK(order == std::vector<std::string>{"a>", "b>", "handler", "<b", "<a"});

  handled = false;
  const middleware gate = [](const attempt_context&, const next_step&) {
    return attempt_outcome{.result = attempt_result::dead_letter, .error = "refused"};
  };
  const auto outcome = run_chain({gate}, handler, attempt_number(1));
  CHECK_FALSE(handled);
  CHECK(outcome.error == "refused");
}
