// The worker engine. One consumer thread owns all bookkeeping (partitions, records, timers,
// commits); handler attempts run on a task pool and dead-letter writes on a producer, and both hand
// their outcome back to the consumer thread through one completion queue. So no bookkeeping state
// is shared between threads, and every decision about a record is taken in one place.
//
// In the healthy flow a partition's buffered records go to the pool as one batch: a pool thread
// decodes and handles them in order and stops at the first record that needs more than one clean
// pass (a retry, a dead letter); the consumer thread then finishes the records before it, takes
// that one on alone, and puts the rest back at the head of the partition's queue. One hand-off per
// batch instead of per record is what lets the worker keep up with the consumer.

#include "eventbus/worker.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "detail/event_data.hpp"
#include "detail/handler_registry.hpp"
#include "detail/kafka_client.hpp"
#include "detail/log.hpp"
#include "detail/task_pool.hpp"
#include "eventbus/dead_letters.hpp"
#include "eventbus/event.hpp"
#include "eventbus/topic.hpp"
#include "kafka/record_producer.hpp"
#include "worker/dead_letter_writer.hpp"

namespace eventbus {
namespace {

using clock_type = std::chrono::steady_clock;

[[noreturn]] void reject(std::string field, std::string message) {
  throw exception(error(errc::invalid_argument, std::move(message), std::move(field)));
}

enum class handler_state { pending, succeeded, dead };

struct handler_run {
  detail::entry_ptr handler;
  handler_state state = handler_state::pending;
  int attempts = 0;
  std::string last_error{};
  clock_type::time_point next_try{};
  bool dead_letter_sent = false;
};

// One consumed record, from the fetch until its offset may be committed.
struct record_job : detail::consumed_record {
  std::optional<event> ev;
  std::optional<detail::dead_letter_reason> bad;  // set when it cannot be handled (not decodable, too large)
  std::vector<handler_run> handlers;  // touched by the pool only while `running` or in a batch
  bool running = false;
  bool abandoned = false;  // its partition was revoked: forget it, it will be redelivered
  int dead_letters_outstanding = 0;
};
using job_ptr = std::shared_ptr<record_job>;

struct partition_state {
  std::deque<job_ptr> queue;
  std::vector<job_ptr> batch;  // on the pool, in offset order
  job_ptr current;             // the one record being retried or dead-lettered
  std::int64_t commit_next = -1;  // offset after the last finished record; -1: nothing finished yet
  std::int64_t first_seen = -1;   // offset of the first record received since the assignment
  bool dirty = false;             // commit_next not committed yet
  bool paused = false;
};
using partition_key = std::pair<std::string, std::int32_t>;

std::string message_text(const char* what) { return what ? what : "unknown exception"; }

}  // namespace

void worker_options::validate() const {
  kafka.validate();
  retry.validate();
  if (group_id.empty()) reject("group_id", "must not be empty");
  if (topics.empty()) reject("topics", "name at least one topic or '^regex'");
  for (const auto& t : topics)
    if (!t.starts_with('^'))
      if (auto valid = validate_topic_name(t); !valid) reject("topics", valid.error().message());
  if (dlq_suffix.empty()) reject("dlq_suffix", "must not be empty");
  // Caught here, not at the first dead letter (which would then hold its partition forever).
  if (auto probe = dlq_topic_for("app.aggregate.event.type", dlq_suffix); !probe)
    reject("dlq_suffix", probe.error().message());
  for (std::size_t i = 0; i < middleware.size(); ++i)
    if (!middleware[i]) reject("middleware[" + std::to_string(i) + "]", "is an empty function");
  if (concurrency == 0 || concurrency > 1024) reject("concurrency", "must be between 1 and 1024");
  if (max_record_bytes == 0) reject("max_record_bytes", "must be at least 1");
  if (max_buffered_per_partition < 2) reject("max_buffered_per_partition", "must be at least 2");
  if (commit_interval.count() <= 0) reject("commit_interval", "must be positive");
  if (shutdown_timeout.count() < 0) reject("shutdown_timeout", "must not be negative");
}

struct worker::impl {
  explicit impl(worker_options opts)
      : options(validated(std::move(opts))), pool(options.concurrency, std::size_t{1} << 20),
        dead_letters(options.kafka, options.group_id, options.dlq_suffix, [this](std::chrono::milliseconds delay, std::function<void()> fn) {
          post([this, delay, fn = std::move(fn)]() mutable {
            if (delay.count() == 0) return fn();
            at(clock_type::now() + delay, std::move(fn));
          });
        }) {
    auto config = detail::make_client_config(
        options.kafka, {{"group.id", options.group_id},
                        {"enable.auto.commit", "false"},  // we commit finished records only
                        {"enable.auto.offset.store", "false"},
                        {"auto.offset.reset", "earliest"},
                        {"enable.partition.eof", "false"}});
    broker = std::move(config.broker);
    rd_kafka_conf_set_opaque(config.conf.get(), this);
    rd_kafka_conf_set_rebalance_cb(config.conf.get(), &impl::on_rebalance);
    rd_kafka_conf_set_offset_commit_cb(config.conf.get(), &impl::on_commit_result);
    consumer = detail::make_handle(RD_KAFKA_CONSUMER, std::move(config.conf));
    rd_kafka_poll_set_consumer(consumer.get());
  }

