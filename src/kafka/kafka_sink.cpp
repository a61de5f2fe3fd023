#include "eventbus/kafka/kafka_sink.hpp"

#include "eventbus/metrics.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "envelope/event_data.hpp"
#include "kafka/kafka_client.hpp"
#include "support/log.hpp"
#include "kafka/mirror_record.hpp"
#include "kafka/producer_handles.hpp"
#include "kafka/sink_access.hpp"
#include "kafka/topic_cache.hpp"

namespace eventbus {
namespace {

using clock = std::chrono::steady_clock;

// One produced record, from producev() until its delivery report: the event's id (for an error
// naming it), the caller's future state or callback, all in one allocation. Not the event: its
// bytes are copied into librdkafka's own record (one allocation with it), so the event, with its
// payload tree, is freed as soon as the caller lets it go, while it is still in the cache. Kept
// alive to the report, a publisher building each event kept up to a full queue of them (100,000 by
// default, each with its payload tree) and freed each cold: building and publishing ran 0.65 of a
// raw loop, 0.80 with the copy (bench/README.md).
struct pending_record final : detail::delivery_state {
  explicit pending_record(const event& ev, std::function<void(result<delivery>)> cb = {})
      : pending_record(std::string_view(ev.event_id()), std::move(cb)) {}
  pending_record(std::string_view id, std::function<void(result<delivery>)> cb) : callback(std::move(cb)) {
    // A UUID: 36 characters (checked when the event was made).
    id_size = static_cast<std::uint8_t>(std::min(id.size(), sizeof id_text));
    std::memcpy(id_text, id.data(), id_size);
  }
  [[nodiscard]] std::string_view event_id() const noexcept { return {id_text, id_size}; }

  char id_text[36];
  std::uint8_t id_size = 0;
  std::function<void(result<delivery>)> callback;  // produce(): called instead of settling a future
  std::shared_ptr<pending_record> self;             // librdkafka's reference, until the report

  void complete(result<delivery> outcome) noexcept {
    if (!callback) return settle(std::move(outcome));
    try {
      callback(std::move(outcome));
    } catch (const std::exception& e) {
      detail::log(log_level::error, std::string("kafka sink: delivery callback threw: ") + e.what());
    } catch (...) {
      detail::log(log_level::error, "kafka sink: delivery callback threw");
    }
  }
};

error delivery_error(rd_kafka_resp_err_t err, std::string_view event_id, std::string_view topic, rd_kafka_t* producer) {
  const std::string what =
      "event " + std::string(event_id) + " to '" + std::string(topic) + "': " + detail::kafka_error_text(err);
  // The producer itself is broken for good (idempotence lost): retrying on it never helps. The sink
  // replaces it; publishing the event again is the caller's call (it may then come after later ones).
  if (err == RD_KAFKA_RESP_ERR__FATAL || detail::producer_handles::is_fatal(producer))
    return {errc::producer_failed, "the Kafka producer hit a fatal error and was replaced; not delivered: " + what};
  switch (err) {
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
      return {errc::timed_out, "not acknowledged within message.timeout.ms: " + what};
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
      return {errc::queue_full, "local producer queue full: " + what};
    case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
    case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT:
      return {errc::delivery_failed, "not delivered before the sink closed: " + what};
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
      return {errc::rejected_by_broker, what};
    default:
      return {errc::delivery_failed, what};
  }
}

void add_header(rd_kafka_headers_t* headers, const char* name, std::string_view value) {
  rd_kafka_header_add(headers, name, -1, value.data(), static_cast<ssize_t>(value.size()));
}

}  // namespace

struct kafka_sink::impl {
  explicit impl(producer_options opts) : options(std::move(opts)), topics(options.topic_prefix) {
    options.validate();
    auto config = detail::make_client_config(options.kafka, detail::client_role::producer, {{"enable.idempotence", "true"}, {"acks", "all"}});
    broker = std::move(config.broker);
    bootstrap = std::move(config.bootstrap_servers);
    rd_kafka_conf_set_opaque(config.conf.get(), this);
    rd_kafka_conf_set_dr_msg_cb(config.conf.get(), &impl::on_delivery_report);
    handles = std::make_unique<detail::producer_handles>(std::move(config.conf));
    poller = std::thread([this] {
      pthread_setname_np(pthread_self(), "eventbus-poll");
      poll_loop();
    });
  }

  ~impl() {
    stopping.store(true);
    if (poller.joinable()) poller.join();
  }

