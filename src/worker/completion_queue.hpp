#pragma once
// The one way other threads talk to the worker's consumer thread: functions posted here (by pool
// threads, the dead-letter producer, librdkafka's queue callback) run on that thread, in order, so
// no bookkeeping state is shared between threads. It is also what that thread sleeps on.

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <utility>
#include <vector>

#include "worker/records.hpp"

namespace eventbus::detail {

class completion_queue {
 public:
  /// Any thread. After close(), `fn` is dropped (destroyed on the caller's thread).
  void post(std::function<void()> fn) {
    {
      const std::lock_guard lock(mu_);
      if (!closed_) posted_.push_back(std::move(fn));
    }
    cv_.notify_one();
  }

  /// The consumer thread has stopped for good: drops what waits and whatever is posted later.
  /// What they hold (batches, and the librdkafka messages in them) goes now: destroying the
  /// consumer waits for every message it handed out, so none may sit here unrun.
  void close() {
    std::vector<std::function<void()>> dropped;
    const std::lock_guard lock(mu_);
    closed_ = true;
    dropped.swap(posted_);
  }

  /// Consumer thread: runs what was posted so far, in order.
  void drain() {
    std::vector<std::function<void()>> batch;
    {
      const std::lock_guard lock(mu_);
      batch.swap(posted_);
    }
    for (auto& fn : batch) fn();
  }

  /// librdkafka's thread: records or rebalance events arrived on the consumer's empty queue.
  void consumer_ready() {
    {
      const std::lock_guard lock(mu_);
      consumer_ready_ = true;
    }
    cv_.notify_one();
  }
  /// Consumer thread, before it empties librdkafka's queue: only a later arrival wakes it.
  void consumer_emptying() {
    const std::lock_guard lock(mu_);
    consumer_ready_ = false;
  }

  /// Consumer thread: sleeps until something is posted, records arrive, `stop` is set, or `until`.
  void wait_for_work(worker_clock::time_point until, const std::atomic<bool>& stop) {
    std::unique_lock lock(mu_);
    cv_.wait_until(lock, until, [&] { return consumer_ready_ || !posted_.empty() || stop.load(); });
  }

  /// Consumer thread: sleeps until something is posted; false when `deadline` came first.
  [[nodiscard]] bool wait_for_post(worker_clock::time_point deadline) {
    std::unique_lock lock(mu_);
    return cv_.wait_until(lock, deadline, [&] { return !posted_.empty(); });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::function<void()>> posted_;  // run by the consumer thread, in order
  bool consumer_ready_ = false;  // librdkafka queued something since the loop last emptied its queue
  bool closed_ = false;
};

}  // namespace eventbus::detail
