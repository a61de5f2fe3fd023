#pragma once
// A fixed set of threads running tasks from one bounded FIFO queue.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace eventbus::detail {

class task_pool {
 public:
  using task = std::function<void()>;  // must not throw: callers wrap user code
  enum class push_status { ok, full, closed };

  task_pool(std::size_t threads, std::size_t capacity);
  ~task_pool();
  task_pool(const task_pool&) = delete;
  task_pool& operator=(const task_pool&) = delete;

  /// Queues all of `tasks` or none, waiting up to `timeout` for room. From one of the pool's own
  /// threads the tasks are queued at once, past the capacity and even after close: such a thread
  /// waiting for room could be waiting on itself.
  push_status push_all(std::vector<task>& tasks, std::chrono::milliseconds timeout);

  /// Stops intake from other threads, runs everything queued, joins. Idempotent. From a pool
  /// thread it only stops intake (a thread cannot join itself).
  void close_and_join() noexcept;

  [[nodiscard]] bool on_pool_thread() const noexcept;

 private:
  void run();

  const std::size_t capacity_;
  std::mutex mu_;
  std::condition_variable has_work_;
  std::condition_variable has_room_;
  std::deque<task> queue_;
  bool closed_ = false;
  std::vector<std::thread> threads_;
  std::once_flag joined_;
};

}  // namespace eventbus::detail