  static worker_options validated(worker_options opts) {
    opts.validate();
    return opts;
  }

  // --- threads

  void start() {
    rd_kafka_topic_partition_list_t* topics = rd_kafka_topic_partition_list_new(static_cast<int>(options.topics.size()));
    for (const auto& t : options.topics) rd_kafka_topic_partition_list_add(topics, t.c_str(), RD_KAFKA_PARTITION_UA);
    const auto err = rd_kafka_subscribe(consumer.get(), topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (err) throw exception(error(errc::invalid_argument, "cannot subscribe: " + detail::kafka_error_text(err), "topics"));
    // librdkafka tells us (from its own thread) when records or rebalance events arrive on an empty
    // queue, so the loop sleeps on one condition variable for records, completions and timers alike.
    consumer_queue = rd_kafka_queue_get_consumer(consumer.get());
    rd_kafka_queue_cb_event_enable(consumer_queue, &impl::on_consumer_queue_ready, this);
    loop_thread = std::thread([this] {
      pthread_setname_np(pthread_self(), "eventbus-worker");
      run_loop();
    });
  }

  void stop() noexcept {
    stop_requested.store(true);
    post([] {});  // wakes a loop waiting for completions
    if (loop_thread.joinable() && loop_thread.get_id() != std::this_thread::get_id()) loop_thread.join();
  }

  void run_loop() noexcept {
    try {
      while (!stop_requested.load()) {
        {
          const std::lock_guard lock(completions_mu);
          consumer_ready = false;  // set again by librdkafka once the queue we empty below refills
        }
        bool more = false;
        for (int taken = 0;; ++taken) {
          if (taken == max_records_per_turn) {
            more = true;  // leave room for completions; the queue is not empty, so no wake-up comes
            break;
          }
          rd_kafka_message_t* msg = rd_kafka_consumer_poll(consumer.get(), 0);
          if (msg == nullptr) break;
          on_message(msg);
        }
        drain_completions();
        run_due_timers();
        commit(false);
        update_lag();
        if (!more) wait_for_work();
      }
      shut_down();
    } catch (const std::exception& e) {
      detail::log(log_level::error, std::string("worker loop stopped: ") + e.what());
    }
  }

  static void on_consumer_queue_ready(rd_kafka_t*, void* opaque) noexcept {
    auto& self = *static_cast<impl*>(opaque);
    {
      const std::lock_guard lock(self.completions_mu);
      self.consumer_ready = true;
    }
    self.completions_cv.notify_one();
  }

  // Sleeps until records, a completion or a stop arrive, or the next timer or commit is due.
  void wait_for_work() {
    auto until = clock_type::now() + std::chrono::milliseconds(100);
    if (!timers.empty()) until = std::min(until, timers.begin()->first);
    if (has_dirty_partitions()) until = std::min(until, next_commit);
    std::unique_lock lock(completions_mu);
    completions_cv.wait_until(lock, until, [&] { return consumer_ready || !completions.empty() || stop_requested.load(); });
  }

  bool has_dirty_partitions() const {
    return std::any_of(partitions.begin(), partitions.end(), [](const auto& kv) { return kv.second.dirty; });
  }

  void shut_down() {
    intake_closed = true;
    const auto deadline = clock_type::now() + options.shutdown_timeout;
    wait_until_settled([&](const partition_key&) { return true; }, deadline);
    commit(true);
    forget_partitions([](const partition_key&) { return true; });  // so the revocation below waits for nothing
    rd_kafka_queue_cb_event_enable(consumer_queue, nullptr, nullptr);
    rd_kafka_consumer_close(consumer.get());
    rd_kafka_queue_destroy(consumer_queue);
    consumer_queue = nullptr;
    pool.close_and_join();
  }

  // --- completions: the only way other threads talk to the consumer thread

  void post(std::function<void()> fn) {
    {
      const std::lock_guard lock(completions_mu);
      completions.push_back(std::move(fn));
    }
    completions_cv.notify_one();
  }

  void drain_completions() {
    std::vector<std::function<void()>> batch;
    {
      const std::lock_guard lock(completions_mu);
      batch.swap(completions);
    }
    for (auto& fn : batch) fn();
  }

  // Handles completions until `settled` says every selected partition has nothing in flight.
  template <class Select>
  void wait_until_settled(Select&& selected, clock_type::time_point deadline) {
    for (;;) {
      drain_completions();
      bool busy = false;
      for (auto& [key, p] : partitions)
        if (selected(key) && (!p.batch.empty() ||
                              (p.current && (p.current->running || p.current->dead_letters_outstanding > 0))))
          busy = true;
      if (!busy) return;
      std::unique_lock lock(completions_mu);
      if (!completions_cv.wait_until(lock, deadline, [&] { return !completions.empty(); })) {
        detail::log(log_level::warn, "worker: in-flight work did not finish within shutdown_timeout; "
                                     "it is left uncommitted and will be redelivered");
        return;
      }
    }
  }

  // --- records

  void on_message(rd_kafka_message_t* raw) {
    const detail::kafka_message msg(raw);
    if (msg->err) {
      if (msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
        detail::log(log_level::warn, "worker: consumer error: " + detail::kafka_error_text(msg->err));
      return;
    }
    auto job = std::make_shared<record_job>();
    job->topic = rd_kafka_topic_name(msg->rkt);
    job->partition = msg->partition;
    job->offset = msg->offset;
    if (msg->key) job->key.assign(static_cast<const char*>(msg->key), msg->key_len);
    if (msg->payload) job->value.assign(static_cast<const char*>(msg->payload), msg->len);
    rd_kafka_headers_t* headers = nullptr;
    if (rd_kafka_message_headers(msg.get(), &headers) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      const char* name = nullptr;
      const void* value = nullptr;
      size_t size = 0;
      for (size_t i = 0; rd_kafka_header_get_all(headers, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; ++i)
        job->headers.emplace_back(name, std::string(static_cast<const char*>(value), size));
    }
    records.fetch_add(1, std::memory_order_relaxed);
    if (options.metrics) options.metrics->count_consumed(job->topic);

    auto& p = partitions[{job->topic, job->partition}];
    if (p.first_seen < 0) p.first_seen = job->offset;
    p.queue.push_back(std::move(job));
    if (!p.paused && p.queue.size() >= options.max_buffered_per_partition) set_paused(job_key(*p.queue.back()), p, true);
    start_next(p);
  }

  void start_next(partition_state& p) {
    if (p.current || !p.batch.empty() || p.queue.empty() || intake_closed) return;
    const std::size_t take = std::min(p.queue.size(), max_batch);
    p.batch.assign(std::make_move_iterator(p.queue.begin()), std::make_move_iterator(p.queue.begin() + static_cast<std::ptrdiff_t>(take)));
    p.queue.erase(p.queue.begin(), p.queue.begin() + static_cast<std::ptrdiff_t>(take));
    if (p.paused && p.queue.size() < options.max_buffered_per_partition / 2) set_paused(job_key(*p.batch.front()), p, false);
    std::vector<detail::task_pool::task> task{[this, batch = p.batch] {
      std::size_t done = 0;
      while (done < batch.size() && first_pass(*batch[done])) ++done;
      post([this, batch, done] { after_batch(batch, done); });
    }};
    (void)pool.push_all(task, std::chrono::milliseconds(0));  // at most one task per partition: always room
  }

  // On the pool: decodes the record and runs each of its handlers once. True when the record is
  // finished (every handler succeeded, or none applies).
  bool first_pass(record_job& job) noexcept {
    try {
      if (job.topic.ends_with(options.dlq_suffix)) return true;  // a dead-letter topic matched a regex
      if (job.value.size() > options.max_record_bytes) {
        job.bad = detail::dead_letter_reason{"validation",
                                             "record is " + std::to_string(job.value.size()) +
                                                 " bytes, max_record_bytes is " + std::to_string(options.max_record_bytes),
                                             "", 1};
        return false;
      }
      auto decoded = decode_event(job.value);
      if (!decoded) {
        job.bad = detail::dead_letter_reason{decoded.error().code() == errc::decode_failed ? "deserialization" : "validation",
                                             decoded.error().to_string(), "", 1};
        return false;
      }
      job.ev = std::move(decoded).value();
      const auto handlers = registry->snapshot();
      // A record replayed for one handler (eventbus dlq replay --handler) runs only that one.
      const auto only = std::find_if(job.headers.begin(), job.headers.end(),
                                     [](const auto& h) { return h.first == replay_handler_header; });
      handlers->for_each_match(job.ev->event_type(), detail::event_access::data(*job.ev).type_hash,
                               [&](const detail::entry_ptr& h) {
                                 if (only == job.headers.end() || only->second == h->name)
                                   job.handlers.push_back({.handler = h});
                               });
      bool all_succeeded = true;
      for (auto& run : job.handlers) {
        call_handler(job, run);
        all_succeeded = all_succeeded && run.state == handler_state::succeeded;
      }
      return all_succeeded;
    } catch (const std::exception& e) {  // out of memory while decoding: treat as a bad record
      job.bad = detail::dead_letter_reason{"deserialization", message_text(e.what()), "", 1};
      return false;
    }
  }

  // On the consumer thread: the records before `done` are finished; the one at `done` (if any)
  // needs a retry or a dead letter; the rest go back to the head of the queue.
  void after_batch(const std::vector<job_ptr>& batch, std::size_t done) {
    if (batch.front()->abandoned) return;  // revoked meanwhile: the next owner gets them again
    const auto it = partitions.find(job_key(*batch.front()));
    if (it == partitions.end() || it->second.batch.empty() || it->second.batch.front() != batch.front()) return;
    auto& p = it->second;
    p.batch.clear();
    if (done > 0) {
      p.commit_next = batch[done - 1]->offset + 1;
      p.dirty = true;
      handled.fetch_add(done, std::memory_order_relaxed);
    }
    if (done == batch.size()) return start_next(p);
    p.queue.insert(p.queue.begin(), batch.begin() + static_cast<std::ptrdiff_t>(done + 1), batch.end());
    p.current = batch[done];
    if (p.current->bad) return dead_letter(p.current, *p.current->bad);
    after_attempt(p.current);
  }

  // Runs the handlers that are due, on the pool; the outcome comes back through post().
  void attempt(const job_ptr& job) {
    job->running = true;
    std::vector<detail::task_pool::task> task{[this, job] {
      const auto now = clock_type::now();
      for (auto& run : job->handlers) {
        if (run.state != handler_state::pending || run.next_try > now) continue;
        call_handler(*job, run);
      }
      post([this, job] { after_attempt(job); });
    }};
    (void)pool.push_all(task, std::chrono::milliseconds(0));  // at most one task per partition: always room
  }

  // One attempt through the middleware chain; the outcome decides the handler's state.
  void call_handler(const record_job& job, handler_run& run) noexcept {
    const detail::running_call call(*run.handler);
    if (!call.admitted()) {  // unsubscribed meanwhile: nothing left to run
      run.state = handler_state::succeeded;
      return;
    }
    ++run.attempts;
    const attempt_context ctx{.ev = *job.ev, .handler = run.handler->name, .attempt = run.attempts,
                              .topic = job.topic, .partition = job.partition, .offset = job.offset};
    attempt_outcome outcome;
    try {
      outcome = run_chain(chain, run.handler->fn, ctx);
    } catch (const std::exception& e) {  // only the outer pieces can get here (out of memory)
      outcome = {.result = attempt_result::retry, .error = message_text(e.what()), .retry_after = options.retry.max_backoff};
    }
    run.last_error = std::move(outcome.error);
    switch (outcome.result) {
      case attempt_result::succeeded: run.state = handler_state::succeeded; break;
      case attempt_result::dead_letter: run.state = handler_state::dead; break;
      case attempt_result::retry: run.next_try = clock_type::now() + outcome.retry_after; break;
    }
  }

  // timing -> retry -> recover -> the user's pieces -> handler. The timing piece feeds the stats.
  std::vector<middleware> build_chain() {
    std::vector<middleware> pieces{middlewares::timing([this](const attempt_context& ctx, const attempt_outcome& outcome,
                                                              std::chrono::nanoseconds took) {
                                     handler_calls.fetch_add(1, std::memory_order_relaxed);
                                     if (ctx.attempt > 1) retries.fetch_add(1, std::memory_order_relaxed);
                                     if (!options.metrics) return;
                                     options.metrics->observe_handler(ctx.handler, ctx.ev.event_type(),
                                                                      outcome.result == attempt_result::succeeded, took);
                                     if (ctx.attempt > 1) options.metrics->count_retry(ctx.handler, ctx.ev.event_type());
                                   }),
                                   middlewares::retry(options.retry), middlewares::recover()};
    pieces.insert(pieces.end(), options.middleware.begin(), options.middleware.end());
    return pieces;
  }

  void after_attempt(const job_ptr& job) {
    job->running = false;
    if (job->abandoned) return;
    std::optional<clock_type::time_point> next;
    for (auto& run : job->handlers) {
      if (run.state == handler_state::dead && !run.dead_letter_sent) {
        run.dead_letter_sent = true;
        dead_letter(job, {"handler-error", run.last_error, run.handler->name, run.attempts});
      } else if (run.state == handler_state::pending) {
        next = next ? std::min(*next, run.next_try) : run.next_try;
      }
    }
    if (next) {
      at(*next, [this, job] {
        if (!job->abandoned) attempt(job);
      });
    } else {
      finish_if_done(job);
    }
  }

  void finish_if_done(const job_ptr& job) {
    if (job->running || job->dead_letters_outstanding > 0) return;
    for (const auto& run : job->handlers)
      if (run.state == handler_state::pending) return;
    finish(job);
  }

  void finish(const job_ptr& job) {
    const auto it = partitions.find(job_key(*job));
    if (it == partitions.end() || it->second.current != job) return;  // revoked meanwhile
    auto& p = it->second;
    p.commit_next = job->offset + 1;
    p.dirty = true;
    p.current.reset();
    handled.fetch_add(1, std::memory_order_relaxed);
    start_next(p);
  }

  // --- dead letters

  void dead_letter(const job_ptr& job, const detail::dead_letter_reason& why) {
    ++job->dead_letters_outstanding;
    dead_letters.write(
        job, why, [job] { return job->abandoned; },
        [this, job, handler = why.handler, reason = std::string(why.reason)] {
          if (options.metrics) options.metrics->count_dead_letter(job->topic, handler, reason);
          --job->dead_letters_outstanding;
          finish_if_done(job);
        });
  }

  // --- timers (consumer thread only)

  void at(clock_type::time_point when, std::function<void()> fn) { timers.emplace(when, std::move(fn)); }

  void run_due_timers() {
    const auto now = clock_type::now();
    while (!timers.empty() && timers.begin()->first <= now) {
      auto fn = std::move(timers.begin()->second);
      timers.erase(timers.begin());
      if (!intake_closed) fn();
    }
  }

  // --- commits, pausing, rebalancing

  // eventbus_consumer_lag: records after the last finished one, from librdkafka's cached high
  // watermark (refreshed by every fetch response: no request of its own).
  void update_lag() {
    if (!options.metrics || clock_type::now() < next_lag_update) return;
    next_lag_update = clock_type::now() + std::chrono::seconds(2);
    for (const auto& [key, p] : partitions) {
      std::int64_t low = 0, high = 0;
      if (rd_kafka_get_watermark_offsets(consumer.get(), key.first.c_str(), key.second, &low, &high) != 0 || high < 0)
        continue;
      const auto done = p.commit_next >= 0 ? p.commit_next : p.first_seen;
      options.metrics->set_consumer_lag(key.first, key.second, std::max<std::int64_t>(0, high - done));
    }
  }

  void commit(bool synchronous) {
    if (!synchronous && clock_type::now() < next_commit) return;
    next_commit = clock_type::now() + options.commit_interval;
    rd_kafka_topic_partition_list_t* offsets = rd_kafka_topic_partition_list_new(8);
    for (auto& [key, p] : partitions) {
      if (!p.dirty) continue;
      rd_kafka_topic_partition_list_add(offsets, key.first.c_str(), key.second)->offset = p.commit_next;
      p.dirty = false;
    }
    if (offsets->cnt > 0) {
      const auto err = rd_kafka_commit(consumer.get(), offsets, synchronous ? 0 : 1);
      commits.fetch_add(1, std::memory_order_relaxed);
      if (synchronous && err && err != RD_KAFKA_RESP_ERR__NO_OFFSET) on_commit_result(consumer.get(), err, offsets, this);
    }
    rd_kafka_topic_partition_list_destroy(offsets);
  }

  void set_paused(const partition_key& key, partition_state& p, bool pause) {
    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, key.first.c_str(), key.second);
    (void)(pause ? rd_kafka_pause_partitions(consumer.get(), list) : rd_kafka_resume_partitions(consumer.get(), list));
    rd_kafka_topic_partition_list_destroy(list);
    p.paused = pause;
  }

  static partition_key job_key(const record_job& job) { return {job.topic, job.partition}; }

  // Result of an asynchronous commit, served by consumer_poll on the consumer thread. A position
  // that failed to commit is marked dirty again, so the next commit carries it.
  static void on_commit_result(rd_kafka_t*, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* offsets,
                               void* opaque) noexcept {
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR__NO_OFFSET || offsets == nullptr) return;
    auto& self = *static_cast<impl*>(opaque);
    for (int i = 0; i < offsets->cnt; ++i) {
      const auto& e = offsets->elems[i];
      const auto it = self.partitions.find({e.topic, e.partition});
      if (it != self.partitions.end() && it->second.commit_next == e.offset) it->second.dirty = true;
    }
    detail::log(log_level::warn, "worker: offset commit failed, will retry: " + detail::kafka_error_text(err));
  }

  static void on_rebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* list,
                           void* opaque) noexcept {
    auto& self = *static_cast<impl*>(opaque);
    try {
      if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        rd_kafka_assign(rk, list);
        self.assigned.store(static_cast<std::size_t>(list->cnt));
        self.joined.store(true);
      } else {
        self.revoke(list);
        rd_kafka_assign(rk, nullptr);
        self.assigned.store(0);
      }
    } catch (const std::exception& e) {
      detail::log(log_level::error, std::string("worker: rebalance failed: ") + e.what());
      rd_kafka_assign(rk, nullptr);
    }
  }

