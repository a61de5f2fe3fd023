#include "eventbus/stop_signal.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <mutex>

namespace eventbus {
namespace {

// Self-pipe: the handler may only call async-signal-safe functions, so it writes the signal number
// and the waiting thread reads it. Created once and kept for the process's lifetime.
int stop_pipe[2] = {-1, -1};

extern "C" void on_stop_signal(int signo) {
  const int saved = errno;
  const auto byte = static_cast<unsigned char>(signo);
  (void)!write(stop_pipe[1], &byte, 1);
  errno = saved;
}

}  // namespace

int wait_for_stop_signal() {
  static std::once_flag created;
  std::call_once(created, [] {
    if (pipe2(stop_pipe, O_CLOEXEC) != 0) stop_pipe[0] = stop_pipe[1] = -1;
  });
  if (stop_pipe[0] < 0) return SIGTERM;  // no pipe: nothing to wait on, behave as if asked to stop

  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  struct sigaction previous_int {}, previous_term {};
  sigaction(SIGINT, &action, &previous_int);
  sigaction(SIGTERM, &action, &previous_term);
  // Threads that block these signals leave delivery to one that does not; make sure this one does.
  sigset_t stop_set;
  sigemptyset(&stop_set);
  sigaddset(&stop_set, SIGINT);
  sigaddset(&stop_set, SIGTERM);
  pthread_sigmask(SIG_UNBLOCK, &stop_set, nullptr);

  unsigned char signo = 0;
  ssize_t n = 0;
  do {
    n = read(stop_pipe[0], &signo, 1);
  } while (n < 0 && errno == EINTR);
  sigaction(SIGINT, &previous_int, nullptr);
  sigaction(SIGTERM, &previous_term, nullptr);
  return n == 1 ? signo : SIGTERM;
}

}  // namespace eventbus
