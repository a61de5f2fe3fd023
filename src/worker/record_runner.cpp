// Running a record's handlers (record_runner.hpp).

#include "worker/record_runner.hpp"

#include <algorithm>
#include <exception>
#include <optional>

#include "envelope/event_data.hpp"
#include "eventbus/causation.hpp"
#include "eventbus/admin/dead_letters.hpp"

namespace eventbus::detail {
namespace {

std::string message_text(const char* what) { return what ? what : "unknown exception"; }

}  // namespace

bool belongs_on(std::string_view topic, const event& ev) {
  const std::string_view type = ev.event_type(), aggregate = ev.aggregate_type();
  const std::size_t tail = aggregate.size() + type.size() + 2;  // ".<aggregate_type>.<event_type>"
  if (topic.size() <= tail) return false;
  const auto end = topic.substr(topic.size() - tail);
  return end[0] == '.' && end.substr(1, aggregate.size()) == aggregate && end[1 + aggregate.size()] == '.' &&
         end.substr(2 + aggregate.size()) == type;
}

record_runner::record_runner(const worker_options& options) : options_(options), chain_(build_chain()) {}

bool record_runner::prepare(record_job& job) noexcept {
  if (job.ev) return true;
  if (job.bad) return false;
  try {
    if (job.value().size() > options_.max_record_bytes) {
      job.bad = detail::dead_letter_reason{"validation",
                                           "record is " + std::to_string(job.value().size()) +
                                               " bytes, max_record_bytes is " + std::to_string(options_.max_record_bytes),
                                           "", 0};
      return false;
    }
    auto decoded = decode_event(job.value());
    if (!decoded) {
      job.bad = detail::dead_letter_reason{decoded.error().code() == errc::decode_failed ? "deserialization" : "validation",
                                           decoded.error().to_string(), "", 0};
      return false;
    }
    if (!belongs_on(job.topic, decoded.value())) {
      const auto& e = decoded.value();
      job.bad = detail::dead_letter_reason{
          "validation",
          "event_type '" + e.event_type() + "' of aggregate_type '" + e.aggregate_type().substr(0, 100) +
              "' does not belong on topic '" + job.topic + "' (<prefix>." + e.aggregate_type().substr(0, 100) + "." +
              e.event_type() + " expected)",
          "", 0};
      return false;
    }
    job.ev = std::move(decoded).value();
    if (options_.metrics)  // how long after it happened its handlers start (the guide's "slow > 5 s")
      options_.metrics->observe_event_age("handled", job.ev->event_type(),
                                          std::chrono::duration<double>(now_ms() - job.ev->timestamp()).count());
    const auto handlers = registry_->snapshot();
    // A record replayed for one handler (eventbus dlq replay --handler) runs only that one.
    const auto only = job.header(replay_handler_header);
    handlers->for_each_match(job.ev->event_type(), detail::event_access::data(*job.ev).type_hash,
                             [&](const detail::entry_ptr& h) {
                               if (!only || *only == h->name)
                                 job.handlers.push_back({.handler = h});
                             });
    return true;
  } catch (const std::exception& e) {  // out of memory while decoding: treat as a bad record
    job.ev.reset();
    job.handlers.clear();
    job.bad = detail::dead_letter_reason{"deserialization", message_text(e.what()), "", 0};
    return false;
  }
}

bool record_runner::first_pass(record_job& job) noexcept {
  if (is_dead_letter(job)) return true;
  if (!prepare(job)) return false;
  run_due_handlers(job);
  return std::all_of(job.handlers.begin(), job.handlers.end(),
                     [](const handler_progress& run) { return run.state == handler_state::succeeded; });
}

std::vector<record_runner::batch_result> record_runner::call_batch(handler_entry& handler,
                                                                  const std::vector<batch_member>& members) noexcept {
  using kind = batch_result::kind;
  try {
    std::vector<batch_result> results(members.size());
    const detail::running_call call(handler);
    if (!call.admitted()) {  // unsubscribed meanwhile: nothing left to run
      for (auto& r : results) r.what = kind::done;
      return results;
    }
    // Per lane, the member where it failed: the lane's later members come again after it.
    std::vector<std::pair<std::size_t, std::size_t>> failed_at;  // (lane, member index)
    const auto failed_before = [&](std::size_t lane, std::size_t member) {
      return std::any_of(failed_at.begin(), failed_at.end(),
                         [&](const auto& f) { return f.first == lane && f.second < member; });
    };
    const auto fail_lane = [&](std::size_t lane, std::size_t member) {
      if (!failed_before(lane, member + 1)) failed_at.emplace_back(lane, member);
    };
    std::vector<event> events;
    std::vector<std::size_t> called;  // index into members of each event in the batch
    events.reserve(members.size());
    called.reserve(members.size());
    for (std::size_t i = 0; i < members.size(); ++i) {
      if (failed_before(members[i].lane, i)) continue;
      const event& ev = members[i].ev;
      try {
        if (!handler.accepts(ev)) {
          if (options_.metrics) options_.metrics->count_filtered(handler.name);
          results[i].what = kind::done;
          continue;
        }
      } catch (...) {  // asked again alone, where the throw fails the attempt; its lane waits for it
        fail_lane(members[i].lane, i);
        continue;
      }
      events.push_back(ev);
      called.push_back(i);
    }
    if (events.empty()) return results;
    event_batch batch(std::move(events));
    handler.calls.add();
    handler_calls_.fetch_add(1, std::memory_order_relaxed);
    const auto start = worker_clock::now();
    bool threw = false;
    // A call of one event (the handler's condition left the others out) continues that event's
    // chain, as a single-event handler's call does; a call of several has no one cause.
    std::optional<cause_scope> cause;
    if (called.size() == 1) cause.emplace(members[called[0]].ev);
    try {
      handler.batch(batch);
    } catch (...) {  // the whole batch failed: each event is called again alone, where it counts
      threw = true;
    }
    const auto took = worker_clock::now() - start;
    bool all_succeeded = !threw;
    for (std::size_t i = 0; i < called.size(); ++i) {
      const std::size_t lane = members[called[i]].lane;
      if (failed_before(lane, called[i])) {  // after a failed event of its lane: again
        all_succeeded = false;
        continue;
      }
      const auto outcome = threw ? event_batch::outcome::failed : batch.outcome_of(i);
      if (outcome == event_batch::outcome::succeeded) {
        results[called[i]].what = kind::done;
      } else if (outcome == event_batch::outcome::dead_letter) {  // final: its lane goes on
        results[called[i]] = {kind::dead, "permanent: " + batch.reason_of(i)};
        all_succeeded = false;
      } else {
        fail_lane(lane, called[i]);
        all_succeeded = false;
      }
    }
    if (!all_succeeded) handler.failures.fetch_add(1, std::memory_order_relaxed);
    if (options_.metrics) options_.metrics->observe_handler(handler.name, batch[0].event_type(), all_succeeded, took);
    return results;
  } catch (...) {  // out of memory building the batch: no result, every member is called alone
    return {};
  }
}

void record_runner::run_due_handlers(record_job& job) noexcept {
  const auto now = worker_clock::now();
  for (auto& run : job.handlers) {
    if (run.state != handler_state::pending || run.next_try > now) continue;
    call_handler(job, run);
  }
}

// One attempt through the middleware chain; the outcome decides the handler's state. The
// handler's condition is asked first, on every attempt: a rejected event is done for it.
void record_runner::call_handler(const record_job& job, handler_progress& run) noexcept {
  handler_entry& handler = *run.handler;
  const detail::running_call call(handler);
  if (!call.admitted()) {  // unsubscribed meanwhile: nothing left to run
    run.state = handler_state::succeeded;
    return;
  }
  std::exception_ptr condition_error;
  if (handler.when) {
    try {
      if (!handler.accepts(*job.ev)) {
        if (options_.metrics) options_.metrics->count_filtered(handler.name);
        run.state = handler_state::succeeded;
        return;
      }
    } catch (...) {  // a condition that throws fails the attempt, as the handler would
      condition_error = std::current_exception();
    }
  }
  ++run.attempts;
  handler.calls.add();
  const attempt_context ctx{.ev = *job.ev, .handler = handler.name, .attempt = run.attempts,
                            .topic = job.topic, .partition = job.partition, .offset = job.offset};
  attempt_outcome outcome;
  const cause_scope cause(*job.ev);  // events made by the handler continue this one's chain
  try {
    if (condition_error) {
      const handler_fn rethrow = [&](const event&) { std::rethrow_exception(condition_error); };
      outcome = run_chain(chain_, handler.pieces, rethrow, ctx);
    } else {
      outcome = run_chain(chain_, handler.pieces, handler.fn, ctx);
    }
  } catch (const std::exception& e) {  // only the outer pieces can get here (out of memory)
    outcome = {.result = attempt_result::retry, .error = message_text(e.what()), .retry_after = options_.retry.max_backoff};
  }
  if (outcome.result != attempt_result::succeeded && outcome.result != attempt_result::deferred)
    handler.failures.fetch_add(1, std::memory_order_relaxed);
  run.last_error = std::move(outcome.error);
  switch (outcome.result) {
    case attempt_result::succeeded: run.state = handler_state::succeeded; break;
    case attempt_result::dead_letter:
      run.state = handler_state::dead;
      run.dead_letter_reason = std::move(outcome.reason);
      run.retries_exhausted = outcome.retries_exhausted;
      break;
    case attempt_result::retry: run.next_try = worker_clock::now() + outcome.retry_after; break;
    case attempt_result::deferred:  // not an attempt: the same attempt again once it may run
      --run.attempts;
      handler.calls.take_back();
      run.next_try = worker_clock::now() + outcome.retry_after;
      break;
  }
}

// timing -> retry -> recover -> the user's pieces -> handler. The timing piece feeds the stats.
std::vector<middleware> record_runner::build_chain() {
  std::vector<middleware> pieces{middlewares::timing([this](const attempt_context& ctx, const attempt_outcome& outcome,
                                                            std::chrono::nanoseconds took) {
                                   handler_calls_.fetch_add(1, std::memory_order_relaxed);  // timing skips deferrals
                                   if (ctx.attempt > 1) retries_.fetch_add(1, std::memory_order_relaxed);
                                   if (!options_.metrics) return;
                                   options_.metrics->observe_handler(ctx.handler, ctx.ev.event_type(),
                                                                    outcome.result == attempt_result::succeeded, took);
                                   if (ctx.attempt > 1) options_.metrics->count_retry(ctx.handler, ctx.ev.event_type());
                                 }),
                                 middlewares::retry(options_.retry), middlewares::recover()};
  pieces.insert(pieces.end(), options_.middleware.begin(), options_.middleware.end());
  return pieces;
}

}  // namespace eventbus::detail
