// The worker engine: the consumer loop and the decisions about records. One consumer thread owns
// all bookkeeping; the rooms around it each own their part of it:
//   work_scheduler     lanes, windows and commit points (what may run, what is finished)
//   pool_handoff       the task pool: batches and retry attempts on it, overdue calls taken back
//   partition_control  the consumer's side: rebalances, commits, pausing, gauges
//   dead_letter_writer dead-letter writes; timer_queue backoffs
// Pool threads and the dead-letter producer hand their outcome back through one completion queue
// (completion_queue.hpp), run on the consumer thread. So no bookkeeping state is shared between
// threads, and every decision about a record (retry, dead letter, timeout, finished) is taken here.

#include "eventbus/kafka/worker.hpp"

#include <algorithm>
#include <atomic>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include "kafka/kafka_client.hpp"
#include "support/log.hpp"
#include "support/utf8.hpp"
#include "worker/dead_letter_writer.hpp"
#include "worker/parking.hpp"
#include "worker/partition_control.hpp"
#include "worker/pool_handoff.hpp"
#include "worker/timer_queue.hpp"
#include "worker/topic_tiers.hpp"
#include "worker/work_scheduler.hpp"

namespace eventbus {
namespace {

using clock_type = detail::worker_clock;
using detail::handler_state;
using detail::job_ptr;
using detail::partition_work;
using detail::pool_side;
using detail::record_job;

}  // namespace

struct worker::impl {
  explicit impl(worker_options opts)
      : side(std::make_shared<pool_side>(std::move(opts))), options(side->options),
        handoff(side, {.progress = [this](detail::work_batch& b) { work.collect_finished(b); },
                       .returned = [this](detail::work_batch& b, std::optional<std::size_t> hung) { returned(b, hung); }}),
        dead_letters(options.kafka, options.group_id, options.dlq_suffix, [this](std::chrono::milliseconds delay, std::function<void()> fn) {
          post([this, delay, fn = std::move(fn)]() mutable {
            if (delay.count() == 0) return fn();
            at(clock_type::now() + delay, std::move(fn));
          });
        }) {
    auto config = detail::make_client_config(options.kafka, detail::client_role::consumer, {{"group.id", options.group_id},
                        {"enable.auto.commit", "false"},  // we commit finished records only
                        {"enable.auto.offset.store", "false"},
                        {"auto.offset.reset", "earliest"},
                        {"enable.partition.eof", "false"}});
    broker = std::move(config.broker);
    partitions.attach(config.conf.get());  // rebalances and commit results go to partition_control
    consumer = detail::make_handle(RD_KAFKA_CONSUMER, std::move(config.conf));
    rd_kafka_poll_set_consumer(consumer.get());
    if (!options.priority_tiers.empty()) {
      auto tiers = std::make_shared<detail::topic_tiers>(detail::topic_tiers::make(options.priority_tiers).value());
      work.use_tiers({.count = tiers->count(),
                      .tier_of = [tiers](const std::string& topic) { return tiers->of(topic); },
                      .lower_share_percent = options.lower_tier_share_percent});
      tier_last_record.assign(tiers->count(), clock_type::time_point{});
    }
    if (!options.retry.durable_stages.empty()) {
      auto rows = detail::parked_records::open(options.parking_store);
      if (!rows) throw exception(rows.error());
      parked = std::make_unique<detail::parking>(std::move(rows).value(), options.group_id, options.retry.durable_stages);
      partitions.on_assigned = [this](const std::string& topic, std::int32_t partition) { load_parked(topic, partition); };
      partitions.on_forgotten = [this](const std::set<detail::partition_key>* forgotten) { forget_parked(forgotten); };
      // A revocation waits for parked records running on the pool, as for any record started:
      // their outcome is written before the next owner reads the rows.
      partitions.also_busy = [this](const std::set<detail::partition_key>* only) {
        return std::any_of(running_parked.begin(), running_parked.end(), [&](const job_ptr& job) {
          return (job->running || job->dead_letters_outstanding > 0) &&
                 (only == nullptr || only->contains({job->topic, job->partition}));
        });
      };
    }
  }

  // --- threads

  void start() {
    const auto topics = detail::make_partition_list(static_cast<int>(options.topics.size()));
    for (const auto& t : options.topics) rd_kafka_topic_partition_list_add(topics.get(), t.c_str(), RD_KAFKA_PARTITION_UA);
    if (const auto err = rd_kafka_subscribe(consumer.get(), topics.get()))
      throw exception(error(errc::invalid_argument, "cannot subscribe: " + detail::kafka_error_text(err), "topics"));
    // librdkafka tells us (from its own thread) when records or rebalance events arrive on an empty
    // queue, so the loop sleeps on one condition variable for records, completions and timers alike.
    consumer_queue.reset(rd_kafka_queue_get_consumer(consumer.get()));  // a new reference, ours to release
    rd_kafka_queue_cb_event_enable(consumer_queue.get(), &impl::on_consumer_queue_ready, &side->completions);
    loop_thread = std::thread([this] {
      pthread_setname_np(pthread_self(), "eventbus-worker");
      run_loop();
    });
  }

