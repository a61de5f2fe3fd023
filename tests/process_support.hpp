#pragma once
// Child processes for tests that run the project's programs for real: spawn with arguments and
// extra environment, read their first output line, stop them with a signal and get the exit code.

#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

extern char** environ;

namespace eventbus::testing {

struct child_process {
  pid_t pid = -1;
  int out = -1;         // its stdout, when captured
  std::string pending;  // read from `out`, not yet returned as a line

  child_process() = default;
  child_process(child_process&& other) noexcept
      : pid(std::exchange(other.pid, -1)), out(std::exchange(other.out, -1)), pending(std::move(other.pending)) {}
  child_process& operator=(child_process&&) = delete;
  ~child_process() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    if (out >= 0) close(out);
  }

  /// Its next line of output without the newline; empty at end of output, or when no line came
  /// within `timeout` (a child stuck before it prints must fail the test, not hang it).
  std::string read_line(std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (const auto end = pending.find('\n'); end != std::string::npos) {
        std::string line = pending.substr(0, end);
        pending.erase(0, end + 1);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        return line;
      }
      if (out < 0) return std::exchange(pending, {});
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      pollfd ready{.fd = out, .events = POLLIN, .revents = 0};
      const int polled = left.count() <= 0 ? 0 : poll(&ready, 1, static_cast<int>(left.count()));
      if (polled < 0 && errno == EINTR) continue;
      if (polled == 0) {
        MESSAGE("no line from process " << pid << " within " << timeout.count() << " ms");
        return {};
      }
      char chunk[1024];
      const ssize_t got = read(out, chunk, sizeof chunk);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) {  // end of output: what is left is the last line
        close(out);
        out = -1;
        continue;
      }
      pending.append(chunk, static_cast<std::size_t>(got));
    }
  }

  /// Sends `signal`, waits for the exit; returns the exit code, or -1 when it did not exit normally.
  /// A process that has not exited after `timeout` is killed (SIGKILL) and counts as -1.
  int stop(int signal = SIGTERM, std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
    if (pid <= 0) return -1;
    kill(pid, signal);
    int status = 0;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    pid_t waited = 0;
    while ((waited = waitpid(pid, &status, WNOHANG)) == 0 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (waited == 0) {
      MESSAGE("process " << pid << " did not exit within " << timeout.count() << " ms of signal " << signal
                         << "; killed");
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      pid = -1;
      return -1;
    }
    pid = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
};

/// Forks and runs args[0] with `args`, this process's environment plus `env`, and its stdout on
/// `stdout_fd` (-1: this process's). Returns the child's pid, or -1 when fork failed. The child dies
/// with the thread that started it (PR_SET_PDEATHSIG): a test that fails before stopping it must
/// not leave it holding CTest's output pipe, which CTest waits on as on the test itself.
inline pid_t fork_exec(const std::vector<std::string>& args, const std::map<std::string, std::string>& env,
                       int stdout_fd = -1) {
  // Everything is made before the fork: between fork and exec only async-signal-safe calls (the
  // test has other threads, and an allocation or setenv may need a lock one of them held).
  std::vector<std::string> variables;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view variable(*e);
    if (!env.contains(std::string(variable.substr(0, variable.find('='))))) variables.emplace_back(variable);
  }
  for (const auto& [name, value] : env) variables.push_back(name + "=" + value);
  std::vector<char*> envp;
  for (auto& v : variables) envp.push_back(v.data());
  envp.push_back(nullptr);
  std::vector<std::string> arguments = args;
  std::vector<char*> argv;
  for (auto& a : arguments) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // the test died before the line above
    if (stdout_fd >= 0) dup2(stdout_fd, STDOUT_FILENO);  // dup2 clears close-on-exec
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  return pid;
}

/// Starts args[0] with `args`, plus `env` set in its environment (fork_exec). Its stdout is
/// captured when `capture_stdout`, else discarded; stderr is inherited (so a failing test shows it).
inline child_process spawn(const std::vector<std::string>& args, const std::map<std::string, std::string>& env = {},
                           bool capture_stdout = true) {
  const int null_fd = capture_stdout ? -1 : open("/dev/null", O_WRONLY | O_CLOEXEC);
  int fds[2];
  REQUIRE(pipe2(fds, O_CLOEXEC) == 0);
  child_process child;
  child.pid = fork_exec(args, env, capture_stdout ? fds[1] : null_fd);
  close(fds[1]);
  if (null_fd >= 0) close(null_fd);
  REQUIRE(child.pid >= 0);
  if (capture_stdout)
    child.out = fds[0];
  else
    close(fds[0]);
  return child;
}

}  // namespace eventbus::testing
