#pragma once
// A fixed set of threads running tasks from one bounded queue with priority levels: a thread takes
// the oldest task of the highest level that has one (strict priority; FIFO within a level). The
// capacity bounds all levels together.
//
// The queue and the threads' bookkeeping live in a shared state that every thread holds, so a
// thread whose task never returns can be detached (close_and_join with a bound) and keeps only
// memory of its own alive: nothing it touches is freed under it.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace eventbus::detail {

class task_pool {
 public:
  using task = std::function<void()>;  // must not throw: callers wrap user code
  enum class push_status { ok, full, closed };

  task_pool(std::size_t threads, std::size_t capacity, std::size_t levels = 1);
  ~task_pool();  // close_and_join() without a bound
  task_pool(const task_pool&) = delete;
  task_pool& operator=(const task_pool&) = delete;

  /// Queues all of `tasks` or none at `level` (0 is the lowest, below levels), waiting up to
  /// `timeout` for room. From one of the pool's own threads the tasks are queued at once, past the
  /// capacity and even after close: such a thread waiting for room could be waiting on itself.
  push_status push_all(std::vector<task>& tasks, std::chrono::milliseconds timeout, std::size_t level = 0);

  /// Stops intake from other threads, runs everything queued, joins. Idempotent. From a pool
  /// thread it only stops intake (a thread cannot join itself). With a bound, threads still busy
  /// when it passes are detached (their tasks run on, and what they queue is dropped); returns how
  /// many were.
  std::size_t close_and_join(std::optional<std::chrono::milliseconds> bound = std::nullopt) noexcept;

  [[nodiscard]] bool on_pool_thread() const noexcept;

  /// Keeps `what` alive until the pool and all its threads are gone, and frees it on whichever
  /// goes last (a detached thread returning late, or the pool's destructor): for what the task of
  /// a thread detached by close_and_join must not outlive (a consumed Kafka message keeps its
  /// client from being destroyed, so the client goes after the message).
  void keep_until_threads_exit(std::shared_ptr<void> what);

 private:
  struct state;
  static void run(const std::shared_ptr<state>& s, std::size_t index);

  std::shared_ptr<state> state_;
  std::vector<std::thread> threads_;
  std::once_flag joined_;
  std::size_t detached_ = 0;
};

}  // namespace eventbus::detail
