#include "detail/task_pool.hpp"

namespace eventbus::detail {
namespace {
thread_local const task_pool* t_current_pool = nullptr;
}

task_pool::task_pool(std::size_t threads, std::size_t capacity) : capacity_(capacity) {
  threads_.reserve(threads);
  for (std::size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { run(); });
}

task_pool::~task_pool() { close_and_join(); }

bool task_pool::on_pool_thread() const noexcept { return t_current_pool == this; }

task_pool::push_status task_pool::push_all(std::vector<task>& tasks, std::chrono::milliseconds timeout) {
  if (tasks.empty()) return push_status::ok;
  std::unique_lock lock(mu_);
  if (!on_pool_thread()) {
    if (closed_) return push_status::closed;
    // A batch larger than the whole queue is admitted once the queue is empty, so it cannot starve.
    const auto has_room = [&] { return closed_ || queue_.empty() || queue_.size() + tasks.size() <= capacity_; };
    if (!has_room_.wait_for(lock, timeout, has_room)) return push_status::full;
    if (closed_) return push_status::closed;
  }
  for (auto& t : tasks) queue_.push_back(std::move(t));
  lock.unlock();
  if (tasks.size() == 1)
    has_work_.notify_one();
  else
    has_work_.notify_all();
  return push_status::ok;
}

void task_pool::close_and_join() noexcept {
  {
    const std::lock_guard lock(mu_);
    closed_ = true;
  }
  has_work_.notify_all();
  has_room_.notify_all();
  if (on_pool_thread()) return;
  std::call_once(joined_, [this] {
    for (auto& t : threads_) t.join();
  });
}

void task_pool::run() {
  t_current_pool = this;
  std::unique_lock lock(mu_);
  for (;;) {
    has_work_.wait(lock, [&] { return closed_ || !queue_.empty(); });
    if (queue_.empty()) return;  // closed and drained
    task next = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    has_room_.notify_all();  // waiters want different amounts of room
    next();
    lock.lock();
  }
}

}  // namespace eventbus::detail