  void stop() noexcept {
    side->stop_requested.store(true);
    side->completions.post([] {});  // wakes a loop waiting for completions
    // From a handler (a pool thread) or the loop itself: only ask. Waiting here would wait for the
    // very call that asked; the loop finishes stopping once it returns.
    if (handoff.on_pool_thread() || std::this_thread::get_id() == loop_thread.get_id()) return;
    const std::lock_guard lock(join_mu);  // stop() from several threads: one joins, all return after
    if (loop_thread.joinable()) loop_thread.join();
  }

  void run_loop() noexcept {
    try {
      while (!side->stop_requested.load()) {
        if (!tier_last_record.empty()) turn_started = clock_type::now();
        side->completions.consumer_emptying();  // librdkafka wakes us again once the queue refills
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
        handoff.take_back_overdue();
        run_due_timers();
        run_parked_due();
        flush_parking();  // this turn's parking changes, one transaction
        dispatch();
        partitions.commit(false);
        partitions.update_gauges();
        publish_parked_counts();
        publish_in_group(in_group_now());
        if (!more) wait_for_work();
      }
    } catch (const std::exception& e) {
      detail::log(log_level::error, std::string("worker loop stopped: ") + e.what());
      side->stop_requested.store(true);
    }
    // Also after a failure: a loop that only stopped would leave the pool running and messages
    // held, and destroying the consumer would then wait for them forever.
    try {
      shut_down();
    } catch (const std::exception& e) {
      detail::log(log_level::error, std::string("worker shutdown failed: ") + e.what());
    }
  }

  static void on_consumer_queue_ready(rd_kafka_t*, void* opaque) noexcept {
    static_cast<detail::completion_queue*>(opaque)->consumer_ready();
  }

  // Sleeps until records, a completion or a stop arrive, or the next timer or commit is due.
  void wait_for_work() {
    auto until = clock_type::now() + std::chrono::milliseconds(100);
    if (const auto due = timers.next_due()) until = std::min(until, *due);
    until = std::min(until, partitions.next_commit());  // only while a commit point moved
    if (lingering_until) until = std::min(until, *lingering_until);
    if (parked && !intake_closed && handoff.free_slots() > due_retries.size())  // else a free slot wakes the loop
      if (const auto due = parked->next_due())
        until = std::min(until, clock_type::now() + std::chrono::milliseconds(std::max<std::int64_t>(0, *due - wall_ms())));
    side->completions.wait_for_work(until, side->stop_requested);
  }

  // Bounded by shutdown_timeout, whatever handlers do: records still running when it passes are
  // left uncommitted (redelivered to the next owner), and their threads are left to finish alone.
  void shut_down() {
    intake_closed = true;
    publish_in_group(false);
    const auto deadline = clock_type::now() + options.shutdown_timeout;
    handoff.stop_all();  // finish the record at hand, start no other
    partitions.release_all(deadline);
    publish_parked_counts(true);  // 0: a stopped worker holds nothing parked
    rd_kafka_queue_cb_event_enable(consumer_queue.get(), nullptr, nullptr);
    rd_kafka_consumer_close(consumer.get());
    consumer_queue.reset();
    const auto left = std::max(clock_type::duration::zero(), deadline - clock_type::now());
    const auto detached = handoff.close_and_join(std::chrono::duration_cast<std::chrono::milliseconds>(left));
    // Destroying a client waits for every message it handed out, so none may be left where no one
    // frees it: in batches this side still counts, or in completions no loop will run (a thread
    // returning late posts its batch here; from now on that post is dropped on its own thread).
    handoff.forget_batches();
    side->completions.close();
    if (detached > 0) {
      detail::log(log_level::error, "worker: " + std::to_string(detached) +
                                        " handler call(s) still running after shutdown_timeout; their threads are "
                                        "left to finish on their own and their records will be redelivered");
      // Their records hold messages too: the (closed) consumer, and the broker it talks to, go
      // when the last such thread returns, or the worker's destructor would wait for the calls.
      struct client_and_broker {  // members go in reverse order: the client before its broker
        std::shared_ptr<embedded_broker> broker;
        detail::kafka_handle consumer;
      };
      handoff.keep_until_threads_exit(
          std::make_shared<client_and_broker>(client_and_broker{std::move(broker), std::move(consumer)}));
    }
  }

