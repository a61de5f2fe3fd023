#include "kafka/producer_handles.hpp"

#include "kafka/kafka_client.hpp"
#include "support/log.hpp"

namespace eventbus::detail {

producer_handles::producer_handles(kafka_conf conf) : template_(rd_kafka_conf_dup(conf.get())) {
  handles_.push_back(make_handle(RD_KAFKA_PRODUCER, std::move(conf)));
  current_.store(handles_.back().get(), std::memory_order_release);
}

bool producer_handles::is_fatal(rd_kafka_t* rk) noexcept {
  return rd_kafka_fatal_error(rk, nullptr, 0) != RD_KAFKA_RESP_ERR_NO_ERROR;
}

void producer_handles::maintain() noexcept {
  rd_kafka_t* broken = current();
  char why[512] = "";
  if (const auto err = rd_kafka_fatal_error(broken, why, sizeof why); err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    try {
      handles_.push_back(make_handle(RD_KAFKA_PRODUCER, kafka_conf(rd_kafka_conf_dup(template_.get()))));
      current_.store(handles_.back().get(), std::memory_order_release);
      replacements_.fetch_add(1, std::memory_order_relaxed);
      rd_kafka_purge(broken, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
      log(log_level::error, std::string("kafka producer hit a fatal error (") + rd_kafka_err2name(err) + ": " + why +
                                "); its undelivered records failed, and a new producer takes the next ones");
    } catch (const std::exception& e) {  // could not make one now: the next call tries again
      log(log_level::error, std::string("kafka producer hit a fatal error and could not be replaced: ") + e.what());
    }
  }
  for (std::size_t i = 0; i + 1 < handles_.size(); ++i)
    if (rd_kafka_outq_len(handles_[i].get()) > 0) (void)rd_kafka_poll(handles_[i].get(), 0);
}

}  // namespace eventbus::detail
