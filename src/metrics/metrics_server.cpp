#include "eventbus/metrics_server.hpp"

#include <CivetServer.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <nlohmann/json.hpp>

#include <charconv>
#include <exception>
#include <functional>
#include <mutex>
#include <sstream>
#include <thread>
#include <utility>
#include <vector>

#include "eventbus/error.hpp"

namespace eventbus {
namespace {

void reply(mg_connection* conn, int status, std::string_view content_type, std::string_view body) {
  mg_printf(conn,
            "HTTP/1.1 %d %s\r\nContent-Type: %.*s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", status,
            mg_get_response_code_text(conn, status), static_cast<int>(content_type.size()), content_type.data(),
            body.size());
  mg_write(conn, body.data(), body.size());
}

}  // namespace

// "host:port" with a numeric port; civetweb takes IPv4 as "a.b.c.d:port".
bool is_valid_metrics_listen(std::string_view listen) noexcept {
  // One address only: civetweb would also take a list ("a:1,b:2") or flags ("9464s"), which would
  // open ports nobody configured on purpose.
  if (listen.find_first_of(", \t") != std::string_view::npos) return false;
  const auto colon = listen.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == listen.size()) return false;
  unsigned port = 0;
  const auto* first = listen.data() + colon + 1;
  const auto [ptr, ec] = std::from_chars(first, listen.data() + listen.size(), port);
  return ec == std::errc{} && ptr == listen.data() + listen.size() && port <= 65535;
}

struct metrics_server::impl : CivetHandler {
  impl(std::shared_ptr<metrics> m, const std::string& listen) : source(std::move(m)) {
    if (!source) throw exception(error(errc::invalid_argument, "needs a metrics object", "metrics"));
    if (!is_valid_metrics_listen(listen))
      throw exception(error(errc::invalid_argument, "'" + listen + "' is not host:port", "listen"));
    try {
      // Probes must answer within a second while idle or half-open connections hold threads (a
      // liveness probe that times out restarts the process). civetweb gives each connection a
      // thread until its request is complete: with 16 threads and a 2 s request timeout, 200 idle
      // connections held a probe for 25 s. Now 128 threads and 500 ms (a scraper's request takes
      // microseconds on any network it should be on), and queues deep enough that a probe behind
      // them is still accepted: 200 idle connections delay it by one timeout at most.
      server = std::make_unique<CivetServer>(std::vector<std::string>{
          "listening_ports", listen, "num_threads", "128", "request_timeout_ms", "500", "enable_keep_alive", "no",
          "connection_queue", "1024", "listen_backlog", "1024"});
    } catch (const CivetException& e) {
      throw exception(error(errc::invalid_argument, "cannot listen on " + listen + ": " + e.what(), "listen"));
    }
    for (const char* uri : {"/metrics", "/healthz", "/readyz", "/handlers"}) server->addHandler(uri, this);
  }

  ~impl() override {
    if (server) server->close();  // stops the threads before the handler (this) goes away
  }

  bool handleGet(CivetServer*, mg_connection* conn) override {
    const std::string_view uri = mg_get_request_info(conn)->local_uri;
    if (uri == "/metrics") {
      std::ostringstream out;
      prometheus::TextSerializer().Serialize(out, source->registry().Collect());
      reply(conn, 200, "text/plain; version=0.0.4; charset=utf-8", out.str());
    } else if (uri == "/handlers") {
      std::string page;
      try {
        page = on_full_stack([this] { return handlers_json(); });
      } catch (const std::exception& e) {  // no thread to be had: civetweb would not catch it, and the process would end
        reply(conn, 503, "text/plain", std::string("cannot build the handlers page now: ") + e.what() + "\n");
        return true;
      }
      reply(conn, 200, "application/json", page);
    } else if (uri == "/healthz") {
      reply(conn, 200, "text/plain", "ok\n");
    } else {
      std::string failing;
      {
        const std::lock_guard lock(checks_mu);
        for (const auto& [name, check] : checks) {
          bool ok = false;
          try {
            ok = check();
          } catch (...) {
          }
          if (!ok) failing += (failing.empty() ? "" : ", ") + name;
        }
      }
      if (failing.empty())
        reply(conn, 200, "text/plain", "ready\n");
      else
        reply(conn, 503, "text/plain", "not ready: " + failing + "\n");
    }
    return true;
  }

  // civetweb's threads have 100 KB stacks (Debian builds it with civetweb's default stack size).
  // nlohmann's serializer recurses with large frames when built without optimisation under ASan
  // (a user's debug build, or our test programs', whose copies of the templates the linker may
  // pick): it overflowed one. The page is built on a thread with the system's stack instead; it
  // is a troubleshooting page, so a thread per request costs nothing that matters.
  static std::string on_full_stack(const std::function<std::string()>& build) {
    std::string page;
    std::exception_ptr failure;
    std::thread([&] {
      try {
        page = build();
      } catch (...) {
        failure = std::current_exception();
      }
    }).join();
    if (failure) std::rethrow_exception(failure);
    return page;
  }

  std::string handlers_json() {
    auto rows = nlohmann::json::array();
    std::vector<std::pair<std::string, std::function<std::vector<handler_info>()>>> sources;
    {
      const std::lock_guard lock(checks_mu);
      sources = handler_sources;
    }
    auto errors = nlohmann::json::array();
    for (const auto& [component, list] : sources) {
      try {
        for (const auto& h : list())
          rows.push_back({{"component", component}, {"name", h.name},         {"patterns", h.patterns},
                          {"condition", h.has_condition}, {"max_events", h.max_events}, {"middleware", h.middleware}, {"in_flight", h.in_flight},
                          {"calls", h.calls},           {"failures", h.failures}, {"filtered", h.filtered}});
      } catch (const std::exception& e) {
        errors.push_back({{"component", component}, {"error", e.what()}});
      }
    }
    nlohmann::json page{{"handlers", std::move(rows)}};
    if (!errors.empty()) page["errors"] = std::move(errors);
    // Names and patterns are validated text, but a handler name may hold any bytes: never throw on them.
    return page.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  }

  std::shared_ptr<metrics> source;
  std::vector<std::pair<std::string, std::function<std::vector<handler_info>()>>> handler_sources;
  std::mutex checks_mu;
  std::vector<std::pair<std::string, std::function<bool()>>> checks;
  std::unique_ptr<CivetServer> server;
};

metrics_server::metrics_server(std::shared_ptr<metrics> source, const std::string& listen)
    : impl_(std::make_unique<impl>(std::move(source), listen)) {}

metrics_server::~metrics_server() = default;

std::uint16_t metrics_server::port() const noexcept {
  const auto ports = impl_->server->getListeningPorts();
  return ports.empty() ? 0 : static_cast<std::uint16_t>(ports.front());
}

void metrics_server::add_readiness_check(std::string name, std::function<bool()> check) {
  const std::lock_guard lock(impl_->checks_mu);
  impl_->checks.emplace_back(std::move(name), std::move(check));
}

void metrics_server::add_handlers(std::string component, std::function<std::vector<handler_info>()> source) {
  if (!source) throw exception(error(errc::invalid_argument, "needs a function listing handlers", "source"));
  const std::lock_guard lock(impl_->checks_mu);
  impl_->handler_sources.emplace_back(std::move(component), std::move(source));
}

}  // namespace eventbus
