#include "eventbus/stop_signal.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <mutex>

namespace eventbus {
namespace {

// The handler may only touch async-signal-safe things: a lock-free atomic and a write(2) to a
// self-pipe that waiting threads poll. Created once, kept for the process's lifetime.
std::atomic<int> received_signal{0};
int stop_pipe[2] = {-1, -1};
static_assert(std::atomic<int>::is_always_lock_free);

extern "C" void on_stop_signal(int signo) {
  const int saved = errno;
  int expected = 0;
  received_signal.compare_exchange_strong(expected, signo);
  const unsigned char byte = 1;
  (void)!write(stop_pipe[1], &byte, 1);
  errno = saved;
}

}  // namespace

void watch_stop_signals() {
  static std::once_flag installed;
  std::call_once(installed, [] {
    if (pipe2(stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0) stop_pipe[0] = stop_pipe[1] = -1;
    struct sigaction action {};
    action.sa_handler = on_stop_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    sigaction(SIGINT, &action, nullptr);
    sigaction(SIGTERM, &action, nullptr);
    // Threads that block these signals leave delivery to one that does not; make sure this one does.
    sigset_t stop_set;
    sigemptyset(&stop_set);
    sigaddset(&stop_set, SIGINT);
    sigaddset(&stop_set, SIGTERM);
    pthread_sigmask(SIG_UNBLOCK, &stop_set, nullptr);
  });
}

bool stop_requested() noexcept { return received_signal.load() != 0; }

int wait_for_stop_signal() {
  watch_stop_signals();
  while (received_signal.load() == 0) {
    if (stop_pipe[0] < 0) return SIGTERM;  // no pipe: nothing to wait on, behave as if asked to stop
    pollfd p{.fd = stop_pipe[0], .events = POLLIN, .revents = 0};
    (void)poll(&p, 1, 1000);  // the bound only guards against a lost wake-up
  }
  return received_signal.load();
}

}  // namespace eventbus
