#pragma once
// Every librdkafka handle eventbus holds, behind a unique_ptr with a one-line deleter. All C interop
// types live here, so ownership is visible at a glance and nothing is freed twice or leaked.

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <memory>
#include <string>

#include "worker/held_message.hpp"

namespace eventbus::detail {

struct kafka_handle_deleter {
  void operator()(rd_kafka_t* rk) const noexcept { rd_kafka_destroy(rk); }
};
struct kafka_conf_deleter {
  void operator()(rd_kafka_conf_t* conf) const noexcept { rd_kafka_conf_destroy(conf); }
};
struct kafka_headers_deleter {
  void operator()(rd_kafka_headers_t* headers) const noexcept { rd_kafka_headers_destroy(headers); }
};
struct kafka_message_deleter {
  void operator()(rd_kafka_message_t* msg) const noexcept { rd_kafka_message_destroy(msg); }
};
struct kafka_mock_cluster_deleter {
  void operator()(rd_kafka_mock_cluster_t* cluster) const noexcept { rd_kafka_mock_cluster_destroy(cluster); }
};
struct kafka_partition_list_deleter {
  void operator()(rd_kafka_topic_partition_list_t* list) const noexcept { rd_kafka_topic_partition_list_destroy(list); }
};
struct kafka_metadata_deleter {
  void operator()(const rd_kafka_metadata_t* md) const noexcept { rd_kafka_metadata_destroy(md); }
};
struct kafka_queue_deleter {
  void operator()(rd_kafka_queue_t* queue) const noexcept { rd_kafka_queue_destroy(queue); }
};
struct kafka_group_list_deleter {
  void operator()(const rd_kafka_group_list* groups) const noexcept { rd_kafka_group_list_destroy(groups); }
};
struct kafka_error_deleter {
  void operator()(rd_kafka_error_t* err) const noexcept { rd_kafka_error_destroy(err); }
};

using kafka_handle = std::unique_ptr<rd_kafka_t, kafka_handle_deleter>;
using kafka_conf = std::unique_ptr<rd_kafka_conf_t, kafka_conf_deleter>;
using kafka_headers = std::unique_ptr<rd_kafka_headers_t, kafka_headers_deleter>;
using kafka_message = std::unique_ptr<rd_kafka_message_t, kafka_message_deleter>;
using kafka_mock_cluster = std::unique_ptr<rd_kafka_mock_cluster_t, kafka_mock_cluster_deleter>;
using kafka_partition_list = std::unique_ptr<rd_kafka_topic_partition_list_t, kafka_partition_list_deleter>;
using kafka_metadata = std::unique_ptr<const rd_kafka_metadata_t, kafka_metadata_deleter>;
using kafka_queue = std::unique_ptr<rd_kafka_queue_t, kafka_queue_deleter>;  // a reference, e.g. rd_kafka_queue_get_consumer's
using kafka_group_list = std::unique_ptr<const rd_kafka_group_list, kafka_group_list_deleter>;
using kafka_error = std::unique_ptr<rd_kafka_error_t, kafka_error_deleter>;

/// A consumed message as the worker's records hold it (without librdkafka's header).
[[nodiscard]] inline held_message hold(kafka_message msg) noexcept {
  return held_message(msg.release(), held_message_deleter{[](rd_kafka_message_t* m) noexcept { kafka_message_deleter{}(m); }});
}

/// A new, empty partition list with room for `size` entries.
[[nodiscard]] inline kafka_partition_list make_partition_list(int size) {
  return kafka_partition_list(rd_kafka_topic_partition_list_new(size));
}

/// For librdkafka's out-parameters (`T** out`), as C++23's std::out_ptr: `out_ptr(handle)` passes the
/// address of a raw pointer, and the handle takes over whatever librdkafka stored there once the call's
/// full expression ends, so nothing it hands out is left unowned, on any path. Not before: read the
/// handle in a later statement, never in the expression that calls.
template <class Handle>
class out_ptr_t {
 public:
  explicit out_ptr_t(Handle& owner) noexcept : owner_(owner) {}
  ~out_ptr_t() { owner_.reset(raw_); }
  out_ptr_t(const out_ptr_t&) = delete;
  out_ptr_t& operator=(const out_ptr_t&) = delete;
  operator typename Handle::pointer*() noexcept { return &raw_; }  // NOLINT(google-explicit-constructor)

 private:
  Handle& owner_;
  typename Handle::pointer raw_ = nullptr;
};
template <class Handle>
[[nodiscard]] out_ptr_t<Handle> out_ptr(Handle& owner) noexcept {
  return out_ptr_t<Handle>(owner);
}

/// Sets one property; throws eventbus::exception (errc::invalid_argument, field = the property) with
/// librdkafka's own explanation when it refuses it.
void set_property(rd_kafka_conf_t* conf, const std::string& name, const std::string& value);

/// Creates a client handle from `conf`, which it takes over on success (and destroys on failure).
/// Throws eventbus::exception with librdkafka's reason.
[[nodiscard]] kafka_handle make_handle(rd_kafka_type_t type, kafka_conf conf);

}  // namespace eventbus::detail