  // librdkafka's delivery report, exactly one per produced record, on whichever thread polls.
  static void on_delivery_report(rd_kafka_t* rk, const rd_kafka_message_t* msg, void* opaque) noexcept {
    auto& self = *static_cast<impl*>(opaque);
    // Take over librdkafka's reference: the record is freed here unless a future still holds it.
    const std::shared_ptr<pending_record> pending = std::move(static_cast<pending_record*>(msg->_private)->self);
    if (self.options.metrics) self.options.metrics->count_published(rd_kafka_topic_name(msg->rkt), msg->err == 0);
    if (msg->err) {
      self.failed.fetch_add(1, std::memory_order_relaxed);
      auto err = delivery_error(msg->err, pending->event_id(), rd_kafka_topic_name(msg->rkt), rk);
      self.log_failure(err);
      pending->complete(std::move(err));
    } else {
      self.delivered.fetch_add(1, std::memory_order_relaxed);
      pending->complete(delivery{.sink = "kafka",
                                 .topic = rd_kafka_topic_name(msg->rkt),
                                 .partition = msg->partition,
                                 .offset = msg->offset});
    }
    if (self.in_flight.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      const std::lock_guard lock(self.mu);
      self.drained.notify_all();
    }
  }

  // Delivery reports are served by publishers themselves (rd_kafka_poll(0) after each produce, as a
  // hand-written producer loop does) while they are busy, and by this thread when they are not:
  // a second thread serving reports under load competes for the cores with librdkafka's own.
  void poll_loop() {
    constexpr auto publisher_check_interval = std::chrono::milliseconds(5);
    std::uint64_t seen_publisher_polls = ~std::uint64_t{0};
    auto next_gauge = clock::now();
    while (!stopping.load(std::memory_order_relaxed)) {
      handles->maintain();  // a fatal error (idempotence broken) gets a new producer, not a dead one
      look_up_new_topics();
      if (options.metrics && clock::now() >= next_gauge) {
        options.metrics->set_producer_queue(rd_kafka_outq_len(handles->current()));
        next_gauge = clock::now() + std::chrono::seconds(1);
      }
      const auto polls = publisher_polls.load(std::memory_order_relaxed);
      if (polls != seen_publisher_polls) {  // publishers polled since the last look: they are busy
        seen_publisher_polls = polls;
        std::this_thread::sleep_for(publisher_check_interval);
        continue;
      }
      (void)rd_kafka_poll(handles->current(), 50);
    }
  }

  // The topic of an event of these types, about to be produced to; the first time, its metadata
  // is asked for at once (below). Not for check(): a name only validated is never looked up.
  result<const std::string*> topic_to_send(std::string_view aggregate_type, std::string_view event_type,
                                           std::size_t type_hash, std::string& scratch) {
    bool first_send = false;
    auto topic = topics.topic_of(aggregate_type, event_type, type_hash, scratch, &first_send);
    if (first_send) {
      {
        const std::lock_guard lock(lookup_mu);
        new_topics.push_back(*topic.value());
      }
      rd_kafka_yield(handles->current());  // the poll thread may be in a 50 ms poll: look now
    }
    return topic;
  }

  // librdkafka looks up a topic it has no metadata for once a second (its topic scan), so the
  // first record to each new topic waited about a second (measured: 989 ms against 5 ms for the
  // next; librdkafka#3202 gives this workaround). Asking for the topic's metadata right away makes
  // it a round trip. On the poll thread: a broker that does not answer holds it up to the timeout,
  // delaying only delivery reports that cannot come from that broker anyway.
  void look_up_new_topics() {
    std::vector<std::string> names;
    {
      const std::lock_guard lock(lookup_mu);
      names.swap(new_topics);
    }
    for (const auto& name : names) {
      rd_kafka_t* producer = handles->current();
      rd_kafka_topic_t* rkt = rd_kafka_topic_new(producer, name.c_str(), nullptr);
      if (rkt == nullptr) continue;
      const rd_kafka_metadata_t* md = nullptr;
      const auto err = rd_kafka_metadata(producer, 0, rkt, &md, topic_lookup_timeout_ms);
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR) rd_kafka_metadata_destroy(md);
      rd_kafka_topic_destroy(rkt);
      // No answer: the cluster is away, and librdkafka's own scan finds the rest once it is back.
      // One timeout per batch of new names, not one each.
      if (err != RD_KAFKA_RESP_ERR_NO_ERROR) break;
    }
  }