  // Ready to handle: in the group, not stopping, and not every slot held by a call past its timeout.
  bool in_group_now() const noexcept {
    return partitions.joined() && !side->stop_requested.load() && handoff.hung_calls() < options.max_concurrency;
  }

  // eventbus_worker_in_group: this worker's +1 while it is in, taken back when it is not.
  void publish_in_group(bool in) {
    if (!options.metrics || in == counted_in_group) return;
    options.metrics->add_worker_in_group(options.group_id, in ? 1 : -1);
    counted_in_group = in;
  }

  // --- completions: the only way other threads talk to the consumer thread

  void post(std::function<void()> fn) { side->completions.post(std::move(fn)); }
  void drain_completions() { side->completions.drain(); }

  // --- records

  void on_message(rd_kafka_message_t* raw) {
    detail::kafka_message msg(raw);
    if (msg->err) {
      if (msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
        detail::log(log_level::warn, "worker: consumer error: " + detail::kafka_error_text(msg->err));
      return;
    }
    records.fetch_add(1, std::memory_order_relaxed);
    auto& p = work.partition(rd_kafka_topic_name(msg->rkt), msg->partition);
    if (p.finished.contains(msg->offset)) {  // an earlier owner finished it (commit metadata)
      work.add_finished(p, msg->offset);
      skipped.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    auto job = std::make_shared<record_job>();
    job->topic = p.topic;
    job->partition = msg->partition;
    job->offset = msg->offset;
    job->null_key = msg->key == nullptr;
    job->null_value = msg->payload == nullptr;
    if (msg->key) job->key.assign(static_cast<const char*>(msg->key), msg->key_len);
    // Value and headers stay in librdkafka's message, held until the record is finished: no copy,
    // and headers are parsed only if someone asks (a replay's handler, a dead letter).
    job->message = detail::hold(std::move(msg));
    if (options.metrics) options.metrics->count_consumed(job->topic);
    if (parked) {
      const detail::partition_key where{p.topic, p.partition};
      switch (parked->on_arrival(where, job->key, job->offset)) {
        case detail::parking::arrival::finished_before:  // parked already, or finished before its key was
          work.add_finished(p, job->offset);
          skipped.fetch_add(1, std::memory_order_relaxed);
          return;
        case detail::parking::arrival::park_behind: {  // written with the turn's others (flush_parking)
          work.add_unlaned(p, job);
          auto row = row_of(*job, 0, 0);
          parked->note(where, row, false);  // the key's next records park behind it, written or not
          job->release_bytes();  // the row holds them: let librdkafka's fetch buffer go
          to_park_behind.emplace_back(std::move(job), std::move(row));
          // Unfinished until written: while the store cannot be written, the window fills and pauses.
          if (!p.paused && p.window.size() >= window_limit(p)) partitions.set_paused(p, true);
          return;
        }
        case detail::parking::arrival::runs: break;
      }
    }
    work.add(p, std::move(job));
    if (!tier_last_record.empty()) tier_last_record[p.tier] = turn_started;
    if (!p.paused && p.window.size() >= window_limit(p)) partitions.set_paused(p, true);
  }

  // lower_tier_share_percent of n, without overflow for any n.
  std::size_t share_of(std::size_t n) const {
    const std::size_t share = options.lower_tier_share_percent;
    return n / 100 * share + n % 100 * share / 100;
  }

  // A partition's window: the whole of max_buffered_per_partition, or only the tier share of it
  // while a more urgent tier is busy (fetching records of this one would only queue them).
  std::size_t window_limit(const partition_work& p) const {
    if (p.tier == 0 || tier_last_record.empty()) return options.max_buffered_per_partition;
    for (std::size_t more_urgent = 0; more_urgent < p.tier; ++more_urgent)
      if (work.unfinished_in_tier(more_urgent) > 0 || turn_started - tier_last_record[more_urgent] < tier_busy_hold)
        return std::max<std::size_t>(2, share_of(options.max_buffered_per_partition));
    return options.max_buffered_per_partition;
  }

  // Starts what may start: due retries first, then batches of ready lanes, while slots are free.
  void dispatch() {
    if (intake_closed) return;
    while (handoff.free_slots() > 0 && !due_retries.empty()) {
      auto job = std::move(due_retries.front());
      due_retries.pop_front();
      if (!job->abandoned && (job->parked_stage || !job->owner->partition->revoking)) handoff.attempt(job);
    }
    // Batch handlers want what is ready in few hand-offs (a call takes only its hand-off's
    // records): one at a time, as large as the largest batch handler takes.
    const std::size_t batch_handler_max = side->runner.batching() ? side->runner.registry().largest_batch() : 0;
    lingering_until.reset();
    if (!work.has_ready()) {
      filling_since.reset();
    } else if (batch_handler_max > 1 && work.ready_records() < batch_handler_max) {
      // Fewer ready than a batch takes: let more arrive, up to the batch handlers' max_wait.
      const auto wait = side->runner.registry().batch_wait();
      const auto now = clock_type::now();
      if (!filling_since) filling_since = now;
      if (wait.count() > 0 && now < *filling_since + wait) {
        lingering_until = *filling_since + wait;  // wait_for_work wakes the loop then
        return;
      }
    }
    while (handoff.free_slots() > 0 && work.has_ready()) {
      filling_since.reset();
      auto batch = batch_handler_max > 1
                       ? work.take(1, std::max(handoff.batch_limit(), batch_handler_max))
                       : work.take(handoff.free_slots(), handoff.batch_limit());
      if (!batch.jobs.empty()) handoff.run(std::move(batch));  // else it skipped revoking lanes only
    }
  }

  // Back from the pool, or taken back from it (`hung`: the record still running). A retry attempt
  // is one record; a batch's lanes are settled by the scheduler, and what stopped one decided here.
  void returned(detail::work_batch& batch, std::optional<std::size_t> hung) {
    if (batch.retry) {
      const job_ptr& job = batch.jobs[0];
      if (!hung) return after_attempt(job);
      job->running = false;
      return time_out(job);
    }
    if (hung && batch.batch_call.load(std::memory_order_relaxed)) {
      // A batch handler's call of several records overran handler_timeout: no one record can be
      // blamed. They all go back to their lanes, to be called one at a time, where the one that
      // hangs is timed out alone.
      for (record_job* job : batch.call_members) job->call_alone = true;
      hung.reset();
    }
    std::vector<detail::work_scheduler::held_record> held;
    work.settle(batch, hung, held);
    for (const auto& [job, overran] : held) {
      if (overran)
        time_out(job);
      else if (job->bad)
        dead_letter(job, *job->bad);
      else
        after_attempt(job);
    }
  }

  // Records whose handlers ran past handler_timeout (taken from their threads by the hand-off) are
  // dead-lettered with reason "timeout" (for every handler: the later ones never ran), so their
  // key, their partition's commits and the window move on. A worker whose every slot is held by
  // such calls reports itself not ready.
  void time_out(const job_ptr& job) {
    job->hung = true;
    if (job->abandoned) return;
    dead_letter(job, {"timeout",
                      "handlers did not return within handler_timeout (" +
                          std::to_string(options.handler_timeout.count()) +
                          " ms); the call was left running and its outcome is ignored",
                      "", 1});
  }

  void after_attempt(const job_ptr& job) {
    job->running = false;
    if (job->abandoned) return;
    // A parked record in its last stage, or a worker without stages: spent attempts dead-letter.
    const bool may_park =
        parked && (!job->parked_stage || static_cast<std::size_t>(*job->parked_stage) < parked->stage_count());
    std::optional<clock_type::time_point> next;
    for (auto& run : job->handlers) {
      if (run.state == handler_state::dead && !run.dead_letter_sent && run.retries_exhausted && may_park) {
        run.state = handler_state::parked;  // parked once no other handler of it is pending (held_done)
      } else if (run.state == handler_state::dead && !run.dead_letter_sent) {
        run.dead_letter_sent = true;
        dead_letter(job, {run.dead_letter_reason.empty() ? std::string_view("handler-error") : run.dead_letter_reason,
                          run.last_error, run.handler->name, run.attempts - job->parked_attempts_added});
      } else if (run.state == handler_state::pending) {
        next = next ? std::min(*next, run.next_try) : run.next_try;
      }
    }
    if (next) {
      at(*next, [this, job] {
        if (!job->abandoned) due_retries.push_back(job);  // started by dispatch() when a slot is free
      });
    } else {
      held_done(job);
    }
  }

  // A held record's retries and dead letters may be over: finished, or parked when a handler of it
  // spent its attempts (durable stages), or (a parked record run from the store) settled there.
  void held_done(const job_ptr& job) {
    if (job->parked_stage) return parked_settle(job);
    // Timed out: its dead letter covered every handler, and its handlers belong to its thread.
    if (job->hung) return work.finish_held(job);
    const bool to_park = parked && std::any_of(job->handlers.begin(), job->handlers.end(), [](const auto& run) {
                           return run.state == handler_state::parked;
                         });
    if (!to_park) return work.finish_held(job);
    if (job->abandoned || job->running || job->dead_letters_outstanding > 0 || job->park_queued) return;
    for (const auto& run : job->handlers)
      if (run.state == handler_state::pending) return;
    park_head(job);
  }

  // Every handler succeeded or was dead-lettered (told by the scheduler): the record may be
  // committed once the ones before it in its partition are finished too.
  void on_finished(partition_work& p) {
    handled.fetch_add(1, std::memory_order_relaxed);
    if (p.paused && p.window.size() <= window_limit(p) / 2) partitions.set_paused(p, false);
  }

  // --- durable stages (worker/parking.hpp): parking, and running what is parked

  static std::int64_t wall_ms() { return now_ms().time_since_epoch().count(); }
  static constexpr std::int64_t store_retry_ms = 1000;  // a failed write to the parking store is tried again after

  // Before any record of the partition is looked at. Without its parked keys, a record of a
  // parked key would overtake the ones parked before it; so this waits for the store.
  void load_parked(const std::string& topic, std::int32_t partition) {
    for (int tries = 1;; ++tries) {
      auto loaded = parked->load(topic, partition);
      if (loaded) return;
      detail::log(log_level::error, "worker: cannot read the records parked for " + topic + "[" + std::to_string(partition) +
                                        "] (" + loaded.error().to_string() + "); trying again");
      if (side->stop_requested.load()) throw exception(loaded.error());
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min<std::int64_t>(store_retry_ms, 100LL * tries)));
    }
  }

