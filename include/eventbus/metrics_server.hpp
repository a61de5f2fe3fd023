#pragma once
// Serves the metrics over HTTP for Prometheus to scrape, and the health endpoints orchestrators
// probe:
//   GET /metrics  Prometheus text format (0.0.4) of the registry
//   GET /healthz  200 "ok" while the process serves requests
//   GET /readyz   200 "ready" when every readiness check passes, else 503 naming the ones failing
//   GET /handlers JSON: every handler of the dispatchers and workers added with add_handlers, with
//                 its patterns, condition, middleware, calls in flight and totals (docs/metrics.md;
//                 `eventbus handlers --url` prints it as a table)
//
//   #include <eventbus/kafka/worker.hpp>
//   auto m = std::make_shared<eventbus::metrics>();
//   eventbus::worker w({.group_id = "billing", .topics = {"^app\\.order\\..*"}, .metrics = m});
//   eventbus::metrics_server server(m, "0.0.0.0:9464");
//   server.add_readiness_check("worker", [&] { return w.in_group(); });
//   server.add_handlers("worker billing", [&] { return w.handlers(); });

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "eventbus/handler_options.hpp"
#include "eventbus/metrics.hpp"

namespace eventbus {

inline constexpr const char* default_metrics_listen = "127.0.0.1:9464";

/// True when `listen` has the form metrics_server accepts: "host:port", port a number up to 65535.
/// Configuration checks it with this before anything is started.
[[nodiscard]] bool is_valid_metrics_listen(std::string_view listen) noexcept;

class metrics_server {
 public:
  /// Starts serving on `listen` ("host:port"; port 0 picks a free one). Throws eventbus::exception
  /// (errc::invalid_argument, field "listen") when the address is malformed or cannot be bound.
  explicit metrics_server(std::shared_ptr<metrics> source, const std::string& listen = default_metrics_listen);
  ~metrics_server();
  metrics_server(const metrics_server&) = delete;
  metrics_server& operator=(const metrics_server&) = delete;

  /// The port actually bound.
  [[nodiscard]] std::uint16_t port() const noexcept;

  /// /readyz is 200 only while every check returns true. Checks must be quick and must not throw
  /// (a throw counts as not ready). Thread-safe.
  void add_readiness_check(std::string name, std::function<bool()> check);

  /// /handlers lists what `source` returns (dispatcher::handlers, worker::handlers) under
  /// `component`. Sources must be quick; one that throws is listed with its error. Thread-safe.
  /// What a source reads must outlive the server: declare the server after it.
  void add_handlers(std::string component, std::function<std::vector<handler_info>()> source);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace eventbus