  // Revocation: let running work on those partitions finish (bounded), commit it synchronously,
  // forget the rest (it was never committed, so the next owner gets it again).
  void revoke(const rd_kafka_topic_partition_list_t* list) {
    std::set<partition_key> revoked;
    for (int i = 0; i < list->cnt; ++i) revoked.insert({list->elems[i].topic, list->elems[i].partition});
    wait_until_settled([&](const partition_key& key) { return revoked.count(key) > 0; },
                       clock_type::now() + options.shutdown_timeout);
    commit(true);
    forget_partitions([&](const partition_key& key) { return revoked.count(key) > 0; });
  }

  // Drops the bookkeeping of the selected partitions; their unfinished records are abandoned
  // (never committed, so whoever owns the partition next receives them again).
  template <class Select>
  void forget_partitions(Select&& selected) {
    for (auto it = partitions.begin(); it != partitions.end();) {
      if (!selected(it->first)) {
        ++it;
        continue;
      }
      if (it->second.current) it->second.current->abandoned = true;
      for (auto& job : it->second.batch) job->abandoned = true;
      for (auto& job : it->second.queue) job->abandoned = true;
      it = partitions.erase(it);
    }
  }

  worker_options options;
  std::shared_ptr<detail::handler_registry> registry = std::make_shared<detail::handler_registry>();
  std::shared_ptr<embedded_broker> broker;  // outlives the clients
  std::vector<middleware> chain = build_chain();  // after `options`, read-only from then on
  detail::task_pool pool;
  detail::kafka_handle consumer;
  rd_kafka_queue_t* consumer_queue = nullptr;  // our reference to the consumer's queue, while started
  std::thread loop_thread;
  std::atomic<bool> stop_requested{false};