  void forget_parked(const std::set<detail::partition_key>* forgotten) {
    flush_parking(true);  // what ran before the revocation is in the store for the next owner
    const auto forgotten_here = [&](const job_ptr& job) {
      return forgotten == nullptr || forgotten->contains({job->topic, job->partition});
    };
    // Not written (the store failed): the next owner runs them again from the rows as they are.
    std::erase_if(settling, [&](const settled_run& r) { return forgotten_here(r.job); });
    std::erase_if(running_parked, [&](const job_ptr& job) {
      if (forgotten && !forgotten->contains({job->topic, job->partition})) return false;
      job->abandoned = true;  // its outcome is the next owner's to decide: it reads the store
      return true;
    });
    if (!forgotten) return parked->forget_all();
    for (const auto& p : *forgotten) parked->forget(p);
  }

  detail::parked_record row_of(const record_job& job, int stage, std::int64_t due_ms) const {
    detail::parked_record row;
    row.group = options.group_id;
    row.topic = job.topic;
    row.partition = job.partition;
    row.offset = job.offset;
    row.key = job.key;
    row.null_key = job.null_key;
    row.value = std::string(job.value());
    row.null_value = job.null_value;
    row.headers = job.headers();
    row.stage = stage;
    row.due_ms = due_ms;
    row.parked_ms = wall_ms();
    return row;
  }

