#pragma once
// Progress of a long command on stderr: rewritten in place on a terminal (a few times a second),
// a plain line every few seconds otherwise (logs, CI), and always a final line.

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

namespace eventbus::cli {

class progress_line {
 public:
  explicit progress_line(std::string label)
      : label_(std::move(label)), terminal_(isatty(STDERR_FILENO) == 1),
        interval_(terminal_ ? std::chrono::milliseconds(250) : std::chrono::milliseconds(5000)) {}

  /// `text` describes the counts so far; `done` is the count the rate is computed from.
  void update(const std::string& text, std::uint64_t done) {
    const auto now = clock::now();
    if (now < next_) return;
    next_ = now + interval_;
    print(text, done, false);
  }
  void finish(const std::string& text, std::uint64_t done) { print(text, done, true); }

 private:
  using clock = std::chrono::steady_clock;

  void print(const std::string& text, std::uint64_t done, bool last) {
    const double seconds = std::chrono::duration<double>(clock::now() - start_).count();
    const double rate = seconds > 0 ? static_cast<double>(done) / seconds : 0.0;
    if (terminal_)
      std::fprintf(stderr, "\r\033[K%s: %s, %.0f/s%s", label_.c_str(), text.c_str(), rate, last ? "\n" : "");
    else
      std::fprintf(stderr, "%s: %s, %.0f/s\n", label_.c_str(), text.c_str(), rate);
    std::fflush(stderr);
  }

  std::string label_;
  bool terminal_;
  std::chrono::milliseconds interval_;
  clock::time_point start_ = clock::now();
  clock::time_point next_ = clock::now() + interval_;
};

}  // namespace eventbus::cli
