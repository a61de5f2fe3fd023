#pragma once
// Graceful shutdown for service and worker processes: block until SIGINT or SIGTERM arrives, then
// stop the worker (which finishes in-flight handlers, commits and leaves the group).
//
//   eventbus::worker w(options);
//   auto sub = w.subscribe(...);
//   w.start();
//   eventbus::wait_for_stop_signal();   // Ctrl-C, `kill`, `docker stop`, Kubernetes pod shutdown
//   w.stop();

namespace eventbus {

/// Installs handlers for SIGINT and SIGTERM, blocks the calling thread until one arrives, restores
/// the previous handlers and returns the signal number. Works whatever other threads exist and
/// whatever their signal masks. A signal arriving before the call has its usual effect (the
/// process ends), so call it as soon as the worker has started.
int wait_for_stop_signal();

}  // namespace eventbus
