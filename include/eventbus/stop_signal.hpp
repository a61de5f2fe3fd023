#pragma once
// Graceful shutdown for service and worker processes: SIGINT or SIGTERM asks the process to stop;
// it then stops its workers (which finish in-flight handlers, commit and leave the group).
//
//   #include <eventbus/kafka/worker.hpp>
//   eventbus::watch_stop_signals();     // first: a signal while the worker starts is not lost
//   eventbus::worker w({.group_id = "billing", .topics = {"^app\\.order\\..*"}});
//   auto sub = w.subscribe("order.created", "charge", [](const eventbus::event&) { /* ... */ });
//   w.start();
//   eventbus::wait_for_stop_signal();   // Ctrl-C, `kill`, `docker stop`, Kubernetes pod shutdown
//   w.stop();
//
// Or, for a loop of your own: eventbus::watch_stop_signals() first, then check stop_requested().

namespace eventbus {

/// Installs handlers for SIGINT and SIGTERM (once; later calls do nothing). From then on a stop
/// signal is remembered instead of ending the process. Works whatever other threads exist and
/// whatever their signal masks. Call it early, before a signal could arrive.
void watch_stop_signals();

/// True once SIGINT or SIGTERM arrived after watch_stop_signals(). Async-signal-safe to read.
[[nodiscard]] bool stop_requested() noexcept;

/// Watches (if not yet), then blocks until a stop signal has arrived; returns its number. Returns
/// at once when one already arrived. Safe to call from several threads.
int wait_for_stop_signal();

}  // namespace eventbus
