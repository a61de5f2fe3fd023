#include "kafka/record_producer.hpp"

#include <atomic>
#include <cstdlib>
#include <thread>

#include "kafka/kafka_client.hpp"
#include "kafka/producer_handles.hpp"

namespace eventbus::detail {

struct record_producer::impl {
  explicit impl(const kafka_options& options) {
    auto config = make_client_config(options, detail::client_role::producer, {{"enable.idempotence", "true"}, {"acks", "all"}});
    broker = std::move(config.broker);
    rd_kafka_conf_set_dr_msg_cb(config.conf.get(), [](rd_kafka_t*, const rd_kafka_message_t* msg, void*) noexcept {
      std::unique_ptr<completion> done(static_cast<completion*>(msg->_private));
      try {
        (*done)(msg->err);
      } catch (...) {
        // A completion must not unwind into librdkafka; the worker's completions do not throw.
      }
    });
    char text[32];
    size_t size = sizeof text;
    if (rd_kafka_conf_get(config.conf.get(), "message.max.bytes", text, &size) == RD_KAFKA_CONF_OK)
      max_record_bytes = std::strtoull(text, nullptr, 10);
    handles = std::make_unique<producer_handles>(std::move(config.conf));
    poller = std::thread([this] {
      while (!stopping.load(std::memory_order_relaxed)) {
        rd_kafka_poll(handles->current(), 50);
        handles->maintain();  // a fatal error (idempotence broken) gets a new producer, not a dead one
      }
    });
  }

  ~impl() {
    stopping.store(true);
    poller.join();
    rd_kafka_t* rk = handles->current();
    if (rd_kafka_flush(rk, 10'000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
      (void)rd_kafka_flush(rk, 5'000);  // serves the purged records' completions
    }
    handles->maintain();  // the last reports of replaced producers
  }

  std::shared_ptr<embedded_broker> broker;  // outlives the handle
  std::unique_ptr<producer_handles> handles;
  std::atomic<bool> stopping{false};
  std::thread poller;
  std::size_t max_record_bytes = 1'000'000;  // librdkafka's default message.max.bytes
};

record_producer::record_producer(const kafka_options& options) : impl_(std::make_unique<impl>(options)) {}
record_producer::~record_producer() = default;

void record_producer::produce(const std::string& topic, std::optional<std::string_view> key,
                              std::optional<std::string_view> value, const record_headers& headers, completion done) {
  kafka_headers hdrs(rd_kafka_headers_new(headers.size() + 1));
  for (const auto& [name, text] : headers)
    rd_kafka_header_add(hdrs.get(), name.c_str(), -1, text.data(), static_cast<ssize_t>(text.size()));
  auto owned = std::make_unique<completion>(std::move(done));
  rd_kafka_vu_t fields[6];
  fields[0].vtype = RD_KAFKA_VTYPE_TOPIC;
  fields[0].u.cstr = topic.c_str();
  fields[1].vtype = RD_KAFKA_VTYPE_KEY;
  fields[1].u.mem = {key ? const_cast<char*>(key->data()) : nullptr, key ? key->size() : 0};
  fields[2].vtype = RD_KAFKA_VTYPE_VALUE;
  fields[2].u.mem = {value ? const_cast<char*>(value->data()) : nullptr, value ? value->size() : 0};
  fields[3].vtype = RD_KAFKA_VTYPE_HEADERS;
  fields[3].u.headers = hdrs.get();
  fields[4].vtype = RD_KAFKA_VTYPE_OPAQUE;
  fields[4].u.ptr = owned.get();
  fields[5].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
  fields[5].u.i = RD_KAFKA_MSG_F_COPY;
  const kafka_error failure(rd_kafka_produceva(impl_->handles->current(), fields, 6));
  if (!failure) {
    (void)hdrs.release();
    (void)owned.release();
    return;
  }
  (*owned)(rd_kafka_error_code(failure.get()));
}

std::size_t record_producer::max_record_bytes() const noexcept { return impl_->max_record_bytes; }

bool record_producer::flush(std::chrono::milliseconds timeout) {
  return rd_kafka_flush(impl_->handles->current(), static_cast<int>(timeout.count())) == RD_KAFKA_RESP_ERR_NO_ERROR;
}

}  // namespace eventbus::detail