  // The turn's parking changes in one transaction (one commit, one fsync): records of parked keys
  // (noted unwritten as they came), records parked with the ones waiting behind them, parked
  // records that ran (deleted, or moved to their next stage). Only once it is written does any of
  // it take effect: records finish in their partitions, parked records become due, a key's next
  // record runs. A failed write is tried again a second later with whatever came meanwhile; the
  // loop goes on (the records wait unfinished, holding their partitions' commit points and
  // windows, and their keys' parked records do not run before them). `now_anyway`: also while
  // waiting for that retry (a revocation writes what it can first).
  void flush_parking(bool now_anyway = false) {
    if (!parked || (park_retry_at && !now_anyway)) return;
    std::erase_if(to_park_behind, [](const auto& waiting) { return waiting.first->abandoned; });  // revoked meanwhile
    std::erase_if(heads_to_park, [](const head_to_park& h) { return h.head->abandoned; });
    std::erase_if(settling, [](const settled_run& r) { return r.job->abandoned; });
    if (to_park_behind.empty() && heads_to_park.empty() && settling.empty()) return;
    std::vector<detail::parked_record> added, rescheduled;
    std::vector<detail::parked_records::position> removed;
    for (const auto& waiting : to_park_behind) added.push_back(waiting.second);
    for (const auto& h : heads_to_park) added.insert(added.end(), h.rows.begin(), h.rows.end());
    for (const auto& r : settling) {
      if (r.next_stage)
        rescheduled.push_back(*r.next_stage);
      else
        removed.push_back({r.job->topic, r.job->partition, r.job->offset});
    }
    if (auto written = parked->rows().apply(options.group_id, added, rescheduled, removed); !written) {
      detail::log(log_level::error, "worker: cannot write " + std::to_string(added.size() + rescheduled.size() + removed.size()) +
                                        " change(s) to the parked records (" + written.error().to_string() +
                                        "); trying again in " + std::to_string(store_retry_ms) + " ms");
      if (park_retry_at) return;
      park_retry_at = clock_type::now() + std::chrono::milliseconds(store_retry_ms);
      return at(*park_retry_at, [this] {
        park_retry_at.reset();
        flush_parking();
      });
    }
    for (auto& [job, row] : to_park_behind) {
      parked->written({job->topic, job->partition}, row.key, row.offset);
      work.finish(*work_partition(*job), *job);
    }
    to_park_behind.clear();
    for (auto& h : heads_to_park) {
      const detail::partition_key where{h.head->topic, h.head->partition};
      for (const auto& row : h.rows) parked->written(where, row.key, row.offset);
      auto& p = *h.head->owner->partition;
      for (const auto& behind : h.behind) work.finish(p, *behind);
      work.finish_held(h.head);
    }
    heads_to_park.clear();
    for (auto& r : settling) {
      const detail::partition_key where{r.job->topic, r.job->partition};
      if (r.next_stage)
        parked->head_again(where, r.job->key, *r.next_stage);
      else
        parked->head_done(where, r.job->key, r.job->offset);
    }
    settling.clear();
  }

