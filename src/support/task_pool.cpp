#include "support/task_pool.hpp"

#include <pthread.h>

#include <algorithm>

namespace eventbus::detail {

struct task_pool::state {
  state(std::size_t queue_capacity, std::size_t threads, std::size_t levels)
      : capacity(queue_capacity), queues(levels), exited(threads, false) {}

  // The oldest task of the highest level that has one. Precondition: queued > 0.
  task pop() {
    for (auto level = queues.rbegin(); level != queues.rend(); ++level) {
      if (level->empty()) continue;
      task next = std::move(level->front());
      level->pop_front();
      --queued;
      return next;
    }
    return {};
  }

  // First, so freed last: after the queues, whose dropped tasks may still hold what it keeps alive.
  std::vector<std::shared_ptr<void>> kept;
  const std::size_t capacity;
  std::mutex mu;
  std::condition_variable has_work;
  std::condition_variable has_room;
  std::condition_variable thread_exited;
  std::vector<std::deque<task>> queues;  // one per level, lowest first
  std::size_t queued = 0;                // over every level
  bool closed = false;
  std::vector<bool> exited;  // per thread, under mu
};

namespace {
thread_local const void* t_current_pool = nullptr;  // the state of the pool this thread belongs to
}

task_pool::task_pool(std::size_t threads, std::size_t capacity, std::size_t levels)
    : state_(std::make_shared<state>(capacity, threads, levels == 0 ? 1 : levels)) {
  threads_.reserve(threads);
  for (std::size_t i = 0; i < threads; ++i) threads_.emplace_back([s = state_, i] { run(s, i); });
}

task_pool::~task_pool() { close_and_join(); }

bool task_pool::on_pool_thread() const noexcept { return t_current_pool == state_.get(); }

void task_pool::keep_until_threads_exit(std::shared_ptr<void> what) {
  const std::lock_guard lock(state_->mu);
  state_->kept.push_back(std::move(what));
}

task_pool::push_status task_pool::push_all(std::vector<task>& tasks, std::chrono::milliseconds timeout,
                                           std::size_t level) {
  if (tasks.empty()) return push_status::ok;
  auto& s = *state_;
  auto& queue = s.queues[std::min(level, s.queues.size() - 1)];
  std::unique_lock lock(s.mu);
  if (!on_pool_thread()) {
    if (s.closed) return push_status::closed;
    // A batch larger than the whole queue is admitted once the queue is empty, so it cannot starve.
    const auto has_room = [&] { return s.closed || s.queued == 0 || s.queued + tasks.size() <= s.capacity; };
    if (!s.has_room.wait_for(lock, timeout, has_room)) return push_status::full;
    if (s.closed) return push_status::closed;
  }
  for (auto& t : tasks) queue.push_back(std::move(t));
  s.queued += tasks.size();
  lock.unlock();
  if (tasks.size() == 1)
    s.has_work.notify_one();
  else
    s.has_work.notify_all();
  return push_status::ok;
}

std::size_t task_pool::close_and_join(std::optional<std::chrono::milliseconds> bound) noexcept {
  auto& s = *state_;
  {
    const std::lock_guard lock(s.mu);
    s.closed = true;
  }
  s.has_work.notify_all();
  s.has_room.notify_all();
  if (on_pool_thread()) return 0;
  std::call_once(joined_, [&] {
    if (bound) {
      std::unique_lock lock(s.mu);
      const auto all_exited = [&] {
        for (const bool e : s.exited)
          if (!e) return false;
        return true;
      };
      s.thread_exited.wait_for(lock, *bound, all_exited);
      for (std::size_t i = 0; i < threads_.size(); ++i)
        if (!s.exited[i]) {
          threads_[i].detach();  // still running a task: it holds the state and exits on its own
          ++detached_;
        }
    }
    for (auto& t : threads_)
      if (t.joinable()) t.join();
  });
  return detached_;
}

void task_pool::run(const std::shared_ptr<state>& shared, std::size_t index) {
  auto& s = *shared;
  t_current_pool = &s;
  // Named, as the worker's, relay's and sink's threads are: `top -H`, `perf report --sort comm`
  // and a debugger tell handler threads from the rest.
  pthread_setname_np(pthread_self(), "eventbus-pool");
  std::unique_lock lock(s.mu);
  for (;;) {
    s.has_work.wait(lock, [&] { return s.closed || s.queued > 0; });
    if (s.queued == 0) break;  // closed and drained
    task next = s.pop();
    lock.unlock();
    s.has_room.notify_all();  // waiters want different amounts of room
    next();
    next = nullptr;  // what the task held goes now, not with the next one
    lock.lock();
  }
  s.exited[index] = true;
  lock.unlock();
  s.thread_exited.notify_all();
}

}  // namespace eventbus::detail