  void produce(const event& ev, const std::shared_ptr<pending_record>& pending) {
    const auto& d = detail::event_access::data(ev);
    produce(detail::record_fields_of(d), d.type_hash, pending);
  }

  void produce(const detail::record_fields& record, std::size_t type_hash, const std::shared_ptr<pending_record>& pending) {
    std::string uncached;
    auto topic = topic_to_send(record.aggregate_type, record.event_type, type_hash, uncached);
    if (!topic) return pending->complete(topic.error());
    const std::string& name = *topic.value();

    detail::kafka_headers headers(rd_kafka_headers_new(6));
    detail::for_each_record_header(record, [&](const char* header, std::string_view value) { add_header(headers.get(), header, value); });

    // The value copied into librdkafka's record (see pending_record); the key always is.
    rd_kafka_vu_t fields[6];
    fields[0].vtype = RD_KAFKA_VTYPE_TOPIC;
    fields[0].u.cstr = name.c_str();
    fields[1].vtype = RD_KAFKA_VTYPE_KEY;
    fields[1].u.mem = {const_cast<char*>(record.aggregate_id.data()), record.aggregate_id.size()};
    fields[2].vtype = RD_KAFKA_VTYPE_VALUE;
    fields[2].u.mem = {const_cast<char*>(record.value.data()), record.value.size()};
    fields[3].vtype = RD_KAFKA_VTYPE_HEADERS;
    fields[3].u.headers = headers.get();
    fields[4].vtype = RD_KAFKA_VTYPE_OPAQUE;
    fields[4].u.ptr = pending.get();
    fields[5].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
    fields[5].u.i = RD_KAFKA_MSG_F_COPY;

    std::optional<clock::time_point> deadline;  // read the clock only when the queue is full
    in_flight.fetch_add(1, std::memory_order_relaxed);
    // librdkafka's reference to the record, until on_delivery_report. Taken before the produce:
    // another thread polling can serve the report before produceva has even returned here.
    pending->self = pending;
    for (;;) {
      rd_kafka_t* producer = handles->current();
      const rd_kafka_resp_err_t err = produce_once(producer, fields);
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        (void)headers.release();  // librdkafka owns them now
        // Serve ready delivery reports here, as a hand-written producer loop does: cheaper than
        // waking the poll thread for each batch (which only covers the times nobody publishes).
        rd_kafka_poll(producer, 0);
        // Only "it changed" matters to the poll thread: a plain store, no read-modify-write.
        publisher_polls.store(publisher_polls.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        return;
      }
      if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL && !deadline) deadline = clock::now() + options.enqueue_timeout;
      if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || clock::now() >= *deadline) {
        pending->self.reset();  // not produced: no report will come
        in_flight.fetch_sub(1, std::memory_order_relaxed);
        failed.fetch_add(1, std::memory_order_relaxed);
        auto failure = delivery_error(err, pending->event_id(), name, producer);
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
          failure = error(errc::queue_full, "librdkafka's local queue stayed full for " +
                                                std::to_string(options.enqueue_timeout.count()) +
                                                " ms (raise queue.buffering.max.messages or slow down): " +
                                                failure.message());
        log_failure(failure);
        return pending->complete(std::move(failure));
      }
      queue_full_waits.fetch_add(1, std::memory_order_relaxed);
      wait_for_room(*deadline);
    }
  }

  rd_kafka_resp_err_t produce_once(rd_kafka_t* producer, const rd_kafka_vu_t (&fields)[6]) {
    const detail::kafka_error failure(rd_kafka_produceva(producer, fields, 6));
    return failure ? rd_kafka_error_code(failure.get()) : RD_KAFKA_RESP_ERR_NO_ERROR;
  }

  // Room appears as delivery reports are served: serve them here while waiting, as a hand-written
  // producer loop does, rather than sleeping until the poll thread gets to them.
  void wait_for_room(clock::time_point deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
    (void)rd_kafka_poll(handles->current(), static_cast<int>(std::clamp<std::int64_t>(left.count(), 0, 10)));
    publisher_polls.store(publisher_polls.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }

  result<void> flush(std::chrono::milliseconds timeout) {
    const auto deadline = clock::now() + timeout;
    (void)rd_kafka_flush(handles->current(), static_cast<int>(timeout.count()));
    // rd_kafka_flush returns once the reports are queued; wait until our callbacks have run too.
    std::unique_lock lock(mu);
    drained.wait_until(lock, deadline, [&] { return in_flight.load() == 0; });
    if (const auto left = in_flight.load(); left > 0)
      return error(errc::timed_out, std::to_string(left) + " events not yet delivered after " +
                                        std::to_string(timeout.count()) + " ms");
    return {};
  }

  // Failures are reported to each publisher; the log gets the first and then one line a second.
  void log_failure(const error& err) noexcept {
    const auto now = clock::now().time_since_epoch().count();
    auto last = last_failure_log.load(std::memory_order_relaxed);
    const auto second = std::chrono::duration_cast<clock::duration>(std::chrono::seconds(1)).count();
    if (now - last < second || !last_failure_log.compare_exchange_strong(last, now)) return;
    try {
      detail::log(log_level::warn, "kafka sink: delivery failed (" + std::to_string(failed.load()) +
                                       " failures so far): " + err.to_string());
    } catch (...) {
    }
  }

  void close() noexcept {
    try {
      if (flush(options.close_timeout)) return;
      const auto undelivered = in_flight.load();
      rd_kafka_purge(handles->current(), RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
      // Purged records still get their (failed) delivery report: wait for all of them.
      (void)flush(std::chrono::seconds(10));
      detail::log(log_level::error, "kafka sink closed with " + std::to_string(undelivered) +
                                        " events undelivered after close_timeout; each of their publishes "
                                        "reported a failed delivery");
    } catch (...) {
    }
  }

  producer_options options;
  detail::topic_cache topics;
  std::shared_ptr<embedded_broker> broker;  // declared before the handle: outlives it
  std::string bootstrap;
  std::unique_ptr<detail::producer_handles> handles;
  std::thread poller;
  std::atomic<bool> stopping{false};

  std::mutex mu;
  std::condition_variable drained;
  std::atomic<std::int64_t> in_flight{0};
  std::atomic<std::uint64_t> delivered{0};
  std::atomic<std::uint64_t> failed{0};
  std::atomic<std::uint64_t> queue_full_waits{0};
  std::atomic<clock::rep> last_failure_log{0};
  std::atomic<std::uint64_t> publisher_polls{0};
  std::mutex lookup_mu;
  std::vector<std::string> new_topics;  // names seen for the first time, for the poll thread to look up
  static constexpr int topic_lookup_timeout_ms = 500;
};

kafka_sink::kafka_sink(producer_options options) : impl_(std::make_unique<impl>(std::move(options))) {}

kafka_sink::~kafka_sink() { impl_->close(); }

result<void> kafka_sink::check(const event& ev) const {
  std::string uncached;
  auto topic = impl_->topics.topic_of(ev, uncached);
  if (!topic) return topic.error();
  return {};
}

delivery_future kafka_sink::accept(const event& ev) {
  auto pending = std::make_shared<pending_record>(ev);
  impl_->produce(ev, pending);
  return delivery_future(std::move(pending));
}

void kafka_sink::produce(const event& ev, std::function<void(result<delivery>)> on_delivery) {
  impl_->produce(ev, std::make_shared<pending_record>(ev, std::move(on_delivery)));
}

void detail::sink_access::produce(kafka_sink& sink, const record_fields& record,
                                  std::function<void(result<delivery>)> on_delivery) {
  sink.impl_->produce(record, event_type_hash(record.event_type),
                      std::make_shared<pending_record>(record.event_id, std::move(on_delivery)));
}

result<void> kafka_sink::flush(std::chrono::milliseconds timeout) { return impl_->flush(timeout); }

std::size_t kafka_sink::outstanding() const noexcept {
  return static_cast<std::size_t>(std::max<std::int64_t>(0, impl_->in_flight.load()));
}

bool kafka_sink::connected(std::chrono::milliseconds timeout) const {
  rd_kafka_t* producer = impl_->handles->current();
  if (detail::producer_handles::is_fatal(producer)) return false;  // until it is replaced
  detail::kafka_metadata md;
  return rd_kafka_metadata(producer, 0, nullptr, detail::out_ptr(md), static_cast<int>(timeout.count())) ==
         RD_KAFKA_RESP_ERR_NO_ERROR;
}

kafka_sink_stats kafka_sink::stats() const noexcept {
  return {.delivered = impl_->delivered.load(),
          .failed = impl_->failed.load(),
          .queue_full_waits = impl_->queue_full_waits.load(),
          .producer_replacements = impl_->handles->replacements()};
}

const std::string& kafka_sink::bootstrap_servers() const noexcept { return impl_->bootstrap; }

}  // namespace eventbus