  detail::partition_work* work_partition(const record_job& job) { return &work.partition(job.topic, job.partition); }

  // A record whose handlers (those not done) spent their in-memory attempts: parked at stage 1
  // with the records waiting behind it in its lane (stage 0), then all finished in the partition.
  void park_head(const job_ptr& job) {
    auto head = row_of(*job, 1, wall_ms() + parked->delay_of(1).count());
    for (const auto& run : job->handlers) {
      if (run.state != handler_state::parked) continue;
      head.pending.push_back(run.handler->name);
      head.attempts = std::max(head.attempts, run.attempts);
      head.reason = failure_text(run.last_error);
    }
    std::vector<detail::parked_record> rows{head};
    for (const auto& waiting : job->owner->waiting) {
      auto row = row_of(*waiting, 0, 0);
      // A batch handler may have run it ahead of its pass: what succeeded does not run again.
      // (Not prepared yet: every handler, the empty list.)
      for (const auto& run : waiting->handlers)
        if (run.state != handler_state::succeeded) row.pending.push_back(run.handler->name);
      const bool nothing_left = waiting->ev.has_value() && !waiting->handlers.empty() && row.pending.empty();
      if (!nothing_left) rows.push_back(std::move(row));  // else it is finished below with the others
    }
    // Noted now (the key's next records park behind these), in effect once written (flush_parking).
    const detail::partition_key where{job->topic, job->partition};
    for (const auto& row : rows) parked->note(where, row, false);
    job->park_queued = true;
    heads_to_park.push_back({job, std::move(rows), work.take_waiting(*job->owner)});
  }

  // A parked record's failure as a row keeps it: valid UTF-8 (PostgreSQL's TEXT refuses anything
  // else) and bounded, as a dead letter's error header.
  static std::string failure_text(std::string_view error) {
    return detail::truncate_utf8(detail::sanitize_utf8(error), detail::max_dlq_error_bytes);
  }

  // Due parked records, as many as handler slots are free; the rest wait for the next turn. A
  // store that cannot be read stops this turn's starts (each would wait for it again).
  void run_parked_due() {
    if (!parked || intake_closed || handoff.free_slots() <= due_retries.size()) return;
    auto due = parked->take_due(wall_ms(), handoff.free_slots() - due_retries.size());
    for (std::size_t i = 0; i < due.size(); ++i) {
      if (start_parked(due[i])) continue;
      for (std::size_t later = i + 1; later < due.size(); ++later)
        parked->head_retry_at(due[later].partition, due[later].key, due[later].offset, wall_ms() + store_retry_ms);
      return;
    }
  }

  // A parked record whose time came: read from the store and run like a retry attempt, with only
  // the handlers it is parked for, as their last in-memory attempt (one call; failing it is the
  // stage failing).
  // False when the store could not be read (the head is due again a little later).
  bool start_parked(const detail::parking::head& head) {
    const auto& [topic, partition] = head.partition;
    auto read = parked->rows().one(options.group_id, topic, partition, head.offset);
    if (!read) {
      detail::log(log_level::warn, "worker: cannot read parked record " + topic + "[" + std::to_string(partition) + "]@" +
                                       std::to_string(head.offset) + " (" + read.error().to_string() + "); trying again");
      parked->head_retry_at(head.partition, head.key, head.offset, wall_ms() + store_retry_ms);
      return false;
    }
    if (!read.value()) {  // gone from the store (deleted by hand): nothing to run
      parked->head_done(head.partition, head.key, head.offset);
      return true;
    }
    auto& row = *read.value();
    auto job = std::make_shared<record_job>();
    job->topic = row.topic;
    job->partition = row.partition;
    job->offset = row.offset;
    job->key = row.key;
    job->null_key = row.null_key;
    job->owned_value = std::move(row.value);
    job->null_value = row.null_value;
    job->owned_headers = std::move(row.headers);
    job->parked_stage = head.stage;
    running_parked.push_back(job);
    if (!side->runner.prepare(*job)) {
      dead_letter(job, *job->bad);
      return true;
    }
    if (!head.pending.empty())
      std::erase_if(job->handlers, [&](const detail::handler_progress& run) {
        return std::find(head.pending.begin(), head.pending.end(), run.handler->name) == head.pending.end();
      });
    // One call, as the policy's last attempt (the retry piece then reports a failure as spent);
    // dead letters and rows count the calls really made.
    const int shown = std::max(row.attempts, options.retry.max_attempts - 1);
    job->parked_attempts_added = shown - row.attempts;
    for (auto& run : job->handlers) run.attempts = shown;
    if (job->handlers.empty()) {  // its handlers were unsubscribed
      parked_settle(job);
      return true;
    }
    due_retries.push_back(job);
    return true;
  }

