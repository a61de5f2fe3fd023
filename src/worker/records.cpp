// consumed_record (records.hpp): value and headers read from librdkafka's message while it is held.

#include "worker/records.hpp"

#include "kafka/rdkafka_handles.hpp"

namespace eventbus::detail {

std::string_view consumed_record::value() const noexcept {
  if (!message) return owned_value;
  return message->payload ? std::string_view(static_cast<const char*>(message->payload), message->len)
                          : std::string_view("", 0);  // a tombstone: empty, but never a null pointer
}

std::optional<std::string_view> consumed_record::header(std::string_view name) const {
  if (!message) {
    for (auto it = owned_headers.rbegin(); it != owned_headers.rend(); ++it)
      if (it->first == name) return std::string_view(it->second);
    return std::nullopt;
  }
  rd_kafka_headers_t* all = nullptr;
  if (rd_kafka_message_headers(message.get(), &all) != RD_KAFKA_RESP_ERR_NO_ERROR) return std::nullopt;
  const std::string wanted(name);  // librdkafka wants a C string
  const void* value = nullptr;
  size_t size = 0;
  if (rd_kafka_header_get_last(all, wanted.c_str(), &value, &size) != RD_KAFKA_RESP_ERR_NO_ERROR) return std::nullopt;
  return value ? std::string_view(static_cast<const char*>(value), size) : std::string_view();
}

record_headers consumed_record::headers() const {
  if (!message) return owned_headers;
  record_headers out;
  rd_kafka_headers_t* all = nullptr;
  if (rd_kafka_message_headers(message.get(), &all) != RD_KAFKA_RESP_ERR_NO_ERROR) return out;
  const char* name = nullptr;
  const void* value = nullptr;
  size_t size = 0;
  for (size_t i = 0; rd_kafka_header_get_all(all, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; ++i)
    out.emplace_back(name, value ? std::string(static_cast<const char*>(value), size) : std::string());
  return out;
}

void consumed_record::own_bytes() {
  if (!message) return;
  owned_value.assign(value());
  owned_headers = headers();
  message.reset();
}

}  // namespace eventbus::detail
