#pragma once
// Child processes for tests that run the project's programs for real: spawn with arguments and
// extra environment, read their first output line, stop them with a signal and get the exit code.

#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

namespace eventbus::testing {

struct child_process {
  pid_t pid = -1;
  FILE* out = nullptr;  // its stdout, when captured

  child_process() = default;
  child_process(child_process&& other) noexcept : pid(other.pid), out(other.out) {
    other.pid = -1;
    other.out = nullptr;
  }
  child_process& operator=(child_process&&) = delete;
  ~child_process() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    if (out) std::fclose(out);
  }

  /// Its next line of output without the newline (blocks until it comes); empty at end of output.
  std::string read_line() {
    char line[1024] = {};
    if (out == nullptr || std::fgets(line, sizeof line, out) == nullptr) return {};
    std::string text(line);
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
    return text;
  }

  /// Sends `signal`, waits for the exit; returns the exit code, or -1 when it did not exit normally.
  int stop(int signal = SIGTERM) {
    if (pid <= 0) return -1;
    kill(pid, signal);
    int status = 0;
    waitpid(pid, &status, 0);
    pid = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
};

/// Starts args[0] with `args`, plus `env` set in its environment. Its stdout is captured when
/// `capture_stdout`, else discarded; stderr is inherited (so a failing test shows it).
inline child_process spawn(const std::vector<std::string>& args, const std::map<std::string, std::string>& env = {},
                           bool capture_stdout = true) {
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  child_process child;
  child.pid = fork();
  REQUIRE(child.pid >= 0);
  if (child.pid == 0) {
    if (capture_stdout) {
      dup2(fds[1], STDOUT_FILENO);
    } else if (FILE* null = std::fopen("/dev/null", "w")) {
      dup2(fileno(null), STDOUT_FILENO);
    }
    close(fds[0]);
    close(fds[1]);
    for (const auto& [name, value] : env) setenv(name.c_str(), value.c_str(), 1);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(fds[1]);
  if (capture_stdout)
    child.out = fdopen(fds[0], "r");
  else
    close(fds[0]);
  return child;
}

}  // namespace eventbus::testing