  // A parked record's run is over (handlers done, dead letters written): its row is deleted and
  // its key's next parked record runs, or it moves on to the next stage.
  void parked_settle(const job_ptr& job) {
    if (job->abandoned || job->running || job->dead_letters_outstanding > 0) return;
    if (std::find(running_parked.begin(), running_parked.end(), job) == running_parked.end()) return;  // settled already
    std::vector<std::string> failed;
    int attempts = 0;
    std::string reason;
    if (!job->hung) {
      for (const auto& run : job->handlers) {
        if (run.state == handler_state::pending) return;
        if (run.state != handler_state::parked) continue;
        failed.push_back(run.handler->name);
        attempts = std::max(attempts, run.attempts - job->parked_attempts_added);
        reason = failure_text(run.last_error);
      }
    }
    std::optional<detail::parked_record> next_stage;
    if (!failed.empty()) {
      detail::parked_record row;
      row.group = options.group_id;
      row.topic = job->topic;
      row.partition = job->partition;
      row.offset = job->offset;
      row.key = job->key;
      row.stage = *job->parked_stage + 1;
      row.due_ms = wall_ms() + parked->delay_of(row.stage).count();
      row.pending = std::move(failed);
      row.attempts = attempts;
      row.reason = std::move(reason);
      next_stage = std::move(row);
    }
    std::erase(running_parked, job);
    settling.push_back({job, std::move(next_stage)});  // written, then in effect, by flush_parking
  }

  // Every 200 ms, as the load gauges: worker_stats and the eventbus_worker_parked_* series of every
  // topic held (a topic whose partitions went elsewhere drops to 0 here).
  void publish_parked_counts(bool now_anyway = false) {
    if (!parked) return;
    const auto now = clock_type::now();
    if (now < next_parked_update && !now_anyway) return;
    next_parked_update = now + std::chrono::milliseconds(200);
    const auto all = parked->count();
    parked_records.store(all.records, std::memory_order_relaxed);
    parked_keys.store(all.keys, std::memory_order_relaxed);
    if (!options.metrics) return;
    std::set<std::string> topics = std::exchange(parked_topics_reported, {});
    for (const auto& [key, p] : work.partitions()) topics.insert(key.first);
    for (const auto& topic : topics) {
      const auto c = parked->count(topic);
      const double overdue = c.oldest_due_ms == 0 ? 0.0 : std::max<double>(0.0, static_cast<double>(wall_ms() - c.oldest_due_ms) / 1000.0);
      options.metrics->set_worker_parked(options.group_id, topic, static_cast<std::int64_t>(c.records),
                                         static_cast<std::int64_t>(c.keys), overdue);
      if (c.records > 0) parked_topics_reported.insert(topic);
    }
  }

  // --- dead letters

  void dead_letter(const job_ptr& job, const detail::dead_letter_reason& why) {
    ++job->dead_letters_outstanding;
    dead_letters.write(
        job, why, [job] { return job->abandoned; },
        [this, job, handler = why.handler, reason = std::string(why.reason)](detail::dead_letter_outcome outcome) {
          if (options.metrics) {
            if (outcome == detail::dead_letter_outcome::dropped)
              options.metrics->count_dead_letter_dropped(job->topic, handler, reason);
            else
              options.metrics->count_dead_letter(job->topic, handler, reason);
          }
          --job->dead_letters_outstanding;
          held_done(job);
        });
  }

  // --- timers (consumer thread only)

  void at(clock_type::time_point when, std::function<void()> fn) { timers.at(when, std::move(fn)); }
  void run_due_timers() { timers.run_due(clock_type::now(), intake_closed); }

  std::shared_ptr<pool_side> side;  // first: holds the options everything else reads
  const worker_options& options;
  std::shared_ptr<embedded_broker> broker;  // outlives the clients
  detail::pool_handoff handoff;  // the task pool, and what runs on it
  detail::kafka_handle consumer;
  detail::kafka_queue consumer_queue;  // our reference to the consumer's queue, while started (after `consumer`: released first)
  std::thread loop_thread;
  std::mutex join_mu;
  static constexpr int max_records_per_turn = 1000;
  // Declared after the completion queue it posts to, so it is destroyed (and flushed) first.
  detail::dead_letter_writer dead_letters;