  std::mutex completions_mu;
  std::condition_variable completions_cv;
  std::vector<std::function<void()>> completions;
  bool consumer_ready = false;  // librdkafka queued something since the loop last emptied its queue
  static constexpr int max_records_per_turn = 1000;
  static constexpr std::size_t max_batch = 256;  // records per hand-off to the pool
  // Declared after the completion queue it posts to, so it is destroyed (and flushed) first.
  detail::dead_letter_writer dead_letters;

  // Consumer thread only:
  std::map<partition_key, partition_state> partitions;
  std::multimap<clock_type::time_point, std::function<void()>> timers;
  clock_type::time_point next_commit{};
  clock_type::time_point next_lag_update{};
  bool intake_closed = false;

  std::atomic<std::size_t> assigned{0};
  std::atomic<bool> joined{false};
  std::atomic<std::uint64_t> records{0}, handled{0}, handler_calls{0}, retries{0}, commits{0};
};

worker::worker(worker_options options) : impl_(std::make_unique<impl>(std::move(options))) {}

worker::~worker() { stop(); }

subscription worker::subscribe(std::string pattern, std::string handler_name, handler_fn fn) {
  const auto id = impl_->registry->add(std::move(pattern), std::move(handler_name), std::move(fn));
  return subscription(impl_->registry, id);
}

void worker::start() {
  if (impl_->loop_thread.joinable()) throw exception(error(errc::invalid_argument, "worker already started"));
  impl_->start();
}

void worker::stop() noexcept { impl_->stop(); }

std::size_t worker::assigned_partitions() const noexcept { return impl_->assigned.load(); }

bool worker::in_group() const noexcept { return impl_->joined.load() && !impl_->stop_requested.load(); }

worker_stats worker::stats() const noexcept {
  const auto& d = *impl_;
  return {.records = d.records.load(),
          .handled = d.handled.load(),
          .handler_calls = d.handler_calls.load(),
          .retries = d.retries.load(),
          .dead_letters = d.dead_letters.written(),
          .dlq_write_failures = d.dead_letters.failures(),
          .commits = d.commits.load()};
}

}  // namespace eventbus
