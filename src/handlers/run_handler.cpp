// eventbus::testing::run_handler (testing.hpp): a worker's handling of one record, without Kafka,
// threads or waiting.

#include "eventbus/testing.hpp"

#include "eventbus/causation.hpp"
#include "eventbus/error.hpp"

namespace eventbus::testing {

handler_report run_handler(const handler_fn& handler, const event& ev, run_options options) {
  if (!handler) throw exception(error(errc::invalid_argument, "run_handler needs a handler function", "handler"));
  handler_report report;
  if (options.handler.when && !options.handler.when(ev)) {
    report.filtered = true;
    return report;
  }
  // The worker's chain minus its timing piece: retry -> recover -> the worker's pieces, then the handler's.
  std::vector<middleware> chain{middlewares::retry(options.retry), middlewares::recover()};
  chain.insert(chain.end(), options.middleware.begin(), options.middleware.end());
  const cause_scope cause(ev);
  for (int attempt = 1;;) {
    const attempt_context ctx{.ev = ev, .handler = options.handler_name, .attempt = attempt};
    auto outcome = run_chain(chain, options.handler.middleware, handler, ctx);
    switch (outcome.result) {
      case attempt_result::deferred:
        if (++report.deferrals > options.max_deferrals) {
          report.result = attempt_result::deferred;
          return report;
        }
        continue;  // not an attempt: the same one again
      case attempt_result::succeeded:
        report.attempts = attempt;
        return report;
      case attempt_result::dead_letter:
        report.attempts = attempt;
        report.errors.push_back(std::move(outcome.error));
        report.result = attempt_result::dead_letter;
        report.dead_letter_reason = outcome.reason.empty() ? "handler-error" : std::move(outcome.reason);
        return report;
      case attempt_result::retry:
        report.errors.push_back(std::move(outcome.error));
        report.backoffs.push_back(outcome.retry_after);
        ++attempt;
        break;
    }
  }
}

}  // namespace eventbus::testing