  // Consumer thread only:
  detail::work_scheduler work{options.ordering, detail::pool_handoff::max_batch, [this](partition_work& p) { on_finished(p); }};
  detail::partition_control partitions{consumer, work, handoff, *side};
  std::deque<job_ptr> due_retries;    // backoff over, waiting for a free slot
  std::unique_ptr<detail::parking> parked;  // with durable stages only
  std::vector<job_ptr> running_parked;      // parked records being run (forgotten with their partition)
  // Parking changes not written yet (flush_parking): records of parked keys; records parked with
  // those waiting behind them in their lane; parked records that ran (nullopt: done, deleted).
  std::vector<std::pair<job_ptr, detail::parked_record>> to_park_behind;
  struct head_to_park {
    job_ptr head;
    std::vector<detail::parked_record> rows;  // the head's, then those behind it that still have handlers to run
    std::vector<job_ptr> behind;              // taken from its lane: finished once written
  };
  std::vector<head_to_park> heads_to_park;
  struct settled_run {
    job_ptr job;
    std::optional<detail::parked_record> next_stage;
  };
  std::vector<settled_run> settling;
  std::optional<clock_type::time_point> park_retry_at;  // when flush_parking tries again after a failure
  std::set<std::string> parked_topics_reported;  // topics last reported with parked records
  clock_type::time_point next_parked_update{};
  detail::timer_queue timers;
  bool intake_closed = false;
  bool counted_in_group = false;  // what publish_in_group last added (consumer thread only)
  // Priority tiers (empty without): when each last fetched a record, as of the loop turn, and how
  // long a tier counts as busy after that (a steady stream with gaps between records stays busy).
  std::vector<clock_type::time_point> tier_last_record;
  // Batch handlers with max_wait: since when fewer records than a batch takes are ready, and
  // until when dispatch() lets them wait for more.
  std::optional<clock_type::time_point> filling_since, lingering_until;
  clock_type::time_point turn_started{};
  static constexpr std::chrono::seconds tier_busy_hold{1};

  std::atomic<std::uint64_t> records{0}, handled{0}, skipped{0};
  std::atomic<std::uint64_t> parked_records{0}, parked_keys{0};
};

worker::worker(worker_options options) : impl_(std::make_unique<impl>(std::move(options))) {}

worker::~worker() { stop(); }

subscription worker::subscribe(std::string pattern, std::string handler_name, handler_fn fn,
                               handler_options options) {
  const auto id = impl_->side->runner.registry().add(std::move(pattern), std::move(handler_name), std::move(fn),
                                                     std::move(options));
  return subscription(impl_->side->runner.shared_registry(), id);
}

subscription worker::subscribe_batch(std::string pattern, std::string handler_name, batch_handler_fn fn,
                                     batch_options options) {
  const auto id = impl_->side->runner.registry().add_batch(std::move(pattern), std::move(handler_name), std::move(fn),
                                                           std::move(options));
  return subscription(impl_->side->runner.shared_registry(), id);
}

std::vector<handler_info> worker::handlers() const { return impl_->side->runner.registry().describe(); }

void worker::start() {
  if (impl_->loop_thread.joinable()) throw exception(error(errc::invalid_argument, "worker already started"));
  if (!impl_->consumer)  // handed to a handler thread that outlived stop(): this worker is done
    throw exception(error(errc::invalid_argument, "worker was stopped and cannot start again: make a new one"));
  impl_->start();
}

void worker::stop() noexcept { impl_->stop(); }

std::size_t worker::assigned_partitions() const noexcept { return impl_->partitions.assigned(); }

bool worker::in_group() const noexcept { return impl_->in_group_now(); }

worker_stats worker::stats() const noexcept {
  const auto& d = *impl_;
  return {.records = d.records.load(),
          .handled = d.handled.load(),
          .skipped = d.skipped.load(),
          .handler_calls = d.side->runner.handler_calls(),
          .retries = d.side->runner.retries(),
          .dead_letters = d.dead_letters.written(),
          .dlq_write_failures = d.dead_letters.failures(),
          .dead_letters_dropped = d.dead_letters.dropped(),
          .commits = d.partitions.commits(),
          .in_flight = d.partitions.in_flight(),
          .waiting_on_key = d.partitions.waiting_on_key(),
          .paused_partitions = d.partitions.paused_partitions(),
          .hung_calls = d.handoff.hung_calls(),
          .parked_records = d.parked_records.load(std::memory_order_relaxed),
          .parked_keys = d.parked_keys.load(std::memory_order_relaxed)};
}

}  // namespace eventbus
